"""L-BFGS minimisation (optax) that runs entirely under ``jit`` and
``vmap``: one objective, or a batch of independent objectives in lock-step
(Magma's Different HP M step, multi-start searches).

Objectives are minimised on unconstrained (log-scale) parameters given as any
pytree. A non-finite objective value (e.g. a failed Cholesky at an extreme
step) is mapped to +inf so the line search backs off instead of accepting it,
and the result is never worse than the starting point.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree


class OptimResult(NamedTuple):
    params: object
    value: jnp.ndarray
    n_iter: jnp.ndarray
    grad_norm: jnp.ndarray


def _tree_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def _safe(fun):
    def wrapped(x):
        v = fun(x)
        return jnp.where(jnp.isfinite(v), v, jnp.inf)

    return wrapped


def lbfgs_minimize(fun: Callable, x0, max_iter: int = 100, tol: float = 1e-6,
                   memory_size: int = 10) -> OptimResult:
    """Minimise ``fun`` from ``x0`` with L-BFGS and a zoom line search.

    Stops when the gradient norm falls below ``tol`` or after ``max_iter``
    iterations. Pure JAX: usable inside ``jit`` and ``vmap``.
    """
    fun = _safe(fun)
    opt = optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=30, verbose=False),
    )
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state, k = carry
        value, grad = value_and_grad(x, state=state)
        grad = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(x, updates), state, k + 1

    def cond(carry):
        _, state, k = carry
        grad = optax.tree_utils.tree_get(state, "grad")
        gnorm = _tree_norm(grad)
        value = optax.tree_utils.tree_get(state, "value")
        return (k == 0) | ((k < max_iter) & (gnorm >= tol) & jnp.isfinite(value))

    v0 = fun(x0)
    state0 = opt.init(x0)
    x, state, k = jax.lax.while_loop(cond, step, (x0, state0, 0))
    v = fun(x)
    # never return something worse than the start (EM monotonicity relies on it)
    better = v <= v0
    x = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), x, x0)
    v = jnp.where(better, v, v0)
    g = jax.grad(lambda p: fun(p))(x)
    gnorm = _tree_norm(g)
    return OptimResult(x, v, k, gnorm)


def _two_loop(g, S, Y, rho, k, m):
    """L-BFGS two-loop recursion over a ring buffer of the last m pairs."""
    q = g
    alphas = []
    for j in range(m):  # newest to oldest (m is static and small)
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


def lbfgs_parallel_backtracking(fun: Callable, x0, max_iter: int = 100, tol: float = 1e-6,
                                memory_size: int = 10, n_steps: int = 10,
                                ftol: float = 1e-12) -> OptimResult:
    """L-BFGS whose line search tries ``n_steps`` step sizes 1, 1/2, 1/4, ...
    at once (vmapped) and keeps the first satisfying Armijo's condition.

    One ``lax.while_loop``, no nested loops and no host callbacks, so it can
    itself be vmapped over thousands of small independent problems (this is
    what Magma's Different HP M step does); optax's zoom line search inside a
    vmapped loop was seen to deadlock the XLA CPU runtime here.
    """
    flat0, unravel = ravel_pytree(x0)
    f = _safe(lambda z: fun(unravel(z)))
    vg = jax.value_and_grad(f)
    p = flat0.shape[0]
    m = memory_size
    steps = 0.5 ** jnp.arange(n_steps, dtype=flat0.dtype)

    def clean(g):
        return jnp.where(jnp.isfinite(g), g, 0.0)

    v0, g0 = vg(flat0)
    g0 = clean(g0)
    init = (flat0, v0, g0, jnp.zeros((m, p), flat0.dtype), jnp.zeros((m, p), flat0.dtype),
            jnp.zeros(m, flat0.dtype), jnp.int32(0), jnp.int32(0), ~jnp.isfinite(v0) | (jnp.linalg.norm(g0) < tol))

    def body(c):
        x, v, g, S, Y, rho, k, it, done = c
        d = _two_loop(g, S, Y, rho, k, m)
        slope = jnp.dot(g, d)
        # fall back to (scaled) steepest descent if the direction is not a descent one
        gd = -g / jnp.maximum(1.0, jnp.linalg.norm(g))
        bad = ~(slope < 0) | ~jnp.all(jnp.isfinite(d))
        d = jnp.where(bad, gd, d)
        slope = jnp.where(bad, jnp.dot(g, gd), slope)
        cand = x[None, :] + steps[:, None] * d[None, :]
        vals = jax.vmap(f)(cand)
        armijo = vals <= v + 1e-4 * steps * slope
        first = jnp.argmax(armijo)
        best = jnp.argmin(vals)
        pick = jnp.where(jnp.any(armijo), first, best)
        moved = vals[pick] < v
        xn = jnp.where(moved, cand[pick], x)
        vn = jnp.where(moved, vals[pick], v)
        gn = clean(jax.grad(f)(xn))
        s, y = xn - x, gn - g
        sy = jnp.dot(s, y)
        keep = moved & (sy > 1e-10 * jnp.linalg.norm(s) * jnp.linalg.norm(y))
        slot = k % m
        S = jnp.where(keep, S.at[slot].set(s), S)
        Y = jnp.where(keep, Y.at[slot].set(y), Y)
        rho = jnp.where(keep, rho.at[slot].set(1.0 / jnp.where(keep, sy, 1.0)), rho)
        k = k + keep.astype(jnp.int32)
        small = jnp.abs(v - vn) <= ftol * jnp.maximum(1.0, jnp.abs(v))
        done = (~moved) | (jnp.linalg.norm(gn) < tol) | (small & moved & (jnp.linalg.norm(s) < 1e-10))
        return xn, vn, gn, S, Y, rho, k, it + 1, done

    def cond(c):
        return (~c[-1]) & (c[-2] < max_iter)

    x, v, g, *_, it, _ = jax.lax.while_loop(cond, body, init)
    return OptimResult(unravel(x), v, it, jnp.linalg.norm(g))


def batched_lbfgs_minimize(fun: Callable, x0, *args, max_iter: int = 100,
                           tol: float = 1e-6) -> OptimResult:
    """Minimise ``fun(x, *args)`` independently for each leading-axis slice of
    ``x0`` and ``args`` (a vmapped L-BFGS: one program, all problems at once,
    each stopping on its own criterion)."""

    def one(x, *a):
        return lbfgs_parallel_backtracking(lambda p: fun(p, *a), x, max_iter=max_iter, tol=tol)

    return jax.vmap(one)(x0, *args)
