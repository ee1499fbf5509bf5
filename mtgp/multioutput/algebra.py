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

from ..linalg import (LOG_2PI, cho_solve, cholesky, gaussian_logpdf, logdet_from_chol, mask_padded, report_jitter,
                      safe_cholesky, symmetrize, tri_solve)

__all__ = [
    "EigenPredictor",
    "MaskedPredictor",
    "complement_masked_log_likelihood",
    "condition_on_own_row_noise",
    "condition_on_row_outputs",
    "coregional_masked_log_likelihood",
    "make_predictor",
    "masked_log_likelihood",
    "mtgp_log_likelihood",
    "observed_covariance",
    "observed_index",
    "observed_values",
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

def _to_device(a):
    """``jnp.asarray(a)`` without compiling a copy program (jax >= 0.10
    compiles one per shape for a numpy array; ``jax.device_put`` does not)."""
    return a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))


def _eigen_parts(K, C, L, Y):
    """What :class:`EigenPredictor` keeps, given the Cholesky factor ``L`` of
    Sigma: U, 1 / D, G = M diag(lam), P = U (Yt / D) and eq. (4)."""
    s, U, lam, Q, D = _factorise(K, C, L)
    Yt = _whiten(Y, U, L, Q)
    N, T = Y.shape
    ll = -0.5 * (jnp.sum(Yt**2 / D) + N * logdet_from_chol(L) + jnp.sum(jnp.log(D)) + N * T * LOG_2PI)
    return dict(U=U, invD=1.0 / D, G=(L @ Q) * lam[None, :], P=U @ (Yt / D), log_likelihood=ll)


_eigen_parts_jit = jax.jit(_eigen_parts)


@jax.jit
def _eigen_first_try(K, C, Sigma, Y):
    L = cholesky(Sigma)  # safe_cholesky's first try (the same factor when it succeeds)
    return _eigen_parts(K, C, L, Y), jnp.all(jnp.isfinite(L))


def eigen_log_likelihood(K, C, Sigma, Y) -> float:
    """Eq. (4) as a float (NaN when ``Sigma`` is not positive definite),
    through the compiled program of :class:`EigenPredictor` (the fit's
    predictor then reuses it: one program fewer than
    :func:`mtgp_log_likelihood` in a first fit, issue 11). Equal to
    :func:`mtgp_log_likelihood` to rounding."""
    parts, ok = _eigen_first_try(*(_to_device(a) for a in (K, C, Sigma, Y)))
    return float(parts["log_likelihood"]) if bool(ok) else float("nan")


def _complete_point_cov(C, U, invD, G, Ks, kss_diag):
    """Per-point output covariances (n, T, T) of eq. (5) with every entry
    observed, from the eigen factors: C k(x, x) - G diag(sum_i (U^T k*)_i^2
    / D[i, :]) G^T."""
    V = Ks @ U
    return C[None] * kss_diag[:, None, None] - jnp.einsum("ts,xs,us->xtu", G, (V**2) @ invD, G)


@jax.jit
def _cross_mean(Ks, W, G):
    """Predictive mean (n, T) Ks W G^T of eq. (5), as one compiled program
    (W, G = P, G of the eigen route; alpha, C given missing entries)."""
    return Ks @ W @ G.T


@jax.jit
def _eigen_point_cov(C, U, invD, G, Ks, kss_diag, noise):
    """:func:`_complete_point_cov` plus ``noise`` (Sigma, or zeros), made
    symmetric: one compiled program, not one per operation."""
    return symmetrize(_complete_point_cov(C, U, invD, G, Ks, kss_diag) + noise[None])


def _complete_joint_cov(C, U, invD, G, Ks, Kss):
    """Joint covariance (T n, T n), output-major, of eq. (5) with every entry
    observed, from the eigen factors."""
    n, T = Ks.shape[0], C.shape[0]
    V = Ks @ U
    A = jnp.einsum("xi,is,yi->sxy", V, invD, V)  # (T, n, n)
    cov = jnp.einsum("tu,xy->txuy", C, Kss) - jnp.einsum("ts,us,sxy->txuy", G, G, A)
    return cov.reshape(T * n, T * n)


class EigenPredictor:
    """Exact eq. (5) predictive for given C, Sigma and training kernel matrix.

    Factorises once in O(N^3 + T^3); then the mean costs O(n N T), the per-point
    output covariances O(n N T + n T^2) and the joint one O(n^2 N T + n^2 T^2).
    A numerically singular ``Sigma`` (e.g. low rank) gets the smallest
    diagonal jitter that makes it factorisable, with a ``JitterWarning``.
    """

    def __init__(self, K, C, Sigma, Y, where: str = "predictive"):
        K, C, Sigma, Y = (_to_device(a) for a in (K, C, Sigma, Y))
        # one compiled program (issue 11: eagerly, this factorisation compiled
        # ~40 small programs in a first fit); the plain Cholesky of Sigma
        # first, safe_cholesky's jitter loop only when it fails
        parts, ok = _eigen_first_try(K, C, Sigma, Y)
        added = 0.0
        if not bool(ok):
            L, added = safe_cholesky(Sigma)
            report_jitter(added, f"{where}: noise covariance Sigma")
            parts = _eigen_parts_jit(K, C, L, Y)
        self.sigma_jitter = float(added)
        self.C = C
        self.Sigma = Sigma if self.sigma_jitter == 0.0 else Sigma + self.sigma_jitter * jnp.eye(Sigma.shape[0])
        self.U, self.invD, self.G, self.P = parts["U"], parts["invD"], parts["G"], parts["P"]
        self.log_likelihood = float(parts["log_likelihood"])

    def mean(self, Ks):
        """Predictive mean (n, T) of eq. (5) from the cross-kernel Ks (n, N)."""
        return np.asarray(_cross_mean(Ks, self.P, self.G))

    def point_cov(self, Ks, kss_diag, include_noise=False):
        """Output covariances (n, T, T) at each test point (eq. 5), given
        Ks (n, N) and the test points' prior variances ``kss_diag`` (n,);
        ``include_noise`` adds Sigma."""
        noise = self.Sigma if include_noise else np.zeros(self.Sigma.shape)
        return np.asarray(_eigen_point_cov(self.C, self.U, self.invD, self.G, Ks, kss_diag, noise))

    def joint_cov(self, Ks, Kss, include_noise=False):
        """Joint covariance (nT, nT), output-major, over test points and
        outputs (eq. 5), given Ks (n, N) and Kss (n, n)."""
        cov = _complete_joint_cov(self.C, self.U, self.invD, self.G, Ks, Kss)
        if include_noise:
            cov = cov + jnp.kron(self.Sigma, jnp.eye(Ks.shape[0]))
        return np.asarray(symmetrize(cov))


