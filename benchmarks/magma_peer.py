"""mtgp's Magma side by side with the JAX peers on PyPI, ``magma-py-minimal``
(issue 5) and ``mimosa-ml`` (issue 15): fit time (cold and warm, wall and
CPU), prediction MSE and CIC95, in one run, on the same data.

    python benchmarks/magma_peer.py             # M = 20 (5 seeds), 200 (2), 1000 (1); Common and Different HP (M <= 200)
    python benchmarks/magma_peer.py --quick     # M = 20, one seed, Common HP (< 1 min once the peer's venv exists)
    python benchmarks/magma_peer.py --sizes 20:5,200:2 --hp common
    python benchmarks/magma_peer.py --peer-python /path/to/python3.12   # an interpreter that has the peer
    python benchmarks/magma_peer.py --sizes 20:5,1000:2 --different-max-M 1000 --peers mimosa-ml \
        --mimosa-python /path/to/python3.12 --name magma_peer_mimosa   # docs/results/magma_peer_mimosa.md

Prints its table and writes ``docs/results/magma_peer.md`` (``magma_peer_quick.md``
with ``--quick``; ``--name`` for another) into ``--out`` (default ``docs/results``).

Peers (``--peers``, default both): ``magma-py-minimal`` (below) and
``mimosa-ml`` 0.5.0a0, whose Magma is its MagmaClust VEM with one cluster,
run through ``magmaclust_peer.py``'s helpers in that script's virtualenv
``benchmarks/.mimosa-venv`` (or ``--mimosa-python``); how, on the results page.

The peer needs Python >= 3.12 and pins jax ~0.6, so it never enters mtgp's
environment: by default this script creates (or reuses) a virtualenv
``benchmarks/.peer-venv`` with ``python3.12 -m venv`` and ``pip install
magma-py-minimal==0.1.5a0`` (ignored by git). Without ``--quick`` a missing
peer is an error; with ``--quick`` the peer is skipped (no network, no
python3.12) and the page says so.

Data: the paper's simulation (Sec. 6, Table 1 protocol, as in
``magma_simulation.py``): ``mtgp.simulate(M + 1, 30, seed=s)`` (Common-HP
data, common grid of 30 inputs); the first M individuals train; the last one
observes its first 20 points and the last 10 are predicted. Each data set is
written once to an ``.npz`` file that both libraries read. Both start from the
same data-driven hyper-parameters (``_common.init_values``), prior mean 0, SE
kernels, float64, at most 25 EM iterations with relative tolerance 1e-3 (both
libraries' defaults).

Processes: each (library, HP setting, M) block runs in its own fresh Python
process (mtgp: this interpreter; the peer: the venv's), so that "cold" is the
first fit of a fresh process, compilation included. mtgp's persistent
compilation cache (opt-in, ``mtgp.config.enable_compilation_cache``, which
the mtgp processes call) points at an empty temporary folder for that
process; one more mtgp process then fits the first data set once with the
cache it left ("cold, disk cache filled": what a user's second run costs).
The peer has no persistent cache by default. "Warm" is the median of
every later fit in the same process: the same data set fitted a second time,
then the other seeds (same shapes). Fit time includes each library's own data
conversion (mtgp: ``Magma.fit(df)``; the peer: ``load_train_data`` +
``fit``); predict time includes loading the new individual.

Workarounds for the peer (version 0.1.5a0), all applied from this script, in
the peer's process, without editing its files (details on the results page):
1. ``Magma.fit`` hands the mean-kernel M step the hyper-posterior mean and
   covariance without their cluster axis, which that function vmaps over:
   every iteration 0 ends in NaN. ``MagmaClustPy.models.optimise_mean_kernel``
   is wrapped to add the leading axis of size 1 (as ``fit`` already does for
   the task kernel).
2. With ``shared_hp=True`` ``Magma.predict`` uses ``task_kernel_pred``, the
   untrained initial kernel (only Different HP re-learns it): the benchmark
   sets ``task_kernel_pred`` to the trained task kernel before predicting.
3. The peer's predictive covariance leaves out the noise (its
   ``predict_single_task`` adds only ``task_kernel.left``): CIC95 of the
   noisy test outputs uses that covariance plus the peer's learnt noise
   variance; the latent-interval coverage is reported too, for both.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The environment before anything (mtgp) changes it: children get this one, so
# that mtgp's XLA flags set at its import do not leak into the peer's process.
_ENV0 = dict(os.environ)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER_PACKAGE = "magma-py-minimal==0.1.5a0"
PEER_LABEL = {"peer": "magma-py-minimal", "mimosa": "mimosa-ml"}  # worker name -> peer
DEFAULT_VENV = HERE / ".peer-venv"
N_POINTS, N_OBS = 30, 20


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# =========================================================== worker processes
# The worker runs under either interpreter: it imports only numpy, pandas and
# jax at top level, then mtgp or MagmaClustPy.

def _read(path):
    d = np.load(path)
    return {k: d[k] for k in d.files}


def _train_frame(d, id_col, ids):
    import pandas as pd
    M, N = d["X"].shape
    return pd.DataFrame({id_col: np.repeat(ids, N), "Input": d["X"].ravel(), "Output": d["Y"].ravel()})


def _worker_mtgp(files, hp, once):
    import pandas as pd
    import mtgp
    from mtgp.kernels import SE
    if os.environ.get("MTGP_CACHE_DIR"):  # the persistent cache is opt-in (issue 11): opt in as a user would
        if mtgp.config.enable_compilation_cache(os.environ["MTGP_CACHE_DIR"], force=True) is None:
            print("magma_peer: this JAX has no persistent compilation cache; the 'disk cache filled' "
                  "row is a second cold start", file=sys.stderr)
    common = hp == "common"
    out = []
    for k, f in enumerate(files):
        d = _read(f)
        M = d["X"].shape[0]
        df = _train_frame(d, "ID", np.array([f"ID{i + 1}" for i in range(M)]))
        obs = pd.DataFrame({"Input": d["xo"], "Output": d["yo"]})

        def fit():
            t, c = time.perf_counter(), time.process_time()
            m = mtgp.Magma(mean_kernel=SE(variance=float(d["level_var"]), lengthscale=float(d["lengthscale"])),
                           individual_kernel=SE(variance=float(d["var"]), lengthscale=float(d["lengthscale"])),
                           noise=float(d["noise"]), common_hp=common).fit(df)
            return m, time.perf_counter() - t, time.process_time() - c

        model, t_fit, c_fit = fit()
        fits, cpus = [t_fit], [c_fit]
        if k == 0 and not once:  # second fit of the same data in the same process
            model, t2, c2 = fit()
            fits.append(t2)
            cpus.append(c2)
        t = time.perf_counter()
        pred = model.predict(obs, inputs=d["xt"])
        t_pred = time.perf_counter() - t
        lat = model.predict(obs, inputs=d["xt"], noise=False)
        r = {"file": str(f), "fit_s": fits, "fit_cpu_s": cpus, "predict_s": t_pred, "n_iter": int(model.n_iter_),
             "mean": pred.mean.tolist(), "var": pred.var.tolist(), "var_latent": lat.var.tolist(),
             "hp_new": {k_: float(v) for k_, v in pred.hyperparameters.items()}}
        if not common:  # the paper's Sec. 4.3 (maximum likelihood) for the new individual, as the peer does
            model.new_individual_hp = "ml"
            p_ml = model.predict(obs, inputs=d["xt"])
            r.update(mean_ml=p_ml.mean.tolist(), var_ml=p_ml.var.tolist())
        out.append(r)
        print(f"    mtgp {hp} M={M} {Path(f).stem}: fit {', '.join(f'{x:.2f}' for x in fits)} s, "
              f"{model.n_iter_} EM iterations", flush=True)
        if once:
            break
    return out


def _peer_setup():
    """Import the peer with the settings its own example notebooks use (float64,
    softplus parameter transform) and wrap the mean-kernel M step (bug 1)."""
    os.environ.setdefault("JAX_ENABLE_X64", "true")
    import logging
    logging.basicConfig(level=logging.ERROR)
    import kernax
    kernax.config.parameter_transform = "softplus"  # its notebooks: "Important for the stability of the optimisation"
    from MagmaClustPy import models
    original = models.optimise_mean_kernel
    counter = {"m_steps": 0}

    def optimise_mean_kernel(mean_kernel, all_inputs, prior_mean, post_means, post_covs, *a, **kw):
        # Magma.fit passes the hyper-posterior without the cluster axis that
        # optimise_mean_kernel vmaps over (it does add it for the task kernel).
        counter["m_steps"] += 1
        if post_means.ndim == 1:
            post_means, post_covs = post_means[None], post_covs[None]
        return original(mean_kernel, all_inputs, prior_mean, post_means, post_covs, *a, **kw)

    models.optimise_mean_kernel = optimise_mean_kernel
    return counter


def _worker_peer(files, hp):
    counter = _peer_setup()  # before anything imports jax (float64)
    import copy
    import pandas as pd
    import jax
    from kernax import BatchModule, SEKernel, VarianceKernel, WhiteNoiseKernel
    from MagmaClustPy.means import ZeroMean
    from MagmaClustPy.models import BaseLikelihood, Magma
    shared = hp == "common"
    out = []
    for k, f in enumerate(files):
        d = _read(f)
        M, N = d["X"].shape
        df = _train_frame(d, "Task_ID", np.arange(M)).assign(Input_ID="t", Output_ID="y")
        obs = pd.DataFrame({"Task_ID": 0, "Input": d["xo"], "Input_ID": "t", "Output": d["yo"], "Output_ID": "y"})

        def fit():
            mean_k = VarianceKernel(float(d["level_var"])) * SEKernel(length_scale=float(d["lengthscale"]))
            task_k = (VarianceKernel(float(d["var"])) * SEKernel(length_scale=float(d["lengthscale"]))
                      + WhiteNoiseKernel(noise=float(d["noise"])))
            m = Magma(likelihood=BaseLikelihood(), prior_mean=ZeroMean(), mean_kernel=mean_k,
                      task_kernel_train=task_k, task_kernel_pred=copy.deepcopy(task_k), shared_hp=shared)
            counter["m_steps"] = 0
            t, c = time.perf_counter(), time.process_time()
            m.load_train_data(df)
            m.fit()
            jax.block_until_ready((m.post_mean, m.post_cov))
            dt, dc = time.perf_counter() - t, time.process_time() - c
            # The peer pads every individual to the first one's size and pivots on
            # outputs: check that nothing was dropped (it would be silent).
            yp = np.asarray(m.padded_outputs_train)
            if yp.shape[:2] != (M, N) or not np.isfinite(yp).all() or len(m.all_inputs_train) != N:
                raise RuntimeError(f"peer preprocessing changed the data: {yp.shape}, {len(m.all_inputs_train)}")
            return m, dt, dc, counter["m_steps"]

        model, t_fit, c_fit, n_iter = fit()
        fits, cpus = [t_fit], [c_fit]
        if k == 0:
            model, t2, c2, n_iter = fit()
            fits.append(t2)
            cpus.append(c2)
        t = time.perf_counter()
        if shared:  # bug 2: predict with the trained kernel, not the initial one
            model.task_kernel_pred = BatchModule(model.task_kernel_train.inner, batch_size=1, batch_in_axes=None,
                                                 batch_over_inputs=True)
        model.load_pred_data(obs)
        model.grid_pred = jax.numpy.asarray(d["xt"])[:, None]
        mean, cov = model.predict()
        mean = np.asarray(mean)[0]
        t_pred = time.perf_counter() - t
        var_lat = np.diag(np.asarray(cov)[0])
        kern = model.task_kernel_pred.inner  # VarianceKernel * SEKernel + WhiteNoiseKernel
        first = lambda a: float(np.ravel(np.asarray(a))[0])  # noqa: E731  (Different HP: shape (1,))
        noise = first(kern.right.noise)  # bug 3: the predictive covariance leaves it out
        nan = not (np.isfinite(mean).all() and np.isfinite(var_lat).all())
        out.append({"file": str(f), "fit_s": fits, "fit_cpu_s": cpus, "predict_s": t_pred, "n_iter": n_iter, "nan": nan,
                    "mean": mean.tolist(), "var": (var_lat + noise).tolist(), "var_latent": var_lat.tolist(),
                    "hp_new": {"variance": first(kern.left.left.variance),
                               "lengthscale": first(kern.left.right.length_scale), "noise": noise}})
        print(f"    peer {hp} M={M} {Path(f).stem}: fit {', '.join(f'{x:.2f}' for x in fits)} s, "
              f"{n_iter} EM iterations", flush=True)
    return out


def _worker_mimosa(files, hp):
    """mimosa-ml's Magma: its MagmaClust VEM with one cluster (mixture fixed),
    through ``magmaclust_peer``'s helpers; Different HP = per-task HPs, and the
    new individual's own HPs learnt before predicting (``mimosa_predict``)."""
    import magmaclust_peer as MCP
    MCP.mimosa_import()
    shared = hp == "common"
    out = []
    for k, f in enumerate(files):
        d = _read(f)
        M = d["X"].shape[0]
        h = {n: float(d[n]) for n in ("level_var", "var", "lengthscale", "noise")}
        fits, cpus = [], []
        for _ in range(2 if k == 0 else 1):  # the first data set twice: cold, then warm
            t, c = time.perf_counter(), time.process_time()
            fit = MCP.mimosa_fit(d["X"], d["Y"], h, n_clusters=1, shared_task_hps=shared)
            fits.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        t = time.perf_counter()
        _, mean, var, var_lat, par = MCP.mimosa_predict(fit, d["xo"], d["yo"], d["xt"], new_task_hps=not shared,
                                                        latent=True)
        t_pred = time.perf_counter() - t
        first = lambda a: float(np.ravel(np.asarray(a))[0])  # noqa: E731  (batched parameters)
        task, noise = (_unbatch(x) for x in (par.task_kernel, par.noise_kernel))
        nan = not (np.isfinite(mean).all() and np.isfinite(var).all())
        out.append({"file": str(f), "fit_s": fits, "fit_cpu_s": cpus, "predict_s": t_pred, "n_iter": fit["n_iter"],
                    "nan": nan, "mean": mean[0].tolist(), "var": var[0].tolist(), "var_latent": var_lat[0].tolist(),
                    "hp_new": {"variance": first(task.left.variance), "lengthscale": first(task.right.length_scale),
                               "noise": first(noise.noise)}})
        print(f"    mimosa-ml {hp} M={M} {Path(f).stem}: fit {', '.join(f'{x:.2f}' for x in fits)} s, "
              f"{fit['n_iter']} EM iterations", flush=True)
    return out


