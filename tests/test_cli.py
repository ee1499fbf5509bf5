"""The ``mtgp`` command line on a user's tables: fit / predict / info, file
formats, the error messages and the exit codes a script relies on. Most
calls go through ``main(argv)`` in this process (which leaves the process's
settings alone); two run the real command in a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import mtgp
from mtgp.cli import EXIT_DATA, EXIT_MODEL_FILE, EXIT_OK, EXIT_USAGE, main
from mtgp.multioutput import held_out_entry_coverage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A user's table (own column names, an extra column), compressed; the
    first visits of two new children; a one-child table without ID."""
    d = tmp_path_factory.mktemp("cli")
    w = mtgp.datasets.load_weight()
    ids = w.ID.unique()
    w = w.rename(columns={"ID": "child", "Input": "age", "Output": "weight"})
    train = w[w.child.isin(ids[:12])]
    train.to_csv(d / "train.csv.gz", index=False)
    new = w[w.child.isin(ids[12:14]) & (w.age <= 24)]
    new.to_csv(d / "new.csv", index=False)
    one = new[new.child == ids[12]].drop(columns=["child"])
    one.to_csv(d / "one.tsv", sep="\t", index=False)
    return {"dir": d, "train": str(d / "train.csv.gz"), "new": str(d / "new.csv"),
            "one": str(d / "one.tsv"), "new_frame": new, "ids": ids}


@pytest.fixture(scope="module")
def magma_file(files):
    out = str(files["dir"] / "magma.npz")
    rc = main(["fit", files["train"], "--id", "child", "--input", "age", "--output", "weight",
               "--max-iter", "3", "-q", "-o", out])
    assert rc == EXIT_OK
    return out


def test_help_lists_commands_and_exit_codes(capsys):
    assert main(["--help"]) == EXIT_OK
    text = capsys.readouterr().out
    for word in ("fit", "predict", "info", "demo", "exit codes", "3 data error", "4 model-file"):
        assert word in text
    assert main(["fit", "--help"]) == EXIT_OK
    assert "--n-clusters" in capsys.readouterr().out


def test_usage_errors_exit_2(files, magma_file, capsys):
    assert main(["fit"]) == EXIT_USAGE  # DATA missing
    assert main(["fit", files["train"], "--model", "gpflow"]) == EXIT_USAGE
    assert main(["predict", magma_file, "--inputs", "0:10"]) == EXIT_USAGE
    assert "--inputs '0:10'" in capsys.readouterr().err
    assert main(["fit", files["train"], "--model", "cool", "--output", "weight"]) == EXIT_USAGE


def test_fit_writes_a_model_with_the_users_column_names(files, magma_file, capsys):
    model = mtgp.Magma.load(magma_file)
    assert model.input_columns_ == ["age"] and len(model.ids_) == 12 and model.n_iter_ <= 3
    assert main(["info", magma_file, "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "Magma" and info["n_individuals"] == 12
    assert info["input_columns"] == ["age"]
    assert info["command_line"]["id"] == "child" and info["command_line"]["outputs"] == ["weight"]
    assert info["log_likelihood"] == pytest.approx(model.log_likelihood_)


def test_predict_table_matches_the_python_api(files, magma_file, capsys, tmp_path):
    out = tmp_path / "pred.csv"
    png = tmp_path / "pred.png"
    rc = main(["predict", magma_file, files["new"], "--inputs", "0:72:6", "-o", str(out), "--plot", str(png)])
    assert rc == EXIT_OK
    table = pd.read_csv(out, dtype={"child": str})
    assert list(table.columns) == ["child", "age", "Mean", "Var", "Lower", "Upper"]
    assert len(table) == 2 * 13 and table.age.iloc[-1] == 72.0  # STOP included
    model = mtgp.Magma.load(magma_file)
    new = files["new_frame"]
    first = new[new.child == files["ids"][12]]
    ref = model.predict(first[["age", "weight"]].rename(columns={"weight": "Output"}),
                        inputs=np.arange(0, 73, 6.0))
    got = table[table.child == files["ids"][12]]
    np.testing.assert_allclose(got.Mean, ref.mean, rtol=1e-8)
    np.testing.assert_allclose(got.Lower, ref.interval(0.95)[0], rtol=1e-8)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 600 and len(np.unique(np.asarray(im.convert("L")))) > 20  # drawn, not blank


def test_predict_many_individuals_is_one_batched_call(files, magma_file, capsys, monkeypatch):
    """Issue 15: Magma predictions of several new individuals go through
    Magma.predict_individuals (no per-individual Magma.predict)."""
    calls = []
    batched = mtgp.Magma.predict_individuals
    monkeypatch.setattr(mtgp.Magma, "predict", lambda *a, **k: pytest.fail("per-individual predict called"))
    monkeypatch.setattr(mtgp.Magma, "predict_individuals", lambda self, *a, **k: calls.append(1) or
                        batched(self, *a, **k))
    assert main(["predict", magma_file, files["new"], "--inputs", "0:12:6"]) == EXIT_OK
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), dtype={"child": str})
    assert calls == [1] and table.child.nunique() == 2 and len(table) == 2 * 3