# --------------------------------------------------------------------------
# missing outputs: the model restricted to the observed entries
# --------------------------------------------------------------------------
#
# With NaN in Y the likelihood and the predictive are those of the observed
# entries O of vec(Y) alone: the Gaussian N(y_O | 0, A_OO) with
# A = C (x) K + Sigma (x) I, i.e. the joint model marginalised over the
# missing entries (exact; no imputation). A_OO is no longer a Kronecker
# product, so it is factorised densely: O(|O|^3) time and O(|O|^2) memory,
# with |O| <= N T the number of observed entries. It is gathered entry by
# entry from K (N, N), C and Sigma (T, T) -- A_OO[o, o'] = C[t_o, t_o'] K[i_o,
# i_o'] + Sigma[t_o, t_o'] [i_o == i_o'] -- so the (NT x NT) matrix is never
# formed. Data with nothing missing keep the O(N^3 + T^3) eigen route above
# (the two agree to round-off, tests/multioutput/test_missing_outputs.py).
# ICM's structure (C = A A^T + diag, diagonal Sigma) gives an exact
# O(T N^3 + (P N)^3) form of the same likelihood through its latent
# processes (:func:`coregional_masked_log_likelihood`), used in its fits.


def observed_index(Y):
    """Observed entries of (N, T) ``Y`` (NaN = missing) in output-major order
    (that of :func:`vec`): ``(rows i_o, outputs t_o)``, int arrays of length |O|."""
    obs = ~np.isnan(np.asarray(Y, dtype=float))
    t_o, i_o = np.nonzero(obs.T)
    return i_o.astype(np.int32), t_o.astype(np.int32)


def observed_values(Y):
    """``vec(Y)`` restricted to its observed entries (output-major)."""
    Y = np.asarray(Y, dtype=float)
    v = Y.T.reshape(-1)
    return v[~np.isnan(v)]


def observed_covariance(K, C, Sigma, i_o, t_o):
    """A_OO = (C (x) K + Sigma (x) I)[O, O] gathered from K, C, Sigma (|O|, |O|)."""
    same = i_o[:, None] == i_o[None, :]
    Ct = C[t_o[:, None], t_o[None, :]]
    St = Sigma[t_o[:, None], t_o[None, :]]
    return K[i_o[:, None], i_o[None, :]] * Ct + jnp.where(same, St, 0.0)


def masked_log_likelihood(K, C, Sigma, y_o, i_o, t_o):
    """log N(y_O | 0, A_OO): eq. (4) marginalised over the missing entries
    (``y_o`` = :func:`observed_values`, ``i_o, t_o`` = :func:`observed_index`).
    Dense Cholesky of A_OO, O(|O|^3); differentiable by autodiff (Cholesky
    gradients need no eigenvalue gaps). NaN when A_OO is not positive definite."""
    L = cholesky(observed_covariance(K, C, Sigma, i_o, t_o))
    return gaussian_logpdf(y_o, L)


def _coregional_parts(K, A, kappa, s2, Y0, W):
    """Forward of :func:`coregional_masked_log_likelihood` and what its
    gradient needs."""
    N, T = Y0.shape
    P = A.shape[1]
    W = jnp.asarray(W, K.dtype)
    eye = jnp.eye(N, dtype=K.dtype)
    B = jax.vmap(lambda k, s, w: mask_padded(k * K + s * eye, w), in_axes=(0, 0, 1))(kappa, s2, W)  # (T, N, N)
    Lb = cholesky(B)
    Linv = tri_solve(Lb, jnp.broadcast_to(eye, B.shape))
    Bi = jnp.einsum("tki,tkj->tij", Linv, Linv) * (W.T[:, :, None] * W.T[:, None, :])  # W_t B_t^-1 W_t
    Y0 = Y0 * W
    Biy = jnp.einsum("tij,jt->it", Bi, Y0)  # (N, T): B_t^-1 y_t
    M = jnp.einsum("tp,tq,tij->piqj", A, A, Bi).reshape(P * N, P * N)
    GM = jnp.einsum("ij,pjqk->piqk", K, M.reshape(P, N, P, N)).reshape(P * N, P * N)
    cap = jnp.eye(P * N, dtype=K.dtype) + GM
    sign, logdet_cap = jnp.linalg.slogdet(cap)
    H = symmetrize(jnp.linalg.solve(cap, jnp.kron(jnp.eye(P, dtype=K.dtype), K)))  # (I + G M)^-1 G
    u = (Biy @ A).T.reshape(-1)  # vec over (p, i), the order of M's rows
    Hu = (H @ u).reshape(P, N)
    quad = jnp.sum(Y0 * Biy) - u @ H @ u
    ll = -0.5 * (quad + jnp.sum(logdet_from_chol(Lb)) + logdet_cap + jnp.sum(W) * LOG_2PI)
    ll = jnp.where(sign > 0, ll, jnp.nan)
    alpha = Biy - jnp.einsum("tij,jt->it", Bi, Hu.T @ A.T)  # a = A_OO^-1 y, (N, T), 0 where missing
    return ll, (K, A, kappa, Bi, H, alpha)


