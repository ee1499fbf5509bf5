"""Numerically careful dense linear algebra shared by every model.

Everything is Cholesky based: solves and log-determinants never form an
explicit inverse. ``safe_cholesky`` adds a diagonal jitter *only* when the
plain factorisation fails, growing it tenfold per try, and returns the jitter
it used so that the caller can report it (``report_jitter``) instead of
hiding it.
"""

from __future__ import annotations

import math
import functools
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from . import config
from .exceptions import JitterWarning

LOG_2PI = math.log(2.0 * math.pi)


def safe_cholesky(A, base_jitter: Optional[float] = None, max_tries: Optional[int] = None):
    """Lower Cholesky factor of the symmetric matrix ``A`` (n, n).

    Tries the plain factorisation first; if it fails (non-finite factor),
    retries with ``jitter * mean(diag(A)) * I`` for jitter = base_jitter,
    10 * base_jitter, ... (at most ``max_tries`` times). Both default to
    :func:`mtgp.config.get` (``jitter``, ``jitter_max_tries``), read when the
    calling program is traced.

    Returns ``(L, added)`` where ``added`` is the absolute diagonal value that
    was added (0.0 when none was needed; NaN factor if every try failed).
    Not reverse-differentiable (it loops); objectives use ``cholesky``.
    """
    s = config.get()
    base_jitter = float(s.jitter if base_jitter is None else base_jitter)
    max_tries = int(s.jitter_max_tries if max_tries is None else max_tries)
    return _safe_cholesky(A, base_jitter, max_tries)


@functools.partial(jax.jit, static_argnames=("base_jitter", "max_tries"))
def _safe_cholesky(A, base_jitter: float, max_tries: int):
    A = 0.5 * (A + A.T)
    n = A.shape[-1]
    scale = jnp.maximum(jnp.mean(jnp.abs(jnp.diagonal(A))), 1e-300)
    eye = jnp.eye(n, dtype=A.dtype)

    def failed(L):
        return ~jnp.all(jnp.isfinite(L))

    def cond(carry):
        L, jitter, k = carry
        return failed(L) & (k < max_tries)

    def body(carry):
        _, jitter, k = carry
        jitter = jnp.where(jitter == 0.0, base_jitter, 10.0 * jitter)
        return jnp.linalg.cholesky(A + jitter * scale * eye), jitter, k + 1

    L0 = jnp.linalg.cholesky(A)
    # the retry loop sits in a cond so that no while loop runs in the common
    # case (a while loop around large factorisations was seen to hang the XLA
    # CPU runtime of jax 0.10; see docs/results/magma_scale_notes.md)
    retry = lambda L: jax.lax.while_loop(cond, body, (L, jnp.zeros((), A.dtype), 0))[:2]
    keep = lambda L: (L, jnp.zeros((), A.dtype))
    L, jitter = jax.lax.cond(failed(L0), retry, keep, L0)
    return L, jitter * scale


def report_jitter(added, where: str) -> None:
    """Warn (once per call) when ``safe_cholesky`` had to add a jitter."""
    added = np.asarray(added)
    if added.size and np.any(added > 0):
        warnings.warn(
            f"{where}: matrix not numerically positive definite; added a diagonal "
            f"jitter of up to {float(np.max(added)):.3g} to factorise it",
            JitterWarning,
            stacklevel=3,
        )
    if added.size and np.any(~np.isfinite(added)):
        raise FloatingPointError(f"{where}: Cholesky factorisation failed even with jitter")


def cholesky(A):
    """Plain lower Cholesky (differentiable); NaN on failure."""
    return jnp.linalg.cholesky(0.5 * (A + jnp.swapaxes(A, -1, -2)))


def cho_solve(L, B):
    """Solve (L L^T) X = B."""
    return jsl.cho_solve((L, True), B)


def tri_solve(L, B, trans: bool = False):
    """Solve L X = B (or L^T X = B with trans=True)."""
    return jsl.solve_triangular(L, B, lower=True, trans=1 if trans else 0)


def logdet_from_chol(L):
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def gaussian_logpdf(r, L, n=None):
    """log N(r; 0, L L^T). ``n`` overrides the dimension in the constant
    (used with padded vectors whose padding contributes zero otherwise)."""
    alpha = tri_solve(L, r)
    n = r.shape[-1] if n is None else n
    return -0.5 * (jnp.sum(alpha**2) + logdet_from_chol(L) + n * LOG_2PI)


def mask_padded(C, mask):
    """The covariance ``C`` (n, n) of padded points with the padding masked
    out exactly: rows and columns where ``mask`` (n,) is 0 become those of
    the identity, so that a Cholesky factor, solves against residuals that
    are 0 there, and the log-determinant equal those of the real points
    alone."""
    mask = jnp.asarray(mask, C.dtype)
    real = (mask[:, None] * mask[None, :]) > 0
    return jnp.where(real, C, 0.0) + jnp.diag(1.0 - mask)


def symmetrize(A):
    return 0.5 * (A + jnp.swapaxes(A, -1, -2))