def test_predict_one_individual_without_id_and_gif(files, magma_file, capsys, tmp_path):
    gif = tmp_path / "p.gif"
    rc = main(["predict", magma_file, files["one"], "--inputs", "0,12,24,36", "--gif", str(gif)])
    assert rc == EXIT_OK
    text = capsys.readouterr().out
    table = pd.read_csv(pd.io.common.StringIO(text))
    assert list(table.columns) == ["age", "Mean", "Var", "Lower", "Upper"] and len(table) == 4
    from PIL import Image

    n_points = len(pd.read_csv(files["one"], sep="\t"))
    with Image.open(gif) as im:
        assert im.n_frames == n_points + 1


def test_type2_prediction_without_new_data(magma_file, capsys):
    assert main(["predict", magma_file, "--inputs", "0:10:5"]) == EXIT_OK
    table = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    ref = mtgp.Magma.load(magma_file).predict(inputs=[0.0, 5.0, 10.0])
    np.testing.assert_allclose(table.Mean, ref.mean, rtol=1e-8)


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d.drop(columns=["weight"]), "no column 'weight'"),
    (lambda d: d.assign(age=d.age.astype(object).where(d.index != d.index[4], "six")),
     "'six' in data row 5"),
    (lambda d: d.assign(weight=d.weight.where(d.index != d.index[2])), "column 'weight' is empty in data row 3"),
])
def test_data_errors_name_the_column_and_value(files, tmp_path, capsys, edit, needle):
    bad = tmp_path / "bad.csv"
    edit(pd.read_csv(files["train"])).to_csv(bad, index=False)
    rc = main(["fit", str(bad), "--id", "child", "--input", "age", "--output", "weight", "-q"])
    assert rc == EXIT_DATA
    err = capsys.readouterr().err
    assert needle in err and err.startswith("mtgp fit: error:") and "Traceback" not in err


def test_dropna_and_duplicates(files, tmp_path, capsys):
    d = pd.read_csv(files["train"])
    d.loc[d.index[2], "weight"] = np.nan
    p = tmp_path / "na.csv"
    d.to_csv(p, index=False)
    rc = main(["fit", str(p), "--id", "child", "--input", "age", "--output", "weight", "--dropna",
               "--max-iter", "1", "-q", "-o", str(tmp_path / "m")])
    assert rc == EXIT_OK and "dropped 1 row(s)" in capsys.readouterr().err
    assert (tmp_path / "m.npz").exists()
    dup = pd.concat([d.dropna(), d.dropna().iloc[:1]])
    dup.to_csv(p, index=False)
    rc = main(["fit", str(p), "--id", "child", "--input", "age", "--output", "weight", "-q"])
    assert rc == EXIT_DATA and "several rows at the same input" in capsys.readouterr().err


