"""Pure-JAX numerics of Magma (Leroy et al. 2022), batched over individuals.

Notation (paper): pooled grid t (N distinct inputs), prior mean m0, mean
kernel matrix K0 = k_theta0(t, t), individual covariances
Psi_i = c_theta_i(t_i, t_i) + sigma_i^2 I, gathered into the grid by P_i.

Every function takes named pytrees instead of long positional lists:

* :class:`MagmaStatic` (hashable, a static ``jax.jit`` argument): the mean
  and individual kernels as :class:`~mtgp.kernels.StaticKernel`, the
  Common/Different HP flag, and the M-step settings (``mean_update``,
  ``max_iter``); compiled programs are keyed by :attr:`MagmaStatic.structure`
  (kernel structures and the flag), never by object ids;
* :class:`MagmaData`: the padded size buckets of the individuals, the pooled
  grid, the prior mean on the grid and one weight per individual;
* :class:`MagmaParams`: theta0 (the mean process' log HPs) and theta (the
  individuals' log HPs ``{"kernel", "log_noise"}``, shared or batched);
* :class:`MeanPosterior`: the hyper-posterior of mu0 in factored form.

Weighted E-step sums
--------------------
The E step only needs three sums over individuals, each weighted by the
individual's weight w_i (all ones for Magma; MagmaClust's responsibilities
tau_ik for cluster k, its E step being Props. 1/4 with weighted precisions):

    S  = sum_i w_i P_i' Psi_i^-1 P_i
    c  = sum_i w_i P_i' Psi_i^-1 (y_i - m0(t_i))
    ll = sum_i w_i log N(y_i; m0(t_i), Psi_i)

(:func:`e_step_sums`). They are O(N^2) whatever the number of individuals,
which is what a distributed backend moves (:mod:`mtgp.backends`).

Exact formulation without K0^-1
-------------------------------
Props. 1 and 4 write the hyper-posterior precision K0^-1 + S. On densely
spaced inputs K0 is numerically singular, so we never invert it. With
S = L_S L_S' (positive definite: every grid point is observed by someone):

    B      = I + L_S' K0 L_S                     (eigenvalues >= 1: stable)
    alpha  = (I + S K0)^-1 c = c - L_S B^-1 L_S' K0 c
    m_hat(X)      = m0(X) + k0(X, t) alpha
    K_hat(X, X')  = k0(X, X') - V_X' V_X',   V_X = L_B^-1 L_S' k0(t, X)

which is algebraically identical to Props. 1/4 on t and, for any other
inputs X, to computing Prop. 4 on the union [X, t] and marginalising (the
data only touch mu0 through t). The exact marginal likelihood follows from
the matrix determinant lemma and Woodbury:

    log p({y_i}) = ll + c' K0 alpha / 2 - log|B| / 2.

Every individual-level quantity is computed for all individuals at once on
a padded layout (see :mod:`mtgp.data`): padded rows/columns of Psi_i are the
identity and padded outputs 0, so they contribute nothing.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import StaticKernel
from ..linalg import (LOG_2PI, cho_solve, cholesky, logdet_from_chol, safe_cholesky,
                      symmetrize, tri_solve)

# Relative diagonal jitter used only inside the paper's expected-log-likelihood
# objective for theta_0 (mean_update="expected"), which needs K0^-1.
EXPECTED_Q_JITTER = 1e-8

# Gradient-norm tolerance of each individual's Different-HP problem (its
# objective is per observed point): the lock-step batch runs until its
# slowest member stops. On the swimmers, 1e-5 instead of 1e-6 cut the
# line-search trials from 1378 to 1091 and ended at a slightly higher
# log-likelihood (-126455.0 vs -126457.6).
INDIVIDUAL_GTOL = 1e-5


# ------------------------------------------------------------ named pytrees

def _to_device(a):
    """``jnp.asarray(a)`` without a compiled program: on jax >= 0.10,
    ``jnp.asarray`` of a numpy array compiles a small copy program per shape
    and dtype (issue 11: first fits); ``jax.device_put`` of the numpy array
    gives the same array (dtype canonicalised the same way)."""
    return a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))


class MagmaStatic(NamedTuple):
    """The static model description (hashable: a ``jax.jit`` static
    argument). ``k0``/``ki``: mean and individual kernels; ``common``: all
    individuals share theta (Prop. 3) or each has its own (Prop. 2);
    ``mean_update`` and ``max_iter``: the M step's theta0 objective and
    L-BFGS budget."""

    k0: StaticKernel
    ki: StaticKernel
    common: bool
    mean_update: str = "marginal"
    max_iter: int = 50

    @property
    def structure(self) -> "MagmaStatic":
        """The part compiled programs depend on (kernel structures and the
        flag): changing the M-step settings recompiles nothing."""
        return MagmaStatic(self.k0, self.ki, bool(self.common))


class MagmaParams(NamedTuple):
    """Log hyper-parameters: ``theta0`` of the mean process, ``theta``
    ``{"kernel": ..., "log_noise": ...}`` of the individuals (one set, or
    batched with a leading axis of size M for Different HP)."""

    theta0: dict
    theta: dict


class Patterns(NamedTuple):
    """The input patterns of one bucket (:func:`mtgp.data.input_patterns`):
    ``rep`` (G,) one row of each, ``inverse`` (M_b,) the pattern of each
    row, ``counts`` (G,) their sizes n_p."""

    rep: jnp.ndarray
    inverse: jnp.ndarray
    counts: jnp.ndarray


class MagmaData(NamedTuple):
    """The training data laid out for the numerics (a pytree of arrays).

    Per size bucket b (tuples, see :func:`mtgp.data.bucket_individuals`):
    ``X[b]`` (M_b, n_b, d), ``y[b]``, ``mask[b]`` and ``idx[b]`` (M_b, n_b)
    (``idx`` is the grid index of each point, N for padding), ``rows[b]``
    (M_b,) the training-order indices of its individuals and ``weights[b]``
    (M_b,) their weights w_i. ``grid`` (N, d) is the pooled grid and ``m0``
    (N,) the prior mean on it.

    ``patterns``: None, or per bucket the :class:`Patterns` of its
    individuals (those with the same inputs share Psi_i under shared HPs;
    :meth:`with_patterns`), computed once with the layout and used by the
    shared-HP E step and M step (:func:`e_step_sums`,
    :func:`pattern_objective`) where grouping pays
    (:func:`mtgp.data.grouping_pays`)."""

    X: tuple
    y: tuple
    mask: tuple
    idx: tuple
    rows: tuple
    weights: tuple
    grid: jnp.ndarray
    m0: jnp.ndarray
    patterns: Optional[tuple] = None

    @classmethod
    def from_buckets(cls, buckets, grid, m0, weights: Optional[np.ndarray] = None) -> "MagmaData":
        """From a :class:`mtgp.data.Buckets` layout; ``weights`` (M,) in
        training order (default: ones, i.e. Magma)."""
        M = int(sum(len(r) for r in buckets.rows))
        w = np.ones(M) if weights is None else np.asarray(weights, dtype=float)
        f = lambda name: tuple(_to_device(getattr(b, name)) for b in buckets.blocks)
        return cls(f("X"), f("y"), f("mask"), f("idx"), tuple(_to_device(r) for r in buckets.rows),
                   tuple(_to_device(w[np.asarray(r)]) for r in buckets.rows),
                   _to_device(grid), _to_device(m0)).with_patterns()

    @classmethod
    def from_padded(cls, padded, grid, m0, weights: Optional[np.ndarray] = None) -> "MagmaData":
        """From one :class:`mtgp.data.Padded` block (all individuals in order)."""
        M = padded.X.shape[0]
        w = np.ones(M) if weights is None else np.asarray(weights, dtype=float)
        return cls((_to_device(padded.X),), (_to_device(padded.y),), (_to_device(padded.mask),),
                   (_to_device(padded.idx),), (_to_device(np.arange(M)),), (_to_device(w),),
                   _to_device(grid), _to_device(m0))

    def with_patterns(self) -> "MagmaData":
        """The same layout with the input :class:`Patterns` of every bucket
        (:func:`mtgp.data.input_patterns`, on the host: once per layout)."""
        from ..data import input_patterns

        pats = []
        for X, mask in zip(self.X, self.mask):
            rep, inv, cnt = input_patterns(np.asarray(X), np.asarray(mask))
            pats.append(Patterns(_to_device(rep), _to_device(inv), _to_device(cnt)))
        return self._replace(patterns=tuple(pats))

    def with_weights(self, weights: np.ndarray) -> "MagmaData":
        """The same layout with other per-individual weights (training order)."""
        w = jnp.asarray(weights)
        return self._replace(weights=tuple(w[r] for r in self.rows))

    @property
    def buckets(self):
        """(X, y, mask, idx, rows, weights) of each bucket."""
        return list(zip(self.X, self.y, self.mask, self.idx, self.rows, self.weights))

    @property
    def n_individuals(self) -> int:
        return int(sum(r.shape[0] for r in self.rows))


class MeanPosterior(NamedTuple):
    """Hyper-posterior of mu0 on the pooled grid, in factored form."""

    L_S: jnp.ndarray  # (N, N) Cholesky of S
    L_B: jnp.ndarray  # (N, N) Cholesky of B = I + L_S' K0 L_S
    alpha: jnp.ndarray  # (N,)  (I + S K0)^-1 c
    c: jnp.ndarray  # (N,)  sum_i w_i P_i' Psi_i^-1 (y_i - m0(t_i))
    mean: jnp.ndarray  # (N,)  m_hat(t)
    cov: jnp.ndarray  # (N, N) K_hat(t, t)
    loglik: jnp.ndarray  # exact log p({y_i} | Theta)
    jitter_S: jnp.ndarray
    jitter_B: jnp.ndarray


# ------------------------------------------------------- individual blocks

def masked_cov(kernel, params, log_noise, X, mask):
    """Psi = k(X, X) + sigma^2 I on real points; identity on padding."""
    K = kernel.evaluate(params, X, X)
    mm = mask[:, None] * mask[None, :]
    return K * mm + jnp.diag(jnp.exp(log_noise) * mask + (1.0 - mask))


def individual_covs(ki, common, theta, X, mask):
    """Batched Psi_i (M, n, n); ``theta`` is shared (common) or batched."""
    f = lambda th, x, m: masked_cov(ki, th["kernel"], th["log_noise"], x, m)
    return jax.vmap(f, in_axes=(None if common else 0, 0, 0))(theta, X, mask)


def take_rows(theta, rows):
    """Rows of a batched (Different HP) parameter pytree."""
    return jax.tree_util.tree_map(lambda a: a[rows], theta)


def put_rows(theta, rows, new):
    """``theta`` with the given rows replaced by ``new``."""
    return jax.tree_util.tree_map(lambda a, b: a.at[rows].set(b), theta, new)


#: compiled :func:`take_rows` and :func:`put_rows` (the eager gathers and
#: scatters cost ~1 ms each in dispatch, per bucket and M step)
take_rows_jit = jax.jit(take_rows)
put_rows_jit = jax.jit(put_rows)


def bucket_theta(static: MagmaStatic, theta, rows):
    """The individual HPs of one bucket (the shared set for Common HP)."""
    return theta if static.common else take_rows(theta, rows)


# ------------------------------------------------------------------ E step

def _bucket_sums(ki, common, theta, m0_ext, X, y, mask, idx, w):
    """One bucket: w_i Psi_i^-1 (masked), residuals y_i - m0(t_i) and
    sum_i w_i log N(y_i; m0(t_i), Psi_i) (constants of real points only)."""
    n = X.shape[1]
    Psi = individual_covs(ki, common, theta, X, mask)
    L = jax.vmap(cholesky)(Psi)
    eye_n = jnp.eye(n, dtype=Psi.dtype)
    mm = mask[:, :, None] * mask[:, None, :]
    Pinv = jax.vmap(lambda l: cho_solve(l, eye_n))(L) * mm
    r = (y - m0_ext[idx]) * mask
    a = jax.vmap(tri_solve)(L, r)
    # weights multiply each individual's terms before the (unchanged) sums:
    # with w = 1 the result is bit-for-bit the unweighted one
    ll = -0.5 * (jnp.sum(w[:, None] * a**2) + jnp.sum(w * jax.vmap(logdet_from_chol)(L))
                 + jnp.sum(w[:, None] * mask) * LOG_2PI)
    return Pinv * w[:, None, None], r, ll


def _pattern_bucket_sums(ki, theta, m0_ext, X, y, mask, idx, w, pat: Patterns):
    """One bucket under shared HPs, grouped by input pattern p (``pat``):
    one Cholesky of Psi_p per pattern, and per pattern the individuals'
    terms of :func:`_bucket_sums` summed first, W_p = sum_{i in p} w_i,
    sum_{i in p} w_i r_i and Q_p = sum_{i in p} w_i r_i r_i', so that
    sum_{i in p} w_i log N(y_i; m0(t_i), Psi_p)
    = -(tr(Psi_p^-1 Q_p) + W_p log|Psi_p|) / 2 + constants.
    Returns W_p Psi_p^-1 (masked), Psi_p^-1 sum_{i in p} w_i r_i, the grid
    indices of each pattern and the log-likelihood terms."""
    G, n = pat.rep.shape[0], X.shape[1]
    Xp, mp, ip = X[pat.rep], mask[pat.rep], idx[pat.rep]
    L = jax.vmap(cholesky)(individual_covs(ki, True, theta, Xp, mp))
    eye_n = jnp.eye(n, dtype=L.dtype)
    Pinv = jax.vmap(lambda l: cho_solve(l, eye_n))(L) * (mp[:, :, None] * mp[:, None, :])
    r = (y - m0_ext[idx]) * mask
    wr = w[:, None] * r
    W = jax.ops.segment_sum(w, pat.inverse, num_segments=G)
    rw = jax.ops.segment_sum(wr, pat.inverse, num_segments=G)
    Q = jax.ops.segment_sum(wr[:, :, None] * r[:, None, :], pat.inverse, num_segments=G)
    ll = -0.5 * (jnp.sum(Pinv * Q) + jnp.sum(W * jax.vmap(logdet_from_chol)(L))
                 + jnp.sum(w[:, None] * mask) * LOG_2PI)
    return Pinv * W[:, None, None], jnp.einsum("gij,gj->gi", Pinv, rw), ip, ll


def bucket_patterns(static: MagmaStatic, data: MagmaData, b: int) -> Optional[Patterns]:
    """The :class:`Patterns` bucket b is computed with (shared HPs, patterns
    known and grouping pays: :func:`mtgp.data.grouping_pays`), else None
    (the per-individual formulas). Decided from shapes: static under jit."""
    from ..data import grouping_pays

    if not static.common or data.patterns is None or data.patterns[b] is None:
        return None
    pat = data.patterns[b]
    return pat if grouping_pays(pat.rep.shape[0], data.X[b].shape[0]) else None


def e_step_sums(static: MagmaStatic, theta, data: MagmaData):
    """(S, c, ll): the weighted sums over individuals of Props. 1/4 (see the
    module docstring), accumulated bucket by bucket straight into one
    (N, N) array (padding goes to the dropped index N). Under shared HPs a
    bucket with few input patterns is summed per pattern
    (:func:`_pattern_bucket_sums`: the same sums, one Cholesky per pattern)."""
    m0 = data.m0
    N = m0.shape[0]
    m0_ext = jnp.concatenate([m0, jnp.zeros(1, m0.dtype)])
    S = jnp.zeros((N + 1, N + 1), m0.dtype)
    c = jnp.zeros(N + 1, m0.dtype)
    ll = 0.0
    for b, (X, y, mask, idx, rows, w) in enumerate(data.buckets):
        pat = bucket_patterns(static, data, b)
        if pat is not None:
            Sb, cb, idx, llb = _pattern_bucket_sums(static.ki, theta, m0_ext, X, y, mask, idx, w, pat)
        else:
            th = bucket_theta(static, theta, rows)
            Sb, r, llb = _bucket_sums(static.ki, static.common, th, m0_ext, X, y, mask, idx, w)
            cb = jnp.einsum("mij,mj->mi", Sb, r)
        S = S.at[idx[:, :, None], idx[:, None, :]].add(Sb)
        c = c.at[idx].add(cb)
        ll = ll + llb
    return symmetrize(S[:N, :N]), c[:N], ll


def posterior_from_sums(static: MagmaStatic, theta0, grid, m0, S, c, ll) -> MeanPosterior:
    """Hyper-posterior of mu0 on the grid (Props. 1 and 4, without K0^-1)
    and the exact marginal log-likelihood, from the E-step sums."""
    return _posterior(static, theta0, grid, m0, S, c, ll, safe_cholesky)


def _plain_cholesky(A):
    """:func:`~mtgp.linalg.safe_cholesky`'s first try alone, ``(L, 0.0)``:
    the same factor whenever that try succeeds (NaN when it fails). Its
    jitter loop (a ``lax.cond`` around a ``lax.while_loop``) made each
    program ~1 s longer to compile on a loaded 2-core machine, for a case
    that almost never happens; the compiled wrappers below run this first
    and fall back to the full program only when a factor is not finite
    (issue 11: first fits)."""
    return cholesky(A), jnp.zeros((), A.dtype)


def _finite(*arrays):
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a)) for a in arrays]))


def _posterior(static, theta0, grid, m0, S, c, ll, factor) -> MeanPosterior:
    return factored_posterior(static.k0, theta0, grid, m0, S, c, ll, factor, factor)


def factored_posterior(k0, theta0, grid, m0, S, c, ll, factor_S, factor_B) -> MeanPosterior:
    """Props. 1/4 in the factored form (never K0^-1): with S = L_S L_S' and
    B = I + L_S' K0 L_S, alpha = c - L_S B^-1 L_S' K0 c, mean m0 + K0 alpha,
    covariance K0 - K0 L_S B^-1 L_S' K0, and ll + c' K0 alpha / 2 - log|B| / 2.
    ``factor_S`` / ``factor_B`` return (factor, jitter added): Magma's safe
    Cholesky, or MagmaClust's factor of a PSD S_k."""
    N = grid.shape[0]
    K0 = symmetrize(k0.evaluate(theta0, grid, grid))
    L_S, jit_S = factor_S(S)
    B = jnp.eye(N, dtype=K0.dtype) + symmetrize(L_S.T @ K0 @ L_S)
    L_B, jit_B = factor_B(B)
    K0c = K0 @ c
    alpha = c - L_S @ cho_solve(L_B, L_S.T @ K0c)
    mean = m0 + K0 @ alpha
    V = tri_solve(L_B, L_S.T @ K0)
    cov = K0 - V.T @ V
    loglik = ll + 0.5 * jnp.dot(c, K0 @ alpha) - 0.5 * logdet_from_chol(L_B)
    return MeanPosterior(L_S, L_B, alpha, c, mean, cov, loglik, jit_S, jit_B)


