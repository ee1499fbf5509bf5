"""Shared individual HPs on few distinct input sets (issue 15): Magma's E
step and M step grouped by input pattern (one Cholesky per pattern) give
the per-individual path's numbers: the sums, the objective and its gradient
to rounding, and a whole fit (log-likelihood history, HPs, predictions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.data import grouping_pays, input_patterns
from mtgp.kernels import SE
from mtgp.magma import numerics as nx
from mtgp.magma.numerics import MagmaData


def partly_shared(seed=0):
    """14 individuals: 10 on 3 input sets of 3 or 4 points (two size
    buckets), 4 on their own inputs: some buckets pay to group, some not."""
    rng = np.random.default_rng(seed)
    sets = [np.array([0.0, 2.0, 5.0]), np.array([1.0, 2.0, 7.0]), np.array([0.0, 3.0, 5.0, 9.0])]
    rows = []
    for i in range(14):
        t = sets[[0, 0, 0, 1, 2, 2, 0, 2, 2, 1][i]] if i < 10 else np.sort(rng.uniform(0, 10, 4))
        y = 2.0 * (i % 2) + np.sin(t) + 0.3 * rng.standard_normal(t.size)
        rows.append(pd.DataFrame({"ID": f"i{i}", "Input": t, "Output": y}))
    return pd.concat(rows, ignore_index=True)


def common_grid(M=12, seed=0):
    return mtgp.simulate(M, 30, seed=seed).data  # the paper's Table 1 setting: one grid of 30 inputs


@pytest.fixture
def no_patterns(monkeypatch):
    """Layouts built without patterns: the per-individual path (another
    pytree structure, hence other compiled programs)."""
    monkeypatch.setattr(MagmaData, "with_patterns", lambda self: self._replace(patterns=None))


def _model(common=True, **kw):
    return mtgp.Magma(SE(3.0, 2.0), SE(1.0, 1.5), noise=0.2, common_hp=common, **kw)


def test_patterns_group_identical_inputs_only():
    X = np.array([[[0.0], [1.0]], [[0.0], [1.0]], [[0.0], [2.0]], [[0.0], [1.0]]])
    mask = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    rep, inv, cnt = input_patterns(X, mask)
    np.testing.assert_array_equal(X[rep][inv], X)
    np.testing.assert_array_equal(mask[rep][inv], mask)
    assert len(rep) == 3 and sorted(cnt.tolist()) == [1.0, 1.0, 2.0]
    assert grouping_pays(1, 20) and not grouping_pays(11, 20) and not grouping_pays(0, 0)


@pytest.mark.parametrize("make", [common_grid, partly_shared])
def test_pattern_e_step_sums_equal_per_individual(make):
    """S, c and ll with weights (MagmaClust's tau) to rounding; the common
    grid is one pattern per bucket."""
    m = _model().fit(make(), optimize=False)
    data, st = m._data, m._static
    assert data.patterns is not None
    if make is common_grid:
        assert [int(p.rep.shape[0]) for p in data.patterns] == [1]
    assert any(nx.bucket_patterns(st, data, b) is not None for b in range(len(data.X)))
    w = np.random.default_rng(2).uniform(0.1, 1.0, data.n_individuals)
    theta = jax.tree_util.tree_map(lambda a: a + 0.1, m.theta_)
    for dw in (data, data.with_weights(w)):
        a = nx.e_step_sums_jit(st, theta, dw)
        b = nx.e_step_sums_jit(st, theta, dw._replace(patterns=None))
        for u, v in zip(a, b):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("make", [common_grid, partly_shared])
def test_pattern_objective_equals_common_objective(make):
    m = _model().fit(make(), optimize=False)
    data, st, post = m._data, m._static, m.posterior_
    theta = jax.tree_util.tree_map(lambda a: a - 0.2, m.theta_)
    full = lambda th: nx.common_objective(st.ki)(th, data.X, data.y, data.mask,
                                                 nx.posterior_at_individuals(post, data.idx))
    red = lambda th: nx.pattern_objective(st.ki)(th, *nx.pattern_moments(post, data))
    v1, g1 = jax.jit(jax.value_and_grad(full))(theta)
    v2, g2 = jax.jit(jax.value_and_grad(red))(theta)
    np.testing.assert_allclose(v2, v1, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(g2), jax.tree_util.tree_leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [common_grid, partly_shared])
def test_pattern_fit_equals_per_individual_fit(make, no_patterns, monkeypatch):
    df = make()
    monkeypatch.undo()
    grouped = _model(max_iter=6, tol=1e-8).fit(df)
    assert nx.use_pattern_m_step(grouped._data)
    monkeypatch.setattr(MagmaData, "with_patterns", lambda self: self._replace(patterns=None))
    plain = _model(max_iter=6, tol=1e-8).fit(df)
    assert plain._data.patterns is None
    np.testing.assert_allclose(grouped.history_, plain.history_, rtol=1e-10)
    for a, b in zip(jax.tree_util.tree_leaves((grouped.theta0_, grouped.theta_)),
                    jax.tree_util.tree_leaves((plain.theta0_, plain.theta_))):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9)
    new = df[df.ID == df.ID.iloc[0]].iloc[:2]
    pa, pb = grouped.predict(new, inputs=np.linspace(0, 10, 7)), plain.predict(new, inputs=np.linspace(0, 10, 7))
    np.testing.assert_allclose(pa.mean, pb.mean, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(pa.cov, pb.cov, rtol=1e-8, atol=1e-9)
