"""The fast paths of MagmaClust's fit compute the same numbers as the
plain formulas: the shared-HP individual M step on distinct input patterns
(one Cholesky per pattern) equals Magma's per-individual objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import mtgp
from mtgp.kernels import SE
from mtgp.magma import numerics as mnx
from mtgp.magmaclust import numerics as cx


def repeated_grids(seed=0):
    """12 individuals on 4 input sets of 3 or 4 points (two size buckets),
    so several individuals share their inputs, others not."""
    rng = np.random.default_rng(seed)
    sets = [np.array([0.0, 2.0, 5.0]), np.array([1.0, 2.0, 7.0]), np.array([0.0, 3.0, 5.0, 9.0]),
            np.array([1.0, 4.0, 6.0, 8.0])]
    rows = []
    for i in range(12):
        t = sets[[0, 0, 0, 1, 2, 2, 3, 0, 2, 2, 2, 1][i]]
        y = 4.0 * (i % 2) + np.sin(t) + 0.3 * rng.standard_normal(t.size)
        rows.append(pd.DataFrame({"ID": f"i{i}", "Input": t, "Output": y}))
    return pd.concat(rows, ignore_index=True)


def test_input_patterns_group_identical_inputs():
    mc = mtgp.MagmaClust(2, max_iter=0, random_state=0).fit(repeated_grids())
    data = mc._data
    pats = [tuple(np.asarray(a) for a in p) for p in data.patterns]
    assert sorted(len(p[0]) for p in pats) == [2, 2]  # two sets of each size
    for X, mask, (rep, inv, cnt) in zip(data.X, data.mask, pats):
        np.testing.assert_array_equal(np.asarray(X)[rep][inv], np.asarray(X))
        np.testing.assert_array_equal(np.asarray(mask)[rep][inv], np.asarray(mask))
        np.testing.assert_array_equal(np.bincount(inv), cnt)


def test_pattern_objective_equals_the_per_individual_objective():
    """Value and gradient of the reduced objective = Magma's common_objective
    at the tau-weighted moments (every individual its own Cholesky)."""
    mc = mtgp.MagmaClust(2, SE(3.0, 1.5), SE(1.0, 1.0), noise=0.3, max_iter=0, random_state=0).fit(
        repeated_grids())
    data, st, post = mc._data, mc._static, mc.posterior_
    tau = jnp.asarray(np.random.default_rng(1).dirichlet(np.ones(2), data.n_individuals))
    ki = st.ki
    full = lambda th: mnx.common_objective(ki)(th, data.X, data.y, data.mask, cx.mixture_moments(data, post, tau))
    args = cx._pattern_arguments(data, post, tau)  # what the M step minimises
    red = lambda th: cx.shared_individual_objective(ki)(th, *args)
    theta = jax.tree_util.tree_map(lambda a: a + 0.1, mc.theta_)
    v1, g1 = jax.value_and_grad(full)(theta)
    v2, g2 = jax.value_and_grad(red)(theta)
    np.testing.assert_allclose(v2, v1, rtol=1e-12)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), g2, g1)
    # and the M step through the backend returns a point at least as good as the start
    new = cx.individual_m_step(st, mc.theta_, data, post, tau)
    assert full(new) <= full(mc.theta_) + 1e-12


def test_vectorised_kmeans_finds_scikit_learns_partition(monkeypatch):
    """The k-means start (all restarts at once in numpy) and the scikit-learn
    path it switches to for large M give the same partition."""
    from sklearn.metrics import adjusted_rand_score

    from mtgp.magmaclust import estimator as est

    rng = np.random.default_rng(0)
    centres = np.array([0.0, 5.0, 9.0])
    outs = [centres[i % 3] + rng.normal(0.0, 1.0, 6) for i in range(90)]
    a = est.kmeans_responsibilities(outs, 3, random_state=0)
    monkeypatch.setattr(est, "KMEANS_VECTOR_MAX", 0)
    b = est.kmeans_responsibilities(outs, 3, random_state=0)
    assert a.shape == (90, 3) and np.all(a.sum(axis=1) == 1.0)
    assert adjusted_rand_score(a.argmax(1), b.argmax(1)) == 1.0
    assert adjusted_rand_score(a.argmax(1), np.arange(90) % 3) > 0.9
