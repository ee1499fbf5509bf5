"""Host-driven L-BFGS: what models train with.

* :func:`minimize_host`: ONE problem (a model's hyper-parameters): scipy's
  L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995; the L-BFGS of Nocedal & Wright
  2006, Alg. 7.5, with a Moré-Thuente line search) on a jitted
  value-and-gradient.
* :func:`batched_minimize_host`: MANY independent problems of the same form
  in lock-step (e.g. Magma's per-individual M step): the L-BFGS iteration of
  :mod:`mtgp.optim.core`, vmapped, with a backtracking Armijo search.

Both run the iterations from Python over loop-free compiled programs (one
objective and gradient, or one vmapped step), at the price of one dispatch
and one device-to-host transfer per evaluation (~0.1 ms): on jax/jaxlib 0.10
the XLA CPU runtime was seen to wait forever on large jitted programs
containing a ``lax.while_loop`` (docs/results/magma_scale_notes.md). Small
problems inside a compiled program use :mod:`mtgp.optim.inline` instead.

Programs are cached (:func:`mtgp.compile.cached_jit`) under the caller's
``key``, which must identify ``objective`` completely (e.g. a name and
``Kernel.structure()``), and the argument shapes.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import config
from ..compile import cached_jit
from . import core
from .core import OptimResult

__all__ = ["minimize_host", "minimize_flat", "flat_value_and_grad", "batched_minimize_host",
           "batched_minimize_inline"]


class _FlatLayout:
    """The flat layout of a parameter pytree, built in numpy: ravelling the
    start and unravelling the result run no device operation (each eager
    ``jnp`` operation compiles a small program on its first use, and
    ``ravel_pytree`` ran four of them per problem form; issue 11). The
    unflattening inside a compiled program (:meth:`unravel`) is the same
    slicing and reshaping as ``ravel_pytree``'s: bit-for-bit the same
    values."""

    def __init__(self, x0):
        leaves, self.treedef = jax.tree_util.tree_flatten(x0)
        self.shapes = tuple(np.shape(a) for a in leaves)
        self.dtypes = tuple(jnp.result_type(a) for a in leaves)
        self.sizes = tuple(int(np.prod(s, dtype=int)) for s in self.shapes)
        self.dtype = jnp.result_type(*leaves) if leaves else np.dtype(np.float64)
        self.flat0 = (np.concatenate([np.ravel(np.asarray(a)).astype(self.dtype) for a in leaves])
                      if leaves else np.zeros(0, self.dtype))

    def unravel(self, z):
        """The pytree of the traced flat vector ``z`` (inside a program)."""
        out, start = [], 0
        for shape, size, dtype in zip(self.shapes, self.sizes, self.dtypes):
            out.append(jnp.reshape(z[start:start + size], shape).astype(dtype))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, out)

    def unravel_host(self, x):
        """The pytree of the flat numpy vector ``x``: numpy slices placed on
        the device one by one (``jax.device_put``: no compilation)."""
        x = np.asarray(x, dtype=self.dtype)
        out, start = [], 0
        for shape, size, dtype in zip(self.shapes, self.sizes, self.dtypes):
            out.append(jax.device_put(np.reshape(x[start:start + size], shape).astype(dtype)))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, out)


def flat_value_and_grad(key, objective: Callable, x0, args=()):
    """``(fun, arg_leaves, flat0, unravel)``: ``fun(x, *arg_leaves)`` is ONE
    compiled program taking the flat float64 parameter vector ``x`` (numpy)
    and the leaves of ``args``, and returning ``[value, grad...]`` as one
    array (one device-to-host transfer per evaluation); the unflattening of
    ``x`` and the dtype conversions are inside it. ``unravel`` maps a flat
    numpy vector back to the pytree (on the host: no compilation). Cached
    under ``key`` and the form of ``x0`` and ``args``."""
    layout = _FlatLayout(x0)
    arg_leaves, arg_def = jax.tree_util.tree_flatten(args)
    form = (str(layout.treedef), tuple((s, str(d)) for s, d in zip(layout.shapes, layout.dtypes)),
            str(arg_def))

    def build():
        def vg(z, *a):
            p = layout.unravel(z.astype(layout.dtype))
            v, g = jax.value_and_grad(lambda q: objective(q, *jax.tree_util.tree_unflatten(arg_def, a)))(p)
            g = ravel_pytree(g)[0]
            return jnp.concatenate([jnp.reshape(v, (1,)), g]).astype(jnp.float64)
        return vg

    fun = cached_jit(("vg-flat", form) + tuple(key), build)
    return fun, arg_leaves, np.asarray(layout.flat0, dtype=np.float64), layout.unravel_host


def minimize_host(key, objective: Callable, x0, args=(), max_iter: int = 100,
                  tol: float = 1e-6, ftol: float = 1e-10, max_linesearch: int = 10) -> OptimResult:
    """Minimise ``objective(params_pytree, *args)`` from ``x0`` with scipy's
    L-BFGS-B (memory 10, no bounds).

    Stops after ``max_iter`` iterations, when the largest gradient component
    is below ``tol`` or the relative decrease below ``ftol`` (objectives here
    are per-observation negative log-likelihoods, so 1e-10 is far below any
    meaningful change, while tighter values made the line search spend
    tens of evaluations on rounding noise near the optimum; at most
    ``max_linesearch`` evaluations per line search). A non-finite value is
    shown to the line search as ``best + 1 + |best|`` with a zero gradient
    (it backs off; a huge value stopped it at once), and the result is the
    best point evaluated: never worse than ``x0`` (a non-finite start is
    returned as it is, with value +inf and 0 iterations).

    Each evaluation is one compiled program on the flat vector
    (:func:`flat_value_and_grad`) and one transfer back; L-BFGS-B runs with
    ``mtgp.config.blas_scope`` (one BLAS thread by default: scipy's
    L-BFGS-B calls BLAS on vectors of a few entries, where OpenBLAS' worker
    threads cost ~5 ms per call on a busy machine, 50x the work itself).
    """
    vg, arg_leaves, flat0, unravel = flat_value_and_grad(key, objective, x0, args)
    res = minimize_flat(lambda x: np.asarray(vg(x, *arg_leaves)), flat0, max_iter=max_iter, tol=tol,
                        ftol=ftol, max_linesearch=max_linesearch)
    if res is None:  # non-finite start
        return OptimResult(x0, np.asarray(np.inf), np.asarray(0), np.asarray(np.inf))
    x, v, nit, gnorm = res
    # numpy scalars and host-side unflattening: jnp.asarray would compile a
    # small program each (issue 11)
    return OptimResult(unravel(x), np.asarray(v), np.asarray(nit), np.asarray(gnorm))


def minimize_flat(fun: Callable, flat0: np.ndarray, max_iter: int = 100, tol: float = 1e-6,
                  ftol: float = 1e-10, max_linesearch: int = 10):
    """The driver of :func:`minimize_host` on a host function
    ``fun(x) -> [value, grad...]`` (one float64 numpy array) of the flat
    vector: ``(x_best, value_best, n_iter, grad_norm)``, or None when the
    start is not finite. Distributed backends call it with a ``fun`` that
    sums partial values and gradients over their workers."""
    import scipy.optimize as so

    flat0 = np.asarray(flat0, dtype=np.float64)
    best = [np.inf, flat0, None]

    def f(x):
        out = fun(x)
        v, g = float(out[0]), out[1:]
        if not np.isfinite(v):
            # a value above the best one, of its order: the line search backs
            # off by interpolation (1e300 or inf made it stop at once)
            return best[0] + 1.0 + abs(best[0]), np.zeros_like(x)
        g = np.where(np.isfinite(g), g, 0.0)
        if v < best[0]:
            best[0], best[1], best[2] = v, np.array(x), g
        return v, g

    f(flat0)
    if best[2] is None:
        return None
    with config.blas_scope():
        res = so.minimize(f, flat0, jac=True, method="L-BFGS-B",
                          options=dict(maxiter=int(max_iter), gtol=float(tol), ftol=float(ftol), maxcor=10,
                                       maxls=int(max_linesearch)))
    return best[1], best[0], int(res.nit), float(np.linalg.norm(best[2]))


def batched_minimize_host(key, objective: Callable, x0, args=(), max_iter: int = 100,
                          tol: float = 1e-6, memory_size: int = 10, max_linesearch: int = 10,
                          ftol: float = 1e-10, compact: bool = True) -> OptimResult:
    """Minimise ``objective(x_b, *args_b)`` independently for every slice b
    along the leading axis of ``x0`` and ``args``: L-BFGS (memory 10) with a
    backtracking Armijo line search (steps 1, 1/2, 1/4, ...), all problems
    in lock-step in vmapped, loop-free compiled programs driven from Python.

    Line-search trials evaluate values only, and continue only while some
    problem still needs a shorter step; the gradient is evaluated once, at
    the accepted points. A problem's first trial is twice its last accepted
    step (at most 1). A problem stops on its own criterion (gradient norm below
    ``tol``, relative decrease below ``ftol``, or no acceptable step within
    ``max_linesearch`` halvings), all stop after ``max_iter`` iterations.
    Each problem's result is never worse than its start.

    With ``compact`` (default), once at most half of the working batch (of
    at least ``COMPACT_MIN_WIDTH`` problems) is unfinished, the iterations
    continue on those problems only, gathered into a batch padded to the
    next power of two (log2(batch) program shapes at most): a batch no
    longer runs at full width until its slowest problem stops. Each problem
    follows the same iterates (to rounding)."""
    m = memory_size

    def flat_fun(template, *a):
        _, unravel = ravel_pytree(template)
        return core.safe_objective(lambda z: objective(unravel(z), *a))

    def build_init():
        return jax.vmap(lambda t, *a: core.init_state(flat_fun(t, *a), ravel_pytree(t)[0], m, tol))

    def build_direction():
        return jax.vmap(lambda c: core.direction(c, m))

    def build_trial():
        return jax.vmap(lambda c, d, sl, t, acc, tmpl, *a: core.trial(flat_fun(tmpl, *a), c, d, sl, t, acc))

    def build_accept():
        return jax.vmap(lambda c, acc, tmpl, *a: core.accept(flat_fun(tmpl, *a), c, acc, m, tol, ftol))

    def build_unravel():
        return jax.vmap(lambda t, z: ravel_pytree(t)[1](z))

    tag = (m, float(tol), float(ftol))
    init = cached_jit(("batched-init",) + tag + tuple(key), build_init)
    direction = cached_jit(("batched-direction", m), build_direction)
    trial = cached_jit(("batched-trial",) + tag + tuple(key), build_trial)
    accept = cached_jit(("batched-accept",) + tag + tuple(key), build_accept)
    unravel = cached_jit(("batched-unravel",), build_unravel)
    c = init(x0, *args)
    # the host only reads the stop flags (one small transfer each) and keeps
    # the step lengths as numpy arrays: no eager device operations per step
    B = int(np.shape(c[1])[0])
    t_start = np.ones(B, dtype=np.asarray(c[1]).dtype)
    # compaction: the working batch holds the unfinished problems, padded to
    # a power of two with copies of a finished one (done: they never move);
    # ``sel`` maps working slots to problems, its first ``n_real`` are real
    full, sel, n_real = c, None, B
    wc, wx0, wargs = c, x0, args
    for _ in range(int(max_iter)):
        done = np.asarray(wc[-1])
        if done.all():
            break
        if compact:
            n_left = int((~done[:n_real]).sum())
            size = _pow2(n_left)
            if size * 2 <= done.shape[0] and done.shape[0] >= COMPACT_MIN_WIDTH:
                full = _put(full, sel, n_real, wc)
                left = np.flatnonzero(~np.asarray(full[-1]))
                pad = np.flatnonzero(np.asarray(full[-1]))[:1]
                if sel is None:
                    t_full = t_start.copy()
                else:
                    t_full[sel[:n_real]] = t_start[:n_real]
                sel, n_real = np.concatenate([left, np.repeat(pad, size - left.size)]), left.size
                take = lambda a: a[sel]
                wc = jax.tree_util.tree_map(take, full)
                wx0 = jax.tree_util.tree_map(take, x0)
                wargs = jax.tree_util.tree_map(take, args)
                t_start = t_full[sel]
                done = np.asarray(wc[-1])
        d, slope = direction(wc)
        acc = (wc[0], wc[1], jnp.zeros_like(wc[-1]))
        t = t_start
        for _ls in range(int(max_linesearch)):
            acc = trial(wc, d, slope, t, acc, wx0, *wargs)
            accepted = np.asarray(acc[2])
            if (accepted | done).all():
                break
            t = np.where(accepted, t, 0.5 * t)
        # next first trial: twice the step just accepted, at most 1 (a problem
        # that needed short steps does not restart every search at 1)
        t_start = np.minimum(1.0, 2.0 * t)
        wc = accept(wc, acc, wx0, *wargs)
    c = _put(full, sel, n_real, wc)
    return OptimResult(unravel(x0, c[0]), c[1], c[-2], jnp.linalg.norm(c[2], axis=-1))


def batched_minimize_inline(key, objective: Callable, x0, args=(), max_iter: int = 100,
                            tol: float = 1e-6, memory_size: int = 10, max_linesearch: int = 10,
                            ftol: float = 1e-10) -> OptimResult:
    """:func:`batched_minimize_host`'s problems and iterates (to rounding) as
    ONE compiled program: :func:`mtgp.optim.inline.lbfgs_backtracking`
    vmapped over the leading axis, no device-to-host transfer until the
    end. Faster for narrow batches, where the host driver's per-trial
    synchronisation dominates; every problem's lane runs (masked) until the
    slowest stops (no compaction). Cached under ``key`` as
    :func:`batched_minimize_host`."""
    from .inline import lbfgs_backtracking

    opts = dict(max_iter=int(max_iter), tol=float(tol), memory_size=int(memory_size),
                max_linesearch=int(max_linesearch), ftol=float(ftol))

    def build():
        return jax.vmap(lambda t, *a: lbfgs_backtracking(lambda p: objective(p, *a), t, **opts))

    return cached_jit(("batched-inline", tuple(sorted(opts.items()))) + tuple(key), build)(x0, *args)


#: batches narrower than this are never compacted: below it the gathers and
#: the extra compiled shapes cost more than the lanes they save (M = 20 x 30:
#: compacting 20 -> 8 -> 4 -> 2 -> 1 made the warm Different-HP fit slower)
COMPACT_MIN_WIDTH = 64


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _put(full, sel, n_real, work):
    """The full batch state with the working slots' real problems written back."""
    if sel is None:
        return work
    rows = jnp.asarray(sel[:n_real])
    return jax.tree_util.tree_map(lambda a, b: a.at[rows].set(b[:n_real]), full, work)