def mean_posterior(static: MagmaStatic, params: MagmaParams, data: MagmaData) -> MeanPosterior:
    """E step (Props. 1 and 4) and exact marginal log-likelihood. Buckets
    only change the padding, never the result."""
    S, c, ll = e_step_sums(static, params.theta, data)
    return posterior_from_sums(static, params.theta0, data.grid, data.m0, S, c, ll)


@partial(jax.jit, static_argnames=("static",))
def _e_step_sums_jit(static, theta, data):
    return e_step_sums(static, theta, data)


@partial(jax.jit, static_argnames=("static",))
def _posterior_from_sums_jit(static, theta0, grid, m0, S, c, ll):
    return posterior_from_sums(static, theta0, grid, m0, S, c, ll)


@partial(jax.jit, static_argnames=("static",))
def _posterior_first_try_jit(static, theta0, grid, m0, S, c, ll):
    post = _posterior(static, theta0, grid, m0, S, c, ll, _plain_cholesky)
    return post, _finite(post.L_S, post.L_B)


@partial(jax.jit, static_argnames=("static",))
def _e_step_jit(static, params, data):
    return mean_posterior(static, params, data)


def e_step_sums_jit(static: MagmaStatic, theta, data: MagmaData):
    """Compiled :func:`e_step_sums` (one program per structure)."""
    return _e_step_sums_jit(static.structure, theta, data)


