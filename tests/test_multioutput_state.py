"""The shared conventions of the multi-output estimators: the glossary's
names (old ones deprecated), fit_info_, the several-start option and
save / load."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone

import mtgp
from mtgp.exceptions import ModelFileError, MtgpDeprecationWarning
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    F = np.sin(X[:, :1]) + 0.3 * X[:, 1:]
    Y = np.hstack([F, -F + 0.2 * rng.normal(size=(30, 1)), 0.5 * F + 0.3 * rng.normal(size=(30, 1))])
    return X, Y + 0.1 * rng.normal(size=Y.shape)


MODELS = [
    lambda **kw: CoolMTGP(max_iter=15, n_outer=2, **kw),
    lambda **kw: CoolMTGP(method="approximate", normalize_y=True, max_iter=15, **kw),
    lambda **kw: IndependentGPs(max_iter=15, **kw),
    lambda **kw: ICM(rank=1, max_iter=15, **kw),
    lambda **kw: StructuredNoiseMTGP(mtgp.kernels.Linear(), max_iter=15, **kw),
]
IDS = ["hcool", "cool", "independent", "icm", "sigma"]


@pytest.mark.parametrize("make", MODELS, ids=IDS)
def test_fit_info_and_not_fitted(data, make):
    X, Y = data
    m = make()
    with pytest.raises(mtgp.exceptions.NotFittedError, match="not fitted"):
        m.predict(X)
    with pytest.raises(mtgp.exceptions.NotFittedError):
        m.save("unused")
    m.fit(X, Y)
    info = m.fit_info_
    assert {"n_iter", "objective", "converged", "stop_reason", "fit_time", "n_init", "best_start"} <= set(info)
    assert info["n_init"] == 1 and info["n_iter"] >= 1 and np.isfinite(info["objective"])
    assert info["fit_time"] == m.fit_time_
    assert m.n_outputs_ == 3 and m.output_names_ == ["output 0", "output 1", "output 2"]


@pytest.mark.parametrize("make", MODELS, ids=IDS)
def test_n_init_never_worse(data, make):
    X, Y = data
    one = make().fit(X, Y)
    three = make(n_init=3, random_state=1).fit(X, Y)
    assert three.fit_info_["n_init"] == 3
    if isinstance(one, CoolMTGP):
        assert three.objective_ >= one.objective_ - 1e-9 * abs(one.objective_)
    else:
        assert three.fit_info_["objective"] <= one.fit_info_["objective"] + 1e-12
    with pytest.raises(ValueError, match="n_init"):
        make(n_init=0).fit(X, Y)


def test_n_init_one_is_the_default_fit(data):
    X, Y = data
    a = ICM(rank=1, max_iter=15).fit(X, Y)
    b = ICM(rank=1, max_iter=15, n_init=1, random_state=0).fit(X, Y)
    np.testing.assert_array_equal(a.output_covariance_, b.output_covariance_)


def test_deprecated_names_warn_and_agree(data):
    X, Y = data
    m = CoolMTGP(method="approximate", max_iter=10, output_order=[2, 0, 1]).fit(X, Y)
    for old, new in [("n_tasks_", "n_outputs_"), ("task_names_", "output_names_"),
                     ("task_covariance_", "output_covariance_"), ("task_order_", "output_order_"),
                     ("previous_task_weights_", "previous_output_weights_")]:
        with pytest.warns(MtgpDeprecationWarning, match=new):
            old_value = getattr(m, old)
        np.testing.assert_array_equal(np.asarray(old_value), np.asarray(getattr(m, new)))
    # the constructor argument: scikit-learn style, resolved at fit
    old = CoolMTGP(method="approximate", max_iter=10, task_order=[2, 0, 1])
    assert clone(old).get_params()["task_order"] == [2, 0, 1]
    with pytest.warns(MtgpDeprecationWarning, match="output_order"):
        old.fit(X, Y)
    assert list(old.output_order_) == [2, 0, 1]
    np.testing.assert_array_equal(old.output_covariance_, m.output_covariance_)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MtgpDeprecationWarning)
        clone(m).fit(X, Y)  # the new name alone: silent
    with pytest.raises(TypeError, match="output_order"):
        CoolMTGP(output_order="best", task_order="random").fit(X, Y)
    from mtgp.multioutput import (output_order_sensitivity, recover_output_covariance,
                                  recover_task_covariance, task_order_sensitivity)

    args = (np.zeros((2, 2)), [1.0, 4.0], np.eye(2), np.eye(2))
    with pytest.warns(MtgpDeprecationWarning, match="recover_output_covariance"):
        np.testing.assert_array_equal(recover_task_covariance(*args), recover_output_covariance(*args))
    with pytest.warns(MtgpDeprecationWarning, match="output_order_sensitivity"):
        out = task_order_sensitivity(old, X, Y, n_permutations=1)
    assert len(out["table"]) == 2
    assert len(output_order_sensitivity(old, X, Y, n_permutations=1)["table"]) == 2


@pytest.mark.parametrize("make", MODELS + [lambda **kw: CoolMTGP(method="approximate", max_iter=10,
                                                                  output_order="average", n_orders=2)],
                         ids=IDS + ["cool-average"])
def test_save_load_round_trip(data, make, tmp_path):
    X, Y = data
    m = make().fit(X, Y)
    path = m.save(tmp_path / "model")
    assert path.endswith(".npz")
    back = type(m).load(tmp_path / "model")
    assert back.get_params(deep=False).keys() == m.get_params(deep=False).keys()
    Xs = X[:5] + 0.1
    p0, p1 = m.predict(Xs, full_cov=True, include_noise=True), back.predict(Xs, full_cov=True, include_noise=True)
    for a, b in [(p0.mean, p1.mean), (p0.cov, p1.cov), (p0.joint_cov, p1.joint_cov)]:
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.max(np.abs(a)))
    np.testing.assert_allclose(back.log_marginal_likelihood_, m.log_marginal_likelihood_, rtol=1e-12)
    np.testing.assert_array_equal(back.output_covariance_, m.output_covariance_)
    assert back.fit_info_ == m.fit_info_ and back.output_names_ == m.output_names_
    other = ICM if not isinstance(m, ICM) else CoolMTGP
    with pytest.raises(ModelFileError, match=f"mtgp.{type(m).__name__}/1"):
        other.load(path)


def test_load_restores_model_specific_state(data, tmp_path):
    X, Y = data
    m = CoolMTGP(method="approximate", max_iter=10, output_order="best", n_orders=2).fit(X, Y)
    back = CoolMTGP.load(m.save(tmp_path / "cool.npz"))
    np.testing.assert_array_equal(back.output_order_, m.output_order_)
    np.testing.assert_array_equal(back.duals_, m.duals_)
    assert back.objective_ == m.objective_
    assert len(back.order_results_) == 2
    np.testing.assert_array_equal(back.order_results_[1]["C"], m.order_results_[1]["C"])
    assert [k.to_dict() for k in IndependentGPs.load(IndependentGPs(max_iter=5).fit(X, Y).save(
        tmp_path / "ind")).kernel_] is not None
