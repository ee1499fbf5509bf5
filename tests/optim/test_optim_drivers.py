"""The three L-BFGS drivers of mtgp.optim: batched = single problem, never
worse than the start, non-finite objectives, the in-graph one vmapped."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtgp.optim as mo
from mtgp.optim import batched_minimize_host, lbfgs_parallel_backtracking, minimize_host


def quadratic(x, a):
    """Shifted, scaled quadratic: minimum 0 at x = a["shift"]."""
    return jnp.sum(a["scale"] * (x["p"] - a["shift"]) ** 2)


def rosenbrock(x, a):
    """Rosenbrock with minimum 0 at (a, a^2)."""
    u, v = x["p"][0], x["p"][1]
    return (a["shift"] - u) ** 2 + 100.0 * (v - u**2) ** 2


def _problems(kind):
    rng = np.random.default_rng(0)
    B = 4
    if kind == "quadratic":
        args = {"shift": jnp.asarray(rng.normal(size=(B, 3))), "scale": jnp.asarray(rng.uniform(0.5, 20.0, (B, 3)))}
        x0 = {"p": jnp.asarray(rng.normal(size=(B, 3)))}
        optimum = lambda a: np.asarray(a["shift"])
        return quadratic, x0, args, optimum
    args = {"shift": jnp.asarray(rng.uniform(0.5, 1.5, B))}
    x0 = {"p": jnp.asarray(np.tile([-1.2, 1.0], (B, 1)) + 0.1 * rng.normal(size=(B, 2)))}
    optimum = lambda a: np.array([float(a["shift"]), float(a["shift"]) ** 2])
    return rosenbrock, x0, args, optimum


def _slice(tree, b):
    return jax.tree_util.tree_map(lambda a: a[b], tree)


@pytest.mark.parametrize("kind", ["quadratic", "rosenbrock"])
def test_batched_slices_equal_the_single_problems(kind):
    fun, x0, args, optimum = _problems(kind)
    max_iter = 300
    res = batched_minimize_host((f"test-{kind}",), fun, x0, (args,), max_iter=max_iter, tol=1e-9, ftol=1e-15)
    for b in range(x0["p"].shape[0]):
        xb, ab = _slice(x0, b), _slice(args, b)
        # the same iteration on a batch of one: identical up to rounding
        one = batched_minimize_host((f"test-{kind}",), fun, _slice(x0, slice(b, b + 1)),
                                    (_slice(args, slice(b, b + 1)),), max_iter=max_iter, tol=1e-9, ftol=1e-15)
        np.testing.assert_allclose(np.asarray(res.params["p"][b]), np.asarray(one.params["p"][0]), rtol=1e-9, atol=1e-12)
        assert int(res.n_iter[b]) == int(one.n_iter[0])
        # the other two drivers reach the same minimum
        host = minimize_host((f"test-{kind}",), fun, xb, (ab,), max_iter=max_iter, tol=1e-9, ftol=1e-15)
        inline = jax.jit(lambda x, a: lbfgs_parallel_backtracking(lambda p: fun(p, a), x, max_iter=max_iter,
                                                                  tol=1e-9, ftol=1e-15))(xb, ab)
        for r in (host, inline):
            np.testing.assert_allclose(np.asarray(r.params["p"]), np.asarray(res.params["p"][b]), atol=1e-5)
        np.testing.assert_allclose(np.asarray(res.params["p"][b]), optimum(ab), atol=1e-5)
        assert float(res.value[b]) < 1e-10


def _run_all(fun, x0, key):
    """The three drivers on one problem (the batched one on a batch of 2
    copies), as (params, value) pairs."""
    host = minimize_host(key, lambda x: fun(x), x0)
    inline = jax.jit(lambda x: lbfgs_parallel_backtracking(fun, x))(x0)
    x2 = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), x0)
    bat = batched_minimize_host(key, lambda x: fun(x), x2)
    out = [(host.params, float(host.value)), (inline.params, float(inline.value))]
    out += [(_slice(bat.params, b), float(bat.value[b])) for b in range(2)]
    return out


def test_start_already_optimal_is_returned():
    fun = lambda x: jnp.sum((x - 1.0) ** 2)
    x0 = jnp.ones(3)
    for params, value in _run_all(fun, x0, ("test-optimal",)):
        np.testing.assert_array_equal(np.asarray(params), np.asarray(x0))
        assert value == 0.0


@jax.custom_jvp
def _uphill(x):
    return jnp.sum(x**2)


@_uphill.defjvp
def _uphill_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _uphill(x), jnp.sum(-2.0 * x * t)  # wrong sign: every search direction goes uphill


def test_failed_line_search_returns_the_start():
    """A gradient of the wrong sign: no step decreases the objective, the
    line search fails; the result is the start (never worse)."""
    x0 = jnp.array([1.0, -2.0])
    for params, value in _run_all(_uphill, x0, ("test-uphill",)):
        np.testing.assert_array_equal(np.asarray(params), np.asarray(x0))
        assert value == pytest.approx(5.0)


def _barrier(x):
    """(x + 3)^2 - log(x) per component: NaN (log of a negative) for x < 0,
    which the first steps from x0 = 2 reach; minimum at x = (sqrt(11) - 3) / 2."""
    return jnp.sum((x + 3.0) ** 2 - jnp.log(x))


def test_non_finite_region_is_backed_off_from():
    x0 = jnp.array([2.0, 5.0])
    xstar = (np.sqrt(11.0) - 3.0) / 2.0
    v0 = float(_barrier(x0))
    for params, value in _run_all(_barrier, x0, ("test-barrier",)):
        assert np.all(np.isfinite(np.asarray(params))) and np.isfinite(value)
        assert value <= v0
        np.testing.assert_allclose(np.asarray(params), xstar, rtol=1e-4)


def test_non_finite_start_is_returned_as_it_is():
    x0 = jnp.array([-1.0])
    res = minimize_host(("test-barrier",), _barrier, x0)
    assert np.asarray(res.params) == -1.0 and not np.isfinite(float(res.value)) and int(res.n_iter) == 0
    inline = lbfgs_parallel_backtracking(_barrier, x0)
    assert float(inline.params[0]) == -1.0 and int(inline.n_iter) == 0


def test_inline_vmapped_over_starts_equals_separate_runs():
    fun = lambda x: rosenbrock({"p": x}, {"shift": 1.0})
    starts = jnp.asarray(np.random.default_rng(1).normal(size=(5, 2)))
    run = lambda x0: lbfgs_parallel_backtracking(fun, x0, max_iter=200)
    batch = jax.jit(jax.vmap(run))(starts)
    for s in range(starts.shape[0]):
        single = jax.jit(run)(starts[s])
        np.testing.assert_allclose(np.asarray(batch.params[s]), np.asarray(single.params), rtol=1e-9, atol=1e-12)
        assert int(batch.n_iter[s]) == int(single.n_iter)
        assert float(batch.value[s]) <= float(fun(starts[s]))
    np.testing.assert_allclose(np.asarray(batch.params), 1.0, atol=1e-4)


def test_exports():
    assert {"minimize_host", "batched_minimize_host", "lbfgs_parallel_backtracking",
            "perturbed_starts"} <= set(mo.__all__)
    assert not hasattr(mo, "lbfgs_minimize")  # the optax zoom-search driver is gone
