"""Are the multi-output models' intervals honest? Empirical coverage of the
95% intervals of new observations y* (``predict(..., include_noise=True)``),
per output, on the nine Mulan sets of Sec. 5.3 (same splits and scaling as
``cool_mulan.py``), pooled over the test points of all splits.

Models: HCool (CoolMTGP's default method) at the library's default noise floor
``min_noise_variance`` and at the floor of mtgp <= 0.x (1e-6), Std-MT (ICM,
rank 1 plus a free diagonal, as the other pages), and independent GPs (no
shared noise: a reference for whether a miscovered output is a multi-output
effect or the kernel's); Sigma-MT when ``--models`` names it. A coverage
within [90, 99] is what a well-specified model gives with a few hundred test
points (binomial sd 1-3 points at 95%). The page lists, per set and model, the range of the outputs'
coverages, the outputs outside [90, 99], and how often the fit warned that its
noise covariance collapsed (``DegenerateOutputsWarning``, ``fit_info_``
entries ``noise_min_eigenvalue`` and ``noise_floor_outputs``).

    python3 benchmarks/cool_mulan_coverage.py                 # 9 sets, 5 splits, SE kernel
    python3 benchmarks/cool_mulan_coverage.py --quick         # CI: slump, 2 splits, budget 30
    python3 benchmarks/cool_mulan_coverage.py --datasets slump edm --splits 3 --ard
    python3 benchmarks/cool_mulan_coverage.py --datasets slump --splits 10 --ard --floors 1e-6 3e-4 1e-3 1e-2
    python3 benchmarks/cool_mulan_coverage.py --models "Std-MT (P=1 + diag)" --splits 1  # one model (to --merge)
    python3 benchmarks/cool_mulan_coverage.py --merge a/cool_mulan_coverage_raw.csv b/...   # page from runs made apart
"""

from __future__ import annotations

import argparse
import inspect
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from _common import md_table, out_dir, page_header
from cool_mulan import kernel, load_splits

import mtgp
from mtgp.datasets import MTR_DATASETS
from mtgp.kernels import SE
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP

DEFAULT_FLOOR = inspect.signature(CoolMTGP).parameters["min_noise_variance"].default
OLD_FLOOR = 1e-6
Z95 = stats.norm.ppf(0.975)


STD_MT = "Std-MT (P=1 + diag)"
SIGMA_MT = "Sigma-MT"
#: fitted only when --models names them
OPTIONAL_MODELS = (SIGMA_MT,)


def all_models(k, max_iter, floors=(OLD_FLOOR,)):
    """Every model the page can fit, all with ``normalize_y=True``: HCool at
    the default floor and at each of ``floors``, Std-MT as
    ``ICM(rank=1, diagonal=True)``, independent GPs, Sigma-MT."""
    out = {f"HCool (floor {DEFAULT_FLOOR:g}, default)": CoolMTGP(k, normalize_y=True, max_iter=max_iter)}
    for f in floors:
        if f != DEFAULT_FLOOR:
            out[f"HCool (floor {f:g})"] = CoolMTGP(k, normalize_y=True, max_iter=max_iter, min_noise_variance=f)
    out[STD_MT] = ICM(k, rank=1, diagonal=True, normalize_y=True, max_iter=max_iter)
    out["Indep. GPs"] = IndependentGPs(k, normalize_y=True, max_iter=max_iter)
    out[SIGMA_MT] = StructuredNoiseMTGP(k, normalize_y=True, max_iter=max_iter)
    return out


def models(k, max_iter, floors=(OLD_FLOOR,), only=None):
    """The models fitted: those named in ``only``, else all but
    :data:`OPTIONAL_MODELS`."""
    return {n: m for n, m in all_models(k, max_iter, floors).items()
            if (n not in OPTIONAL_MODELS if only is None else n in only)}


