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