def posterior_from_sums_jit(static: MagmaStatic, theta0, grid, m0, S, c, ll) -> MeanPosterior:
    """Compiled :func:`posterior_from_sums`: the plain factorisations first
    (:func:`_plain_cholesky`), the program with the jitter loop only when
    one of them fails (same result either way)."""
    post, ok = _posterior_first_try_jit(static.structure, theta0, grid, m0, S, c, ll)
    if bool(ok):
        return post
    return _posterior_from_sums_jit(static.structure, theta0, grid, m0, S, c, ll)


def e_step_jit(static: MagmaStatic, params: MagmaParams, data: MagmaData) -> MeanPosterior:
    """Compiled :func:`mean_posterior` (the whole E step as one program)."""
    return _e_step_jit(static.structure, params, data)


def mean_posterior_at(k0, theta0, post: MeanPosterior, grid, X, m0_X):
    """Hyper-posterior mean (n,) and covariance (n, n) of mu0 at any inputs X
    (Prop. 4 on the union of X and the grid, marginalised; exact)."""
    KXt = k0.evaluate(theta0, X, grid)
    mean = m0_X + KXt @ post.alpha
    V = tri_solve(post.L_B, post.L_S.T @ KXt.T)
    cov = symmetrize(k0.evaluate(theta0, X, X) - V.T @ V)
    return mean, cov


