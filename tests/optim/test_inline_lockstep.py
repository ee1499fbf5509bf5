"""Issue 15: the in-graph lock-step L-BFGS (one compiled program per batch)
follows the host-driven batched driver's iterates, and never ends worse
than its start."""

import jax
import jax.numpy as jnp
import numpy as np

from mtgp import config
from mtgp.optim import batched_minimize_host, batched_minimize_inline, lbfgs_backtracking


def rosen(x, a):
    p = x["p"]
    return jnp.sum(a[0] * (p[1:] - p[:-1] ** 2) ** 2 + (a[1] - p[:-1]) ** 2)


def _problems(B=9, seed=0):
    rng = np.random.default_rng(seed)
    x0 = {"p": jnp.asarray(rng.normal(size=(B, 3)) * rng.uniform(0.1, 2.0, size=(B, 1)))}
    args = jnp.asarray(np.c_[rng.uniform(1.0, 50.0, B), rng.uniform(0.5, 1.5, B)])
    return x0, args


@config.float64
def test_inline_follows_the_host_driver_iterates():
    x0, args = _problems()
    kw = dict(max_iter=40, tol=1e-8, ftol=1e-14)
    a = batched_minimize_inline(("test-inline",), rosen, x0, (args,), **kw)
    b = batched_minimize_host(("test-inline",), rosen, x0, (args,), compact=False, **kw)
    np.testing.assert_array_equal(np.asarray(a.n_iter), np.asarray(b.n_iter))
    np.testing.assert_allclose(np.asarray(a.params["p"]), np.asarray(b.params["p"]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-9, atol=1e-14)
    assert np.asarray(a.n_iter).max() < 40 or np.asarray(a.n_iter).min() > 0


@config.float64
def test_inline_never_worse_than_start_and_handles_bad_starts():
    x0, args = _problems(B=4, seed=1)
    f0 = np.asarray(jax.vmap(rosen)(x0, args))
    res = batched_minimize_inline(("test-inline",), rosen, x0, (args,), max_iter=3)
    assert np.all(np.asarray(res.value) <= f0) and np.all(np.asarray(res.n_iter) <= 3)
    # a non-finite start is returned as it is; a non-finite region is backed off from
    bad = lambda x: jnp.where(x["p"][0] > 2.0, jnp.nan, jnp.sum((x["p"] - 3.0) ** 2))
    out = jax.jit(lambda x: lbfgs_backtracking(bad, x))({"p": jnp.array([0.0, 0.0])})
    assert np.isfinite(out.value) and float(out.value) < 18.0 and float(out.params["p"][0]) <= 2.0
    nan0 = jax.jit(lambda x: lbfgs_backtracking(bad, x))({"p": jnp.array([3.0, 0.0])})
    np.testing.assert_array_equal(np.asarray(nan0.params["p"]), [3.0, 0.0])
    assert int(nan0.n_iter) == 0