@jax.custom_vjp
def coregional_masked_log_likelihood(K, A, kappa, s2, Y0, W):
    """log N(y_O | 0, A_OO) for the coregionalisation model C = A A^T +
    diag(kappa), Sigma = diag(s2) (ICM / Std-MT, A of shape (T, P)) without
    forming A_OO: equal to :func:`masked_log_likelihood` with those C and
    Sigma (tests/multioutput/test_missing_outputs.py), in O(T N^3 + (P N)^3)
    instead of O(|O|^3).

    ``Y0`` (N, T) holds the outputs with 0 at the missing entries, ``W`` (N,
    T) is 1 where observed, 0 where missing.

    The model is y_t = F a_t + g_t + e_t with F (N, P) independent GPs of
    covariance K, g_t ~ GP(0, kappa_t K) and e_t ~ N(0, s2_t) (Bonilla et al.
    2008's ICM written through its latent processes). Per output, the observed
    rows' B_t = kappa_t K + s2_t I (padded to N, :func:`mask_padded`); with S
    the map from vec(F) to the observed entries and G = I_P (x) K,
    A_OO = B + S G S^T, so by Woodbury and the determinant lemma, with
    M = S^T B^-1 S and u = S^T B^-1 y:

        y^T A_OO^-1 y = y^T B^-1 y - u^T (I + G M)^-1 G u
        log|A_OO|     = sum_t log|B_t| + log|I + G M|

    (I + G M has eigenvalues >= 1: no inverse of the possibly singular K is
    needed). NaN when a factor fails (as the dense form).

    Reverse-mode gradients are analytic (custom VJP): with a = A_OO^-1 y
    and Omega = (a a^T - A_OO^-1) / 2, the gradients w.r.t. C (x) K and
    Sigma (x) I give dC_tu = <Omega_tu, K>, dK = sum_tu C_tu Omega_tu and
    dSigma_tt = tr Omega_tt, where by Woodbury A_OO^-1's (t, u) block is
    delta_tu B_t^-1 - E_t H E_u^T with E_t = B_t^-1 (A[t] (x) I_N) and
    H = (I + G M)^-1 G; then dA = 2 dC A, dkappa = diag dC. O(T P N^3 +
    T^2 P N^2), about a third of differentiating the forward pass."""
    return _coregional_parts(K, A, kappa, s2, Y0, W)[0]


def _coregional_fwd(K, A, kappa, s2, Y0, W):
    ll, res = _coregional_parts(K, A, kappa, s2, Y0, W)
    return ll, (res, W)


def _coregional_bwd(saved, g):
    (K, A, kappa, Bi, H, alpha), W = saved
    N, P = Bi.shape[1], A.shape[1]
    C = A @ A.T + jnp.diag(kappa)
    Ht = jnp.einsum("tp,pjqk->tjqk", A, H.reshape(P, N, P, N))
    EH = jnp.einsum("tij,tjqk->tiqk", Bi, Ht)  # E_t H, (T, N, P, N)
    KB = jnp.einsum("ij,tjk->tik", K, Bi)  # K B_t^-1
    # <(A_OO^-1)_tu, K>, sum_tu C_tu (A_OO^-1)_tu and tr (A_OO^-1)_tt
    inv_k = jnp.diag(jnp.einsum("tij,ij->t", Bi, K)) - jnp.einsum("tiqk,uq,uik->tu", EH, A, KB)
    F = jnp.einsum("tu,uq,ukl->tqkl", C, A, Bi)  # sum_u C_tu E_u^T, (T, P, N, N)
    inv_c = jnp.einsum("t,tij->ij", jnp.diagonal(C), Bi) - jnp.einsum("tiqk,tqkl->il", EH, F)
    inv_tr = jnp.einsum("tii->t", Bi) - jnp.einsum("tiqk,tq,tik->t", EH, A, Bi)
    gC = symmetrize(0.5 * (alpha.T @ K @ alpha - inv_k))
    gK = symmetrize(0.5 * (alpha @ C @ alpha.T - inv_c))
    gs2 = 0.5 * (jnp.sum(alpha**2, axis=0) - inv_tr)
    return (g * gK, g * 2.0 * gC @ A, g * jnp.diagonal(gC), g * gs2, -g * alpha, jnp.zeros_like(W))


coregional_masked_log_likelihood.defvjp(_coregional_fwd, _coregional_bwd)


