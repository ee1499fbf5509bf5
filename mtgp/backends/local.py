"""The backend interface and the local backend: all individuals in this
process (jit + vmap). See :mod:`mtgp.backends` for the contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..optim import batched_minimize_host, batched_minimize_inline, minimize_host

__all__ = ["Backend", "Local", "resolve_backend"]


class Backend:
    """Interface of a backend (see :mod:`mtgp.backends` for the contract).
    ``supports_clusters``: implements MagmaClust's part of the contract
    (``weights`` of :meth:`individual_m_step`, :meth:`responsibility_terms`)."""

    supports_clusters = False

    def prepare(self, data):
        """Place the training data (a :class:`~mtgp.magma.numerics.MagmaData`)
        where the work runs; returns the handle the other methods take."""
        raise NotImplementedError

    def e_step_sums(self, handle, static, theta, m0=None, weights=None):
        """The E-step sums over individuals (Props. 1/4): (S, c, log-lik
        terms); ``m0`` replaces the prior mean values, ``weights`` (M,)
        weight each individual (MagmaClust's responsibilities)."""
        raise NotImplementedError

    def individual_m_step(self, handle, static, theta, post, weights=None):
        """The individual hyper-parameters' M step (Props. 2/3) given the
        hyper-posterior ``post``; returns the new ``theta``. MagmaClust passes
        ``weights`` (M, K) responsibilities and one posterior per cluster."""
        raise NotImplementedError

    def responsibility_terms(self, handle, static, theta, post):
        """MagmaClust's VE-step terms E (M, K): each individual's expected
        log-likelihood under each cluster's hyper-posterior."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Local(Backend):
    """Run everything in this process (the default): each size bucket of
    individuals is one vmapped, compiled block; the handle is the
    :class:`~mtgp.magma.numerics.MagmaData` itself."""

    supports_clusters = True

    def prepare(self, data):
        """The data stay in this process: the handle is ``data`` itself."""
        return data

    def e_step_sums(self, handle, static, theta, m0=None, weights=None):
        """:meth:`Backend.e_step_sums`, one vmapped program per size bucket."""
        from ..magma import numerics as nx

        if weights is not None:  # MagmaClust: the weights' gathers inside the compiled program
            from ..magmaclust.numerics import weighted_e_step_sums

            return weighted_e_step_sums(static, theta, handle, m0, weights)
        data = handle if m0 is None else handle._replace(m0=jnp.asarray(m0))
        return nx.e_step_sums_jit(static, theta, data)

    def individual_m_step(self, handle, static, theta, post, weights=None, n_real=None):
        """Props. 2/3 with the host-driven L-BFGS drivers of
        :mod:`mtgp.optim`: one joint problem (Common HP) or, per bucket, M_b
        independent problems in lock-step (Different HP). Each compiled
        program is one objective evaluation or one batched iteration.
        With ``weights`` (MagmaClust), the same objectives at the
        tau-weighted expected scatters of
        :func:`mtgp.magmaclust.numerics.mixture_moments` (shared HPs: one
        Cholesky per distinct input set,
        :func:`mtgp.magmaclust.numerics.shared_individual_m_step`). Magma's
        shared HPs on few distinct input sets: the same, unweighted
        (:func:`mtgp.magma.numerics.pattern_objective`).

        ``n_real`` (Different HP; one int per bucket, default all): only the
        first ``n_real[b]`` individuals of bucket b are real, the others are
        padding (:class:`~mtgp.backends.Sharded` pads each bucket to a
        multiple of its number of devices) whose problems are solved with
        the rest but whose results are dropped."""
        from ..magma import numerics as nx

        data = handle
        if weights is not None and static.common:  # MagmaClust, shared HPs: one Cholesky per input pattern
            from ..magmaclust.numerics import shared_individual_m_step

            return shared_individual_m_step(static, theta, data, post, weights)
        if weights is None and static.common and nx.use_pattern_m_step(data):
            # Magma, shared HPs, few input patterns: one Cholesky per pattern
            return minimize_host(("magma-common-patterns", static.ki), nx.pattern_objective(static.ki), theta,
                                 nx.pattern_moments(post, data), max_iter=static.max_iter).params
        if weights is None:
            moments = nx.posterior_at_individuals(post, data.idx)
        else:
            from ..magmaclust.numerics import mixture_moments

            moments = mixture_moments(data, post, jnp.asarray(weights))
        if static.common:
            return minimize_host(("magma-common", static.ki), nx.common_objective(static.ki), theta,
                                 (data.X, data.y, data.mask, moments), max_iter=static.max_iter).params
        for b, ((X, y, mask, _, rows, _), (mh, kh)) in enumerate(zip(data.buckets, moments)):
            driver = batched_minimize_inline if _inline_m_step(X.shape) else batched_minimize_host
            new = driver(("magma-individual", static.ki), nx.individual_objective(static.ki),
                         nx.take_rows_jit(theta, rows), (X, y, mask, mh, kh),
                         max_iter=static.max_iter, tol=nx.INDIVIDUAL_GTOL).params
            if n_real is not None:  # padding individuals at the end of the bucket: dropped
                m = int(n_real[b])
                rows, new = rows[:m], jax.tree_util.tree_map(lambda a: a[:m], new)
            theta = nx.put_rows_jit(theta, rows, new)
        return theta

    def responsibility_terms(self, handle, static, theta, post):
        """:meth:`Backend.responsibility_terms`, one vmapped program per size
        bucket (:func:`mtgp.magmaclust.numerics.expected_terms`)."""
        from ..magmaclust.numerics import expected_terms

        return expected_terms(static.ki, bool(static.common), theta, handle, post)


#: Different-HP M step: size buckets of at most this many individuals x
#: points^3 run the in-graph driver (:func:`mtgp.optim.batched_minimize_inline`,
#: one program), larger ones the host-driven lock-step with compaction
#: (:func:`mtgp.optim.batched_minimize_host`); see :func:`_inline_m_step`.
#: Measured (loaded 2-core machine, CPU time of the warm fit): M = 20 x 30
#: 0.27 s host -> 0.17 s in-graph, M = 1000 x 30 (2.7e7) 4.4 s -> 3.5 s.
INLINE_M_STEP_MAX_WORK = 1e8


def _inline_m_step(shape) -> bool:
    """Whether a bucket of shape (M_b, n_b, d) runs the in-graph M step."""
    return float(shape[0]) * float(shape[1]) ** 3 <= INLINE_M_STEP_MAX_WORK


def resolve_backend(backend, clusters: bool = False) -> Backend:
    """``None`` means :class:`Local`; anything else must be a Backend (one
    with ``supports_clusters`` for MagmaClust, ``clusters=True``)."""
    if backend is None:
        return Local()
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be None or an mtgp.backends.Backend, got {type(backend).__name__}")
    if clusters and not backend.supports_clusters:
        raise NotImplementedError(
            f"MagmaClust does not run on the {type(backend).__name__} backend yet (its weighted M step "
            "and responsibility terms are not implemented there): use backend=None (Local)")
    return backend
