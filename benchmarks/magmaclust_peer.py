"""mtgp's MagmaClust side by side with the JAX peer on PyPI, ``mimosa-ml``
(issue 12): fit time (cold and warm), ARI of the clustering, prediction MSE
and CIC95, in one run, on the same files.

    python benchmarks/magmaclust_peer.py                      # M = 60 (3 seeds), K = 3
    python benchmarks/magmaclust_peer.py --sizes 60:3,600:1   # and M = 600
    python benchmarks/magmaclust_peer.py --quick              # M = 20, one seed (peer skipped if its venv
                                                              # cannot be made)
    python benchmarks/magmaclust_peer.py --sizes 60:13 --mtgp-tol 1e-5   # and mtgp at a tighter VEM tolerance
    python benchmarks/magmaclust_peer.py --sizes 6000:1 --name magmaclust_peer_M6000   # another page

Writes ``docs/results/magmaclust_peer.md`` (``magmaclust_peer_quick.md`` with
``--quick``) and ``magmaclust_peer_raw.csv`` into ``--out``.

The peer (mimosa-ml 0.5.0a0, the authors' group's JAX library: "multi-task,
multi-cluster Gaussian process regression"; its ``EarlyStoppingModel`` is
MagmaClust's VEM with MagmaClustR's stopping rule) needs Python >= 3.12 and
its own jax, so it runs in its own virtualenv ``benchmarks/.mimosa-venv``
(ignored by git), created on first use by ``magma_peer.ensure_venv`` with
``pip install mimosa-ml==0.5.0a0``. It runs in float64
(``jax_enable_x64`` before its import, as its README recommends).

Data: the JMLR simulation scheme (``magmaclust_simulation.simulate_clusters``,
H_oo, K = 3, N = 30 common inputs) with M training individuals and one new
individual (first 20 points observed, last 10 predicted); each data set is
written once to an ``.npz`` that both libraries read.

Both libraries: K = 3, H_oo (shared mean and individual hyper-parameters;
mimosa: ``ModelConfig(shared_task_hps=True, shared_cluster_hps=True,
cluster_specific_task_hps=False, isotopic_tasks=True)``), zero prior mean, SE
kernels (mimosa: ``VarianceKernel * SEKernel`` + ``WhiteNoiseKernel``), the
same data-driven initial hyper-parameters (``_common.init_values``), k-means
start, at most 25 VEM iterations, relative ELBO tolerance 1e-3. Prediction of
the new individual: mtgp ``MagmaClust.predict`` (cluster probabilities: exact
posterior given q(mu)); mimosa: the steps of its ``TrainTestPipeline.predict``
(the mixture updater on the new individual, then ``ObservationPredictor``,
noise included), on the training grid, which holds the new individual's
inputs (common grid). Both return per-cluster means and variances and the
cluster probabilities; the scores are computed here the same way for both:
MSE of the mixture mean, CIC95 (the authors' weighted per-cluster
definition) and the coverage of the moment-matched mixture interval; ARI of
the MAP clusters of the training individuals.

Processes: each (library, M) block runs in a fresh process, so "cold" is the
first fit of a fresh process, compilation included (mtgp: its persistent
compilation cache pointed at an empty folder); "warm" is the median of the
later fits in the same process (the first data set again, then the others).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_ENV0 = dict(os.environ)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_PACKAGE = "mimosa-ml==0.5.0a0"
DEFAULT_VENV = HERE / ".mimosa-venv"
PEER_CHECK = "import importlib.metadata as m; import mimosa; print(m.version('mimosa-ml'))"
N_OBS, K = 20, 3
PEER_START = "mtgp from mimosa-ml's partition"
Z95 = 1.959963984540054
NOTES = (
    "\n## Notes\n\n"
    "- Stopping rule: both libraries stop when the relative change of the ELBO is below 1e-3 (25 iterations at "
    "most), but on different ELBOs: mimosa-ml |L_new - L_old| / |L_new| on its dense ELBO (jittered C_k^-1; its "
    "first iteration always counts as unconverged), mtgp |L_new - L_old| / |L_old| on the exact collapsed ELBO. "
    "They count different iterations on the same data; the `mtgp tol 1e-05` rows (when run) are mtgp at a 100x "
    "tighter tolerance (more iterations; about the same ARI and MSE: the differences with the peer are not a "
    "matter of stopping early).\n"
    "- Initial clusters: mtgp's default start (`init=\"auto\"`) tries the distinct partitions of hard k-means on "
    "each curve's (min, mean, max) (MagmaClustR; 50 restarts), on the standardised (min, max, mean, sd) (mimosa-ml's "
    "features) and on the curves themselves (the paper code's features on a common grid; 10 restarts each); each is "
    "scored by the collapsed ELBO at the initial hyper-parameters (one E step), and the best is continued (never the "
    "test MSE). mimosa-ml runs "
    "soft k-means on standardised (min, max, mean, sd). Where both end at the same ARI, the MSE differences come "
    "from the fitted hyper-parameters, not the partition: the ELBO table (`--peer-start`) fits mtgp from "
    "mimosa-ml's own final partition.\n"
    "- M = 6000: `magmaclust_peer_M6000.md` (a separate run, `--sizes 6000:1 --name magmaclust_peer_M6000`).\n")


# =========================================================== worker processes
# Runs under either interpreter: numpy at top level, then mtgp or mimosa.

def _init(d):
    y = d["Y"]
    var = max(float(np.var(y)), 1e-3)
    return {"level_var": float(np.mean(y**2)) + 1e-3, "var": var,
            "lengthscale": max((d["X"].max() - d["X"].min()) / 5.0, 1e-2), "noise": 0.05 * var}


def _fits(files):
    """The fits of one worker: the first file twice (cold, then warm), then
    the others; yields (file, data, M, N, initial HPs)."""
    for f in [files[0]] + list(files):
        d = dict(np.load(f))
        M, N = d["X"].shape
        yield f, d, M, N, _init(d)


def _worker_mtgp(files, tol=1e-3, starts=None):
    """mtgp's fits; ``starts``: {file: labels}, each fit started from these
    hard labels (``init_responsibilities``) instead of mtgp's own start."""
    sys.path.insert(0, str(ROOT))
    import warnings

    import pandas as pd

    import mtgp
    from mtgp.kernels import SE

    out = []
    for f, d, M, N, h in _fits(files):
        t, c = time.perf_counter(), time.process_time()
        df = pd.DataFrame({"ID": np.repeat([f"ID{i + 1}" for i in range(M)], N), "Input": d["X"].ravel(),
                           "Output": d["Y"].ravel()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tau0 = None if starts is None else np.eye(K)[np.asarray(starts[f])]
            m = mtgp.MagmaClust(n_clusters=K, mean_kernel=SE(variance=h["level_var"], lengthscale=h["lengthscale"]),
                                individual_kernel=SE(variance=h["var"], lengthscale=h["lengthscale"]),
                                noise=h["noise"], max_iter=25, tol=tol, random_state=0,
                                init_responsibilities=tau0).fit(df)
        fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        p = m.predict(pd.DataFrame({"Input": d["xo"], "Output": d["yo"]}), inputs=d["xt"])
        pred_s = time.perf_counter() - t
        chosen = [t["candidate"] for t in m.fit_info_["init"] if t["chosen"] and t["start"] == 0]
        out.append({"file": f, "fit_s": fit_s, "fit_cpu_s": fit_cpu, "predict_s": pred_s, "n_iter": m.n_iter_,
                    "elbo": m.elbo_, "start": chosen[0], "labels": m.clusters_.to_numpy().tolist(), "tau": p.cluster_probabilities.tolist(),
                    "means": [c.mean.tolist() for c in p.components], "vars": [c.var.tolist() for c in p.components]})
    return out


def mimosa_fit(X, Y, h, n_clusters=K, shared_task_hps=True, n_iter=25):
    """Fit mimosa-ml's ``EarlyStoppingModel`` (VEM, ELBO rule at 1e-3) on
    the M x N arrays X, Y (common grid: X's rows are equal) from the initial
    HPs ``h``; shared mean-process HPs, task HPs shared across tasks or per
    task (``shared_task_hps``). ``n_clusters=1`` is Magma: the mixture is
    fixed to one cluster (no k-means, no responsibilities update). Call
    ``mimosa_import()`` first. Returns a dict of the fitted objects."""
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    from mimosa import (Dataset, Dimensions, EarlyStoppingModel, Mixture, ModelConfig, UnionGrid,
                        build_parameters)
    from mimosa.prediction import ObservationPredictor

    M, N = Y.shape
    cfg = ModelConfig(shared_task_hps=shared_task_hps, shared_cluster_hps=True, cluster_specific_task_hps=False,
                      isotopic_tasks=True)
    train = Dataset(inputs=jnp.asarray(X[:1, :, None]), outputs=jnp.asarray(Y[:, :, None]))
    grid = UnionGrid(train.inputs)
    dims = Dimensions(T=M, K=n_clusters, I=1, C=1, O=1, N=N, G=len(grid.points))
    model = EarlyStoppingModel(jr.PRNGKey(0), n_clusters=n_clusters, cv_threshold=1e-3,
                               predictor=ObservationPredictor())
    one = {} if n_clusters > 1 else {"init_mixture": Mixture(responsibilities=jnp.ones((M, 1))),
                                     "freeze_mixture": True}
    hp, mix, par, elbos = model.fit(train, grid, build_parameters(_mimosa_parameters(h), dims, cfg), n_iter=n_iter,
                                    **one)
    jax.block_until_ready(hp)
    return {"model": model, "grid": grid, "hp": hp, "mix": mix, "par": par, "h": h,
            "n_iter": int(jnp.sum(~jnp.isnan(elbos)))}


def _mimosa_parameters(h):
    from kernax import SEKernel, VarianceKernel, WhiteNoiseKernel, ZeroMean

    from mimosa import Parameters

    return Parameters(cluster_mean=ZeroMean(),
                      cluster_kernel=VarianceKernel(h["level_var"])
                      * SEKernel(length_scale=h.get("mean_lengthscale", h["lengthscale"])),
                      task_kernel=VarianceKernel(h["var"]) * SEKernel(length_scale=h["lengthscale"]),
                      noise_kernel=WhiteNoiseKernel(noise=h["noise"]))


def mimosa_predict(fit, xo, yo, xt, new_task_hps=False, latent=False):
    """Predict one new task observed at (xo, yo) at the inputs xt (points of
    the training grid), as ``TrainTestPipeline.predict`` does (mixture update
    on the new task, then ``ObservationPredictor``). ``new_task_hps``: learn
    the new task's own HPs first (per-task HPs; mimosa has no call for it: its
    fit with the hyper-posterior, mixture and mean-process HPs frozen, i.e.
    its task M step on the new task from the initial HPs). Returns
    (responsibilities (K,), means (K, len(xt)), output variances, latent
    variances (``latent=True``, else None), the parameters used)."""
    import jax.numpy as jnp

    from mimosa import (Dataset, Dimensions, ExactInputMapper, Grid, Mixture, ModelConfig, Parameters,
                        build_parameters)
    from mimosa.prediction import FunctionPredictor

    model, grid, hp, mix, par = (fit[k] for k in ("model", "grid", "hp", "mix", "par"))
    test = Dataset(inputs=jnp.asarray(xo[None, :, None]), outputs=jnp.asarray(yo[None, :, None]))
    tg = Grid(points=grid.points, mappings=ExactInputMapper()(grid.points, test.inputs))
    if new_task_hps:
        cfg = ModelConfig(shared_task_hps=False, shared_cluster_hps=True, cluster_specific_task_hps=False,
                          isotopic_tasks=True)
        dims = Dimensions(T=1, K=1, I=1, C=1, O=1, N=len(xo), G=len(grid.points))
        p1 = build_parameters(_mimosa_parameters(fit["h"]), dims, cfg)
        p1 = Parameters(cluster_mean=par.cluster_mean, cluster_kernel=par.cluster_kernel,
                        task_kernel=p1.task_kernel, noise_kernel=p1.noise_kernel)
        _, _, par, _ = model.fit(test, tg, p1, init_hyperposterior=hp, init_mixture=Mixture(jnp.ones((1, 1))),
                                 freeze_hyperposterior=True, freeze_mixture=True, freeze_cluster_parameters=True,
                                 n_iter=25)
    tmix = model.mixture_updater(test, tg, par.task_kernel + par.noise_kernel, hp, mix)
    pred = model.predictor(test, tg, hp, par)
    lat = FunctionPredictor()(test, tg, hp, par) if latent else None
    pts = np.asarray(grid.points)[:, 0]
    idx = np.array([int(np.argmin(np.abs(pts - x))) for x in xt])
    diag = lambda p: np.asarray(jnp.diagonal(p.covariance, axis1=-2, axis2=-1))[0, :, 0][:, idx]  # noqa: E731
    return (np.asarray(tmix.responsibilities)[0], np.asarray(pred.mean)[0, :, 0][:, idx], diag(pred),
            None if lat is None else diag(lat), par)


def mimosa_import():
    """float64 before mimosa's import (its README)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def _worker_mimosa(files):
    mimosa_import()
    out = []
    for f, d, M, N, h in _fits(files):
        t, c = time.perf_counter(), time.process_time()
        fit = mimosa_fit(d["X"], d["Y"], h)
        fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        tau, means, var, _, _ = mimosa_predict(fit, d["xo"], d["yo"], d["xt"])
        pred_s = time.perf_counter() - t
        out.append({"file": f, "fit_s": fit_s, "fit_cpu_s": fit_cpu, "predict_s": pred_s, "n_iter": fit["n_iter"],
                    "labels": np.asarray(fit["mix"].assignments).astype(int).tolist(),
                    "tau": tau.tolist(), "means": means.tolist(), "vars": var.tolist()})
    return out


def worker(argv):
    lib, out_json, files = argv[0], argv[1], argv[2:]
    if lib.startswith("mtgp="):  # "mtgp=LABELS.json": from these partitions
        res = _worker_mtgp(files, starts=json.loads(Path(lib[5:]).read_text()))
    elif lib.startswith("mtgp"):  # "mtgp" or "mtgp:TOL"
        res = _worker_mtgp(files, *(float(v) for v in lib.split(":")[1:]))
    else:
        res = _worker_mimosa(files)
    import platform

    import jax

    Path(out_json).write_text(json.dumps({"runs": res, "python": platform.python_version(),
                                          "jax": jax.__version__}))


# ================================================================ main process
def make_data(M, seed, folder):
    import magmaclust_simulation as S

    sim = S.simulate_clusters(seed, M=M, K=K)
    df = sim["data"]
    # rows are in ID order, the same number per individual (one groupby, not M + 1 scans)
    g = df.groupby("ID", sort=False)
    X = np.stack([v.to_numpy() for _, v in g.Input])
    Y = np.stack([v.to_numpy() for _, v in g.Output])
    assert list(g.groups) == [f"ID{i + 1}" for i in range(M + 1)]
    f = Path(folder) / f"M{M}_seed{seed}.npz"
    np.savez(f, X=X[:M], Y=Y[:M], xo=X[M, :N_OBS], yo=Y[M, :N_OBS], xt=X[M, N_OBS:], yt=Y[M, N_OBS:],
             labels=sim["labels"][:M])
    return str(f)


def run_worker(python, lib, files, folder, timeout, env_extra=None):
    out = Path(folder) / f"{lib.split('=')[0]}{'_peerstart' if '=' in lib else ''}_{Path(files[0]).stem}.json"
    env = dict(_ENV0, **(env_extra or {}))
    if lib.startswith("mtgp"):
        env["PYTHONPATH"] = str(ROOT)
    t = time.perf_counter()
    r = subprocess.run([python, str(Path(__file__).resolve()), "_worker", lib, str(out)] + list(files), env=env,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{lib} worker failed:\n{r.stderr[-3000:]}")
    res = json.loads(out.read_text())
    res["process_s"] = time.perf_counter() - t
    return res


def scores(run):
    from sklearn.metrics import adjusted_rand_score

    d = dict(np.load(run["file"]))
    y = d["yt"]
    tau, mu, var = np.asarray(run["tau"]), np.asarray(run["means"]), np.asarray(run["vars"])
    mean = tau @ mu
    mix_var = tau @ (var + mu**2) - mean**2
    wcic = 100.0 * float(tau @ np.mean(np.abs(y[None] - mu) <= Z95 * np.sqrt(var), axis=1))
    mm = 100.0 * float(np.mean(np.abs(y - mean) <= Z95 * np.sqrt(mix_var)))
    return {"MSE": float(np.mean((y - mean) ** 2)), "CIC95": wcic, "CIC95_moment": mm,
            "ARI": float(adjusted_rand_score(d["labels"], run["labels"]))}


def per_data_set(df):
    """Markdown: ARI, MSE, VEM iterations and warm CPU of each library on
    each data set (the fits after the cold one), and how often each mtgp
    row's MSE is at most the peer's."""
    import _common as C

    acc = df[df.fit > 0]
    libs = sorted(acc.library.unique(), key=lambda v: (v != "mtgp", v))
    rows, wins = [], {}
    for (M, f), g in acc.groupby(["M", "file"], sort=True):
        by = {r.library: r for r in g.itertuples()}
        row = [M, f]
        for lib in libs:
            r = by.get(lib)
            row.append("" if r is None else f"{r.ARI:.2f} / {r.MSE:.3g} / {r.n_iter} / {r.fit_cpu_s:.2f}")
            if r is not None and lib != "mimosa-ml" and "mimosa-ml" in by:
                w = wins.setdefault((M, lib), [0, 0])
                w[0] += int(r.MSE <= by["mimosa-ml"].MSE * (1 + 1e-9))
                w[1] += 1
        rows.append(row)
    out = C.md_table(["M", "data set"] + [f"{lib}: ARI / MSE / iter. / CPU s" for lib in libs], rows) + "\n"
    for (M, lib), (n, tot) in sorted(wins.items()):
        out += f"\n- M = {M}, {lib}: MSE at most mimosa-ml's on {n} of {tot} data sets."
    return out + "\n"


def elbo_table(df):
    """Markdown: per data set, mtgp's final ELBO and chosen start, and (with
    --peer-start) the ELBO mtgp reaches from mimosa-ml's final partition, with
    both MSEs: where the peer predicts better, is it a better optimum of the
    same objective?"""
    import _common as C

    acc = df[(df.fit > 0) & df.library.isin(["mtgp", PEER_START])]
    if PEER_START not in set(acc.library):
        return ""
    rows, better = [], 0
    for (M, f), g in acc.groupby(["M", "file"], sort=True):
        by = {r.library: r for r in g.itertuples()}
        a, b = by["mtgp"], by[PEER_START]
        peer = df[(df.fit > 0) & (df.library == "mimosa-ml") & (df.M == M) & (df.file == f)]
        better += int(b.elbo > a.elbo + 1e-6 * abs(a.elbo))
        rows.append([M, f, a.start, f"{a.elbo:.3f}", f"{b.elbo:.3f}", f"{b.elbo - a.elbo:+.3f}",
                     f"{a.ARI:.2f} / {b.ARI:.2f}", f"{a.MSE:.3g} / {b.MSE:.3g}",
                     f"{peer.MSE.iloc[0]:.3g}" if len(peer) else ""])
    return ("\n## ELBO: mtgp's start against mimosa-ml's partition\n\n"
            "mtgp's exact ELBO after its fit (start chosen by ELBO among the candidates), and after a fit started "
            "from mimosa-ml's final partition (same HP initialisation and VEM; `--peer-start`).\n\n"
            + C.md_table(["M", "data set", "mtgp start", "ELBO mtgp", "ELBO from peer's partition", "difference",
                          "ARI mtgp / from peer's", "MSE mtgp / from peer's", "MSE mimosa-ml"], rows)
            + f"\n\n- Data sets where mimosa-ml's partition leads mtgp to a higher ELBO (by more than 1e-6 "
            f"relative): {better} of {len(rows)}.\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        return worker(argv[1:])
    sys.path.insert(0, str(HERE))
    import magma_peer as MP  # the shared venv helper

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="60:3", help="M:seeds,... (default 60:3)")
    p.add_argument("--quick", action="store_true", help="M = 20, one seed; skips the peer if its venv cannot be made")
    p.add_argument("--peer-python", default=None, help="an interpreter that has mimosa-ml (default: the venv)")
    p.add_argument("--timeout", type=int, default=3600, help="per worker process (s)")
    p.add_argument("--mtgp-tol", type=float, nargs="*", default=[],
                   help="extra mtgp rows with these VEM tolerances (the peer's rule at a tighter threshold)")
    p.add_argument("--peer-start", action="store_true",
                   help="also fit mtgp from mimosa-ml's final partition (its ELBO: is mtgp's own start worse?)")
    p.add_argument("--out", default=None)
    p.add_argument("--name", default=None, help="page name (default magmaclust_peer[_quick])")
    a = p.parse_args(argv)
    import _common as C
    import pandas as pd

    sizes = [(20, 1)] if a.quick else [tuple(int(v) for v in s.split(":")) for s in a.sizes.split(",")]
    if a.peer_python:
        py_peer, version, note = MP.check_python(a.peer_python, PEER_CHECK)
    else:
        py_peer, version, note = MP.ensure_venv(DEFAULT_VENV, PEER_PACKAGE, PEER_CHECK)
    if py_peer is None and not a.quick:
        raise SystemExit(f"the peer cannot run: {note}")
    t0 = time.perf_counter()
    rows, versions = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for M, n_seeds in sizes:
            files = [make_data(M, s, folder) for s in range(n_seeds)]
            libs = [("mtgp", sys.executable)] + [(f"mtgp tol {t:g}", sys.executable) for t in a.mtgp_tol]
            libs += [("mimosa-ml", py_peer)] if py_peer else []
            for lib, py in libs:
                mt = lib.startswith("mtgp")
                extra = {"MTGP_CACHE_DIR": tempfile.mkdtemp(dir=folder)} if mt else {}
                print(f"  M = {M}: {lib} ...", flush=True)
                wlib = ("mtgp" + (":" + lib.split()[-1] if lib != "mtgp" else "")) if mt else "mimosa"
                res = run_worker(py, wlib, files, folder, a.timeout, extra)
                versions[lib] = f"Python {res['python']}, jax {res['jax']}"
                for j, run in enumerate(res["runs"]):
                    rows.append({"library": lib, "M": M, "file": Path(run["file"]).stem, "fit": j,
                                 "cold": j == 0, "fit_s": run["fit_s"], "fit_cpu_s": run["fit_cpu_s"], "predict_s": run["predict_s"],
                                 "n_iter": run["n_iter"], "elbo": run.get("elbo", np.nan), "start": run.get("start", ""),
                                 **scores(run)})
                if lib == "mimosa-ml" and a.peer_start:  # mtgp from the peer's final partitions
                    lab = Path(folder) / f"peer_labels_M{M}.json"
                    lab.write_text(json.dumps({r["file"]: r["labels"] for r in res["runs"]}))
                    print(f"  M = {M}: mtgp from mimosa-ml's partition ...", flush=True)
                    pres = run_worker(sys.executable, f"mtgp={lab}", files, folder, a.timeout,
                                      {"MTGP_CACHE_DIR": tempfile.mkdtemp(dir=folder)})
                    for j, run in enumerate(pres["runs"]):
                        rows.append({"library": PEER_START, "M": M, "file": Path(run["file"]).stem, "fit": j,
                                     "cold": j == 0, "fit_s": run["fit_s"], "fit_cpu_s": run["fit_cpu_s"],
                                     "predict_s": run["predict_s"], "n_iter": run["n_iter"], "elbo": run["elbo"],
                                     "start": "mimosa-ml's partition", **scores(run)})
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows)
    out = C.out_dir(a.out)
    name = a.name or ("magmaclust_peer_quick" if a.quick else "magmaclust_peer")
    df.to_csv(out / f"{name}_raw.csv", index=False)
    trows = []
    for (M, lib), g in df.groupby(["M", "library"], sort=True):
        acc = g[g.fit > 0]  # every data set once (fit 0 is the first data set, cold)
        warm = g[~g.cold]
        cold = g[g.cold].iloc[0]
        trows.append([M, lib, len(acc), f"{cold.fit_s:.1f} ({cold.fit_cpu_s:.1f})",
                      f"{warm.fit_s.median():.2f} ({warm.fit_cpu_s.median():.2f})",
                      f"{warm.predict_s.median():.3f}", f"{acc.n_iter.median():.0f}", C.mean_sd(acc.ARI, 2),
                      C.mean_sd(acc.MSE, 2), C.mean_sd(acc.CIC95), C.mean_sd(acc.CIC95_moment)])
    tab = C.md_table(["M", "library", "data sets", "fit cold: wall (CPU) s", "fit warm: wall (CPU) s, median", "predict warm (s)",
                      "VEM iter.", "ARI", "MSE", "CIC95 % (weighted)", "CIC95 % (moment-matched)"], trows)
    print(tab)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    peer = (f"mimosa-ml {version} ({py_peer}; {versions.get('mimosa-ml', '')})" if py_peer
            else f"**peer not run**: {note}")
    extra = (f"mtgp: this checkout ({versions.get('mtgp', '')}). Peer: {peer}. Wall time {wall:.0f} s; load "
             f"average at the end {load}: **a 2-core machine shared with several other jobs (load far above 2), so "
             "every time here is inflated and noisy**; the ratio between the libraries, measured in the same "
             "conditions one after the other, is the indication. Per-fit numbers: "
             f"`{name}_raw.csv`.")
    page = C.page_header("MagmaClust: mtgp vs mimosa-ml", C.command_line(), a.quick, extra)
    page += "\n## Same files, same settings (K = 3, H_oo)\n\n" + tab + "\n"
    page += ("\nARI, MSE and CIC95: mean (sd) over the data sets; cold: the first fit of a fresh process, "
             "compilation included; warm: the median of the later fits in the same process. CPU: the process's CPU "
             "time during the fit (all its threads; less sensitive to the other jobs than the wall time).\n")
    page += "\n## Per data set\n\n" + per_data_set(df) + elbo_table(df)
    page += NOTES
    (out / f"{name}.md").write_text(page)
    return df


if __name__ == "__main__":
    main()
