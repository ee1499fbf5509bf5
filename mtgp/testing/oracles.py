"""Dense oracles: the models' distributions written out as one joint
Gaussian and conditioned densely (O((sum of sizes)^3), small problems only).

They share no code with the fast paths they check, so a test that compares
the two can fail; users extending mtgp (a new kernel, a new layout) can run
the same comparisons.

* :class:`DenseMagma`: the joint Gaussian of all individuals' outputs, the
  mean process and a new individual (Magma, Props. 1, 4, 5 and Sec. 4).
* :func:`dense_log_likelihood`, :func:`dense_predict`: the multi-output model
  vec(Y) ~ N(0, C (x) K + Sigma (x) I) (Cool-MTGP eqs. 4-5), forming the
  (NT x NT) matrix.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..linalg import LOG_2PI, cholesky, logdet_from_chol, tri_solve
from ..multioutput.algebra import unvec, vec

__all__ = ["DenseMagma", "dense_kernel", "dense_log_likelihood", "dense_predict"]


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
