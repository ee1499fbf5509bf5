"""Pure-JAX numerics of Magma (Leroy et al. 2022), batched over individuals.

Notation (paper): pooled grid t (N distinct inputs), prior mean m0, mean
kernel matrix K0 = k_theta0(t, t), individual covariances
Psi_i = c_theta_i(t_i, t_i) + sigma_i^2 I, gathered into the grid by P_i.

Exact formulation without K0^-1
-------------------------------
Props. 1 and 4 write the hyper-posterior precision K0^-1 + sum_i P_i' Psi_i^-1 P_i.
On densely spaced inputs K0 is numerically singular, so we never invert it.
With S = sum_i P_i' Psi_i^-1 P_i = L_S L_S' (positive definite: every grid
point is observed by someone) and c = sum_i P_i' Psi_i^-1 (y_i - m0(t_i)):

    B      = I + L_S' K0 L_S                     (eigenvalues >= 1: stable)
    alpha  = (I + S K0)^-1 c = c - L_S B^-1 L_S' K0 c
    m_hat(X)      = m0(X) + k0(X, t) alpha
    K_hat(X, X')  = k0(X, X') - V_X' V_X',   V_X = L_B^-1 L_S' k0(t, X)

which is algebraically identical to Props. 1/4 on t and, for any other
inputs X, to computing Prop. 4 on the union [X, t] and marginalising (the
data only touch mu0 through t). The exact marginal likelihood follows from
the matrix determinant lemma and Woodbury:

    log p({y_i}) = sum_i log N(y_i; m0(t_i), Psi_i) + c' K0 alpha / 2 - log|B| / 2.

Every individual-level quantity is computed for all individuals at once on
a padded layout (see :mod:`mtgp.data`): padded rows/columns of Psi_i are the
identity and padded outputs 0, so they contribute nothing.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..linalg import (LOG_2PI, cho_solve, cholesky, logdet_from_chol, safe_cholesky,
                     symmetrize, tri_solve)
from ..gp.numerics import gp_nll
from ..optim import batched_lbfgs_minimize, batched_minimize_host, minimize_host

# Relative diagonal jitter used only inside the paper's expected-log-likelihood
# objective for theta_0 (mean_update="expected"), which needs K0^-1.
EXPECTED_Q_JITTER = 1e-8

# Gradient-norm tolerance of each individual's Different-HP problem (its
# objective is per observed point): the lock-step batch runs until its
# slowest member stops. On the swimmers, 1e-5 instead of 1e-6 cut the
# line-search trials from 1378 to 1091 and ended at a slightly higher
# log-likelihood (-126455.0 vs -126457.6).
INDIVIDUAL_GTOL = 1e-5


class MeanPosterior(NamedTuple):
    """Hyper-posterior of mu0 on the pooled grid, in factored form."""

    L_S: jnp.ndarray  # (N, N) Cholesky of S
    L_B: jnp.ndarray  # (N, N) Cholesky of B = I + L_S' K0 L_S
    alpha: jnp.ndarray  # (N,)  (I + S K0)^-1 c
    c: jnp.ndarray  # (N,)  sum_i P_i' Psi_i^-1 (y_i - m0(t_i))
    mean: jnp.ndarray  # (N,)  m_hat(t)
    cov: jnp.ndarray  # (N, N) K_hat(t, t)
    loglik: jnp.ndarray  # exact log p({y_i} | Theta)
    jitter_S: jnp.ndarray
    jitter_B: jnp.ndarray


def masked_cov(kernel, params, log_noise, X, mask):
    """Psi = k(X, X) + sigma^2 I on real points; identity on padding."""
    K = kernel.evaluate(params, X, X)
    mm = mask[:, None] * mask[None, :]
    return K * mm + jnp.diag(jnp.exp(log_noise) * mask + (1.0 - mask))


def individual_covs(ki, common, theta, X, mask):
    """Batched Psi_i (M, n, n); ``theta`` is shared (common) or batched."""
    f = lambda th, x, m: masked_cov(ki, th["kernel"], th["log_noise"], x, m)
    return jax.vmap(f, in_axes=(None if common else 0, 0, 0))(theta, X, mask)


def _blocks(X, y, mask, idx, rows=None):
    """The padded data as a list of buckets (X, y, mask, idx, rows): either
    one padded block (arrays, ``rows`` None: all individuals in order) or
    tuples of per-bucket arrays with ``rows[b]`` the training-order indices
    of bucket b's individuals (see :func:`mtgp.data.bucket_individuals`)."""
    if isinstance(X, (tuple, list)):
        rows = (None,) * len(X) if rows is None else tuple(rows)
        return list(zip(X, y, mask, idx, rows))
    return [(X, y, mask, idx, rows)]


def _take(theta, rows):
    """Rows of a batched (Different HP) parameter pytree."""
    return theta if rows is None else jax.tree_util.tree_map(lambda a: a[rows], theta)


