"""External peer benchmark: mtgp's ICM (Std-MT) and StructuredNoiseMTGP
(Sigma-MT) against GPyTorch's exact multitask models, on the same data, with
the same L-BFGS budget, in float64.

    python3 benchmarks/cool_gpytorch_peer.py            # Mulan slump, edm, enb, atp1d (3 splits) + Sec. 5.1 synthetic (3 reps)
    python3 benchmarks/cool_gpytorch_peer.py --quick    # slump, 1 split, max_iter 20 (skips the peer if it cannot be installed)
    python3 benchmarks/cool_gpytorch_peer.py --datasets slump edm --splits 2 --reps 0
    python3 benchmarks/cool_gpytorch_peer.py --peer-python /path/to/python   # an interpreter that has torch + gpytorch

Writes ``docs/results/cool_gpytorch_peer.md`` and ``cool_gpytorch_peer_raw.csv``
(``cool_gpytorch_peer_quick.*`` with ``--quick``) into ``--out``.

GPyTorch never enters mtgp's environment: by default this script creates (or
reuses) the virtualenv ``benchmarks/.gpytorch-venv`` (git-ignored) with
``python3 -m venv`` and installs the CPU build of torch and gpytorch with pip:
first from the CPU wheel index (``--index-url
https://download.pytorch.org/whl/cpu``), else a ``torch-*+cpu`` wheel found in
pip's configured ``find-links`` folders (with its dependencies from the
package index), else plain ``pip install torch`` (which on Linux is the large
CUDA build). The peer runs in a subprocess of that interpreter and reads the
same data from ``.npz`` files. Without the peer, ``--quick`` skips it (and
the page says so); the full mode stops with an error.

Models (both libraries: zero mean, float64, kernel variance fixed at 1 so that
the task covariance carries the scale, exact marginal likelihood):

* Std-MT: mtgp ``ICM(kernel, rank=P)`` (C = A A^T, as in cool_mulan.py) and
  ``ICM(kernel, rank=P, diagonal=True)`` (C = A A^T + diag(kappa), the model
  GPyTorch's IndexKernel defines); GPyTorch ``MultitaskKernel(base,
  num_tasks=T, rank=P)`` with ``MultitaskGaussianLikelihood(num_tasks=T,
  rank=0, has_global_noise=False)`` (per-task noise only: the global noise
  term would duplicate it).
* Sigma-MT: mtgp ``StructuredNoiseMTGP(kernel)`` (free-form C and Sigma);
  GPyTorch ``MultitaskKernel(base, num_tasks=T, rank=T)`` (C = B B^T +
  diag(v), B of shape (T, T): free-form) with
  ``MultitaskGaussianLikelihood(num_tasks=T, rank=T, has_global_noise=False)``
  (Sigma = F F^T, F of shape (T, T): free-form).
* mtgp ``CoolMTGP(kernel, method="approximate")`` for reference (no peer).

Base kernel: SE (GPyTorch ``RBFKernel``, isotropic, no ``ScaleKernel``,
initial lengthscale sqrt(D) as ``kernel()`` in cool_mulan.py) for Mulan;
linear (``LinearKernel`` with its variance fixed at 1, mtgp ``Linear()``) for
the synthetic data. Both libraries start from mtgp's initial values (the
peer's parameters are set to the same C, Sigma and lengthscale that mtgp's
estimators start from; see ``_initial_values``).

Optimiser: mtgp ``max_iter`` iterations of scipy's L-BFGS-B (memory 10,
gradient tolerance 1e-6); GPyTorch one ``step`` of ``torch.optim.LBFGS(lr=1,
max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe",
tolerance_grad=1e-6)`` on ``-ExactMarginalLogLikelihood`` (per-observation,
divided by N T like mtgp's objective; torch's other defaults apply:
``tolerance_change=1e-9``, ``max_eval=1.25 max_iter``).

GPyTorch configurations (``--peer-configs``): ``dense`` =
``gpytorch.settings.fast_computations(False, False, False)`` and
``max_cholesky_size(--max-cholesky-size)``: no CG / Lanczos; with ``log_prob``
off GPyTorch's ``MultivariateNormal.log_prob`` is torch's dense one, a
Cholesky factorisation of the N T x N T covariance per evaluation whatever
``max_cholesky_size`` says (fitted only where N T <= ``--dense-max-nt``, else
one evaluation is timed). ``kronecker`` = GPyTorch's defaults, whose
multitask operators (``KroneckerProductAddedDiagLinearOperator``,
``SumKroneckerLinearOperator``) solve and take log-determinants exactly
through eigendecompositions of the N x N and T x T factors. Every GPyTorch
fit is checked against mtgp's exact formulas at its parameters. scm20d
(N T = 12800) is not in the default list: about 6 s per ``kronecker``
evaluation of the Std-MT objective here.

Threads (``--threads``, default 1): OMP / OpenBLAS / MKL threads, XLA's
intra-op pool and ``torch.set_num_threads`` for both libraries; on a shared
machine multithreaded OpenBLAS (used by jaxlib's CPU LAPACK) was up to 100x
slower.

Timing: each library fits every data set in one process (mtgp: this
interpreter, its persistent compilation cache off unless MTGP_CACHE_DIR is
set; the peer: one subprocess). "Cold" is the first fit of each (data set,
model) in the process (mtgp: JAX compilation included), "warm" the median of
the later splits (same shapes); with a single split the first one is fitted
twice. Predict time: first prediction after the fit (GPyTorch computes its
prediction caches there; mtgp factorised in ``fit``).
"""

from __future__ import annotations

import os
import sys


def _threads(argv) -> int:
    for i, x in enumerate(argv):
        if x == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if x.startswith("--threads="):
            return int(x.split("=", 1)[1])
    return 1


