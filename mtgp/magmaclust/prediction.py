"""Prediction of a new individual by MagmaClust (note, Sec. 4): per cluster,
the hyper-posterior of mu_k at [t_p, t_*] (exact extension formula), the
multi-task prior N(m_hat_k, C_hat_k + Psi_*), conditioning on y_*; the cluster
probabilities are the exact posterior given q(mu) (the paper code's
integrated form): tau_*k ∝ pi_k N(y_*; m_hat_k(t_*), C_hat_k(t_*) + Psi_*)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..data import pad_observations
from ..linalg import LOG_2PI, cholesky, logdet_from_chol, symmetrize, tri_solve
from ..magma import numerics as mnx
from ..magma.prediction import PRIOR_SD_FLOOR
from . import numerics as cx


def _one_cluster(k0, ki, include_noise, theta0, theta_star, post, grid, Xp, m_p, Xo, yo, m_o, mask_o):
    Xa = jnp.concatenate([Xp, Xo], axis=0)
    mu, Kmu = mnx.mean_posterior_at(k0, theta0, post, grid, Xa, jnp.concatenate([m_p, m_o]))
    noise = jnp.exp(theta_star["log_noise"])
    G = Kmu + ki.evaluate(theta_star["kernel"], Xa, Xa)
    n_p = Xp.shape[0]
    G_pp, G_po, G_oo = G[:n_p, :n_p], G[:n_p, n_p:], G[n_p:, n_p:]
    G_oo = G_oo * (mask_o[:, None] * mask_o[None, :]) + jnp.diag(noise * mask_o + (1.0 - mask_o))
    G_po = G_po * mask_o[None, :]
    if include_noise:
        G_pp = G_pp + noise * jnp.eye(n_p, dtype=G.dtype)
    L = cholesky(G_oo)
    a = tri_solve(L, (yo - mu[n_p:]) * mask_o)
    W = tri_solve(L, G_po.T)
    mean = mu[:n_p] + W.T @ a
    cov = symmetrize(G_pp - W.T @ W)
    logmarg = -0.5 * (jnp.sum(a**2) + logdet_from_chol(L) + jnp.sum(mask_o) * LOG_2PI)
    return mean, cov, logmarg


@partial(jax.jit, static_argnames=("k0", "ki", "include_noise"))
def predict_clusters_jit(k0, ki, include_noise, theta0, theta_star, post, grid, Xp, m_p, Xo, yo, m_o, mask_o):
    """Per cluster (vmapped): predictive mean (K, n_p), covariance (K, n_p, n_p)
    and log N(y_*; m_hat_k(t_*), C_hat_k(t_*) + Psi_*) (K,)."""
    f = lambda t0, p: _one_cluster(k0, ki, include_noise, t0, theta_star, p, grid, Xp, m_p, Xo, yo, m_o, mask_o)
    return jax.vmap(f)(theta0, post)


@partial(jax.jit, static_argnames=("k0", "ki", "include_noise"))
def prior_clusters_jit(k0, ki, include_noise, theta0, theta_star, post, grid, Xp, m_p):
    """Type II per cluster: q(mu_k) at Xp plus the individual covariance."""
    def f(t0, p):
        mu, Kmu = mnx.mean_posterior_at(k0, t0, p, grid, Xp, m_p)
        G = Kmu + ki.evaluate(theta_star["kernel"], Xp, Xp)
        if include_noise:
            G = G + jnp.exp(theta_star["log_noise"]) * jnp.eye(Xp.shape[0], dtype=G.dtype)
        return mu, G
    return jax.vmap(f)(theta0, post)


@partial(jax.jit, static_argnames=("k0",))
def hyperposteriors_at_jit(k0, theta0, post, grid, X, m_X):
    """q(mu_k) at X for every cluster: means (K, n), covariances (K, n, n)."""
    return jax.vmap(lambda t0, p: mnx.mean_posterior_at(k0, t0, p, grid, X, m_X))(theta0, post)


def learn_new_individual_hp(static, theta0, theta, post, pi, grid, prior, Xo, yo, max_iter: int):
    """Individual HPs (H_*i): maximise log sum_k pi_k N(y_*; m_hat_k(t_*),
    C_hat_k(t_*) + Psi_theta(t_*)) (the mixture marginal), plus Magma's
    population prior on the log HPs (mean and sd of the trained ones, sd
    floored), from the population median."""
    from ..optim import minimize_host

    k0, ki = static.k0, static.ki
    mu_o, C_o = hyperposteriors_at_jit(k0, theta0, post, jnp.asarray(grid), jnp.asarray(Xo),
                                       jnp.asarray(prior(Xo)))
    flat = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(theta))
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], theta))
    pm = jnp.asarray(flat.mean(axis=0))
    prec = jnp.asarray(1.0 / np.maximum(flat.std(axis=0), PRIOR_SD_FLOOR) ** 2)
    start = unravel(jnp.asarray(np.median(flat, axis=0)))

    def objective(th, Xo, yo, mu_o, C_o, lp, pm, prec):
        Psi = ki.evaluate(th["kernel"], Xo, Xo) + jnp.exp(th["log_noise"]) * jnp.eye(Xo.shape[0])

        def one(m, C):
            L = cholesky(C + Psi)
            a = tri_solve(L, yo - m)
            return -0.5 * (jnp.sum(a**2) + logdet_from_chol(L) + Xo.shape[0] * LOG_2PI)

        lm = jax.vmap(one)(mu_o, C_o)
        pen = 0.5 * jnp.sum(prec * (ravel_pytree(th)[0] - pm) ** 2)
        return (-jax.scipy.special.logsumexp(lm + lp) + pen) / Xo.shape[0]

    lp = cx.log_pi(jnp.asarray(pi))
    return minimize_host(("magmaclust-new-individual", ki), objective, start,
                         (jnp.asarray(Xo), jnp.asarray(yo), mu_o, C_o, lp, pm, prec),
                         max_iter=max_iter).params


def variational_probabilities(static, theta0, theta_star, post, pi, grid, prior, Xo, yo):
    """MagmaClustR's cluster probabilities (``update_mixture``, without its
    rounding): tau_*k ∝ pi_k N(y_*; m_hat_k(t_*), Psi_*) exp(-tr(Psi_*^-1 C_hat_k(t_*)) / 2)."""
    mu, C = hyperposteriors_at_jit(static.k0, theta0, post, jnp.asarray(grid), jnp.asarray(Xo),
                                   jnp.asarray(prior(Xo)))
    Xo = jnp.asarray(Xo)
    Psi = static.ki.evaluate(theta_star["kernel"], Xo, Xo) + jnp.exp(theta_star["log_noise"]) * jnp.eye(Xo.shape[0])
    L = cholesky(Psi)
    a = jax.vmap(lambda m: tri_solve(L, jnp.asarray(yo) - m))(mu)
    tr = jax.vmap(lambda c: jnp.trace(jax.scipy.linalg.cho_solve((L, True), c)))(C)
    lm = -0.5 * (jnp.sum(a**2, axis=1) + tr)
    return np.asarray(jax.nn.softmax(lm + cx.log_pi(jnp.asarray(pi))))


def predict_new_individual(static, theta0, theta_star, post, pi, grid, prior, Xp, Xo=None, yo=None,
                           noise: bool = True, probabilities: str = "integrated"):
    """(means (K, n), covs (K, n, n), tau_* (K,)): the mixture's components
    and weights (Type II, no observation: tau_* = pi). ``probabilities``:
    "integrated" (exact given q(mu)) or "variational" (the package's form)."""
    grid, m_p = jnp.asarray(grid), jnp.asarray(prior(Xp))
    if Xo is None:
        mean, cov = prior_clusters_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                       jnp.asarray(Xp), m_p)
        return np.asarray(mean), np.asarray(cov), np.asarray(pi, dtype=float)
    Xo, yo, m_o, mask_o = pad_observations(Xo, yo, prior(Xo))
    mean, cov, lm = predict_clusters_jit(static.k0, static.ki, bool(noise), theta0, theta_star, post, grid,
                                         jnp.asarray(Xp), m_p, jnp.asarray(Xo), jnp.asarray(yo),
                                         jnp.asarray(m_o), jnp.asarray(mask_o))
    if probabilities == "variational":
        tau = variational_probabilities(static, theta0, theta_star, post, pi, grid, prior, Xo[mask_o > 0],
                                        yo[mask_o > 0])
    else:
        tau = np.asarray(jax.nn.softmax(lm + cx.log_pi(jnp.asarray(pi))))
    return np.asarray(mean), np.asarray(cov), tau
