"""The multi-output GP joint model and its exact predictive, through
eigendecompositions (García-Hinde et al. 2022, eqs. 4-5).

Model: ``vec(Y) ~ N(0, C (x) K + Sigma (x) I_N)`` for ``Y`` (N, T), with
``vec`` the **output-major** (column-stacking) vectorisation: entry ``t * N + i``
of ``vec(Y)`` is ``Y[i, t]`` (output t, point i; the paper's "task"). This is the ordering in which
``C (x) K`` is written; the joint predictive with ``full_cov=True`` uses the
same ordering over the test points (entry ``t * n + j``).

Exact O(N^3 + T^3) route (never an NT x NT inverse):

    K = U diag(s) U^T,  Sigma = L L^T,  L^-1 C L^-T = Q diag(lam) Q^T,  M = L Q
    C (x) K + Sigma (x) I = (M (x) U) (diag(lam) (x) diag(s) + I) (M (x) U)^T

so with ``Yt = U^T Y L^-T Q`` and ``D[i, t] = s_i lam_t + 1``

    log|.| = N log|Sigma| + sum log D,      quad = sum Yt^2 / D,
    mean(X*) = K* U (Yt / D) (M diag(lam))^T,
    cov(x*)  = C k** - G diag(sum_i (U^T k*)_i^2 / D[i, :]) G^T,  G = M diag(lam).

Eq. (5) uses ``Sigma (x) I``; Algorithm 4's ``Sigma^-1`` is a typo (NOTES.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..linalg import LOG_2PI, cholesky, logdet_from_chol, report_jitter, safe_cholesky, symmetrize, tri_solve

__all__ = [
    "EigenPredictor",
    "mtgp_log_likelihood",
    "vec",
    "unvec",
]


def vec(Y):
    """Output-major vectorisation of (N, T) ``Y``: ``[Y[:, 0]; Y[:, 1]; ...]``."""
    return jnp.asarray(Y).T.reshape(-1)


def unvec(v, T):
    """Inverse of :func:`vec`: (N*T,) -> (N, T)."""
    return jnp.asarray(v).reshape(T, -1).T


# --------------------------------------------------------------------------
# factorisation shared by the likelihood and the predictive
# --------------------------------------------------------------------------

def _factorise(K, C, L):
    """Eigen factorisation of C (x) K + L L^T (x) I (see module docstring)."""
    s, U = jnp.linalg.eigh(symmetrize(K))
    s = jnp.clip(s, 0.0)  # K is PSD; clip round-off negatives
    Ct = tri_solve(L, tri_solve(L, C).T)  # L^-1 C L^-T
    lam, Q = jnp.linalg.eigh(symmetrize(Ct))
    lam = jnp.clip(lam, 0.0)
    D = s[:, None] * lam[None, :] + 1.0
    return s, U, lam, Q, D


def _whiten(Y, U, L, Q):
    Z = tri_solve(L, Y.T).T  # Y L^-T
    return U.T @ Z @ Q


def _loglik_parts(K, C, Sigma, Y):
    L = cholesky(Sigma)
    s, U, lam, Q, D = _factorise(K, C, L)
    Yt = _whiten(Y, U, L, Q)
    N, T = Y.shape
    quad = jnp.sum(Yt**2 / D)
    logdet = N * logdet_from_chol(L) + jnp.sum(jnp.log(D))
    ll = -0.5 * (quad + logdet + N * T * LOG_2PI)
    return ll, (K, C, Y, s, U, lam, Q, D, L, Yt)


@jax.custom_vjp
def mtgp_log_likelihood(K, C, Sigma, Y):
    """log N(vec Y | 0, C (x) K + Sigma (x) I)  (eq. 4), exactly, in
    O(N^3 + T^3); reverse-mode gradients are analytic (custom VJP) so that
    degenerate eigenvalues (e.g. a linear kernel with D < N, or a low-rank C)
    never enter a derivative. NaN when ``Sigma`` is not positive definite."""
    return _loglik_parts(K, C, Sigma, Y)[0]


def _ll_fwd(K, C, Sigma, Y):
    ll, res = _loglik_parts(K, C, Sigma, Y)
    return ll, res


def _ll_bwd(res, g):
    K, C, Y, s, U, lam, Q, D, L, Yt = res
    # Alpha = unvec(A^-1 vec Y) = U (Yt / D) Q^T L^-1
    R = (Yt / D) @ Q.T
    Alpha = U @ tri_solve(L, R.T, trans=True).T

    def minv_diag(d):  # M^-T diag(d) M^-1 = L^-T Q diag(d) Q^T L^-1
        Z = tri_solve(L, Q * d[None, :], trans=True)  # L^-T Q diag(d)
        return tri_solve(L, (Z @ Q.T).T, trans=True).T

    inv_sum_lam = jnp.sum(lam[None, :] / D, axis=1)
    gK = 0.5 * (Alpha @ C @ Alpha.T - (U * inv_sum_lam[None, :]) @ U.T)
    gC = 0.5 * (Alpha.T @ K @ Alpha - minv_diag(jnp.sum(s[:, None] / D, axis=0)))
    gS = 0.5 * (Alpha.T @ Alpha - minv_diag(jnp.sum(1.0 / D, axis=0)))
    gY = -Alpha
    return (g * symmetrize(gK), g * symmetrize(gC), g * symmetrize(gS), g * gY)


mtgp_log_likelihood.defvjp(_ll_fwd, _ll_bwd)


# --------------------------------------------------------------------------
# the exact predictor
# --------------------------------------------------------------------------

class EigenPredictor:
    """Exact eq. (5) predictive for given C, Sigma and training kernel matrix.

    Factorises once in O(N^3 + T^3); then the mean costs O(n N T), the per-point
    output covariances O(n N T + n T^2) and the joint one O(n^2 N T + n^2 T^2).
    A numerically singular ``Sigma`` (e.g. low rank) gets the smallest
    diagonal jitter that makes it factorisable, with a ``JitterWarning``.
    """

    def __init__(self, K, C, Sigma, Y, where: str = "predictive"):
        K = jnp.asarray(K)
        C = jnp.asarray(C)
        Sigma = jnp.asarray(Sigma)
        Y = jnp.asarray(Y)
        L, added = safe_cholesky(Sigma)
        report_jitter(added, f"{where}: noise covariance Sigma")
        self.sigma_jitter = float(added)
        s, U, lam, Q, D = _factorise(K, C, L)
        Yt = _whiten(Y, U, L, Q)
        self.C = C
        self.Sigma = Sigma + self.sigma_jitter * jnp.eye(Sigma.shape[0])
        self.U = U
        self.invD = 1.0 / D
        self.G = (L @ Q) * lam[None, :]  # M diag(lam)
        self.P = U @ (Yt / D)  # so that mean = K* P G^T
        N, T = Y.shape
        self.log_likelihood = float(
            -0.5 * (jnp.sum(Yt**2 / D) + N * logdet_from_chol(L) + jnp.sum(jnp.log(D)) + N * T * LOG_2PI)
        )

    def mean(self, Ks):
        """Predictive mean (n, T) of eq. (5) from the cross-kernel Ks (n, N)."""
        return np.asarray(Ks @ self.P @ self.G.T)

    def point_cov(self, Ks, kss_diag, include_noise=False):
        """Output covariances (n, T, T) at each test point (eq. 5), given
        Ks (n, N) and the test points' prior variances ``kss_diag`` (n,);
        ``include_noise`` adds Sigma."""
        V = Ks @ self.U
        W = (V**2) @ self.invD  # (n, T)
        cov = self.C[None] * kss_diag[:, None, None] - jnp.einsum("ts,xs,us->xtu", self.G, W, self.G)
        if include_noise:
            cov = cov + self.Sigma[None]
        return np.asarray(symmetrize(cov))

    def joint_cov(self, Ks, Kss, include_noise=False):
        """Joint covariance (nT, nT), output-major, over test points and
        outputs (eq. 5), given Ks (n, N) and Kss (n, n)."""
        n = Ks.shape[0]
        T = self.C.shape[0]
        V = Ks @ self.U
        A = jnp.einsum("xi,is,yi->sxy", V, self.invD, V)  # (T, n, n)
        cov = jnp.einsum("tu,xy->txuy", self.C, Kss) - jnp.einsum("ts,us,sxy->txuy", self.G, self.G, A)
        cov = cov.reshape(T * n, T * n)
        if include_noise:
            cov = cov + jnp.kron(self.Sigma, jnp.eye(n))
        return np.asarray(symmetrize(cov))