def _complement_parts(K, C, Sigma, Y0, m_i, m_t):
    """Forward of :func:`complement_masked_log_likelihood` and what its
    gradient needs."""
    N, T = Y0.shape
    L = cholesky(Sigma)
    s, U, lam, Q, D = _factorise(K, C, L)
    Minv = tri_solve(L, Q, trans=True)  # L^-T Q: A^-1 = (Minv (x) U) diag(1/D) (Minv (x) U)^T
    Y0 = Y0.at[m_i, m_t].set(0.0)
    Yt = _whiten(Y0, U, L, Q)
    Alpha0 = U @ ((Yt / D) @ Minv.T)  # unvec(A^-1 vec Y0), (N, T)
    # columns of A^-1 at the missing entries, each as an (N, T) matrix
    H = U[m_i][:, :, None] * Minv[m_t][:, None, :] / D[None]  # (|M|, N, T)
    Pm = jnp.einsum("is,ksr,tr->kit", U, H, Minv)
    P_mm = Pm[:, m_i, m_t]  # (A^-1)_MM
    Lm = cholesky(P_mm)
    b = Alpha0[m_i, m_t]
    wb = tri_solve(Lm, b)
    quad = jnp.sum(Y0 * Alpha0) - jnp.sum(wb**2)
    logdet = N * logdet_from_chol(L) + jnp.sum(jnp.log(D)) + logdet_from_chol(Lm)
    n_obs = N * T - m_i.shape[0]
    ll = -0.5 * (quad + logdet + n_obs * LOG_2PI)
    return ll, (K, C, s, U, lam, Q, D, L, Minv, Alpha0, Pm, Lm, b)


def _observed_alpha(Alpha0, Pm, Lm, b, m_i, m_t):
    """a = A_OO^-1 y_O padded with zeros, (N, T): A^-1 y0 - P_:M P_MM^-1 b
    (zero at the missing entries up to round-off; set exactly)."""
    return (Alpha0 - jnp.einsum("k,kit->it", cho_solve(Lm, b), Pm)).at[m_i, m_t].set(0.0)


@jax.custom_vjp
def complement_masked_log_likelihood(K, C, Sigma, Y0, m_i, m_t):
    """log N(y_O | 0, A_OO) through the eigen route of the complete data
    (module docstring) and the |M| missing entries (rows ``m_i``, outputs
    ``m_t``; ``Y0`` holds anything there): O(N^3 + T^3 + |M| N^2 T + |M|^3)
    instead of O(|O|^3), the cheaper form when few entries are missing.
    Equal to :func:`masked_log_likelihood` (tests).

    With P = A^-1 (the full NT x NT inverse, never formed: eigen factors),
    ``|A_OO| = |A| |P_MM|`` and ``A_OO^-1 = P_OO - P_OM P_MM^-1 P_MO``, so with
    y0 = y_O padded with zeros and b = (P y0)_M

        y_O^T A_OO^-1 y_O = y0^T P y0 - b^T P_MM^-1 b,
        log |A_OO|        = log |A| + log |P_MM|.

    Reverse-mode gradients are analytic (custom VJP, as
    :func:`mtgp_log_likelihood`: no derivative of an eigendecomposition):
    the gradient w.r.t. the full covariance is
    0.5 (a a^T - P + P_:M P_MM^-1 P_M:) with a = A_OO^-1 y_O padded with zeros.
    NaN when Sigma or P_MM is not positive definite."""
    return _complement_parts(K, C, Sigma, Y0, m_i, m_t)[0]


def _complement_fwd(K, C, Sigma, Y0, m_i, m_t):
    ll, res = _complement_parts(K, C, Sigma, Y0, m_i, m_t)
    return ll, (res, m_i, m_t)


def _complement_bwd(saved, g):
    (K, C, s, U, lam, Q, D, L, Minv, Alpha0, Pm, Lm, b), m_i, m_t = saved
    # a = A_OO^-1 y_O padded: A^-1 y0 - P_:M P_MM^-1 b (zero at the missing entries)
    Alpha = _observed_alpha(Alpha0, Pm, Lm, b, m_i, m_t)
    R = tri_solve(Lm, Pm.reshape(Pm.shape[0], -1)).reshape(Pm.shape)  # columns of P_:M Lm^-T, (|M|, N, T)

    def minv_diag(d):  # Minv diag(d) Minv^T
        return (Minv * d[None, :]) @ Minv.T

    inv_sum_lam = jnp.sum(lam[None, :] / D, axis=1)
    gK = 0.5 * (Alpha @ C @ Alpha.T - (U * inv_sum_lam[None, :]) @ U.T
                + jnp.einsum("kit,tu,kju->ij", R, C, R))
    gC = 0.5 * (Alpha.T @ K @ Alpha - minv_diag(jnp.sum(s[:, None] / D, axis=0))
                + jnp.einsum("kit,ij,kju->tu", R, K, R))
    gS = 0.5 * (Alpha.T @ Alpha - minv_diag(jnp.sum(1.0 / D, axis=0)) + jnp.einsum("kit,kiu->tu", R, R))
    return (g * symmetrize(gK), g * symmetrize(gC), g * symmetrize(gS), -g * Alpha, None, None)


complement_masked_log_likelihood.defvjp(_complement_fwd, _complement_bwd)


