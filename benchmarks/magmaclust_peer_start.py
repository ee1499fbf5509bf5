"""Do the fitted hyper-parameters of MagmaClust depend on their starting
values? mtgp and mimosa-ml, on the data sets of ``magmaclust_peer.py``.

    python benchmarks/magmaclust_peer_start.py --peer-python PY        # M = 60, seeds 0..12, scales 0.25 1 4
    python benchmarks/magmaclust_peer_start.py --quick --peer-python PY

Each library fits MagmaClust (K = 3, H_oo, the settings of
``magmaclust_peer.py``) from the initial hyper-parameters of that benchmark
(``_init``) with the initial variance of the mean processes multiplied by
each ``--scales`` value (the rest unchanged). The maximiser of an objective
does not depend on where the optimiser starts, unless the objective has
several optima or the optimiser stops short: a fitted value that follows its
start is not estimated by the fit. Reported per library and scale: the
fitted mean-process variance and lengthscale, the individual variance, the
noise, ARI and the MSE of the new individual's prediction (as
``magmaclust_peer.py``). Writes ``magmaclust_peer_start.md`` and
``magmaclust_peer_start_raw.csv`` into ``--out`` (default
``docs/results``; ``_quick`` names with ``--quick``).

mimosa-ml runs in its own interpreter (``--peer-python``: Python >= 3.12
with ``mimosa-ml==0.5.0a0``, e.g. the venv ``magmaclust_peer.py`` makes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import magmaclust_peer as P  # noqa: E402


def _scaled(h, scale, what="variance"):
    """The initial HPs ``h`` with the mean processes' variance (or lengthscale) times ``scale``."""
    if what == "variance":
        return dict(h, level_var=h["level_var"] * scale, mean_lengthscale=h["lengthscale"])
    return dict(h, mean_lengthscale=h["lengthscale"] * scale)