@partial(jax.jit, static_argnames=("k0",))
def mean_posterior_at_jit(k0, theta0, post, grid, X, m0_X):
    return mean_posterior_at(k0, theta0, post, grid, X, m0_X)


# ---------------------------------------------------------- M-step pieces

@jax.custom_vjp
def gaussian_terms(Psi, r, R, n):
    """(n log|Psi| + r' Psi^-1 r + tr(Psi^-1 R)) / 2 for one (n, n) block
    (R symmetric): the negative of the individual objective L^{t_i} of
    Props. 2/3 (n = 1, r = y_i - m_hat(t_i), R = K_hat(t_i, t_i)), or of a
    pattern's sum (n = n_p, r = 0, R = the pattern's scatter).

    The gradient in Psi is written out (Rasmussen & Williams 2006, eq. 5.9):
    (n Psi^-1 - alpha alpha' - Psi^-1 R Psi^-1) / 2 with alpha = Psi^-1 r,
    instead of reverse-mode differentiation through the Cholesky
    factorisation (several times dearer at n = 30: it is the L-BFGS
    evaluations' main cost in the M step)."""
    return _gaussian_terms_fwd(Psi, r, R, n)[0]


def _gaussian_terms_fwd(Psi, r, R, n):
    L = cholesky(Psi)
    Pinv = cho_solve(L, jnp.eye(Psi.shape[0], dtype=Psi.dtype))
    alpha = Pinv @ r
    logdet = logdet_from_chol(L)
    value = 0.5 * (n * logdet + jnp.dot(r, alpha) + jnp.sum(Pinv * R))
    return value, (Pinv, alpha, R, n, logdet)


