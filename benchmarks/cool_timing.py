"""Fit and predict times of the multi-output models at the size of the
Cool-MTGP paper's Sec. 5.1 (T = 15, 100 training / 100 test points, linear
kernel, C and Sigma of rank 10), and how Cool's fit time grows with N.

First fit of each model in the process (compilation included) and the median
of the later fits on fresh data sets of the same shapes (warm); predict time
(means and per-point T x T covariances at the 100 test points) warm.

    python3 benchmarks/cool_timing.py            # 5 warm repetitions; N = 100 .. 1600 for Cool
    python3 benchmarks/cool_timing.py --quick    # CI: 1 warm repetition, no N sweep

Writes ``cool_timing.md`` into ``--out`` (default docs/results).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

from _common import Timer, md_table, out_dir, page_header

from cool_synthetic import N_TEST, N_TRAIN, T, make_data

from mtgp.kernels import Linear
from mtgp import DegenerateOutputsWarning
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP


def models(max_iter):
    return {"Indep. GPs": lambda: IndependentGPs(Linear(), max_iter=max_iter),
            "Std-MT P=10": lambda: ICM(Linear(), rank=10, max_iter=max_iter),
            "Sigma-MT P=10": lambda: StructuredNoiseMTGP(Linear(), rank=10, max_iter=max_iter),
            "~Cool-MT": lambda: CoolMTGP(Linear(), method="approximate", max_iter=max_iter),
            "HCool-MT": lambda: CoolMTGP(Linear(), method="hierarchical", max_iter=max_iter)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    warnings.simplefilter("ignore", DegenerateOutputsWarning)
    t0 = time.perf_counter()
    warm = 1 if args.quick else 5
    max_iter = 200
    rows = []
    for name, make in models(max_iter).items():
        for rep in range(1 + warm):
            X, Y, _, _ = make_data(10, seed=10_000 + rep)
            Xtr, Ytr, Xte = X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:]
            m = make()
            with Timer() as tf:
                m.fit(Xtr, Ytr)
            with Timer() as tp:
                m.predict(Xte)
            rows.append(dict(model=name, rep=rep, fit_s=tf.seconds, predict_s=tp.seconds,
                             n_iter=getattr(m, "n_iter_", np.nan)))
        print(name, rows[-1], flush=True)
    df = pd.DataFrame(rows)
    tab = (df.groupby("model", sort=False)
           .apply(lambda d: pd.Series({"first fit (s)": d.fit_s.iloc[0], "warm fit (s)": d.fit_s.iloc[1:].median(),
                                       "warm predict (ms)": 1e3 * d.predict_s.iloc[1:].median()}),
                  include_groups=False).reset_index())
    parts = [page_header("Multi-output models: fit and predict times (T = 15, N = 100 + 100)", quick=args.quick,
                         elapsed=0.0),
             f"Sec. 5.1 data (`cool_synthetic.make_data(R=10)`), linear kernel, L-BFGS budget {max_iter}; "
             f"first fit of each model in this process, then the median of {warm} fit(s) on other data sets "
             f"of the same shapes. Predict: means and T x T covariances at {N_TEST} test points.\n",
             md_table(tab, ".3f")]
    if not args.quick:
        sweep = []
        rng = np.random.default_rng(0)
        for N in (100, 200, 400, 800, 1600):
            Xs = rng.normal(size=(N, 20)) / np.sqrt(20)
            Ws = rng.normal(size=(20, T)) @ np.linalg.cholesky(np.eye(T) + 0.5).T
            Ys = Xs @ Ws + rng.normal(size=(N, T)) * 0.5
            for method in ("approximate", "hierarchical"):
                times = []
                for _ in range(2):  # the first includes compilation for this N
                    with Timer() as tf:
                        CoolMTGP(Linear(), method=method, max_iter=max_iter).fit(Xs, Ys)
                    times.append(tf.seconds)
                sweep.append(dict(N=N, method=method, first_fit_s=times[0], warm_fit_s=times[1]))
                print(sweep[-1], flush=True)
        parts += ["\n## Cool-MTGP fit time against N (T = 15, D = 20, linear kernel)\n",
                  md_table(pd.DataFrame(sweep), ".2f")]
    load = os.getloadavg()[0]
    parts[0] = page_header("Multi-output models: fit and predict times (T = 15, N = 100 + 100)", quick=args.quick,
                           elapsed=time.perf_counter() - t0)
    parts.insert(1, f"Load average at the end: {load:.1f} (2-core machine: above ~1 other work competed).\n")
    text = "\n".join(parts)
    (out / "cool_timing.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