def _worker_mtgp(jobs, what):
    sys.path.insert(0, str(P.ROOT))
    import warnings

    import pandas as pd

    import mtgp
    from mtgp.kernels import SE

    out = []
    for f, scale in jobs:
        d = dict(np.load(f))
        M, N = d["X"].shape
        h = _scaled(P._init(d), scale, what)
        df = pd.DataFrame({"ID": np.repeat([f"ID{i + 1}" for i in range(M)], N), "Input": d["X"].ravel(),
                           "Output": d["Y"].ravel()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = mtgp.MagmaClust(n_clusters=P.K, mean_kernel=SE(variance=h["level_var"], lengthscale=h["mean_lengthscale"]),
                                individual_kernel=SE(variance=h["var"], lengthscale=h["lengthscale"]),
                                noise=h["noise"], max_iter=25, tol=1e-3, random_state=0).fit(df)
        p = m.predict(pd.DataFrame({"Input": d["xo"], "Output": d["yo"]}), inputs=d["xt"])
        mean_k = m.mean_kernels_[0]  # shared across clusters (H_oo)
        out.append({"file": f, "scale": scale, "labels": m.clusters_.to_numpy().tolist(),
                    "tau": p.cluster_probabilities.tolist(), "means": [c.mean.tolist() for c in p.components],
                    "vars": [c.var.tolist() for c in p.components],
                    "mean_variance": float(mean_k.variance), "mean_lengthscale": float(mean_k.lengthscale),
                    "ind_variance": float(m.individual_kernel_.variance), "noise": float(m.noise_),
                    "n_iter": int(m.n_iter_), "elbo": float(m.elbo_), "converged": bool(m.converged_)})
    return out


def _worker_mimosa(jobs, what):
    P.mimosa_import()
    out = []
    for f, scale in jobs:
        d = dict(np.load(f))
        h = _scaled(P._init(d), scale, what)
        fit = P.mimosa_fit(d["X"], d["Y"], h)
        tau, means, var, _, par = P.mimosa_predict(fit, d["xo"], d["yo"], d["xt"])
        ck, tk = par.cluster_kernel, par.task_kernel
        out.append({"file": f, "scale": scale, "labels": np.asarray(fit["mix"].assignments).astype(int).tolist(),
                    "tau": tau.tolist(), "means": means.tolist(), "vars": var.tolist(),
                    "mean_variance": float(np.ravel(ck.left.variance)[0]),
                    "mean_lengthscale": float(np.ravel(ck.right.length_scale)[0]),
                    "ind_variance": float(np.ravel(tk.left.variance)[0]),
                    "noise": float(np.ravel(par.noise_kernel.noise)[0]), "n_iter": fit["n_iter"],
                    "elbo": float("nan"), "converged": fit["n_iter"] < 25})
    return out


def run(python, lib, jobs, folder, what):
    out = Path(folder) / f"{lib}_{what}.json"
    env = dict(os.environ)
    if lib == "mtgp":
        env["PYTHONPATH"] = str(P.ROOT)
    r = subprocess.run([python, str(Path(__file__).resolve()), "_worker", lib, what, str(out), json.dumps(jobs)],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{lib} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(out.read_text())


def page(df, cmd, quick, scales, vary, name):
    import _common as C
    import pandas as pd

    extra = (f"Data: `magmaclust_peer.py`'s (M = {int(df.M.iloc[0])} training individuals, seeds "
             f"{int(df.seed.min())}..{int(df.seed.max())}). Start: that benchmark's initial hyper-parameters with "
             f"the mean processes' initial {vary} times {', '.join(str(s) for s in scales)}. {df.load_note.iloc[0] if 'load_note' in df else C.load_note()}. "
             f"Raw numbers: `{name}_raw.csv`.")
    text = C.page_header("MagmaClust: do the fitted hyper-parameters follow their start? mtgp and mimosa-ml",
                         cmd, quick, extra)
    rows = []
    for lib, g in df.groupby("library", sort=False):
        for s, gs in g.groupby("scale"):
            rows.append([lib, f"{s:g}", f"{gs.mean_variance.median():.4g}",
                         f"{gs.mean_lengthscale.median():.3g}", f"{gs.ind_variance.median():.3g}",
                         f"{gs.noise.median():.3g}", f"{gs.ARI.mean():.2f}", f"{gs.MSE.mean():.2f}"])
    text += ("\n## Medians over data sets\n\n"
             + C.md_table(["library", f"initial mean {vary} x", "fitted mean variance", "mean lengthscale",
                           "individual variance", "noise", "ARI mean", "MSE mean"], rows) + "\n")
    # spread of each fitted value across the starts, per data set
    rows = []
    for lib, g in df.groupby("library", sort=False):
        by = g.groupby("seed")
        value = "mean_variance" if vary == "variance" else "mean_lengthscale"
        ratio = by[value].max() / by[value].min()
        mse = by.MSE.max() - by.MSE.min()
        init = g.assign(r=g.mean_variance / g.init_mean_variance).groupby("scale").r.median()
        init_l = g.assign(r=g.mean_lengthscale / g.init_mean_lengthscale).groupby("scale").r.median()
        rows.append([lib, f"{ratio.median():.3g}", f"{ratio.max():.3g}", f"{mse.median():.3g}", f"{mse.max():.3g}",
                     ", ".join(f"{v:.3g}" for v in init.to_numpy()),
                     ", ".join(f"{v:.3g}" for v in init_l.to_numpy())])
    text += ("\n## How far each fit moves with its start (per data set, over the starts)\n\n"
             + C.md_table(["library", f"fitted mean {vary} max / min: median", "max",
                           "MSE max - min: median", "max", "fitted / initial mean variance, median per start",
                           "fitted / initial mean lengthscale, median per start"],
                          rows) + "\n")
    ref = df[(df.library == "mtgp") & (df.scale == 1.0)].set_index("seed").MSE
    if len(ref):
        lines = []
        for sc, g in df[df.library == "mimosa-ml"].groupby("scale"):
            peer = g.set_index("seed").MSE.reindex(ref.index)
            lose = sorted(int(i) for i in ref.index[ref > peer])
            lines.append(f"- mimosa-ml started at x{sc:g}: mtgp's MSE at most mimosa-ml's on "
                         f"{int((ref <= peer).sum())} of {len(ref)} data sets (mimosa-ml lower on seeds "
                         f"{', '.join(map(str, lose)) or 'none'}; mean MSE {peer.mean():.2f} against mtgp's "
                         f"{ref.mean():.2f}).")
        text += ("\nmtgp from its default start (x1) against mimosa-ml from each start:\n\n"
                 + "\n".join(lines) + "\n")
    mt = df[df.library == "mtgp"].groupby("seed")
    spread = (mt.elbo.max() - mt.elbo.min())
    text += (f"\nmtgp's exact ELBO over the starts, per data set: max - min median {spread.median():.2g}, largest "
             f"{spread.max():.3g} (seed {int(spread.idxmax())}). mimosa-ml's ELBO is on its own dense, jittered "
             "scale and is not compared.\n")
    for value, title, fmt in (("mean_variance", "Fitted mean-process variance", ".4g"),
                              ("mean_lengthscale", "Fitted mean-process lengthscale", ".3g"),
                              ("MSE", "MSE of the new individual", ".3g"),
                              ("ARI", "ARI of the training individuals", ".2f")):
        piv = df.pivot_table(index="seed", columns=["library", "scale"], values=value)
        rows = [[str(s)] + [format(v, fmt) for v in r] for s, r in zip(piv.index, piv.to_numpy())]
        text += (f"\n## {title} per data set\n\n"
                 + C.md_table(["seed"] + [f"{lib} x{s:g}" for lib, s in piv.columns], rows) + "\n")
    return text


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_worker":
        lib, what, out, jobs = argv[1], argv[2], argv[3], json.loads(argv[4])
        res = (_worker_mtgp if lib == "mtgp" else _worker_mimosa)(jobs, what)
        Path(out).write_text(json.dumps(res))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--M", type=int, default=60)
    p.add_argument("--seeds", type=int, default=13)
    p.add_argument("--scales", type=float, nargs="*", default=[0.25, 1.0, 4.0])
    p.add_argument("--vary", choices=["variance", "lengthscale"], default="variance",
                   help="which initial HP of the mean processes is scaled")
    p.add_argument("--quick", action="store_true", help="M = 20, 2 seeds, scales 0.25 and 4")
    p.add_argument("--out", default=None)
    p.add_argument("--from-raw", default=None, metavar="CSV", help="rewrite the page of this raw file, no fits")
    p.add_argument("--command", default=None, help="with --from-raw: the command that made the raw file")
    p.add_argument("--peer-python", default=None, help="an interpreter with mimosa-ml (required unless --from-raw)")
    args = p.parse_args(argv)
    if args.peer_python is None and not args.from_raw:
        p.error("--peer-python is required")
    import _common as C
    import pandas as pd

    if args.from_raw:  # the page again from a run's raw numbers (no fits)
        df = pd.read_csv(args.from_raw)
        args.vary = str(df.vary.iloc[0])
        name = Path(args.from_raw).name.replace("_raw.csv", "")
        scales = sorted(df.scale.unique())
        (Path(args.from_raw).parent / f"{name}.md").write_text(
            page(df, args.command or C.command_line(), "_quick" in name, scales, args.vary, name))
        return
    if args.quick:
        args.M, args.seeds, args.scales = 20, 2, [0.25, 4.0]
    t0 = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="mtgp_peer_start_")
    files = [P.make_data(args.M, s, folder) for s in range(args.seeds)]
    jobs = [[f, s] for f in files for s in args.scales]
    rows = []
    for lib, python in (("mtgp", sys.executable), ("mimosa-ml", args.peer_python)):
        for r in run(python, lib, jobs, folder, args.vary):
            d = dict(np.load(r["file"]))
            rows.append(dict(library=lib, M=args.M, seed=int(Path(r["file"]).stem.split("seed")[1]),
                             scale=r["scale"], vary=args.vary,
                             init_mean_variance=_scaled(P._init(d), r["scale"], args.vary)["level_var"],
                             init_mean_lengthscale=_scaled(P._init(d), r["scale"], args.vary)["mean_lengthscale"],
                             **{k: r[k] for k in ("mean_variance", "mean_lengthscale", "ind_variance", "noise",
                                                  "n_iter", "elbo", "converged")},
                             **P.scores(r)))
        print(f"{lib}: {len(jobs)} fits done ({time.perf_counter() - t0:.0f} s)", flush=True)
    df = pd.DataFrame(rows).assign(load_note=C.load_note())
    out = Path(args.out) if args.out else C.RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    name = ("magmaclust_peer_start" + ("" if args.vary == "variance" else "_lengthscale")
            + ("_quick" if args.quick else ""))
    df.to_csv(out / f"{name}_raw.csv", index=False)
    text = page(df, C.command_line(), args.quick, args.scales, args.vary, name)
    (out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
