"""Magma's per-individual work split over this process' JAX devices
(several GPUs, or forced host devices on CPU).

:meth:`Sharded.prepare` pads each size bucket's individual axis to a
multiple of the number of devices (padding individuals have no observed
point: identity covariance, zero residual, weight 0, so they add nothing to
any sum, and their M-step problems are constant and stop at once) and
places every bucket's arrays with a :class:`jax.sharding.NamedSharding`
over a one-axis :class:`jax.sharding.Mesh` ("individuals"); the pooled grid
and prior mean are replicated. The compiled programs of
:class:`~mtgp.backends.Local` then run unchanged: XLA partitions the
vmapped per-individual work over the devices and adds the (N, N) E-step
sums across them. Only :class:`~jax.sharding.Mesh`,
:class:`~jax.sharding.NamedSharding`, :class:`~jax.sharding.PartitionSpec`
and :func:`jax.device_put` are used (the same in jax 0.4.30 and 0.12).

MagmaClust runs on it too: the weighted E-step sums and M step are
Local's on the sharded buckets (the M step drops the padding individuals'
results, ``n_real``), and :meth:`Sharded.responsibility_terms` computes
E (M, K) at the padded buckets' own positions and keeps the real rows.

mtgp never sets ``XLA_FLAGS``: to try it on a CPU, start Python with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .local import Backend, Local

__all__ = ["Sharded"]


class _ShardedHandle(NamedTuple):
    data: object  # MagmaData, buckets padded and placed on the mesh
    n_real: tuple  # real individuals per bucket (the first ones)
    rows: tuple  # their training-order rows (numpy)
    mesh: object


class Sharded(Backend):
    """Shard the individuals over ``devices`` (default: ``jax.devices()``,
    the default platform's local devices); see the module docstring.
    Serves Magma and MagmaClust (``supports_clusters``)."""

    supports_clusters = True

    def __init__(self, devices: Optional[Sequence] = None):
        self.devices = devices

    def __repr__(self):
        n = "all" if self.devices is None else len(self.devices)
        return f"Sharded(devices={n})"

    def _mesh(self):
        from jax.sharding import Mesh

        devices = list(self.devices) if self.devices is not None else jax.devices()
        return Mesh(np.asarray(devices, dtype=object), ("individuals",))

    def prepare(self, data):
        from jax.sharding import NamedSharding, PartitionSpec

        mesh = self._mesh()
        D = mesh.devices.size
        split = NamedSharding(mesh, PartitionSpec("individuals"))
        repl = NamedSharding(mesh, PartitionSpec())
        N = int(np.shape(data.m0)[0])
        out = {k: [] for k in ("X", "y", "mask", "idx", "rows", "weights")}
        n_real, rows_real = [], []
        for X, y, mask, idx, rows, w in data.buckets:
            X, y, mask, idx, rows, w = (np.asarray(a) for a in (X, y, mask, idx, rows, w))
            M_b = X.shape[0]
            pad = (-M_b) % D

            def padded(a, fill):
                if pad == 0:
                    return a
                return np.concatenate([a, np.full((pad,) + a.shape[1:], fill, dtype=a.dtype)])

            for name, a, fill in (("X", X, 0.0), ("y", y, 0.0), ("mask", mask, 0), ("idx", idx, N),
                                  ("rows", rows, 0), ("weights", w, 0.0)):
                out[name].append(jax.device_put(padded(a, fill), split))
            n_real.append(M_b)
            rows_real.append(rows)
        placed = data._replace(**{k: tuple(v) for k, v in out.items()},
                               grid=jax.device_put(np.asarray(data.grid), repl),
                               m0=jax.device_put(np.asarray(data.m0), repl), patterns=None).with_patterns()
        return _ShardedHandle(placed, tuple(n_real), tuple(rows_real), mesh)

    def e_step_sums(self, handle, static, theta, m0=None, weights=None):
        if weights is not None:
            # padding individuals point at row 0: their weight does not
            # matter (they add nothing), any finite one will do
            weights = np.asarray(weights)
        return Local().e_step_sums(handle.data, static, theta, m0=m0, weights=weights)

    def individual_m_step(self, handle, static, theta, post, weights=None):
        """Local's M step on the sharded buckets; the padding individuals'
        problems (constant objectives) are solved with the others and
        dropped (``n_real``)."""
        if weights is not None:
            weights = np.asarray(weights)
        return Local().individual_m_step(handle.data, static, theta, post, weights=weights,
                                         n_real=handle.n_real)

    # ------------------------------------------------------- MagmaClust
    def responsibility_terms(self, handle, static, theta, post):
        """MagmaClust's E (M, K) (:meth:`Local.responsibility_terms` on the
        sharded buckets). The buckets' padding rows point at individual 0, so
        the terms are computed at the buckets' own positions (a layout with
        rows 0..P-1 over the padded buckets, the Different-HP rows gathered
        to it) and only the real individuals' rows are put back in training
        order, here."""
        from ..magma import numerics as nx

        data = handle.data
        sizes = [int(r.shape[0]) for r in data.rows]
        starts = np.cumsum([0] + sizes[:-1])
        own = tuple(jnp.arange(s0, s0 + n) for s0, n in zip(starts, sizes))
        th = theta if static.common else nx.take_rows(theta, jnp.concatenate(data.rows))
        E_pad = np.asarray(Local().responsibility_terms(data._replace(rows=own), static, th, post))
        real = np.concatenate([s0 + np.arange(m) for s0, m in zip(starts, handle.n_real)])
        E = np.zeros((sum(handle.n_real), E_pad.shape[1]), dtype=E_pad.dtype)
        E[np.concatenate(handle.rows)] = E_pad[real]
        return jnp.asarray(E)
