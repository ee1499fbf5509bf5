"""Cool-MTGP: conditional one-output likelihood multi-output GP
(García-Hinde, Martínez-Ramón & Gómez-Verdejo, Neurocomputing 2022).

The joint likelihood N(vec Y | 0, C (x) K + Sigma (x) I) (eq. 4) is factorised
by the chain rule into T one-output GPs (eq. 8). Each column of Y is an
*output* (the paper's "task"); output t (in the chosen output order) is a GP
on the outputs before it:

* approximate (~Cool, Alg. 2): y_t ~ N(0, b_t K + Y_<t Y_<t^T + sigma_t^2 I),
  the objective is the sum of these log-likelihoods (eq. 26);
* hierarchical (HCool, Alg. 1): the previous-output weights are fixed at their
  MAP w_t = Y_<t^T (b_t K + Y_<t Y_<t^T + sigma_t^2 I)^-1 y_t (eqs. 17-18) and
  sum_t log N(y_t - Y_<t w_t | 0, b_t K + sigma_t^2 I) (eq. 21) is maximised;
  the two steps alternate from ~Cool's optimum (whose MAP weights are Alg. 1's
  first step) until the exact eq.-(4) log-likelihood of the recovered C and
  Sigma changes by less than ``outer_tol`` (relative; at most ``n_outer``
  alternations, with a warning), keeping the iterate with the highest exact
  likelihood: HCool never ends below ~Cool's value on the same data.
  (Alternating from the default start instead, a fixed count of 10 ended two
  of five Sec. 5.1 repetitions 380 and 440 nats below ~Cool.)

Each fit runs from ``n_init`` starts (the default start, then perturbations
of the log-scale parameters, :func:`mtgp.optim.perturbed_starts`) and keeps
the one with the best objective (eq. 21 or 26).

Only the shared kernel hyper-parameters and 2T positive scalars (b_t,
sigma_t^2, on log scale) are learnt, with L-BFGS and autodiff gradients (the
gradients of eqs. 22-24 / 27-29, w_t held constant in HCool as the paper
says). C and Sigma are then recovered (Alg. 3):
B = (I - W_y)^-1, Sigma = B diag(sigma^2) B^T (eq. 34),
C = B B_tt B^T with B_tt[t, t'] = sqrt(b_t b_t') cos(w_x,t, w_x,t') computed
in dual form with alpha_t^T K alpha_t' (eqs. 42, 45), and plugged into the
exact eq. (5) predictive.

Output order: the factorisation depends on the order of the outputs (the
results change slightly; Sec. 3.3, Fig. 4). ``output_order`` picks it: the given order
(default), an explicit permutation, ``"random"``, ``"best"`` (the order, among
``n_orders`` tried, whose recovered C, Sigma and kernel have the highest exact
likelihood eq. 4) or ``"average"`` (C and Sigma averaged over ``n_orders``
orders, kernel log-hyper-parameters averaged). :func:`output_order_sensitivity`
measures how much C, Sigma and predictions move under permutations (eq. 5
predictive). The old names ``task_order``, ``recover_task_covariance``,
``task_order_sensitivity`` work for one more release, with a
:class:`~mtgp.exceptions.MtgpDeprecationWarning`.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._deprecation import DEPRECATED, renamed_argument
from ..linalg import LOG_2PI, cho_solve, cholesky, gaussian_logpdf, logdet_from_chol, symmetrize, tri_solve
from ..compile import cached_jit
from .base import (NOISE_FLOOR_BINDING, MultiOutputGP, _deprecated_alias, apply_mask, best_of_starts,
                   deprecated_function, minimize, output_variances, run_info, store_params)
from .algebra import (complement_cost_ratio, complement_masked_log_likelihood, eigen_log_likelihood, make_predictor,
                      masked_log_likelihood, observed_index, observed_values)

__all__ = [
    "CoolMTGP",
    "approximate_log_likelihood",
    "approximate_log_likelihood_cholesky",
    "conditional_log_likelihoods",
    "hierarchical_log_likelihood",
    "hierarchical_log_likelihood_cholesky",
    "map_previous_weights",
    "hierarchical_duals",
    "recover_noise_covariance",
    "noise_covariance_recursion",
    "recover_output_covariance",
    "output_order_sensitivity",
    "recover_task_covariance",
    "task_order_sensitivity",
]


def _prev_mask(T):
    """mask[t, j] = 1 for j < t: the outputs that output t conditions on."""
    return jnp.tril(jnp.ones((T, T)), -1)


def _kxy(K, bt, s2t, Yp):
    N = K.shape[0]
    return bt * K + Yp @ Yp.T + s2t * jnp.eye(N, dtype=K.dtype)


# --------------------------------------------------------------------------
# the T conditional likelihoods through one eigendecomposition of K
# --------------------------------------------------------------------------
#
# Every conditional covariance shares K: A_t = b_t K + sigma_t^2 I + P_t P_t^T
# with P_t = Y_<t (~Cool) or P_t = 0 (HCool). With K = U diag(lam) U^T and
# z_t = U^T y_t, Z_t = U^T P_t, A_t is diag(d_t) + Z_t Z_t^T in the rotated
# basis, d_t = b_t lam + sigma_t^2: Woodbury and the determinant lemma give
# each likelihood in O(N T^2 + T^3) after one O(N^3) eigh, instead of T
# Cholesky factorisations (at N = 800, T = 16: 0.1 s instead of 0.84 s per
# value and gradient). The gradient is analytic (custom VJP, as for eq. 4 in
# predictive.py): autodiff through eigh divides by eigenvalue gaps, which
# vanish for a linear kernel with D < N.


def _one_conditional(lam, Zp, bt, s2t, m, zt):
    """Output t's conditional in K's eigenbasis: (quad + logdet, alpha, Q, d, Zm)."""
    n_prev = Zp.shape[1]
    d = bt * lam + s2t
    Zm = Zp * m[None, :]
    Pd = Zm / d[:, None]
    L = cholesky(jnp.eye(n_prev, dtype=Zp.dtype) + Zm.T @ Pd)  # capacitance I + Z^T D^-1 Z
    r = zt / d
    alpha = r - Pd @ cho_solve(L, Zm.T @ r)  # rotated A_t^-1 y_t
    Q = tri_solve(L, Pd.T).T  # D^-1 Z L^-T: rotated A_t^-1 = D^-1 - Q Q^T
    logdet = jnp.sum(jnp.log(d)) + logdet_from_chol(L)
    return zt @ alpha + logdet, alpha, Q, d, Zm


def _rotate(K, Y_target, Y_prev):
    lam, U = jnp.linalg.eigh(symmetrize(K))
    lam = jnp.clip(lam, 0.0)  # K is PSD; clip round-off negatives
    return lam, U, U.T @ Y_target, U.T @ Y_prev  # Zt (N, T), Zp (N, P)


def _conditional_parts(K, b, s2, Y_target, Y_prev, prev_mask):
    lam, U, Zt, Zp = _rotate(K, Y_target, Y_prev)

    def one(bt, s2t, m, zt):
        return _one_conditional(lam, Zp, bt, s2t, m, zt)

    quad_logdet, alpha, Q, d, Zm = jax.vmap(one)(b, s2, prev_mask, Zt.T)
    N = K.shape[0]
    ll = -0.5 * (jnp.sum(quad_logdet) + Zt.shape[1] * N * LOG_2PI)
    return ll, (b, lam, U, alpha, Q, d, Zm, prev_mask)


#: above this many entries in the stacked (T, N, P) per-output arrays of
#: :func:`conditional_log_likelihoods` (~Cool: P = T previous outputs), the
#: T conditionals are evaluated one at a time (``lax.map``) and the gradient
#: recomputes them in a ``lax.scan``: memory O(N^2 + N P) instead of
#: O(N T P), same flops. Below it the numbers are those of the vmapped route.
SEQUENTIAL_CONDITIONALS_MIN = 1 << 22


def conditional_log_likelihoods(K, b, s2, Y_target, Y_prev, prev_mask):
    """sum_t log N(y_t | 0, b_t K + sigma_t^2 I + P_t P_t^T), P_t = Y_prev
    with the columns where ``prev_mask[t] == 0`` zeroed: eq. (26) with
    Y_prev = Y_target = Y and the strictly lower mask, eq. (21) with the
    residual targets and an all-zero mask. One eigendecomposition of K
    (see the comment above); analytic gradients in every argument but the
    mask. NaN if some b_t lam_i + sigma_t^2 is not positive. Many outputs
    (T N P above :data:`SEQUENTIAL_CONDITIONALS_MIN`): one output at a time."""
    T, (N, P) = Y_target.shape[1], Y_prev.shape
    if T * N * P > SEQUENTIAL_CONDITIONALS_MIN:
        return _conditional_ll_sequential(K, b, s2, Y_target, Y_prev, prev_mask)
    return _conditional_ll_batched(K, b, s2, Y_target, Y_prev, prev_mask)


@jax.custom_vjp
def _conditional_ll_batched(K, b, s2, Y_target, Y_prev, prev_mask):
    return _conditional_parts(K, b, s2, Y_target, Y_prev, prev_mask)[0]


def _cond_fwd(K, b, s2, Y_target, Y_prev, prev_mask):
    return _conditional_parts(K, b, s2, Y_target, Y_prev, prev_mask)


def _cond_bwd(res, g):
    b, lam, U, alpha, Q, d, Zm, prev_mask = res
    # dl/dA_t = (alpha_t alpha_t^T - A_t^-1) / 2, A_t^-1 = U (D_t^-1 - Q_t Q_t^T) U^T (rotated)
    Qb = jnp.transpose(Q * jnp.sqrt(b)[:, None, None], (1, 0, 2)).reshape(Q.shape[1], -1)
    G = 0.5 * ((alpha.T * b[None, :]) @ alpha - jnp.diag(jnp.sum(b[:, None] / d, axis=0)) + Qb @ Qb.T)
    gK = U @ G @ U.T
    q2 = jnp.sum(Q**2, axis=2)  # diag(Q_t Q_t^T), (T, N)
    inv_diag = 1.0 / d - q2  # diag of the rotated A_t^-1
    gb = 0.5 * (jnp.sum(lam[None, :] * alpha**2, axis=1) - jnp.sum(lam[None, :] * inv_diag, axis=1))
    gs2 = 0.5 * (jnp.sum(alpha**2, axis=1) - jnp.sum(inv_diag, axis=1))
    # previous outputs: dl/dZ_t = (alpha alpha^T - A^-1) Z_t (masked columns get nothing)
    AinvZ = Zm / d[:, :, None] - jnp.einsum("tnk,tmk,tmp->tnp", Q, Q, Zm)
    gZp = jnp.sum((alpha[:, :, None] * jnp.einsum("tn,tnp->tp", alpha, Zm)[:, None, :] - AinvZ)
                  * prev_mask[:, None, :], axis=0)
    gY_target = -(U @ alpha.T)
    gY_prev = U @ gZp
    return (g * symmetrize(gK), g * gb, g * gs2, g * gY_target, g * gY_prev, jnp.zeros_like(prev_mask))


_conditional_ll_batched.defvjp(_cond_fwd, _cond_bwd)


def _seq_value(K, b, s2, Y_target, Y_prev, prev_mask):
    lam, U, Zt, Zp = _rotate(K, Y_target, Y_prev)
    ql = jax.lax.map(lambda a: _one_conditional(lam, Zp, *a)[0], (b, s2, prev_mask, Zt.T))
    N = K.shape[0]
    ll = -0.5 * (jnp.sum(ql) + Zt.shape[1] * N * LOG_2PI)
    return ll, (b, s2, lam, U, Zt, Zp, prev_mask)


@jax.custom_vjp
def _conditional_ll_sequential(K, b, s2, Y_target, Y_prev, prev_mask):
    return _seq_value(K, b, s2, Y_target, Y_prev, prev_mask)[0]


def _seq_bwd(res, g):
    """:func:`_cond_bwd` with the per-output terms recomputed one output at a
    time and accumulated (the N x N gradient in K's eigenbasis, the N x P
    gradient of the previous outputs)."""
    b, s2, lam, U, Zt, Zp, prev_mask = res
    N, P = Zp.shape

    def step(carry, a):
        G, gZp = carry
        bt, s2t, m, zt = a
        _, alpha, Q, d, Zm = _one_conditional(lam, Zp, bt, s2t, m, zt)
        Qb = Q * jnp.sqrt(bt)
        G = G + bt * jnp.outer(alpha, alpha) - jnp.diag(bt / d) + Qb @ Qb.T
        inv_diag = 1.0 / d - jnp.sum(Q**2, axis=1)
        gb = 0.5 * (jnp.sum(lam * alpha**2) - jnp.sum(lam * inv_diag))
        gs2 = 0.5 * (jnp.sum(alpha**2) - jnp.sum(inv_diag))
        AinvZ = Zm / d[:, None] - Q @ (Q.T @ Zm)
        gZp = gZp + (jnp.outer(alpha, alpha @ Zm) - AinvZ) * m[None, :]
        return (G, gZp), (alpha, gb, gs2)

    init = (jnp.zeros((N, N), Zp.dtype), jnp.zeros((N, P), Zp.dtype))
    (G, gZp), (alpha, gb, gs2) = jax.lax.scan(step, init, (b, s2, prev_mask, Zt.T))
    gK = U @ (0.5 * G) @ U.T
    return (g * symmetrize(gK), g * gb, g * gs2, g * -(U @ alpha.T), g * (U @ gZp), jnp.zeros_like(prev_mask))


_conditional_ll_sequential.defvjp(_seq_value, _seq_bwd)


def approximate_log_likelihood(K, b, s2, Y):
    """Eq. (26): sum_t log N(y_t | 0, K_xy,t), K_xy,t = b_t K + Y_<t Y_<t^T + sigma_t^2 I,
    through one eigendecomposition of K (:func:`conditional_log_likelihoods`).
    :func:`approximate_log_likelihood_cholesky` is the direct form."""
    return conditional_log_likelihoods(K, b, s2, Y, Y, _prev_mask(Y.shape[1]))


def approximate_log_likelihood_cholesky(K, b, s2, Y):
    """Eq. (26) with one Cholesky factorisation of K_xy,t per output (all outputs
    vmapped; Y_<t is Y with the columns >= t zeroed). Reference for tests."""
    T = Y.shape[1]

    def one(m, bt, s2t, yt):
        L = cholesky(_kxy(K, bt, s2t, Y * m[None, :]))
        return gaussian_logpdf(yt, L)

    return jnp.sum(jax.vmap(one)(_prev_mask(T), b, s2, Y.T))


#: above this many entries in T stacked (N, N) matrices, the MAP weights and
#: HCool's duals go through one eigendecomposition of K and a sequential map
#: over the outputs (memory O(N^2 + N T), time O(N^3 + N T^3)) instead of T
#: vmapped Cholesky factorisations (memory O(T N^2); 3.2 GB at T = 100,
#: N = 2000). Below it the numbers are those of the Cholesky route.
PER_OUTPUT_DENSE_MAX = 1 << 25


def _eigen_route(K, T):
    return T * K.shape[0] * K.shape[0] > PER_OUTPUT_DENSE_MAX


def _map_previous_weights_eigen(K, b, s2, Y):
    """:func:`map_previous_weights` through K = U diag(lam) U^T: in K's
    eigenbasis K_xy,t = diag(b_t lam + sigma_t^2) + Z_t Z_t^T with
    Z_t = U^T Y_<t (Woodbury, T x T capacitance); one output at a time
    (``lax.map``), so memory stays O(N^2 + N T)."""
    lam, U = jnp.linalg.eigh(symmetrize(K))
    lam = jnp.clip(lam, 0.0)
    Z = U.T @ Y  # (N, T)
    T = Y.shape[1]

    def one(args):
        m, bt, s2t, zt = args
        d = bt * lam + s2t
        Zm = Z * m[None, :]
        Pd = Zm / d[:, None]
        L = cholesky(jnp.eye(T, dtype=K.dtype) + Zm.T @ Pd)
        r = zt / d
        a = r - Pd @ cho_solve(L, Zm.T @ r)  # rotated K_xy,t^-1 y_t
        return Zm.T @ a, U @ a

    return jax.lax.map(one, (_prev_mask(T), b, s2, Z.T))


def map_previous_weights(K, b, s2, Y):
    """Eqs. (17)-(18) (= eqs. 31-32 of ~Cool): alpha_y,t = K_xy,t^-1 y_t and
    w_bar_y,t = Y_<t^T alpha_y,t. Returns (W_y (T, T) strictly lower
    triangular, row t = w_bar_y,t; alpha (T, N)). Many outputs (T N^2 above
    :data:`PER_OUTPUT_DENSE_MAX`): through the eigendecomposition of K."""
    T = Y.shape[1]
    if _eigen_route(K, T):
        return _map_previous_weights_eigen(K, b, s2, Y)

    def one(m, bt, s2t, yt):
        Yp = Y * m[None, :]
        L = cholesky(_kxy(K, bt, s2t, Yp))
        a = cho_solve(L, yt)
        return Yp.T @ a, a

    return jax.vmap(one)(_prev_mask(T), b, s2, Y.T)


def hierarchical_log_likelihood(K, b, s2, Y, W_y):
    """Eq. (21): sum_t log N(y_t - Y_<t w_bar_y,t | 0, b_t K + sigma_t^2 I),
    with the MAP weights ``W_y`` held constant; one eigendecomposition of K
    (:func:`conditional_log_likelihoods`).
    :func:`hierarchical_log_likelihood_cholesky` is the direct form."""
    N, T = Y.shape
    Yt = Y - Y @ W_y.T
    return conditional_log_likelihoods(K, b, s2, Yt, jnp.zeros((N, 1), dtype=Y.dtype),
                                       jnp.zeros((T, 1), dtype=Y.dtype))


def hierarchical_log_likelihood_cholesky(K, b, s2, Y, W_y):
    """Eq. (21) with one Cholesky factorisation per output. Reference for tests."""
    Yt = Y - Y @ W_y.T

    def one(bt, s2t, yt):
        L = cholesky(bt * K + s2t * jnp.eye(K.shape[0], dtype=K.dtype))
        return gaussian_logpdf(yt, L)

    return jnp.sum(jax.vmap(one)(b, s2, Yt.T))


def hierarchical_duals(K, b, s2, Y, W_y):
    """Alg. 1, last loop: alpha_t = (b_t K + sigma_t^2 I)^-1 (y_t - Y_<t w_bar_y,t); (T, N).
    Many outputs (T N^2 above :data:`PER_OUTPUT_DENSE_MAX`): through K = U diag(lam) U^T,
    alpha_t = U diag(1 / (b_t lam + sigma_t^2)) U^T r_t, memory O(N^2 + N T)."""
    Yt = Y - Y @ W_y.T
    if _eigen_route(K, Y.shape[1]):
        lam, U = jnp.linalg.eigh(symmetrize(K))
        lam = jnp.clip(lam, 0.0)
        R = U.T @ Yt  # (N, T)
        return (U @ (R / (b[None, :] * lam[:, None] + s2[None, :]))).T

    def one(bt, s2t, yt):
        L = cholesky(bt * K + s2t * jnp.eye(K.shape[0], dtype=K.dtype))
        return cho_solve(L, yt)

    return jax.vmap(one)(b, s2, Yt.T)


def recover_noise_covariance(W_y, s2):
    """Sigma = B diag(sigma^2) B^T with B = (I - W_y)^-1: the closed form of
    the recursion of eq. (34) (see :func:`noise_covariance_recursion`)."""
    W_y = np.asarray(W_y, dtype=float)
    T = W_y.shape[0]
    B = np.linalg.solve(np.eye(T) - W_y, np.eye(T))  # unit lower triangular
    S = (B * np.asarray(s2)[None, :]) @ B.T
    return 0.5 * (S + S.T)


def noise_covariance_recursion(W_y, s2):
    """Alg. 3's loop, literally: Sigma_11 = sigma_1^2; Sigma_tt = sigma_t^2 +
    w^T Sigma_<t w; Sigma_t,<t = w^T Sigma_<t (eq. 34). Reference for tests."""
    W_y = np.asarray(W_y, dtype=float)
    s2 = np.asarray(s2, dtype=float)
    T = len(s2)
    S = np.zeros((T, T))
    S[0, 0] = s2[0]
    for t in range(1, T):
        w = W_y[t, :t]
        S[t, t] = s2[t] + w @ S[:t, :t] @ w
        S[t, :t] = w @ S[:t, :t]
        S[:t, t] = S[t, :t]
    return S


def recover_output_covariance(W_y, b, alpha, K):
    """C = B B_tt B^T (eq. 45), B = (I - W_y)^-1, with the cosine coupling
    B_tt[t, t'] = sqrt(b_t b_t') alpha_t^T K alpha_t' /
    sqrt(alpha_t^T K alpha_t alpha_t'^T K alpha_t') (eq. 42, dual form of eq. 41)."""
    W_y = np.asarray(W_y, dtype=float)
    b = np.asarray(b, dtype=float)
    alpha = np.asarray(alpha, dtype=float)
    T = W_y.shape[0]
    B = np.linalg.solve(np.eye(T) - W_y, np.eye(T))
    G = alpha @ np.asarray(K) @ alpha.T
    d = np.sqrt(np.clip(np.diag(G), 1e-300, None))
    rho = np.clip(G / np.outer(d, d), -1.0, 1.0)
    np.fill_diagonal(rho, 1.0)
    Btt = np.sqrt(np.outer(b, b)) * rho
    C = B @ Btt @ B.T
    return 0.5 * (C + C.T)


# --------------------------------------------------------------------------
# compiled fitting programs (one per kernel structure and budget)
# --------------------------------------------------------------------------

def _log_on_device(a):
    """``jnp.log(a)`` of a numpy array, as a compiled program shared by
    every shape (an eager ``jnp.log`` and ``jnp.asarray`` compile one each)."""
    return cached_jit(("log",), lambda: jnp.log)(jax.device_put(np.asarray(a, dtype=float)))


def _unpack(kernel, mask, p, theta0, floor=0.0):
    # sigma_t^2 = floor + exp(log s2): with a low-rank Sigma the conditional
    # noise of later outputs tends to 0 and b_t K + sigma_t^2 I (K of rank D < N)
    # would become singular (NOTES.md); the floor keeps it factorisable.
    theta = apply_mask(mask, p["kernel"], theta0)
    return theta, jnp.exp(p["log_b"]), floor + jnp.exp(p["log_s2"])


def _objective(kernel):
    """Per-observation negative sum_t log N(y_t | 0, b_t K + sigma_t^2 I +
    P_t P_t^T) (:func:`conditional_log_likelihoods`): eq. (26) with the
    arguments of :func:`_approximate_args` (targets and previous outputs
    Y, strictly lower mask), eq. (21) with those of
    :func:`_hierarchical_args` (targets the residuals Y - Y_<t w_bar_y,t,
    the MAP weights held constant; no previous outputs). One objective for
    both methods, so that on small problems ~Cool and HCool share one
    compiled program (issue 11)."""
    mask = kernel.scale_mask()

    def obj(p, theta0, X, Y_target, Y_prev, prev_mask, floor):
        N, T = Y_target.shape
        theta, b, s2 = _unpack(kernel, mask, p, theta0, floor)
        K = kernel.evaluate(theta, X, X)
        return -conditional_log_likelihoods(K, b, s2, Y_target, Y_prev, prev_mask) / (N * T)

    return obj


#: HCool's objective (eq. 21) takes T all-zero previous outputs, the shapes of
#: ~Cool's (eq. 26), when N T^2 is at most this: both L-BFGS runs then use one
#: compiled program (a first fit compiles one large program fewer, ~1 s on 2
#: cores). The zero columns contribute exact zeros (a T x T identity
#: capacitance), so the values and gradients are those of one zero column;
#: above it, one zero column (an O(N T^2) per-evaluation cost saved instead).
SHARED_OBJECTIVE_MAX = 1 << 18


def _approximate_args(Y):
    """(Y_target, Y_prev, prev_mask) of eq. (26) for :func:`_objective`."""
    T = Y.shape[1]
    return Y, Y, jax.device_put(np.tril(np.ones((T, T)), -1))


def _hierarchical_args(residuals):
    """(Y_target, Y_prev, prev_mask) of eq. (21) for :func:`_objective`
    (see :data:`SHARED_OBJECTIVE_MAX`)."""
    N, T = residuals.shape
    P = T if N * T * T <= SHARED_OBJECTIVE_MAX else 1
    return residuals, jax.device_put(np.zeros((N, P))), jax.device_put(np.zeros((T, P)))


def _recover_program(kernel, method):
    """One compiled program for everything :meth:`CoolMTGP._recover` needs
    from the parameters ``p`` (issue 11: run eagerly, these operations
    compiled ~60 small programs in a first fit): the kernel parameters, K,
    b and sigma^2, the MAP weights W_y and duals (eqs. 17-18; HCool: Alg.
    1's last loop), the objective at them (eq. 21 or 26) and the residual
    targets Y - Y_<t w_bar_y,t of HCool's next L-BFGS run."""
    mask = kernel.scale_mask()

    def build():
        def run(p, theta0, X, Y, floor):
            theta, b, s2 = _unpack(kernel, mask, p, theta0, floor)
            K = kernel.evaluate(theta, X, X)
            W_y, alpha = map_previous_weights(K, b, s2, Y)
            if method == "hierarchical":
                alpha = hierarchical_duals(K, b, s2, Y, W_y)
                objective = hierarchical_log_likelihood(K, b, s2, Y, W_y)
            else:
                objective = approximate_log_likelihood(K, b, s2, Y)
            return dict(theta=theta, K=K, W_y=W_y, alpha=alpha, b=b, s2=s2, objective=objective,
                        residuals=Y - Y @ W_y.T)

        return run

    return cached_jit(("cool-recover", kernel.structure(), method), build)


# --------------------------------------------------------------------------
# missing outputs: the exact observed-data refinement
# --------------------------------------------------------------------------

def _refined_covariances(p, floor):
    """(C, Sigma) of the refinement's parameters: C = F F^T (F square, so any
    PSD C, low rank included) and Sigma = B diag(floor + exp(log_s2)) B^T with
    B unit lower triangular: eq. (34)'s form (B = (I - W_y)^-1), so the
    conditional noise variances keep Cool's floor."""
    T = p["F"].shape[0]
    B = jnp.tril(p["B"], -1) + jnp.eye(T, dtype=p["F"].dtype)
    return p["F"] @ p["F"].T, (B * (floor + jnp.exp(p["log_s2"]))[None, :]) @ B.T


def _observed_objective(kernel, complement=False):
    """Per-entry negative log N(y_O | 0, (C (x) K + Sigma (x) I)[O, O]): eq. (4)
    marginalised over the missing entries, dense in the observed ones, or
    (``complement``) through the complete-data eigen route and the missing
    entries (:func:`~mtgp.multioutput.algebra.complement_masked_log_likelihood`,
    the cheaper when few entries are missing)."""
    mask = kernel.scale_mask()

    def obj(p, theta0, X, data, floor):
        K = kernel.evaluate(apply_mask(mask, p["kernel"], theta0), X, X)
        C, S = _refined_covariances(p, floor)
        if complement:
            Y0, m_i, m_t = data
            return -complement_masked_log_likelihood(K, C, S, Y0, m_i, m_t) / (Y0.size - m_i.shape[0])
        y_o, i_o, t_o = data
        return -masked_log_likelihood(K, C, S, y_o, i_o, t_o) / y_o.shape[0]

    return obj


def _refinement_start(theta, C, Sigma, floor):
    """The refinement's parameters that give back (theta, C, Sigma): F from
    C's eigendecomposition, B and the conditional variances from Sigma's
    LDL^T (unique; for Cool's Sigma, B = (I - W_y)^-1 and d = sigma^2)."""
    C, Sigma, floor = (np.asarray(a, dtype=float) for a in (C, Sigma, floor))
    w, V = np.linalg.eigh(0.5 * (C + C.T))
    L = np.linalg.cholesky(0.5 * (Sigma + Sigma.T))
    dl = np.diag(L)
    free = np.maximum(dl**2 - floor, 1e-12 * np.maximum(floor, 1e-300))
    return {"kernel": theta, "F": jnp.asarray(V * np.sqrt(np.clip(w, 0.0, None))[None, :]),
            "B": jnp.asarray(np.tril(L / dl[None, :], -1)), "log_s2": jnp.asarray(np.log(free))}


class CoolMTGP(MultiOutputGP):
    """Cool-MTGP (García-Hinde et al. 2022): multi-output GP learnt through
    conditional one-output likelihoods, C and Sigma recovered by Alg. 3,
    exact predictive of eq. (5).

    Parameters
    ----------
    kernel : mtgp.kernels.Kernel, default SE()
        Input kernel shared by all outputs; its values are the starting point.
        Its overall variance is held fixed (C absorbs the scale;
        ``kernel.scale_mask()``).
    method : {"hierarchical", "approximate"}
        HCool (Alg. 1, eqs. 17-21) or ~Cool (Alg. 2, eq. 26).
    normalize_y : bool, default False
        Standardise each output with its training mean and sd before
        fitting; C, Sigma and predictions are still reported on the data's
        scale. Off: the model is zero-mean on the data as given.
    output_order : None, sequence of int, "random", "best" or "average"
        The order of the chain-rule factorisation (the paper's "task
        order"); see the module docstring. ``n_orders`` orders are tried for
        "best" and "average" (the given order first, then random ones).
    max_iter, tol : L-BFGS budget (iterations per L-BFGS run) and gradient
        tolerance on the per-observation negative log-likelihood.
    n_outer, outer_tol : HCool only: alternations of (MAP weights, L-BFGS
        on eq. 21), started at ~Cool's optimum, stop when the exact eq.-(4)
        log-likelihood of the recovered C, Sigma changes by less than
        ``outer_tol`` (relative); ``n_outer`` is a safety cap (reaching it
        warns, ``fit_info_["stop_reason"] == "n_outer"``; with missing
        outputs only when the exact refinement is not accepted, as the
        alternation is then only its start). The iterate with
        the highest exact likelihood is kept; ``fit_info_["outer_log_likelihoods"]``
        lists the exact likelihood (internal scale) of ~Cool's start and of
        each alternation.
    min_noise_variance : float, default 1e-4
        Lower bound of each conditional noise variance sigma_t^2, relative
        to the output's variance (a low-rank Sigma drives later sigma_t^2 to
        0, making b_t K + sigma_t^2 I singular for a low-rank K, and an
        output that the others nearly determine collapses its noise and its
        intervals: on slump, 1e-6 gave 86% coverage of 95% intervals of y*
        for Compressive_Strength, 1e-4 gives 94%). Where it binds the fit
        maximises eqs. 21/26 under that constraint, not the paper's
        unconstrained objective; the fit warns and lists those outputs in
        ``fit_info_["noise_floor_outputs"]`` (docs/multioutput.md, "Noise
        floor and honest intervals"). 0 gives the paper's model.
    random_state : seed for random output orders and for the perturbed starts.
    n_init : int, default 1
        Starts per order (the default start, then ``n_init - 1`` random
        perturbations of the log-scale parameters); the best objective is kept.
    task_order : deprecated name of ``output_order``.

    Fitted attributes (besides the base class's): ``output_order_`` (order
    used; None for "average"), ``b_``, ``sigma2_`` (per output, in the order
    used, internal scale), ``previous_output_weights_`` (W_y), ``duals_``
    (alpha_t, (T, N)), ``objective_`` (eq. 21 or 26 at the optimum, internal
    scale), ``n_outer_iter_``, ``order_results_`` (one dict per order tried:
    order, C, Sigma (data scale, original output order), log_likelihood).
    """

    _saved_attributes = ("output_order_", "b_", "sigma2_", "previous_output_weights_", "duals_",
                         "objective_", "n_outer_iter_", "order_results_")
    task_order_ = _deprecated_alias("task_order_", "output_order_")
    previous_task_weights_ = _deprecated_alias("previous_task_weights_", "previous_output_weights_")

    def __init__(self, kernel=None, method: str = "hierarchical", normalize_y: bool = False,
                 output_order: Union[None, str, Sequence[int]] = None, n_orders: int = 5,
                 max_iter: int = 200, tol: float = 1e-6, n_outer: int = 50,
                 outer_tol: float = 1e-6, min_noise_variance: float = 1e-4,
                 random_state: Optional[int] = 0, n_init: int = 1, task_order=DEPRECATED):
        store_params(self, locals())

    def _resolve_params(self):
        self._output_order = renamed_argument("CoolMTGP", "task_order", "output_order", self.task_order,
                                              self.output_order, new_default=None, stacklevel=5)

    def _floor_bound_outputs(self):
        """Outputs whose conditional noise sigma_t^2 = floor + exp(log s2)
        is at most :data:`~mtgp.multioutput.base.NOISE_FLOOR_BINDING` times
        its floor (``min_noise_variance`` times the output's variance,
        internal scale): the floor is at least half of it."""
        if getattr(self, "output_order_", None) is None:  # "average": several orders
            return []
        order = np.asarray(self.output_order_)
        floor = float(self.min_noise_variance) * output_variances(self._Y)[order]
        bound = np.asarray(self.sigma2_) <= NOISE_FLOOR_BINDING * floor
        return [self.output_names_[int(j)] for j in order[bound]] if floor.max() > 0 else []

    # ---- orders -------------------------------------------------------
    def _orders(self, T):
        to = self._output_order
        rng = np.random.default_rng(self.random_state)
        if to is None or (isinstance(to, str) and to == "given"):
            return [np.arange(T)]
        if isinstance(to, str):
            if to == "random":
                return [rng.permutation(T)]
            if to in ("best", "average"):
                if int(self.n_orders) < 1:
                    raise ValueError("n_orders must be >= 1")
                return [np.arange(T)] + [rng.permutation(T) for _ in range(int(self.n_orders) - 1)]
            raise ValueError(
                f"output_order must be None, 'given', 'random', 'best', 'average' or a permutation; got {to!r}"
            )
        order = np.asarray(to)
        if order.shape != (T,) or not np.array_equal(np.sort(order), np.arange(T)):
            raise ValueError(f"output_order must be a permutation of 0..{T - 1}, got {list(to)!r}")
        return [order.astype(int)]

    # ---- one order ------------------------------------------------------
    def _recover(self, kernel, p, theta0, Xj, Yo, floor):
        """Everything that follows from the parameters ``p`` (outputs in the
        order used): MAP weights (eqs. 17-18), duals (HCool: Alg. 1's last
        loop; ~Cool: eq. 31), C and Sigma (Alg. 3) and the exact eq. (4)
        log-likelihood they give (invariant to the output order); also the
        objective (eq. 21 or 26) at them and HCool's residual targets."""
        out = _recover_program(kernel, self.method)(p, theta0, Xj, Yo, floor)
        K, theta = out["K"], out["theta"]
        W_y, alpha, b, s2 = (np.asarray(out[k]) for k in ("W_y", "alpha", "b", "s2"))
        finite = bool(np.all(np.isfinite(W_y)) and np.all(np.isfinite(alpha)))
        C = recover_output_covariance(W_y, b, alpha, K) if finite else None
        S = recover_noise_covariance(W_y, s2) if finite else None
        ll = eigen_log_likelihood(K, C, S, Yo) if finite else -np.inf
        return dict(theta=theta, K=K, W_y=W_y, alpha=alpha, b=b, s2=s2, C=C, Sigma=S,
                    log_likelihood=ll if np.isfinite(ll) else -np.inf, finite=finite,
                    objective=float(out["objective"]), residuals=out["residuals"])

    def _optimise(self, kernel, p, theta0, Xj, Yo, floor):
        """~Cool: L-BFGS on eq. (26). HCool: Alg. 1's alternation (MAP
        weights, eqs. 17-18; L-BFGS on eq. 21 with them held constant),
        started at ~Cool's optimum from ``p`` (whose MAP weights are Alg. 1's
        first step) and run until the exact eq.-(4) log-likelihood of the
        recovered C, Sigma changes by less than ``outer_tol`` (relative), at
        most ``n_outer`` alternations; the iterate with the highest exact
        likelihood is kept, so HCool never ends below its ~Cool start.
        Returns (recovered dict of :meth:`_recover`, fit_info entries)."""
        obj = _objective(kernel)
        res = minimize(("cool-conditional", kernel.structure()), obj, p,
                       (theta0, Xj, *_approximate_args(Yo), floor), int(self.max_iter), float(self.tol))
        p = res.params
        rec = self._recover(kernel, p, theta0, Xj, Yo, floor)
        info = run_info(res, self.max_iter)
        if self.method == "approximate":
            return rec, info
        n_iter, history, best = int(res.n_iter), [rec["log_likelihood"]], rec
        converged, n_outer = False, 0
        for n_outer in range(1, int(self.n_outer) + 1):
            # step 1: MAP of w_y,t (eqs. 17-18) at p, already in rec: its residual targets
            res = minimize(("cool-conditional", kernel.structure()), obj, p,  # step 2: eq. (21)
                           (theta0, Xj, *_hierarchical_args(rec["residuals"]), floor), int(self.max_iter),
                           float(self.tol))
            p = res.params
            n_iter += int(res.n_iter)
            rec = self._recover(kernel, p, theta0, Xj, Yo, floor)
            ll, prev = rec["log_likelihood"], history[-1]
            history.append(ll)
            if ll > best["log_likelihood"]:
                best = rec
            if np.isfinite(ll) and np.isfinite(prev) and abs(ll - prev) <= self.outer_tol * max(1.0, abs(prev)):
                converged = True
                break
        return best, dict(n_iter=n_iter, objective=float(res.value), converged=converged, n_outer=n_outer,
                          stop_reason="outer_tol" if converged else "n_outer",
                          outer_log_likelihoods=[float(v) for v in history])

    def _fit_order(self, kernel, X, Y, order, var=None):
        if self.method not in ("hierarchical", "approximate"):
            raise ValueError(f"method must be 'hierarchical' or 'approximate', got {self.method!r}")
        N, T = Y.shape
        Yo = jax.device_put(np.ascontiguousarray(Y[:, order], dtype=float))  # no compiled copy (issue 11)
        Xj = jax.device_put(np.asarray(X, dtype=float))
        theta0 = kernel.init_params()
        b0, s20 = self._init_scales(kernel, X, Y[:, order])
        p0 = {"kernel": theta0, "log_b": _log_on_device(b0), "log_s2": _log_on_device(s20)}
        var = np.var(Y, axis=0) if var is None else var  # missing outputs: that of the observed values
        floor = jax.device_put(np.asarray(float(self.min_noise_variance) * var[order], dtype=float))

        def run(start):
            rec, info = self._optimise(kernel, start, theta0, Xj, Yo, floor)
            # eq. 21 at the final weights (HCool) or eq. 26 (~Cool), from _recover
            objective = rec["objective"]
            return -objective, (rec, objective, info)

        (rec, objective, info), best = best_of_starts(run, p0, self.n_init, self.random_state)
        if not rec["finite"]:
            raise FloatingPointError("CoolMTGP: non-finite MAP weights; check the data scale or use normalize_y=True")
        C = np.empty_like(rec["C"])
        S = np.empty_like(rec["Sigma"])
        C[np.ix_(order, order)] = rec["C"]  # back to the original output order
        S[np.ix_(order, order)] = rec["Sigma"]
        return dict(order=np.asarray(order), theta=rec["theta"], C=C, Sigma=S,
                    log_likelihood=rec["log_likelihood"], b=rec["b"], sigma2=rec["s2"], W_y=rec["W_y"],
                    alpha=rec["alpha"], objective=objective,
                    n_outer=info.pop("n_outer", 0), info=dict(info, best_start=best))

    #: missing outputs: at most this many imputation rounds per output order,
    #: stopping when the exact log-likelihood of the observed entries changes
    #: by less than ``IMPUTE_TOL`` (relative) or has not beaten its best for
    #: ``IMPUTE_PATIENCE`` rounds; see :meth:`_fit_order_missing`
    MAX_IMPUTE = 20
    IMPUTE_TOL = 1e-6
    IMPUTE_PATIENCE = 2

    def _fit_order_missing(self, kernel, X, Y, order):
        """Cool-MTGP with missing outputs (NaN in ``Y``): imputation rounds
        for a start, then the exact observed-data likelihood.

        The chain rule of eq. (8) needs every previous output at every
        input; with missing entries the conditionals of eqs. (21) / (26)
        are not available in closed form. So:

        1. *Start* (imputation rounds): fill each missing entry with its
           output's observed mean; fit Cool on the completed Y and recover
           C, Sigma (Alg. 3); replace the missing entries by their
           conditional mean E[y_M | y_O] under the recovered joint model
           (eq. 4; :meth:`ComplementPredictor.impute` or :meth:`MaskedPredictor.impute`); repeat until the exact
           log-likelihood of the **observed entries alone** (eq. 4
           marginalised over the missing ones) changes by less than
           ``IMPUTE_TOL``, has not improved on its best for
           ``IMPUTE_PATIENCE`` rounds, or after ``MAX_IMPUTE`` rounds; the
           round with the highest such likelihood is the start. This is
           single imputation: a refit on the completed Y treats the imputed
           entries as observed with zero residual variance, so it understates
           Sigma and the spread between outputs (at 50% missing, HCool's 95%
           intervals of the removed entries covered 70-78% on andro and edm).
        2. *Exact refinement* (``EXACT_REFINE``): L-BFGS (budget ``max_iter``)
           on log N(y_O | 0, (C (x) K + Sigma (x) I)[O, O]) itself, the
           observed-data likelihood of eq. (4), over the kernel's free
           log-hyper-parameters, C = F F^T and Sigma = B diag(sigma^2) B^T in
           eq. (34)'s form (B unit lower triangular in the output order used,
           sigma_t^2 >= the floor ``min_noise_variance`` as in the complete-data
           fit), from the start's kernel, C and Sigma. L-BFGS never ends
           above its start's objective, and the refined iterate is kept only
           if its likelihood is at least the start's, so the kept
           likelihood never decreases: ``fit_info_['observed_log_likelihoods']``
           lists it after each round and after the refinement (internal scale;
           non-decreasing), ``fit_info_['impute_log_likelihoods']`` each round's
           own value (not monotone). This is the observed-data maximum
           likelihood of the joint model of eq. (4) started at Cool's estimate
           (the route of :class:`~mtgp.multioutput.StructuredNoiseMTGP` with
           missing outputs); O(|O|^3) per iteration, |O| the number of
           observed entries, the cost of the predictive already.

        ``fit_info_``: ``n_impute`` (rounds run), ``refine_n_iter``,
        ``refine_accepted``. With the refinement, ``sigma2_`` and
        ``previous_output_weights_`` are those of the refined Sigma (eq. 34),
        while ``b_``, ``duals_`` and ``objective_`` stay those of the start's
        Cool fit (they define C only together with the completed Y). Nothing
        here runs when no entry is missing."""
        miss = np.isnan(Y)
        var = output_variances(Y)
        Xj = jnp.asarray(X)
        Yc = np.where(miss, np.nanmean(Y, axis=0)[None, :], Y)
        best, prev, stale, lls, kept = None, -np.inf, 0, [], []
        for it in range(1, int(self.MAX_IMPUTE) + 1):
            r = self._fit_order(kernel, X, Yc, order, var=var)
            K = kernel.evaluate(r["theta"], Xj, Xj)
            pred = make_predictor(K, r["C"], r["Sigma"], Y, where="CoolMTGP")  # exact on y_O
            ll = pred.log_likelihood
            r["log_likelihood"] = ll
            lls.append(float(ll))
            if best is None or ll > best["log_likelihood"]:
                best, stale = r, 0
            else:
                stale += 1
            kept.append(float(best["log_likelihood"]))
            if abs(ll - prev) <= self.IMPUTE_TOL * max(1.0, abs(ll)) or stale >= int(self.IMPUTE_PATIENCE):
                break
            prev = ll
            Yc = pred.impute(Y)
        info = dict(n_impute=it, impute_log_likelihoods=lls)
        if self.EXACT_REFINE:
            best, extra = self._refine_observed(kernel, Xj, Y, np.asarray(best["order"]), best, var)
            info.update(extra)
            kept.append(float(best["log_likelihood"]))
        best["info"] = dict(best["info"], **info, observed_log_likelihoods=kept)
        return best

    #: missing outputs: after the imputation rounds, maximise the exact
    #: observed-data likelihood (see :meth:`_fit_order_missing`)
    EXACT_REFINE = True

    def _refine_observed(self, kernel, Xj, Y, order, start, var):
        """Step 2 of :meth:`_fit_order_missing`: L-BFGS on the observed-data
        likelihood from ``start`` (a :meth:`_fit_order` result, C and Sigma
        in the original output order); returns (result kept, fit_info_ entries)."""
        ix = np.ix_(order, order)
        floor = jnp.asarray(float(self.min_noise_variance) * var[order])
        p0 = _refinement_start(start["theta"], start["C"][ix], start["Sigma"][ix], floor)
        Yo = Y[:, order]
        complement = complement_cost_ratio(*Yo.shape, int(np.isnan(Yo).sum())) < 1.0
        if complement:
            m_i, m_t = (v.astype(np.int32) for v in np.nonzero(np.isnan(Yo)))
            data = (jnp.asarray(np.nan_to_num(Yo, nan=0.0)), jnp.asarray(m_i), jnp.asarray(m_t))
        else:
            i_o, t_o = observed_index(Yo)
            data = (jnp.asarray(observed_values(Yo)), jnp.asarray(i_o), jnp.asarray(t_o))
        theta0 = kernel.init_params()
        res = minimize(("cool-observed", kernel.structure(), complement), _observed_objective(kernel, complement), p0,
                       (theta0, Xj, data, floor), int(self.max_iter), float(self.tol))
        p = res.params
        theta = apply_mask(kernel.scale_mask(), p["kernel"], theta0)
        Co, So = (np.asarray(a) for a in _refined_covariances(p, floor))
        C, S = np.empty_like(Co), np.empty_like(So)
        C[ix], S[ix] = Co, So  # back to the original output order
        K = kernel.evaluate(theta, Xj, Xj)
        ll = make_predictor(K, C, S, Y, where="CoolMTGP").log_likelihood
        extra = dict(refine_n_iter=int(res.n_iter), refine_likelihood="masked complement" if complement else "masked dense",
                     refine_accepted=bool(np.isfinite(ll) and ll >= start["log_likelihood"]))
        if not extra["refine_accepted"]:
            return start, extra
        T = len(order)
        B = np.tril(np.asarray(p["B"]), -1) + np.eye(T)
        kept = dict(start, theta=theta, C=C, Sigma=S, log_likelihood=ll,
                    W_y=np.eye(T) - np.linalg.inv(B), sigma2=np.asarray(floor + jnp.exp(p["log_s2"])))
        return kept, extra

    def _warn_outer_cap(self, results):
        """A ConvergenceWarning (at the caller's ``fit``) when the HCool
        alternation of a fit the model keeps reached ``n_outer`` first. Only
        the kept fits count: another output order's, or an imputation round
        that was not the start (missing outputs), does not shape the model;
        nor does the alternation's cap when the exact observed-data
        refinement was accepted (its L-BFGS, not the alternation, set the
        parameters)."""
        for r in results:
            info = r["info"]
            if info.get("stop_reason") != "n_outer" or info.get("refine_accepted", False):
                continue
            from sklearn.exceptions import ConvergenceWarning

            hist = info["outer_log_likelihoods"]
            warnings.warn(
                f"CoolMTGP(method='hierarchical'): the alternation (MAP weights, eq. 21) reached "
                f"n_outer={int(self.n_outer)} before the exact log-likelihood settled (last change "
                f"{hist[-1] - hist[-2]:+.3g} nats, outer_tol={self.outer_tol}); the best iterate "
                f"({max(hist):.6g}, internal scale) is kept. Raise n_outer to go on.",
                ConvergenceWarning, stacklevel=5)  # here, _fit_core, fit, config.float64, caller
            return

    def _fit_core(self, X, Y):
        kernel = self._kernel_struct
        fit_order = self._fit_order_missing if np.isnan(Y).any() else self._fit_order
        results = [fit_order(kernel, X, Y, o) for o in self._orders(Y.shape[1])]
        if isinstance(self._output_order, str) and self._output_order == "average":
            self._C = np.mean([r["C"] for r in results], axis=0)
            self._Sigma = np.mean([r["Sigma"] for r in results], axis=0)
            self._theta = jax.tree_util.tree_map(lambda *a: jnp.mean(jnp.stack(a), axis=0),
                                                 *[r["theta"] for r in results])
            chosen = results[0]
            self.output_order_ = None
        else:
            chosen = max(results, key=lambda r: r["log_likelihood"] if np.isfinite(r["log_likelihood"]) else -np.inf)
            self._C, self._Sigma, self._theta = chosen["C"], chosen["Sigma"], chosen["theta"]
            self.output_order_ = chosen["order"]
        self._warn_outer_cap(results if self.output_order_ is None else [chosen])
        self.b_ = chosen["b"]
        self.sigma2_ = chosen["sigma2"]
        self.previous_output_weights_ = chosen["W_y"]
        self.duals_ = chosen["alpha"]
        self.objective_ = chosen["objective"]
        self.n_outer_iter_ = chosen["n_outer"]
        s = np.outer(self._y_std, self._y_std)
        self.order_results_ = [
            dict(order=r["order"], C=r["C"] * s, Sigma=r["Sigma"] * s,
                 log_likelihood=r["log_likelihood"] - self._log_jacobian())
            for r in results
        ]
        return chosen["info"]


def _rel_frob(A, B):
    return float(np.linalg.norm(A - B) / max(np.linalg.norm(B), 1e-300))


def output_order_sensitivity(estimator: CoolMTGP, X, Y, n_permutations: int = 4,
                             random_state: int = 0, X_test=None):
    """Refit ``estimator`` (a CoolMTGP; its ``output_order`` is overridden) on
    the given order and ``n_permutations`` random ones (Fig. 4 of the paper,
    where outputs are "tasks").

    Returns a dict: ``table`` (DataFrame, one row per order: relative
    Frobenius distance of C and Sigma to the given-order fit, and the largest
    absolute change of the predictive mean on ``X_test`` if given), ``C`` and
    ``Sigma`` (lists, original output order), ``orders``.
    """
    from sklearn.base import clone

    T = np.asarray(Y).shape[1]
    rng = np.random.default_rng(random_state)
    orders = [np.arange(T)] + [rng.permutation(T) for _ in range(n_permutations)]
    Cs, Ss, means, rows = [], [], [], []
    for i, o in enumerate(orders):
        m = clone(estimator).set_params(output_order=list(map(int, o)), task_order=DEPRECATED)
        m.fit(X, Y)
        Cs.append(m.output_covariance_)
        Ss.append(m.noise_covariance_)
        if X_test is not None:
            means.append(m.predict(X_test).mean)
        row = dict(order=" ".join(map(str, o)), rel_frob_C=_rel_frob(Cs[-1], Cs[0]),
                   rel_frob_Sigma=_rel_frob(Ss[-1], Ss[0]),
                   log_likelihood=m.log_marginal_likelihood_)
        if X_test is not None:
            row["max_abs_mean_change"] = float(np.max(np.abs(means[-1] - means[0])))
        rows.append(row)
    return dict(table=pd.DataFrame(rows), C=Cs, Sigma=Ss, orders=orders)


recover_task_covariance = deprecated_function(recover_output_covariance, "recover_task_covariance")
task_order_sensitivity = deprecated_function(output_order_sensitivity, "task_order_sensitivity")
