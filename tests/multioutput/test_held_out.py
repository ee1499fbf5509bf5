"""``held_out_entry_coverage``: the held-out check of ``predict_missing``'s
intervals (entries removed on purpose, the model refitted without them)."""

import warnings
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from mtgp import GP
from mtgp.kernels import SE
from mtgp.multioutput import ICM, StructuredNoiseMTGP, held_out_entry_coverage
from mtgp.multioutput.held_out import _held_out_mask


def _draw(N=80, seed=0, frac_missing=0.1):
    """Outputs drawn from an ICM with diagonal noise (the model holds)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(N, 1))
    K = np.exp(-0.5 * (X - X.T) ** 2 / 0.8 ** 2)
    a = np.array([1.0, -0.8, 0.6])
    C = np.outer(a, a) + np.diag([0.2, 0.3, 0.1])
    A = np.kron(C, K) + np.kron(np.diag([0.05, 0.1, 0.08]), np.eye(N))
    Y = (np.linalg.cholesky(A + 1e-10 * np.eye(len(A))) @ rng.normal(size=len(A))).reshape(3, -1).T
    Y[rng.random(Y.shape) < frac_missing] = np.nan
    return X, Y


def test_mask_holds_out_observed_entries_and_keeps_two_per_output():
    observed = np.ones((10, 3), bool)
    observed[3:, 2] = False  # output 2: three observed values, so at most one held out
    observed[0, 0] = False
    for seed in range(20):
        mask = _held_out_mask(observed, 0.5, np.random.default_rng(seed))
        assert not (mask & ~observed).any()
        assert np.all((observed & ~mask).sum(axis=0) >= 2)
        assert mask[:, 2].sum() <= 1
    assert np.array_equal(_held_out_mask(observed, 0.3, np.random.default_rng(4)),
                          _held_out_mask(observed, 0.3, np.random.default_rng(4)))
    assert _held_out_mask(np.ones((100, 2), bool), 0.25, np.random.default_rng(0)).sum() == 50


def test_scores_a_refit_without_the_held_out_entries():
    """Each entry's mean and sd are those of a clone refitted on the table
    with that repeat's entries removed; the summary follows from them."""
    X, Y = _draw(N=30)
    labels = pd.Index([f"id{i}" for i in range(30)])
    Yd = pd.DataFrame(Y, columns=["a", "b", "c"], index=labels)
    model = ICM(SE(), rank=1, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = held_out_entry_coverage(model, X, Yd, fraction=0.2, n_repeats=2, random_state=1)
    assert not hasattr(model, "output_names_")  # the estimator given is not fitted
    entries, table = res["entries"], res["table"]
    for repeat in (0, 1):
        part = entries[entries["repeat"] == repeat]
        cols = np.array([["a", "b", "c"].index(o) for o in part["output"]])
        assert np.all(np.isfinite(Y[part["row"], cols])) and list(part["label"]) == list(labels[part["row"]])
        Y_fit = Y.copy()
        Y_fit[part["row"], cols] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            filled = ICM(SE(), rank=1, max_iter=20).fit(X, Y_fit).predict_missing()
        np.testing.assert_allclose(part["mean"], filled.mean[part["row"], cols], rtol=0, atol=1e-10)
        np.testing.assert_allclose(part["sd"], np.sqrt(filled.var[part["row"], cols]), rtol=0, atol=1e-10)
        np.testing.assert_array_equal(part["value"], Y[part["row"], cols])
    assert set(entries[entries["repeat"] == 0]["row"]) != set(entries[entries["repeat"] == 1]["row"])
    z = (entries["value"] - entries["mean"]) / entries["sd"]
    q = NormalDist().inv_cdf(0.975)
    assert table.loc["all", "held_out"] == len(entries) == round(0.2 * np.isfinite(Y).sum()) * 2
    assert table.loc["all", "coverage"] == pytest.approx(100 * np.mean(np.abs(z) <= q))
    assert table.loc["all", "z_rms"] == pytest.approx(np.sqrt(np.mean(z ** 2)))
    n = table.loc["a", "held_out"]
    assert table.loc["a", "min_honest"] == pytest.approx(100 * (0.95 - 1.96 * np.sqrt(0.95 * 0.05 / n)))
    b = entries["output"] == "b"
    assert table.loc["b", "rmse"] == pytest.approx(np.sqrt(np.mean((entries["value"] - entries["mean"])[b] ** 2)))
    assert list(table.index) == ["a", "b", "c", "all"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        named_all = held_out_entry_coverage(model, X, Yd.rename(columns={"a": "all"}), fraction=0.2, n_repeats=1)
    assert list(named_all["table"].index) == ["all", "b", "c", "all outputs"]


def test_honest_intervals_where_the_model_holds():
    X, Y = _draw(N=120, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = held_out_entry_coverage(ICM(SE(), rank=1), X, Y, fraction=0.3, n_repeats=3, random_state=0)
    row = res["table"].loc["all"]
    assert row["held_out"] >= 250
    assert 90.0 <= row["coverage"] <= 99.0 and 0.8 <= row["z_rms"] <= 1.25, row
    assert row["coverage"] >= row["min_honest"]


def test_bad_arguments():
    X, Y = _draw(N=12)
    model = StructuredNoiseMTGP(max_iter=2)
    for kw, match in [(dict(fraction=0.0), "fraction"), (dict(fraction=1.0), "fraction"),
                      (dict(level=1.5), "level"), (dict(n_repeats=0), "n_repeats"),
                      (dict(fraction=0.01), "holds out no entry")]:
        with pytest.raises(ValueError, match=match):
            held_out_entry_coverage(model, X, Y, **kw)
    with pytest.raises(TypeError, match="needs a multi-output model.*got GP"):
        held_out_entry_coverage(GP(), X, Y)
