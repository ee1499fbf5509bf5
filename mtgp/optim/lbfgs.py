"""L-BFGS minimisation of pytree-parameterised objectives.

* :func:`minimize_host` (one problem) and :func:`batched_minimize_host`
  (many independent problems in lock-step, e.g. Magma's Different HP M step)
  drive the iterations from Python over loop-free compiled programs: what
  the models train with (see the note above :func:`cached_jit`).
* :func:`lbfgs_minimize` (optax, zoom line search) and
  :func:`lbfgs_parallel_backtracking` / :func:`batched_lbfgs_minimize` run
  entirely under ``jit`` and ``vmap``: for small problems inside a larger
  compiled program (a new individual's hyper-parameters at prediction time,
  the single-task GP).

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

from ..compile import cached_jit


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


def _plb_init(f, flat0, m, tol):
    """Initial carry of :func:`lbfgs_parallel_backtracking` (flat objective f)."""
    p = flat0.shape[0]
    v0, g0 = jax.value_and_grad(f)(flat0)
    g0 = jnp.where(jnp.isfinite(g0), g0, 0.0)
    return (flat0, v0, g0, jnp.zeros((m, p), flat0.dtype), jnp.zeros((m, p), flat0.dtype),
            jnp.zeros(m, flat0.dtype), jnp.int32(0), jnp.int32(0),
            ~jnp.isfinite(v0) | (jnp.linalg.norm(g0) < tol))


def _plb_body(f, c, m, tol, n_steps, ftol):
    """One iteration of :func:`lbfgs_parallel_backtracking`: the ``n_steps``
    step sizes 1, 1/2, ... evaluated at once, the first satisfying Armijo's
    condition kept (else the best, if it decreases); a problem that is
    already done is left unchanged (so a batch can run in lock-step)."""
    x, v, done = c[0], c[1], c[-1]
    d, slope = _plb_direction(c, m)
    steps = 0.5 ** jnp.arange(n_steps, dtype=x.dtype)
    cand = x[None, :] + steps[:, None] * d[None, :]
    vals = jax.vmap(f)(cand)
    armijo = vals <= v + 1e-4 * steps * slope
    pick = jnp.where(jnp.any(armijo), jnp.argmax(armijo), jnp.argmin(vals))
    moved = (vals[pick] < v) & ~done
    return _plb_accept(f, c, (cand[pick], vals[pick], moved), m, tol, ftol)


def lbfgs_parallel_backtracking(fun: Callable, x0, max_iter: int = 100, tol: float = 1e-6,
                                memory_size: int = 10, n_steps: int = 10,
                                ftol: float = 1e-12) -> OptimResult:
    """L-BFGS whose line search tries ``n_steps`` step sizes 1, 1/2, 1/4, ...
    at once (vmapped) and keeps the first satisfying Armijo's condition.

    One ``lax.while_loop``, no nested loops and no host callbacks, so it can
    itself be vmapped over many small independent problems (used for the
    multi-start search of a new individual's hyper-parameters); optax's zoom
    line search inside a vmapped loop was seen to deadlock the XLA CPU
    runtime here. Large problems use :func:`batched_minimize_host`, the same
    iteration driven from Python.
    """
    flat0, unravel = ravel_pytree(x0)
    f = _safe(lambda z: fun(unravel(z)))
    init = _plb_init(f, flat0, memory_size, tol)

    def cond(c):
        return (~c[-1]) & (c[-2] < max_iter)

    body = lambda c: _plb_body(f, c, memory_size, tol, n_steps, ftol)
    x, v, g, *_, it, _ = jax.lax.while_loop(cond, body, init)
    return OptimResult(unravel(x), v, it, jnp.linalg.norm(g))


# ------------------------------------------------------- host-driven loops
#
# On jax/jaxlib 0.10.2 the XLA CPU runtime was seen to wait forever on large
# jitted programs containing a ``lax.while_loop`` (a lost completion, 0% CPU;
# docs/results/magma_scale_notes.md). The drivers below run the iterations
# from Python: every compiled program is loop-free (one objective and
# gradient, or one vmapped L-BFGS iteration), at the price of one dispatch
# and one device-to-host transfer per iteration (~0.1 ms).

def minimize_host(key, objective: Callable, x0, args=(), max_iter: int = 100,
                  tol: float = 1e-6, ftol: float = 1e-10, max_linesearch: int = 10) -> OptimResult:
    """Minimise ``objective(params_pytree, *args)`` with scipy's L-BFGS-B
    (memory 10, no bounds) on a jitted value-and-gradient (compiled once per
    ``key`` and argument shapes).

    Stops after ``max_iter`` iterations, when the largest gradient component
    is below ``tol`` or the relative decrease below ``ftol`` (objectives here
    are per-observation negative log-likelihoods, so 1e-10 is far below any
    meaningful change, while tighter values made the line search spend
    tens of evaluations on rounding noise near the optimum; at most
    ``max_linesearch`` evaluations per line search). Non-finite
    values are +inf to the line search (it backs off), and the result is the
    best point evaluated: never worse than ``x0``.
    """
    import numpy as np
    import scipy.optimize as so

    vg = cached_jit(("vg",) + tuple(key), lambda: jax.value_and_grad(objective))
    flat0, unravel = ravel_pytree(x0)
    flat0 = np.asarray(flat0, dtype=np.float64)
    best = [np.inf, flat0, None]

    def f(x):
        v, g = vg(unravel(jnp.asarray(x)), *args)
        v = float(v)
        g = np.asarray(ravel_pytree(g)[0], dtype=np.float64)
        if not np.isfinite(v):  # a huge finite value: the line search backs off
            return 1e300, np.zeros_like(x)
        g = np.where(np.isfinite(g), g, 0.0)
        if v < best[0]:
            best[0], best[1], best[2] = v, np.array(x), g
        return v, g

    v0, _ = f(flat0)
    if not np.isfinite(v0):
        return OptimResult(x0, jnp.asarray(v0), jnp.asarray(0), jnp.asarray(np.inf))
    res = so.minimize(f, flat0, jac=True, method="L-BFGS-B",
                      options=dict(maxiter=int(max_iter), gtol=float(tol), ftol=float(ftol), maxcor=10,
                                   maxls=int(max_linesearch)))
    return OptimResult(unravel(jnp.asarray(best[1])), jnp.asarray(best[0]), jnp.asarray(res.nit),
                       jnp.asarray(np.linalg.norm(best[2])))


def _plb_direction(c, m):
    """L-BFGS direction and its slope; steepest descent (scaled) where the
    two-loop direction is not a descent one."""
    x, v, g, S, Y, rho, k, it, done = c
    d = _two_loop(g, S, Y, rho, k, m)
    slope = jnp.dot(g, d)
    gd = -g / jnp.maximum(1.0, jnp.linalg.norm(g))
    bad = ~(slope < 0) | ~jnp.all(jnp.isfinite(d))
    return jnp.where(bad, gd, d), jnp.where(bad, jnp.dot(g, gd), slope)


def _plb_trial(f, c, d, slope, t, acc):
    """Value at x + t d (no gradient: most trials are rejected or followed by
    one gradient evaluation); ``acc`` = (x, v, accepted) keeps the first
    point satisfying Armijo's condition."""
    x, v = c[0], c[1]
    xn = x + t * d
    vn = f(xn)
    ok = jnp.isfinite(vn) & (vn <= v + 1e-4 * t * slope) & ~c[-1] & ~acc[2]
    return jnp.where(ok, xn, acc[0]), jnp.where(ok, vn, acc[1]), acc[2] | ok


def _plb_accept(f, c, acc, m, tol, ftol):
    """New L-BFGS state from the accepted points (gradient evaluated there);
    a problem without an acceptable step (or already done) stops where it is."""
    x, v, g, S, Y, rho, k, it, done = c
    xn, vn, moved = acc
    gn = jax.grad(f)(xn)
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


def batched_minimize_host(key, objective: Callable, x0, args=(), max_iter: int = 100,
                          tol: float = 1e-6, memory_size: int = 10, max_linesearch: int = 10,
                          ftol: float = 1e-10) -> OptimResult:
    """Minimise ``objective(x_b, *args_b)`` independently for every slice b
    along the leading axis of ``x0`` and ``args``: L-BFGS (memory 10) with a
    backtracking Armijo line search (steps 1, 1/2, 1/4, ...), all problems
    in lock-step in vmapped, loop-free compiled programs driven from Python.

    Line-search trials evaluate values only, and continue only while some
    problem still needs a shorter step; the gradient is evaluated once, at
    the accepted points. A problem's first trial is twice its last accepted
    step (at most 1). A problem stops on its own criterion (gradient norm below
    ``tol``, relative decrease below ``ftol``, or no acceptable step within
    ``max_linesearch`` halvings), all stop after ``max_iter`` iterations."""
    m = memory_size

    def flat_fun(template, *a):
        _, unravel = ravel_pytree(template)
        return _safe(lambda z: objective(unravel(z), *a))

    def build_init():
        return jax.vmap(lambda t, *a: _plb_init(flat_fun(t, *a), ravel_pytree(t)[0], m, tol))

    def build_direction():
        return jax.vmap(lambda c: _plb_direction(c, m))

    def build_trial():
        return jax.vmap(lambda c, d, sl, t, acc, tmpl, *a: _plb_trial(flat_fun(tmpl, *a), c, d, sl, t, acc))

    def build_accept():
        return jax.vmap(lambda c, acc, tmpl, *a: _plb_accept(flat_fun(tmpl, *a), c, acc, m, tol, ftol))

    def build_unravel():
        return jax.vmap(lambda t, z: ravel_pytree(t)[1](z))

    tag = (m, float(tol), float(ftol))
    init = cached_jit(("batched-init",) + tag + tuple(key), build_init)
    direction = cached_jit(("batched-direction", m), build_direction)
    trial = cached_jit(("batched-trial",) + tag + tuple(key), build_trial)
    accept = cached_jit(("batched-accept",) + tag + tuple(key), build_accept)
    unravel = cached_jit(("batched-unravel",), build_unravel)
    c = init(x0, *args)
    t_start = jnp.ones_like(c[1])
    for _ in range(int(max_iter)):
        done = c[-1]
        if bool(jnp.all(done)):
            break
        d, slope = direction(c)
        acc = (c[0], c[1], jnp.zeros_like(done))
        t = t_start
        for _ls in range(int(max_linesearch)):
            acc = trial(c, d, slope, t, acc, x0, *args)
            if bool(jnp.all(acc[2] | done)):
                break
            t = jnp.where(acc[2], t, 0.5 * t)
        # next first trial: twice the step just accepted, at most 1 (a problem
        # that needed short steps does not restart every search at 1)
        t_start = jnp.minimum(1.0, 2.0 * t)
        c = accept(c, acc, x0, *args)
    return OptimResult(unravel(x0, c[0]), c[1], c[-2], jnp.linalg.norm(c[2], axis=-1))


def batched_lbfgs_minimize(fun: Callable, x0, *args, max_iter: int = 100,
                           tol: float = 1e-6) -> OptimResult:
    """Minimise ``fun(x, *args)`` independently for each leading-axis slice of
    ``x0`` and ``args`` (a vmapped L-BFGS: one program, all problems at once,
    each stopping on its own criterion)."""

    def one(x, *a):
        return lbfgs_parallel_backtracking(lambda p: fun(p, *a), x, max_iter=max_iter, tol=tol)

    return jax.vmap(one)(x0, *args)
