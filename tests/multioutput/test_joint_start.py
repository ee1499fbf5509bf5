"""Starting values and the default noise floor of the joint baselines
(ICM = Std-MT, StructuredNoiseMTGP = Sigma-MT), issue 13's missing-entries
benchmark: at an equal L-BFGS budget mtgp's Std-MT must reach the optimum
that GPyTorch's equal model reaches (slump, edm with 10% removed).
"""

import inspect

import numpy as np
import pytest

from mtgp.kernels import SE
from mtgp.multioutput import CoolMTGP, ICM, StructuredNoiseMTGP
from mtgp.multioutput import baselines
from mtgp.multioutput.base import output_covariance


def _correlated(N=40, seed=0, frac=0.1):
    """Three outputs driven by one latent function, with the signs (+, +, -)
    and a long lengthscale (the slump situation: strongly correlated outputs,
    signal variance far above the data's once the kernel's variance is fixed)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    F = X @ np.array([1.0, -0.7, 0.4]) + 0.3 * np.sin(2 * X[:, 0])
    Y = np.column_stack([F, 1.1 * F, -0.4 * F]) + rng.normal(size=(N, 3)) * np.array([0.3, 0.3, 0.05])
    Y = (Y - Y.mean(0)) / Y.std(0)
    Ym = Y.copy()
    Ym[rng.random(Y.shape) < frac] = np.nan
    return X, Ym


def test_output_covariance_is_pairwise_over_observed_rows():
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(30, 4)) @ rng.normal(size=(4, 4))
    Y[rng.random(Y.shape) < 0.3] = np.nan
    Y[:, 3] = np.nan
    Y[5, 3] = 1.0  # one observed value: no covariance with anything
    mean = np.nanmean(Y, axis=0)
    S = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            rows = ~np.isnan(Y[:, i]) & ~np.isnan(Y[:, j])
            if rows.sum() >= 2:
                S[i, j] = np.mean((Y[rows, i] - mean[i]) * (Y[rows, j] - mean[j]))
    np.testing.assert_allclose(output_covariance(Y), S, rtol=1e-12, atol=1e-14)
    Yc = rng.normal(size=(20, 3))
    np.testing.assert_allclose(output_covariance(Yc), np.cov(Yc.T, bias=True), rtol=1e-12)


def test_icm_start_has_the_data_correlations_whatever_the_seed():
    X, Ym = _correlated()
    S = output_covariance(Ym)
    b0 = 0.5 * np.nanvar(Ym, axis=0)
    for seed in range(5):
        A0 = baselines._leading_factors(Ym, b0, 1, np.random.default_rng(seed))
        C0 = A0 @ A0.T
        off = ~np.eye(3, dtype=bool)
        assert np.all(np.sign(C0[off]) == np.sign(S[off]))
        # the signal share of the leading component: trace(C0) = share * lambda_1
        assert np.trace(C0) == pytest.approx(np.sum(b0) / np.trace(S) * np.linalg.eigvalsh(S)[-1], rel=1e-10)
    # rank beyond T: the first T columns from the data, the rest drawn
    A0 = baselines._leading_factors(Ym, b0, 5, np.random.default_rng(0))
    assert A0.shape == (3, 5) and np.all(np.abs(A0[:, 3:]) > 0)


@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_icm_reaches_its_optimum_within_a_small_budget(random_state):
    """A random initial A can set correlated outputs against each other and
    then needs far more L-BFGS iterations (slump at 10% removed: 107 against
    GPyTorch's 49); from the data's output covariance the budget of 40 reaches
    the converged objective whatever ``random_state`` is."""
    X, Ym = _correlated()
    k = SE(lengthscale=np.sqrt(3.0))
    ref = ICM(k, rank=1, diagonal=True, max_iter=1000).fit(X, Ym).fit_info_["objective"]
    short = ICM(k, rank=1, diagonal=True, max_iter=40, random_state=random_state).fit(X, Ym).fit_info_["objective"]
    assert short - ref < 1e-4 * abs(ref)


def test_joint_models_default_to_coolmtgp_noise_floor():
    default = inspect.signature(CoolMTGP).parameters["min_noise_variance"].default
    for cls in (ICM, StructuredNoiseMTGP):
        assert cls().min_noise_variance == default == 1e-4


@pytest.mark.parametrize("cls", [ICM, StructuredNoiseMTGP])
def test_noise_free_output_stops_at_the_floor(cls):
    """An output that is an exact function of the inputs: without a floor the
    likelihood drives its noise to zero (edm at 10% removed: Std-MT's noise to
    1e-15 of the variance, removed-entry RMSE 1.21 against 0.87 at the floor);
    the default keeps it at 1e-4 of the output's variance."""
    rng = np.random.default_rng(4)
    X = rng.uniform(-2, 2, size=(30, 1))
    Y = np.column_stack([np.sin(2 * X[:, 0]), np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=30)])
    Y[rng.random(Y.shape) < 0.1] = np.nan
    var0 = np.nanvar(Y[:, 0])
    kw = dict(rank=1, diagonal=True) if cls is ICM else {}
    floored = cls(SE(lengthscale=1.0), max_iter=200, **kw).fit(X, Y)
    assert floored._Sigma[0, 0] >= 1e-4 * var0 * (1 - 1e-9)
    free = cls(SE(lengthscale=1.0), max_iter=200, min_noise_variance=0.0, **kw).fit(X, Y)
    assert free._Sigma[0, 0] < 1e-5 * var0