def _gaussian_terms_bwd(res, g):
    Pinv, alpha, R, n, logdet = res
    gPsi = 0.5 * g * (n * Pinv - jnp.outer(alpha, alpha) - Pinv @ R @ Pinv)
    return gPsi, g * alpha, 0.5 * g * Pinv, 0.5 * g * logdet


gaussian_terms.defvjp(_gaussian_terms_fwd, _gaussian_terms_bwd)


def expected_loglik_terms(ki, common, theta, X, y, mask, m_hat_i, K_hat_i):
    """Per individual: log N(y_i; m_hat(t_i), Psi_i) - Tr(K_hat_i Psi_i^-1) / 2
    (the objective L^{t_i} of Props. 2 and 3), constants dropped
    (:func:`gaussian_terms`)."""
    Psi = individual_covs(ki, common, theta, X, mask)
    r = (y - m_hat_i) * mask
    one = jnp.ones(Psi.shape[0], Psi.dtype)
    return -jax.vmap(gaussian_terms)(Psi, r, K_hat_i, one)


def theta0_expected_objective(k0, theta0, grid, m0, post):
    """-(log N(m_hat; m0, K0) - Tr(K_hat K0^-1) / 2) / N: Props. 2/3, first
    line (the paper's M step for theta0; needs K0^-1, hence a jitter)."""
    K0 = symmetrize(k0.evaluate(theta0, grid, grid))
    K0 = K0 + EXPECTED_Q_JITTER * jnp.mean(jnp.diagonal(K0)) * jnp.eye(K0.shape[0], dtype=K0.dtype)
    L = cholesky(K0)
    a = tri_solve(L, post.mean - m0)
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


