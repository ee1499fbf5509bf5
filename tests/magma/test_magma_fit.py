"""EM training: monotone likelihood, Common vs Different HP, uncommon grids,
repeated short runs, save/load round trip."""

import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.kernels import SE
from conftest import DenseMagma


@pytest.fixture(scope="module")
def sim_common():
    return mtgp.simulate(n_individuals=9, n_points=12, common_grid=False, common_hp=True, seed=3)


@pytest.fixture(scope="module")
def sim_different():
    # common grid: shares compiled programs across the Different-HP tests
    return mtgp.simulate(n_individuals=9, n_points=12, common_grid=True, common_hp=False, seed=4)


def _train_test(sim):
    ids = sim.data.ID.unique()
    train = sim.data[sim.data.ID != ids[-1]]
    new = sim.data[sim.data.ID == ids[-1]]
    return train, new


def _monotone(history):
    diffs = np.diff(history)
    return np.all(diffs >= -1e-8 * np.abs(history[:-1]))


def test_em_never_decreases_likelihood_common_hp(sim_common):
    train, new = _train_test(sim_common)
    model = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), noise=1.0, tol=1e-10, max_iter=12).fit(train)
    assert len(model.history_) >= 3
    assert _monotone(model.history_), model.history_
    assert model.history_[-1] > model.history_[0]
    # log_likelihood_ is the exact marginal likelihood at the fitted HPs
    data = [(g[["Input"]].to_numpy(), g.Output.to_numpy()) for _, g in train.groupby("ID", sort=False)]
    ref = DenseMagma(model.mean_kernel_, [model.individual_kernel_] * len(data), [model.noise_] * len(data), data,
                     lambda X: np.zeros(len(X)))
    assert model.log_likelihood_ == pytest.approx(ref.loglik(), rel=1e-8)
    assert model.log_likelihood_ == pytest.approx(model.history_[-1])
    hp = model.hyperparameters_
    assert list(hp.ID) == list(train.ID.unique())
    assert np.allclose(hp.noise, model.noise_)


def test_paper_mean_update_is_monotone_on_well_conditioned_grid():
    """mean_update="expected" is the paper's M step for theta_0 (it needs
    K0^-1, hence a 1e-8 relative jitter); on a well-separated grid it is a
    plain EM step and the likelihood never decreases."""
    rng = np.random.default_rng(5)
    grid = np.arange(10.0)
    data = {i: (grid, 5 + 3 * np.sin(grid / 2) + rng.normal(0, 1.0, 10)) for i in range(6)}
    model = mtgp.Magma(SE(5.0, 1.0), SE(2.0, 1.0), noise=1.0, tol=1e-12, max_iter=10,
                       mean_update="expected").fit(data)
    assert len(model.history_) >= 3
    assert _monotone(model.history_), model.history_


def test_em_different_hp_monotone_and_individual_hps(sim_different):
    train, new = _train_test(sim_different)
    model = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), noise=1.0, common_hp=False, tol=1e-10,
                       max_iter=8).fit(train)
    assert _monotone(model.history_), model.history_
    hp = model.hyperparameters_
    assert hp.shape[0] == 8 and hp.variance.nunique() == 8  # each individual has its own HPs
    assert np.asarray(model.noise_).shape == (8,)
    obs, test = new.iloc[:8], new.iloc[8:]
    pred = model.predict(obs, inputs=test[["Input"]])
    assert np.all(np.isfinite(pred.mean)) and np.all(pred.var > 0)
    assert set(pred.hyperparameters) == {"variance", "lengthscale", "noise"}
    ml = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), common_hp=False, new_individual_hp="ml", max_iter=2)
    ml.fit(train)
    assert np.all(np.isfinite(ml.predict(obs, inputs=test[["Input"]]).mean))


def test_common_hp_recovers_mean_process(sim_common):
    """The hyper-posterior of mu_0 recovers the true mean process, and the
    Type II prediction (no data) of a new individual beats the prior mean."""
    train, new = _train_test(sim_common)
    model = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), noise=1.0).fit(train)
    inside = (sim_common.grid >= model.grid_.min()) & (sim_common.grid <= model.grid_.max())
    mu = model.hyperposterior(sim_common.grid[inside])
    # honest uncertainty: the 95% band of the hyper-posterior covers the truth
    assert mtgp.metrics.cic95(sim_common.mean_process[inside], mu.mean, mu.var) >= 70.0
    typ2 = model.predict(None, inputs=new[["Input"]])
    assert mtgp.metrics.mse(new.Output, typ2.mean) < mtgp.metrics.mse(new.Output, np.zeros(len(new)))
    assert 50.0 <= mtgp.metrics.cic95(new.Output, typ2.mean, typ2.var) <= 100.0


def test_optimize_false_keeps_hyperparameters(sim_common):
    train, _ = _train_test(sim_common)
    model = mtgp.Magma(SE(7.0, 2.0), SE(3.0, 1.5), noise=0.4).fit(train, optimize=False)
    assert model.mean_kernel_.variance == pytest.approx(7.0)
    assert model.individual_kernel_.lengthscale == pytest.approx(1.5)
    assert model.noise_ == pytest.approx(0.4)
    assert model.n_iter_ == 0 and len(model.history_) == 1


