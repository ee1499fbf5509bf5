"""Pure-JAX numerics of single-output GP regression (the baseline of Leroy
et al. 2022, Sec. 6; Rasmussen & Williams 2006, Alg. 2.1 and eq. 5.8)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ..linalg import LOG_2PI, cholesky, logdet_from_chol, safe_cholesky, symmetrize, tri_solve
from ..optim import lbfgs_minimize


def gp_nll(ki, theta, X, y, mean, extra_cov=None):
    """-log N(y; mean, k(X, X) + extra_cov + sigma^2 I): the GP marginal
    likelihood (R&W eq. 5.8), with an optional additive covariance (Magma's
    hyper-posterior covariance at a new individual's inputs, Sec. 4.3)."""
    C = ki.evaluate(theta["kernel"], X, X)
    if extra_cov is not None:
        C = extra_cov + C
    C = C + jnp.exp(theta["log_noise"]) * jnp.eye(X.shape[0], dtype=C.dtype)
    L = cholesky(C)
    a = tri_solve(L, y - mean)
    return 0.5 * (jnp.sum(a**2) + logdet_from_chol(L) + X.shape[0] * LOG_2PI)


@partial(jax.jit, static_argnames=("ki", "max_iter"))
def fit_gp_jit(ki, max_iter, theta, X, y, mean):
    res = lbfgs_minimize(lambda th: gp_nll(ki, th, X, y, mean) / X.shape[0], theta, max_iter=max_iter)
    return res.params, -res.value * X.shape[0]


@partial(jax.jit, static_argnames=("ki", "include_noise"))
def gp_predict_jit(ki, include_noise, theta, X, y, mean_X, Xp, mean_p):
    noise = jnp.exp(theta["log_noise"])
    K = ki.evaluate(theta["kernel"], X, X) + noise * jnp.eye(X.shape[0], dtype=X.dtype)
    L, jit_o = safe_cholesky(K)
    Kpx = ki.evaluate(theta["kernel"], Xp, X)
    W = tri_solve(L, Kpx.T)
    mean = mean_p + W.T @ tri_solve(L, y - mean_X)
    cov = ki.evaluate(theta["kernel"], Xp, Xp) - W.T @ W
    if include_noise:
        cov = cov + noise * jnp.eye(Xp.shape[0], dtype=X.dtype)
    return mean, symmetrize(cov), jit_o