def test_icm_both_starts_keeps_the_better_of_the_two_single_start_fits():
    """``start="both"`` (default) is exactly the better likelihood of the
    ``"data"`` and ``"random"`` fits, and says which one it kept."""
    X, Ym = _correlated(N=30, seed=3, frac=0.3)
    k = SE(lengthscale=np.sqrt(3.0))
    fits = {s: ICM(k, rank=1, diagonal=True, max_iter=15, start=s, random_state=1).fit(X, Ym)
            for s in ("data", "random", "both")}
    obj = {s: f.fit_info_["objective"] for s, f in fits.items()}
    assert "start" not in fits["data"].fit_info_
    both = fits["both"].fit_info_
    assert both["start_objectives"] == pytest.approx({"data": obj["data"], "random": obj["random"]}, rel=1e-12)
    kept = "random" if obj["random"] < obj["data"] else "data"
    assert both["start"] == kept
    assert obj["both"] == pytest.approx(min(obj["data"], obj["random"]), rel=1e-12)
    np.testing.assert_allclose(fits["both"].output_covariance_, fits[kept].output_covariance_, rtol=1e-10)
    # the two starts differ (the random A is not the data's leading factor)
    assert obj["data"] != obj["random"]


def test_icm_random_start_is_seeded_and_start_is_validated():
    X, Ym = _correlated(N=20, frac=0.0)
    a = ICM(SE(), rank=1, max_iter=3, start="random", random_state=5).fit(X, Ym)
    b = ICM(SE(), rank=1, max_iter=3, start="random", random_state=5).fit(X, Ym)
    c = ICM(SE(), rank=1, max_iter=3, start="random", random_state=6).fit(X, Ym)
    np.testing.assert_array_equal(a.output_covariance_, b.output_covariance_)
    assert not np.allclose(a.output_covariance_, c.output_covariance_)
    with pytest.raises(ValueError, match="start must be"):
        ICM(start="eigen").fit(X, Ym)


def test_icm_random_starts_keep_the_best_of_the_single_draw_fits():
    """``n_random_starts=k`` fits draws 0..k-1 of A, each exactly the fit of
    ``start="random"`` with the seed it documents, and keeps the best; with
    ``start="both"`` the data start is one more candidate."""
    X, Ym = _correlated(N=30, seed=3, frac=0.3)
    k = SE(lengthscale=np.sqrt(3.0))
    kw = dict(rank=1, diagonal=True, max_iter=15)
    single = {"random": ICM(k, start="random", random_state=7, **kw).fit(X, Ym)}
    for j in (1, 2):
        single[f"random {j}"] = ICM(k, start="random", random_state=[7, j], **kw).fit(X, Ym)
    single["data"] = ICM(k, start="data", random_state=7, **kw).fit(X, Ym)
    obj = {s: f.fit_info_["objective"] for s, f in single.items()}
    assert len(set(np.round(list(obj.values()), 12))) == 4  # four different fits
    for start, names in (("random", ["random", "random 1", "random 2"]),
                         ("both", ["data", "random", "random 1", "random 2"])):
        m = ICM(k, start=start, random_state=7, n_random_starts=3, **kw).fit(X, Ym)
        info = m.fit_info_
        assert info["start_objectives"] == pytest.approx({s: obj[s] for s in names}, rel=1e-12)
        kept = min(names, key=obj.get)
        assert info["start"] == kept and info["objective"] == pytest.approx(obj[kept], rel=1e-12)
        np.testing.assert_allclose(m.output_covariance_, single[kept].output_covariance_, rtol=1e-10)
    # one draw: the previous behaviour, to the bit
    one = ICM(k, start="both", random_state=7, n_random_starts=1, **kw).fit(X, Ym)
    default = ICM(k, start="both", random_state=7, **kw).fit(X, Ym)
    assert one.fit_info_["start_objectives"] == default.fit_info_["start_objectives"]
    assert set(one.fit_info_["start_objectives"]) == {"data", "random"}
    np.testing.assert_array_equal(one.output_covariance_, default.output_covariance_)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_icm_n_random_starts_is_validated(bad):
    X, Ym = _correlated(N=20, frac=0.0)
    with pytest.raises(ValueError, match="n_random_starts must be an integer >= 1"):
        ICM(SE(), n_random_starts=bad).fit(X, Ym)


