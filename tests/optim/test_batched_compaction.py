"""Issue 15: the batched driver's compaction (unfinished problems gathered
into power-of-two batches) changes no problem's iterates."""

import jax.numpy as jnp
import numpy as np

from mtgp import config
from mtgp.optim import batched_minimize_host
from mtgp.optim import host
from mtgp.optim.host import _pow2


def rosen(x, a):
    p = x["p"]
    return jnp.sum(a[0] * (p[1:] - p[:-1] ** 2) ** 2 + (a[1] - p[:-1]) ** 2)


def test_pow2():
    assert [_pow2(n) for n in (1, 2, 3, 4, 5, 17)] == [1, 2, 4, 4, 8, 32]


@config.float64
def test_compaction_keeps_every_problem_iterates(monkeypatch):
    rng = np.random.default_rng(0)
    B = 13
    monkeypatch.setattr(host, "COMPACT_MIN_WIDTH", 4)
    x0 = {"p": jnp.asarray(rng.normal(size=(B, 3)) * rng.uniform(0.1, 2.0, size=(B, 1)))}
    args = jnp.asarray(np.c_[rng.uniform(1.0, 50.0, B), rng.uniform(0.5, 1.5, B)])
    kw = dict(max_iter=60, tol=1e-8, ftol=1e-14)
    a = batched_minimize_host(("test-compact",), rosen, x0, (args,), compact=True, **kw)
    b = batched_minimize_host(("test-compact",), rosen, x0, (args,), compact=False, **kw)
    it = np.asarray(a.n_iter)
    # at most 4 problems run past the 9th to stop: the batch of 13 is
    # compacted to 4 slots then (and 2, 1 later; the width floor is lowered)
    assert it.max() > np.sort(it)[B - 5]
    np.testing.assert_array_equal(it, np.asarray(b.n_iter))
    np.testing.assert_allclose(np.asarray(a.params["p"]), np.asarray(b.params["p"]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-10, atol=1e-14)
