"""Magma's EM loop (Algorithm 1): E step (Props. 1/4), M step (Props. 2/3,
with an exact ECME update of theta0 by default), convergence on the relative
change of the exact marginal likelihood, and the several-start option
(Sec. 3.2). Every touch of the individuals goes through a backend
(:mod:`mtgp.backends`)."""

from __future__ import annotations

import warnings
from typing import List, NamedTuple, Optional

import numpy as np

from .._progress import progress
from ..optim import minimize_host, perturbed_starts
from . import numerics as nx
from .numerics import MagmaData, MagmaParams, MagmaStatic, MeanPosterior


class EMResult(NamedTuple):
    """Outcome of :func:`run_em`."""

    params: MagmaParams
    posterior: MeanPosterior
    history: List[float]  # exact log-likelihood after each E step
    n_iter: int
    converged: bool
    jitters: np.ndarray  # diagonal jitter added in each E step kept
    best_start: int  # index of the start EM continued from (0: the given one)


def e_step(backend, handle, static: MagmaStatic, params: MagmaParams, data: MagmaData) -> MeanPosterior:
    """E step (Props. 1/4): the backend's weighted sums, then the
    hyper-posterior on the pooled grid here."""
    S, c, ll = backend.e_step_sums(handle, static, params.theta)
    return nx.posterior_from_sums_jit(static, params.theta0, data.grid, data.m0, S, c, ll)


def m_step(backend, handle, static: MagmaStatic, params: MagmaParams, post: MeanPosterior,
           data: MagmaData) -> MagmaParams:
    """M step. Individual HPs maximise the expected log-likelihood of Props.
    2/3 given the current hyper-posterior (by the backend). theta0 maximises
    either the paper's expected objective (same posterior: a plain EM step)
    or, by default, the exact marginal likelihood at the new individual HPs
    (an ECME step, Liu & Rubin 1994). Both keep the marginal likelihood
    non-decreasing."""
    k0, theta0 = static.k0, params.theta0
    if static.mean_update == "expected":
        theta0 = minimize_host(("magma-theta0-expected", k0),
                               lambda p, g, m0, po: nx.theta0_expected_objective(k0, p, g, m0, po),
                               theta0, (data.grid, data.m0, post), max_iter=static.max_iter).params
    theta = backend.individual_m_step(handle, static, params.theta, post)
    if static.mean_update != "expected":
        S, c, _ = backend.e_step_sums(handle, static, theta)
        L_S, w = nx.theta0_inputs(S, c)
        theta0 = minimize_host(("magma-theta0-marginal", k0),
                               lambda p, g, L, ww: nx.theta0_marginal_objective(k0, p, g, L, ww),
                               theta0, (data.grid, L_S, w), max_iter=static.max_iter).params
    return MagmaParams(theta0, theta)


def em_iteration(backend, handle, static, params, post, data):
    """One M step followed by the E step at the new hyper-parameters."""
    params = m_step(backend, handle, static, params, post, data)
    return params, e_step(backend, handle, static, params, data)


def _jitter(post) -> float:
    return max(float(post.jitter_S), float(post.jitter_B))


def check_loglik(ll: float, when: str) -> None:
    if not np.isfinite(ll):
        raise FloatingPointError(
            f"Magma: the marginal log-likelihood is not finite at {when}: an individual covariance "
            "is not positive definite (noise variance too small for the kernel?). Try a larger "
            "`noise` or different initial kernel values.")


def _best_of_starts(backend, handle, static, params, data, n_init, init_iter, random_state, bar=None):
    """Sec. 3.2's repeated short runs: ``init_iter`` EM iterations from the
    given start and from ``n_init - 1`` perturbations of it
    (:func:`mtgp.optim.perturbed_starts`, leaves of theta0 then of theta);
    returns (index, params, posterior, history) of the best, or None when
    no start has a finite likelihood."""
    best = None
    starts = perturbed_starts((params.theta0, params.theta), n_init, random_state)
    for k, (t0, th) in enumerate(starts):
        p = MagmaParams(t0, th)
        if bar is not None:
            bar.note(f"Magma EM, start {k + 1}/{n_init}")
        post = e_step(backend, handle, static, p, data)
        hist = [float(post.loglik)]
        if not np.isfinite(hist[0]):
            continue
        for _ in range(int(init_iter)):
            p, post = em_iteration(backend, handle, static, p, post, data)
            if not np.isfinite(float(post.loglik)):
                break
            hist.append(float(post.loglik))
            if bar is not None:
                bar.update(0, loglik=hist[-1])
        if best is None or hist[-1] > best[3][-1]:
            best = (k, p, post, hist)
    return best


def run_em(backend, handle, static: MagmaStatic, params: MagmaParams, data: MagmaData, *,
           optimize: bool = True, max_iter: int = 25, tol: float = 1e-3, n_init: int = 1,
           init_iter: int = 5, random_state: Optional[int] = None, verbose: Optional[bool] = None) -> EMResult:
    """Algorithm 1: E step at the initial HPs, then (``optimize``) up to
    ``max_iter`` M+E iterations until the relative change of the exact
    log-likelihood is below ``tol``. A non-finite likelihood stops EM with
    a warning and keeps the previous hyper-parameters. ``verbose``: progress
    (iterations, log-likelihood) as :func:`mtgp._progress.progress`."""
    with progress(int(max_iter) if optimize else None, "Magma EM", verbose) as bar:
        return _run_em(backend, handle, static, params, data, optimize, max_iter, tol, n_init,
                       init_iter, random_state, bar)


def _run_em(backend, handle, static, params, data, optimize, max_iter, tol, n_init, init_iter,
            random_state, bar) -> EMResult:
    post = e_step(backend, handle, static, params, data)
    history = [float(post.loglik)]
    jitter = [_jitter(post)]
    check_loglik(history[-1], "the initial hyper-parameters")
    n_iter, converged, best_start = 0, False, 0
    if optimize:
        if int(n_init) > 1:
            best = _best_of_starts(backend, handle, static, params, data, n_init, init_iter, random_state,
                                   bar)
            bar.note("Magma EM")
            if best is not None:
                # history restarts from the chosen start's own trajectory
                best_start, params, post, history = best
        while n_iter < int(max_iter):
            new, new_post = em_iteration(backend, handle, static, params, post, data)
            ll = float(new_post.loglik)
            n_iter += 1
            if not np.isfinite(ll):
                warnings.warn(f"EM iteration {n_iter}: non-finite log-likelihood; "
                              "keeping the previous hyper-parameters", RuntimeWarning, stacklevel=3)
                break
            params, post = new, new_post
            jitter.append(_jitter(post))
            prev = history[-1]
            history.append(ll)
            bar.update(1, loglik=ll)
            if abs(ll - prev) / max(abs(prev), 1e-12) < float(tol):
                converged = True
                break
    return EMResult(params, post, history, n_iter, converged, np.array(jitter), best_start)
