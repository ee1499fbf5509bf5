"""Sec. 5.1 of García-Hinde et al. (2022): synthetic MTGP data, linear kernel.

T = 15 tasks, N = 200 samples (100 train / 100 test), D = 20 inputs,
K = X X^T, C and Sigma of rank R in {5, 10, 15}, 10 random repetitions.
Models: ground truth (true C, Sigma), independent GPs, Std-MT (ICM) and
Sigma-MT of rank P below / equal to / above R, ~Cool and HCool. Writes the
MSE table and a Fig. 2-like plot, Fig. 3-like heatmaps (R = 10) with relative
Frobenius errors, Fig. 4-like task-order heatmaps (R = 15), and fit/predict
times, to docs/results/cool_synthetic.md.

    python3 benchmarks/cool_synthetic.py            # full (paper sizes)
    python3 benchmarks/cool_synthetic.py --quick    # CI: 1 repetition, R = 5, P = R
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from _common import Timer, md_table, out_dir, page_header

import mtgp
from mtgp.kernels import Linear
from mtgp.linalg import JitterWarning
from mtgp.multioutput import (CoolMTGP, EigenPredictor, ICM, IndependentGPs, StructuredNoiseMTGP,
                              output_order_sensitivity)

T, N_TRAIN, N_TEST, D = 15, 100, 100, 20
P_GRID = {5: (3, 5, 10), 10: (5, 10, 15), 15: (5, 10, 15)}


def make_data(R, seed, n_outputs=T, n=N_TRAIN + N_TEST, d=D):
    """Y = X W + E with rows of W ~ N(0, C), rows of E ~ N(0, Sigma): a draw of
    N(vec Y | 0, C (x) X X^T + Sigma (x) I); C = sum_r c_r c_r^T (rank R).
    The paper's sizes by default (T = 15, 200 rows, D = 20); smaller ones
    for the tests."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    Cc = rng.normal(size=(n_outputs, R)) / np.sqrt(R)
    Sc = rng.normal(size=(n_outputs, R)) * np.sqrt(0.5 / R)
    W = rng.normal(size=(d, R)) @ Cc.T
    E = rng.normal(size=(n, R)) @ Sc.T
    return X, X @ W + E, Cc @ Cc.T, Sc @ Sc.T


def models(R, quick, max_iter):
    Ps = (R,) if quick else P_GRID[R]
    out = {"Indep. GPs": IndependentGPs(Linear(), max_iter=max_iter)}
    for P in Ps:
        out[f"Std-MT P={P}"] = ICM(Linear(), rank=P, max_iter=max_iter)
    for P in Ps:
        out[f"Sigma-MT P={P}"] = StructuredNoiseMTGP(Linear(), rank=P, max_iter=max_iter)
    out["~Cool-MT"] = CoolMTGP(Linear(), method="approximate", max_iter=max_iter)
    out["HCool-MT"] = CoolMTGP(Linear(), method="hierarchical", max_iter=max_iter)
    return out


def rel_frob(A, B):
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


