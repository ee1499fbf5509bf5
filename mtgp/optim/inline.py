"""The in-graph L-BFGS: :func:`lbfgs_parallel_backtracking` and
:func:`lbfgs_backtracking`.

Use it for SMALL problems that must run inside a larger compiled program,
typically vmapped over many starts or many independent problems
(``jax.vmap(lambda x0: lbfgs_parallel_backtracking(f, x0))(starts)``): it is
one ``lax.while_loop`` with no nested loop and no host callback. For a model's
training, use the host-driven drivers of :mod:`mtgp.optim.host`.

L-BFGS (Nocedal & Wright 2006, Alg. 7.5 with the two-loop recursion of
Alg. 7.4) whose backtracking line search evaluates the step sizes
1, 1/2, ..., 2^-(n_steps-1) at once and keeps the first satisfying Armijo's
condition (else the best, when it decreases the objective).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import core
from .core import OptimResult

__all__ = ["lbfgs_parallel_backtracking", "lbfgs_backtracking"]


def _body(f, c, m, tol, n_steps, ftol):
    """One iteration: the ``n_steps`` step sizes evaluated at once (vmapped),
    the first satisfying Armijo's condition kept (else the best, if it
    decreases); a problem already done is left unchanged."""
    x, v, done = c[0], c[1], c[-1]
    d, slope = core.direction(c, m)
    steps = 0.5 ** jnp.arange(n_steps, dtype=x.dtype)
    cand = x[None, :] + steps[:, None] * d[None, :]
    vals = jax.vmap(f)(cand)
    armijo = vals <= v + core.ARMIJO_C1 * steps * slope
    pick = jnp.where(jnp.any(armijo), jnp.argmax(armijo), jnp.argmin(vals))
    moved = (vals[pick] < v) & ~done
    return core.accept(f, c, (cand[pick], vals[pick], moved), m, tol, ftol)


def lbfgs_parallel_backtracking(fun: Callable, x0, max_iter: int = 100, tol: float = 1e-6,
                                memory_size: int = 10, n_steps: int = 10,
                                ftol: float = 1e-12) -> OptimResult:
    """Minimise ``fun(pytree)`` from the pytree ``x0``, under ``jit`` and
    ``vmap`` (see the module docstring).

    Stops after ``max_iter`` iterations, when the gradient norm is below
    ``tol``, when the relative decrease is below ``ftol``, or when no step
    decreases the objective. Non-finite values count as +inf (the search
    backs off); the result is never worse than ``x0`` (a non-finite start
    is returned as it is). (optax's zoom line search inside a vmapped loop
    was seen to deadlock the XLA CPU runtime, hence this search.)
    """
    flat0, unravel = ravel_pytree(x0)
    f = core.safe_objective(lambda z: fun(unravel(z)))
    init = core.init_state(f, flat0, memory_size, tol)

    def cond(c):
        return (~c[-1]) & (c[-2] < max_iter)

    body = lambda c: _body(f, c, memory_size, tol, n_steps, ftol)
    x, v, g, *_, it, _ = jax.lax.while_loop(cond, body, init)
    return OptimResult(unravel(x), v, it, jnp.linalg.norm(g))


def lbfgs_backtracking(fun: Callable, x0, max_iter: int = 100, tol: float = 1e-6, memory_size: int = 10,
                       max_linesearch: int = 10, ftol: float = 1e-10) -> OptimResult:
    """Minimise ``fun(pytree)`` from ``x0`` inside a compiled program (under
    ``jit`` and ``vmap``): the iterates of
    :func:`mtgp.optim.batched_minimize_host` (the same L-BFGS step of
    :mod:`mtgp.optim.core`, backtracking Armijo search from twice the last
    accepted step, at most 1, halving at most ``max_linesearch`` times, the
    same stopping rules), as ONE ``lax.while_loop`` whose every turn is one
    line-search trial: the value and gradient at the trial point, then
    either the step is accepted (the curvature pair and the next direction
    are updated) or the step is halved. No nested loop, no host
    synchronisation: vmapped over M problems it is one program where the
    host-driven driver needs a device-to-host transfer per trial. Each turn
    evaluates the gradient too (the host driver evaluates it only at the
    accepted point); the result is never worse than ``x0``."""
    m = int(memory_size)
    flat0, unravel = ravel_pytree(x0)
    f = core.safe_objective(lambda z: fun(unravel(z)))
    vg = jax.value_and_grad(f)
    c0 = core.init_state(f, flat0, m, tol)
    c0 = c0[:-1] + (c0[-1] | (int(max_iter) <= 0),)
    d0, slope0 = core.direction(c0, m)
    one = jnp.ones((), flat0.dtype)

    def body(s):
        c, d, slope, t, n_ls = s
        x, v = c[0], c[1]
        xn = x + t * d
        vn, gn = vg(xn)
        ok = jnp.isfinite(vn) & (vn <= v + core.ARMIJO_C1 * t * slope)
        step = ok | (n_ls + 1 >= max_linesearch)  # accepted, or no acceptable step: done
        cn = core.accept_with_grad(c, (jnp.where(ok, xn, x), jnp.where(ok, vn, v), ok), gn, m, tol, ftol)
        cn = cn[:-1] + (cn[-1] | (cn[-2] >= max_iter),)
        dn, slope_n = core.direction(cn, m)
        pick = lambda a, b: jnp.where(step, a, b)
        return (jax.tree_util.tree_map(pick, cn, c), pick(dn, d), pick(slope_n, slope),
                pick(jnp.minimum(one, 2.0 * t), 0.5 * t), jnp.where(step, 0, n_ls + 1))

    s = jax.lax.while_loop(lambda s: ~s[0][-1], body, (c0, d0, slope0, one, jnp.int32(0)))
    c = s[0]
    return OptimResult(unravel(c[0]), c[1], c[-2], jnp.linalg.norm(c[2]))
