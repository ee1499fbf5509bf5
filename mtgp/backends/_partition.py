"""Splitting a :class:`~mtgp.magma.numerics.MagmaData` into partitions of
individuals, and the per-partition work, shared by the backends that run
partitions apart (:class:`~mtgp.backends.Dask`).

A partition is a :class:`Partition`: the same padded bucket layout restricted
to some individuals (every bucket is cut into contiguous row chunks, so each
partition holds a share of every size class), with *local* rows 0..M_p-1, the
pooled grid and the prior mean, as numpy arrays (cheap to pickle). Its
``global_rows`` say where its individuals are in training order; a backend
sends each partition only its own rows of Different-HP hyper-parameters and
puts the new rows back.
"""

from __future__ import annotations

from typing import List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import config


class Partition:
    """Some individuals' padded arrays (numpy; see the module docstring).
    ``data()`` is the :class:`~mtgp.magma.numerics.MagmaData` of the
    partition on this process' default device, built once and kept."""

    def __init__(self, index: int, X, y, mask, idx, weights, grid, m0, global_rows):
        self.index = int(index)
        self.X, self.y, self.mask, self.idx, self.weights = X, y, mask, idx, weights
        self.grid, self.m0 = grid, m0
        self.global_rows = np.asarray(global_rows, dtype=np.int64)
        self._data = None

    @property
    def n_individuals(self) -> int:
        return int(self.global_rows.shape[0])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for t in (self.X, self.y, self.mask, self.idx, self.weights) for a in t))

    def __getstate__(self):  # the device copy stays where it was made
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    def data(self):
        from ..magma.numerics import MagmaData

        if self._data is None:
            with config.float64_scope():
                rows, start = [], 0
                for w in self.weights:
                    rows.append(jnp.arange(start, start + w.shape[0]))
                    start += w.shape[0]
                f = lambda t: tuple(jnp.asarray(a) for a in t)
                self._data = MagmaData(f(self.X), f(self.y), f(self.mask), f(self.idx), tuple(rows),
                                       f(self.weights), jnp.asarray(self.grid),
                                       jnp.asarray(self.m0)).with_patterns()
        return self._data


def split(data, n_parts: int) -> List[Partition]:
    """Cut every bucket of ``data`` into ``n_parts`` contiguous row chunks
    (as equal as possible); partition p gathers chunk p of every bucket.
    Empty partitions are dropped."""
    np_ = lambda a: np.asarray(a)
    chunks = [np.array_split(np.arange(np_(r).shape[0]), n_parts) for r in data.rows]
    parts = []
    for p in range(n_parts):
        X, y, mask, idx, w, rows = [], [], [], [], [], []
        for b, ch in enumerate(chunks):
            sel = ch[p]
            if sel.size == 0:
                continue
            X.append(np_(data.X[b])[sel])
            y.append(np_(data.y[b])[sel])
            mask.append(np_(data.mask[b])[sel])
            idx.append(np_(data.idx[b])[sel])
            w.append(np_(data.weights[b])[sel])
            rows.append(np_(data.rows[b])[sel])
        if rows:
            parts.append(Partition(len(parts), tuple(X), tuple(y), tuple(mask), tuple(idx), tuple(w),
                                   np_(data.grid), np_(data.m0), np.concatenate(rows)))
    return parts


def to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def rows_of(theta, rows):
    """Rows ``rows`` (numpy) of a batched parameter pytree, as numpy."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[rows], theta)


# ------------------------------------------------- work on one partition
# (module-level functions: a worker imports them by name)

def part_e_step_sums(part: Partition, static, theta, m0=None, weights=None):
    """(S, c, ll, n_individuals) of one partition (numpy; ``theta``: the
    shared set or this partition's rows; ``weights``: this partition's, in
    its order)."""
    from .local import Local

    with config.float64_scope():
        theta = jax.tree_util.tree_map(jnp.asarray, theta)
        S, c, ll = Local().e_step_sums(part.data(), static, theta, m0=m0, weights=weights)
        return np.asarray(S), np.asarray(c), float(ll), part.n_individuals


def part_moments(part: Partition, post):
    """The hyper-posterior moments at this partition's individuals."""
    from ..magma import numerics as nx

    with config.float64_scope():
        post = jax.tree_util.tree_map(jnp.asarray, post)
        return nx.posterior_at_individuals(post, part.data().idx)