def test_missing_files_and_bad_model_files(files, tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.csv")]) == EXIT_DATA
    assert "nope.csv: no such file" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nope.npz")]) == EXIT_MODEL_FILE
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    assert main(["predict", str(junk), "--inputs", "1,2"]) == EXIT_MODEL_FILE
    assert "not an .npz archive" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    assert main(["info", str(tmp_path / "other.npz")]) == EXIT_MODEL_FILE


def test_parquet(files, tmp_path, capsys):
    p = tmp_path / "train.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        p.write_bytes(b"PAR1")
        assert main(["fit", str(p), "--id", "child", "--input", "age", "--output", "weight"]) == EXIT_DATA
        assert "needs pyarrow, which is not installed" in capsys.readouterr().err
        return
    pd.read_csv(files["train"]).to_parquet(p)
    assert main(["fit", str(p), "--id", "child", "--input", "age", "--output", "weight", "--max-iter", "1",
                 "-q", "-o", str(tmp_path / "m.npz")]) == EXIT_OK


def test_magmaclust_predictions_carry_cluster_probabilities(files, tmp_path, capsys):
    out = str(tmp_path / "mc.npz")
    assert main(["fit", files["train"], "--id", "child", "--input", "age", "--output", "weight",
                 "--model", "magmaclust", "--n-clusters", "2", "--max-iter", "2", "-q", "-o", out]) == EXIT_OK
    assert "cluster sizes" in capsys.readouterr().err
    pred = tmp_path / "p.csv"
    # issue 15: one batched MagmaClust.predict_individuals call, no per-individual predict
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mtgp.MagmaClust, "predict", lambda *a, **k: pytest.fail("per-individual predict called"))
        assert main(["predict", out, files["new"], "--inputs", "0:24:12", "-o", str(pred)]) == EXIT_OK
    t = pd.read_csv(pred)
    assert {"P_cluster_0", "P_cluster_1"} <= set(t.columns) and len(t) == 6
    np.testing.assert_allclose(t.P_cluster_0 + t.P_cluster_1, 1.0)
    model, new = mtgp.MagmaClust.load(out), files["new_frame"]
    for k, (_, g) in enumerate(new.groupby("child", sort=False)):  # the same numbers as predict
        ref = model.predict(g[["age", "weight"]].rename(columns={"weight": "Output"}),
                            inputs=[0.0, 12.0, 24.0])
        np.testing.assert_allclose(t.Mean[3 * k:3 * k + 3], ref.mean, rtol=1e-8)
        np.testing.assert_allclose(t.Upper[3 * k:3 * k + 3], ref.interval(0.95)[1], rtol=1e-8)
        np.testing.assert_allclose(t.P_cluster_1[3 * k], ref.cluster_probabilities[1], rtol=1e-8, atol=1e-12)
    assert main(["info", out]) == EXIT_OK
    assert "mixture_weights" in capsys.readouterr().out


def test_cool_on_a_wide_table(tmp_path, capsys):
    X, Y = mtgp.datasets.load_mtr("slump")
    data = X[["Slag", "Water"]].join(Y.iloc[:, :2]).iloc[:40]
    p = tmp_path / "wide.csv.bz2"
    data.to_csv(p, index=False)
    out = str(tmp_path / "cool.npz")
    rc = main(["fit", str(p), "--model", "cool", "--input", "Slag,Water", "--output",
               ",".join(Y.columns[:2]), "--max-iter", "20", "-o", out])
    assert rc == EXIT_OK
    pred = tmp_path / "pc.csv"
    assert main(["predict", out, str(p), "-o", str(pred)]) == EXIT_OK
    t = pd.read_csv(pred)
    name = Y.columns[0]
    assert len(t) == 40 and {name, f"{name}_std", f"{name}_lower", f"{name}_upper"} <= set(t.columns)
    ref = mtgp.CoolMTGP.load(out).predict(data[["Slag", "Water"]].to_numpy())
    np.testing.assert_allclose(t[name], ref.mean[:, 0], rtol=1e-8)
    assert main(["predict", out, "--inputs", "0:10:1"]) == EXIT_USAGE  # 2 inputs: a table is needed


