"""Bad inputs, scikit-learn integration and output-order handling."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

import mtgp
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP, output_order_sensitivity
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
    ("text", "not numeric"), ("nan_y", "fewer than 2 observed"),
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
    elif bad == "nan_y":  # missing outputs are allowed, an output never observed is not
        Y[:, 2] = np.nan
    with pytest.raises(DataError, match=match):
        CoolMTGP(max_iter=5).fit(X, Y)


def test_object_frame_with_none_is_missing_outputs_and_text_cells_are_named(data):
    """What JSON or a list of dicts gives: an object column of numbers and
    None. None is a missing output, as NaN; a text cell is named with its row."""
    X, Y = data
    Y = Y.copy()
    Y[[3, 8], 1] = np.nan
    frame = pd.DataFrame(Y, columns=["u", "v", "w"]).astype(object)
    frame.iloc[[3, 8], 1] = None
    a = IndependentGPs(max_iter=5).fit(X, frame)
    b = IndependentGPs(max_iter=5).fit(X, Y)
    assert np.isnan(a._Y).sum() == 2 and a.log_marginal_likelihood_ == b.log_marginal_likelihood_
    np.testing.assert_array_equal(a.predict(X[:4]).mean, b.predict(X[:4]).mean)
    frame.iloc[5, 2] = "n.d."
    with pytest.raises(DataError, match=r"Y: column 'w' is not numeric: row\(s\) 5 hold 'n.d.'; leave the "
                                        r"cell empty \(NaN\)"):
        IndependentGPs().fit(X, frame)


def test_linearly_dependent_outputs_warn(data):
    """An output that is an exact combination of others makes eq. (4)
    unbounded (Sigma singular along it): the fit says so, naming the outputs."""
    from mtgp import DegenerateOutputsWarning

    X, Y = data
    Yd = pd.DataFrame(np.column_stack([Y, Y[:, 0] - 2.0 * Y[:, 1]]), columns=["a", "b", "c", "d"])
    with pytest.warns(DegenerateOutputsWarning, match=r"rank 3 < 4 outputs.*'d'"):
        StructuredNoiseMTGP(max_iter=3).fit(X, Yd)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateOutputsWarning)
        StructuredNoiseMTGP(max_iter=3).fit(X, Y)  # full rank: silent


def _fitted_with_noise(Sigma, seed=2):
    """A fitted StructuredNoiseMTGP (1 iteration, so whatever the optimiser
    does) whose fitted noise covariance is then set to ``Sigma``: the
    warning is a property of the fitted Sigma, not of the optimiser path."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 2))
    Y = rng.normal(size=(30, Sigma.shape[0]))
    m = StructuredNoiseMTGP(mtgp.kernels.Linear(), max_iter=1).fit(X, Y)
    m.noise_covariance_ = np.asarray(Sigma, dtype=float)
    return m


def test_singular_fitted_noise_warns():
    """The DegenerateOutputsWarning fires exactly when the fitted noise
    covariance is numerically singular (smallest / largest eigenvalue below
    1e-10), deterministically: checked on fitted states with a chosen Sigma,
    and on a fit with a noise floor (never singular, so silent)."""
    import warnings

    from mtgp import DegenerateOutputsWarning

    rng = np.random.default_rng(0)
    V = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    for ev, singular in [([1.0, 1e-3, 0.5, 2.0], False), ([1.0, 1e-9, 0.5, 2.0], False),
                         ([1.0, 1e-12, 0.5, 2.0], True), ([1.0, 0.0, 0.5, 2.0], True),
                         ([1.0, -1e-14, 0.5, 2.0], True)]:
        m = _fitted_with_noise((V * ev) @ V.T)
        assert (np.linalg.eigvalsh(m.noise_covariance_)[0] / 2.0 < 1e-10) == singular
        if singular:
            with pytest.warns(DegenerateOutputsWarning, match="noise covariance is numerically singular"):
                m._warn_if_singular_noise()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DegenerateOutputsWarning)
                m._warn_if_singular_noise()
    # fit itself runs the check on its fitted Sigma: a model whose fitted
    # Sigma is made singular (rank T - 1, checked) warns from fit
    class SingularNoise(StructuredNoiseMTGP):
        def _fit_core(self, X, Y):
            info = super()._fit_core(X, Y)
            w, U = np.linalg.eigh(self._Sigma)
            self._Sigma = (U[:, 1:] * w[1:]) @ U[:, 1:].T
            assert np.linalg.matrix_rank(self._Sigma) == Y.shape[1] - 1
            return info

    Xs, Ys = np.random.default_rng(1).normal(size=(30, 2)), np.random.default_rng(3).normal(size=(30, 3))
    with pytest.warns(DegenerateOutputsWarning, match="noise covariance is numerically singular") as caught:
        SingularNoise(max_iter=2).fit(Xs, Ys)
    singular = [w for w in caught if "singular" in str(w.message)]
    assert singular[0].filename == __file__  # points at the caller's fit, not into mtgp
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    Y = X @ rng.normal(size=(3, 4)) + rng.normal(size=(60, 2)) @ rng.normal(size=(2, 4))
    # a noise floor keeps Sigma positive definite: floor respected, not
    # singular; the noise (rank 2 of 4) is held at the floor along the
    # other directions, and the warning says that instead
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = StructuredNoiseMTGP(mtgp.kernels.Linear(), rank=2, max_iter=200, min_noise_variance=1e-4).fit(X, Y)
    assert np.linalg.eigvalsh(m.noise_covariance_)[0] >= 1e-4 * np.var(Y, axis=0).min() * (1 - 1e-9)
    msgs = [str(w.message) for w in caught if issubclass(w.category, DegenerateOutputsWarning)]
    assert not any("singular" in msg for msg in msgs)
    assert len(msgs) == 1 and "is held at the floor" in msgs[0] and m.fit_info_["noise_floor_outputs"]
    with pytest.raises(ValueError, match="min_noise_variance"):
        ICM(min_noise_variance=-1.0).fit(X, Y)


def test_dataframes_and_predict_errors(data):
    X, Y = data
    Xd = pd.DataFrame(X, columns=["u", "v"])
    Yd = pd.DataFrame(Y, columns=["a", "b", "c"])
    m = CoolMTGP(method="approximate", max_iter=30).fit(Xd, Yd)
    assert m.output_names_ == ["a", "b", "c"]
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


def test_output_order_options(data):
    X, Y = data
    base = CoolMTGP(method="approximate", max_iter=15)
    m0 = clone(base).fit(X, Y)
    mp = clone(base).set_params(output_order=[2, 0, 1]).fit(X, Y)
    assert list(mp.output_order_) == [2, 0, 1]
    # reported in the original task order: close to the given-order fit
    assert np.linalg.norm(mp.output_covariance_ - m0.output_covariance_) / np.linalg.norm(m0.output_covariance_) < 0.5
    best = clone(base).set_params(output_order="best", n_orders=2).fit(X, Y)
    lls = [r["log_likelihood"] for r in best.order_results_]
    assert np.isclose(best.log_marginal_likelihood_, max(lls))
    avg = clone(base).set_params(output_order="average", n_orders=2).fit(X, Y)
    np.testing.assert_allclose(avg.output_covariance_, np.mean([r["C"] for r in avg.order_results_], axis=0))
    with pytest.raises(ValueError, match="permutation"):
        clone(base).set_params(output_order=[0, 0, 1]).fit(X, Y)
    out = output_order_sensitivity(base, X, Y, n_permutations=2, X_test=X[:5])
    assert len(out["table"]) == 3 and out["table"]["rel_frob_C"].iloc[0] == 0.0
