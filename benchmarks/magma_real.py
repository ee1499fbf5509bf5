"""Leroy et al. (2022), Sec. 6.5 on real data: French 100 m freestyle
swimmers (Table 5, Fig. 5) and the same protocol on the children weight data.

    python benchmarks/magma_real.py swimmers [--n-train K] [--n-test K] [--quick]
    python benchmarks/magma_real.py weight   [--quick]
    python benchmarks/magma_real.py all      [--quick]

Protocol (Sec. 6.5): the data are split by gender (swimmers) or sex
(children); in each group the individuals are split at random into training
and testing sets in the paper's proportions (1039/692 women and 4726/3150 men:
60% / 40%). Magma (Uncommon grid, Common HP, prior mean 0, SE kernels) is
trained on the training set; for each testing individual the first 80% of its
points (floor(0.8 n)) are observed and the remaining ones predicted, by Magma
and by a single-task GP (prior mean 0). MSE and CIC95 are averaged over the
testing individuals (mean (sd)). ``--n-train`` / ``--n-test`` cap the number of
training / testing individuals per group (a random subset of the split), to
bound the run time; the page says what was used.

Initial hyper-parameters: ours, data-driven (the paper's defaults, variance
e^1, lengthscale e^1, noise 0.4, are on the scale of its R package): variance
of a process that carries the level (mu_0, the single-task GP) = mean square
of the outputs, individual variance = output variance, lengthscale = input
range / 5, noise = 5% of the output variance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402

import mtgp  # noqa: E402
from mtgp.kernels import SE  # noqa: E402

DATASETS = {
    "swimmers": dict(loader="load_swimmers", group="Gender", groups=("female", "male"),
                     labels={"female": "Women", "male": "Men"}, xlabel="age (years)",
                     ylabel="100 m freestyle time (s)",
                     paper_split={"female": (1039, 692), "male": (4726, 3150)}),
    "weight": dict(loader="load_weight", group="Sex", groups=("female", "male"),
                   labels={"female": "Girls", "male": "Boys"}, xlabel="age (months)", ylabel="weight (kg)",
                   paper_split=None),
}


def split_ids(ids, seed, frac_train=0.6):
    rng = np.random.default_rng(seed)
    ids = np.array(sorted(ids))
    perm = rng.permutation(ids.size)
    n_tr = int(round(frac_train * ids.size))
    return list(ids[perm[:n_tr]]), list(ids[perm[n_tr:]])


def capped_split(ids, seed, n_train=None, n_test=None):
    """:func:`split_ids`, then random subsets of at most ``n_train`` /
    ``n_test`` individuals; returns (train ids, test ids, sizes of the split)."""
    tr_ids, te_ids = split_ids(ids, seed)
    n_split = (len(tr_ids), len(te_ids))
    rng = np.random.default_rng(seed + 1)
    if n_train is not None and n_train < len(tr_ids):
        tr_ids = list(rng.choice(tr_ids, n_train, replace=False))
    if n_test is not None and n_test < len(te_ids):
        te_ids = list(rng.choice(te_ids, n_test, replace=False))
    return tr_ids, te_ids, n_split


def obs_test(d):
    d = d.sort_values("Input")
    n_obs = int(np.floor(0.8 * len(d)))
    return d.iloc[:n_obs], d.iloc[n_obs:]


def fit_magma(train):
    init = C.init_values(train.Output, train.Input)
    model = mtgp.Magma(mean_kernel=SE(variance=init["level_var"], lengthscale=init["lengthscale"]),
                       individual_kernel=SE(variance=init["var"], lengthscale=init["lengthscale"]),
                       noise=init["noise"], common_hp=True)
    return model.fit(train[["ID", "Input", "Output"]])


def fit_gp(obs, x_range):
    gi = C.init_values(obs.Output, x_range)
    return mtgp.GP(kernel=SE(variance=gi["level_var"], lengthscale=gi["lengthscale"]),
                   noise=gi["noise"]).fit(obs[["Input", "Output"]])


def _beat():
    C.beat()


def run_group(df, spec, group, seed, n_train=None, n_test=None, progress=True):
    d = df[df[spec["group"]] == group].drop(columns=[spec["group"]])
    tr_ids, te_ids, n_split = capped_split(d.ID.unique(), seed, n_train, n_test)
    train = d[d.ID.isin(tr_ids)]
    x_range = d.Input.to_numpy()
    t = time.perf_counter()
    model = fit_magma(train)
    t_fit = time.perf_counter() - t
    rows = []
    t0 = time.perf_counter()
    for k, i in enumerate(te_ids):
        obs, test = obs_test(d[d.ID == i])
        y, x = test.Output.to_numpy(), test.Input.to_numpy()
        gp = fit_gp(obs, x_range)
        pg = gp.predict(x)
        pm = model.predict(obs[["Input", "Output"]], inputs=x)
        _beat()
        rows.append({"group": group, "ID": i, "n": len(obs) + len(test), "n_obs": len(obs),
                     "GP_MSE": mtgp.metrics.mse(y, pg.mean), "GP_CIC95": mtgp.metrics.cic95(y, pg.mean, pg.var),
                     "Magma_MSE": mtgp.metrics.mse(y, pm.mean),
                     "Magma_CIC95": mtgp.metrics.cic95(y, pm.mean, pm.var)})
        if progress and (k + 1) % max(1, len(te_ids) // 5) == 0:
            print(f"  {group}: {k + 1}/{len(te_ids)} test individuals, {time.perf_counter() - t0:.0f} s", flush=True)
    info = {"group": group, "split": n_split, "n_train": len(tr_ids), "n_test": len(te_ids),
            "train_points": len(train), "pooled_N": len(model.grid_), "fit_s": t_fit,
            "predict_s": time.perf_counter() - t0, "em_iter": model.n_iter_,
            "mean_kernel": repr(model.mean_kernel_), "individual_kernel": repr(model.individual_kernel_),
            "noise": model.noise_}
    return pd.DataFrame(rows), model, d, tr_ids, te_ids, info


def example_curves(model, d, tr_ids, te_ids, seed):
    """Fig. 5 data for one group: one random testing individual (>= 10
    points), GP and Magma predictions on a fine grid, the mean process, and a
    few training individuals for the background."""
    rng = np.random.default_rng(seed)
    cand = sorted([i for i in te_ids if (d.ID == i).sum() >= 10] or list(te_ids))
    i = cand[rng.integers(len(cand))]
    obs, test = obs_test(d[d.ID == i])
    grid = np.linspace(d.Input.min(), d.Input.max(), 300)
    gp = fit_gp(obs, d.Input.to_numpy())
    out = {"ID": np.array(str(i)), "grid": grid, "obs_x": obs.Input.to_numpy(), "obs_y": obs.Output.to_numpy(),
           "test_x": test.Input.to_numpy(), "test_y": test.Output.to_numpy(),
           "mu": model.hyperposterior(grid).mean}
    for name, p in (("GP", gp.predict(grid)), ("Magma", model.predict(obs[["Input", "Output"]], inputs=grid))):
        lo, hi = p.interval(0.95)
        out[f"{name}_mean"], out[f"{name}_lo"], out[f"{name}_hi"] = p.mean, lo, hi
    back = rng.choice(sorted(tr_ids), min(15, len(tr_ids)), replace=False)
    bd = d[d.ID.isin(back)]
    out["back_id"] = np.asarray(bd.ID.astype(str).tolist(), dtype=str)
    out["back_x"], out["back_y"] = bd.Input.to_numpy(), bd.Output.to_numpy()
    out["ylim"] = d.Output.quantile([0.002, 0.998]).to_numpy()
    return out


def plot_examples(curves, spec, path):
    """Fig. 5 style: per group, GP (left) and Magma (right)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = list(curves)
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 3.6 * len(groups)), squeeze=False)
    for r, g in enumerate(groups):
        c = curves[g]
        for col, name in enumerate(("GP", "Magma")):
            ax = axes[r, col]
            for b in np.unique(c["back_id"]):
                m = c["back_id"] == b
                ax.plot(c["back_x"][m], c["back_y"][m], ".", ms=3, alpha=0.5)
            ax.fill_between(c["grid"], c[f"{name}_lo"], c[f"{name}_hi"], color="0.8", alpha=0.7)
            ax.plot(c["grid"], c[f"{name}_mean"], color="tab:blue", lw=2)
            if name == "Magma":
                ax.plot(c["grid"], c["mu"], "k--", lw=1.2, label="mean process")
                ax.legend(fontsize=8, loc="upper right")
            ax.plot(c["obs_x"], c["obs_y"], "ko", ms=4)
            ax.plot(c["test_x"], c["test_y"], "ro", ms=4)
            y0, y1 = c["ylim"]
            ax.set_ylim(y0 - 0.1 * (y1 - y0), y1 + 0.1 * (y1 - y0))
            ax.set_title(f"{spec['labels'][g]}, ID {c['ID']}: {name}", fontsize=10)
            ax.set_xlabel(spec["xlabel"])
            ax.set_ylabel(spec["ylabel"])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _group_job(name, group, seed, n_train, n_test, tmp):
    """One group, written to files in ``tmp`` (run in a child process)."""
    spec = DATASETS[name]
    df = getattr(mtgp.datasets, spec["loader"])()
    res, model, d, tr, te, info = run_group(df, spec, group, seed, n_train, n_test)
    curves = example_curves(model, d, tr, te, seed)
    tmp = Path(tmp)
    res.to_csv(tmp / f"{group}_runs.csv", index=False)
    (tmp / f"{group}_info.json").write_text(json.dumps(info, default=float))
    np.savez(tmp / f"{group}_curves.npz", **curves)
    return res, info, curves


