"""Pure-JAX numerics of MagmaClust (Leroy, Latouche, Guedj & Gey, JMLR 2023).

Notation as in ``shared/MAGMACLUST.md``: K clusters, responsibilities tau
(M, K), mixture weights pi (K,), cluster mean processes mu_k ~ GP(m, C_k)
with log HPs gamma_k (``theta0``, always stored with a leading axis K, equal
rows under a shared mean HP), individual covariances Psi_i (``theta``,
shared or batched over individuals as in Magma).

VE step, part 1 (q(mu_k), Sec. 2.2 of the note)
-----------------------------------------------
The weighted E-step sums of Magma (:func:`mtgp.magma.numerics.e_step_sums`,
weights tau_ik) give S_k, c_k, ll_k. S_k is singular when no individual
with tau_ik > 0 observes some grid point (an empty cluster: S_k = 0), so the
factor S_k = L_k L_k' is taken from an eigendecomposition with the
eigenvalues below ``EIG_RTOL * max`` set to 0 (option (a) of the note,
exact for a rank-deficient factor): B_k = I + L_k' C_k L_k is positive
definite whatever S_k is; with S_k = 0 the posterior is the prior.

VE step, part 2 (tau)
---------------------
log rho_ik = log pi_k + log N(y_i; m_hat_k(t_i), Psi_i) - tr(Psi_i^-1 C_hat_k(t_i)) / 2.

ELBO
----
At q(mu_k) optimal for the current (tau, Theta) (the collapsed form of the note, 2.5):

    L* = sum_k [ll_k + c_k' C_k alpha_k / 2 - log|B_k| / 2] + sum_ik tau_ik log(pi_k / tau_ik)

which is Magma's exact log-likelihood for K = 1. The EM loop
(:mod:`mtgp.magmaclust.em`) orders its sub-steps so that L* never decreases.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import StaticKernel
from ..linalg import LOG_2PI, cholesky, cho_solve, logdet_from_chol, symmetrize
from ..magma import numerics as mnx
from ..magma.numerics import MagmaData, MagmaStatic, MeanPosterior, factored_posterior

#: eigenvalues of S_k below this fraction of the largest one are set to 0
#: (they come from individuals with tau_ik = 0, or round-off)
EIG_RTOL = 1e-13


class ClustStatic(NamedTuple):
    """Hashable model description: kernels, the two sharing flags, the M-step
    L-BFGS budget."""

    k0: StaticKernel
    ki: StaticKernel
    shared_mean: bool
    shared_individual: bool
    max_iter: int = 50

    @property
    def magma(self) -> MagmaStatic:
        """The Magma static used for the per-cluster weighted sums."""
        return MagmaStatic(self.k0, self.ki, bool(self.shared_individual), "marginal", int(self.max_iter))


class ClustParams(NamedTuple):
    """Log HPs: ``theta0`` (leading axis K), ``theta`` (shared or (M, ...)),
    and the mixture weights ``pi`` (K,)."""

    theta0: dict
    theta: dict
    pi: jnp.ndarray


# ---------------------------------------------------------------- VE step

def _psd_factor(S):
    """L (N, N) with L L' = S (eigenvalues below EIG_RTOL * max set to 0)
    and the pseudo-inverse map v -> w with L w = projection of v on range(S)."""
    lam, U = jnp.linalg.eigh(symmetrize(S))
    keep = lam > EIG_RTOL * jnp.maximum(jnp.max(lam), 1e-300)
    root = jnp.where(keep, jnp.sqrt(jnp.where(keep, lam, 1.0)), 0.0)
    inv_root = jnp.where(keep, 1.0 / root, 0.0)
    return U * root[None, :], U, inv_root


def cluster_posterior(k0, theta0, grid, m, S, c, ll) -> MeanPosterior:
    """q(mu_k) on the grid in the factored form of Magma (any factor of S),
    with ``loglik`` = ll + c' C alpha / 2 - log|B| / 2 (the cluster's part of L*)."""
    z = jnp.zeros((), jnp.result_type(S))
    return factored_posterior(k0, theta0, grid, m, S, c, ll, lambda A: (_psd_factor(A)[0], z),
                              lambda A: (cholesky(A), z))


@partial(jax.jit, static_argnames=("k0",))
def cluster_posteriors(k0, theta0, grid, m, S, c, ll) -> MeanPosterior:
    """All K posteriors at once (vmapped over clusters; ``theta0``, S, c, ll
    with a leading axis K); a MeanPosterior whose leaves have that axis."""
    return jax.vmap(lambda t, s, cc, l: cluster_posterior(k0, t, grid, m, s, cc, l))(theta0, S, c, ll)


@partial(jax.jit, static_argnames=("static",))
def _weighted_e_step_sums(static, theta, data: MagmaData, m0, weights):
    return mnx.e_step_sums(static, theta, data._replace(m0=m0).with_weights(weights))


def weighted_e_step_sums(static, theta, data: MagmaData, m0, weights):
    """Magma's E-step sums (Props. 1/4) with per-individual weights w_i
    (training order) and prior mean values ``m0``, as ONE compiled program
    (the weights' gathers included): what
    :meth:`mtgp.backends.Local.e_step_sums` runs for MagmaClust."""
    m0 = data.m0 if m0 is None else m0
    return _weighted_e_step_sums(static.structure, theta, data, jnp.asarray(m0), jnp.asarray(weights))


def cluster_sums(backend, handle, static: ClustStatic, theta, m, tau):
    """(S (K, N, N), c (K, N), ll (K,)): the backend's weighted E-step sums,
    one call per cluster with weights tau[:, k] (a Python loop over K)."""
    tau = np.asarray(tau)  # host columns: no eager device slicing per cluster
    out = [backend.e_step_sums(handle, static.magma, theta, m0=m, weights=tau[:, k])
           for k in range(tau.shape[1])]
    return tuple(jnp.stack(v) for v in zip(*out))


def _bucket_moments(post: MeanPosterior, idx):
    """Cluster posteriors at each individual's inputs: means (K, M_b, n) and
    covariances (K, M_b, n, n) (padding: index N, zero)."""
    mean_ext = jnp.pad(post.mean, ((0, 0), (0, 1)))
    cov_ext = jnp.pad(post.cov, ((0, 0), (0, 1), (0, 1)))
    return mean_ext[:, idx], cov_ext[:, idx[:, :, None], idx[:, None, :]]


@partial(jax.jit, static_argnames=("ki", "common"))
def expected_terms(ki, common, theta, data: MagmaData, post: MeanPosterior):
    """E (M, K): log N(y_i; m_hat_k(t_i), Psi_i) - tr(Psi_i^-1 C_hat_k(t_i)) / 2,
    with the constant -n_i log(2 pi) / 2, in training order."""
    M = data.n_individuals
    K = post.mean.shape[0]
    out = jnp.zeros((M, K), post.mean.dtype)
    for X, y, mask, idx, rows, _ in data.buckets:
        th = theta if common else mnx.take_rows(theta, rows)
        mh, kh = _bucket_moments(post, idx)
        f = lambda a, b: mnx.expected_loglik_terms(ki, common, th, X, y, mask, a, b)
        e = jax.vmap(f)(mh, kh).T - 0.5 * LOG_2PI * jnp.sum(mask, axis=1)[:, None]
        out = out.at[rows].set(e)
    return out


def log_pi(pi):
    """log pi with log 0 = -inf (an empty cluster gets no responsibility)."""
    return jnp.where(pi > 0, jnp.log(jnp.where(pi > 0, pi, 1.0)), -jnp.inf)


@jax.jit
def responsibilities(E, pi):
    """tau (M, K) = softmax_k(log pi_k + E_ik) (log-sum-exp shift)."""
    a = E + log_pi(pi)[None, :]
    return jax.nn.softmax(a, axis=1)


@jax.jit
def entropy_term(tau, pi):
    """sum_ik tau_ik log(pi_k / tau_ik), with 0 log 0 = 0."""
    pos = tau > 0
    safe_tau = jnp.where(pos, tau, 1.0)
    safe_pi = jnp.where(pos, pi[None, :], 1.0)
    return jnp.sum(jnp.where(pos, tau * (jnp.log(safe_pi) - jnp.log(safe_tau)), 0.0))


def elbo(post: MeanPosterior, tau, pi):
    """The collapsed ELBO L* (q(mu) optimal for (tau, Theta))."""
    return float(jnp.sum(post.loglik)) + float(entropy_term(tau, pi))


def dense_elbo(post: MeanPosterior, k0, theta0, grid, m, tau, pi, E):
    """The dense ELBO of the note (2.5) for any q(mu) of the family (checks):
    sum_k [G(C_k; R_k) + log|C_hat_k| / 2 + N (1 + log 2 pi) / 2] + sum_ik tau_ik E_ik
    + entropy. Needs C_k^-1 (tiny, well-conditioned problems only)."""
    N = grid.shape[0]
    tot = 0.0
    for k in range(tau.shape[1]):
        C = np.asarray(k0.evaluate(jax.tree_util.tree_map(lambda a: a[k], theta0), grid, grid))
        mh, Ch = np.asarray(post.mean[k]), np.asarray(post.cov[k])
        R = np.outer(mh - m, mh - m) + Ch
        _, ldC = np.linalg.slogdet(C)
        _, ldCh = np.linalg.slogdet(Ch)
        G = -0.5 * (ldC + np.trace(np.linalg.solve(C, R)) + N * LOG_2PI)
        tot += G + 0.5 * ldCh + 0.5 * N * (1.0 + LOG_2PI)
    return tot + float(np.sum(np.asarray(tau) * np.asarray(E))) + float(entropy_term(tau, pi))


# ----------------------------------------------------------------- VM step

@jax.jit
def individual_scatters(data: MagmaData, post: MeanPosterior, tau):
    """Per bucket, R_i = sum_k tau_ik [(y_i - m_hat_k)(y_i - m_hat_k)' + C_hat_k(t_i)]
    (M_b, n, n), zero on padding: the expected scatter of the individual M step."""
    out = []
    for X, y, mask, idx, rows, _ in data.buckets:
        mh, kh = _bucket_moments(post, idx)
        r = (y[None] - mh) * mask[None]
        t = tau[rows].T  # (K, M_b)
        R = jnp.einsum("km,kmi,kmj->mij", t, r, r) + jnp.einsum("km,kmij->mij", t, kh)
        out.append(R)
    return tuple(out)


def mixture_moments(data: MagmaData, post: MeanPosterior, tau):
    """Per bucket, (y, R) with R_i the expected scatter of
    :func:`individual_scatters`: the moments under which Magma's individual
    objectives (Props. 2/3, with m_hat = y and K_hat = R_i) are
    -(log|Psi_i| + tr(Psi_i^-1 R_i)) / 2 = sum_k tau_ik L^{t_i}_k up to constants."""
    return tuple(zip(data.y, individual_scatters(data, post, tau)))


def shared_individual_objective(ki):
    """-sum_i G(Psi_i; R_i) / (number of points) for shared individual HPs
    (Prop. 3 at the moments of :func:`mixture_moments`), one Cholesky per
    input pattern p: sum_p [n_p log|Psi_p| + tr(Psi_p^-1 sum_{i in p} R_i)] / 2
    (Magma's :func:`~mtgp.magma.numerics.pattern_objective`; the same value as
    Magma's ``common_objective`` on every individual)."""
    return mnx.pattern_objective(ki)


@jax.jit
def _pattern_arguments(data: MagmaData, post: MeanPosterior, tau):
    """The arguments of :func:`shared_individual_objective` from the
    layout's input patterns (:attr:`MagmaData.patterns`): per bucket the
    patterns' X and mask, their summed scatters and
    sizes, and the number of points; one compiled program."""
    pats = data.patterns
    R = tuple(jax.ops.segment_sum(Rb, p.inverse, num_segments=p.rep.shape[0])
              for Rb, p in zip(individual_scatters(data, post, tau), pats))
    return (tuple(Xb[p.rep] for Xb, p in zip(data.X, pats)), tuple(mb[p.rep] for mb, p in zip(data.mask, pats)),
            R, tuple(p.counts for p in pats), sum(jnp.sum(mb) for mb in data.mask))


def shared_individual_m_step(static, theta, data: MagmaData, post: MeanPosterior, tau):
    """The weighted individual M step under shared individual HPs (what
    :meth:`mtgp.backends.Local.individual_m_step` runs for MagmaClust):
    :func:`shared_individual_objective` on the distinct input patterns of
    each bucket (all M individuals of a common grid: ONE Cholesky per
    evaluation instead of M), minimised by :func:`mtgp.optim.minimize_host`.
    ``static``: the Magma static of :attr:`ClustStatic.magma`."""
    from ..optim import minimize_host

    if data.patterns is None:  # a backend's data laid out without them
        data = data.with_patterns()
    return minimize_host(("magmaclust-shared-individual", static.ki), shared_individual_objective(static.ki),
                         theta, _pattern_arguments(data, post, jnp.asarray(tau)), max_iter=static.max_iter).params


def individual_m_step(static: ClustStatic, theta, data: MagmaData, post: MeanPosterior, tau, backend=None):
    """(theta, sigma) maximising sum_i G(Psi_i; R_i) (shared) or each
    G(Psi_i; R_i) alone: the backend's individual M step with weights tau
    (:mod:`mtgp.backends`; default :class:`~mtgp.backends.Local` on ``data``)."""
    from ..backends import Local

    if backend is None:
        backend, handle = Local(), data
    else:
        backend, handle = backend
    return backend.individual_m_step(handle, static.magma, theta, post, weights=tau)


@jax.jit
def ecme_inputs(S, c):
    """Per cluster, the factor L_k of S_k and w_k with L_k w_k = c_k
    (c_k lies in the range of S_k): the data of the gamma objective."""
    def one(s, cc):
        L, U, inv_root = _psd_factor(s)
        return L, inv_root * (U.T @ cc)
    return jax.vmap(one)(S, c)


def _gamma_objective(k0):
    """-(c' C alpha / 2 - log|B| / 2) / N of one cluster, up to a constant
    (Magma's ECME objective, which accepts any factor of S)."""
    return lambda p, grid, L, w: mnx.theta0_marginal_objective(k0, p, grid, L, w)


def mean_m_step(static: ClustStatic, theta0, grid, S, c, active):
    """gamma (ECME, note 2.4): maximise the collapsed ELBO in gamma at the
    new individual HPs; shared: the sum over clusters, else each cluster
    alone (vmapped, lock-step). Clusters not ``active`` (empty) keep their
    gamma (their objective is flat)."""
    from ..optim import batched_minimize_host, minimize_host

    k0 = static.k0
    L, w = ecme_inputs(S, c)
    K = S.shape[0]
    act = jnp.asarray(np.asarray(active, dtype=float))
    if static.shared_mean:
        one = jax.tree_util.tree_map(lambda a: a[0], theta0)
        f1 = _gamma_objective(k0)

        def obj(p, grid, L, w, act):
            return jnp.sum(act * jax.vmap(lambda l, ww: f1(p, grid, l, ww))(L, w))

        new = minimize_host(("magmaclust-gamma-shared", k0), obj, one, (grid, L, w, act),
                            max_iter=static.max_iter).params
        return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (K,) + jnp.shape(a)), new)
    grids = jnp.broadcast_to(grid, (K,) + grid.shape)
    new = batched_minimize_host(("magmaclust-gamma", k0), _gamma_objective(k0), theta0, (grids, L, w),
                                max_iter=static.max_iter).params
    keep = np.asarray(active, dtype=bool)
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(keep.reshape((K,) + (1,) * (a.ndim - 1)), a, b), new, theta0)
