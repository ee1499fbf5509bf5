"""Magma's per-individual work on a Dask cluster (``dask.distributed``).

``Magma(..., backend=mtgp.backends.Dask(client))``: :meth:`Dask.prepare`
cuts the individuals into partitions (:mod:`mtgp.backends._partition`; one
per worker by default, each holding a share of every size bucket) and
scatters each partition once to one worker, where it stays for the whole
fit. Then, per EM iteration, only these move:

* E step (Props. 1/4): the shared HPs, or each partition's own rows of the
  Different-HP HPs, go out; each worker returns its partial sums (S, c, ll),
  O(N^2) numbers whatever its number of individuals, which are added here;
* M step (Props. 2/3): the hyper-posterior (O(N^2)) is broadcast once.
  Different HP: each worker solves its individuals' problems where their
  data are and returns only their new HPs. Common HP: scipy's L-BFGS-B runs
  here on the shared HPs; each evaluation sums the workers' partial values
  and gradients (the hyper-posterior moments at each partition's inputs are
  computed once per M step and stay on its worker).

MagmaClust (``MagmaClust(..., backend=Dask(client))``) uses the same
partitions: the K weighted E-step sums per iteration (each partition gets
its rows of tau[:, k]), the responsibilities' terms (the K posteriors'
means and covariances go out, each partition's rows of E (M_p x K) come
back) and the weighted M step (Different HP: where the data are; Common
HP: each partition's expected scatters R_i computed once per M step and
kept there, values and gradients summed here); see the clusters section
of :class:`Dask`.

The numbers equal :class:`~mtgp.backends.Local`'s up to the order of the
floating-point sums. ``bytes_moved`` counts what the backend sent and
received (pickled sizes of the arguments and results, approximate).

Worker failure: a partition whose worker died is scattered again from this
process' copy (``keep_copy=True``, the default: the data were laid out here
anyway) to a live worker and the step is recomputed, at most ``retries``
times; with ``keep_copy=False`` the fit stops with a ``RuntimeError`` naming
the partition. A fit from a Dask DataFrame keeps no copy here: each
partition is a task of the frame's graph, which the scheduler recomputes on
a live worker (reading that partition again), and the step is retried; a
partition it cannot recompute stops the fit with a ``RuntimeError`` naming
it. Every sum checks that each individual was counted exactly
once, so a lost partition never gives a silently wrong sum.
"""

from __future__ import annotations

import pickle
from typing import List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import _partition as pt
from ._dask_data import DataOnWorkers
from .local import Backend

__all__ = ["Dask"]


class _Box:
    """Wraps an object so that ``client.scatter`` sends it as one piece
    (it splits lists, tuples and dicts)."""

    def __init__(self, value):
        self.value = value


def _unbox_moments(part, box):
    return pt.part_moments(part, box.value)


def _unbox_individual(part, static, theta_rows, box, weights=None):
    return pt.part_individual_m_step(part, static, theta_rows, box.value, weights)


def _unbox_mixture_moments(part, box, tau_rows):
    return pt.part_mixture_moments(part, box.value, tau_rows)


def _unbox_responsibility(part, static, theta, box):
    return pt.part_responsibility_terms(part, static, theta, box.value)


class _Handle:
    """What :meth:`Dask.prepare` returns: the partitions' futures (one per
    worker), their training-order rows, and this process' copies."""

    def __init__(self, futures, parts, workers, n_individuals, copies, source=None):
        self.futures = futures
        self.global_rows = [p.global_rows for p in parts]
        self.workers = workers
        self.n_individuals = n_individuals
        self.copies = copies  # None when keep_copy=False or for data laid out on the workers
        # "a Dask DataFrame" when each partition is a task of that frame's
        # graph (:meth:`Dask.prepare_frame`), which Dask recomputes when lost
        self.source = source

    @property
    def n_partitions(self) -> int:
        return len(self.futures)


