"""Prediction of a new individual (Sec. 4): the hyper-posterior of mu0 at
[t_pred, t_obs] (Prop. 4), the multi-task prior N(m_hat_0, K_hat + Psi_*)
of Prop. 5, optional learning of the new individual's HPs (Sec. 4.3), then
Gaussian conditioning on its observed points. Type II prediction (no
observed point) is the hyper-posterior plus the individual covariance."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..data import pad_observations
from ..gp.numerics import gp_nll
from ..linalg import report_jitter, safe_cholesky, symmetrize, tri_solve
from ..optim import lbfgs_parallel_backtracking
from .numerics import mean_posterior_at, mean_posterior_at_jit

# quantiles of the trained population's log HPs used as starts (Sec. 4.3)
START_QUANTILES = (0.5, 0.1, 0.25, 0.75, 0.9)
# floor of the population prior's sd on each log HP (new_individual_hp="map")
PRIOR_SD_FLOOR = 0.1


@partial(jax.jit, static_argnames=("k0", "ki", "include_noise"))
def predict_jit(k0, ki, include_noise, theta0, theta_star, post, grid, Xp, m0_p, Xo, yo, m0_o,
                mask_o=None):
    """Type I prediction (Sec. 4): multi-task prior of Prop. 5 on [Xp, Xo],
    then Gaussian conditioning on the new individual's observations.

    ``mask_o`` (optional) marks real observations when Xo, yo are padded to a
    bucket size (one compiled program for many individuals): padded points
    get an identity block with no cross-covariance, so they change nothing."""
    Xa = jnp.concatenate([Xp, Xo], axis=0)
    mu, Kmu = mean_posterior_at(k0, theta0, post, grid, Xa, jnp.concatenate([m0_p, m0_o]))
    noise = jnp.exp(theta_star["log_noise"])
    G = Kmu + ki.evaluate(theta_star["kernel"], Xa, Xa)
    n_p = Xp.shape[0]
    G_pp, G_po, G_oo = G[:n_p, :n_p], G[:n_p, n_p:], G[n_p:, n_p:]
    if mask_o is None:
        mask_o = jnp.ones(Xo.shape[0], dtype=G.dtype)
    G_oo = G_oo * (mask_o[:, None] * mask_o[None, :]) + jnp.diag(noise * mask_o + (1.0 - mask_o))
    G_po = G_po * mask_o[None, :]
    if include_noise:
        G_pp = G_pp + noise * jnp.eye(n_p, dtype=G.dtype)
    L, jit_o = safe_cholesky(G_oo)
    W = tri_solve(L, G_po.T)
    mean = mu[:n_p] + W.T @ tri_solve(L, (yo - mu[n_p:]) * mask_o)
    cov = symmetrize(G_pp - W.T @ W)
    return mean, cov, jit_o


@partial(jax.jit, static_argnames=("k0", "ki", "include_noise"))
def predict_prior_jit(k0, ki, include_noise, theta0, theta_star, post, grid, Xp, m0_p):
    """Type II prediction: hyper-posterior of mu0 plus the individual covariance."""
    mu, Kmu = mean_posterior_at(k0, theta0, post, grid, Xp, m0_p)
    G = Kmu + ki.evaluate(theta_star["kernel"], Xp, Xp)
    if include_noise:
        G = G + jnp.exp(theta_star["log_noise"]) * jnp.eye(Xp.shape[0], dtype=G.dtype)
    return mu, G


def new_individual_nll(ki, theta, Xo, yo, mu_o, Kmu_o):
    """-log N(y_*; m_hat(t_*), K_hat(t_*) + Psi_theta(t_*)) (Sec. 4.3): the GP
    marginal likelihood with the hyper-posterior covariance added."""
    return gp_nll(ki, theta, Xo, yo, mu_o, extra_cov=Kmu_o)


@partial(jax.jit, static_argnames=("ki", "max_iter"))
def fit_new_individual_jit(ki, max_iter, starts, Xo, yo, mu_o, Kmu_o, prior_mean, prior_prec):
    """Sec. 4.3 from several starts at once (one vmapped L-BFGS); optional
    Gaussian prior on the flattened log HPs (prior_prec = 0 gives plain
    maximum likelihood). Returns the best start's HPs and objective."""
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], starts))

    def objective(flat):
        th = unravel(flat)
        pen = 0.5 * jnp.sum(prior_prec * (flat - prior_mean) ** 2)
        return (new_individual_nll(ki, th, Xo, yo, mu_o, Kmu_o) + pen) / Xo.shape[0]

    flat_starts = jax.vmap(lambda t: ravel_pytree(t)[0])(starts)
    res = jax.vmap(lambda x: lbfgs_parallel_backtracking(objective, x, max_iter=max_iter))(flat_starts)
    best = jnp.argmin(jnp.where(jnp.isfinite(res.value), res.value, jnp.inf))
    return unravel(res.params[best]), res.value[best] * Xo.shape[0]


def learn_new_individual_hp(static, theta0, theta, post, grid, prior, Xo, yo, mode: str, max_iter: int):
    """Sec. 4.3 for Different HP: the new individual's log HPs, from several
    starts taken in the trained population (quantiles of the M individuals'
    log HPs and the first three of them); ``mode="map"`` adds a Gaussian
    prior fitted to the population (sd floored), ``"ml"`` is the paper's
    maximum likelihood."""
    mu_o, K_o = mean_posterior_at_jit(static.k0, theta0, post, jnp.asarray(grid), jnp.asarray(Xo),
                                      jnp.asarray(prior(Xo)))
    flat_np = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(theta))  # (M, p)
    qs = np.quantile(flat_np, list(START_QUANTILES), axis=0)
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], theta))
    starts = jax.vmap(unravel)(jnp.asarray(np.vstack([qs, flat_np[:3]])))
    if mode == "map":
        prior_mean = jnp.asarray(flat_np.mean(axis=0))
        prior_prec = jnp.asarray(1.0 / np.maximum(flat_np.std(axis=0), PRIOR_SD_FLOOR) ** 2)
    else:
        prior_mean = prior_prec = jnp.zeros(flat_np.shape[1])
    theta_star, _ = fit_new_individual_jit(static.ki, int(max_iter), starts, jnp.asarray(Xo),
                                           jnp.asarray(yo), mu_o, K_o, prior_mean, prior_prec)
    return theta_star


def predict_new_individual(static, theta0, theta_star, post, grid, prior, Xp, Xo=None, yo=None,
                           noise: bool = True):
    """Mean (n,) and covariance (n, n) at Xp: Type I (Prop. 5 then
    conditioning on (Xo, yo), padded to a bucket size so that new
    individuals of similar size share one compiled program) or Type II
    (``Xo`` None)."""
    grid, m0_p = jnp.asarray(grid), jnp.asarray(prior(Xp))
    if Xo is None:
        return predict_prior_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                 jnp.asarray(Xp), m0_p)
    Xo, yo, m0_o, mask_o = pad_observations(Xo, yo, prior(Xo))
    mean, cov, jit_o = predict_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                   jnp.asarray(Xp), m0_p, jnp.asarray(Xo), jnp.asarray(yo),
                                   jnp.asarray(m0_o), jnp.asarray(mask_o))
    report_jitter(np.asarray(jit_o), "Magma.predict (new individual's covariance)")
    return mean, cov