def _group_isolated(name, group, seed, n_train, n_test, tmp, stall_s):
    """Run ``_group_job`` in a child process under the watchdog of
    ``_common.supervise`` (XLA:CPU hang workaround). A group whose files are
    already in ``tmp`` (an earlier, interrupted run with the same arguments)
    is not run again."""
    tmp = Path(tmp)
    files = [tmp / f"{group}_runs.csv", tmp / f"{group}_info.json", tmp / f"{group}_curves.npz"]
    attempts = 0
    if not all(f.exists() for f in files):
        cmd = [sys.executable, str(Path(__file__).resolve()), "_group", name, "--group", group, "--seed", str(seed),
               "--tmp", str(tmp)]
        if n_train is not None:
            cmd += ["--n-train", str(n_train)]
        if n_test is not None:
            cmd += ["--n-test", str(n_test)]
        attempts = C.supervise(cmd, tmp / f"{group}.heartbeat", stall_s, label=group)
    res = pd.read_csv(files[0], dtype={"ID": str})
    info = json.loads(files[1].read_text())
    with np.load(files[2]) as f:
        curves = {k: f[k] for k in f.files}
    info["attempts"] = attempts or "cached"
    return res, info, curves


def run(name, quick=False, out=None, n_train=None, n_test=None, seed=0, isolate=False, stall_s=600):
    spec = DATASETS[name]
    out = C.out_dir(out)
    df = getattr(mtgp.datasets, spec["loader"])()
    if quick:
        n_train, n_test = 20, 5
    frames, infos, curves = [], [], {}
    t0 = time.perf_counter()
    import tempfile
    work = Path(tempfile.gettempdir()) / f"mtgp_{name}_s{seed}_tr{n_train}_te{n_test}"
    work.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = work if isolate else scratch
        for g in spec["groups"]:
            if isolate:
                res, info, cv = _group_isolated(name, g, seed, n_train, n_test, tmp, stall_s)
            else:
                res, info, cv = _group_job(name, g, seed, n_train, n_test, tmp)
                info["attempts"] = 1
            frames.append(res)
            infos.append(info)
            curves[g] = cv
    res = pd.concat(frames, ignore_index=True)
    fig_name = f"magma_{name}_fig5.png"
    plot_examples(curves, spec, out / fig_name)
    wall = time.perf_counter() - t0
    res.to_csv(out / f"magma_{name}_runs.csv", index=False)
    rows = []
    for g in spec["groups"]:
        s = res[res.group == g]
        for m in ("GP", "Magma"):
            rows.append([spec["labels"][g], m, len(s), C.mean_sd(s[f"{m}_MSE"], 2), f"{s[f'{m}_MSE'].median():.2f}",
                         C.mean_sd(s[f"{m}_CIC95"])])
    tab = C.md_table(["Group", "Method", "test individuals", "MSE", "MSE median", "CIC95 %"], rows)
    irows = [[spec["labels"][i["group"]], f"{i['split'][0]} / {i['split'][1]}", i["n_train"], i["n_test"],
              i["train_points"], i["pooled_N"], f"{i['fit_s']:.2f}", i["em_iter"],
              f"{i['predict_s'] / max(i['n_test'], 1):.2f}", i["attempts"],
              f"{i['mean_kernel']}; {i['individual_kernel']}; noise {i['noise']:.3g}"] for i in infos]
    itab = C.md_table(["Group", "split train / test", "train used", "test used", "train points", "pooled N",
                       "Magma train (s)", "EM iter.", "GP+Magma predict (s / individual)", "attempts",
                       "fitted HPs (mu_0; individuals)"], irows)
    print(tab)
    print(itab)
    caps = ("" if n_train is None and n_test is None else
            f" Capped with --n-train {n_train} / --n-test {n_test} per group (random subsets of the split).")
    extra = (f"Data: `mtgp.datasets.{spec['loader']}()` ({df.ID.nunique()} individuals, {len(df)} rows). "
             f"Split 60% / 40% per group at random (seed {seed}); first floor(0.8 n) points of each testing "
             f"individual observed, the rest predicted.{caps} Wall time {wall:.0f} s. Per-individual numbers: "
             f"`magma_{name}_runs.csv`.")
    page = C.page_header(f"Magma on the {name} data (Sec. 6.5 protocol)", C.command_line(), quick, extra)
    page += "\n## Prediction on the testing individuals: mean (sd) over individuals\n\n" + tab + "\n"
    page += "\n## Training\n\n" + itab + "\n"
    page += f"\n## Fig. 5 style\n\n![examples]({fig_name})\n"
    (out / f"magma_{name}.md").write_text(page)
    return res, infos


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["swimmers", "weight", "all", "_group"])
    p.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--no-isolate", action="store_true",
                   help="run in this process (no watchdog against the XLA:CPU hang)")
    p.add_argument("--stall", type=int, default=600, help="watchdog: seconds without progress before a retry")
    p.add_argument("--quick", action="store_true", help="tiny run for CI")
    p.add_argument("--n-train", type=int, default=None, help="cap on training individuals per group")
    p.add_argument("--n-test", type=int, default=None, help="cap on testing individuals per group")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default docs/results)")
    a = p.parse_args(argv)
    C.setup_jax_cache()
    C.quiet()
    if a.experiment == "_group":
        _group_job(a.name, a.group, a.seed, a.n_train, a.n_test, a.tmp)
        return
    names = ["swimmers", "weight"] if a.experiment == "all" else [a.experiment]
    for n in names:
        run(n, quick=a.quick, out=a.out, n_train=a.n_train, n_test=a.n_test, seed=a.seed,
            isolate=not a.no_isolate, stall_s=a.stall)


if __name__ == "__main__":
    main()
