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
from ..magma.prediction import NewIndividuals as MagmaNewIndividuals
from ..magma.prediction import population_starts, predict_buckets
from ..optim import lbfgs_parallel_backtracking
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


def mixture_nll(ki, theta, Xo, yo, mu_o, C_o, lp, mask_o):
    """-log sum_k pi_k N(y_*; m_hat_k(t_*), C_hat_k(t_*) + Psi_theta(t_*))
    (the mixture marginal of the note's Sec. 4; ``mu_o`` (K, n), ``C_o``
    (K, n, n), ``lp`` = log pi (K,)); padding (``mask_o`` 0) is excluded
    exactly (identity block, zero residual)."""
    mm = mask_o[:, None] * mask_o[None, :]
    Psi = ki.evaluate(theta["kernel"], Xo, Xo) + jnp.exp(theta["log_noise"]) * jnp.eye(Xo.shape[0])

    def one(m, C):
        L = cholesky((C + Psi) * mm + jnp.diag(1.0 - mask_o))
        a = tri_solve(L, (yo - m) * mask_o)
        return -0.5 * (jnp.sum(a**2) + logdet_from_chol(L) + jnp.sum(mask_o) * LOG_2PI)

    return -jax.scipy.special.logsumexp(jax.vmap(one)(mu_o, C_o) + lp)


@partial(jax.jit, static_argnames=("ki", "max_iter"))
def fit_new_individual_jit(ki, max_iter, starts, Xo, yo, mu_o, C_o, lp, prior_mean, prior_prec, mask_o):
    """The new individual's log HPs (H_*i): minimise :func:`mixture_nll`
    plus Magma's population prior (Sec. 4.3: Gaussian on the flattened log
    HPs) per observation, by the in-graph L-BFGS from each of ``starts``
    (batched; :func:`mtgp.magma.prediction.population_starts`), keeping the
    best. Under ``vmap`` for many new individuals (padded, ``mask_o``)."""
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], starts))
    n_real = jnp.sum(mask_o)

    def objective(flat):
        pen = 0.5 * jnp.sum(prior_prec * (flat - prior_mean) ** 2)
        return (mixture_nll(ki, unravel(flat), Xo, yo, mu_o, C_o, lp, mask_o) + pen) / n_real

    flat_starts = jax.vmap(lambda t: ravel_pytree(t)[0])(starts)
    res = jax.vmap(lambda x: lbfgs_parallel_backtracking(objective, x, max_iter=max_iter))(flat_starts)
    best = jnp.argmin(jnp.where(jnp.isfinite(res.value), res.value, jnp.inf))
    return unravel(res.params[best])


def _learn_hp(k0, ki, max_iter, learn, theta0, post, grid, lp, Xo, yo, m_o, mask_o):
    """Traced: q(mu_k) at the (padded) observed inputs, then
    :func:`fit_new_individual_jit` (``learn`` = (starts, prior mean, prior
    precision))."""
    mu_o, C_o = jax.vmap(lambda t0, p: mnx.mean_posterior_at(k0, t0, p, grid, Xo, m_o))(theta0, post)
    starts, prior_mean, prior_prec = learn
    return fit_new_individual_jit(ki, max_iter, starts, Xo, yo, mu_o, C_o, lp, prior_mean, prior_prec, mask_o)


@partial(jax.jit, static_argnames=("k0", "ki", "max_iter"))
def learn_hp_jit(k0, ki, max_iter, learn, theta0, post, grid, lp, Xo, yo, m_o, mask_o):
    """:func:`_learn_hp` compiled (one new individual)."""
    return _learn_hp(k0, ki, max_iter, learn, theta0, post, grid, lp, Xo, yo, m_o, mask_o)


def learn_new_individual_hp(static, theta0, theta, post, pi, grid, prior, Xo, yo, max_iter: int):
    """Individual HPs (H_*i) of one new individual: maximise log sum_k pi_k
    N(y_*; m_hat_k(t_*), C_hat_k(t_*) + Psi_theta(t_*)) (the mixture
    marginal) plus Magma's population prior on the log HPs (mean and sd of
    the trained ones, sd floored), from Magma's population starts (the
    quantiles of the trained log HPs, median first, and three of them).
    The observations are padded to :func:`mtgp.data.padded_size` (masked,
    exact): the same compiled program as the batched prediction
    (:class:`NewIndividuals`), so the two give the same HPs."""
    Xo, yo, m_o, mask_o = pad_observations(Xo, yo, prior(Xo))
    learn = population_starts(theta, "map")
    return learn_hp_jit(static.k0, static.ki, int(max_iter), learn, theta0, post, jnp.asarray(grid),
                        cx.log_pi(jnp.asarray(pi)), jnp.asarray(Xo), jnp.asarray(yo), jnp.asarray(m_o),
                        jnp.asarray(mask_o))


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


# --------------------------------------------------------------------------
# Many new individuals at once (issue 15): Magma's size buckets and batches
# (:func:`mtgp.magma.prediction.predict_buckets`), the mixture per individual.

