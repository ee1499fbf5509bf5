"""Quick modes of the Sec. 6 experiment scripts (benchmarks/) and the
GPFDA-style baseline. The quick modes write into a tmp folder, never docs/."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp import GPFDA

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpfda_spline_recovers_smooth_mean():
    rng = np.random.default_rng(0)
    truth = lambda t: 3 * np.sin(t) + 0.5 * t  # noqa: E731
    grid = np.linspace(0, 10, 30)
    rows = [pd.DataFrame({"ID": f"i{k}", "Input": grid, "Output": truth(grid) + rng.normal(0, 1.0, grid.size)})
            for k in range(40)]
    g = GPFDA().fit(pd.concat(rows, ignore_index=True))
    fine = np.linspace(0, 10, 200)
    assert np.sqrt(np.mean((g.mean(fine) - truth(fine)) ** 2)) < 0.3
    # the new individual's GP uses the spline as its mean
    new = pd.DataFrame({"Input": grid[:20], "Output": truth(grid[:20]) + rng.normal(0, 1.0, 20)})
    pred = g.predict(new, grid[20:])
    assert isinstance(pred, mtgp.Prediction) and pred.mean.shape == (10,)
    assert np.all(np.isfinite(pred.mean)) and np.all(pred.var > 0)
    assert mtgp.metrics.mse(truth(grid[20:]), pred.mean) < 4.0


def test_gpfda_needs_fit_and_1d():
    with pytest.raises(mtgp.NotFittedError):
        GPFDA().mean([1.0])
    df = pd.DataFrame({"ID": ["a"] * 3, "Input_1": [0, 1, 2.0], "Input_2": [0, 1, 2.0], "Output": [1, 2, 3.0]})
    with pytest.raises(mtgp.DataError):
        GPFDA().fit(df)


def test_table1_quick(tmp_path):
    sim = _load("magma_simulation")
    df = sim.table1(quick=True, out=tmp_path, n_obs_list=(20,))
    for f in ("magma_table1.md", "magma_fig4.png", "magma_table1_runs.csv"):
        assert (tmp_path / f).stat().st_size > 0
    assert set(df.method) == {"GP", "GPFDA", "Magma"}
    assert np.all(np.isfinite(df.MSE)) and np.all(df.MSE >= 0)
    assert df.CIC95.between(0, 100).all()
    mg = df[df.method == "Magma"]
    assert np.all(np.isfinite(mg.mu0_MSE)) and mg.mu0_CIC95.between(0, 100).all()
    page = (tmp_path / "magma_table1.md").read_text()
    assert "Quick mode" in page and "18.7" in page  # paper value beside ours


@pytest.mark.slow
def test_table2_and_fig3_quick(tmp_path):
    sim = _load("magma_simulation")
    d2 = sim.table2(quick=True, out=tmp_path)
    assert len(d2) == 6 and np.all(np.isfinite(d2.MSE))
    d3 = sim.fig3(quick=True, out=tmp_path)
    assert set(d3.M) == {5, 10} and np.all(np.isfinite(d3.MSE))
    for f in ("magma_table2.md", "magma_fig3.md", "magma_fig3.png"):
        assert (tmp_path / f).stat().st_size > 0


@pytest.mark.slow
def test_weight_quick(tmp_path):
    real = _load("magma_real")
    res, infos = real.run("weight", quick=True, out=tmp_path)
    for f in ("magma_weight.md", "magma_weight_fig5.png", "magma_weight_runs.csv"):
        assert (tmp_path / f).stat().st_size > 0
    assert len(res) == 10 and set(res.group) == {"female", "male"}
    for c in ("GP_MSE", "Magma_MSE"):
        assert np.all(np.isfinite(res[c])) and np.all(res[c] >= 0)
    assert res.Magma_CIC95.between(0, 100).all()


@pytest.mark.slow
def test_swimmers_quick(tmp_path):
    real = _load("magma_real")
    res, infos = real.run("swimmers", quick=True, out=tmp_path)
    assert (tmp_path / "magma_swimmers_fig5.png").stat().st_size > 0
    assert np.all(np.isfinite(res.Magma_MSE))
    # split in the paper's 60/40 proportions
    for i in infos:
        tr, te = i["split"]
        assert abs(tr / (tr + te) - 0.6) < 0.01


def test_magmaclust_simulation_scheme():
    sim_mod = _load("magmaclust_simulation")
    sim = sim_mod.simulate_clusters(0, M=10, K=3)
    assert sim["data"].ID.nunique() == 11 and sim["data"].groupby("ID").size().eq(30).all()
    assert sim["curves"].shape == (3, 201) and sim["labels"].shape == (11,)
    assert sim["data"].groupby("ID").Input.apply(tuple).nunique() == 1  # one common grid


@pytest.mark.slow
def test_magmaclust_simulation_one_data_set():
    sim_mod = _load("magmaclust_simulation")
    row = sim_mod.run_dataset(0, M=10, K=3, select=range(3, 4), max_iter=3)
    for m in ("GP", "Magma", "MagmaClust"):
        assert np.isfinite(row[f"{m}_MSE"]) and 0 <= row[f"{m}_CIC95"] <= 100
    assert -1 <= row["MagmaClust_ARI"] <= 1 and row["K_vbic"] == 3


@pytest.mark.slow
def test_magmaclust_benchmarks_quick(tmp_path):
    sim_mod = _load("magmaclust_simulation")
    df = sim_mod.main(["--quick", "--out", str(tmp_path)])
    assert len(df) == 2 and (tmp_path / "magmaclust_simulation_quick.md").stat().st_size > 0
    assert "3.67" in (tmp_path / "magmaclust_simulation_quick.md").read_text()  # authors' value beside ours
    real = _load("magmaclust_real")
    res, info = real.run("weight", [1, 2], quick=True, out=tmp_path)
    assert set(res.K) == {1, 2} and np.all(np.isfinite(res.MSE))
    assert "5.35" in (tmp_path / "magmaclust_weight_quick.md").read_text()
