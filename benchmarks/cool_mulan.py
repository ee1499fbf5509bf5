"""Sec. 5.3 of García-Hinde et al. (2022): the Mulan multi-target regression
sets (shipped: ``mtgp.datasets.load_mtr``), inputs and outputs standardised
with training statistics, random 80/20 splits (at most 800/200 samples),
linear and SE kernels; RMSE averaged over tasks (mean ± sd over splits) for
independent GPs, Std-MT with P = 1 (rank-1 C = a a^T, and rank 1 plus a
free diagonal, the form of Bonilla et al. and GPyTorch's IndexKernel; the
paper writes C ~ U lambda U^T + sigma^2 I), Sigma-MT (free-form) and Cool-MT
(approximate, as in the paper). The paper's Cool-MT SE figures (Table 3,
NOTES.md) are printed beside ours. Conv-MT (``--convmt-python``, MOGPTK's
CONV model in its own virtualenv, see ``cool_convmt_peer.py``: inducing
points at 50% of the training size, 200 Adam iterations) has Gaussian
smoothing kernels only and is reported in the SE table.

    python3 benchmarks/cool_mulan.py                       # 9 sets, 10 splits, both kernels
    python3 benchmarks/cool_mulan.py --quick               # CI: slump, 1 split, budget 20
    python3 benchmarks/cool_mulan.py --datasets slump edm --splits 3 --kernels se
    python3 benchmarks/cool_mulan.py --datasets enb --models "Std-MT (P=1 + diag)"
    python3 benchmarks/cool_mulan.py --merge a/cool_mulan_raw.csv b/cool_mulan_raw.csv   # page from runs made apart
    python3 benchmarks/cool_mulan.py --datasets slump --splits 2 --models Conv-MT --convmt-python /tmp/convmt/bin/python
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd

from _common import md_table, out_dir, page_header
from cool_convmt_peer import run_convmt

from mtgp.datasets import MTR_DATASETS, load_mtr
from mtgp.kernels import SE, Linear
from mtgp.multioutput import CoolMTGP, ICM, IndependentGPs, StructuredNoiseMTGP

PAPER_COOL_SE = {"andro": 0.42, "enb": 0.13, "edm": 0.72, "slump": 0.63, "oes10": 0.57, "oes97": 0.63,
                 "atp1d": 0.41, "atp7d": 0.56, "scm20d": 0.28}


MODELS = ("Indep. GPs", "Std-MT (P=1)", "Std-MT (P=1 + diag)", "Sigma-MT", "Conv-MT", "Cool-MT")


def split(X, Y, seed, max_train=800, max_test=200):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    n_train = min(int(round(0.8 * len(X))), max_train)
    n_test = min(len(X) - n_train, max_test)
    tr, te = idx[:n_train], idx[n_train:n_train + n_test]
    mx, sx = X[tr].mean(0), X[tr].std(0)
    sx[sx == 0] = 1.0  # constant training inputs carry no information
    my, sy = Y[tr].mean(0), Y[tr].std(0)
    return (X[tr] - mx) / sx, (Y[tr] - my) / sy, (X[te] - mx) / sx, (Y[te] - my) / sy


def load_splits(name, n_splits):
    """The data set ``name`` without its constant inputs, and its first
    ``n_splits`` splits: (output names, D, [(seed, Xtr, Ytr, Xte, Yte), ...])."""
    Xd, Yd = load_mtr(name)
    X, Y = Xd.to_numpy(float), Yd.to_numpy(float)
    X = X[:, X.std(0) > 0]
    return [str(c) for c in Yd.columns], X.shape[1], [(s, *split(X, Y, seed=s)) for s in range(n_splits)]


def kernel(name, D):
    # unit prior variance per sample on standardised inputs
    return Linear(variance=1.0 / D) if name == "linear" else SE(lengthscale=np.sqrt(D))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--splits", type=int, default=None)
    ap.add_argument("--kernels", nargs="*", default=None, choices=["linear", "se"])
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="*", default=None, metavar="CSV",
                    help="write the page from raw CSVs of earlier runs (no fitting)")
    ap.add_argument("--models", nargs="*", default=None, choices=MODELS, help="fit only these models")
    ap.add_argument("--note", default=None, help="a paragraph for the page (e.g. how the merged runs were made)")
    ap.add_argument("--convmt-python", default=None, help="MOGPTK's virtualenv: adds Conv-MT (SE table)")
    ap.add_argument("--convmt-timeout", type=float, default=3600, help="seconds per data set for Conv-MT")
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    t0 = time.perf_counter()
    names = args.datasets or (["slump"] if args.quick else list(MTR_DATASETS))
    n_splits = args.splits or (1 if args.quick else 10)
    kernels = args.kernels or ["linear", "se"]
    max_iter = args.max_iter or (20 if args.quick else 200)
    if args.merge:
        df = pd.concat([pd.read_csv(f) for f in args.merge], ignore_index=True)
        df = df.drop_duplicates(["dataset", "kernel", "split", "model"], keep="last")
        names = [n for n in MTR_DATASETS if n in set(df["dataset"])]
        kernels = [k for k in ("linear", "se") if k in set(df["kernel"])]
        return report(df, names, kernels, out, time.perf_counter() - t0,
                      sources=[str(f) for f in args.merge], note=args.note)
    rows = []
    tmp = tempfile.TemporaryDirectory()
    conv = args.convmt_python and (not args.models or "Conv-MT" in args.models)
    for name in names:
        conv_files = {}
        Xd, Yd = load_mtr(name)
        X, Y = Xd.to_numpy(float), Yd.to_numpy(float)
        keep = X.std(0) > 0
        X = X[:, keep]
        for s in range(n_splits):
            Xtr, Ytr, Xte, Yte = split(X, Y, seed=s)
            for kname in kernels:
                k = kernel(kname, X.shape[1])
                models = {"Indep. GPs": IndependentGPs(k, max_iter=max_iter),
                          "Std-MT (P=1)": ICM(k, rank=1, max_iter=max_iter),
                          "Std-MT (P=1 + diag)": ICM(k, rank=1, diagonal=True, max_iter=max_iter),
                          "Sigma-MT": StructuredNoiseMTGP(k, max_iter=max_iter),
                          "Cool-MT": CoolMTGP(k, method="approximate", max_iter=max_iter)}
                for mname, m in models.items():
                    if args.models and mname not in args.models:
                        continue
                    t1 = time.perf_counter()
                    try:
                        m.fit(Xtr, Ytr)
                        pred = m.predict(Xte).mean
                        rmse = float(np.mean(np.sqrt(np.mean((pred - Yte) ** 2, axis=0))))
                    except Exception as exc:  # report, keep going
                        print(f"  {name} {kname} {mname}: failed ({exc})")
                        rmse = np.nan
                    rows.append(dict(dataset=name, kernel=kname, split=s, model=mname, rmse=rmse,
                                     fit_s=time.perf_counter() - t1))
            if conv:
                conv_files[s] = os.path.join(tmp.name, f"{name}_{s}.npz")
                np.savez(conv_files[s], Xtr=Xtr, Ytr=Ytr, Xte=Xte, Yte=Yte)
            print(f"{name} split {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        if conv:
            rows += convmt_rows(args.convmt_python, name, conv_files, tmp.name, args.convmt_timeout)
    tmp.cleanup()
    return report(pd.DataFrame(rows), names, kernels, out, time.perf_counter() - t0, max_iter=max_iter)


def convmt_rows(python, name, files, folder, timeout):
    """Conv-MT (MOGPTK, its own process) on every split of one data set:
    rows for the SE table (NaN RMSE for a failed fit)."""
    t = time.perf_counter()
    res = {r["file"]: r for r in run_convmt(python, list(files.values()), folder, timeout)["runs"]}
    rows = []
    for s, f in files.items():
        r = res.get(str(f), {})
        rmse = np.nan
        if "mean" in r:
            Yte = np.load(f)["Yte"]
            rmse = float(np.mean(np.sqrt(np.mean((np.asarray(r["mean"]) - Yte) ** 2, axis=0))))
        else:
            print(f"  {name} se Conv-MT split {s}: failed ({r.get('error', 'no result')})")
        rows.append(dict(dataset=name, kernel="se", split=s, model="Conv-MT", rmse=rmse, fit_s=r.get("fit_s", np.nan)))
    print(f"{name} Conv-MT done ({time.perf_counter() - t:.0f} s)", flush=True)
    return rows


def report(df, names, kernels, out, elapsed, max_iter=None, sources=None, note=None):
    """Markdown page, raw CSV and figure from the per-fit rows."""
    models_order = [m for m in MODELS if m in set(df["model"])]
    splits = df.groupby(["dataset", "kernel", "model"])["split"].nunique()
    split_text = (f"{splits.min()} random 80/20 split(s)" if splits.min() == splits.max()
                  else f"{splits.min()}-{splits.max()} random 80/20 splits (per data set and model: see the raw CSV)")
    parts = []
    for kname in kernels:
        d = df[df.kernel == kname]
        if not len(d):
            continue
        tab = (d.groupby(["dataset", "model"])["rmse"].agg(["mean", "std"]).reset_index()
               .assign(cell=lambda x: x["mean"].map("{:.2f}".format) + " ± " + x["std"].fillna(0).map("{:.2f}".format))
               .pivot(index="dataset", columns="model", values="cell").reindex([n for n in names if n in set(d.dataset)])
               [[m for m in models_order if m in set(d.model)]].fillna("not run").reset_index())
        if kname == "se":
            tab["paper Cool-MT (SE)"] = [f"{PAPER_COOL_SE.get(n, float('nan')):.2f}" for n in tab["dataset"]]
        n_fail = int(d["rmse"].isna().sum())
        parts += [f"## {'Linear' if kname == 'linear' else 'SE'} kernel: test RMSE averaged over tasks\n", md_table(tab),
                  "" if not n_fail else f"\n{n_fail} fit(s) failed (NaN rows in the raw CSV) and are left out.", ""]
    ftime = (df.groupby(["dataset", "kernel", "model"])["fit_s"].median().unstack("model")[models_order]
             .reset_index())
    ftime = ftime.astype(object).where(ftime.notna(), "not run")
    budget = f"max_iter = {max_iter}" if max_iter else "as in the merged runs"
    md = [page_header("Cool-MTGP, Sec. 5.3: Mulan multi-target regression", elapsed=elapsed)]
    if sources:
        md.append("Merged from the raw rows of: " + ", ".join(f"`{s}`" for s in sources) + ".\n")
    if note:
        md.append(note + "\n")
    md += [f"Data sets: {', '.join(names)}; {split_text} (at most 800/200 samples), "
           f"standardised with training statistics; L-BFGS budget {budget} for every model; "
           "Cool-MT is the approximate scheme (as in the paper). Linear kernel: v <x, x'> with v = 1/D; "
           "SE kernel: isotropic, initial lengthscale sqrt(D). RMSE on standardised outputs, mean ± sd "
           "over splits. Figure: `cool_mulan.png`; raw rows: `cool_mulan_raw.csv`.\n"] + parts + [
        "## Median fit time per data set, kernel and model (s)\n", md_table(ftime, ".2f")]
    text = "\n".join(md)
    (out / "cool_mulan.md").write_text(text + "\n")
    df.to_csv(out / "cool_mulan_raw.csv", index=False)
    plot(df, names, kernels, models_order, out / "cool_mulan.png")
    print(text)
    return df


def plot(df, names, kernels, models_order, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(kernels), 1, figsize=(10, 3.2 * len(kernels)), squeeze=False)
    width = 0.8 / len(models_order)
    for ax, kname in zip(axes[:, 0], kernels):
        d = df[df.kernel == kname]
        sets = [n for n in names if n in set(d.dataset)]
        g = d.groupby(["dataset", "model"])["rmse"].agg(["mean", "std"])
        x = np.arange(len(sets))
        for j, m in enumerate(models_order):
            mu = [g.loc[(n, m), "mean"] if (n, m) in g.index else np.nan for n in sets]
            sd = [g.loc[(n, m), "std"] if (n, m) in g.index else np.nan for n in sets]
            ax.bar(x + (j - (len(models_order) - 1) / 2) * width, mu, width, yerr=sd, capsize=2, label=m)
        if kname == "se":
            ax.plot(x, [PAPER_COOL_SE.get(n, np.nan) for n in sets], "k*", ms=9, label="paper Cool-MT")
        ax.set_xticks(x, sets)
        ax.set_ylabel("test RMSE (standardised)")
        ax.set_title(f"{'Linear' if kname == 'linear' else 'SE'} kernel (mean ± sd over splits)")
        ax.legend(fontsize=7, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