@partial(jax.jit, static_argnames=("k0", "ki", "include_noise", "max_iter"))
def predict_batch_jit(k0, ki, include_noise, max_iter, theta0, theta, post, lp, grid, Xp, m_p,
                      Xo, yo, m_o, mask_o, learn=None):
    """B new individuals padded to one size (``Xo`` (B, n, d), ``yo``,
    ``m_o``, ``mask_o`` (B, n)) at the same inputs ``Xp``: the vmap of
    :func:`predict_clusters_jit` (K components) and of the cluster
    probabilities tau_*k = softmax_k(log pi_k + log N(y_*; m_hat_k, C_hat_k
    + Psi_*)) ("integrated"), preceded with ``learn`` (not shared
    individual HPs) by :func:`_learn_hp` per individual (lock-step, a
    finished member frozen). Returns the component means (B, K, n_p), their
    variances (B, K, n_p), tau (B, K) and the HPs used (batched)."""

    def one(X, y, m0, mk):
        th = theta if learn is None else _learn_hp(k0, ki, max_iter, learn, theta0, post, grid, lp, X, y, m0, mk)
        mean, cov, lm = predict_clusters_jit(k0, ki, include_noise, theta0, th, post, grid, Xp, m_p, X, y, m0, mk)
        return mean, jnp.diagonal(cov, axis1=1, axis2=2), jax.nn.softmax(lm + lp), th

    return jax.vmap(one)(Xo, yo, m_o, mask_o)


def _mixture_moments(mean_k, var_k, tau):
    """Pointwise moments of each individual's mixture: means (M, n) =
    sum_k tau_k mean_k and variances sum_k tau_k (var_k + (mean_k - mean)^2)."""
    mean = np.einsum("mk,mkn->mn", tau, mean_k)
    var = np.einsum("mk,mkn->mn", tau, var_k + (mean_k - mean[:, None, :]) ** 2)
    return mean, np.clip(var, 0.0, None)


class NewIndividuals(MagmaNewIndividuals):
    """Batched prediction of many new individuals by a fitted MagmaClust
    (:meth:`mtgp.MagmaClust.predict_individuals`): Magma's
    :class:`~mtgp.magma.prediction.NewIndividuals` (same buckets, batches,
    table and Dask path) with the K cluster posteriors (``theta0``,
    ``post`` stacked over clusters), the mixture weights ``pi`` and the
    mixture per individual (:func:`predict_batch_jit`). Small and
    picklable (no training data)."""

    def __init__(self, static, theta0, theta, post, pi, grid, prior, Xp, input_columns, noise: bool,
                 learn=None, max_iter: int = 100, batch_size=None):
        super().__init__(static, theta0, theta, post, grid, prior, Xp, input_columns, noise, learn=learn,
                         max_iter=max_iter, batch_size=batch_size)
        self.pi = np.asarray(pi, dtype=np.float64)

    def components(self, inds):
        """Per individual of ``inds`` (its order): the K components' means
        and variances (M, K, n_p), the cluster probabilities tau_* (M, K)
        and the HPs used (log scale, batched)."""
        from ..config import float64_scope

        with float64_scope():
            n, Xp, m_p = self._prediction_inputs()
            k0, ki, theta0, theta, post, grid, learn = self._device_state()
            lp = cx.log_pi(jnp.asarray(self.pi))
            batch = lambda X, y, m0, mk: predict_batch_jit(k0, ki, self.noise, self.max_iter, theta0, theta, post,
                                                           lp, grid, Xp, m_p, X, y, m0, mk, learn=learn)
            # K components per individual: K times the prediction inputs in the batch-size rule (an upper bound)
            mean, var, tau, th = predict_buckets(inds, self.prior, batch, Xp.shape[0] * len(self.pi),
                                                 len(self.grid), self.batch_size)
        return mean[:, :, :n], np.clip(var[:, :, :n], 0.0, None), tau, th

    def predict(self, inds):
        """The mixtures' moments: means (M, n_p), variances (M, n_p)
        (sum_k tau_k (var_k + (mean_k - mean)^2)) and the HPs used."""
        mean_k, var_k, tau, th = self.components(inds)
        return (*_mixture_moments(mean_k, var_k, tau), th)

    def frame(self, inds, level: float = 0.95):
        """The table of :meth:`mtgp.MagmaClust.predict_individuals`: Magma's
        columns with the mixture's moments (Mean, Var) and exact pointwise
        quantiles (Lower, Upper, as :meth:`mtgp.MixtureOfGaussians.interval`),
        then ``P_cluster_k`` (the individual's tau_*k, repeated on its rows);
        ``attrs["hyperparameters"]`` one row per individual,
        ``attrs["cluster_probabilities"]`` (ID, then one column per cluster)."""
        import pandas as pd

        from ..distributions import mixture_quantile

        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        mean_k, var_k, tau, th = self.components(inds)
        M, K, n = mean_k.shape
        mean, var = _mixture_moments(mean_k, var_k, tau)
        # (K, M n) columns: every (individual, input) a mixture of its own weights
        flat = lambda a: np.moveaxis(a, 1, 0).reshape(K, M * n)
        w = flat(np.repeat(tau[:, :, None], n, axis=2))
        lo = mixture_quantile(flat(mean_k), flat(var_k), w, 0.5 - level / 2.0).reshape(M, n)
        hi = mixture_quantile(flat(mean_k), flat(var_k), w, 0.5 + level / 2.0).reshape(M, n)
        df = self.table(inds, mean, var, lo, hi, th)
        for k in range(K):
            df[f"P_cluster_{k}"] = np.repeat(tau[:, k], n)
        probs = pd.DataFrame(tau, columns=list(range(K)))
        probs.insert(0, "ID", list(inds.ids))
        df.attrs["cluster_probabilities"] = probs
        return df