# Thread limits must be in the environment before numpy, scipy, jax or torch
# load their BLAS / LAPACK and thread pools (see --threads).
THREADS = _threads(sys.argv)
THREAD_ENV = {} if THREADS <= 0 else {v: str(THREADS) for v in (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
if __name__ == "__main__" and sys.argv[1:2] != ["_peer"] and THREAD_ENV:
    os.environ.update(THREAD_ENV)
    if THREADS == 1 and "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

import argparse
import glob
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

# The environment before mtgp changes it (plus the thread limits): the peer's
# process gets this one.
_ENV0 = dict(os.environ, **THREAD_ENV)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_VENV = HERE / ".gpytorch-venv"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INSTALL_NOTE = "mtgp-benchmark-install.txt"  # how the script made the venv (read back for the page)
MULAN_SETS = ["slump", "edm", "enb", "atp1d"]
SYN_R, SYN_P = 10, 10


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ================================================================ peer worker
# Runs under the venv's interpreter: imports numpy, torch and gpytorch only.

def _peer_worker(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--json", required=True)
    p.add_argument("--max-iter", type=int, required=True)
    p.add_argument("--max-cholesky-size", type=int, required=True)
    p.add_argument("--configs", default="kronecker,dense")
    p.add_argument("--dense-max-nt", type=int, default=10**9)
    p.add_argument("--repeat-first", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)

    import warnings

    import torch
    import gpytorch
    from gpytorch.utils.warnings import NumericalWarning

    torch.set_default_dtype(torch.float64)
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    class MTGP(gpytorch.models.ExactGP):
        def __init__(self, X, Y, likelihood, base, T, rank):
            super().__init__(X, Y, likelihood)
            self.mean_module = gpytorch.means.MultitaskMean(gpytorch.means.ZeroMean(), num_tasks=T)
            self.covar_module = gpytorch.kernels.MultitaskKernel(base, num_tasks=T, rank=rank)

        def forward(self, x):
            return gpytorch.distributions.MultitaskMultivariateNormal(self.mean_module(x), self.covar_module(x))

    def build(d, kind):
        X, Y = torch.as_tensor(d["Xtr"]), torch.as_tensor(d["Ytr"])
        T = Y.shape[1]
        if str(d["kernel"]) == "se":
            base = gpytorch.kernels.RBFKernel()
            base.lengthscale = float(d["ls0"])
        else:
            base = gpytorch.kernels.LinearKernel()
            base.variance = 1.0
            base.raw_variance.requires_grad_(False)  # mtgp holds the kernel's variance fixed
        if kind == "std":
            lik = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=T, rank=0, has_global_noise=False)
            lik.task_noises = torch.as_tensor(d["std_s2"])
            model = MTGP(X, Y, lik, base, T, int(d["P"]))
            model.covar_module.task_covar_module.covar_factor.data = torch.as_tensor(d["std_A"]).clone()
            model.covar_module.task_covar_module.var = torch.as_tensor(d["std_kappa"])
        else:
            lik = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=T, rank=T, has_global_noise=False)
            lik.task_noise_covar_factor.data = torch.as_tensor(d["sig_F"]).clone()
            model = MTGP(X, Y, lik, base, T, T)
            model.covar_module.task_covar_module.covar_factor.data = torch.as_tensor(d["sig_B"]).clone()
            model.covar_module.task_covar_module.var = torch.as_tensor(d["sig_v"])
        return model, lik, X, Y

    def extract(model, lik, kind):
        tk = model.covar_module.task_covar_module
        C = tk._eval_covar_matrix().detach().numpy()
        S = torch.diag(lik.task_noises).detach().numpy() if kind == "std" else lik.task_noise_covar.detach().numpy()
        base = model.covar_module.data_covar_module
        ls = float(base.lengthscale.item()) if hasattr(base, "raw_lengthscale") else None
        return C, S, ls

    def fit_once(d, kind):
        model, lik, X, Y = build(d, kind)
        model.train()
        lik.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.LBFGS(params, lr=1, max_iter=a.max_iter, history_size=10,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-6)
        counts = {"evals": 0, "nonfinite": 0}

        def closure():
            opt.zero_grad()
            loss = -mll(model(X), Y)
            loss.backward()
            counts["evals"] += 1
            if not torch.isfinite(loss):
                counts["nonfinite"] += 1
            return loss

        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", NumericalWarning)
            t, c = time.perf_counter(), time.process_time()
            opt.step(closure)
            fit_s, cpu_s = time.perf_counter() - t, time.process_time() - c
            opt.zero_grad()
            loss = -mll(model(X), Y)  # at the result: GPyTorch's own log-likelihood and gradient
            loss.backward()
            own = -loss.item() * Y.numel()
            gmax = max(float(q.grad.abs().max()) for q in params if q.grad is not None)
            model.eval()
            lik.eval()
            t = time.perf_counter()
            with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
                pred = model(torch.as_tensor(d["Xte"]))
                mean = pred.mean.numpy()
                var = pred.variance.numpy()
            pred_s = time.perf_counter() - t
        state = opt.state[opt._params[0]]
        n_iter, n_eval = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
        # why torch.optim.LBFGS stopped (the order of its own tests)
        stop = ("gradient" if gmax <= 1e-6 else "max_iter" if n_iter >= a.max_iter
                else "max_eval" if n_eval >= int(a.max_iter * 1.25) else "tolerance_change")
        C, S, ls = extract(model, lik, kind)
        jitter = [str(x.message)[:200] for x in w if issubclass(x.category, NumericalWarning)]
        return {"fit_s": fit_s, "cpu_s": cpu_s, "predict_s": pred_s, "n_iter": n_iter, "func_evals": n_eval,
                "stop": stop,
                "grad_max": gmax, "closure_calls": counts["evals"],
                "nonfinite": counts["nonfinite"], "ll_own": own, "C": C.tolist(), "Sigma": S.tolist(),
                "lengthscale": ls, "mean": mean.tolist(), "var_finite": bool(np.all(np.isfinite(var))),
                "numerical_warnings": jitter[:3], "n_numerical_warnings": len(jitter)}

    import contextlib

    def config(name):
        """'dense': no fast computations, every log-determinant a dense
        Cholesky factorisation (torch's MultivariateNormal.log_prob);
        'kronecker': GPyTorch's defaults (its exact Kronecker algebra)."""
        if name == "dense":
            return contextlib.ExitStack(), [gpytorch.settings.fast_computations(False, False, False),
                                            gpytorch.settings.max_cholesky_size(a.max_cholesky_size)]
        return contextlib.ExitStack(), []

    def eval_time(d, kind, n=3):
        """Seconds of one objective + gradient evaluation at the start (min of n)."""
        model, lik, X, Y = build(d, kind)
        model.train()
        lik.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            loss = -mll(model(X), Y)
            loss.backward()
            ts.append(time.perf_counter() - t)
        return min(ts), loss.item()

    # warm-up of the process (torch's first evaluations are slow), not timed
    t = time.perf_counter()
    warm_d = dict(np.load(a.files[0]))
    for kind in ("std", "sigma"):
        eval_time(warm_d, kind)
    warmup_s = time.perf_counter() - t

    out, seen = [], set()
    for f in a.files:
        d = dict(np.load(f))
        nt = d["Ytr"].size
        for kind in ("std", "sigma"):
            for cfg in a.configs.split(","):
                stack, ctxs = config(cfg)
                with stack:
                    for c in ctxs:
                        stack.enter_context(c)
                    key = (str(d["dataset"]), kind, cfg)
                    run_fit = not (cfg == "dense" and nt > a.dense_max_nt)
                    reps = 2 if (a.repeat_first and key not in seen and run_fit) else 1
                    for r in range(reps):
                        cold = key not in seen
                        seen.add(key)
                        res = {}
                        try:
                            if r == 0:
                                res["eval_s"], res["loss0"] = eval_time(d, kind)
                            if run_fit:
                                res.update(fit_once(d, kind))
                            else:
                                res["skipped"] = f"N T = {nt} > --dense-max-nt {a.dense_max_nt}"
                        except Exception as exc:  # report, keep going
                            res["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                        res.update(file=str(f), kind=kind, config=cfg, cold=cold, repeat=r)
                        out.append(res)
                        print(f"    gpytorch {d['dataset']} {d['split']} {kind} {cfg}: "
                              + (f"fit {res['fit_s']:.2f} s, {res['n_iter']} iterations, {res['func_evals']} "
                                 "evaluations" if "fit_s" in res else res.get("error", res.get("skipped", ""))),
                              flush=True)
    import platform
    versions = {"torch": torch.__version__, "gpytorch": gpytorch.__version__, "python": platform.python_version(),
                "torch threads": torch.get_num_threads()}
    try:
        import linear_operator
        versions["linear_operator"] = linear_operator.__version__
    except Exception:
        pass
    Path(a.json).write_text(json.dumps({"runs": out, "versions": versions, "warmup_s": warmup_s}))


# ================================================================ peer set-up

def _find_cpu_wheel():
    """A torch-*+cpu wheel for this Python in pip's configured find-links folders."""
    dirs = [x for x in os.environ.get("PIP_FIND_LINKS", "").split() if x]
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                           env=_ENV0, timeout=60)
        for line in r.stdout.splitlines():
            if "find-links" in line:
                dirs += line.split("=", 1)[1].strip().strip("'\"").split()
    except (subprocess.SubprocessError, OSError):
        pass
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for d in dict.fromkeys(x.removeprefix("file://") for x in dirs):
        hits = sorted(glob.glob(os.path.join(d, f"torch-*+cpu-{tag}-{tag}-*linux*x86_64.whl")))
        if hits:
            return hits[-1]
    return None


def _pip(py, args, timeout=1800, env_extra=None, report=None):
    extra = ["--report", str(report)] if report else []
    return subprocess.run([str(py), "-m", "pip", "install", "-q", *extra, *args], env=dict(_ENV0, **(env_extra or {})),
                          capture_output=True, text=True, timeout=timeout)


def _torch_source(report):
    """Where pip took torch from (its --report JSON)."""
    try:
        for it in json.loads(Path(report).read_text()).get("install", []):
            if it.get("metadata", {}).get("name", "").lower() == "torch":
                return it.get("download_info", {}).get("url", "?")
    except (OSError, ValueError):
        pass
    return "?"


def _dir_size(path):
    total = 0
    for r, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(r, f))
            except OSError:
                pass
    return total


