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

from ..data import pad_observations, padded_size
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


def new_individual_nll(ki, theta, Xo, yo, mu_o, Kmu_o, mask_o=None):
    """-log N(y_*; m_hat(t_*), K_hat(t_*) + Psi_theta(t_*)) (Sec. 4.3): the GP
    marginal likelihood with the hyper-posterior covariance added (padding,
    where ``mask_o`` is 0, excluded exactly)."""
    return gp_nll(ki, theta, Xo, yo, mu_o, extra_cov=Kmu_o, mask=mask_o)


@partial(jax.jit, static_argnames=("ki", "max_iter"))
def fit_new_individual_jit(ki, max_iter, starts, Xo, yo, mu_o, Kmu_o, prior_mean, prior_prec, mask_o=None):
    """Sec. 4.3 from several starts at once (one vmapped L-BFGS); optional
    Gaussian prior on the flattened log HPs (prior_prec = 0 gives plain
    maximum likelihood). ``mask_o`` (optional) marks the real points when
    the observations are padded to a bucket size (padding excluded exactly).
    Returns the best start's HPs and objective."""
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], starts))
    n_real = Xo.shape[0] if mask_o is None else jnp.sum(mask_o)

    def objective(flat):
        th = unravel(flat)
        pen = 0.5 * jnp.sum(prior_prec * (flat - prior_mean) ** 2)
        return (new_individual_nll(ki, th, Xo, yo, mu_o, Kmu_o, mask_o) + pen) / n_real

    flat_starts = jax.vmap(lambda t: ravel_pytree(t)[0])(starts)
    res = jax.vmap(lambda x: lbfgs_parallel_backtracking(objective, x, max_iter=max_iter))(flat_starts)
    best = jnp.argmin(jnp.where(jnp.isfinite(res.value), res.value, jnp.inf))
    return unravel(res.params[best]), res.value[best] * n_real


def learn_new_individual_hp(static, theta0, theta, post, grid, prior, Xo, yo, mode: str, max_iter: int):
    """Sec. 4.3 for Different HP: the new individual's log HPs, from several
    starts taken in the trained population (quantiles of the M individuals'
    log HPs and the first three of them); ``mode="map"`` adds a Gaussian
    prior fitted to the population (sd floored), ``"ml"`` is the paper's
    maximum likelihood. The observations are padded to a bucket size
    (:func:`mtgp.data.padded_size`, masked exactly), so that new individuals
    of similar size share one compiled program."""
    Xo, yo, m0_o, mask_o = pad_observations(Xo, yo, prior(Xo))
    mu_o, K_o = mean_posterior_at_jit(static.k0, theta0, post, jnp.asarray(grid), jnp.asarray(Xo),
                                      jnp.asarray(m0_o))
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
                                           jnp.asarray(yo), mu_o, K_o, prior_mean, prior_prec,
                                           jnp.asarray(mask_o))
    return theta_star


def pad_rows(A, n_pad: int) -> np.ndarray:
    """``A`` ((n, ...) array) with rows appended up to ``n_pad``: copies of its
    first row (finite inputs for the kernels; the results there are sliced
    off)."""
    A = np.asarray(A, dtype=np.float64)
    return np.concatenate([A, np.repeat(A[:1], n_pad - len(A), axis=0)])


def hyperposterior_at(k0, theta0, post, grid, prior, X):
    """Hyper-posterior mean (n,) and covariance (n, n) of mu0 at X (Prop. 4),
    with X padded to :func:`mtgp.data.padded_size` (padding copies a real
    input, the results are sliced back: exact) so that a new number of
    inputs reuses a compiled program."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    n_pad = padded_size(n)
    mean, cov = mean_posterior_at_jit(k0, theta0, post, jnp.asarray(grid), jnp.asarray(pad_rows(X, n_pad)),
                                      jnp.asarray(pad_rows(prior(X), n_pad)))
    return np.asarray(mean)[:n], np.asarray(cov)[:n, :n]


def predict_new_individual(static, theta0, theta_star, post, grid, prior, Xp, Xo=None, yo=None,
                           noise: bool = True):
    """Mean (n,) and covariance (n, n) at Xp: Type I (Prop. 5 then
    conditioning on (Xo, yo)) or Type II (``Xo`` None). The prediction
    inputs Xp are padded to :func:`mtgp.data.padded_size` (copies of a real
    input; the rows and columns of the padding are sliced off) and the
    observations to a bucket size (masked), so that new individuals and new
    numbers of prediction inputs of similar size share one compiled program;
    both paddings are exact."""
    Xp = np.asarray(Xp, dtype=np.float64)
    n = len(Xp)
    n_pad = padded_size(n)
    grid = jnp.asarray(grid)
    Xp_pad, m0_p = jnp.asarray(pad_rows(Xp, n_pad)), jnp.asarray(pad_rows(prior(Xp), n_pad))
    if Xo is None:
        mean, cov = predict_prior_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                      Xp_pad, m0_p)
        return np.asarray(mean)[:n], np.asarray(cov)[:n, :n]
    Xo, yo, m0_o, mask_o = pad_observations(Xo, yo, prior(Xo))
    mean, cov, jit_o = predict_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                   Xp_pad, m0_p, jnp.asarray(Xo), jnp.asarray(yo),
                                   jnp.asarray(m0_o), jnp.asarray(mask_o))
    report_jitter(np.asarray(jit_o), "Magma.predict (new individual's covariance)")
    return np.asarray(mean)[:n], np.asarray(cov)[:n, :n]