def _common_sum_objective(ki):
    """-sum_i L^{t_i} over the partition (Prop. 3, not yet divided by the
    total number of points, which the caller adds up over partitions)."""
    from ..magma import numerics as nx

    def f(th, X, y, mask, moments):
        tot = 0.0
        for Xb, yb, mb, (mh, kh) in zip(X, y, mask, moments):
            tot = tot + jnp.sum(nx.expected_loglik_terms(ki, True, th, Xb, yb, mb, mh, kh))
        return -tot
    return f


def part_common_value_and_grad(part: Partition, static, moments, theta_template, x):
    """[-sum L, its gradient in the flat vector ..., number of points] of
    one partition at the flat shared HPs ``x`` (numpy)."""
    from ..optim.host import flat_value_and_grad

    with config.float64_scope():
        data = part.data()
        args = (data.X, data.y, data.mask, moments)
        fun, leaves, _, _ = flat_value_and_grad(("magma-common-partial", static.ki),
                                                _common_sum_objective(static.ki), theta_template, args)
        out = np.asarray(fun(np.asarray(x, dtype=np.float64), *leaves))
        return np.concatenate([out, [float(sum(np.sum(m) for m in part.mask))]])


def part_individual_m_step(part: Partition, static, theta_rows, post, weights=None):
    """Different HP: the new HPs of this partition's individuals (Prop. 2),
    numpy, in the partition's order. MagmaClust: ``weights`` are this
    partition's rows of tau (M_p, K) and ``post`` has a leading cluster axis."""
    from .local import Local

    with config.float64_scope():
        theta = jax.tree_util.tree_map(jnp.asarray, theta_rows)
        post = jax.tree_util.tree_map(jnp.asarray, post)
        w = None if weights is None else jnp.asarray(weights)
        return to_numpy(Local().individual_m_step(part.data(), static, theta, post, weights=w))


# ------------------------------------- MagmaClust's work on one partition

def cluster_moments_only(post):
    """The K cluster hyper-posteriors reduced to what the per-individual
    work reads (``mean`` (K, N) and ``cov`` (K, N, N):
    :func:`mtgp.magmaclust.numerics.expected_terms` and
    :func:`~mtgp.magmaclust.numerics.mixture_moments`); the factors of S_k
    and B_k, alpha_k, c_k stay here (numpy, empty leaves)."""
    post = to_numpy(post)
    K = post.mean.shape[0]
    empty = np.zeros((K, 0))
    return post._replace(L_S=empty, L_B=empty, alpha=empty, c=empty, loglik=empty, jitter_S=empty,
                         jitter_B=empty)


def part_mixture_moments(part: Partition, post, tau_rows):
    """MagmaClust, Common HP: the (y_i, R_i) moments of this partition's
    individuals (:func:`mtgp.magmaclust.numerics.mixture_moments`; its rows
    of tau in its order), kept on the worker for the M step's evaluations."""
    from ..magmaclust.numerics import mixture_moments

    with config.float64_scope():
        post = jax.tree_util.tree_map(jnp.asarray, post)
        return mixture_moments(part.data(), post, jnp.asarray(tau_rows))


def part_responsibility_terms(part: Partition, static, theta, post):
    """MagmaClust's E_ik (M_p, K) of this partition's individuals, in its
    order (numpy; ``theta``: the shared set or this partition's rows)."""
    from .local import Local

    with config.float64_scope():
        theta = jax.tree_util.tree_map(jnp.asarray, theta)
        post = jax.tree_util.tree_map(jnp.asarray, post)
        return np.asarray(Local().responsibility_terms(part.data(), static, theta, post))


def put_rows_numpy(theta, rows, new):
    """Numpy copy of ``theta`` with ``rows`` replaced by ``new``."""
    def put(a, b):
        a = np.array(a, copy=True)
        a[rows] = b
        return a
    return jax.tree_util.tree_map(put, theta, new)


def check_counts(counts, expected: int, what: str) -> None:
    """Never a silently wrong sum: every individual counted exactly once."""
    total = int(sum(counts))
    if total != int(expected):
        raise RuntimeError(f"{what}: the partial sums cover {total} individuals, expected {expected} "
                           "(a partition was lost or counted twice)")


def optional(x: Optional[object]):
    return None if x is None else np.asarray(x)