def run(names, n_splits, max_iter, ard, floors, max_train=None, only=None):
    rows = []
    t0 = time.perf_counter()
    for name in names:
        output_names, D, splits = load_splits(name, n_splits)
        for s, Xtr, Ytr, Xte, Yte in splits:
            if max_train:  # the split's rows are in random order; statistics of the whole training split
                Xtr, Ytr = Xtr[:max_train], Ytr[:max_train]
            k = SE(lengthscale=np.full(D, np.sqrt(D))) if ard else kernel("se", D)
            for mname, m in models(k, max_iter, floors, only).items():
                t1 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", mtgp.DegenerateOutputsWarning)
                    try:
                        m.fit(Xtr, Ytr)
                        pred = m.predict(Xte, include_noise=True)
                    except Exception as exc:  # report, keep going
                        print(f"  {name} {s} {mname}: failed ({exc})", flush=True)
                        continue
                warned = any("collapsing" in str(w.message) or "singular" in str(w.message) for w in caught
                             if issubclass(w.category, mtgp.DegenerateOutputsWarning))
                z = np.abs(Yte - pred.mean) / np.sqrt(pred.var)
                info = m.fit_info_
                for j, out_name in enumerate(output_names):
                    rows.append(dict(dataset=name, kernel="ARD SE" if ard else "SE", split=s, model=mname,
                                     n_train=len(Xtr),
                                     output=str(out_name),
                                     n_test=len(Yte), hits=int(np.sum(z[:, j] < Z95)),
                                     rmse=float(np.sqrt(np.mean((pred.mean[:, j] - Yte[:, j]) ** 2))),
                                     mean_sd=float(np.mean(np.sqrt(pred.var[:, j]))),
                                     noise_sd=float(np.sqrt(m.noise_covariance_[j, j])),
                                     warned=warned,  # the model names outputs itself (arrays: "output j")
                                     at_floor=m.output_names_[j] in info.get("noise_floor_outputs", []),
                                     noise_min_eigenvalue=info.get("noise_min_eigenvalue", np.nan),
                                     log_likelihood=m.log_marginal_likelihood_,
                                     fit_s=time.perf_counter() - t1))
            print(f"{name} split {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def summary(df):
    """Per data set and model: coverage of each output pooled over splits."""
    df = df.assign(kernel=df["kernel"] if "kernel" in df else "SE")
    per = (df.groupby(["dataset", "kernel", "model", "output"], sort=False)
           .agg(hits=("hits", "sum"), n=("n_test", "sum"), rmse=("rmse", "mean"), mean_sd=("mean_sd", "mean"),
                at_floor=("at_floor", "mean"))
           .reset_index())
    per["coverage"] = 100.0 * per["hits"] / per["n"]
    rows = []
    for (d, kn, m), g in per.groupby(["dataset", "kernel", "model"], sort=False):
        out = g[(g.coverage < 90) | (g.coverage > 99)]
        fits = df[(df.dataset == d) & (df.kernel == kn) & (df.model == m)].drop_duplicates("split")
        rows.append({"dataset": d, "kernel": kn, "model": m, "splits": len(fits), "outputs": len(g),
                     "test points / output": int(g["n"].iloc[0]),
                     "coverage min-max (%)": f"{g.coverage.min():.1f}-{g.coverage.max():.1f}",
                     "in [90, 99]": f"{int(((g.coverage >= 90) & (g.coverage <= 99)).sum())}/{len(g)}",
                     "outside": ", ".join(f"{o} {c:.0f}%" for o, c in zip(out.output, out.coverage)) or "-",
                     "fits warned": f"{int(fits.warned.sum())}/{len(fits)}",
                     "mean RMSE": g.rmse.mean()})
    return per, pd.DataFrame(rows)


def report(df, out, elapsed, args, sources=None):
    per, tab = summary(df)
    md = [page_header("Multi-output models: coverage of 95% intervals of y* on the Mulan sets",
                      quick=args.quick, elapsed=elapsed)]
    if sources:
        md.append("Merged from the raw rows of: " + ", ".join(f"`{s}`" for s in sources) + ".\n")
    if args.note:
        md.append(args.note + "\n")
    md += [f"Data sets: {', '.join(dict.fromkeys(df.dataset))}; random 80/20 splits (seeds 0, 1, ...; the "
           "number per set in the table; at most 800/200 samples, as `cool_mulan.py`), standardised with training "
           "statistics; kernel SE, isotropic (initial lengthscale sqrt(D)) or ARD (`--ard`, initial lengthscales "
           f"sqrt(D)); `normalize_y=True`; L-BFGS budget max_iter = {args.max_iter}. "
           "Coverage: share of test observations y* inside the 95% interval of "
           "`predict(X, include_noise=True)`, per output, pooled over the splits. A model that is right about "
           "its uncertainty gives 95% up to binomial noise (sd 1.5 points at 200 test points).\n",
           "## Per data set and model\n", md_table(tab, ".3f"),
           "\n## Every output\n",
           md_table(per[["dataset", "kernel", "model", "output", "n", "coverage", "rmse", "mean_sd", "at_floor"]]
                    .rename(columns={"n": "test points", "coverage": "coverage (%)",
                                     "mean_sd": "mean predictive sd", "at_floor": "share of fits at the floor"}),
                    ".2f")]
    text = "\n".join(md)
    (out / "cool_mulan_coverage.md").write_text(text + "\n")
    df.to_csv(out / "cool_mulan_coverage_raw.csv", index=False)
    print(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--splits", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--ard", action="store_true", help="ARD SE kernel (one lengthscale per input)")
    ap.add_argument("--floors", nargs="*", type=float, default=[OLD_FLOOR],
                    help="other min_noise_variance values to fit HCool with (default: the old default 1e-6)")
    ap.add_argument("--max-train", type=int, default=None,
                    help="cap on the training rows per split (large sets on a slow machine; say so in --note)")
    ap.add_argument("--models", nargs="*", default=None,
                    help="fit only these (default: HCool at each floor, Std-MT and independent GPs; "
                    f"{SIGMA_MT!r} only when named)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="*", default=None, metavar="CSV")
    ap.add_argument("--note", default=None)
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    args.max_iter = args.max_iter or (30 if args.quick else 200)
    t0 = time.perf_counter()
    if args.merge:
        df = pd.concat([pd.read_csv(f) for f in args.merge], ignore_index=True)
        return report(df, out, time.perf_counter() - t0, args, sources=list(args.merge))
    known = list(all_models(SE(), args.max_iter, args.floors))  # names only: nothing is fitted
    unknown = [m for m in args.models or () if m not in known]
    if unknown:
        ap.error(f"--models: unknown model(s) {unknown}; choose from {known}")
    names = args.datasets or (["slump"] if args.quick else list(MTR_DATASETS))
    df = run(names, args.splits or (2 if args.quick else 5), args.max_iter, args.ard, args.floors, args.max_train,
             args.models)
    report(df, out, time.perf_counter() - t0, args)


if __name__ == "__main__":
    main()
