"""MagmaClust's variational EM (note, Sec. 2), ordered so that the collapsed
ELBO L*(tau, Theta) (:func:`~mtgp.magmaclust.numerics.elbo`) never decreases:

1. VE, tau: responsibilities from q(mu) optimal at (tau, Theta) (skipped in
   the first iteration with ``freeze_first``, as the package does: tau stays
   at its k-means start);
2. VE, q(mu_k): the K hyper-posteriors at the new tau;
3. VM, pi = column means of tau; individual HPs maximising
   sum_i G(Psi_i; R_i) at that q(mu); gamma by ECME (the collapsed ELBO at the
   new individual HPs, no C_k^-1);
4. q(mu_k) at the new Theta (the sums S_k, c_k do not depend on gamma) and
   L*, recorded in ``history``.

Every touch of the individuals goes through the backend (:mod:`mtgp.backends`):
the weighted sums per cluster, the responsibilities' terms, the individual M
step. Every sub-step is a coordinate ascent on the ELBO (the optimisers never
return a worse point), hence the monotonicity (tested)."""

from __future__ import annotations

from typing import List, NamedTuple

import jax.numpy as jnp
import numpy as np

from . import numerics as cx
from .numerics import ClustParams, ClustStatic

#: a cluster whose responsibilities sum to less than this is "empty": its
#: gamma is frozen and the estimator warns
EMPTY_COUNT = 1e-8


class ClustEMResult(NamedTuple):
    params: ClustParams
    tau: jnp.ndarray
    posterior: object  # MeanPosterior with a leading cluster axis
    history: List[float]
    n_iter: int
    converged: bool


def e_step(backend, handle, static: ClustStatic, params: ClustParams, data, tau, sums=None):
    """q(mu_k) for all clusters and the collapsed ELBO."""
    S, c, ll = cx.cluster_sums(backend, handle, static, params.theta, data.m0, tau) if sums is None else sums
    post = cx.cluster_posteriors(static.k0, params.theta0, data.grid, data.m0, S, c, ll)
    return post, cx.elbo(post, tau, params.pi)


def update_tau(backend, handle, static: ClustStatic, params: ClustParams, post):
    """tau from the backend's E_ik terms (note 2.3)."""
    E = backend.responsibility_terms(handle, static.magma, params.theta, post)
    return cx.responsibilities(E, params.pi)


def iteration(backend, handle, static, params: ClustParams, data, post, tau, tau_step: bool = True,
              optimize: bool = True):
    if tau_step:
        tau = update_tau(backend, handle, static, params, post)
        post, _ = e_step(backend, handle, static, params, data, tau)
    pi = jnp.mean(tau, axis=0)
    theta, theta0 = params.theta, params.theta0
    if optimize:
        theta = cx.individual_m_step(static, theta, data, post, tau, backend=(backend, handle))
    sums = cx.cluster_sums(backend, handle, static, theta, data.m0, tau)
    if optimize:
        active = np.asarray(jnp.sum(tau, axis=0)) > EMPTY_COUNT
        theta0 = cx.mean_m_step(static, theta0, data.grid, sums[0], sums[1], active)
    params = ClustParams(theta0, theta, pi)
    post, value = e_step(backend, handle, static, params, data, tau, sums)
    return params, post, tau, value


def run_em(backend, handle, static: ClustStatic, params: ClustParams, data, tau0, *,
           max_iter: int = 25, tol: float = 1e-3, freeze_first: bool = True,
           optimize: bool = True, bar=None) -> ClustEMResult:
    """Variational EM from (tau0, params); stops after ``max_iter``
    iterations or when the relative ELBO change is below ``tol``. With
    ``optimize=False`` only the VE steps run (HPs fixed, pi updated).
    ``bar``: a :func:`mtgp._progress.progress` reporter (iterations, ELBO)."""
    tau = jnp.asarray(tau0)
    params = params._replace(pi=jnp.mean(tau, axis=0))
    post, value = e_step(backend, handle, static, params, data, tau)
    history = [value]
    n_iter, converged = 0, False
    if not np.isfinite(value):  # e.g. an individual covariance not positive definite
        return ClustEMResult(params, tau, post, history, n_iter, converged)
    while n_iter < int(max_iter):
        first = n_iter == 0 and freeze_first
        new = iteration(backend, handle, static, params, data, post, tau, tau_step=not first,
                        optimize=optimize)
        n_iter += 1
        if not np.isfinite(new[3]):
            import warnings

            warnings.warn(f"MagmaClust: non-finite ELBO at iteration {n_iter}; keeping the previous "
                          "state", RuntimeWarning, stacklevel=3)
            break
        params, post, tau, value = new
        prev = history[-1]
        history.append(value)
        if bar is not None:
            bar.update(1, elbo=float(value))
        if abs(value - prev) / max(abs(prev), 1e-12) < float(tol):
            converged = True
            break
    return ClustEMResult(params, tau, post, history, n_iter, converged)