def test_icm_n_random_starts_needs_a_random_start():
    X, Ym = _correlated(N=20, frac=0.0)
    with pytest.raises(ValueError, match="start='data' does not use"):
        ICM(SE(), start="data", n_random_starts=3).fit(X, Ym)


def test_icm_screened_starts_continue_the_best_screened_fit():
    """``screen_iter=s``: every start runs ``s`` iterations (exactly the
    single-start fit with ``max_iter=s``), the lowest objective is kept and
    goes on for the rest of the budget: it ends no worse than where it was
    screened and, given the budget, at the converged optimum of that start."""
    X, Ym = _correlated(N=30, seed=3, frac=0.3)
    k = SE(lengthscale=np.sqrt(3.0))
    kw = dict(rank=1, diagonal=True, random_state=7)
    screen = 8
    single = {"data": ICM(k, start="data", max_iter=screen, **kw).fit(X, Ym),
              "random": ICM(k, start="random", max_iter=screen, **kw).fit(X, Ym)}
    single["random 1"] = ICM(k, start="random", max_iter=screen, rank=1, diagonal=True,
                             random_state=[7, 1]).fit(X, Ym)
    obj = {s: f.fit_info_["objective"] for s, f in single.items()}
    kept = min(obj, key=obj.get)

    m = ICM(k, max_iter=400, n_random_starts=2, screen_iter=screen, **kw).fit(X, Ym)
    info = m.fit_info_
    assert info["start_objectives"] == pytest.approx(obj, rel=1e-12)
    assert info["start"] == kept and info["screen_iter"] == screen
    assert info["objective"] <= obj[kept]
    assert screen < info["n_iter"] == m.n_iter_ < 400 and info["converged"]
    kept_kw = dict(kw, start="data") if kept == "data" else dict(
        rank=1, diagonal=True, start="random", random_state=7 if kept == "random" else [7, 1])
    full = ICM(k, max_iter=400, **kept_kw).fit(X, Ym)
    assert full.fit_info_["converged"]
    assert info["objective"] == pytest.approx(full.fit_info_["objective"], rel=1e-7)
    np.testing.assert_allclose(m.output_covariance_, full.output_covariance_, rtol=1e-3, atol=1e-6)


def test_icm_screening_is_inert_without_several_starts_or_below_the_budget():
    """With one start, or ``screen_iter >= max_iter``, every number is the
    unscreened fit's, to the bit."""
    X, Ym = _correlated(N=30, seed=3, frac=0.3)
    k = SE(lengthscale=np.sqrt(3.0))
    kw = dict(rank=1, diagonal=True, random_state=7, max_iter=15)
    for extra in (dict(start="data"), dict(start="random"), dict(n_random_starts=2)):
        plain = ICM(k, **kw, **extra).fit(X, Ym)
        screen = 5 if "start" in extra else 15
        screened = ICM(k, screen_iter=screen, **kw, **extra).fit(X, Ym)
        np.testing.assert_array_equal(screened.output_covariance_, plain.output_covariance_)
        assert screened.fit_info_["objective"] == plain.fit_info_["objective"]
        assert "screen_iter" not in screened.fit_info_


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "40"])
def test_icm_screen_iter_is_validated(bad):
    X, Ym = _correlated(N=20, frac=0.0)
    with pytest.raises(ValueError, match="screen_iter must be None or an integer >= 1"):
        ICM(SE(), screen_iter=bad).fit(X, Ym)
