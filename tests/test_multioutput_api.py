"""Bad inputs, scikit-learn integration and task-order handling."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

import mtgp
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP, task_order_sensitivity
from mtgp.exceptions import DataError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    F = np.sin(X[:, :1]) + 0.3 * X[:, 1:]
    Y = np.hstack([F, -F + 0.2 * rng.normal(size=(40, 1)), 0.5 * F + 0.3 * rng.normal(size=(40, 1))])
    Y = Y + 0.1 * rng.normal(size=Y.shape)
    return X, Y


@pytest.mark.parametrize("bad,match", [
    ("nan_x", "non-finite"), ("inf_y", "non-finite|missing"), ("rows", "rows"),
    ("single", "single-output GP"), ("t_gt_n", "samples"), ("const", "constant"),
    ("text", "not numeric"), ("nan_y", "row\\(s\\) 3"),
])
def test_bad_inputs(data, bad, match):
    X, Y = data
    X, Y = X.copy(), Y.copy()
    if bad == "nan_x":
        X[2, 1] = np.nan
    elif bad == "inf_y":
        Y[1, 0] = np.inf
    elif bad == "rows":
        X = X[:-1]
    elif bad == "single":
        Y = Y[:, :1]
    elif bad == "t_gt_n":
        X, Y = X[:2], Y[:2]
    elif bad == "const":
        Y[:, 1] = 4.0
    elif bad == "text":
        X = pd.DataFrame(X, columns=["a", "b"]).assign(b="x")
    elif bad == "nan_y":
        Y[3, 2] = np.nan
    with pytest.raises(DataError, match=match):
        CoolMTGP(max_iter=5).fit(X, Y)


def test_linearly_dependent_outputs_warn(data):
    """An output that is an exact combination of others makes eq. (4)
    unbounded (Sigma singular along it): the fit says so, naming the tasks."""
    from mtgp import DegenerateOutputsWarning

    X, Y = data
    Yd = pd.DataFrame(np.column_stack([Y, Y[:, 0] - 2.0 * Y[:, 1]]), columns=["a", "b", "c", "d"])
    with pytest.warns(DegenerateOutputsWarning, match=r"rank 3 < 4 tasks.*'d'"):
        StructuredNoiseMTGP(max_iter=3).fit(X, Yd)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateOutputsWarning)
        StructuredNoiseMTGP(max_iter=3).fit(X, Y)  # full rank: silent


def test_singular_fitted_noise_warns():
    """Full-rank outputs whose residuals off a linear kernel's range (D = 3 <
    N) span 2 of 4 task dimensions: eq. (4) is unbounded as Sigma becomes
    singular along the other two, and Sigma-MT (rank 2) follows it."""
    from mtgp import DegenerateOutputsWarning

    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    Y = X @ rng.normal(size=(3, 4)) + rng.normal(size=(60, 2)) @ rng.normal(size=(2, 4))
    assert np.linalg.matrix_rank(Y) == 4
    with pytest.warns(DegenerateOutputsWarning, match="noise covariance is numerically singular"):
        StructuredNoiseMTGP(mtgp.kernels.Linear(), rank=2, max_iter=200).fit(X, Y)
    # a noise floor keeps Sigma positive definite: no warning, floor respected
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateOutputsWarning)
        m = StructuredNoiseMTGP(mtgp.kernels.Linear(), rank=2, max_iter=200, min_noise_variance=1e-4).fit(X, Y)
    assert np.linalg.eigvalsh(m.noise_covariance_)[0] >= 1e-4 * np.var(Y, axis=0).min() * (1 - 1e-9)
    with pytest.raises(ValueError, match="min_noise_variance"):
        ICM(min_noise_variance=-1.0).fit(X, Y)


def test_dataframes_and_predict_errors(data):
    X, Y = data
    Xd = pd.DataFrame(X, columns=["u", "v"])
    Yd = pd.DataFrame(Y, columns=["a", "b", "c"])
    m = CoolMTGP(method="approximate", max_iter=30).fit(Xd, Yd)
    assert m.task_names_ == ["a", "b", "c"]
    pred = m.predict(Xd.iloc[:3])
    assert list(pred.to_frame().columns[:3]) == ["a", "b", "c"]
    assert np.asarray(pred).shape == (3, 3)
    with pytest.raises(DataError, match="dimension"):
        m.predict(X[:, :1])
    with pytest.raises(Exception, match="not fitted"):
        CoolMTGP().predict(X)
    with pytest.raises(ValueError, match="method"):
        CoolMTGP(method="exact", max_iter=5).fit(X, Y)
    # fitted kernel is readable and callable
    assert m.kernel_(X[:2], X[:2]).shape == (2, 2)
    assert "lengthscale" in m.kernel_.hyperparameters()


@pytest.mark.parametrize("est", [CoolMTGP(max_iter=20), IndependentGPs(max_iter=20), ICM(rank=1, max_iter=20),
                                 StructuredNoiseMTGP(max_iter=20)])
def test_sklearn_clone_and_cross_val(data, est):
    X, Y = data
    c = clone(est)
    assert c.get_params() == est.get_params()
    scores = cross_val_score(c, X, Y, cv=2)
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    mse = cross_val_score(c, X, Y, cv=2, scoring="neg_mean_squared_error")
    assert np.all(mse < 0)


def test_task_order_options(data):
    X, Y = data
    base = CoolMTGP(method="approximate", max_iter=15)
    m0 = clone(base).fit(X, Y)
    mp = clone(base).set_params(task_order=[2, 0, 1]).fit(X, Y)
    assert list(mp.task_order_) == [2, 0, 1]
    # reported in the original task order: close to the given-order fit
    assert np.linalg.norm(mp.task_covariance_ - m0.task_covariance_) / np.linalg.norm(m0.task_covariance_) < 0.5
    best = clone(base).set_params(task_order="best", n_orders=2).fit(X, Y)
    lls = [r["log_likelihood"] for r in best.order_results_]
    assert np.isclose(best.log_marginal_likelihood_, max(lls))
    avg = clone(base).set_params(task_order="average", n_orders=2).fit(X, Y)
    np.testing.assert_allclose(avg.task_covariance_, np.mean([r["C"] for r in avg.order_results_], axis=0))
    with pytest.raises(ValueError, match="permutation"):
        clone(base).set_params(task_order=[0, 0, 1]).fit(X, Y)
    out = task_order_sensitivity(base, X, Y, n_permutations=2, X_test=X[:5])
    assert len(out["table"]) == 3 and out["table"]["rel_frob_C"].iloc[0] == 0.0
