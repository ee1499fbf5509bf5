"""MagmaClust's default start (``init="auto"``): the candidate partitions,
the choice by ELBO, and that continuing the chosen candidate is the same VEM
as one run from it."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

import mtgp
from mtgp.data import to_individuals
from mtgp.magmaclust.estimator import (SCREEN_ITER, _canonical, _curve_features, initial_partitions,
                                       kmeans_responsibilities)

from test_magmaclust_api import two_groups  # noqa: E402 (rootdir-less test folder)


def shapes(seed=2, M=12, n=8):
    """Three groups that differ in shape more than in level (individual
    offsets blur the levels): k-means on (min, mean, max) mixes them, on the
    curves it does not."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 6, n)
    rows = []
    for i in range(M):
        y = 2 * [np.sin(x), -np.sin(x), 0.5 * x - 1.5][i % 3] + rng.normal(0, 0.8) + rng.normal(0, 0.3, n)
        rows.append(pd.DataFrame({"ID": f"i{i}", "Input": x, "Output": y}))
    return pd.concat(rows, ignore_index=True)


KW = dict(random_state=0, max_iter=6, m_step_max_iter=15)


def test_candidates_are_distinct_and_start_with_magmaclustr_s():
    inds = to_individuals(shapes(), None)
    cands = initial_partitions(inds, 3, random_state=0)
    names = [n for n, _ in cands]
    assert names == ["min-mean-max", "standardised", "curves"]  # all three differ on this data
    np.testing.assert_array_equal(cands[0][1], kmeans_responsibilities(inds.outputs, 3, random_state=0))
    keys = [_canonical(t.argmax(1)) for _, t in cands]
    assert len(set(keys)) == len(keys)
    for _, t in cands:
        assert t.shape == (12, 3) and np.all(t.sum(axis=1) == 1.0)
    # on well-separated levels every feature set finds the same partition: one candidate
    easy = to_individuals(two_groups(seed=0), None)
    assert [n for n, _ in initial_partitions(easy, 2, random_state=0)] == ["min-mean-max"]


def test_auto_start_continues_the_candidate_with_the_best_elbo():
    df = shapes()
    m = mtgp.MagmaClust(3, **KW).fit(df)
    tried = m.fit_info_["init"]
    assert [t["candidate"] for t in tried] == ["min-mean-max", "standardised", "curves"]
    assert all(t["start"] == 0 and t["n_iter"] == SCREEN_ITER for t in tried)
    chosen = [t for t in tried if t["chosen"]]
    assert len(chosen) == 1 and chosen[0]["elbo"] == max(t["elbo"] for t in tried)
    assert np.all(np.diff(m.history_) >= -1e-8 * abs(m.elbo_))
    # the chosen candidate, continued, is one VEM run from that partition
    tau = dict(initial_partitions(to_individuals(df, None), 3, random_state=0))[chosen[0]["candidate"]]
    ref = mtgp.MagmaClust(3, init_responsibilities=tau, **KW).fit(df)
    np.testing.assert_allclose(m.history_, ref.history_, rtol=1e-10)
    np.testing.assert_allclose(m.responsibilities_.to_numpy(), ref.responsibilities_.to_numpy(), atol=1e-10)
    assert m.n_iter_ == ref.n_iter_ and m.converged_ == ref.converged_
    # here the shapes win, and the start matters: MagmaClustR's start alone ends lower
    truth = np.arange(12) % 3
    assert chosen[0]["candidate"] == "curves"
    assert adjusted_rand_score(truth, m.clusters_) == 1.0
    k = mtgp.MagmaClust(3, init="kmeans", **KW).fit(df)
    assert [t["candidate"] for t in k.fit_info_["init"]] == ["min-mean-max"]
    assert k.elbo_ < m.elbo_


def test_init_option_and_several_starts():
    with pytest.raises(ValueError, match="init must be"):
        mtgp.MagmaClust(2, init="random").fit(two_groups())
    m = mtgp.MagmaClust(3, n_init=2, **KW).fit(shapes())
    starts = [t["start"] for t in m.fit_info_["init"]]
    assert starts == [0, 0, 0, 1]  # start 1: MagmaClustR's k-means with another seed and perturbed HPs
    assert m.fit_info_["best_start"] == int(np.argmax(m.fit_info_["elbo_per_start"]))
    # user-given responsibilities replace the candidates
    tau = np.eye(2)[[1, 0] * 4]
    g = mtgp.MagmaClust(2, init_responsibilities=tau, max_iter=1, m_step_max_iter=10).fit(two_groups(seed=5))
    assert [t["candidate"] for t in g.fit_info_["init"]] == ["given"]


def test_curve_features():
    # common grid: the outputs themselves
    inds = to_individuals(shapes(), None)
    np.testing.assert_array_equal(_curve_features(inds), np.stack(inds.outputs))
    # uneven 1-D grids: interpolated on the pooled range; here the 9-point lattice
    # is the pooled grid, so each curve keeps its own values at its own inputs
    inds = to_individuals(two_groups(seed=1), None)
    F = _curve_features(inds)
    t = np.linspace(0, 10, 9)
    assert F.shape == (8, 9)
    for X, y, f in zip(inds.inputs, inds.outputs, F):
        np.testing.assert_allclose(f[np.searchsorted(t, X[:, 0])], y, atol=1e-12)
        assert f[0] == y[np.argmin(X[:, 0])] and f[-1] == y[np.argmax(X[:, 0])]  # constant beyond the ends
    # uneven multi-dimensional inputs: no curve features (the other candidates remain)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"ID": np.repeat(["a", "b", "c"], 4), "x1": rng.random(12), "x2": rng.random(12),
                       "Output": rng.random(12)})
    inds = to_individuals(df, ["x1", "x2"])
    assert _curve_features(inds) is None
    assert [n for n, _ in initial_partitions(inds, 2, random_state=0)][-1] != "curves"