def peer_python(path=None):
    """(python, note, install_note): the interpreter that runs the peer
    (--peer-python, else the venv, created on first use); python is None
    when the peer cannot be run."""
    install = None
    if path is None:
        py = DEFAULT_VENV / "bin" / "python"
        if not py.exists():
            print(f"creating {DEFAULT_VENV} (python3 -m venv) and installing torch (CPU) + gpytorch ...", flush=True)
            report = DEFAULT_VENV.parent / ".gpytorch-pip-report.json"
            try:
                subprocess.run([sys.executable, "-m", "venv", str(DEFAULT_VENV)], check=True, env=_ENV0)
                tried = []
                # 1. the CPU wheel index, without the extra indexes of pip's configuration (which may offer the
                #    CUDA build); a configured find-links folder still takes part
                r = _pip(py, ["torch", "--index-url", CPU_INDEX], timeout=900, env_extra={"PIP_EXTRA_INDEX_URL": ""},
                         report=report)
                if r.returncode != 0:
                    tried.append(f"`pip install torch --index-url {CPU_INDEX}` failed")
                    wheel = _find_cpu_wheel()  # 2. a CPU wheel in pip's find-links folders, dependencies from PyPI
                    if wheel:
                        r = _pip(py, [wheel], report=report)
                    if not wheel or r.returncode != 0:  # 3. the default build (CUDA on Linux)
                        print("warning: no CPU build of torch found; plain `pip install torch` "
                              "(on Linux the CUDA build, several GB)", flush=True)
                        tried.append("no CPU wheel found in pip's find-links folders" if not wheel
                                     else f"`pip install {wheel}` failed")
                        r = _pip(py, ["torch"], report=report)
                src = _torch_source(report) if r.returncode == 0 else None
                if src and not tried and not src.startswith(CPU_INDEX.split("/whl")[0]):
                    tried.append(f"`pip install torch --index-url {CPU_INDEX}` took it from pip's find-links "
                                 "folder: the CPU index was unreachable or offered nothing newer")
                if r.returncode == 0:
                    r = _pip(py, ["gpytorch"])
            except (subprocess.SubprocessError, OSError) as e:
                shutil.rmtree(DEFAULT_VENV, ignore_errors=True)
                return None, f"could not create the peer's venv: {e}", None
            finally:
                report.unlink(missing_ok=True)
            if r.returncode != 0:
                shutil.rmtree(DEFAULT_VENV, ignore_errors=True)
                return None, "pip install failed: " + (r.stderr or r.stdout).strip()[-500:], None
            install = (f"`python3 -m venv`; torch from `{src}`" + (f" ({'; '.join(tried)})" if tried else "")
                       + "; then `pip install gpytorch` (dependencies from the package index)")
            (DEFAULT_VENV / INSTALL_NOTE).write_text(install + "\n")
        elif (DEFAULT_VENV / INSTALL_NOTE).exists():
            install = (DEFAULT_VENV / INSTALL_NOTE).read_text().strip()
        path = str(py)
    try:
        r = subprocess.run([path, "-c", "import torch, gpytorch; print(torch.__version__, gpytorch.__version__)"],
                           env=_ENV0, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot run {path}: {e}", install
    if r.returncode != 0:
        return None, f"{path} cannot import torch and gpytorch: " + r.stderr.strip()[-300:], install
    tv, gv = r.stdout.split()
    venv = Path(path).absolute().parents[1]
    size = _dir_size(venv) / 2**30 if (venv / "pyvenv.cfg").exists() else None
    note = f"torch {tv}, gpytorch {gv} (`{os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else path}`" + (
        f", venv {size:.1f} GiB)" if size else ")")
    return path, note, install


def run_peer(python, files, folder, max_iter, a, repeat_first):
    js = Path(folder) / "peer.json"
    cmd = [python, str(Path(__file__).resolve()), "_peer", "--json", str(js), "--max-iter", str(max_iter),
           "--max-cholesky-size", str(a.max_cholesky_size), "--configs", ",".join(a.peer_configs),
           "--dense-max-nt", str(a.dense_max_nt), "--threads", str(THREADS)]
    cmd += (["--repeat-first"] if repeat_first else []) + [str(f) for f in files]
    timeout = a.timeout
    load = _load()
    log = Path(folder) / "peer.stderr"
    t = time.perf_counter()
    try:
        with open(log, "w") as fh:
            r = subprocess.run(cmd, env=_ENV0, timeout=timeout, stderr=fh)
        ok = r.returncode == 0 and js.exists()
        err = None if ok else f"exit code {r.returncode}"
    except subprocess.TimeoutExpired:
        ok, err = False, f"ran past {timeout} s"
    if not ok:
        print(f"  peer failed ({err}); end of its stderr:\n" + log.read_text()[-3000:], flush=True)
    res = json.loads(js.read_text()) if ok else {"runs": [], "versions": {}, "error": err}
    res.update(process_s=time.perf_counter() - t, load=load)
    return res


# =============================================================== data, mtgp

def _initial_values(kernel, Xtr, Ytr, P):
    """mtgp's own starting point (ICM(rank=P, diagonal=True) and
    StructuredNoiseMTGP()), expressed in GPyTorch's parameters."""
    from mtgp.multioutput import ICM
    from mtgp.multioutput.base import MultiOutputGP

    b0, s20 = MultiOutputGP._init_scales(kernel, Xtr, Ytr)
    # the data start of ICM(start="both"); GPyTorch gets that one start
    x0, _ = ICM(kernel, rank=P, diagonal=True)._structure(np.asarray(Ytr), b0, s20, np.random.default_rng(0))
    return {"std_A": np.asarray(x0["A"]), "std_kappa": np.exp(np.asarray(x0["log_kappa"])), "std_s2": s20,
            # StructuredNoiseMTGP starts at C = diag(b0), Sigma = diag(s20): B B^T + diag(v) with v = 0.1 b0
            "sig_B": np.diag(np.sqrt(0.9 * b0)), "sig_v": 0.1 * b0, "sig_F": np.diag(np.sqrt(s20))}


def make_datasets(names, n_splits, reps, folder):
    """One .npz per (data set, split): the same splits as cool_mulan.py, the
    same synthetic draws as cool_synthetic.py (R = 10, seeds 10000 + rep)."""
    from cool_mulan import split
    from cool_synthetic import N_TRAIN, make_data
    from mtgp.datasets import load_mtr

    items = []
    for name in names:
        Xd, Yd = load_mtr(name)
        X, Y = Xd.to_numpy(float), Yd.to_numpy(float)
        X = X[:, X.std(0) > 0]
        for s in range(n_splits):
            Xtr, Ytr, Xte, Yte = split(X, Y, seed=s)
            items.append(dict(dataset=name, split=s, kernel="se", P=1, Xtr=Xtr, Ytr=Ytr, Xte=Xte, Yte=Yte,
                              ls0=float(np.sqrt(X.shape[1]))))
    for rep in range(reps):
        X, Y, _, _ = make_data(SYN_R, seed=10000 + rep)
        items.append(dict(dataset=f"synthetic R={SYN_R}", split=rep, kernel="linear", P=SYN_P,
                          Xtr=X[:N_TRAIN], Ytr=Y[:N_TRAIN], Xte=X[N_TRAIN:], Yte=Y[N_TRAIN:], ls0=np.nan))
    for i, it in enumerate(items):
        k = mtgp_kernel(it)
        it.update(_initial_values(k, it["Xtr"], it["Ytr"], it["P"]))
        it["file"] = str(Path(folder) / f"data{i:03d}.npz")
        np.savez(it["file"], **{k_: v for k_, v in it.items() if k_ != "file"})
    return items


def mtgp_kernel(it):
    from mtgp.kernels import SE, Linear

    return SE(lengthscale=it["ls0"]) if it["kernel"] == "se" else Linear()


def mtgp_models(it, max_iter):
    from mtgp.multioutput import CoolMTGP, ICM, StructuredNoiseMTGP

    k, P = mtgp_kernel(it), it["P"]
    return {("Std-MT", "mtgp ICM"): ICM(k, rank=P, max_iter=max_iter),
            ("Std-MT", "mtgp ICM diagonal=True"): ICM(k, rank=P, diagonal=True, max_iter=max_iter),
            ("Sigma-MT", "mtgp StructuredNoiseMTGP"): StructuredNoiseMTGP(k, max_iter=max_iter),
            ("Cool-MT (approx.)", "mtgp CoolMTGP"): CoolMTGP(k, method="approximate", max_iter=max_iter)}


def exact_ll(it, C, S, lengthscale):
    """mtgp's eq. (4) on the training data at the given C, Sigma and kernel."""
    import jax.numpy as jnp
    from mtgp.kernels import SE
    from mtgp.multioutput import mtgp_log_likelihood

    k = SE(lengthscale=lengthscale) if it["kernel"] == "se" else mtgp_kernel(it)
    X = jnp.asarray(it["Xtr"])
    K = k.evaluate(k.init_params(), X, X)
    return float(mtgp_log_likelihood(K, jnp.asarray(C), jnp.asarray(S), jnp.asarray(it["Ytr"])))


def exact_predict(it, C, S, lengthscale):
    """mtgp's exact predictive mean (eq. 5) at the given C, Sigma and kernel."""
    import jax.numpy as jnp
    from mtgp.kernels import SE
    from mtgp.multioutput import EigenPredictor

    k = SE(lengthscale=lengthscale) if it["kernel"] == "se" else mtgp_kernel(it)
    X, Xs = jnp.asarray(it["Xtr"]), jnp.asarray(it["Xte"])
    th = k.init_params()
    return np.asarray(EigenPredictor(k.evaluate(th, X, X), C, S, it["Ytr"], where="peer").mean(k.evaluate(th, Xs, X)))


def rmse(pred, Y):
    return float(np.mean(np.sqrt(np.mean((np.asarray(pred) - Y) ** 2, axis=0))))


def run_mtgp(items, max_iter, repeat_first):
    import mtgp  # noqa: F401  (float64 and XLA flags before JAX starts)

    import scipy.optimize as so

    # count mtgp's optimiser iterations and evaluations: minimize_host calls
    # scipy.optimize.minimize (looked up at call time); wrapped here only
    calls, original = [], so.minimize

    def counting_minimize(*args, **kw):
        res = original(*args, **kw)
        calls.append((int(res.nit), int(res.nfev), _scipy_stop(res.message)))
        return res

    so.minimize = counting_minimize
    try:
        return _run_mtgp(items, max_iter, repeat_first, calls)
    finally:
        so.minimize = original


def _scipy_stop(message):
    m = str(message).upper()
    for key, name in (("PROJECTED GRADIENT", "gradient"), ("RELATIVE REDUCTION", "ftol"), ("ITERATIONS", "max_iter"),
                      ("EVALUATIONS", "max_fun"), ("ABNORMAL", "line search failed")):
        if key in m:
            return name
    return m[:40]


def _run_mtgp(items, max_iter, repeat_first, calls):
    import warnings

    import mtgp

    rows, seen = [], set()
    for it in items:
        for (family, label), m in mtgp_models(it, max_iter).items():
            key = (it["dataset"], label)
            for r in range(2 if (repeat_first and key not in seen) else 1):
                cold = key not in seen
                seen.add(key)
                m_ = m if r == 0 else type(m)(**m.get_params())
                row = dict(dataset=it["dataset"], split=it["split"], family=family, library="mtgp", model=label,
                           cold=cold, repeat=r, n=len(it["Ytr"]), tasks=it["Ytr"].shape[1])
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", mtgp.DegenerateOutputsWarning)
                        del calls[:]
                        t = time.perf_counter()
                        m_.fit(it["Xtr"], it["Ytr"])
                        row["fit_s"] = time.perf_counter() - t
                        if calls:  # scipy's own counts (nfev includes the line searches' evaluations)
                            row.update(func_evals=sum(c[1] + 1 for c in calls), optimiser_calls=len(calls),
                                       stop="+".join(dict.fromkeys(c[2] for c in calls)))  # + minimize_host's f(x0)
                        t = time.perf_counter()
                        pred = m_.predict(it["Xte"]).mean
                        row["predict_s"] = time.perf_counter() - t
                    ls = None
                    if it["kernel"] == "se":
                        ls = float(m_.kernel_.lengthscale)
                    row.update(rmse=rmse(pred, it["Yte"]), n_iter=float(sum(c[0] for c in calls)) if calls else np.nan,
                               ll=exact_ll(it, m_.output_covariance_, m_.noise_covariance_, ls if ls else np.nan),
                               ll_own=float(m_.log_marginal_likelihood_), lengthscale=ls,
                               noise_min=float(np.linalg.eigvalsh(m_.noise_covariance_).min()))
                except Exception as exc:  # report, keep going
                    print(f"  mtgp {label} on {it['dataset']} {it['split']} failed: {exc}", flush=True)
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                rows.append(row)
                print(f"    mtgp {it['dataset']} {it['split']} {label}: fit {row.get('fit_s', np.nan):.2f} s, "
                      f"{row.get('n_iter')} iterations", flush=True)
    return rows


def peer_rows(res, items):
    """Rows of fits, and the per-evaluation timings (one per data set, model, configuration)."""
    by_file = {it["file"]: it for it in items}
    rows, evals = [], []
    label = {"std": ("Std-MT", "GPyTorch rank P + diag, rank-0 noise"),
             "sigma": ("Sigma-MT", "GPyTorch rank T + diag, rank-T noise")}
    for r in res["runs"]:
        it = by_file[r["file"]]
        family, name = label[r["kind"]]
        name = f"{name} [{r['config']}]"
        if "eval_s" in r:
            evals.append(dict(dataset=it["dataset"], split=it["split"], family=family, config=r["config"],
                              kind=r["kind"], nt=it["Ytr"].size, eval_s=r["eval_s"], loss0=r["loss0"]))
        if "skipped" in r:
            continue
        row = dict(dataset=it["dataset"], split=it["split"], family=family, library="GPyTorch", model=name,
                   config=r["config"], cold=r["cold"], repeat=r["repeat"], n=len(it["Ytr"]), tasks=it["Ytr"].shape[1])
        if "error" in r:
            row["error"] = r["error"]
            rows.append(row)
            continue
        C, S = np.array(r["C"]), np.array(r["Sigma"])
        ls = r["lengthscale"]
        row.update(fit_s=r["fit_s"], predict_s=r["predict_s"], rmse=rmse(r["mean"], it["Yte"]), n_iter=r["n_iter"],
                   func_evals=r["func_evals"], ll=exact_ll(it, C, S, ls if ls else np.nan), ll_own=r["ll_own"],
                   lengthscale=ls, numerical_warnings=r["n_numerical_warnings"], nonfinite=r["nonfinite"],
                   stop=r["stop"], grad_max=r["grad_max"], noise_min=float(np.linalg.eigvalsh(S).min()))
        try:  # consistency: mtgp's exact predictive at GPyTorch's parameters
            row["rmse_mtgp_at_peer"] = rmse(exact_predict(it, C, S, ls if ls else np.nan), it["Yte"])
        except Exception as exc:
            row["rmse_mtgp_at_peer"] = np.nan
            print(f"  mtgp predictive at GPyTorch's parameters failed: {exc}", flush=True)
        rows.append(row)
    return rows, evals


# ==================================================================== report

FAMILY_ORDER = ["Std-MT", "Sigma-MT", "Cool-MT (approx.)"]


def _f(x, d=2):
    return "-" if x is None or not np.isfinite(x) else f"{x:.{d}f}"


def _ms(x, d=2):
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if not x.size:
        return "-"
    return f"{x.mean():.{d}f} ± {x.std(ddof=1) if x.size > 1 else 0.0:.{d}f}"


def _ok(x):
    return x[x["error"].isna()] if "error" in x else x


def report(df, evals, args, wall, peer_note, install_note, versions, uptimes, max_iter, names, n_splits, reps):
    from _common import md_table, page_header
    import pandas as pd

    main_rows = df[df.repeat == 0]
    sets = list(dict.fromkeys(main_rows.dataset))
    tab, lltab, ttab, summary = [], [], [], []
    for ds in sets:
        d = main_rows[main_rows.dataset == ds]
        for fam in FAMILY_ORDER:
            for model in dict.fromkeys(d[d.family == fam].model):
                x = d[d.model == model]
                ok = _ok(x)
                nfail = len(x) - len(ok)
                notes = [f"{nfail} failed: {x.error.dropna().iloc[0][:80]}" if nfail else ""]
                if "numerical_warnings" in ok and ok.numerical_warnings.fillna(0).sum():
                    notes.append(f"{int(ok.numerical_warnings.sum())} jitter warning(s)")
                stops = ok.stop.dropna().value_counts() if "stop" in ok else pd.Series(dtype=int)
                tab.append([ds, fam, model, len(ok), _ms(ok.rmse, 3), _ms(ok.ll, 1), _ms(ok.ll / (ok.n * ok.tasks), 4),
                            _ms(ok.n_iter, 0), _ms(ok.func_evals, 0), ", ".join(f"{k} {v}" for k, v in stops.items()),
                            f"{ok.noise_min.min():.1e}" if "noise_min" in ok and ok.noise_min.notna().any() else "-",
                            "; ".join(n for n in notes if n)])
                allfits = _ok(df[(df.dataset == ds) & (df.model == model)])
                allfits = allfits[allfits.fit_s.notna()]
                cold, warm = allfits[allfits.cold], allfits[~allfits.cold]
                per_eval = (warm.fit_s / warm.func_evals) if len(warm) else (cold.fit_s / cold.func_evals)
                ttab.append([ds, fam, model, _f(cold.fit_s.iloc[0] if len(cold) else np.nan),
                             _f(warm.fit_s.median() if len(warm) else np.nan), len(warm),
                             _f(per_eval.median() * 1e3 if len(per_eval) else np.nan, 1),
                             _f(warm.predict_s.median() if len(warm) else np.nan, 3)])
        # paired by split: GPyTorch minus mtgp, same family
        for g_model in dict.fromkeys(d[d.library == "GPyTorch"].model):
            g = _ok(d[d.model == g_model]).set_index("split")
            fam = g.family.iloc[0] if len(g) else None
            refs = {"Std-MT": ["mtgp ICM diagonal=True", "mtgp ICM"],
                    "Sigma-MT": ["mtgp StructuredNoiseMTGP"]}.get(fam, [])
            for ref in refs:
                m = _ok(d[d.model == ref]).set_index("split")
                j = pd.merge(g[["ll", "rmse"]], m[["ll", "rmse"]], left_index=True, right_index=True,
                             suffixes=("_g", "_m")).dropna()
                if j.empty:
                    continue
                dll = j.ll_g - j.ll_m
                hi, eq, lo = int((dll > 0.01).sum()), int((dll.abs() <= 0.01).sum()), int((dll < -0.01).sum())
                lltab.append([ds, g_model, ref, len(j), ", ".join(f"{v:+.2f}" for v in dll), f"{hi} / {eq} / {lo}",
                              ", ".join(f"{v:+.3f}" for v in (j.rmse_g - j.rmse_m))])
                summary.append(dict(g_model=g_model, ref=ref, hi=hi, eq=eq, lo=lo))
    parts = []
    cons = _ok(df[df.library == "GPyTorch"]).dropna(subset=["ll", "ll_own"])
    if len(cons):
        dl = (cons.ll - cons.ll_own).abs()
        rel = dl / cons.ll_own.abs()
        dr = (cons.rmse - cons.rmse_mtgp_at_peer).abs()
        parts.append(f"Consistency check on all {len(cons)} GPyTorch fits: GPyTorch's own final log-likelihood "
                     f"(`ExactMarginalLogLikelihood` x N T) and mtgp's eq. (4) at GPyTorch's C, Sigma and lengthscale "
                     f"differ by at most {dl.max():.2g} (relative {rel.max():.1g}); the test RMSE of GPyTorch's "
                     f"predictive mean and of mtgp's eq. (5) mean at GPyTorch's parameters by at most {dr.max():.1g}. "
                     "The two libraries evaluate the same model in the same units.\n")
    if summary:
        sm = pd.DataFrame(summary).groupby(["g_model", "ref"], sort=False)[["hi", "eq", "lo"]].sum().reset_index()
        parts.append("Over all data sets (paired fits; GPyTorch higher / equal within 0.01 / lower log-likelihood):\n")
        parts.append(md_table(sm.rename(columns={"g_model": "GPyTorch model", "ref": "mtgp model",
                                                 "hi": "GPyTorch higher", "eq": "equal", "lo": "GPyTorch lower"})))
        parts.append("")
    ev_txt = []
    if evals:
        ev = pd.DataFrame(evals)
        ev = ev[ev.split == ev.groupby("dataset").split.transform("min")]
        piv = ev.pivot_table(index=["dataset", "nt", "family"], columns="config", values="eval_s", aggfunc="min",
                             sort=False).reset_index()
        piv.columns = [str(c) for c in piv.columns]
        cols = [c for c in ("kronecker", "dense") if c in piv]
        for c in cols:
            piv[c] = (piv[c] * 1e3).map("{:.1f}".format)
        piv = piv.rename(columns={"nt": "N T", **{c: f"{c} (ms)" for c in cols}})
        ev_txt = ["## GPyTorch: one objective + gradient evaluation at the start, by configuration\n",
                  "Minimum of 3 evaluations on the first split, milliseconds. `dense` (the no-approximation "
                  "settings) factorises the N T x N T covariance; `kronecker` (GPyTorch's defaults) works on the "
                  f"N x N and T x T factors. The `dense` configuration was fitted only where N T <= "
                  f"{args.dense_max_nt} (`--dense-max-nt`).\n", md_table(piv), ""]
    data_txt = []
    if names:
        data_txt.append(f"Mulan {', '.join(names)}: {n_splits} random 80/20 split(s) (seeds 0..{n_splits - 1}, "
                        "`split()` of cool_mulan.py, at most 800/200 rows), inputs and outputs standardised with "
                        "training statistics, isotropic SE kernel with initial lengthscale sqrt(D), Std-MT rank P = 1")
    if reps:
        data_txt.append(f"Sec. 5.1 synthetic data (`make_data(R={SYN_R}, seed=10000+rep)` of cool_synthetic.py, "
                        f"{reps} repetition(s), 100 train / 100 test, T = 15, D = 20), linear kernel, Std-MT rank "
                        f"P = {SYN_P}")
    md = [page_header("mtgp vs GPyTorch: exact multitask GPs (Std-MT / ICM, Sigma-MT)", quick=args.quick, elapsed=wall),
          f"Peer: {peer_note}." + (f" Installed: {install_note}." if install_note else ""),
          f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.\n",
          (f"Threads: {THREADS} per library (`--threads`: OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, "
           "XLA's intra-op pool, `torch.set_num_threads`). " if THREADS > 0 else "Threads: the libraries' defaults. ")
          + "Machine load (`uptime`) at the start of each block: " + "; ".join(f"{k}: `{v}`" for k, v in uptimes.items())
          + ". The machine has 2 cores and other jobs were running (see the load averages): timings are indicative "
          "only; the two libraries ran one after the other on the same shared cores.\n",
          "Data: " + "; ".join(data_txt) + ". Test RMSE on standardised outputs (synthetic: raw outputs), averaged "
          f"over tasks, mean ± sd over splits. L-BFGS budget max_iter = {max_iter} for every model. GPyTorch ran in "
          "two configurations (see below): `[kronecker]` = its default settings, `[dense]` = "
          "`fast_computations(False, False, False)` and `max_cholesky_size` "
          f"{args.max_cholesky_size}.\n",
          "## Test RMSE, training log-likelihood, iterations\n",
          "Log-likelihood: mtgp's exact eq. (4) at each fit's C, Sigma and kernel, summed over the N T training "
          "values (and per value). Evaluations: objective + gradient evaluations, line searches included "
          "(mtgp: scipy's `nfev` + 1; GPyTorch: `LBFGS` state `func_evals`). Stopped by (count of fits): "
          "`max_iter` the iteration budget; `gradient` largest gradient component <= 1e-6; mtgp `ftol` relative "
          "decrease <= 1e-12 (scipy's factr test), `line search failed` scipy's ABNORMAL_TERMINATION_IN_LNSRCH "
          "(20 evaluations without an acceptable step; mtgp keeps the best point evaluated); GPyTorch `max_eval` its cap of 1.25 max_iter evaluations, "
          "`tolerance_change` a step or loss change below 1e-9. Smallest noise eigenvalue: the smallest "
          "eigenvalue of the fitted Sigma over the splits (a noise variance collapsing to 0).\n",
          md_table(pd.DataFrame(tab, columns=["data set", "family", "model", "fits", "test RMSE",
                                              "log-lik. (sum)", "log-lik. per value", "iterations",
                                              "evaluations", "stopped by", "smallest noise eigenvalue", "notes"])),
          "",
          "## Paired by split: GPyTorch minus mtgp\n",
          "Positive log-likelihood difference: GPyTorch reached the higher likelihood. Counts: GPyTorch higher / "
          "equal (within 0.01) / lower.\n",
          md_table(pd.DataFrame(lltab, columns=["data set", "GPyTorch model", "mtgp model", "splits",
                                                "log-lik. difference, per split", "higher / equal / lower",
                                                "RMSE difference, per split"])),
          ""] + parts + [
          "## Fit and predict time\n",
          "Seconds. Cold: the first fit of that (data set, model) in its process (mtgp: JAX compilation included, "
          "persistent compilation cache off). Warm: median over the later fits (the other splits, same shapes; "
          "with a single split, a second fit of the same data). Per evaluation: warm fit time / evaluations, "
          "milliseconds (optimiser overhead included). Predict: median over the warm fits of the first prediction "
          "after the fit (mean and variances at the test inputs; GPyTorch builds its prediction caches there, "
          "mtgp's `fit` has already factorised).\n",
          md_table(pd.DataFrame(ttab, columns=["data set", "family", "model", "fit cold", "fit warm (median)",
                                               "warm fits", "per evaluation (ms)", "predict"])),
          ""] + ev_txt + [NOTES_MD.format(max_iter=max_iter, max_chol=args.max_cholesky_size,
                                          max_eval=int(max_iter * 1.25))]
    return "\n".join(md)


NOTES_MD = """## How the two sides were set up

* **Same data, same start.** Both libraries read the same arrays (the peer
  from `.npz` files). GPyTorch's parameters are set to mtgp's starting point:
  Std-MT `covar_factor` = mtgp's initial A (its `random_state=0` draw),
  IndexKernel `var` = mtgp's initial diagonal kappa (`ICM(diagonal=True)`),
  task noises = half of each output's variance; Sigma-MT C = diag(b0) (B =
  diag(sqrt(0.9 b0)), var = 0.1 b0), Sigma = diag(s0^2) (F = diag(s0)); the
  SE lengthscale sqrt(D). mtgp's `ICM(diagonal=False)` starts from the same A
  with no diagonal.
* **Same model.** Zero mean (`MultitaskMean(ZeroMean())`), no `ScaleKernel`
  (mtgp holds the kernel variance at 1; the IndexKernel carries the scale),
  `LinearKernel` variance fixed at 1. GPyTorch's IndexKernel is always
  C = B B^T + diag(v): with rank P it is mtgp's `ICM(rank=P, diagonal=True)`;
  `ICM(rank=P)` (the cool_mulan.py model, no diagonal) is the same model with
  v = 0. Std-MT noise: `MultitaskGaussianLikelihood(rank=0,
  has_global_noise=False)`, i.e. Sigma = diag(sigma_t^2) exactly as mtgp (the
  default global noise would add a redundant sigma^2 I). Sigma-MT:
  `rank=T` in both kernel and likelihood (free-form C, up to its redundant
  diagonal, and Sigma = F F^T), `has_global_noise=False`.
* **Parameterisation differs.** GPyTorch maps positive parameters through
  softplus and bounds the Std-MT task noises below by 1e-4 (`GreaterThan`);
  mtgp uses logs (no floor) and Cholesky factors with log diagonals for
  Sigma-MT. Same model, different optimisation landscape.
* **Same objective.** Both minimise the negative log-likelihood divided by
  N T (`ExactMarginalLogLikelihood` divides by the number of observations).
  The log-likelihoods in the tables are all evaluated by mtgp's exact eq. (4)
  at each fit's C, Sigma and kernel (for GPyTorch: `task_covar_module`'s
  B B^T + diag(v), the likelihood's `task_noises` / `task_noise_covar`, the
  RBF lengthscale); the consistency line above compares with GPyTorch's own
  value.
* **Same budget, different optimisers.** mtgp: scipy L-BFGS-B, at most
  {max_iter} iterations, at most 20 evaluations per line search, stop when the
  largest gradient component is below 1e-6 or the relative decrease below
  1e-12. GPyTorch: one `step` of `torch.optim.LBFGS(lr=1, max_iter={max_iter},
  history_size=10, line_search_fn="strong_wolfe", tolerance_grad=1e-6)`, whose
  other defaults matter: `tolerance_change=1e-9` (stops when a step changes
  the loss or the parameters by less) and `max_eval = 1.25 max_iter`
  (at most {max_eval} objective evaluations in all, line searches included).
* **No approximations, two ways.** `[dense]`: the settings that switch
  every approximation off, `gpytorch.settings.fast_computations(False, False,
  False)` (no conjugate gradients, Lanczos, stochastic log-determinants or
  low-rank root decompositions) and `max_cholesky_size({max_chol})`. With
  `log_prob` off, GPyTorch's `MultivariateNormal.log_prob` falls back to
  torch's dense one: the N T x N T covariance is formed and factorised by
  Cholesky in every evaluation, O(N^3 T^3), and its backward pass solves with
  the N T x N T identity; `max_cholesky_size` then makes no difference.
  `[kronecker]`: GPyTorch's defaults. The multitask covariance is a
  `KroneckerProductAddedDiagLinearOperator` (rank-0 noise) or a
  `SumKroneckerLinearOperator` (rank-T noise), whose solves and
  log-determinants are exact eigendecompositions of the N x N and T x T
  factors (the Rakitsch et al. 2013 identity, as mtgp's), with a dense
  Cholesky below `max_cholesky_size` (800 values); no iterative method is
  used for these operators at these sizes. Both are exact: the consistency
  check above is made in each fit's own configuration, and the objective at
  the start agrees between the two to rounding. GPyTorch's Cholesky adds
  jitter when a factorisation fails (counted in the raw CSV,
  `numerical_warnings`).
* **Not run**: scm20d (N = 800, T = 16, N T = 12800): the `[dense]`
  factorisation is out of reach, and one `[kronecker]` evaluation of the
  Std-MT objective took about 6 s here (Sigma-MT about 0.6 s), i.e. up to
  25 minutes per fit with its {max_eval} evaluations; the data set can be
  added with `--datasets scm20d --peer-configs kronecker`.
"""


# ====================================================================== main

def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "_peer":
        return _peer_worker(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="slump, 1 split, max_iter 20, no synthetic data; skips the "
                   "peer if it cannot be installed")
    p.add_argument("--datasets", nargs="*", default=None, help=f"Mulan sets (default {' '.join(MULAN_SETS)})")
    p.add_argument("--splits", type=int, default=None, help="splits per Mulan set (default 3)")
    p.add_argument("--reps", type=int, default=None, help="synthetic repetitions (default 3; 0: none)")
    p.add_argument("--max-iter", type=int, default=None, help="L-BFGS iterations, both libraries (default 200)")
    p.add_argument("--max-cholesky-size", type=int, default=10**9,
                   help="GPyTorch max_cholesky_size in the 'dense' configuration (default 10**9; with "
                        "fast_computations off the log-likelihood is dense whatever this is)")
    p.add_argument("--peer-configs", nargs="+", default=["kronecker", "dense"], choices=["kronecker", "dense"],
                   help="GPyTorch settings to run: 'dense' = fast_computations(False, False, False) and "
                        "max_cholesky_size(--max-cholesky-size); 'kronecker' = GPyTorch's defaults")
    p.add_argument("--dense-max-nt", type=int, default=None,
                   help="fit the 'dense' configuration only where N T <= this (default 1000; quick: no limit); "
                        "above it only one objective evaluation is timed")
    p.add_argument("--threads", type=int, default=1,
                   help="threads of every BLAS / LAPACK / XLA / torch pool, both libraries (default 1; 0: the "
                        "libraries' defaults). On a shared machine multithreaded OpenBLAS made one 614 x 614 "
                        "eigendecomposition 100x slower (see the page)")
    p.add_argument("--peer-python", default=None, help="interpreter with torch and gpytorch (default: "
                   "benchmarks/.gpytorch-venv, created if missing)")
    p.add_argument("--no-mtgp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=int, default=3600, help="seconds for the peer's process")
    p.add_argument("--out", default=None, help="output folder (default docs/results)")
    a = p.parse_args(argv)

    os.environ.setdefault("MTGP_CACHE_DIR", "off")  # cold fits include compilation
    sys.path.insert(0, str(HERE))
    from _common import out_dir
    import pandas as pd

    names = a.datasets if a.datasets is not None else (["slump"] if a.quick else MULAN_SETS)
    n_splits = a.splits or (1 if a.quick else 3)
    reps = a.reps if a.reps is not None else (0 if a.quick else 3)
    max_iter = a.max_iter or (20 if a.quick else 200)
    repeat_first = n_splits == 1 and (reps <= 1)
    if a.dense_max_nt is None:
        a.dense_max_nt = 10**9 if a.quick else 1000
    out = out_dir(a.out)
    t0 = time.perf_counter()
    uptimes = {}

    def up(tag):
        try:
            uptimes[tag] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        except OSError:
            uptimes[tag] = f"load {_load()}"

    up("start")
    py, peer_note, install_note = peer_python(a.peer_python)
    if py is None:
        if not a.quick:
            sys.exit(f"GPyTorch cannot be run: {peer_note} (use --peer-python, or --quick to skip it)")
        print(f"skipping GPyTorch: {peer_note}", flush=True)
        peer_note = f"**GPyTorch not run** ({peer_note}); mtgp rows only"
    else:
        print(f"peer: {peer_note}", flush=True)

    import jax

    versions = {"jax": jax.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        items = make_datasets(names, n_splits, reps, tmp)
        rows, evals = [], []
        if py is not None:
            up("GPyTorch")
            print(f"GPyTorch: {len(items)} data sets (load {_load()})", flush=True)
            res = run_peer(py, [it["file"] for it in items], tmp, max_iter, a, repeat_first)
            if not res["runs"]:
                sys.exit(f"the peer's process failed: {res.get('error')}")
            versions.update({k: v for k, v in res["versions"].items() if k != "python"})
            versions["peer python"] = res["versions"].get("python")
            versions["GPyTorch process warm-up (s, untimed)"] = f"{res.get('warmup_s', float('nan')):.2f}"
            prow, evals = peer_rows(res, items)
            rows += prow
        if not a.no_mtgp:
            up("mtgp")
            print(f"mtgp: {len(items)} data sets (load {_load()})", flush=True)
            rows += run_mtgp(items, max_iter, repeat_first)
    import platform
    versions["python"] = platform.python_version()
    df = pd.DataFrame(rows)
    for c in ("error", "rmse", "ll", "ll_own", "fit_s", "predict_s", "n_iter", "func_evals", "rmse_mtgp_at_peer",
              "stop", "noise_min"):
        if c not in df:
            df[c] = np.nan
    wall = time.perf_counter() - t0
    page = report(df, evals, a, wall, peer_note, install_note, versions, uptimes, max_iter, names, n_splits, reps)
    stem = "cool_gpytorch_peer_quick" if a.quick else "cool_gpytorch_peer"
    (out / f"{stem}.md").write_text(page + "\n")
    df.to_csv(out / f"{stem}_raw.csv", index=False)
    print(page)
    print(f"wrote {out / stem}.md ({wall:.0f} s)")


if __name__ == "__main__":
    main()
