"""The L-BFGS iteration shared by the in-graph and the batched host-driven
drivers (Nocedal & Wright 2006, *Numerical Optimization*, 2nd ed.): the
two-loop recursion (Alg. 7.4), and the iteration of Alg. 7.5 split into
pure, vmappable steps: initial state, search direction, one backtracking
trial (Armijo condition, eq. 3.6a, constant 1e-4) and acceptance (curvature
pair update, skipped when s^T y is not positive).

The state ("carry") of one problem is the tuple
``(x, value, grad, S, Y, rho, k, n_iter, done)`` on the flattened parameters;
``S``, ``Y``, ``rho`` are a ring buffer of the last ``m`` pairs and ``k``
the number of pairs stored.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

#: sufficient-decrease constant of the Armijo condition (N&W eq. 3.6a)
ARMIJO_C1 = 1e-4


class OptimResult(NamedTuple):
    """``params`` (the start's pytree structure), ``value`` of the objective
    there, ``n_iter`` iterations done and ``grad_norm`` (Euclidean) there."""

    params: object
    value: jnp.ndarray
    n_iter: jnp.ndarray
    grad_norm: jnp.ndarray


def safe_objective(fun):
    """``fun`` with non-finite values mapped to +inf, so that a line search
    backs off from them instead of accepting them."""

    def wrapped(x):
        v = fun(x)
        return jnp.where(jnp.isfinite(v), v, jnp.inf)

    return wrapped


def two_loop(g, S, Y, rho, k, m):
    """-H_k g by the L-BFGS two-loop recursion (N&W Alg. 7.4) over a ring
    buffer of the last ``m`` pairs (m static and small: unrolled), with the
    initial scaling gamma = s^T y / y^T y of the newest pair (N&W eq. 7.20)."""
    q = g
    alphas = []
    for j in range(m):  # newest to oldest
        i = (k - 1 - j) % m
        a = rho[i] * jnp.dot(S[i], q)
        q = q - a * Y[i]
        alphas.append((i, a))
    newest = (k - 1) % m
    yy = jnp.dot(Y[newest], Y[newest])
    gamma = jnp.where((k > 0) & (yy > 0), jnp.dot(S[newest], Y[newest]) / jnp.where(yy > 0, yy, 1.0), 1.0)
    r = gamma * q
    for i, a in reversed(alphas):  # oldest to newest
        b = rho[i] * jnp.dot(Y[i], r)
        r = r + S[i] * (a - b)
    return -r


def init_state(f, flat0, m, tol):
    """Initial state at ``flat0`` (``f``: objective on flat parameters,
    already :func:`safe_objective`); a non-finite start is done at once."""
    p = flat0.shape[0]
    v0, g0 = jax.value_and_grad(f)(flat0)
    g0 = jnp.where(jnp.isfinite(g0), g0, 0.0)
    return (flat0, v0, g0, jnp.zeros((m, p), flat0.dtype), jnp.zeros((m, p), flat0.dtype),
            jnp.zeros(m, flat0.dtype), jnp.int32(0), jnp.int32(0),
            ~jnp.isfinite(v0) | (jnp.linalg.norm(g0) < tol))


def direction(c, m):
    """L-BFGS direction and its slope g^T d: -H_k g, scaled to unit length
    at most while no curvature pair is stored; scaled steepest descent where
    the two-loop direction is not a descent one (or not finite)."""
    x, v, g, S, Y, rho, k, it, done = c
    d = two_loop(g, S, Y, rho, k, m)
    # no curvature pair yet (H_0 = I): a first step of unit length at most,
    # as L-BFGS-B's first iteration (a step -g overshoots when |g| is large)
    d = jnp.where(k == 0, d / jnp.maximum(1.0, jnp.linalg.norm(g)), d)
    slope = jnp.dot(g, d)
    gd = -g / jnp.maximum(1.0, jnp.linalg.norm(g))
    bad = ~(slope < 0) | ~jnp.all(jnp.isfinite(d))
    return jnp.where(bad, gd, d), jnp.where(bad, jnp.dot(g, gd), slope)


def trial(f, c, d, slope, t, acc):
    """Value at x + t d (no gradient: most trials are rejected or followed by
    one gradient evaluation); ``acc`` = (x, v, accepted) keeps the first
    point satisfying Armijo's condition."""
    x, v = c[0], c[1]
    xn = x + t * d
    vn = f(xn)
    ok = jnp.isfinite(vn) & (vn <= v + ARMIJO_C1 * t * slope) & ~c[-1] & ~acc[2]
    return jnp.where(ok, xn, acc[0]), jnp.where(ok, vn, acc[1]), acc[2] | ok


def accept(f, c, acc, m, tol, ftol):
    """New state from the accepted point ``acc = (x_new, v_new, moved)``
    (gradient evaluated there). A problem without an acceptable step, or
    already done, stays where it is and is done: the value never increases.
    Stops on gradient norm below ``tol`` or relative decrease below ``ftol``."""
    return accept_with_grad(c, acc, jax.grad(f)(acc[0]), m, tol, ftol)


def accept_with_grad(c, acc, gn, m, tol, ftol):
    """:func:`accept` with the gradient ``gn`` at ``acc[0]`` already
    evaluated (the in-graph driver evaluates values and gradients together)."""
    x, v, g, S, Y, rho, k, it, done = c
    xn, vn, moved = acc
    gn = jnp.where(moved, jnp.where(jnp.isfinite(gn), gn, 0.0), g)
    s, y = xn - x, gn - g
    sy = jnp.dot(s, y)
    keep = moved & (sy > 1e-10 * jnp.linalg.norm(s) * jnp.linalg.norm(y))
    slot = k % m
    S = jnp.where(keep, S.at[slot].set(s), S)
    Y = jnp.where(keep, Y.at[slot].set(y), Y)
    rho = jnp.where(keep, rho.at[slot].set(1.0 / jnp.where(keep, sy, 1.0)), rho)
    small = jnp.abs(v - vn) <= ftol * jnp.maximum(1.0, jnp.abs(v))
    new_done = done | ~moved | (jnp.linalg.norm(gn) < tol) | (moved & small)
    return (jnp.where(moved, xn, x), jnp.where(moved, vn, v), jnp.where(moved, gn, g), S, Y, rho,
            k + keep.astype(jnp.int32), it + (~done).astype(jnp.int32), new_done)