def complement_cost_ratio(N, T, n_missing):
    """Rough cost ratio of :func:`complement_masked_log_likelihood` to the
    dense :func:`masked_log_likelihood` (value and gradient): eigen
    decompositions of N x N and T x T, the |M| columns of A^-1 and a
    Cholesky of |M| x |M|, against one Cholesky of |O| x |O| and its
    gradient; coefficients from timings at T = 2, N = 614 (10-50% missing:
    0.2 / 0.7 / 4.8 measured, 0.21 / 0.74 / 3.0 predicted), the |M| columns'
    term growing with T as measured in docs/results/multioutput_many.md
    (T = 4, N = 100-600, 30% missing: 0.28-0.35 measured, 0.38 predicted;
    T = 16, N = 50-200, 10%: 0.025-0.066 measured, 0.026 predicted, where
    ICM's latent-process form, 0.015-0.035, is the cheaper)."""
    m = float(n_missing)
    return ((4.0 * N**3 + (5.0 + 0.6 * T) * m * N**2 * T + m**3)
            / max(5.0 * float(N * T - n_missing) ** 3, 1.0))


def coregional_cost_ratio(N, T, P, n_obs):
    """Rough flop ratio of :func:`coregional_masked_log_likelihood` to the
    dense :func:`masked_log_likelihood` (value and gradient): T Choleskys and
    inverses of N x N and one LU of PN x PN against one Cholesky of
    |O| x |O|. Below 1, the factored form is the cheaper."""
    return (3.0 * T * N**3 + 2.0 * (P * N) ** 3) / max(float(n_obs) ** 3, 1.0)


def impute_missing(K, C, Sigma, alpha, Y):
    """``Y`` with each missing entry replaced by its conditional mean
    E[y_M | y_O] = A_MO A_OO^-1 y_O = [K a C^T + a Sigma]_M, ``alpha`` the
    (N, T) matrix a = A_OO^-1 y_O (zero at the missing entries)."""
    a = jnp.asarray(alpha)
    full = np.asarray(K @ a @ C.T + a @ Sigma)
    Y = np.asarray(Y, dtype=float)
    return np.where(np.isnan(Y), full, Y)


