"""Input column names of the multi-output models (scikit-learn's
``feature_names_in_``) and row-index checks between X and Y."""

import warnings

import numpy as np
import pandas as pd
import pytest

from mtgp.exceptions import DataError
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 2))
    F = np.sin(2.0 * X[:, :1]) + 0.8 * X[:, 1:] ** 2  # u and v play different roles
    Y = np.hstack([F, -F + 0.2 * rng.normal(size=(30, 1))]) + 0.05 * rng.normal(size=(30, 2))
    return pd.DataFrame(X, columns=["u", "v"]), pd.DataFrame(Y, columns=["a", "b"])


@pytest.fixture(scope="module")
def fitted(data):
    Xd, Yd = data
    return CoolMTGP(method="approximate", max_iter=30).fit(Xd, Yd)


def test_feature_names_recorded(fitted, data):
    Xd, Yd = data
    assert list(fitted.feature_names_in_) == ["u", "v"]
    assert fitted.feature_names_in_.dtype == object
    assert fitted.n_features_in_ == 2
    # an array fit records none (and a refit on an array forgets the old names)
    m = CoolMTGP(method="approximate", max_iter=5).fit(Xd, Yd)
    m.fit(Xd.to_numpy(), Yd.to_numpy())
    assert not hasattr(m, "feature_names_in_")
    # non-string column labels are not names (scikit-learn's rule)
    m.fit(pd.DataFrame(Xd.to_numpy()), Yd)
    assert not hasattr(m, "feature_names_in_")


def test_predict_reorders_columns_by_name(fitted, data):
    """The issue's case: fitted on (u, v), predicted on (v, u) gave other
    numbers (max difference 3.34). Now the columns are taken by name."""
    Xd, _ = data
    Xs = Xd.iloc[:7]
    ref = fitted.predict(Xs, include_noise=True)
    swapped = fitted.predict(Xs[["v", "u"]], include_noise=True)
    np.testing.assert_array_equal(swapped.mean, ref.mean)
    np.testing.assert_array_equal(swapped.cov, ref.cov)
    # an array is taken by position
    np.testing.assert_array_equal(fitted.predict(Xs.to_numpy()).mean, ref.mean)
    # the swap really matters (the test could fail): position-wise, (v, u) differs
    assert np.max(np.abs(fitted.predict(Xs[["v", "u"]].to_numpy()).mean - ref.mean)) > 1e-3


@pytest.mark.parametrize("cols,match", [
    (["u"], r"missing column\(s\) \['v'\]"),
    (["u", "v", "w"], r"unexpected column\(s\) \['w'\]"),
    (["u", "w"], r"missing column\(s\) \['v'\]; unexpected column\(s\) \['w'\]"),
    (["u", "v", "v"], r"duplicated column\(s\) \['v'\]"),
])
def test_predict_names_missing_or_extra_columns(fitted, data, cols, match):
    Xd, _ = data
    Xs = pd.DataFrame(np.ones((3, len(cols))), columns=cols)
    with pytest.raises(DataError, match=match):
        fitted.predict(Xs)


@pytest.mark.parametrize("est", [IndependentGPs(max_iter=5), ICM(rank=1, max_iter=5),
                                 StructuredNoiseMTGP(max_iter=5)])
def test_every_model_takes_columns_by_name(data, est):
    Xd, Yd = data
    est.fit(Xd, Yd)
    np.testing.assert_array_equal(est.predict(Xd[["v", "u"]].iloc[:4]).mean, est.predict(Xd.iloc[:4]).mean)


def test_feature_names_survive_save_load(fitted, data, tmp_path):
    Xd, _ = data
    path = fitted.save(tmp_path / "m")
    m = CoolMTGP.load(path)
    assert list(m.feature_names_in_) == ["u", "v"]
    np.testing.assert_array_equal(m.predict(Xd[["v", "u"]].iloc[:3]).mean, fitted.predict(Xd.iloc[:3]).mean)


def test_warns_when_x_and_y_indexes_disagree(data):
    Xd, Yd = data
    shuffled = Yd.sample(frac=1.0, random_state=0)  # same rows, other order: matched by position
    with pytest.warns(UserWarning, match=r"different row indexes.*matched by position"):
        CoolMTGP(method="approximate", max_iter=3).fit(Xd, shuffled)
    with pytest.warns(UserWarning, match="different row indexes"):
        CoolMTGP(method="approximate", max_iter=3).fit(Xd, Yd.set_index(Yd.index + 100))
    with warnings.catch_warnings():  # equal indexes, or an array on either side: silent
        warnings.simplefilter("error")
        CoolMTGP(method="approximate", max_iter=3).fit(Xd, Yd)
        CoolMTGP(method="approximate", max_iter=3).fit(Xd.to_numpy(), shuffled)


# ---- collapsing noise covariance: detected, warned, recorded ---------------

