"""Sec. 5.4 of García-Hinde et al. (2022): fit time and test MSE against the
training size N on scm20d with 4 outputs (the first four) and a linear
kernel. mtgp's ~Cool, HCool, Std-MT (``ICM(rank=4)``) and Sigma-MT, 50
L-BFGS iterations each (the paper's budget for Std-MT and ~Cool), beside
GPyTorch's Std-MT (``MultitaskKernel(LinearKernel, rank=4)`` + IndexKernel's
diagonal, per-output noise) and Sigma-MT (rank-T task and noise
covariances), 50 iterations of ``torch.optim.LBFGS``, its exact Kronecker
algebra,
run through ``cool_gpytorch_peer.py``'s worker in its own virtualenv.
Conv-MT (the paper runs it with MOGPTK) is not here: the MOGPTK wheel the
package index offers (0.5.3) does not install (two .dist-info folders in one
wheel).

Inputs and outputs standardised with training statistics; test set: 500
rows not used for training (the same for every N); training rows: the first
N of one random permutation (nested sets). Fit time: one process, the first
fit of each N includes JAX's compilation for that shape ("cold"); the page
also gives a second, warm fit of the same data.

    python3 benchmarks/cool_scaling_n.py                       # N = 250, 500, 1000, 2000, 4000
    python3 benchmarks/cool_scaling_n.py --quick               # CI: N = 100, 200, no peer
    python3 benchmarks/cool_scaling_n.py --sizes 200 800 --peer-python /path/to/python
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd

from _common import md_table, out_dir, page_header
from cool_gpytorch_peer import _initial_values, peer_python, run_peer

from mtgp.datasets import load_mtr
from mtgp.kernels import Linear
from mtgp.multioutput import CoolMTGP, ICM, StructuredNoiseMTGP

N_OUTPUTS, N_TEST, BUDGET = 4, 500, 50


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
            f"Std-MT (P={N_OUTPUTS})": ICM(k, rank=N_OUTPUTS, max_iter=max_iter),
            "Sigma-MT": StructuredNoiseMTGP(k, max_iter=max_iter)}


def wide(df, value):
    """One row per N, one column per (library, model)."""
    t = df.pivot_table(index="N", columns=["library", "model"], values=value)
    t.columns = [f"{lib} {model}" for lib, model in t.columns]
    t.index = t.index.astype(int).astype(str)
    return t.reset_index()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", nargs="*", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=BUDGET)
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    sizes = args.sizes or ([100, 200] if args.quick else [250, 500, 1000, 2000, 4000])
    X, Y, names = data()
    t0 = time.perf_counter()
    rows, items = [], []
    for n in sizes:
        Xtr, Ytr, Xte, Yte = standardise(X, Y, n)
        for name, m in models(args.max_iter).items():
            times = []
            for _ in range(2):  # cold (compilation for this shape), then warm
                t = time.perf_counter()
                m.fit(Xtr, Ytr)
                times.append(time.perf_counter() - t)
            mse = float(np.mean((m.predict(Xte).mean - Yte) ** 2))
            rows.append(dict(N=n, model=name, library="mtgp", fit_cold_s=times[0], fit_warm_s=times[1], mse=mse,
                             n_iter=m.fit_info_["n_iter"]))
        items.append(dict(dataset=f"scm20d N={n}", split=n, kernel="linear", P=N_OUTPUTS, Xtr=Xtr, Ytr=Ytr, Xte=Xte,
                          Yte=Yte, ls0=np.nan, **_initial_values(Linear(), Xtr, Ytr, N_OUTPUTS)))
        print(f"N = {n}: mtgp done ({time.perf_counter() - t0:.0f} s)", flush=True)
    peer_note = "not run"
    if not args.no_peer and (args.peer_python or not args.quick):
        py, peer_note, _ = peer_python(args.peer_python)
        if py is not None:
            with tempfile.TemporaryDirectory() as tmp:
                for i, it in enumerate(items):
                    it["file"] = os.path.join(tmp, f"n{i}.npz")
                    np.savez(it["file"], **{k: v for k, v in it.items() if k != "file"})
                a = SimpleNamespace(max_cholesky_size=800, peer_configs=["kronecker"], dense_max_nt=0, timeout=7200)
                res = run_peer(py, [it["file"] for it in items], tmp, args.max_iter, a, repeat_first=True)
            by_file = {it["file"]: it for it in items}
            fits = {}
            for r in res["runs"]:
                if "fit_s" in r:
                    fits.setdefault((r["file"], r["kind"]), []).append(r)
            for (f, kind), rs in fits.items():
                it = by_file[f]
                mse = float(np.mean((np.asarray(rs[-1]["mean"]) - it["Yte"]) ** 2))
                name = f"Std-MT (P={N_OUTPUTS})" if kind == "std" else "Sigma-MT"
                rows.append(dict(N=len(it["Ytr"]), model=name, library="GPyTorch",
                                 fit_cold_s=rs[0]["fit_s"], fit_warm_s=rs[-1]["fit_s"], mse=mse,
                                 n_iter=rs[-1]["n_iter"]))
    df = pd.DataFrame(rows)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    md = [page_header("Cool-MTGP, Sec. 5.4: fit time and MSE against N (scm20d, 4 outputs, linear kernel)",
                      quick=args.quick, elapsed=time.perf_counter() - t0),
          f"Outputs {', '.join(names)}; {N_TEST} test rows; L-BFGS budget {args.max_iter} iterations for every "
          f"model; GPyTorch: {peer_note}. Load average at the end of the run: {load} (a shared machine: the "
          "times are loaded timings, their ratios more than their values). Test MSE on standardised outputs, "
          "averaged over outputs.\n",
          "## Test MSE\n", md_table(wide(df, "mse"), ".4f"),
          "\n## Fit time, warm (s)\n", md_table(wide(df, "fit_warm_s"), ".2f"),
          "\n## Fit time, cold (s; mtgp: JAX compilation for the shape included)\n",
          md_table(wide(df, "fit_cold_s"), ".2f")]
    text = "\n".join(md)
    (out / "cool_scaling_n.md").write_text(text + "\n")
    df.to_csv(out / "cool_scaling_n_raw.csv", index=False)
    print(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_peer"]:
        raise SystemExit("the peer worker is cool_gpytorch_peer.py's")
    main()