def theta0_marginal_objective(k0, theta0, grid, L_S, w):
    """-log p({y_i} | theta0, fixed individual HPs) / N up to a constant, with
    w = L_S^-1 c (see :func:`_marginal_terms`): an exact conditional
    maximisation step (ECME, Liu & Rubin 1994) needing no K0^-1."""
    K0 = symmetrize(k0.evaluate(theta0, grid, grid))
    return _marginal_terms(K0, L_S, w) / grid.shape[0]


def theta0_inputs(S, c):
    """L_S (Cholesky of S) and w = L_S^-1 c: the data of the theta_0 ECME
    objective, from the E-step sums at the new individual HPs. (Compiled:
    the plain factorisation first, the jitter loop only when it fails.)"""
    L_S, w, ok = _theta0_inputs_first_try(S, c)
    if bool(ok):
        return L_S, w
    return _theta0_inputs_safe(S, c)


@jax.jit
def _theta0_inputs_first_try(S, c):
    L_S, _ = _plain_cholesky(S)
    return L_S, tri_solve(L_S, c), _finite(L_S)


@jax.jit
def _theta0_inputs_safe(S, c):
    L_S, _ = safe_cholesky(S)
    return L_S, tri_solve(L_S, c)


@jax.jit
def posterior_at_individuals(post, idx):
    """Per bucket, the hyper-posterior mean and covariance at each
    individual's inputs, (m_hat(t_i), K_hat(t_i, t_i)) (padding: index N)."""
    mean_ext = jnp.concatenate([post.mean, jnp.zeros(1, post.mean.dtype)])
    cov_ext = jnp.pad(post.cov, ((0, 1), (0, 1)))
    return tuple((mean_ext[ib], cov_ext[ib[:, :, None], ib[:, None, :]]) for ib in idx)


