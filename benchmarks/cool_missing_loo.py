"""Does leave-one-out at the fitted parameters reveal overconfident
intervals of the missing entries? On the Mulan sets with 10/30/50% of the
training output entries removed (as ``cool_mulan_missing.py``: same splits,
same seeds, the first ``--max-train`` rows), each model's coverage of the
removed entries by ``predict_missing()``'s 95% intervals beside the exact
leave-one-out coverage of the observed entries at the fitted parameters
(Rasmussen & Williams 2006, eq. 5.12: z_i = [A^-1 y]_i / sqrt([A^-1]_ii),
A the covariance of the observed entries, C (x) K + Sigma (x) I restricted
to them; dense, O(|O|^3)).

    python3 benchmarks/cool_missing_loo.py            # nine sets, budget 50
    python3 benchmarks/cool_missing_loo.py --quick    # CI: slump, 30%, budget 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

from _common import md_table, out_dir, page_header
from cool_mulan import kernel
from cool_mulan_missing import FRACTIONS, Z95, make_items, metrics, mtgp_models

import mtgp

MODELS = ("HCool", "Sigma-MT", "Std-MT (P=1 + diag)")


def loo_coverage(model, X, Y):
    """(coverage %, mean squared z) of the exact leave-one-out 95% intervals
    of the observed entries of ``Y`` at ``model``'s fitted parameters."""
    observed = ~np.isnan(Y)
    K = np.asarray(model.kernel_(X, X))
    A = np.kron(model.output_covariance_, K) + np.kron(model.noise_covariance_, np.eye(len(X)))
    keep = observed.T.ravel()  # output-major, as the Kronecker products
    A = A[np.ix_(keep, keep)]
    A_inv = np.linalg.inv(A)
    z = (A_inv @ Y.T.ravel()[keep]) / np.sqrt(np.diag(A_inv))
    return float(100.0 * np.mean(np.abs(z) < Z95)), float(np.mean(z ** 2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--max-train", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from mtgp.datasets import MTR_DATASETS

    names = args.datasets or (["slump"] if args.quick else list(MTR_DATASETS))
    fractions = (0.3,) if args.quick else FRACTIONS
    max_iter = args.max_iter or (20 if args.quick else 50)
    out = out_dir(args.out)
    warnings.simplefilter("ignore", mtgp.DegenerateOutputsWarning)
    t0, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        for it in make_items(names, 1, fractions, tmp, args.max_train):
            models = mtgp_models(kernel("se", it["Xtr"].shape[1]), max_iter)
            for name in MODELS:
                m = models[name].fit(it["Xtr"], it["Ym"])
                filled = m.predict_missing()
                rmse, cover = metrics(filled.mean, filled.var, it["Ytr"], it["mask"])
                loo, msq = loo_coverage(m, np.asarray(it["Xtr"], float), it["Ym"])
                rows.append(dict(dataset=it["dataset"], removed=f"{100 * it['frac']:.0f}%", model=name,
                                 coverage_removed=cover, coverage_loo=loo, loo_mean_sq_z=msq, rmse_removed=rmse,
                                 outputs_at_floor=len(m.fit_info_.get("noise_floor_outputs", []))))
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    gap = df.coverage_loo - df.coverage_removed
    low = df[df.coverage_removed < 85]
    corr = {k: d.coverage_removed.corr(d.coverage_loo) for k, d in df.groupby("model", sort=False)}
    md = [page_header("Leave-one-out at the fitted parameters against the missing entries' coverage",
                      quick=args.quick, elapsed=time.perf_counter() - t0),
          f"Sets: {', '.join(names)}; split 0 of `cool_mulan.py`, its first {args.max_train} training rows; "
          f"removed {', '.join(f'{100 * f:.0f}%' for f in fractions)} of the output entries (the seeds of "
          f"`cool_mulan_missing.py`); SE kernel; L-BFGS budget {max_iter}. 'coverage_removed': the removed "
          "entries inside `predict_missing()`'s 95% intervals (%); 'coverage_loo': the observed entries inside "
          "their exact leave-one-out 95% intervals at the fitted parameters (%); 'loo_mean_sq_z': the mean "
          "squared leave-one-out standardised error (1 if calibrated); 'outputs_at_floor': outputs whose noise "
          "the fit holds at `min_noise_variance`.\n",
          md_table(df, ".2f"), "",
          f"- Leave-one-out coverage minus removed-entry coverage: median {gap.median():+.1f} points, "
          f"range {gap.min():+.1f} to {gap.max():+.1f}.",
          f"- Cells with removed-entry coverage below 85%: {len(low)} of {len(df)}"
          + (f"; their leave-one-out coverage {low.coverage_loo.min():.1f}-{low.coverage_loo.max():.1f}%."
             if len(low) else "."),
          "- Correlation across cells of the two coverages, per model: "
          + "; ".join(f"{k} {v:+.2f}" for k, v in corr.items()) + "."]
    text = "\n".join(md)
    (out / "cool_missing_loo.md").write_text(text + "\n")
    df.to_csv(out / "cool_missing_loo_raw.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
