"""CoolMTGP with missing outputs: the exact observed-data refinement after
the imputation rounds (``CoolMTGP._fit_order_missing``).

Checks: the refinement's parameterisation reproduces its start (C, Sigma in
eq. 34's form) exactly; the kept observed-data log-likelihood never
decreases across the rounds and the refinement, and its last value is the
dense oracle's log N(y_O | 0, A_OO) at the fitted C, Sigma, kernel; the
refinement beats imputation alone; nothing of it runs when nothing is missing
(C and Sigma are then Alg. 3's recovery from the Cool fit).
"""

import numpy as np
import pytest

from mtgp import config
from mtgp.multioutput import CoolMTGP
from mtgp.multioutput import cool as cool_module
from mtgp.multioutput.cool import (_refined_covariances, _refinement_start, recover_noise_covariance,
                                   recover_output_covariance)
from mtgp.testing import dense_masked_log_likelihood


def _data(N=24, frac=0.4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    F = np.sin(X[:, :1]) + 0.3 * X[:, 1:]
    Y = np.hstack([F, -F + 0.2 * rng.normal(size=(N, 1)), 0.5 * F + 0.3 * rng.normal(size=(N, 1))])
    Y = Y + 0.1 * rng.normal(size=Y.shape)
    Ym = Y.copy()
    Ym[rng.random(Y.shape) < frac] = np.nan
    return X, Y, Ym


@config.float64
def test_refinement_start_reproduces_C_and_Sigma():
    rng = np.random.default_rng(0)
    T = 4
    A = rng.normal(size=(T, 2))
    C = A @ A.T  # rank 2: the square factor F takes it
    W = np.tril(rng.normal(size=(T, T)), -1)
    floor = np.full(T, 1e-3)
    s2 = floor + np.array([0.5, 1e-9, 0.2, 0.3])  # one conditional variance at its floor
    S = recover_noise_covariance(W, s2)
    p = _refinement_start({}, C, S, floor)
    C2, S2 = (np.asarray(a) for a in _refined_covariances(p, floor))
    np.testing.assert_allclose(C2, C, atol=1e-12)
    np.testing.assert_allclose(S2, S, atol=1e-12)
    B = np.tril(np.asarray(p["B"]), -1) + np.eye(T)  # eq. (34): B = (I - W_y)^-1
    np.testing.assert_allclose(np.eye(T) - np.linalg.inv(B), W, atol=1e-10)


@pytest.mark.parametrize("method,route", [("hierarchical", "masked complement"), ("approximate", "masked complement"),
                                          ("hierarchical", "masked dense")])
def test_observed_likelihood_never_decreases_and_is_exact(method, route, monkeypatch):
    """Both exact forms of the refinement's objective (the eigen complement,
    taken here as the cheaper, and the dense one) end at the oracle's value."""
    if route == "masked dense":
        monkeypatch.setattr(cool_module, "complement_cost_ratio", lambda *a: 2.0)
    X, _, Ym = _data()
    common = dict(method=method, max_iter=15, n_outer=2, normalize_y=True)
    imputed = CoolMTGP(**common)
    imputed.EXACT_REFINE = False
    imputed.MAX_IMPUTE = 4
    imputed.fit(X, Ym)
    model = CoolMTGP(**common)
    model.MAX_IMPUTE = 4
    model.fit(X, Ym)
    info = model.fit_info_
    path = np.asarray(info["observed_log_likelihoods"])
    assert len(path) == info["n_impute"] + 1  # each round, then the refinement
    assert np.all(np.diff(path) >= -1e-9 * np.abs(path[:-1]).max())
    assert path[-2] == pytest.approx(max(info["impute_log_likelihoods"]), abs=1e-12)
    # the same rounds as imputation alone, then a real improvement
    assert info["impute_log_likelihoods"] == pytest.approx(imputed.fit_info_["impute_log_likelihoods"], abs=1e-9)
    assert info["refine_accepted"] and info["refine_n_iter"] >= 1
    assert info["refine_likelihood"] == route
    assert model.log_marginal_likelihood_ > imputed.log_marginal_likelihood_ + 1e-3
    # the last value is the oracle's observed-data likelihood at the fitted parameters
    K = np.asarray(model.kernel_(X, X))
    Yi = (Ym - model._y_mean) / model._y_std
    assert path[-1] == pytest.approx(dense_masked_log_likelihood(K, model._C, model._Sigma, Yi), abs=1e-8)
    assert model._ll_internal == pytest.approx(path[-1], abs=1e-8)
    # Sigma keeps eq. (34)'s form and Cool's floor of the conditional noise variances
    order = np.asarray(model.output_order_)
    S_o = recover_noise_covariance(model.previous_output_weights_, model.sigma2_)
    np.testing.assert_allclose(S_o, model._Sigma[np.ix_(order, order)], atol=1e-10)
    floor = model.min_noise_variance * np.nanvar(Yi, axis=0)[order]
    assert np.all(model.sigma2_ >= floor * (1 - 1e-12))


def test_nothing_missing_runs_no_imputation_or_refinement(monkeypatch):
    """Complete data: the fit never enters the missing-output code, and C,
    Sigma are Alg. 3's recovery (eqs. 34, 45) from the Cool fit itself."""
    X, Y, _ = _data()

    def refuse(*args, **kwargs):
        raise AssertionError("missing-output code ran on complete data")

    monkeypatch.setattr(CoolMTGP, "_fit_order_missing", refuse)
    monkeypatch.setattr(CoolMTGP, "_refine_observed", refuse)
    model = CoolMTGP(max_iter=15, n_outer=2).fit(X, Y)
    assert "n_impute" not in model.fit_info_ and "observed_log_likelihoods" not in model.fit_info_
    order = np.asarray(model.output_order_)
    ix = np.ix_(order, order)
    K = np.asarray(model.kernel_(X, X))
    np.testing.assert_allclose(model._Sigma[ix], recover_noise_covariance(model.previous_output_weights_,
                                                                           model.sigma2_), atol=1e-10)
    np.testing.assert_allclose(model._C[ix], recover_output_covariance(model.previous_output_weights_, model.b_,
                                                                       model.duals_, K), atol=1e-10)


def _convergence_warnings(fit):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", ConvergenceWarning)
        model = fit()
    return model, [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_outer_cap_of_imputation_rounds_is_silent_when_refined():
    """HCool with missing outputs: the alternation only starts the exact
    refinement, so its cap (n_outer = 1, outer_tol = 0: every round reaches
    it) warns only when the refinement is not kept, and then at the caller."""
    X, _, Ym = _data()
    model, caught = _convergence_warnings(lambda: CoolMTGP(max_iter=15, n_outer=1, outer_tol=0.0).fit(X, Ym))
    assert model.fit_info_["stop_reason"] == "n_outer" and model.fit_info_["refine_accepted"]
    assert caught == []


def test_outer_cap_warns_at_the_caller_without_refinement(monkeypatch):
    monkeypatch.setattr(CoolMTGP, "EXACT_REFINE", False)
    X, _, Ym = _data()
    model, caught = _convergence_warnings(lambda: CoolMTGP(max_iter=15, n_outer=1, outer_tol=0.0).fit(X, Ym))
    assert model.fit_info_["stop_reason"] == "n_outer" and "refine_accepted" not in model.fit_info_
    assert len(caught) == 1 and "n_outer=1" in str(caught[0].message)
    assert caught[0].filename == __file__


def test_outer_cap_warns_once_at_the_caller_on_complete_data():
    X, Y, _ = _data()
    model, caught = _convergence_warnings(
        lambda: CoolMTGP(max_iter=15, n_outer=1, outer_tol=0.0, output_order="best", n_orders=2).fit(X, Y))
    assert model.fit_info_["stop_reason"] == "n_outer"
    assert len(caught) == 1 and caught[0].filename == __file__
