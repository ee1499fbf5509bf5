"""Dense oracles: the models' distributions written out as one joint
Gaussian and conditioned densely (O((sum of sizes)^3), small problems only).

They share no code with the fast paths they check, so a test that compares
the two can fail; users extending mtgp (a new kernel, a new layout) can run
the same comparisons.

* :class:`DenseMagma`: the joint Gaussian of all individuals' outputs, the
  mean process and a new individual (Magma, Props. 1, 4, 5 and Sec. 4).
* :func:`dense_log_likelihood`, :func:`dense_predict`: the multi-output model
  vec(Y) ~ N(0, C (x) K + Sigma (x) I) (Cool-MTGP eqs. 4-5), forming the
  (NT x NT) matrix; :func:`dense_masked_log_likelihood` and
  :func:`dense_masked_predict` the same with missing outputs (NaN) and
  conditional prediction given a row's observed outputs.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..linalg import LOG_2PI, cholesky, logdet_from_chol, tri_solve
from ..multioutput.algebra import unvec, vec

__all__ = ["DenseMagma", "dense_kernel", "dense_log_likelihood", "dense_masked_log_likelihood",
           "dense_masked_predict", "dense_predict"]


def dense_kernel(kernel, X1, X2):
    return np.asarray(kernel(np.asarray(X1, float), np.asarray(X2, float)))


class DenseMagma:
    """Reference: the joint Gaussian of all individuals' outputs, the mean
    process and a new individual, written out densely (no EM machinery)."""

    def __init__(self, k0, task_kernels, noises, data, prior_mean):
        # data: list of (X (n, d), y (n,)); task_kernels/noises per individual
        self.k0, self.ks, self.noises, self.data, self.m0 = k0, task_kernels, noises, data, prior_mean
        self.T = np.vstack([X for X, _ in data])
        self.y = np.concatenate([y for _, y in data])
        blocks = [dense_kernel(k, X, X) + s * np.eye(len(X)) for (X, _), k, s in zip(data, task_kernels, noises)]
        n = len(self.y)
        Psi = np.zeros((n, n))
        o = 0
        for b in blocks:
            Psi[o:o + len(b), o:o + len(b)] = b
            o += len(b)
        self.Sigma = dense_kernel(k0, self.T, self.T) + Psi
        self.r = self.y - self.m0(self.T)

    def loglik(self):
        sign, logdet = np.linalg.slogdet(self.Sigma)
        return -0.5 * (self.r @ np.linalg.solve(self.Sigma, self.r) + logdet + len(self.y) * np.log(2 * np.pi))

    def mean_process(self, X):
        KXT = dense_kernel(self.k0, X, self.T)
        mean = self.m0(X) + KXT @ np.linalg.solve(self.Sigma, self.r)
        cov = dense_kernel(self.k0, X, X) - KXT @ np.linalg.solve(self.Sigma, KXT.T)
        return mean, cov

    def predict(self, kstar, sstar, Xo, yo, Xp, noise=True):
        """p(y*(Xp) | y*(Xo), all y): conditional of the joint Gaussian."""
        k0 = self.k0
        Xa = np.vstack([Xp, Xo]) if Xo is not None else Xp
        Caa = dense_kernel(k0, Xa, Xa) + dense_kernel(kstar, Xa, Xa)
        n_p = len(Xp)
        diag = np.zeros(len(Xa))
        diag[n_p:] = sstar
        if noise:
            diag[:n_p] = sstar
        Caa = Caa + np.diag(diag)
        CaT = dense_kernel(k0, Xa, self.T)
        # joint of [ya, y_train]
        J = np.block([[Caa, CaT], [CaT.T, self.Sigma]])
        mu = np.concatenate([self.m0(Xa), self.m0(self.T)])
        vals = np.concatenate([yo if Xo is not None else np.zeros(0), self.y])
        cond = np.arange(n_p, len(J))
        pred = np.arange(n_p)
        A = J[np.ix_(pred, cond)]
        Bm = J[np.ix_(cond, cond)]
        mean = mu[pred] + A @ np.linalg.solve(Bm, vals - mu[cond])
        cov = J[np.ix_(pred, pred)] - A @ np.linalg.solve(Bm, A.T)
        return mean, cov


def dense_log_likelihood(K, C, Sigma, Y):
    """Dense reference for :func:`mtgp_log_likelihood` (forms the NT x NT matrix)."""
    N, T = Y.shape
    A = jnp.kron(C, K) + jnp.kron(Sigma, jnp.eye(N))
    Lf = cholesky(A)
    r = vec(Y)
    a = tri_solve(Lf, r)
    return -0.5 * (a @ a + logdet_from_chol(Lf) + N * T * LOG_2PI)


def dense_predict(K, Ks, Kss, C, Sigma, Y):
    """Dense eq. (5): returns (mean (n, T), joint cov (nT, nT), task-major)."""
    N, T = Y.shape
    n = Ks.shape[0]
    A = jnp.kron(C, K) + jnp.kron(Sigma, jnp.eye(N))
    B = jnp.kron(C, Ks)  # (T n, T N)
    mean = B @ jnp.linalg.solve(A, vec(Y))
    cov = jnp.kron(C, Kss) - B @ jnp.linalg.solve(A, B.T)
    return np.asarray(unvec(mean, T)), np.asarray(cov)


def _dense_joint(K_all, C, Sigma, N, n):
    """Dense joint covariance of [vec(Y) (NT); vec(F*) (nT); vec(Y*) (nT)] for
    training points 0..N-1 and test points N..N+n-1 of ``K_all``; each block
    output-major. Plain numpy, no code shared with mtgp.multioutput."""
    K_all = np.asarray(K_all, float)
    C, Sigma = np.asarray(C, float), np.asarray(Sigma, float)
    K, Ks, Kss = K_all[:N, :N], K_all[N:, :N], K_all[N:, N:]
    A = np.kron(C, K) + np.kron(Sigma, np.eye(N))
    B = np.kron(C, Ks)  # cov(f*, y) = cov(y*, y)
    F = np.kron(C, Kss)
    Yn = F + np.kron(Sigma, np.eye(n))
    return np.block([[A, B.T, B.T], [B, F, F], [B, F, Yn]])


def _condition(J, mu_idx, obs_idx, values):
    """Mean and covariance of the entries ``mu_idx`` of N(0, J) given those
    ``obs_idx`` equal ``values``."""
    A = J[np.ix_(mu_idx, obs_idx)]
    S = J[np.ix_(obs_idx, obs_idx)]
    mean = A @ np.linalg.solve(S, values)
    cov = J[np.ix_(mu_idx, mu_idx)] - A @ np.linalg.solve(S, A.T)
    return mean, cov


def dense_masked_log_likelihood(K, C, Sigma, Y):
    """Dense reference for eq. (4) restricted to the observed entries of ``Y``
    (NaN = missing): forms C (x) K + Sigma (x) I (NT x NT) and keeps the
    observed rows and columns."""
    Y = np.asarray(Y, float)
    N, T = Y.shape
    A = np.kron(np.asarray(C, float), np.asarray(K, float)) + np.kron(np.asarray(Sigma, float), np.eye(N))
    v = Y.T.reshape(-1)
    o = ~np.isnan(v)
    A, v = A[np.ix_(o, o)], v[o]
    _, logdet = np.linalg.slogdet(A)
    return float(-0.5 * (v @ np.linalg.solve(A, v) + logdet + len(v) * np.log(2 * np.pi)))


def dense_masked_predict(K_all, C, Sigma, Y, Y_observed=None, include_noise=False):
    """Dense Gaussian conditional of the test outputs given the observed
    entries of the training ``Y`` (N, T) (NaN = missing) and, for each test
    row j separately, the observed entries of row j of ``Y_observed`` (n, T).

    ``K_all`` is the kernel matrix over [training points; test points].
    Returns ``(mean (n, T), cov (n, T, T), joint (nT, nT) or None)`` of the
    latent f* (``include_noise=False``) or of new observations y*; ``joint``
    (output-major) only when ``Y_observed`` is None (each row then has its
    own conditioning set, so there is no joint covariance)."""
    Y = np.asarray(Y, float)
    N, T = Y.shape
    n = np.asarray(K_all).shape[0] - N
    J = _dense_joint(K_all, C, Sigma, N, n)
    v = Y.T.reshape(-1)
    obs_train = np.nonzero(~np.isnan(v))[0]
    base = N * T + (n * T if include_noise else 0)  # start of the predicted block
    if Y_observed is None:
        idx = base + np.arange(n * T)
        m, S = _condition(J, idx, obs_train, v[obs_train])
        mean = m.reshape(T, n).T
        cov = np.stack([S[np.ix_(np.arange(T) * n + j, np.arange(T) * n + j)] for j in range(n)])
        return mean, cov, S
    Yo = np.asarray(Y_observed, float)
    mean, cov = np.zeros((n, T)), np.zeros((n, T, T))
    for j in range(n):
        idx = base + np.arange(T) * n + j
        o = np.nonzero(~np.isnan(Yo[j]))[0]
        ystar = N * T + n * T + o * n + j  # noisy test observations of row j
        cond = np.concatenate([obs_train, ystar])
        vals = np.concatenate([v[obs_train], Yo[j, o]])
        mean[j], cov[j] = _condition(J, idx, cond, vals)
    return mean, cov, None


def dense_training_conditional(K, C, Sigma, Y):
    """Dense Gaussian conditional of every training entry given the observed
    ones (NaN = missing) under vec(Y) ~ N(0, C (x) K + Sigma (x) I): the
    reference for ``predict_missing``. Returns ``(mean (N, T), cov (N, T, T),
    joint (NT, NT) output-major)``; observed entries come back as observed,
    variance 0, to round-off."""
    Y = np.asarray(Y, float)
    N, T = Y.shape
    A = np.kron(np.asarray(C, float), np.asarray(K, float)) + np.kron(np.asarray(Sigma, float), np.eye(N))
    v = Y.T.reshape(-1)
    obs = np.nonzero(~np.isnan(v))[0]
    mean, joint = _condition(A, np.arange(N * T), obs, v[obs])
    per_row = joint.reshape(T, N, T, N)[:, np.arange(N), :, np.arange(N)]  # (N, T, T)
    return mean.reshape(T, N).T, per_row, joint