def common_objective(ki):
    """-(sum_i L^{t_i}) / (number of points) for the shared individual HPs
    (Prop. 3), over all buckets at once."""
    def f(th, X, y, mask, moments):
        tot, n_points = 0.0, 0.0
        for Xb, yb, mb, (mh, kh) in zip(X, y, mask, moments):
            tot = tot + jnp.sum(expected_loglik_terms(ki, True, th, Xb, yb, mb, mh, kh))
            n_points = n_points + jnp.sum(mb)
        return -tot / n_points
    return f


def pattern_objective(ki):
    """-(sum_i L^{t_i}) / (number of points) for shared individual HPs
    (Prop. 3) on input patterns: with R_p = sum_{i in p} R_i, the sum of the
    individuals' expected scatters of pattern p (:func:`pattern_moments`),
    sum_p [n_p log|Psi_p| + tr(Psi_p^-1 R_p)] / 2 over the points: the value
    of :func:`common_objective`, one Cholesky per pattern instead of one
    per individual. Arguments: per bucket the patterns' inputs ``X`` and
    ``mask`` (G_b, n_b), ``R`` (G_b, n_b, n_b) and ``counts`` n_p (G_b,),
    and the total number of points."""
    def f(th, X, mask, R, counts, n_points):
        tot = 0.0
        for Xb, mb, Rb, cb in zip(X, mask, R, counts):
            Psi = individual_covs(ki, True, th, Xb, mb)
            zero = jnp.zeros(Psi.shape[:2], Psi.dtype)
            tot = tot + jnp.sum(jax.vmap(gaussian_terms)(Psi, zero, Rb, cb))
        return tot / n_points
    return f


