"""Pure-JAX numerics of single-output GP regression (Rasmussen & Williams
2006, *Gaussian Processes for Machine Learning*: the log marginal
likelihood, eq. 5.8 / Alg. 2.1 line 8, and the predictive mean and
covariance, Alg. 2.1 / eqs. 2.22-2.24), the baseline of Leroy et al. 2022,
Sec. 6.

Points may be padded (to :func:`mtgp.data.padded_size`) and masked so
that a new number of points reuses the compiled programs; masking is exact
(:func:`mtgp.linalg.mask_padded`: padded rows and columns are the
identity's, padded residuals 0, the 2 pi constant counts real points only).
This module does not depend on :mod:`mtgp.magma` (which imports
:func:`gp_nll` from here).
"""

from __future__ import annotations

import jax.numpy as jnp

from ..compile import cached_jit
from ..linalg import LOG_2PI, cholesky, logdet_from_chol, mask_padded, safe_cholesky, symmetrize, tri_solve


def _residual_and_count(y, mean, mask, n):
    r = y - mean
    if mask is None:
        return r, n
    mask = jnp.asarray(mask, r.dtype)
    return jnp.where(mask > 0, r, 0.0), jnp.sum(mask)


def gp_nll(ki, theta, X, y, mean, extra_cov=None, mask=None):
    """-log N(y; mean, k(X, X) + extra_cov + sigma^2 I): the GP negative log
    marginal likelihood (R&W eq. 5.8), with an optional additive covariance
    (Magma's hyper-posterior covariance at a new individual's inputs,
    Leroy et al. 2022, Sec. 4.3) and an optional 0/1 ``mask`` of the real
    points (padding excluded exactly)."""
    C = ki.evaluate(theta["kernel"], X, X)
    if extra_cov is not None:
        C = extra_cov + C
    C = C + jnp.exp(theta["log_noise"]) * jnp.eye(X.shape[0], dtype=C.dtype)
    r, n = _residual_and_count(y, mean, mask, X.shape[0])
    if mask is not None:
        C = mask_padded(C, mask)
    L = cholesky(C)
    a = tri_solve(L, r)
    return 0.5 * (jnp.sum(a**2) + logdet_from_chol(L) + n * LOG_2PI)


def gp_mean_nll(ki):
    """``(theta, X, y, mean, mask) -> gp_nll / n_real``: the per-point
    objective minimised by :class:`mtgp.gp.GP` (the same optimiser tolerances
    then suit any number of points)."""

    def objective(theta, X, y, mean, mask):
        return gp_nll(ki, theta, X, y, mean, mask=mask) / jnp.sum(mask)

    return objective


def gp_predict(ki, include_noise, theta, X, y, mean_X, mask, Xp, mean_p):
    """Posterior mean and covariance at ``Xp`` (R&W Alg. 2.1, lines 2-6)
    given the (masked) training points, and the jitter that the Cholesky
    factorisation of the training covariance needed."""
    noise = jnp.exp(theta["log_noise"])
    K = ki.evaluate(theta["kernel"], X, X) + noise * jnp.eye(X.shape[0], dtype=X.dtype)
    L, jit_o = safe_cholesky(mask_padded(K, mask))
    r, _ = _residual_and_count(y, mean_X, mask, X.shape[0])
    Kxp = jnp.where(jnp.asarray(mask)[:, None] > 0, ki.evaluate(theta["kernel"], X, Xp), 0.0)
    W = tri_solve(L, Kxp)
    mean = mean_p + W.T @ tri_solve(L, r)
    cov = ki.evaluate(theta["kernel"], Xp, Xp) - W.T @ W
    if include_noise:
        cov = cov + noise * jnp.eye(Xp.shape[0], dtype=X.dtype)
    return mean, symmetrize(cov), jit_o


def gp_predict_jit(ki, include_noise: bool):
    """:func:`gp_predict` compiled once per kernel structure and noise flag
    (and argument shapes: pad them, see :class:`mtgp.gp.GP`)."""
    return cached_jit(("gp-predict", ki.kernel.structure(), bool(include_noise)),
                      lambda: lambda *a: gp_predict(ki, include_noise, *a))