def _put(theta, rows, new):
    return new if rows is None else jax.tree_util.tree_map(lambda a, b: a.at[rows].set(b), theta, new)


def _individual_stats(ki, common, theta, m0_ext, X, y, mask, idx):
    """One bucket: Psi_i^-1 (masked), residuals and sum_i log N(r_i; 0, Psi_i)."""
    n = X.shape[1]
    Psi = individual_covs(ki, common, theta, X, mask)
    L = jax.vmap(cholesky)(Psi)
    eye_n = jnp.eye(n, dtype=Psi.dtype)
    mm = mask[:, :, None] * mask[:, None, :]
    Pinv = jax.vmap(lambda l: cho_solve(l, eye_n))(L) * mm
    r = (y - m0_ext[idx]) * mask
    # sum_i log N(r_i; 0, Psi_i) with the constants of real points only
    a = jax.vmap(tri_solve)(L, r)
    ll = -0.5 * (jnp.sum(a**2) + jnp.sum(jax.vmap(logdet_from_chol)(L)) + jnp.sum(mask) * LOG_2PI)
    return Pinv, r, ll


def individual_stats(ki, common, theta, m0_grid, X, y, mask, idx, rows=None):
    """S = sum_i P_i' Psi_i^-1 P_i, c = sum_i P_i' Psi_i^-1 (y_i - m0(t_i)) and
    sum_i log N(y_i; m0(t_i), Psi_i), accumulated bucket by bucket straight
    into one (N, N) array (padding goes to the dropped index N)."""
    N = m0_grid.shape[0]
    m0_ext = jnp.concatenate([m0_grid, jnp.zeros(1, m0_grid.dtype)])
    S = jnp.zeros((N + 1, N + 1), m0_grid.dtype)
    c = jnp.zeros(N + 1, m0_grid.dtype)
    ll_indiv = 0.0
    for Xb, yb, mb, ib, rb in _blocks(X, y, mask, idx, rows):
        th = theta if common else _take(theta, rb)
        Pinv, r, ll = _individual_stats(ki, common, th, m0_ext, Xb, yb, mb, ib)
        S = S.at[ib[:, :, None], ib[:, None, :]].add(Pinv)
        c = c.at[ib].add(jnp.einsum("mij,mj->mi", Pinv, r))
        ll_indiv = ll_indiv + ll
    return symmetrize(S[:N, :N]), c[:N], ll_indiv


def mean_posterior(k0, ki, common, theta0, theta, grid, m0_grid, X, y, mask, idx, rows=None):
    """E step (Props. 1 and 4) and exact marginal log-likelihood.

    ``X, y, mask, idx`` are one padded block or tuples of buckets (then
    ``rows`` gives each bucket's individuals; see :func:`_blocks`). Buckets
    only change the padding, never the result."""
    N = grid.shape[0]
    S, c, ll_indiv = individual_stats(ki, common, theta, m0_grid, X, y, mask, idx, rows)
    K0 = symmetrize(k0.evaluate(theta0, grid, grid))
    L_S, jit_S = safe_cholesky(S)
    B = jnp.eye(N, dtype=K0.dtype) + symmetrize(L_S.T @ K0 @ L_S)
    L_B, jit_B = safe_cholesky(B)
    K0c = K0 @ c
    alpha = c - L_S @ cho_solve(L_B, L_S.T @ K0c)
    mean = m0_grid + K0 @ alpha
    V = tri_solve(L_B, L_S.T @ K0)
    cov = K0 - V.T @ V
    loglik = ll_indiv + 0.5 * jnp.dot(c, K0 @ alpha) - 0.5 * logdet_from_chol(L_B)
    return MeanPosterior(L_S, L_B, alpha, c, mean, cov, loglik, jit_S, jit_B)


def mean_posterior_at(k0, theta0, post: MeanPosterior, grid, X, m0_X):
    """Hyper-posterior mean (n,) and covariance (n, n) of mu0 at any inputs X
    (Prop. 4 on the union of X and the grid, marginalised; exact)."""
    KXt = k0.evaluate(theta0, X, grid)
    mean = m0_X + KXt @ post.alpha
    V = tri_solve(post.L_B, post.L_S.T @ KXt.T)
    cov = symmetrize(k0.evaluate(theta0, X, X) - V.T @ V)
    return mean, cov


# ---------------------------------------------------------------- M step