def heatmaps(mats, titles, path, suptitle):
    import matplotlib.pyplot as plt

    rows = len(mats)
    fig, axes = plt.subplots(rows, len(mats[0]), figsize=(2.4 * len(mats[0]), 2.5 * rows), squeeze=False)
    for r, (row, rtitle) in enumerate(zip(mats, ["C", "Sigma"])):
        vmax = np.abs(row[0]).max()  # the true matrix's scale; larger estimates saturate
        for c, (m, t) in enumerate(zip(row, titles)):
            ax = axes[r, c]
            ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{t}" if r == 0 else "", fontsize=8)
            if c == 0:
                ax.set_ylabel(rtitle)
    fig.suptitle(suptitle + " (colour scale of the true matrices; larger values saturate)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    reps = args.reps or (1 if args.quick else 10)
    max_iter = args.max_iter or (30 if args.quick else 200)
    Rs = (5,) if args.quick else (5, 10, 15)
    t_start = time.perf_counter()
    warnings.simplefilter("ignore", JitterWarning)  # ground truth: low-rank Sigma needs jitter
    rows, frob, est_mats, timings, ranks = [], [], {}, [], {}
    warnings.simplefilter("ignore", mtgp.DegenerateOutputsWarning)  # reported on the page
    for R in Rs:
        for rep in range(reps):
            X, Y, C, S = make_data(R, seed=1000 * R + rep)
            Xtr, Ytr, Xte, Yte = X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:], Y[N_TRAIN:]
            ranks.setdefault(R, set()).add(int(np.linalg.matrix_rank(Ytr)))
            gt = EigenPredictor(Xtr @ Xtr.T, C, S, Ytr, where="ground truth")
            rows.append(dict(R=R, rep=rep, model="Ground truth",
                             mse=float(np.mean((gt.mean(Xte @ Xtr.T) - Yte) ** 2))))
            for name, m in models(R, args.quick, max_iter).items():
                with Timer() as tf:
                    m.fit(Xtr, Ytr)
                with Timer() as tp:
                    pred = m.predict(Xte)
                rows.append(dict(R=R, rep=rep, model=name, mse=float(np.mean((pred.mean - Yte) ** 2))))
                timings.append(dict(R=R, model=name, fit_s=tf.seconds, predict_s=tp.seconds))
                if name == "Indep. GPs":
                    continue
                frob.append(dict(R=R, rep=rep, model=name, C=rel_frob(m.output_covariance_, C),
                                 Sigma=rel_frob(m.noise_covariance_, S)))
                if rep == 0:
                    est_mats[(R, name)] = (m.output_covariance_, m.noise_covariance_)
            if rep == 0:
                est_mats[(R, "Ground truth")] = (C, S)
            print(f"R={R} rep={rep} done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    order = list(dict.fromkeys(df["model"]))
    table = (df.groupby(["model", "R"])["mse"].agg(["mean", "std"]).reset_index()
             .assign(cell=lambda d: d["mean"].map("{:.3f}".format) + " ± " + d["std"].fillna(0).map("{:.3f}".format))
             .pivot(index="model", columns="R", values="cell").reindex(order).reset_index())
    table.columns = ["model"] + [f"R={r}" for r in table.columns[1:]]
    ftab = pd.DataFrame(frob).groupby(["model", "R"])[["C", "Sigma"]].mean().reset_index()
    ttab = pd.DataFrame(timings).groupby("model")[["fit_s", "predict_s"]].median().reindex(
        [o for o in order if o != "Ground truth"]).reset_index()

    # Fig. 2: MSE per model, one panel per R
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(Rs), figsize=(5 * len(Rs), 4), squeeze=False)
    for ax, R in zip(axes[0], Rs):
        d = df[df.R == R]
        names = [o for o in order if o in set(d.model)]
        ax.boxplot([d[d.model == n]["mse"] for n in names])
        ax.set_xticks(range(1, len(names) + 1), names, rotation=70, fontsize=7)
        ax.set_title(f"R = {R}")
        ax.set_ylabel("test MSE (mean over tasks)")
    fig.tight_layout()
    fig.savefig(out / "cool_synthetic_mse.png", dpi=110)
    plt.close(fig)

    # Fig. 3: heatmaps for R = 10 (R = 5 in quick mode), P = R
    R3 = 10 if 10 in Rs else Rs[0]
    names3 = ["Ground truth", f"Std-MT P={R3}", f"Sigma-MT P={R3}", "~Cool-MT", "HCool-MT"]
    heatmaps([[est_mats[(R3, n)][0] for n in names3], [est_mats[(R3, n)][1] for n in names3]],
             names3, out / "cool_synthetic_matrices.png", f"Estimated vs true C and Sigma, R = {R3}, repetition 0")

    # Fig. 4: task-order permutations, R = 15 (R = 5 in quick mode)
    R4 = 15 if 15 in Rs else Rs[0]
    X, Y, C, S = make_data(R4, seed=1000 * R4)
    sens = output_order_sensitivity(CoolMTGP(Linear(), method="hierarchical", max_iter=max_iter),
                                  X[:N_TRAIN], Y[:N_TRAIN], n_permutations=2 if args.quick else 4,
                                  random_state=1, X_test=X[N_TRAIN:])
    stab = sens["table"].assign(test_mse=[float(np.mean((CoolMTGP(Linear(), max_iter=max_iter, output_order=list(map(int, o)))
                                                           .fit(X[:N_TRAIN], Y[:N_TRAIN]).predict(X[N_TRAIN:]).mean - Y[N_TRAIN:]) ** 2))
                                          for o in sens["orders"]])
    stab["rel_frob_C_to_true"] = [rel_frob(c, C) for c in sens["C"]]
    stab["rel_frob_Sigma_to_true"] = [rel_frob(s, S) for s in sens["Sigma"]]
    labels = ["Real"] + ["given order"] + [f"Random {i}" for i in range(1, len(sens["C"]))]
    heatmaps([[C] + sens["C"], [S] + sens["Sigma"]], labels, out / "cool_synthetic_task_order.png",
             f"HCool-MT C and Sigma for permuted task orders, R = {R4}")

    elapsed = time.perf_counter() - t_start
    md = [page_header("Cool-MTGP, Sec. 5.1: synthetic benchmark", quick=args.quick, elapsed=elapsed),
          f"T = {T}, {N_TRAIN} train / {N_TEST} test, D = {D}, linear kernel, {reps} repetition(s), "
          f"L-BFGS budget max_iter = {max_iter} for every model. Test MSE against the noisy test "
          "outputs, averaged over tasks (mean ± sd over repetitions).\n",
          "## Test MSE (Fig. 2)\n", md_table(table), "\n![MSE](cool_synthetic_mse.png)\n",
          "## Relative Frobenius error of the estimated C and Sigma (mean over repetitions)\n",
          "C is identifiable only through the D = 20 realised weight vectors, so even a perfect "
          "estimator has a sizeable error in C at this size.\n",
          md_table(ftab), "\n![matrices](cool_synthetic_matrices.png)\n",
          "Rank of the training outputs (N x T): " + ", ".join(
              f"R = {R}: {'/'.join(map(str, sorted(v)))}" for R, v in ranks.items()) + ". "
          "For R < T this design makes eq. (4) unbounded above: K = X X^T has rank D = 20 < N, "
          "and the part of Y orthogonal to the columns of X is E's, whose rows lie in the "
          "R-dimensional span of Sigma (for R = 5, Y itself has rank 2R = 10). A model whose Sigma "
          "can become singular along the other T - R directions gains likelihood without bound "
          "(the true C and Sigma have infinite likelihood too; NOTES.md). Sigma-MT with P >= R "
          "does so: its isotropic terms c^2, s^2 run to 0 and its C and Sigma grow arbitrarily "
          "large (relative Frobenius errors 20-90 at R = 5 and 10, fitted Sigma with eigenvalue "
          "ratio ~1e-16), and its test MSE degrades, the sensitivity to P that the paper's Fig. 2 "
          "shows for Sigma-MT. Std-MT's per-task noise cannot follow it, and Cool's conditional "
          "noises stop at their floor (`min_noise_variance`). The library warns in both cases "
          "(`DegenerateOutputsWarning`: rank-deficient outputs before fitting, a numerically "
          "singular fitted Sigma after; silenced in this script).\n",
          f"## Task order (Fig. 4): HCool-MT on R = {R4}, repetition 0\n",
          "Relative Frobenius distance of C and Sigma to the given-order fit, largest change of a test "
          "prediction, and test MSE:\n", md_table(stab, ".4f"), "\n![order](cool_synthetic_task_order.png)\n",
          "## Fit and predict time (median seconds, T = 15, 100 train / 100 test points)\n",
          "Includes JAX compilation on the first fit of each model structure (the median hides it).\n",
          md_table(ttab, ".3f")]
    text = "\n".join(md)
    (out / "cool_synthetic.md").write_text(text + "\n")
    print(text)
    return df


if __name__ == "__main__":
    main()