class MaskedPredictor:
    """Exact eq. (5) predictive given only the observed entries of ``Y``
    (NaN = missing): the Gaussian conditional of the test outputs on y_O,
    through one dense Cholesky of A_OO (O(|O|^3); see the comment above).
    Same interface as :class:`EigenPredictor`. Costs after the
    factorisation: mean O(n |O| T), per-point covariances O(n T |O|^2),
    joint O(n T |O|^2 + n^2 T^2)."""

    #: the test points are processed in chunks of at most this many
    #: (chunk * T * |O|) entries of the solve's right-hand side
    CHUNK_ENTRIES = 1 << 24

    def __init__(self, K, C, Sigma, Y, where: str = "predictive"):
        K = jnp.asarray(K)
        self.C = jnp.asarray(C)
        Sigma = jnp.asarray(Sigma)
        Y = np.asarray(Y, dtype=float)
        self.i_o, self.t_o = observed_index(Y)
        self.shape = Y.shape
        y_o = jnp.asarray(observed_values(Y))
        A = observed_covariance(K, self.C, Sigma, jnp.asarray(self.i_o), jnp.asarray(self.t_o))
        L, added = safe_cholesky(A)
        report_jitter(added, f"{where}: observed-entry covariance")
        self.sigma_jitter = float(added)
        self.L = L
        self.Sigma = Sigma
        self.alpha = cho_solve(L, y_o)  # A_OO^-1 y_O
        self.log_likelihood = float(gaussian_logpdf(y_o, L))
        self._Ct = self.C[:, jnp.asarray(self.t_o)]  # (T, |O|): C[t, t_o]
        self.K = K

    def alpha_matrix(self):
        """A_OO^-1 y_O scattered into (N, T), zero at the missing entries."""
        a = np.zeros(self.shape)
        a[self.i_o, self.t_o] = np.asarray(self.alpha)
        return a

    def impute(self, Y):
        """``Y`` with each missing entry replaced by its conditional mean
        E[y_M | y_O] = A_MO A_OO^-1 y_O = [K a C^T + a Sigma]_M (a = :meth:`alpha_matrix`)."""
        return impute_missing(self.K, self.C, self.Sigma, self.alpha_matrix(), Y)

    def mean(self, Ks):
        """Predictive mean (n, T) of f* given the observed entries y_O (eq. 5
        restricted to O): (C (x) K*)[:, O] alpha_O. ``Ks`` (n, N) = k(X*, X)."""
        return np.asarray((Ks[:, jnp.asarray(self.i_o)] * self.alpha[None, :]) @ self._Ct.T)

    def _chunks(self, n):
        T, m = self.C.shape[0], len(self.i_o)
        step = max(1, int(self.CHUNK_ENTRIES // max(1, T * m)))
        return [(a, min(n, a + step)) for a in range(0, n, step)]

    def point_cov(self, Ks, kss_diag, include_noise=False):
        """T x T predictive covariance at each point (n, T, T): C k(x, x) -
        B_x (Sigma_OO)^-1 B_x^T with B_x = cov(f*(x), y_O); plus Sigma with
        ``include_noise`` (y*). Computed in chunks of points to bound memory."""
        Ko = Ks[:, jnp.asarray(self.i_o)]  # (n, |O|)
        n, T = Ks.shape[0], self.C.shape[0]
        out = []
        for a, b in self._chunks(n):
            B = Ko[a:b, None, :] * self._Ct[None]  # (c, T, |O|): cov(f*(x_j)_t, y_O)
            V = tri_solve(self.L, B.reshape(-1, B.shape[-1]).T).reshape(-1, b - a, T)  # (|O|, c, T)
            out.append(self.C[None] * kss_diag[a:b, None, None] - jnp.einsum("ojt,oju->jtu", V, V))
        cov = jnp.concatenate(out, axis=0)
        if include_noise:
            cov = cov + self.Sigma[None]
        return np.asarray(symmetrize(cov))

    def joint_cov(self, Ks, Kss, include_noise=False):
        """Joint predictive covariance (T n, T n), output-major, over all
        points and outputs given y_O; plus Sigma (x) I with ``include_noise``."""
        Ko = Ks[:, jnp.asarray(self.i_o)]
        n, T = Ks.shape[0], self.C.shape[0]
        B = (self._Ct[:, None, :] * Ko[None]).reshape(T * n, -1)  # output-major rows t * n + j
        V = tri_solve(self.L, B.T)
        cov = jnp.kron(self.C, Kss) - V.T @ V
        if include_noise:
            cov = cov + jnp.kron(self.Sigma, jnp.eye(n))
        return np.asarray(symmetrize(cov))


@jax.jit
def _complement_predictor_parts(K, C, Sigma, Y0, m_i, m_t):
    ll, (_, _, _, U, _, _, D, _, Minv, Alpha0, Pm, Lm, b) = _complement_parts(K, C, Sigma, Y0, m_i, m_t)
    alpha = _observed_alpha(Alpha0, Pm, Lm, b, m_i, m_t)
    finite = jnp.isfinite(ll) & jnp.all(jnp.isfinite(Lm)) & jnp.all(jnp.isfinite(alpha))
    return dict(log_likelihood=ll, U=U, invD=1.0 / D, G=C @ Minv, Pm=Pm, Lm=Lm, alpha=alpha), finite


@jax.jit
def _complement_point_cov(C, U, invD, G, Pm, Lm, Ks, kss_diag, noise):
    """C k(x, x) - B A_OO^-1 B^T per point, B = cov(f*(x), y_O). With P =
    A^-1 and b = cov(f*(x), y) over all N T entries (its observed part is
    B), the Schur complement A_OO^-1 = P_OO - P_OM P_MM^-1 P_MO gives

        B A_OO^-1 B^T = b P b^T - (b P)_M P_MM^-1 (b P)_M^T,

    so the covariance is the complete-data one (:func:`_complete_point_cov`)
    plus a positive term for the entries not observed. (The
    form with b's missing columns zeroed cancels terms of order 1/noise and
    lost 5 digits at a noise of 1e-6.) ``noise`` (Sigma, or zeros) is
    added, and the result made symmetric."""
    complete = _complete_point_cov(C, U, invD, G, Ks, kss_diag)
    bPm = jnp.einsum("xi,kiu,tu->xtk", Ks, Pm, C)  # (b P)_M, (n, T, |M|)
    n, T, m = bPm.shape
    W = tri_solve(Lm, bPm.reshape(n * T, m).T).reshape(m, n, T)  # Lm^-1 (b P)_M^T
    return symmetrize(complete + jnp.einsum("kxt,kxu->xtu", W, W) + noise[None])


@jax.jit
def _complement_joint_cov(C, U, invD, G, Pm, Lm, Ks, Kss):
    """Joint covariance (T n, T n), output-major, of f* given y_O: the
    complete-data one (:func:`_complete_joint_cov`) plus W^T W with
    W = Lm^-1 (b P)_M^T and b = cov(f*, y) over all N T entries: the Schur
    complement of :func:`_complement_point_cov` over all test points at once."""
    n, T = Ks.shape[0], C.shape[0]
    bPm = jnp.einsum("xi,kiu,tu->txk", Ks, Pm, C).reshape(T * n, -1)  # (b P)_M, output-major rows
    W = tri_solve(Lm, bPm.T)  # (|M|, T n)
    return _complete_joint_cov(C, U, invD, G, Ks, Kss) + W.T @ W


class ComplementPredictor:
    """Exact eq. (5) predictive given only the observed entries of ``Y``,
    as :class:`MaskedPredictor` (equal to round-off, tests), through the
    complete data's eigen factors and the |M| missing entries (the route of
    :func:`complement_masked_log_likelihood`): A_OO^-1 = P_OO - P_OM
    P_MM^-1 P_MO with P = (C (x) K + Sigma (x) I)^-1. Built in
    O(N^3 + T^3 + |M| N^2 T + |M|^3) instead of O(|O|^3); per-point
    covariances O(n N (N + |M| T) + n T |M|^2), the joint one (``full_cov``)
    the same route over all points at once.
    :func:`make_predictor` takes it when few entries are missing and falls
    back to the dense predictor when a factor fails (Sigma or P_MM not
    positive definite)."""

    #: test points per chunk: at most this many (chunk * T * |M|) entries
    CHUNK_ENTRIES = 1 << 22

    def __init__(self, K, C, Sigma, Y, where: str = "predictive"):
        Y = np.asarray(Y, dtype=float)
        m_i, m_t = (v.astype(np.int32) for v in np.nonzero(np.isnan(Y)))
        self.K, self.C, self.Sigma = (jnp.asarray(a) for a in (K, C, Sigma))
        self.m_i, self.m_t = jnp.asarray(m_i), jnp.asarray(m_t)
        parts, finite = _complement_predictor_parts(self.K, self.C, self.Sigma,
                                                    jnp.asarray(np.nan_to_num(Y, nan=0.0)), self.m_i, self.m_t)
        self.ok = bool(finite)
        self._parts = parts
        self.log_likelihood = float(parts["log_likelihood"])
        self.sigma_jitter = 0.0

    def alpha_matrix(self):
        """A_OO^-1 y_O scattered into (N, T), zero at the missing entries."""
        return np.asarray(self._parts["alpha"])

    def impute(self, Y):
        """``Y`` with each missing entry replaced by E[y_M | y_O] (as
        :meth:`MaskedPredictor.impute`)."""
        return impute_missing(self.K, self.C, self.Sigma, self._parts["alpha"], Y)

    def mean(self, Ks):
        """Predictive mean (n, T) of f* given y_O: K* alpha C^T."""
        return np.asarray(_cross_mean(jnp.asarray(Ks), self._parts["alpha"], self.C))

    def point_cov(self, Ks, kss_diag, include_noise=False):
        """T x T predictive covariance at each point (n, T, T) given y_O;
        plus Sigma with ``include_noise`` (y*). Chunks of points bound memory."""
        p = self._parts
        # padding and slicing on the host: no small compiled programs per shape
        Ks, kss_diag = np.asarray(Ks), np.asarray(kss_diag)
        n, T, m = Ks.shape[0], self.C.shape[0], int(self.m_i.shape[0])
        step = max(1, int(self.CHUNK_ENTRIES // max(1, T * m)))
        # chunks padded to a power of two: a few compiled shapes, not one per n
        size = min(step, 1 << max(0, n - 1).bit_length())
        pad = -n % size
        Ks = np.pad(Ks, ((0, pad), (0, 0)))
        kss_diag = np.pad(kss_diag, (0, pad))
        noise = self.Sigma if include_noise else np.zeros(self.Sigma.shape)
        return np.concatenate([
            np.asarray(_complement_point_cov(self.C, p["U"], p["invD"], p["G"], p["Pm"], p["Lm"], Ks[a:a + size],
                                             kss_diag[a:a + size], noise)) for a in range(0, n + pad, size)],
            axis=0)[:n]

    def joint_cov(self, Ks, Kss, include_noise=False):
        """Joint predictive covariance (T n, T n), output-major, over all
        points and outputs given y_O; plus Sigma (x) I with ``include_noise``.
        The complete-data joint covariance plus the missing entries' term
        (as :meth:`point_cov`): O(n N (N + |M| T) + n^2 T^2 (N + |M|)), no
        |O| x |O| factorisation."""
        p = self._parts
        cov = _complement_joint_cov(self.C, p["U"], p["invD"], p["G"], p["Pm"], p["Lm"], jnp.asarray(Ks),
                                    jnp.asarray(Kss))
        if include_noise:
            cov = cov + jnp.kron(self.Sigma, jnp.eye(Ks.shape[0]))
        return np.asarray(symmetrize(cov))


def make_predictor(K, C, Sigma, Y, where: str = "predictive"):
    """:class:`EigenPredictor` when ``Y`` has no NaN (O(N^3 + T^3), numbers
    as before missing outputs were supported); with missing entries
    :class:`ComplementPredictor` when its cost is the lower
    (:func:`complement_cost_ratio`) and its factors succeed, else
    :class:`MaskedPredictor`."""
    Y = np.asarray(Y, dtype=float)
    miss = np.isnan(Y)
    if not miss.any():
        return EigenPredictor(K, C, Sigma, Y, where=where)
    if complement_cost_ratio(*Y.shape, int(miss.sum())) < 1.0:
        pred = ComplementPredictor(K, C, Sigma, Y, where=where)
        if pred.ok:
            return pred
    return MaskedPredictor(K, C, Sigma, Y, where=where)


def condition_on_own_row_noise(mean, cov, Sigma, Y, joint_cov=None):
    """The training outputs' conditional distribution given their observed
    entries: E and Cov of y (N, T) given y_O, from the latent predictive at
    the training inputs.

    ``mean`` (N, T) and ``cov`` (N, T, T): the predictive of f at the
    training inputs given y_O (eq. 5 restricted to O); ``Sigma`` (T, T) the
    noise covariance; ``Y`` (N, T) the training outputs, NaN where missing;
    ``joint_cov`` (optional, (N T, N T) output-major): f's joint predictive.
    With y_i = f_i + e_i and e_i ~ N(0, Sigma) independent across rows,
    given f the noise of row i's missing outputs depends on y_O only through
    its own observed entries, e_{i,o} = y_{i,o} - f_{i,o}:

        y_{i,m} = f_{i,m} + H_i (y_{i,o} - f_{i,o}) + r,
        H_i = Sigma_mo Sigma_oo^-1,  r ~ N(0, Sigma_mm - H_i Sigma_om),

    so y_i = G_i f_i + H_i y_{i,o} + r with G_i = I - H_i (rows of observed
    outputs zero: they come back as measured, variance 0). A diagonal
    Sigma gives H_i = 0: the missing entries are f plus independent noise,
    ``predict(include_noise=True)``. Batched over rows, each row's missing
    outputs padded to the most any row has (M): O(N T^3 + N M T^2), plus
    O(N^2 T^3) for the joint covariance.

    Returns (mean (N, T), cov (N, T, T), joint (N T, N T) output-major or None).
    """
    mean = np.asarray(mean, float)
    cov = np.asarray(cov, float)
    Sigma = np.asarray(Sigma, float)
    Y = np.asarray(Y, float)
    o = ~np.isnan(Y)
    N, T = mean.shape
    # each row's missing outputs, padded to the most any row has with a dummy
    # output T (zero noise, dropped at the end): H, G and the covariance
    # products are M x T per row, not T x T
    n_miss = (~o).sum(axis=1)
    M = int(n_miss.max()) if N else 0
    order = np.argsort(o, axis=1, kind="stable")[:, :M]  # missing outputs first, in output order
    miss = np.where(np.arange(M)[None] < n_miss[:, None], order, T)  # (N, M)
    rows = np.arange(N)[:, None]
    S_ext = np.zeros((T + 1, T + 1))
    S_ext[:T, :T] = Sigma
    S_oo = np.where(o[:, :, None] & o[:, None, :], Sigma[None], 0.0)  # missing rows/columns: identity
    S_oo[:, np.arange(T), np.arange(T)] += ~o
    S_om = np.where(o[:, :, None], S_ext[:T][:, miss].transpose(1, 0, 2), 0.0)  # (N, T, M): Sigma_om
    H = np.swapaxes(np.linalg.solve(S_oo, S_om), 1, 2)  # (N, M, T): Sigma_mo Sigma_oo^-1, zero at missing
    G = -H
    G[rows, np.arange(M)[None], np.minimum(miss, T - 1)] += miss < T  # rows of I - H at the missing outputs
    y0 = np.where(o, Y, 0.0)
    mean_m = (G @ mean[:, :, None] + H @ y0[:, :, None])[:, :, 0]
    resid = S_ext[miss[:, :, None], miss[:, None, :]] - H @ S_om  # Sigma_mm - H Sigma_om; dummies: 0
    cov_m = G @ cov @ np.swapaxes(G, 1, 2) + resid
    cov_m = 0.5 * (cov_m + np.swapaxes(cov_m, 1, 2))

    def to_full(block):  # (N, M, M) on the missing outputs -> (N, T, T), zero elsewhere
        full = np.zeros((N, T + 1, T + 1))
        full[rows[:, :, None], miss[:, :, None], miss[:, None, :]] = block
        return full[:, :T, :T]

    mean_c = np.concatenate([Y, np.zeros((N, 1))], axis=1)  # observed entries exactly as measured
    mean_c[rows, miss] = mean_m
    mean_c, cov_c = mean_c[:, :T], to_full(cov_m)
    joint = None
    if joint_cov is not None:
        G_full = np.zeros((N, T + 1, T))
        G_full[rows, miss] = G
        G_full = G_full[:, :T]
        Gt = np.swapaxes(G_full, 1, 2)
        # J[t, i, u, j] = sum_ab G[i, t, a] J0[a, i, b, j] G[j, u, b], as two batched products
        J = np.asarray(joint_cov, float).reshape(T, N, T, N).transpose(1, 0, 2, 3).reshape(N, T, T * N)
        J = (G_full @ J).reshape(N, T, T, N).transpose(3, 1, 0, 2).reshape(N, T * N, T)  # [j, (t, i), b]
        J = (J @ Gt).reshape(N, T, N, T).transpose(1, 2, 3, 0)  # [t, i, u, j]
        idx = np.arange(N)
        J[:, idx, :, idx] += to_full(resid)
        J = J.reshape(N * T, N * T)
        joint = 0.5 * (J + J.T)
    return mean_c, cov_c, joint


def condition_on_row_outputs(mean, cov, Sigma, Y_observed, include_noise=False):
    """Condition each row's predictive on that row's observed outputs.

    ``mean`` (n, T) and ``cov`` (n, T, T): predictive of the latent f* at n
    points given the training data (eq. 5); ``Sigma`` (T, T) the noise
    covariance; ``Y_observed`` (n, T) with NaN where not measured. Row j's
    observed outputs are y*_o = f*_o + eps_o, eps ~ N(0, Sigma), so with
    V = cov_j + Sigma:

        f*   | y*_o:  mean + cov[:, o] V_oo^-1 (y_o - mean_o),  cov - cov[:, o] V_oo^-1 cov[o, :]
        y*   | y*_o:  mean + V[:, o] V_oo^-1 (y_o - mean_o),    V - V[:, o] V_oo^-1 V[o, :]

    (the second returns the observed entries as measured, variance 0).
    Batched over rows with masks (unobserved rows and columns of V_oo
    replaced by the identity's); O(n T^3)."""
    mean = np.asarray(mean, float)
    cov = np.asarray(cov, float)
    Yo = np.asarray(Y_observed, float)
    o = ~np.isnan(Yo)
    n, T = mean.shape
    V = cov + np.asarray(Sigma, float)[None]
    both = o[:, :, None] & o[:, None, :]
    Voo = np.where(both, V, 0.0) + (~o)[:, :, None] * np.eye(T)[None]
    G = cov if not include_noise else V
    Gm = np.where(o[:, None, :], G, 0.0)  # cov(target, y*_o), unobserved columns zeroed
    r = np.where(o, Yo - mean, 0.0)
    Lc = np.linalg.cholesky(Voo)
    Z = np.linalg.solve(Lc, np.swapaxes(Gm, 1, 2))  # (n, T, T): Lc^-1 Gm^T
    w = np.linalg.solve(Lc, r[:, :, None])[:, :, 0]
    mean_c = mean + np.einsum("jku,jk->ju", Z, w)
    cov_c = G - np.einsum("jkt,jku->jtu", Z, Z)
    if include_noise:  # measured entries are known exactly
        mean_c = np.where(o, Yo, mean_c)
        cov_c = np.where(o[:, :, None] | o[:, None, :], 0.0, cov_c)
    return mean_c, 0.5 * (cov_c + np.swapaxes(cov_c, 1, 2))
