"""Which check reveals overconfident intervals of the missing entries? On
the Mulan sets with 10/30/50% of the training output entries removed (as
``cool_mulan_missing.py``: same splits, same seeds, the first
``--max-train`` rows), each model's coverage of the removed entries by
``predict_missing()``'s 95% intervals beside two checks a user can run
without them:

* the exact leave-one-out coverage of the observed entries at the fitted
  parameters (Rasmussen & Williams 2006, eq. 5.12: z_i = [A^-1 y]_i /
  sqrt([A^-1]_ii), A the covariance of the observed entries, C (x) K +
  Sigma (x) I restricted to them; dense, O(|O|^3));
* ``mtgp.multioutput.held_out_entry_coverage`` (10% of the observed entries
  held out, the model refitted without them, three repeats).

    python3 benchmarks/cool_missing_loo.py            # nine sets, budget 50
    python3 benchmarks/cool_missing_loo.py --quick    # CI: slump, 30%, budget 20
    python3 benchmarks/cool_missing_loo.py --merge a/cool_missing_loo_raw.csv b/...   # page from runs made apart
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
from mtgp.multioutput import held_out_entry_coverage

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
    ap.add_argument("--check-repeats", type=int, default=3,
                    help="repeats of held_out_entry_coverage (10%% of the observed entries each)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="*", default=None, metavar="CSV",
                    help="write the page from these raw rows instead of running")
    ap.add_argument("--note", default=None, help="paragraph added to the page (how merged rows were made)")
    args = ap.parse_args(argv)
    from mtgp.datasets import MTR_DATASETS

    names = args.datasets or (["slump"] if args.quick else list(MTR_DATASETS))
    fractions = (0.3,) if args.quick else FRACTIONS
    max_iter = args.max_iter or (20 if args.quick else 50)
    out = out_dir(args.out)
    warnings.simplefilter("ignore", mtgp.DegenerateOutputsWarning)
    t0, rows = time.perf_counter(), []
    if args.merge:
        df = pd.concat([pd.read_csv(f) for f in args.merge], ignore_index=True)
        names = list(dict.fromkeys(df.dataset))
        fractions = sorted({float(r.rstrip("%")) / 100 for r in df.removed})
        return write_page(df, names, fractions, max_iter, args, out, time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        for it in make_items(names, 1, fractions, tmp, args.max_train):
            models = mtgp_models(kernel("se", it["Xtr"].shape[1]), max_iter)
            for name in MODELS:
                m = models[name].fit(it["Xtr"], it["Ym"])
                filled = m.predict_missing()
                rmse, cover = metrics(filled.mean, filled.var, it["Ytr"], it["mask"])
                loo, msq = loo_coverage(m, np.asarray(it["Xtr"], float), it["Ym"])
                check = held_out_entry_coverage(models[name], it["Xtr"], it["Ym"], fraction=0.1,
                                                n_repeats=args.check_repeats, random_state=0)["table"].loc["all"]
                rows.append(dict(dataset=it["dataset"], removed=f"{100 * it['frac']:.0f}%", model=name,
                                 coverage_removed=cover, coverage_loo=loo, loo_mean_sq_z=msq,
                                 coverage_check=check["coverage"], check_z_rms=check["z_rms"], rmse_removed=rmse,
                                 outputs_at_floor=len(m.fit_info_.get("noise_floor_outputs", []))))
                print(rows[-1], flush=True)
    return write_page(pd.DataFrame(rows), names, fractions, max_iter, args, out, time.perf_counter() - t0)


def write_page(df, names, fractions, max_iter, args, out, elapsed):
    gap = df.coverage_loo - df.coverage_removed
    check_gap = df.coverage_check - df.coverage_removed
    low = df[df.coverage_removed < 85]
    corr = {k: d.coverage_removed.corr(d.coverage_loo) for k, d in df.groupby("model", sort=False)}
    corr_check = {k: d.coverage_removed.corr(d.coverage_check) for k, d in df.groupby("model", sort=False)}
    md = [page_header("Leave-one-out and a held-out check against the missing entries' coverage",
                      quick=args.quick, elapsed=elapsed),
          *([f"Merged from the raw rows of: {', '.join(f'`{f}`' for f in args.merge)}.\n"] if args.merge else []),
          *([args.note + "\n"] if args.note else []),
          f"Sets: {', '.join(names)}; split 0 of `cool_mulan.py`, its first {args.max_train} training rows; "
          f"removed {', '.join(f'{100 * f:.0f}%' for f in fractions)} of the output entries (the seeds of "
          f"`cool_mulan_missing.py`); SE kernel; L-BFGS budget {max_iter}. 'coverage_removed': the removed "
          "entries inside `predict_missing()`'s 95% intervals (%); 'coverage_loo': the observed entries inside "
          "their exact leave-one-out 95% intervals at the fitted parameters (%); 'loo_mean_sq_z': the mean "
          "squared leave-one-out standardised error (1 if calibrated); 'coverage_check': "
          "`held_out_entry_coverage(model, X, Y_with_removed_entries, fraction=0.1, "
          f"n_repeats={args.check_repeats}, random_state=0)` (10% of the observed entries held out, the model "
          "refitted without them, `predict_missing()` scored there; %), 'check_z_rms' its root mean square "
          "standardised error (1 if calibrated); 'outputs_at_floor': outputs whose noise the fit holds at "
          "`min_noise_variance`.\n",
          md_table(df, ".2f"), "",
          f"- Leave-one-out coverage minus removed-entry coverage: median {gap.median():+.1f} points, "
          f"range {gap.min():+.1f} to {gap.max():+.1f}.",
          f"- Cells with removed-entry coverage below 85%: {len(low)} of {len(df)}"
          + (f"; their leave-one-out coverage {low.coverage_loo.min():.1f}-{low.coverage_loo.max():.1f}%."
             if len(low) else "."),
          "- Correlation across cells of the two coverages, per model: "
          + "; ".join(f"{k} {v:+.2f}" for k, v in corr.items()) + ".",
          f"- Held-out check minus removed-entry coverage: median {check_gap.median():+.1f} points, "
          f"median absolute {check_gap.abs().median():.1f}, range {check_gap.min():+.1f} to {check_gap.max():+.1f}"
          + (f"; in the cells below 85% the check gives {low.coverage_check.min():.1f}-"
             f"{low.coverage_check.max():.1f}% ({int((low.coverage_check < 90).sum())} of {len(low)} below 90%)"
             if len(low) else "") + ".",
          "- Correlation across cells of the removed-entry coverage and the held-out check's, per model: "
          + "; ".join(f"{k} {v:+.2f}" for k, v in corr_check.items()) + "."]
    text = "\n".join(md)
    (out / "cool_missing_loo.md").write_text(text + "\n")
    df.to_csv(out / "cool_missing_loo_raw.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
