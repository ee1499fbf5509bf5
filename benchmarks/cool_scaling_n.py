"""Sec. 5.4 of García-Hinde et al. (2022): fit time and test MSE against the
training size N on scm20d with 4 outputs (the first four) and a linear
kernel (the paper's Fig. 7). mtgp's ~Cool, HCool, Std-MT (``ICM(rank=4)``)
and Sigma-MT, 50 L-BFGS iterations each (the paper's budget for Std-MT and
~Cool), beside GPyTorch's Std-MT (``MultitaskKernel(LinearKernel, rank=4)``
+ IndexKernel's diagonal, per-output noise) and Sigma-MT (rank-T task and
noise covariances), 50 iterations of ``torch.optim.LBFGS``, its exact
Kronecker algebra, run through ``cool_gpytorch_peer.py``'s worker in its own
virtualenv (``--peer-python``), and Conv-MT through MOGPTK's ``CONV`` model
(sparse, inducing points at 50% of N, 200 Adam iterations, the paper's
budget), run through ``cool_convmt_peer.py``'s worker in its own virtualenv
(``--convmt-python``).

Inputs and outputs standardised with training statistics; test set: 500
rows not used for training (the same for every N); training rows: the first
N of one random permutation (nested sets). Every fit is single-threaded (the
paper: "a single core"). Timing: mtgp and GPyTorch fit each N twice in a
row: "cold" is the first fit (mtgp: JAX compilation for that shape
included), "warm" the second. Conv-MT fits each N once (no compilation in
eager PyTorch; its time is both). The grid is walked in increasing N, one
size at a time for every library; with ``--budget-s`` no new fit is started
for a library once its predicted time (its last time times (N / N_last)^3)
would pass the budget, and the CSV and page are rewritten after every N.
The page fits log(time) = a + b log(N) per model over N >= 500 (all N when
fewer than two): b is the empirical scaling exponent.

    python3 benchmarks/cool_scaling_n.py                       # N = 250, 500, 1000, 2000, 4000
    python3 benchmarks/cool_scaling_n.py --quick               # CI: N = 100, 200, no peers
    python3 benchmarks/cool_scaling_n.py --sizes 200 800 --peer-python /path/to/python --convmt-python /path/to/py
    python3 benchmarks/cool_scaling_n.py --merge a/cool_scaling_n_raw.csv b/cool_scaling_n_raw.csv  # page only
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # single-threaded BLAS and XLA, before numpy / jax load (the paper: one core)
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "1")
    if "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

import argparse
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd

from _common import md_table, out_dir, page_header
from cool_convmt_peer import convmt_note, run_convmt
from cool_gpytorch_peer import _initial_values, peer_python, run_peer

from mtgp.datasets import load_mtr
from mtgp.kernels import Linear
from mtgp.multioutput import CoolMTGP, ICM, StructuredNoiseMTGP

N_OUTPUTS, N_TEST, BUDGET, CONV_ITERS = 4, 500, 50, 200
STD = f"Std-MT (P={N_OUTPUTS})"
LIBRARIES = ("mtgp", "GPyTorch", "MOGPTK")
ORDER = [("mtgp", "~Cool"), ("mtgp", "HCool"), ("mtgp", STD), ("mtgp", "Sigma-MT"), ("GPyTorch", STD),
         ("GPyTorch", "Sigma-MT"), ("MOGPTK", "Conv-MT")]


def data(seed=0):
    Xd, Yd = load_mtr("scm20d")
    X, Y = Xd.to_numpy(float), Yd.to_numpy(float)[:, :N_OUTPUTS]
    X = X[:, X.std(0) > 0]
    idx = np.random.default_rng(seed).permutation(len(X))
    return X[idx], Y[idx], [str(c) for c in Yd.columns[:N_OUTPUTS]]


def standardise(X, Y, n):
    tr, te = slice(N_TEST, N_TEST + n), slice(0, N_TEST)
    mx, sx = X[tr].mean(0), X[tr].std(0)
    sx[sx == 0] = 1.0
    my, sy = Y[tr].mean(0), Y[tr].std(0)
    return (X[tr] - mx) / sx, (Y[tr] - my) / sy, (X[te] - mx) / sx, (Y[te] - my) / sy


def models(max_iter):
    k = Linear()
    return {"~Cool": CoolMTGP(k, method="approximate", max_iter=max_iter),
            "HCool": CoolMTGP(k, max_iter=max_iter),
            STD: ICM(k, rank=N_OUTPUTS, max_iter=max_iter),
            "Sigma-MT": StructuredNoiseMTGP(k, max_iter=max_iter)}


def wide(df, value):
    """One row per N, one column per (library, model) in ORDER."""
    t = df.pivot_table(index="N", columns=["library", "model"], values=value)
    t = t[[c for c in ORDER if c in t.columns]]
    t.columns = [f"{lib} {model}" for lib, model in t.columns]
    t.index = t.index.astype(int).astype(str)
    return t.reset_index().astype(object).where(lambda x: x.notna(), "-")


def exponents(df, n_min=500, value="fit_warm_s"):
    """Least-squares slope b of log(warm fit time) on log(N), per model, over
    N >= n_min (all N when fewer than two sizes are there)."""
    rows = []
    for (lib, model), d in df.groupby(["library", "model"]):
        d = d.dropna(subset=[value])
        use = d[d.N >= n_min] if (d.N >= n_min).sum() >= 2 else d
        if len(use) >= 2:
            b = np.polyfit(np.log(use.N), np.log(use[value]), 1)[0]
            rows.append({"library model": f"{lib} {model}", "N range": f"{use.N.min()}-{use.N.max()}",
                         "sizes": len(use), "exponent b": b})
    key = {f"{lib} {m}": i for i, (lib, m) in enumerate(ORDER)}
    return pd.DataFrame(rows).sort_values("library model", key=lambda s: s.map(key)) if rows else pd.DataFrame()


class Budget:
    """Which library may start a fit at N (see the module docstring)."""

    def __init__(self, seconds, t0):
        self.seconds, self.t0, self.last = seconds, t0, {}

    def left(self):
        return np.inf if self.seconds is None else self.seconds - (time.perf_counter() - self.t0)

    def allows(self, lib, n):
        if lib not in self.last:
            return self.left() > 0
        n0, s0 = self.last[lib]
        return s0 * (n / n0) ** 3 < self.left()

    def record(self, lib, n, seconds):
        self.last[lib] = (n, seconds)


def run_mtgp(rows, n, Xtr, Ytr, Xte, Yte, max_iter):
    for name, m in models(max_iter).items():
        times, cpu = [], []
        for _ in range(2):  # cold (compilation for this shape), then warm
            t, c = time.perf_counter(), time.process_time()
            m.fit(Xtr, Ytr)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        mse = float(np.mean((m.predict(Xte).mean - Yte) ** 2))
        rows.append(dict(N=n, model=name, library="mtgp", fit_cold_s=times[0], fit_warm_s=times[1], mse=mse,
                         n_iter=m.fit_info_["n_iter"], fit_warm_cpu_s=cpu[1]))


def run_gpytorch(rows, n, item, py, tmp, max_iter, timeout):
    f = os.path.join(tmp, f"n{n}.npz")
    np.savez(f, **item)
    a = SimpleNamespace(max_cholesky_size=800, peer_configs=["kronecker"], dense_max_nt=0, timeout=timeout)
    res = run_peer(py, [f], tmp, max_iter, a, repeat_first=True)
    fits = {}
    for r in res["runs"]:
        if "fit_s" in r:
            fits.setdefault(r["kind"], []).append(r)
    for kind, rs in fits.items():
        mse = float(np.mean((np.asarray(rs[-1]["mean"]) - item["Yte"]) ** 2))
        rows.append(dict(N=n, model=STD if kind == "std" else "Sigma-MT", library="GPyTorch",
                         fit_cold_s=rs[0]["fit_s"], fit_warm_s=rs[-1]["fit_s"], mse=mse, n_iter=rs[-1]["n_iter"],
                         fit_warm_cpu_s=rs[-1].get("cpu_s", np.nan)))
    return res.get("error")


def run_conv(rows, n, item, py, tmp, timeout):
    f = os.path.join(tmp, f"conv{n}.npz")
    np.savez(f, Xtr=item["Xtr"], Ytr=item["Ytr"], Xte=item["Xte"])
    res = run_convmt(py, [f], tmp, timeout, iters=CONV_ITERS)
    for r in res["runs"]:
        if "fit_s" in r:
            mse = float(np.mean((np.asarray(r["mean"]) - item["Yte"]) ** 2))
            rows.append(dict(N=n, model="Conv-MT", library="MOGPTK", fit_cold_s=r["fit_s"], fit_warm_s=r["fit_s"],
                             mse=mse, n_iter=r["n_iter"], fit_warm_cpu_s=r.get("cpu_s", np.nan)))
        else:
            return r.get("error")
    return res.get("error")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", nargs="*", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=BUDGET)
    ap.add_argument("--peer-python", default=None, help="GPyTorch's virtualenv (default: cool_gpytorch_peer.py's)")
    ap.add_argument("--no-peer", action="store_true", help="no GPyTorch")
    ap.add_argument("--convmt-python", default=None, help="MOGPTK's virtualenv (see cool_convmt_peer.py); "
                    "no Conv-MT without it")
    ap.add_argument("--libraries", nargs="*", default=list(LIBRARIES), choices=LIBRARIES)
    ap.add_argument("--budget-s", type=float, default=None, help="start no fit predicted to end past this")
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="*", default=None, metavar="CSV", help="page from earlier raw CSVs, no fitting")
    ap.add_argument("--note", default=None, help="a paragraph for the page")
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    stem = "cool_scaling_n_quick" if args.quick else "cool_scaling_n"
    t0 = time.perf_counter()
    if args.merge:
        df = pd.concat([pd.read_csv(f) for f in args.merge], ignore_index=True)
        df = df.drop_duplicates(["N", "library", "model"], keep="last")
        names = [str(c) for c in load_mtr("scm20d")[1].columns[:N_OUTPUTS]]
        return report(df, out, stem, args, time.perf_counter() - t0, names, sources=args.merge)
    sizes = args.sizes or ([100, 200] if args.quick else [250, 500, 1000, 2000, 4000])
    libs = set(args.libraries)
    X, Y, names = data()
    budget = Budget(args.budget_s, t0)
    notes = {"GPyTorch": "not run", "MOGPTK": "not run (no --convmt-python)"}
    gpy = None
    if "GPyTorch" in libs and not args.no_peer and (args.peer_python or not args.quick):
        gpy, notes["GPyTorch"], _ = peer_python(args.peer_python)
    if "MOGPTK" in libs and args.convmt_python:
        notes["MOGPTK"] = convmt_note(args.convmt_python)
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            Xtr, Ytr, Xte, Yte = standardise(X, Y, n)
            item = dict(dataset=f"scm20d N={n}", split=n, kernel="linear", P=N_OUTPUTS, Xtr=Xtr, Ytr=Ytr, Xte=Xte,
                        Yte=Yte, ls0=np.nan, **_initial_values(Linear(), Xtr, Ytr, N_OUTPUTS))
            for lib, go in (("mtgp", "mtgp" in libs), ("GPyTorch", gpy is not None),
                            ("MOGPTK", "MOGPTK" in libs and args.convmt_python is not None)):
                if not go:
                    continue
                if not budget.allows(lib, n):
                    skipped.append(f"{lib} at N = {n}")
                    continue
                t = time.perf_counter()
                timeout = max(60.0, min(7200.0, budget.left()))
                if lib == "mtgp":
                    run_mtgp(rows, n, Xtr, Ytr, Xte, Yte, args.max_iter)
                    err = None
                elif lib == "GPyTorch":
                    err = run_gpytorch(rows, n, item, gpy, tmp, args.max_iter, timeout)
                else:
                    err = run_conv(rows, n, item, args.convmt_python, tmp, timeout)
                if err:
                    skipped.append(f"{lib} at N = {n} ({err})")
                budget.record(lib, n, time.perf_counter() - t if not err else np.inf)
                print(f"N = {n}: {lib} done ({time.perf_counter() - t0:.0f} s)", flush=True)
            report(pd.DataFrame(rows), out, stem, args, time.perf_counter() - t0, names, notes=notes,
                   skipped=skipped, sizes=sizes)
    return report(pd.DataFrame(rows), out, stem, args, time.perf_counter() - t0, names, notes=notes,
                  skipped=skipped, sizes=sizes, final=True)


def report(df, out, stem, args, elapsed, names, notes=None, skipped=(), sizes=None, sources=None, final=False):
    """Markdown page, raw CSV and figure (Fig. 7's two panels) from the rows."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    md = [page_header("Cool-MTGP, Sec. 5.4: fit time and MSE against N (scm20d, 4 outputs, linear kernel)",
                      quick=args.quick, elapsed=elapsed)]
    if sources:
        md.append("Merged from the raw rows of: " + ", ".join(f"`{s}`" for s in sources) + ".\n")
    if args.note:
        md.append(args.note + "\n")
    if not final and not sources:
        md.append(f"**Partial: written after each N; the run was still going (sizes asked: {sizes}).**\n")
    versions = f" GPyTorch: {notes['GPyTorch']}. Conv-MT: {notes['MOGPTK']}." if notes else ""
    md.append(f"Outputs {', '.join(names)}; {N_TEST} test rows; L-BFGS budget {args.max_iter} iterations for "
              f"mtgp and GPyTorch; Conv-MT {CONV_ITERS} Adam iterations, inducing points 50% of N per output."
              f"{versions}\n")
    md.append(f"Load average at the end of the run: {load}. **A loaded, shared machine (2 cores, other jobs "
              "running): the times are loaded timings, their ratios and slopes more than their values.** "
              "Test MSE on standardised outputs, averaged over outputs. Raw rows: "
              f"`{stem}_raw.csv`; figure: `{stem}.png`.\n")
    if skipped:
        md.append("Not run (time budget, or failed): " + "; ".join(skipped) + ".\n")
    if len(df):
        md += ["## Test MSE\n", md_table(wide(df, "mse"), ".4f"),
               "\n## Fit time, warm (s)\n", md_table(wide(df, "fit_warm_s"), ".2f")]
        if "fit_warm_cpu_s" in df and df["fit_warm_cpu_s"].notna().any():
            md += ["\n## CPU time of the warm fit (s; single-threaded, so less sensitive to the load than the "
                   "wall time)\n", md_table(wide(df, "fit_warm_cpu_s"), ".2f")]
        md += ["\n## Fit time, cold (s; mtgp: JAX compilation for the shape included)\n",
               md_table(wide(df, "fit_cold_s"), ".2f")]
        ex = exponents(df)
        if len(ex):
            if "fit_warm_cpu_s" in df and df["fit_warm_cpu_s"].notna().any():
                cpu = exponents(df, value="fit_warm_cpu_s")[["library model", "exponent b"]]
                ex = ex.merge(cpu.rename(columns={"exponent b": "exponent b (CPU time)"}), how="left")
            md += ["\n## Scaling exponents of the warm fit time\n",
                   "Slope b of log(time) against log(N) (time ~ N^b), least squares over the sizes shown "
                   "(N >= 500 where two or more such sizes were run).\n",
                   md_table(ex, ".2f")]
    text = "\n".join(md)
    (out / f"{stem}.md").write_text(text + "\n")
    df.to_csv(out / f"{stem}_raw.csv", index=False)
    if len(df):
        plot(df, out / f"{stem}.png")
    if final or sources:
        print(text)
    return df