def test_info_reports_the_noise_held_at_the_floor(tmp_path, capsys):
    """An output the others determine almost exactly: ``fit`` warns (a
    ``mtgp fit: warning:`` line) and ``info`` reports the fit's collapse diagnostics, as
    ``fit_info_`` has them."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 2))
    a, b = np.sin(x[:, 0]) + 0.3 * rng.normal(size=40), np.cos(x[:, 1]) + 0.3 * rng.normal(size=40)
    data = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "a": a, "b": b, "c": a - b + 1e-7 * rng.normal(size=40)})
    data.to_csv(tmp_path / "d.csv", index=False)
    out = str(tmp_path / "m.npz")
    assert main(["fit", str(tmp_path / "d.csv"), "--model", "cool", "--input", "x1,x2", "--output", "a,b,c",
                 "--max-iter", "100", "-q", "-o", out]) == EXIT_OK
    err = capsys.readouterr().err  # the command line's own warning line, not Python's file:line form
    assert "mtgp fit: warning: CoolMTGP: the fitted noise is collapsing: the noise of ['c'] is held" in err
    assert "cli.py" not in err
    assert main(["info", out, "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    fitted = mtgp.CoolMTGP.load(out).fit_info_
    assert info["noise_floor_outputs"] == fitted["noise_floor_outputs"] == ["c"]
    assert info["noise_min_eigenvalue"] == pytest.approx(fitted["noise_min_eigenvalue"]) and info["stop_reason"]
    assert main(["info", out]) == EXIT_OK
    assert "noise_floor_outputs: ['c']" in capsys.readouterr().out


def test_cool_missing_outputs_and_conditional_prediction(tmp_path, capsys, magma_file):
    """Empty output cells are missing outputs (the model's exact observed-
    entry fit, the same numbers as the Python API); an empty input cell is
    still an error naming it. ``predict --condition`` conditions each row of
    NEW on the outputs it holds, as ``predict(Y_observed=...)``."""
    X, Y = mtgp.datasets.load_mtr("slump")
    names = list(Y.columns[:3])
    data = X[["Slag", "Water"]].join(Y[names]).iloc[:40].reset_index(drop=True)
    data.loc[[2, 5, 9], names[1]] = np.nan
    data.loc[[5, 11], names[2]] = np.nan
    p = tmp_path / "partial.csv"
    data.to_csv(p, index=False)
    out = str(tmp_path / "cool.npz")
    argv = ["fit", str(p), "--model", "cool", "--input", "Slag,Water", "--output", ",".join(names),
            "--max-iter", "10", "-q", "-o", out]
    assert main(argv) == EXIT_OK
    err = capsys.readouterr().err
    assert "5 output value(s) missing in 4 row(s)" in err and f"{names[1]} 3, {names[2]} 2" in err
    model = mtgp.CoolMTGP.load(out)
    ref = mtgp.CoolMTGP(kernel=model.kernel, normalize_y=True, max_iter=10).fit(data[["Slag", "Water"]],
                                                                                 data[names])
    assert model.log_marginal_likelihood_ == pytest.approx(ref.log_marginal_likelihood_, rel=1e-10)
    assert main(["info", out, "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["n_missing_outputs"] == 5
    # an empty input cell: refused (or dropped with --dropna), output cells kept
    bad = data.copy()
    bad.loc[7, "Water"] = np.nan
    bad.to_csv(tmp_path / "bad.csv", index=False)
    argv[1], argv[-1] = str(tmp_path / "bad.csv"), str(tmp_path / "bad.npz")
    assert main(argv) == EXIT_DATA
    assert "column 'Water' is empty in data row 8" in capsys.readouterr().err
    assert main(argv + ["--dropna"]) == EXIT_OK
    assert "dropped 1 row(s)" in capsys.readouterr().err
    # conditional prediction: NEW holds two of the three outputs, partly
    new = data.iloc[:4][["Slag", "Water"] + names[:2]].copy()
    new.loc[0, names[:2]] = np.nan  # nothing measured: the plain predictive
    new.loc[1, names[1]] = np.nan
    new.to_csv(tmp_path / "given.csv", index=False)
    for latent in (False, True):
        res = tmp_path / "pc.csv"
        extra = ["--latent"] if latent else []
        assert main(["predict", out, str(tmp_path / "given.csv"), "--condition", "-o", str(res)] + extra) == EXIT_OK
        assert "conditioned on its measured outputs (4 value(s)" in capsys.readouterr().err
        t = pd.read_csv(res)
        Yo = new[names[:2]].reindex(columns=names)
        r = model.predict(new[["Slag", "Water"]].to_numpy(), Y_observed=Yo, include_noise=not latent)
        for k, name in enumerate(names):
            np.testing.assert_allclose(t[name], r.mean[:, k], rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(t[f"{name}_std"], r.std[:, k], rtol=1e-8, atol=1e-12)
        if not latent:  # a measured value comes back as measured
            assert t[f"{names[0]}_std"].iloc[1] == 0 and t[names[0]].iloc[1] == pytest.approx(new[names[0]].iloc[1])
    plain = model.predict(new[["Slag", "Water"]].to_numpy(), include_noise=True)
    assert t[f"{names[2]}_std"].iloc[0] > 0
    assert not np.allclose(plain.mean[1:], r.mean[1:])  # the measured outputs moved the others
    # refused: no output column in NEW, no NEW, a Magma model
    data[["Slag", "Water"]].to_csv(tmp_path / "x_only.csv", index=False)
    assert main(["predict", out, str(tmp_path / "x_only.csv"), "--condition"]) == EXIT_DATA
    assert "has none of the output columns" in capsys.readouterr().err
    assert main(["predict", out, "--inputs", str(tmp_path / "x_only.csv"), "--condition"]) == EXIT_USAGE
    assert main(["predict", magma_file, "--condition"]) == EXIT_USAGE
    # the training table's missing cells, from every measured value
    res = tmp_path / "filled.csv"
    assert main(["predict", out, "--fill-missing", "-o", str(res)]) == EXIT_OK
    assert "5 missing output value(s) of the training table predicted" in capsys.readouterr().err
    t, filled = pd.read_csv(res), model.predict_missing()
    np.testing.assert_allclose(t[["Slag", "Water"]], data[["Slag", "Water"]], rtol=1e-12)
    miss = data[names].isna().to_numpy()
    for k, name in enumerate(names):
        np.testing.assert_allclose(t[name], filled.mean[:, k], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(t[f"{name}_std"], filled.std[:, k], rtol=1e-8, atol=1e-12)
        measured = ~miss[:, k]
        np.testing.assert_allclose(t[name][measured], data[name][measured], rtol=1e-12)
        assert (t[f"{name}_std"][measured] == 0).all() and (t[f"{name}_std"][~measured] > 0).all()
    for extra in (["--inputs", str(tmp_path / "x_only.csv")], [str(tmp_path / "given.csv")], ["--latent"]):
        assert main(["predict", out] + extra + ["--fill-missing"]) == EXIT_USAGE
        assert "--fill-missing predicts the training table's missing cells" in capsys.readouterr().err
    assert main(["predict", magma_file, "--fill-missing"]) == EXIT_USAGE
    # --check: the held-out check of those intervals first, then the same table
    res2 = tmp_path / "filled_checked.csv"
    assert main(["predict", out, "--fill-missing", "--check", "0.2", "-o", str(res2)]) == EXIT_OK
    err = capsys.readouterr().err
    check = held_out_entry_coverage(model, data[["Slag", "Water"]], data[names], fraction=0.2,
                                    random_state=0)["table"]
    assert "held-out check: 0.2 of the measured cells held out" in err
    assert f"{check.loc['all', 'coverage']:.1f}%" in err and str(int(check.loc["all", "held_out"])) in err
    assert ("may be too narrow" in err) != ("is in the range of honest" in err)
    pd.testing.assert_frame_equal(pd.read_csv(res2), t)
    for bad in (["--check", "0.2"], ["--fill-missing", "--check", "1.5"]):
        assert main(["predict", out] + bad) == EXIT_USAGE
        assert "--check" in capsys.readouterr().err


def test_real_process_exit_codes(files, tmp_path):
    """The installed command's behaviour: a subprocess (exit status, stderr,
    stdout kept for data)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MTGP_CACHE_DIR=str(tmp_path / "cache"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "mtgp.cli", *a], capture_output=True, text=True,
                                    env=env, timeout=300)
    r = run("fit", files["train"], "--id", "kid")
    assert r.returncode == EXIT_DATA and "no column 'kid'" in r.stderr and r.stdout == ""
    r = run("--help")
    assert r.returncode == EXIT_OK and "predict" in r.stdout
    r = run("predict", "--no-such-option")
    assert r.returncode == EXIT_USAGE


def test_no_subcommand_is_the_demo(capsys):
    from mtgp.cli import _normalise_argv

    assert _normalise_argv([]) == ["demo"]  # `mtgp` alone: the README's first command
    assert _normalise_argv(["--quick", "--plot", "x.png"]) == ["demo", "--quick", "--plot", "x.png"]
    assert _normalise_argv(["--help"]) == ["--help"] and _normalise_argv(["fit", "a.csv"])[0] == "fit"
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"mtgp {mtgp.__version__}"