def use_pattern_m_step(data: MagmaData) -> bool:
    """Whether the shared-HP M step runs on input patterns
    (:func:`pattern_objective`): patterns known and, over all buckets,
    grouping pays (:func:`mtgp.data.grouping_pays`)."""
    from ..data import grouping_pays

    if data.patterns is None or any(p is None for p in data.patterns):
        return False
    return grouping_pays(sum(int(p.rep.shape[0]) for p in data.patterns), data.n_individuals)


@jax.jit
def pattern_moments(post: MeanPosterior, data: MagmaData):
    """The arguments of :func:`pattern_objective` after ``post`` (Magma):
    per bucket the patterns' X and mask, R_p = sum_{i in p}
    (y_i - m_hat(t_i))(y_i - m_hat(t_i))' + n_p K_hat(t_p, t_p) (masked) and
    n_p, and the number of points."""
    mean_ext = jnp.concatenate([post.mean, jnp.zeros(1, post.mean.dtype)])
    cov_ext = jnp.pad(post.cov, ((0, 1), (0, 1)))
    X, mask, R, counts = [], [], [], []
    for Xb, yb, mb, ib, pat in zip(data.X, data.y, data.mask, data.idx, data.patterns):
        r = (yb - mean_ext[ib]) * mb
        G = pat.rep.shape[0]
        ip = ib[pat.rep]
        Q = jax.ops.segment_sum(r[:, :, None] * r[:, None, :], pat.inverse, num_segments=G)
        R.append(Q + pat.counts[:, None, None] * cov_ext[ip[:, :, None], ip[:, None, :]])
        X.append(Xb[pat.rep])
        mask.append(mb[pat.rep])
        counts.append(pat.counts)
    n_points = sum(jnp.sum(mb) for mb in data.mask)
    return tuple(X), tuple(mask), tuple(R), tuple(counts), n_points


def individual_objective(ki):
    """-L^{t_i} / n_i for one individual's own HPs (Prop. 2)."""
    def f(th, x, yy, mk, mh, kh):
        one = lambda a: a[None]
        v = expected_loglik_terms(ki, False, jax.tree_util.tree_map(one, th), one(x), one(yy),
                                  one(mk), one(mh), one(kh))
        return -v[0] / jnp.maximum(jnp.sum(mk), 1.0)
    return f