def _expected_loglik_terms(ki, common, theta, X, y, mask, m_hat_i, K_hat_i):
    """Per individual: log N(y_i; m_hat(t_i), Psi_i) - Tr(K_hat_i Psi_i^-1) / 2
    (the objective L^{t_i} of Props. 2 and 3), constants dropped."""
    Psi = individual_covs(ki, common, theta, X, mask)
    L = jax.vmap(cholesky)(Psi)
    r = (y - m_hat_i) * mask
    a = jax.vmap(tri_solve)(L, r)
    quad = jnp.sum(a**2, axis=1)
    logdet = jax.vmap(logdet_from_chol)(L)
    trace = jnp.trace(jax.vmap(cho_solve)(L, K_hat_i), axis1=1, axis2=2)
    return -0.5 * (quad + logdet + trace)


def _theta0_expected_objective(k0, theta0, grid, m0_grid, post):
    """-(log N(m_hat; m0, K0) - Tr(K_hat K0^-1) / 2), Props. 2/3, first line."""
    K0 = symmetrize(k0.evaluate(theta0, grid, grid))
    K0 = K0 + EXPECTED_Q_JITTER * jnp.mean(jnp.diagonal(K0)) * jnp.eye(K0.shape[0], dtype=K0.dtype)
    L = cholesky(K0)
    a = tri_solve(L, post.mean - m0_grid)
    trace = jnp.trace(cho_solve(L, post.cov))
    return 0.5 * (jnp.sum(a**2) + logdet_from_chol(L) + trace) / grid.shape[0]


@jax.custom_vjp
def _marginal_terms(K0, L_S, w):
    """(log|B| + w' B^-1 w) / 2 with B = I + L_S' K0 L_S and w = L_S^-1 c:
    the theta_0-dependent part of -log p({y_i}).

    Since c' K0 (I + S K0)^-1 c = |w|^2 - w' B^-1 w (push-through identity,
    S = L_S L_S'), the constant |w|^2 is dropped: the form c'K0c - |u|^2 of
    the E step subtracts two nearly equal large numbers and left a relative
    rounding noise of ~1e-9 in this objective at the swimmers grid
    (N = 994), enough to stall the line search near the optimum; this form
    has no cancellation. The gradient in K0 is written out,
    (W - alpha alpha') / 2 with W = L_S B^-1 L_S' and
    alpha = (I + S K0)^-1 c = L_S B^-1 w, which costs about half of
    reverse-mode differentiation through the Cholesky factorisation."""
    return _marginal_terms_fwd(K0, L_S, w)[0]


def _marginal_terms_fwd(K0, L_S, w):
    B = jnp.eye(K0.shape[0], dtype=K0.dtype) + symmetrize(L_S.T @ K0 @ L_S)
    L_B = cholesky(B)
    v = tri_solve(L_B, w)
    value = 0.5 * (logdet_from_chol(L_B) + jnp.sum(v**2))
    return value, (L_S, L_B, v)


def _marginal_terms_bwd(res, g):
    L_S, L_B, v = res
    Z = tri_solve(L_B, L_S.T)  # L_B^-1 L_S'
    W = Z.T @ Z
    alpha = L_S @ tri_solve(L_B, v, trans=True)
    gK0 = 0.5 * g * (W - jnp.outer(alpha, alpha))
    return gK0, jnp.zeros_like(L_S), jnp.zeros_like(v)


_marginal_terms.defvjp(_marginal_terms_fwd, _marginal_terms_bwd)


def _theta0_marginal_objective(k0, theta0, grid, L_S, w):
    """-log p({y_i} | theta0, fixed individual HPs) / N up to a constant, with
    w = L_S^-1 c (see :func:`_marginal_terms`): an exact conditional
    maximisation step (ECME, Liu & Rubin 1994) needing no K0^-1."""
    K0 = symmetrize(k0.evaluate(theta0, grid, grid))
    return _marginal_terms(K0, L_S, w) / grid.shape[0]


@jax.jit
def _posterior_at_individuals(post, idx):
    """Per bucket, the hyper-posterior mean and covariance at each
    individual's inputs, (m_hat(t_i), K_hat(t_i, t_i)) (padding: index N)."""
    mean_ext = jnp.concatenate([post.mean, jnp.zeros(1, post.mean.dtype)])
    cov_ext = jnp.pad(post.cov, ((0, 1), (0, 1)))
    return tuple((mean_ext[ib], cov_ext[ib[:, :, None], ib[:, None, :]]) for ib in idx)


@partial(jax.jit, static_argnames=("ki", "common"))
def _theta0_inputs(ki, common, theta, m0_grid, X, y, mask, idx, rows=None):
    """L_S (Cholesky of S) and w = L_S^-1 c at the given individual HPs: the
    data of the theta_0 ECME objective."""
    S, c, _ = individual_stats(ki, common, theta, m0_grid, X, y, mask, idx, rows)
    L_S, _ = safe_cholesky(S)
    return L_S, tri_solve(L_S, c)


def _common_objective(ki):
    def f(th, X, y, mask, moments):
        tot, n_points = 0.0, 0.0
        for Xb, yb, mb, (mh, kh) in zip(X, y, mask, moments):
            tot = tot + jnp.sum(_expected_loglik_terms(ki, True, th, Xb, yb, mb, mh, kh))
            n_points = n_points + jnp.sum(mb)
        return -tot / n_points
    return f