def plot(df, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu = "fit_warm_cpu_s" in df and df["fit_warm_cpu_s"].notna().any()
    fig, axes = plt.subplots(1, 3 if cpu else 2, figsize=(15 if cpu else 11, 4))
    a1, a2 = axes[0], axes[-1]
    for lib, model in ORDER:
        d = df[(df.library == lib) & (df.model == model)].sort_values("N")
        if not len(d):
            continue
        style = dict(marker="o" if lib == "mtgp" else "s" if lib == "GPyTorch" else "^",
                     ls="-" if lib == "mtgp" else "--" if lib == "GPyTorch" else ":", label=f"{lib} {model}")
        a1.plot(d.N, d.fit_warm_s, **style)
        a2.plot(d.N, d.mse, **style)
        if cpu:
            axes[1].plot(d.N, d.fit_warm_cpu_s, **style)
    a1.set(xscale="log", yscale="log", xlabel="N (training size)", ylabel="fit time, warm (s, loaded machine)",
           title="Runtime (wall)")
    if cpu:
        axes[1].set(xscale="log", yscale="log", xlabel="N (training size)", ylabel="CPU time of the warm fit (s)",
                    title="Runtime (CPU, one thread)")
    a2.set(xscale="log", xlabel="N (training size)", ylabel="test MSE (standardised)", title="MSE")
    a1.legend(fontsize=7)
    fig.suptitle("scm20d, 4 outputs, linear kernel (cf. the paper's Fig. 7)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_peer"]:
        raise SystemExit("the peer workers are cool_gpytorch_peer.py's and cool_convmt_peer.py's")
    main()