def test_collapsing_noise_warns_and_is_recorded():
    """A fitted Sigma whose smallest eigenvalue, in units of the outputs'
    variances, is below NOISE_COLLAPSE_RATIO warns and is recorded; a
    healthy one is silent (the check is on the fitted state, deterministic)."""
    from mtgp import DegenerateOutputsWarning
    from mtgp.multioutput.base import NOISE_COLLAPSE_RATIO

    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(30, 2)), rng.normal(size=(30, 3)) * [1.0, 10.0, 0.1]  # unequal scales
    m = StructuredNoiseMTGP(max_iter=1).fit(X, Y)
    sd = Y.std(axis=0)
    V = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    for lam, collapsed in [(1e-2, False), (3 * NOISE_COLLAPSE_RATIO, False), (0.3 * NOISE_COLLAPSE_RATIO, True)]:
        R = (V * [lam, 0.5, 1.0]) @ V.T  # in units of the outputs' variances
        m.noise_covariance_ = R * np.outer(sd, sd)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = m._noise_diagnostics(warn=True)
        np.testing.assert_allclose(info["noise_min_eigenvalue"], lam, rtol=1e-8)
        msgs = [str(w.message) for w in caught if issubclass(w.category, DegenerateOutputsWarning)]
        assert bool(msgs) == collapsed
        if collapsed:
            assert "collapsing" in msgs[0] and "min_noise_variance" in msgs[0]


def test_cool_noise_floor_binding_is_reported():
    """An output that the previous ones determine almost exactly has its
    conditional noise at the floor: fit warns, fit_info_ names the output."""
    from mtgp import DegenerateOutputsWarning

    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 2))
    F = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])])
    Y = F + 0.3 * rng.normal(size=F.shape)
    Y = pd.DataFrame(np.column_stack([Y, Y[:, 0] - Y[:, 1] + 1e-7 * rng.normal(size=40)]), columns=["a", "b", "c"])
    with pytest.warns(DegenerateOutputsWarning, match=r"collapsing.*\['c'\] is held at the floor"):
        m = CoolMTGP(method="approximate", max_iter=100).fit(X, Y)
    assert m.fit_info_["noise_floor_outputs"] == ["c"]
    assert m.fit_info_["noise_min_eigenvalue"] < 1e-2
    # healthy data: nothing at the floor, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateOutputsWarning)
        h = CoolMTGP(method="approximate", max_iter=100).fit(X, Y[["a", "b"]])
    assert h.fit_info_["noise_floor_outputs"] == [] and h.fit_info_["noise_min_eigenvalue"] > 1e-2


@pytest.mark.parametrize("model", [ICM(rank=2, diagonal=True, max_iter=200), StructuredNoiseMTGP(max_iter=200)],
                         ids=["ICM", "Sigma-MT"])
def test_joint_noise_floor_binding_is_reported(model):
    """ICM and Sigma-MT: an output that the inputs determine almost exactly
    has its noise at the floor. Sigma's smallest eigenvalue cannot fall
    below the floor ratio (1e-4, the collapse threshold), so the floor is
    the signal: fit warns and fit_info_ names the output; healthy outputs
    are silent."""
    from sklearn.base import clone

    from mtgp import DegenerateOutputsWarning

    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 2))
    F = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])])
    Y = F + 0.3 * rng.normal(size=F.shape)
    Y = pd.DataFrame(np.column_stack([Y, np.sin(X[:, 0]) + 1e-7 * rng.normal(size=40)]), columns=["a", "b", "c"])
    with pytest.warns(DegenerateOutputsWarning, match=r"collapsing.*\['c'\] is held at the floor"):
        m = clone(model).fit(X, Y)
    assert m.fit_info_["noise_floor_outputs"] == ["c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateOutputsWarning)
        h = clone(model).fit(X, Y[["a", "b"]])
    assert h.fit_info_["noise_floor_outputs"] == []


def test_joint_floor_binding_along_a_direction():
    """A full Sigma (Sigma-MT) held by the floor along a combination of
    outputs names the outputs that make it up: exactly when the free part
    of Sigma along it is at most (NOISE_FLOOR_BINDING - 1) times the floor
    ratio (checked on the fitted state, deterministic)."""
    from mtgp.multioutput.base import NOISE_FLOOR_BINDING, output_variances

    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(30, 2)), rng.normal(size=(30, 3)) * [1.0, 10.0, 0.1]  # unequal scales
    m = StructuredNoiseMTGP(max_iter=1).fit(X, pd.DataFrame(Y, columns=["a", "b", "c"]))
    ratio, sd = m.min_noise_variance, np.sqrt(output_variances(m._Y))
    u = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)  # a against b
    V = np.linalg.qr(np.column_stack([u, [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))[0]
    for free, bound in [(0.5, ["a", "b"]), (0.99 * (NOISE_FLOOR_BINDING - 1.0), ["a", "b"]),
                        (1.01 * (NOISE_FLOOR_BINDING - 1.0), []), (10.0, [])]:
        R = (V * [free * ratio, 0.5, 1.0]) @ V.T  # free part, in units of the outputs' variances
        m._Sigma = (R + ratio * np.eye(3)) * np.outer(sd, sd)
        assert m._floor_bound_outputs() == bound