class Dask(DataOnWorkers, Backend):
    """Partition the individuals over the workers of a ``dask.distributed``
    ``client`` (see the module docstring).

    Parameters
    ----------
    client : distributed.Client
    n_partitions : int or None
        Number of partitions (default: the number of workers). For a fit
        from a Dask DataFrame the default is one partition per (non-empty)
        DataFrame partition, where it is; a number given regroups the
        individuals into that many partitions (every size bucket cut into
        contiguous chunks, as for in-memory data; never splitting an
        individual), moving their data between the workers once.
    keep_copy : bool
        Keep this process' copy of the partitions to re-scatter one whose
        worker died (default True); False: such a failure is an error.
    retries : int
        How many times a step is recomputed after a worker loss.
    """

    def __init__(self, client, n_partitions: Optional[int] = None, keep_copy: bool = True, retries: int = 2):
        self.client = client
        self.n_partitions = n_partitions
        self.keep_copy = keep_copy
        self.retries = retries
        self.bytes_moved = 0

    def __repr__(self):
        return f"Dask(n_partitions={self.n_partitions})"

    # ----------------------------------------------------------- layout
    def _workers(self) -> List[str]:
        # nthreads() asks the scheduler each time; scheduler_info() returns a
        # cache that distributed >= 2025 refreshes in the background without
        # the per-worker entries, so it can read as "no worker" (a race).
        workers = sorted(self.client.nthreads())
        if not workers:
            raise RuntimeError("Dask backend: the client's cluster has no worker")
        return workers

    def _scatter(self, part, worker):
        self.bytes_moved += part.nbytes
        return self.client.scatter([part], workers=[worker], hash=False)[0]

    def prepare(self, data):
        workers = self._workers()
        n = int(self.n_partitions) if self.n_partitions is not None else len(workers)
        if n < 1:
            raise ValueError(f"n_partitions must be >= 1, got {n}")
        parts = pt.split(data, n)
        chosen = [workers[k % len(workers)] for k in range(len(parts))]
        futures = [self._scatter(p, w) for p, w in zip(parts, chosen)]
        return _Handle(futures, parts, chosen, data.n_individuals, parts if self.keep_copy else None)

    # ------------------------------------------------- running one step
    def _repair(self, handle, err) -> bool:
        """Re-scatter partitions whose data are gone; False if none is.
        Partitions laid out from a Dask DataFrame (``handle.source``) are
        tasks of its graph: the scheduler recomputes a lost one (reading
        its partition again) when the retried step needs it; one it cannot
        recompute is a clear error."""
        lost = [k for k, f in enumerate(handle.futures) if f.status != "finished"]
        if not lost:
            return False
        if handle.source is not None:
            dead = [k for k in lost if handle.futures[k].status in ("error", "cancelled")]
            if dead:
                raise RuntimeError(
                    f"Dask backend: partition(s) {dead} of the individuals (laid out on the workers from "
                    f"{handle.source}) were lost with their worker ({type(err).__name__}: {err}) and Dask "
                    "could not recompute them from the DataFrame's graph (status "
                    f"{sorted({handle.futures[k].status for k in dead})}); the fit cannot continue: fit "
                    "again (the source must still be readable, e.g. its Parquet files), or give more "
                    "workers / memory so that none is lost") from err
            return True  # lost, being recomputed by the scheduler: the step is retried
        if handle.copies is None:
            raise RuntimeError(
                f"Dask backend: partition(s) {lost} of the individuals were lost (their worker died: "
                f"{type(err).__name__}: {err}) and keep_copy=False; the fit cannot continue") from err
        workers = self._workers()
        for j, k in enumerate(lost):
            w = workers[(k + j) % len(workers)]
            handle.futures[k] = self._scatter(handle.copies[k], w)
            handle.workers[k] = w
        return True

    def _run(self, handle, submit):
        """``submit(handle) -> futures``, gathered; on a worker loss the
        lost partitions are re-scattered and the step recomputed."""
        for attempt in range(int(self.retries) + 1):
            try:
                futures = submit(handle)
                out = self.client.gather(futures)
                self.bytes_moved += len(pickle.dumps(out, protocol=5))
                return out
            except Exception as err:  # noqa: BLE001 - a worker loss shows as several types
                if attempt == int(self.retries) or not self._repair(handle, err):
                    raise

    def _send(self, value) -> int:
        n = len(pickle.dumps(value, protocol=5))
        self.bytes_moved += n
        return n

    def _broadcast(self, value):
        box = _Box(value)
        self.bytes_moved += self._send(value) * (len(self._workers()) - 1)
        return self.client.scatter([box], broadcast=True, hash=False)[0]

    # ---------------------------------------------------------- contract
    def e_step_sums(self, handle, static, theta, m0=None, weights=None):
        theta = pt.to_numpy(theta)
        m0 = pt.optional(m0)
        w = pt.optional(weights)

        def submit(h):
            futs = []
            for k, f in enumerate(h.futures):
                rows = h.global_rows[k]
                th = theta if static.common else pt.rows_of(theta, rows)
                wk = None if w is None else w[rows]
                self._send((th, m0, wk))
                futs.append(self.client.submit(pt.part_e_step_sums, f, static, th, m0, wk, pure=False))
            return futs

        out = self._run(handle, submit)
        pt.check_counts([o[3] for o in out], handle.n_individuals, "Dask backend E step")
        S = sum(o[0] for o in out)
        c = sum(o[1] for o in out)
        ll = sum(o[2] for o in out)
        return jnp.asarray(S), jnp.asarray(c), jnp.asarray(ll)

    def individual_m_step(self, handle, static, theta, post, weights=None):
        if weights is not None:  # MagmaClust (see the clusters section)
            return self._clust_individual_m_step(handle, static, theta, post, weights)
        post = pt.to_numpy(post)
        theta = pt.to_numpy(theta)
        if static.common:
            return self._common_m_step(handle, static, theta, post)

        def submit(h):
            box = self._broadcast(post)
            futs = []
            for k, f in enumerate(h.futures):
                th = pt.rows_of(theta, h.global_rows[k])
                self._send(th)
                futs.append(self.client.submit(_unbox_individual, f, static, th, box, pure=False))
            return futs

        out = self._run(handle, submit)
        new = theta
        for rows, rows_theta in zip(handle.global_rows, out):
            new = pt.put_rows_numpy(new, rows, rows_theta)
        pt.check_counts([len(r) for r in handle.global_rows], handle.n_individuals, "Dask backend M step")
        return jax.tree_util.tree_map(jnp.asarray, new)

    def _common_m_step(self, handle, static, theta, post, moments_of=None):
        """Prop. 3: L-BFGS-B here, partial values and gradients there.
        ``moments_of(h)``: the futures of each partition's moments (default:
        the hyper-posterior's at its individuals, :func:`_partition.part_moments`)."""
        from ..optim.host import minimize_flat
        from jax.flatten_util import ravel_pytree

        flat0, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, theta))
        state = {}

        def moments(h):
            if moments_of is not None:
                state["moments"] = moments_of(h)
                return state["moments"]
            box = self._broadcast(post)
            state["moments"] = [self.client.submit(_unbox_moments, f, box, pure=False) for f in h.futures]
            return state["moments"]

        def evaluate(x):
            def submit(h):
                if "moments" not in state or any(m.status != "finished" for m in state["moments"]):
                    moments(h)
                self._send(x)
                return [self.client.submit(pt.part_common_value_and_grad, f, static, m, theta, x, pure=False)
                        for f, m in zip(h.futures, state["moments"])]

            out = self._run(handle, submit)
            tot = sum(o[:-1] for o in out)
            return tot / sum(o[-1] for o in out)

        res = minimize_flat(evaluate, np.asarray(flat0), max_iter=static.max_iter)
        if res is None:
            return jax.tree_util.tree_map(jnp.asarray, theta)
        return unravel(jnp.asarray(res[0]))

    # -------------------------------------------------------- MagmaClust
    # Per VEM iteration, besides the K weighted E-step sums (e_step_sums,
    # one call per cluster: each partition gets its rows of tau[:, k] and
    # returns O(N^2) numbers), only these move: the K posteriors' means and
    # covariances on the grid (broadcast once per step, O(K N^2)), each
    # partition's rows of tau and of the Different-HP HPs, and back each
    # partition's rows of E (M_p x K) or of the new HPs.
    supports_clusters = True

    def responsibility_terms(self, handle, static, theta, post):
        """:meth:`Backend.responsibility_terms` per partition: each worker
        returns its rows of E (M_p, K), put back in training order here."""
        post = pt.cluster_moments_only(post)
        theta = pt.to_numpy(theta)

        def submit(h):
            box = self._broadcast(post)
            futs = []
            for k, f in enumerate(h.futures):
                th = theta if static.common else pt.rows_of(theta, h.global_rows[k])
                self._send(th)
                futs.append(self.client.submit(_unbox_responsibility, f, static, th, box, pure=False))
            return futs

        out = self._run(handle, submit)
        pt.check_counts([o.shape[0] for o in out], handle.n_individuals, "Dask backend responsibility terms")
        E = np.zeros((handle.n_individuals, out[0].shape[1]))
        for rows, e in zip(handle.global_rows, out):
            E[rows] = e
        return jnp.asarray(E)

    def _clust_individual_m_step(self, handle, static, theta, post, weights):
        """MagmaClust's M step (``weights`` = tau (M, K)): Different HP, each
        worker solves its individuals' problems at their tau-weighted
        expected scatters (:func:`_partition.part_individual_m_step`) and
        returns their new HPs; Common HP, each worker computes its
        individuals' (y_i, R_i) once (:func:`_partition.part_mixture_moments`)
        and L-BFGS-B runs here on the partial values and gradients."""
        post = pt.cluster_moments_only(post)
        theta = pt.to_numpy(theta)
        tau = np.asarray(weights)
        if static.common:
            def moments_of(h):
                box = self._broadcast(post)
                futs = []
                for k, f in enumerate(h.futures):
                    tk = tau[h.global_rows[k]]
                    self._send(tk)
                    futs.append(self.client.submit(_unbox_mixture_moments, f, box, tk, pure=False))
                return futs

            return self._common_m_step(handle, static, theta, post, moments_of=moments_of)

        def submit(h):
            box = self._broadcast(post)
            futs = []
            for k, f in enumerate(h.futures):
                rows = h.global_rows[k]
                th, tk = pt.rows_of(theta, rows), tau[rows]
                self._send((th, tk))
                futs.append(self.client.submit(_unbox_individual, f, static, th, box, tk, pure=False))
            return futs

        out = self._run(handle, submit)
        pt.check_counts([jax.tree_util.tree_leaves(o)[0].shape[0] for o in out], handle.n_individuals,
                        "Dask backend MagmaClust M step")
        new = theta
        for rows, rows_theta in zip(handle.global_rows, out):
            new = pt.put_rows_numpy(new, rows, rows_theta)
        return jax.tree_util.tree_map(jnp.asarray, new)