def _individual_objective(ki):
    def f(th, x, yy, mk, mh, kh):
        one = lambda a: a[None]
        v = _expected_loglik_terms(ki, False, jax.tree_util.tree_map(one, th), one(x), one(yy),
                                   one(mk), one(mh), one(kh))
        return -v[0] / jnp.maximum(jnp.sum(mk), 1.0)
    return f


def m_step(k0, ki, common, mean_update, max_iter, theta0, theta, post, grid, m0_grid,
           X, y, mask, idx, rows=None):
    """M step. Individual HPs maximise the expected log-likelihood of Props.
    2/3 given the current hyper-posterior: one joint problem (Common HP,
    Prop. 3) or M independent ones solved in lock-step by a vmapped L-BFGS
    per bucket of individuals (Different HP, Prop. 2). theta0 maximises
    either the paper's expected objective (same posterior: a plain EM step)
    or, by default, the exact marginal likelihood at the new individual HPs
    (an ECME step). Both keep the marginal likelihood non-decreasing.

    Driven from Python (:func:`mtgp.optim.minimize_host`,
    :func:`mtgp.optim.batched_minimize_host`): each compiled program is one
    objective evaluation or one batched L-BFGS iteration, never a loop."""
    if mean_update == "expected":
        theta0 = minimize_host(("magma-theta0-expected", k0),
                               lambda p, g, m0, po: _theta0_expected_objective(k0, p, g, m0, po),
                               theta0, (grid, m0_grid, post), max_iter=max_iter).params

    blocks = _blocks(X, y, mask, idx, rows)
    moments = _posterior_at_individuals(post, tuple(b[3] for b in blocks))
    if common:
        Xs, ys, ms = (tuple(b[j] for b in blocks) for j in range(3))
        theta = minimize_host(("magma-common", ki), _common_objective(ki), theta,
                              (Xs, ys, ms, moments), max_iter=max_iter).params
    else:
        for (Xb, yb, mb, _, rb), (mh, kh) in zip(blocks, moments):
            new = batched_minimize_host(("magma-individual", ki), _individual_objective(ki),
                                        _take(theta, rb), (Xb, yb, mb, mh, kh),
                                        max_iter=max_iter, tol=INDIVIDUAL_GTOL).params
            theta = _put(theta, rb, new)
    if mean_update != "expected":
        L_S, w = _theta0_inputs(ki, common, theta, m0_grid, X, y, mask, idx, rows)
        theta0 = minimize_host(("magma-theta0-marginal", k0),
                               lambda p, g, L, ww: _theta0_marginal_objective(k0, p, g, L, ww),
                               theta0, (grid, L_S, w), max_iter=max_iter).params
    return theta0, theta


@partial(jax.jit, static_argnames=("k0", "ki", "common"))
def e_step_jit(k0, ki, common, theta0, theta, grid, m0_grid, X, y, mask, idx, rows=None):
    return mean_posterior(k0, ki, common, theta0, theta, grid, m0_grid, X, y, mask, idx, rows)


def em_iteration(k0, ki, common, mean_update, max_iter, theta0, theta, post, grid, m0_grid,
                 X, y, mask, idx, rows=None):
    """One M step followed by the E step at the new hyper-parameters."""
    theta0, theta = m_step(k0, ki, common, mean_update, max_iter, theta0, theta, post, grid,
                           m0_grid, X, y, mask, idx, rows)
    post = e_step_jit(k0, ki, common, theta0, theta, grid, m0_grid, X, y, mask, idx, rows)
    return theta0, theta, post


@partial(jax.jit, static_argnames=("k0",))
def mean_posterior_at_jit(k0, theta0, post, grid, X, m0_X):
    return mean_posterior_at(k0, theta0, post, grid, X, m0_X)


# ------------------------------------------------------------- prediction

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
    """Sec. 4.3 from several starts at once; optional Gaussian prior on the
    flattened log HPs (prior_prec = 0 gives plain maximum likelihood)."""
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], starts))

    def objective(flat):
        th = unravel(flat)
        pen = 0.5 * jnp.sum(prior_prec * (flat - prior_mean) ** 2)
        return (new_individual_nll(ki, th, Xo, yo, mu_o, Kmu_o) + pen) / Xo.shape[0]

    flat_starts = jax.vmap(lambda t: ravel_pytree(t)[0])(starts)
    res = batched_lbfgs_minimize(lambda f: objective(f), flat_starts, max_iter=max_iter)
    best = jnp.argmin(jnp.where(jnp.isfinite(res.value), res.value, jnp.inf))
    return unravel(res.params[best]), res.value[best] * Xo.shape[0]
