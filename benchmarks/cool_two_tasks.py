"""Sec. 5.2 of García-Hinde et al. (2022): predictive (co)variance on the
two-task cos/sin data of eq. (46), inputs in two clusters.

y(x) ~ N([cos 2 pi x, sin 2 pi x], [[0.1, 0.05], [0.05, 0.1]]), x in (0, 1),
training inputs drawn from two clusters (low density elsewhere). Models:
Std-MT (ICM, P = 1, diagonal noise), ~Cool and HCool, SE kernel. Plots the
task-wise 95% intervals (Fig. 5) and the joint predictive ellipses of new
observations at x* = 0, 0.25, 0.5 (Fig. 6); tabulates the learnt Sigma, the
predictive correlation at x*, and test coverage / NLPD.

    python3 benchmarks/cool_two_tasks.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

from _common import md_table, out_dir, page_header

from mtgp.kernels import SE
from mtgp.multioutput import CoolMTGP, ICM

SIGMA = np.array([[0.1, 0.05], [0.05, 0.1]])
X_STAR = (0.0, 0.25, 0.5)


def make_data(n, seed, clustered=True):
    rng = np.random.default_rng(seed)
    if clustered:
        x = np.where(rng.random(n) < 0.5, rng.uniform(0.05, 0.3, n), rng.uniform(0.6, 0.85, n))
    else:
        x = rng.uniform(0, 1, n)
    f = np.c_[np.cos(2 * np.pi * x), np.sin(2 * np.pi * x)]
    return x[:, None], f + rng.multivariate_normal(np.zeros(2), SIGMA, size=n)


def ellipse(ax, mean, cov, **kw):
    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 200)
    for q in (0.5, 0.9):
        r = np.sqrt(stats.chi2.ppf(q, 2))
        pts = mean[:, None] + vecs @ (r * np.sqrt(np.clip(vals, 0, None))[:, None] * np.vstack([np.cos(t), np.sin(t)]))
        ax.plot(pts[0], pts[1], **kw)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    t0 = time.perf_counter()
    n = args.n_train or (30 if args.quick else 80)
    max_iter = 50 if args.quick else 200
    X, Y = make_data(n, seed=0)
    Xte, Yte = make_data(500, seed=1, clustered=False)
    kern = SE(lengthscale=0.2)
    models = {
        "Std-MT (P=1)": ICM(kern, rank=1, max_iter=max_iter),
        "~Cool-MT": CoolMTGP(kern, method="approximate", max_iter=max_iter),
        "HCool-MT": CoolMTGP(kern, method="hierarchical", max_iter=max_iter),
    }
    grid = np.linspace(0, 1, 200)[:, None]
    import matplotlib.pyplot as plt

    fig5, ax5 = plt.subplots(2, len(models), figsize=(4 * len(models), 5), sharex=True, sharey=True)
    fig6, ax6 = plt.subplots(len(X_STAR), len(models), figsize=(3.3 * len(models), 3.2 * len(X_STAR)))
    rows = []
    for j, (name, m) in enumerate(models.items()):
        m.fit(X, Y)
        g = m.predict(grid, include_noise=True)
        lo, hi = g.interval(0.95)
        for t in range(2):
            a = ax5[t, j]
            a.fill_between(grid[:, 0], lo[:, t], hi[:, t], alpha=0.3)
            a.plot(grid[:, 0], g.mean[:, t])
            a.plot(X[:, 0], Y[:, t], "k.", ms=3)
            a.set_title(f"{name}, task {t + 1}", fontsize=9)
        te = m.predict(Xte, include_noise=True)
        lo, hi = te.interval(0.95)
        cover = float(np.mean((Yte >= lo) & (Yte <= hi)))
        nlpd = -float(np.mean([stats.multivariate_normal(te.mean[i], te.cov[i]).logpdf(Yte[i]) for i in range(len(Yte))]))
        S = m.noise_covariance_
        row = {"model": name, "Sigma_11": S[0, 0], "Sigma_12": S[0, 1], "Sigma_22": S[1, 1],
               "test RMSE": float(np.sqrt(np.mean((te.mean - Yte) ** 2))), "95% coverage": cover, "test NLPD": nlpd}
        ps = m.predict(np.array(X_STAR)[:, None], include_noise=True)
        for i, xs in enumerate(X_STAR):
            c = ps.cov[i]
            row[f"corr x*={xs}"] = c[0, 1] / np.sqrt(c[0, 0] * c[1, 1])
            row[f"sd1 x*={xs}"] = np.sqrt(c[0, 0])
            a = ax6[i, j]
            ellipse(a, ps.mean[i], c, color="C0")
            truth = np.array([np.cos(2 * np.pi * xs), np.sin(2 * np.pi * xs)])
            ellipse(a, truth, SIGMA, color="k", ls="--", lw=0.8)
            a.plot(*ps.mean[i], "C0+")
            a.set_title(f"{name}, x* = {xs}", fontsize=9)
            a.set_aspect("equal", "datalim")
        rows.append(row)
    for f, name in ((fig5, "cool_two_tasks_intervals.png"), (fig6, "cool_two_tasks_ellipses.png")):
        f.tight_layout()
        f.savefig(out / name, dpi=110)
        plt.close(f)
    df = pd.DataFrame(rows)
    md = [page_header("Cool-MTGP, Sec. 5.2: two-task cos/sin predictive", quick=args.quick,
                      elapsed=time.perf_counter() - t0),
          f"{n} training points in two clusters (x in (0.05, 0.3) and (0.6, 0.85)), 500 test points "
          "uniform on (0, 1), SE kernel, true noise Sigma = [[0.1, 0.05], [0.05, 0.1]] (correlation 0.5). "
          "Predictives of new observations (noise included). Ellipses: 50% and 90% regions; dashed: the "
          "true noise distribution around the true mean.\n",
          md_table(df, ".3f"), "\n![intervals](cool_two_tasks_intervals.png)\n",
          "![ellipses](cool_two_tasks_ellipses.png)\n"]
    text = "\n".join(md)
    (out / "cool_two_tasks.md").write_text(text + "\n")
    print(text)
    return df


if __name__ == "__main__":
    main()