def test_repeated_short_runs_keep_best(sim_common):
    train, _ = _train_test(sim_common)
    single = mtgp.Magma(SE(1.0, 1.0), SE(1.0, 1.0), noise=1.0, max_iter=3, tol=1e-12).fit(train)
    multi = mtgp.Magma(SE(1.0, 1.0), SE(1.0, 1.0), noise=1.0, max_iter=3, tol=1e-12, n_init=3,
                       init_iter=2, random_state=0).fit(train)
    assert np.isfinite(multi.log_likelihood_)
    assert _monotone(multi.history_)
    assert multi.fit_info_["n_init"] == 3 and 0 <= multi.fit_info_["best_start"] < 3


def test_save_load_round_trip(tmp_path, sim_common, sim_different, monkeypatch):
    from mtgp.magma import em
    calls = []
    e_step = em.e_step
    monkeypatch.setattr(em, "e_step", lambda *a: calls.append(1) or e_step(*a))
    for common, sim in ((True, sim_common), (False, sim_different)):
        train, new = _train_test(sim)
        model = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), noise=1.0, common_hp=common, max_iter=2).fit(train)
        path = model.save(tmp_path / f"model_{common}")  # suffix added, the same for load
        assert path.endswith(".npz")
        calls.clear()
        loaded = mtgp.Magma.load(tmp_path / f"model_{common}")
        assert len(calls) == 1  # exactly one E step, no refit
        grid = np.linspace(0, 10, 25)
        a = model.predict(new.iloc[:5], inputs=grid)
        b = loaded.predict(new.iloc[:5], inputs=grid)
        np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b.cov, a.cov, rtol=1e-12, atol=1e-12)
        assert loaded.log_likelihood_ == pytest.approx(model.log_likelihood_, rel=1e-12)
        assert loaded.ids_ == model.ids_
        np.testing.assert_array_equal(loaded.history_, model.history_)
        assert loaded.n_iter_ == model.n_iter_ and loaded.converged_ == model.converged_
        pd.testing.assert_frame_equal(loaded.hyperparameters_, model.hyperparameters_)
    with pytest.raises(ValueError, match="callable prior_mean"):
        mtgp.Magma(prior_mean=lambda X: X[:, 0], max_iter=1).fit(train, optimize=False).save(tmp_path / "x.npz")
    # a corrupt or foreign file names itself
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(mtgp.exceptions.ModelFileError, match="bad.npz"):
        mtgp.Magma.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(mtgp.exceptions.ModelFileError, match="foreign.npz"):
        mtgp.Magma.load(tmp_path / "foreign.npz")


def test_task_kernel_is_deprecated(sim_common):
    from mtgp.exceptions import MtgpDeprecationWarning
    train, _ = _train_test(sim_common)
    new = mtgp.Magma(SE(7.0, 2.0), individual_kernel=SE(3.0, 1.5), noise=0.4).fit(train, optimize=False)
    old = mtgp.Magma(SE(7.0, 2.0), task_kernel=SE(3.0, 1.5), noise=0.4)
    assert old.get_params()["task_kernel"].lengthscale == 1.5
    clone = type(old)(**old.get_params(deep=False))  # what sklearn.base.clone does
    for model in (old, clone):
        with pytest.warns(MtgpDeprecationWarning, match="individual_kernel"):
            model.fit(train, optimize=False)
        assert model.log_likelihood_ == new.log_likelihood_
        with pytest.warns(MtgpDeprecationWarning, match="individual_kernel_"):
            assert model.task_kernel_.lengthscale == pytest.approx(1.5)
    with pytest.raises(TypeError, match="individual_kernel= only"):
        mtgp.Magma(individual_kernel=SE(), task_kernel=SE()).fit(train, optimize=False)


def test_fit_info_and_backend(sim_common):
    train, _ = _train_test(sim_common)
    a = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), max_iter=2).fit(train)
    b = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), max_iter=2, backend=mtgp.backends.Local()).fit(train)
    assert a.log_likelihood_ == b.log_likelihood_
    info = a.fit_info_
    assert {"n_iter", "converged", "history", "fit_time", "jitter", "n_init", "best_start",
            "bucket_sizes"} <= set(info)
    assert info["n_iter"] == a.n_iter_ and info["converged"] == a.converged_
    np.testing.assert_array_equal(info["history"], a.history_)
    assert info["best_start"] == 0 and info["n_init"] == 1 and info["jitter"] == 0.0
    assert isinstance(a.backend_, mtgp.backends.Local)
    with pytest.raises(TypeError, match="backend"):
        mtgp.Magma(backend="dask").fit(train, optimize=False)


def test_hyperposterior_default_grid_and_frame(sim_common):
    train, _ = _train_test(sim_common)
    model = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), max_iter=1).fit(train)
    hp = model.hyperposterior()
    assert hp.mean.shape == (len(model.grid_),) and hp.cov.shape == (len(model.grid_),) * 2
    frame = hp.to_frame()
    assert list(frame.columns) == ["Input", "Mean", "Var", "Lower", "Upper"]
    assert np.all(frame.Lower <= frame.Mean) and np.all(frame.Mean <= frame.Upper)
    pred = model.predict(None)  # Type II on the default 500-point grid
    assert len(pred) == 500