def _unbatch(kernel):
    """The kernel inside kernax's (nested) ``BatchModule`` wrappers."""
    while hasattr(kernel, "inner"):
        kernel = kernel.inner
    return kernel


def worker(argv):
    p = argparse.ArgumentParser()
    p.add_argument("lib", choices=["mtgp", "peer", "mimosa"])
    p.add_argument("--hp", choices=["common", "different"], required=True)
    p.add_argument("--once", action="store_true")
    p.add_argument("--json", required=True)
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    import warnings
    warnings.filterwarnings("ignore")
    if a.lib == "mtgp":
        sys.path.insert(0, str(ROOT))
        res = _worker_mtgp(a.files, a.hp, a.once)
        import jax
        versions = {"jax": jax.__version__}
    elif a.lib == "mimosa":
        res = _worker_mimosa(a.files, a.hp)
        import importlib.metadata as md
        versions = {"jax": md.version("jax"), "mimosa-ml": md.version("mimosa-ml"),
                    "kernax-ml": md.version("kernax-ml")}
    else:
        res = _worker_peer(a.files, a.hp)
        import importlib.metadata as md
        versions = {"jax": md.version("jax"), "magma-py-minimal": md.version("magma-py-minimal"),
                    "kernax-ml": md.version("kernax-ml")}
    import platform
    versions["python"] = platform.python_version()
    Path(a.json).write_text(json.dumps({"runs": res, "versions": versions}))


# ================================================================ main process
def find_python312():
    cands = [shutil.which("python3.12")]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    for c in cands:  # a pyenv shim may exist and still fail: run it
        if c and os.access(c, os.X_OK) and subprocess.run([c, "-c", "pass"], env=_ENV0,
                                                           capture_output=True).returncode == 0:
            return c
    return None


def ensure_venv(venv, package, check, create=True, env=None):
    """A Python >= 3.12 virtualenv ``venv`` with ``package`` (a pip
    requirement) installed, created on first use with ``python3.12 -m venv``
    and pip (shared by the peer benchmarks). ``check`` is Python code run by
    the venv's interpreter that prints the installed version. Returns
    (python, version, note); python is None when the venv cannot be used."""
    env = _ENV0 if env is None else env
    venv = Path(venv)
    py = venv / "bin" / "python"
    if not py.exists():
        if not create:
            return None, None, f"no venv {venv}"
        base = find_python312()
        if base is None:
            return None, None, f"no python3.12 found to create {venv}"
        print(f"creating {venv} with {base} and installing {package} ...", flush=True)
        try:
            subprocess.run([base, "-m", "venv", str(venv)], check=True, env=env)
            r = subprocess.run([str(py), "-m", "pip", "install", "-q", package], env=env,
                               capture_output=True, text=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as e:
            return None, None, f"could not create {venv}: {e}"
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            return None, None, "pip install failed: " + (r.stderr or r.stdout).strip()[-500:]
    return check_python(str(py), check, env)


def check_python(path, check, env=None):
    """(path, version, note) if ``path`` runs ``check`` (which prints the
    peer's version), else (None, None, why)."""
    try:
        r = subprocess.run([path, "-c", check], env=_ENV0 if env is None else env, capture_output=True, text=True)
    except OSError as e:
        return None, None, f"cannot run {path}: {e}"
    if r.returncode != 0:
        return None, None, f"{path} cannot import the peer: " + r.stderr.strip()[-300:]
    return path, r.stdout.strip(), ""


def peer_python(path=None, create=True):
    """The interpreter that runs the peer: --peer-python, else the venv
    benchmarks/.peer-venv (created on first use). Returns (python, note);
    python is None when the peer cannot be run."""
    check = "import MagmaClustPy, importlib.metadata as m; print(m.version('magma-py-minimal'))"
    if path is None:
        path, version, note = ensure_venv(DEFAULT_VENV, PEER_PACKAGE, check, create=create)
    else:
        path, version, note = check_python(path, check)
    if path is None:
        return None, note
    if version != PEER_PACKAGE.split("==")[1]:
        print(f"warning: the workarounds were written for {PEER_PACKAGE}, found {version}", flush=True)
    return path, f"magma-py-minimal {version} ({path})"


def mimosa_python(path=None, create=True):
    """The interpreter that runs mimosa-ml: --mimosa-python, else
    magmaclust_peer's venv benchmarks/.mimosa-venv (created on first use).
    Returns (python, note); python is None when it cannot be run."""
    import magmaclust_peer as MCP
    if path is None:
        path, version, note = ensure_venv(MCP.DEFAULT_VENV, MCP.PEER_PACKAGE, MCP.PEER_CHECK, create=create)
    else:
        path, version, note = check_python(path, MCP.PEER_CHECK)
    return (None, note) if path is None else (path, f"mimosa-ml {version} ({path})")


def make_data(M, seed, folder):
    """One simulated data set (Table 1 protocol) as an .npz both libraries read."""
    import _common as C
    import mtgp
    sim = mtgp.simulate(n_individuals=M + 1, n_points=N_POINTS, seed=seed)
    df = sim.data
    new_id = f"ID{M + 1}"
    train = df[df.ID != new_id]
    new = df[df.ID == new_id].sort_values("Input")
    ids = train.ID.unique()
    X = np.stack([train[train.ID == i].Input.to_numpy() for i in ids])
    Y = np.stack([train[train.ID == i].Output.to_numpy() for i in ids])
    init = C.init_values(train.Output, train.Input)
    f = Path(folder) / f"M{M}_seed{seed}.npz"
    np.savez(f, X=X, Y=Y, xo=new.Input.to_numpy()[:N_OBS], yo=new.Output.to_numpy()[:N_OBS],
             xt=new.Input.to_numpy()[N_OBS:], yt=new.Output.to_numpy()[N_OBS:],
             **{k: float(v) for k, v in init.items()})
    return f


def run_worker(python, lib, hp, files, folder, timeout, once=False, env_extra=None):
    tag = f"{lib}_{hp}_{Path(files[0]).stem}{'_once' if once else ''}"
    js = Path(folder) / f"{tag}.json"
    cmd = [python, str(Path(__file__).resolve()), "_worker", lib, "--hp", hp, "--json", str(js)]
    cmd += (["--once"] if once else []) + [str(f) for f in files]
    env = dict(_ENV0, **(env_extra or {}))
    load = _load()
    t = time.perf_counter()
    log = Path(folder) / f"{tag}.stderr"  # XLA's warnings (e.g. on loading cached programs) go here
    try:
        with open(log, "w") as fh:
            r = subprocess.run(cmd, env=env, timeout=timeout, stderr=fh)
        ok = r.returncode == 0 and js.exists()
        err = None if ok else f"exit code {r.returncode}"
    except subprocess.TimeoutExpired:
        ok, err = False, f"ran past {timeout} s"
    wall = time.perf_counter() - t
    if not ok:
        print(f"  {tag} failed ({err}); end of its stderr:\n" + log.read_text()[-3000:], flush=True)
    res = json.loads(js.read_text()) if ok else {"runs": [], "versions": {}, "error": err}
    res.update(process_s=wall, load=load)
    return res


def summarise(block, data):
    """Rows of scores from a worker's result."""
    from mtgp.metrics import cic95, mse
    rows = []
    for r in block["runs"]:
        d = data[r["file"]]
        yt = d["yt"]
        row = {"seed": int(Path(r["file"]).stem.split("seed")[1]), "fit_s": r["fit_s"], "fit_cpu_s": r["fit_cpu_s"],
               "n_iter": r["n_iter"], "predict_s": r["predict_s"], "MSE": mse(yt, r["mean"]),
               "CIC95": cic95(yt, r["mean"], r["var"]),
               "CIC95_latent": cic95(yt, r["mean"], r["var_latent"]), "nan": r.get("nan", False),
               "hp_new": r.get("hp_new")}
        if "mean_ml" in r:
            row.update(MSE_ml=mse(yt, r["mean_ml"]), CIC95_ml=cic95(yt, r["mean_ml"], r["var_ml"]))
        rows.append(row)
    return rows


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_worker":
        return worker(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="M = 20, one seed, Common HP; skips the peer if its venv "
                   "cannot be created (< 1 min once the venv exists)")
    p.add_argument("--sizes", default="20:5,200:2,1000:1", help="M:seeds pairs (default 20:5,200:2,1000:1)")
    p.add_argument("--different-max-M", type=int, default=200,
                   help="Different HP runs only the sizes with M <= this (default 200: the peer's Different-HP "
                        "process at M = 1000 took 3.5 min here, 110 s per fit)")
    p.add_argument("--hp", choices=["common", "different", "both"], default="both")
    p.add_argument("--seed0", type=int, default=0, help="first seed (seeds seed0, seed0+1, ...)")
    p.add_argument("--peer-python", default=None,
                   help="Python interpreter that has magma-py-minimal (default: benchmarks/.peer-venv, created if "
                        "missing with python3.12)")
    p.add_argument("--peers", default="magma-py-minimal,mimosa-ml",
                   help="peers to run, comma-separated (default magma-py-minimal,mimosa-ml)")
    p.add_argument("--mimosa-python", default=None,
                   help="Python interpreter that has mimosa-ml (default: benchmarks/.mimosa-venv, created if missing "
                        "with python3.12, shared with magmaclust_peer.py)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per worker process")
    p.add_argument("--out", default=None, help="output folder (default docs/results)")
    p.add_argument("--name", default=None, help="page name (default magma_peer, magma_peer_quick with --quick)")
    a = p.parse_args(argv)

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    import _common as C

    sizes = [(20, 1)] if a.quick else [tuple(int(x) for x in s.split(":")) for s in a.sizes.split(",")]
    hps = ["common"] if a.quick else (["common", "different"] if a.hp == "both" else [a.hp])
    out = C.out_dir(a.out)
    t0 = time.perf_counter()

    peers = {}  # worker name -> (python, note)
    wanted = [x.strip() for x in a.peers.split(",") if x.strip()]
    unknown = set(wanted) - set(PEER_LABEL.values())
    if unknown:
        sys.exit(f"unknown peers {sorted(unknown)}: choose among {sorted(PEER_LABEL.values())}")
    for lib in ("peer", "mimosa"):
        if PEER_LABEL[lib] not in wanted:
            continue
        py, note = peer_python(a.peer_python) if lib == "peer" else mimosa_python(a.mimosa_python)
        if py is None:
            if not a.quick:
                sys.exit(f"{PEER_LABEL[lib]} cannot be run: {note} (use --peer-python / --mimosa-python, --peers, "
                         "or --quick to skip it)")
            print(f"skipping {PEER_LABEL[lib]}: {note}", flush=True)
        peers[lib] = (py, note)

    blocks = []
    with tempfile.TemporaryDirectory() as tmp:
        data, files_by_M = {}, {}
        for M, n_seeds in sizes:
            files_by_M[M] = [make_data(M, s, tmp) for s in range(a.seed0, a.seed0 + n_seeds)]
            for f in files_by_M[M]:
                data[str(f)] = dict(np.load(f))
        for hp in hps:
            for M, n_seeds in sizes:
                if hp == "different" and M > a.different_max_M:
                    continue
                files = files_by_M[M]
                cache = Path(tmp) / f"cache_{hp}_{M}"
                env = {"MTGP_CACHE_DIR": str(cache)}
                print(f"{hp} HP, M = {M}, {n_seeds} data set(s): mtgp (load {_load()})", flush=True)
                res = run_worker(sys.executable, "mtgp", hp, files, tmp, a.timeout, env_extra=env)
                res2 = None
                if not a.quick:
                    print(f"{hp} HP, M = {M}: mtgp, new process with the disk cache filled", flush=True)
                    res2 = run_worker(sys.executable, "mtgp", hp, files, tmp, a.timeout, once=True, env_extra=env)
                blocks.append({"lib": "mtgp", "hp": hp, "M": M, "res": res, "cache": res2})
                for lib, (py, _) in peers.items():
                    if py is None:
                        continue
                    print(f"{hp} HP, M = {M}, {n_seeds} data set(s): {PEER_LABEL[lib]} (load {_load()})", flush=True)
                    res = run_worker(py, lib, hp, files, tmp, a.timeout)
                    blocks.append({"lib": lib, "hp": hp, "M": M, "res": res, "cache": None})
        for b in blocks:
            b["rows"] = summarise(b["res"], data)
    wall = time.perf_counter() - t0
    page, table = report(blocks, a, C, peers, wall, sizes)
    print(table)
    name = (a.name or ("magma_peer_quick" if a.quick else "magma_peer")) + ".md"
    (out / name).write_text(page)
    print(f"wrote {out / name} ({wall:.0f} s)")


def _fmt(x, d=2):
    return "-" if x is None or not np.isfinite(x) else f"{x:.{d}f}"


def report(blocks, a, C, peers, wall, sizes):
    label = {"mtgp": "mtgp", **PEER_LABEL}
    rows, detail = [], []
    for b in blocks:
        res, rs = b["res"], b["rows"]
        hp = b["hp"].capitalize()
        if not rs:
            rows.append([label[b["lib"]], hp, b["M"], 0, f"failed: {res.get('error')}"] + [""] * 7 + [res["load"]])
            continue
        fits = [x for r in rs for x in r["fit_s"]]
        cpus = [x for r in rs for x in r["fit_cpu_s"]]
        cold, warm = fits[0], (np.median(fits[1:]) if len(fits) > 1 else np.nan)
        warm_cpu = np.median(cpus[1:]) if len(cpus) > 1 else np.nan
        cached = "-"
        if b["cache"] is not None and b["cache"]["runs"]:
            cached = _fmt(b["cache"]["runs"][0]["fit_s"][0])
        preds = [r["predict_s"] for r in rs]
        pw = np.median(preds[1:]) if len(preds) > 1 else np.nan
        mse_, cic_, lat_ = [np.array([r[k] for r in rs]) for k in ("MSE", "CIC95", "CIC95_latent")]
        nan = sum(bool(r["nan"]) for r in rs)
        rows.append([label[b["lib"]] + (f" ({nan} NaN runs)" if nan else ""), hp, b["M"], len(rs),
                     f"{_fmt(cold)} ({_fmt(cpus[0])})", cached, f"{_fmt(warm, 3)} ({_fmt(warm_cpu, 3)})",
                     C.mean_sd([r["n_iter"] for r in rs], 1),
                     f"{_fmt(preds[0])} / {_fmt(pw, 3)}", C.mean_sd(mse_, 2), C.mean_sd(cic_, 1),
                     C.mean_sd(lat_, 1), res["load"]])
        if b["lib"] == "mtgp" and "MSE_ml" in rs[0]:
            rows.append(["mtgp, new individual by ML (as the peer)", hp, b["M"], len(rs), "", "", "", "", "",
                         C.mean_sd([r["MSE_ml"] for r in rs], 2), C.mean_sd([r["CIC95_ml"] for r in rs], 1), "", ""])
        for r in rs:
            detail.append([label[b["lib"]], hp, b["M"], r["seed"], ", ".join(_fmt(x) for x in r["fit_s"]), r["n_iter"],
                           _fmt(r["MSE"]), _fmt(r["CIC95"], 0), _fmt(r["CIC95_latent"], 0), _hp_str(r["hp_new"])])
    summary = []
    by = {(b["lib"], b["hp"], b["M"]): b["rows"] for b in blocks if b["rows"]}
    for (lib, hp, M), rp in by.items():
        rm = by.get(("mtgp", hp, M))
        if lib == "mtgp" or not rm:
            continue
        fm, fp = [x for r in rm for x in r["fit_s"]], [x for r in rp for x in r["fit_s"]]
        cm, cp = [x for r in rm for x in r["fit_cpu_s"]], [x for r in rp for x in r["fit_cpu_s"]]
        pm, pp = [r["predict_s"] for r in rm], [r["predict_s"] for r in rp]
        dmse = np.array([b_["MSE"] - a_["MSE"] for a_, b_ in zip(rm, rp)])
        ratio = lambda x, y: _fmt(np.median(y[1:]) / np.median(x[1:]), 2) if len(x) > 1 else "-"  # noqa: E731
        summary.append([label[lib], hp.capitalize(), M, _fmt(fp[0] / fm[0], 1), ratio(fm, fp), ratio(cm, cp),
                        _fmt(pp[0] / pm[0], 1), ratio(pm, pp), f"{dmse.mean():+.2f}", f"{np.abs(dmse).max():.2f}",
                        f"{sum(a_['CIC95'] == b_['CIC95'] for a_, b_ in zip(rm, rp))} of {len(rm)}"])
    summary_tab = C.md_table(["Peer", "HP", "M", "fit cold", "fit warm (wall)", "fit warm (CPU)", "predict cold",
                              "predict warm",
                              "MSE peer - mtgp (mean)", "max abs MSE difference", "equal CIC95"], summary)
    header = ["Library", "HP", "M", "data sets", "fit cold: wall (CPU) s", "cold, disk cache filled (s)",
              "fit warm: wall (CPU) s",
              "EM iterations", "predict cold / warm (s)", "Pred. MSE", "CIC95 %", "CIC95 latent %",
              "load avg (1, 5, 15 min) at start"]
    table = C.md_table(header, rows)
    versions = {}
    for b in blocks:
        versions.setdefault(b["lib"], b["res"].get("versions", {}))
    sizes_txt = ", ".join(f"M = {M} ({n} seed{'s' if n > 1 else ''})" for M, n in sizes)
    if "different" in [b["hp"] for b in blocks] and any(M > a.different_max_M for M, _ in sizes):
        sizes_txt += f" (Different HP: only M <= {a.different_max_M}, `--different-max-M`)"
    peer_txt = "; ".join(
        f"{PEER_LABEL[lib]}: " + (_versions(versions.get(lib, {})) if py else f"**not run** ({note})")
        for lib, (py, note) in peers.items())
    extra = (f"Data: {sizes_txt}, seeds {a.seed0}, {a.seed0 + 1}, ...; Common-HP simulated data, common grid of "
             f"{N_POINTS} inputs; the new individual observes its first {N_OBS} points and the last "
             f"{N_POINTS - N_OBS} are predicted. Wall time {wall:.0f} s; load average (1, 5, 15 min) at the end "
             f"{_load()}. Versions: mtgp in {_versions(versions.get('mtgp', {}))}; {peer_txt or 'no peer'}.")
    names = " and ".join(f"`{PEER_LABEL[lib]}`" for lib in peers) or "its JAX peers"
    page = C.page_header(f"Magma: mtgp and the JAX peer{'s' if len(peers) > 1 else ''} {names}, side by side",
                         C.command_line(), a.quick, extra)
    page += "\n## Results (mean (sd) over data sets)\n\n" + table + "\n\n" + NOTES_MD
    if summary:
        page += ("\n## Peers relative to mtgp, on the same data sets\n\nTime ratios peer / mtgp (above 1: the peer "
                 "is slower; warm ratios of medians, wall and CPU); MSE differences paired by data set. Issue 15's "
                 "target: warm fit ratio mimosa-ml / mtgp of at least 2 at M = 20 and M = 1000, Common and "
                 "Different HP.\n\n"
                 + summary_tab + "\n")
    page += "\n## Per data set\n\n" + C.md_table(
        ["Library", "HP", "M", "seed", "fit times (s), in order", "EM it.", "MSE", "CIC95 %", "latent %",
         "new individual's HPs used for prediction"], detail) + "\n"
    page += "".join("\n" + {"peer": PEER_MD, "mimosa": MIMOSA_MD}[lib] for lib in peers)
    return page, table + ("\n\n" + summary_tab if summary else "")


def _versions(v):
    return ", ".join(f"{k} {x}" for k, x in v.items()) if v else "?"


def _hp_str(hp):
    if not hp:
        return ""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


NOTES_MD = """How to read it:

- **fit cold**: first fit of a fresh process (imports done, XLA compilation
  included; mtgp's persistent compilation cache pointed at an empty folder).
  **cold, disk cache filled**: mtgp only, one more fresh process fitting the
  first data set once, with the compiled programs the previous process saved
  (the mtgp processes opt in to JAX's persistent cache with
  `mtgp.config.enable_compilation_cache`; the peer has none).
  **fit warm**: median of every later fit in the same process (the first data
  set again, then the other seeds). Fit time includes each library's data
  conversion (mtgp `Magma.fit(df)`; the peer `load_train_data` + `fit`).
  In brackets: the process's CPU time during the fit (all its threads; less
  sensitive than the wall time to the other jobs on a shared machine).
- **EM iterations**: mtgp `n_iter_`; the peer: number of M steps run (counted
  by the wrapper of workaround 1). Both stop at 25 iterations or a relative
  change below 1e-3, mtgp of the exact log-likelihood, the peer of the sum of
  its two M-step objectives.
- **CIC95 %**: share of the 10 held-out noisy outputs inside the 95% interval
  of the predicted *output* (latent variance + noise variance).
  mtgp returns that interval (`predict(noise=True)`, its default); the peer
  returns the latent covariance only, so its learnt noise variance is added
  (workaround 3). **CIC95 latent %**: the same with the latent variance only
  (the peer's interval as it returns it; mtgp `predict(noise=False)`). With
  10 test points per data set, CIC95 moves in steps of 10%.
- **Predict**: one new individual, 10 inputs; cold = first data set in the
  process, warm = median of the others. Different HP includes learning the
  new individual's HPs: mtgp by MAP with a prior fitted to the trained
  population, from several starts (its default `new_individual_hp="map"`);
  the peer by maximum likelihood from one start (its initial HPs). The row
  "mtgp, new individual by ML" gives mtgp's scores with the paper's Sec. 4.3
  maximum likelihood (`new_individual_hp="ml"`) on the same fits.
"""

PEER_MD = """## How the peer was run, and what was worked around

The peer (`MagmaClustPy`, package `magma-py-minimal` 0.1.5a0) ran in its own
virtualenv (Python 3.12, jax 0.6.x, which it pins) in a subprocess; mtgp's
environment never sees it. Its calls, as in its own example notebooks
(`benchmarks/Minimal Pipelines/Magma SI SHP.ipynb` in its repository):
`JAX_ENABLE_X64=true`, `kernax.config.parameter_transform = "softplus"`,
`Magma(likelihood=BaseLikelihood(), prior_mean=ZeroMean(), mean_kernel=...,
task_kernel_train=..., task_kernel_pred=deepcopy(task_kernel_train),
shared_hp=...)`, `load_train_data(df)`, `fit()` (its defaults: 25 iterations,
threshold 1e-3, jitter 1e-4), then `load_pred_data(obs)`, `grid_pred` set to
the 10 test inputs, `predict()`. Kernels: mean `VarianceKernel(v0) *
SEKernel(l0)`, individuals `VarianceKernel(v) * SEKernel(l) +
WhiteNoiseKernel(s2)` (the same SE parameterisation as mtgp's `SE`; the
notebooks write `15. * SEKernel(...)`, whose constant factor is an
unconstrained `ConstantKernel`: `VarianceKernel` keeps the variance positive).
Initial values: the same data-driven ones as mtgp's.

Workarounds, all from the benchmark's side, in the peer's process, without
editing its installed files:

1. **NaN at EM iteration 0** (`Magma.fit`): the mean-kernel M step
   `optimise_mean_kernel` vmaps the likelihood over a leading cluster axis of
   the hyper-posterior, but `Magma.fit` passes `self.post_mean` (N,) and
   `self.post_cov` (N, N) without it (it does add `[None]` for the task-kernel
   M step), so the likelihood is evaluated on scalars and rows: the mean
   kernel's HPs become NaN and fit stops at iteration 0 ("NaN detected").
   The benchmark replaces `MagmaClustPy.models.optimise_mean_kernel` with a
   wrapper that adds the axis (`post_mean[None]`, `post_cov[None]`) when it is
   missing, then calls the original.
2. **Common HP predicts with the untrained kernel**: `Magma.predict` uses
   `task_kernel_pred` (a copy of the *initial* kernel), which only the
   Different-HP path re-learns (`optimise_pred_kernels`). The benchmark sets
   `model.task_kernel_pred = BatchModule(model.task_kernel_train.inner,
   batch_size=1, batch_in_axes=None, batch_over_inputs=True)` (the trained
   shared kernel, batched for one new individual) before predicting.
3. **Predictive covariance without noise**: `predict_single_task` adds
   `task_kernel.left(grid)` (the SE part) to the hyper-posterior covariance,
   not the noise. For CIC95 of noisy outputs the benchmark adds the peer's
   learnt noise variance (`task_kernel_pred.inner.right.noise`) to the
   diagonal; the column "CIC95 latent" shows the interval as returned.

Checked, not worked around: the peer pads every individual to the size of
the first one and pivots on the outputs; the benchmark checks after
`load_train_data` that all M x 30 outputs are there (every individual has 30
distinct points here, so nothing is dropped). For Different HP, its
`optimise_pred_kernels` indexes the training hyper-posterior with the
new individual's mappings into its *own* inputs (`mappings_pred`), not into
the training grid: right here only because the observed inputs are the first
20 of the sorted common grid (indices 0..19 in both), wrong in general.
"""


MIMOSA_MD = """## How mimosa-ml was run

mimosa-ml (0.5.0a0, the authors' group's JAX library for MagmaClust) has no
separate Magma model: Magma is its MagmaClust VEM with one cluster. It ran in
its own virtualenv (Python 3.12, its own jax, `jax_enable_x64` before its
import, as its README recommends), in a subprocess, through the helpers of
`benchmarks/magmaclust_peer.py` (`mimosa_fit`, `mimosa_predict`):
`EarlyStoppingModel(key, n_clusters=1, cv_threshold=1e-3,
predictor=ObservationPredictor())`, `fit(train, UnionGrid(train.inputs),
build_parameters(p0, dims, ModelConfig(shared_task_hps=..., shared_cluster_hps=True,
cluster_specific_task_hps=False, isotopic_tasks=True)), n_iter=25,
init_mixture=Mixture(ones((M, 1))), freeze_mixture=True)`, kernels mean
`VarianceKernel(v0) * SEKernel(l0)`, individuals `VarianceKernel(v) *
SEKernel(l)` + `WhiteNoiseKernel(s2)`, zero prior mean, the same data-driven
initial values as mtgp's. Common HP: `shared_task_hps=True`; Different HP:
`shared_task_hps=False` (one set per individual, all optimised by one L-BFGS
on the summed objective). Its EM stops at 25 iterations or a relative change
of its ELBO below 1e-3 (EM iterations: the ELBOs it returns).

Prediction of the new individual: the steps of its `TrainTestPipeline.predict`
on the training grid (which holds the new individual's inputs): mixture
update, then `ObservationPredictor` (noise included; CIC95 latent:
`FunctionPredictor`). For Different HP mimosa-ml has no call that learns a
new task's HPs; the benchmark runs its own `fit` on the new individual with
the training hyper-posterior, the mixture and the mean-process HPs frozen
(`freeze_hyperposterior`, `freeze_mixture`, `freeze_cluster_parameters`),
from the initial HPs: its task M step, i.e. maximum likelihood given the
hyper-posterior, like the paper's Sec. 4.3.
"""


if __name__ == "__main__":
    main()
