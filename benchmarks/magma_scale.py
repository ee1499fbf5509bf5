"""Magma at scale (issue 5): fit and prediction timings, memory, scaling
exponents and the accuracy of the exact and approximate speed-ups.

    python benchmarks/magma_scale.py            # full run (~10-20 min on 2 cores)
    python benchmarks/magma_scale.py --quick    # CI smoke run (< ~60 s)
    python benchmarks/magma_scale.py --only swimmers,sim10k

Prints one table per sub-benchmark and writes them, with the machine
description and the command, to docs/results/magma_scale[_quick].md (plus the
log-log scaling plot magma_scale[_quick].png). Timings are wall-clock medians
of repeated runs; "warm" means the XLA programs were already compiled in the
process, "cold process" a fresh `python` that imports mtgp, fits and exits
(with mtgp's persistent compilation cache already filled, and empty).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mtgp  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # the script computes with jax.numpy too
mtgp.config.set_xla_cpu_flags()  # as benchmarks/_common.py
from mtgp.metrics import mse  # noqa: E402


# ------------------------------------------------------------------ helpers

def _timed(fn, repeat=3):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), ts, out


def _load():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _paper_split(sim, n_obs=20):
    """Train on all individuals but the last; the last one's first n_obs
    points are observed, the rest are predicted (Sec. 6, Table 1)."""
    ids = sim.data.ID.unique()
    train = sim.data[sim.data.ID != ids[-1]]
    new = sim.data[sim.data.ID == ids[-1]].sort_values("Input")
    return train, new.iloc[:n_obs], new.iloc[n_obs:]


def _cic95(pred, y):
    m, s = np.asarray(pred.mean), np.sqrt(np.diag(np.asarray(pred.cov)))
    return float(np.mean(np.abs(y - m) <= 1.959964 * s))


def _run_py(code, env=None, timeout=1800):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=timeout)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return wall, r.stdout.strip().splitlines()[-1]


def table(title, header, rows):
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------- sub-benchmarks

def bench_small(quick):
    """The paper's M = 20 x 30 problem: warm fit, Common and Different HP."""
    sim = mtgp.simulate(20, 30, seed=0)
    rows = []
    for common in (True, False):
        mtgp.Magma(common_hp=common).fit(sim.data)  # compile
        med, ts, m = _timed(lambda: mtgp.Magma(common_hp=common).fit(sim.data), 3 if quick else 5)
        rows.append(["Common" if common else "Different", f"{med:.3f}", f"{min(ts):.3f}", m.n_iter_,
                     "< 0.5 s" if common else "-", _load()])
    return table("M = 20 x 30 (paper's simulation), warm fit", ["HP", "median s", "min s", "EM iter",
                                                                 "target", "load"], rows)


_COLD = """
import time; t0 = time.perf_counter()
import mtgp
sim = mtgp.simulate(20, 30, seed=0)
m = mtgp.Magma().fit(sim.data)
print(time.perf_counter() - t0)
"""


def bench_cold(quick):
    """Fresh processes: import mtgp, simulate, fit, exit."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        env = {"MTGP_CACHE_DIR": d}
        wall, inner = _run_py(_COLD, env)
        rows.append(["empty cache (first ever run)", f"{wall:.2f}", f"{float(inner):.2f}", _load()])
        walls, inners = [], []
        for _ in range(2 if quick else 3):
            w, i = _run_py(_COLD, env)
            walls.append(w)
            inners.append(float(i))
        rows.append([f"filled cache (median of {len(walls)})", f"{np.median(walls):.2f}",
                     f"{np.median(inners):.2f}", _load()])
    return table("M = 20 x 30, cold process (target < 5 s)",
                 ["cache", "process wall s", "import+fit s", "load"], rows)


def bench_predict(quick):
    """One new individual (20 observed points), 500-point grid, warm."""
    sim = mtgp.simulate(20, 30, seed=0)
    train, obs, _ = _paper_split(sim)
    grid = np.linspace(0, 10, 500)
    rows = []
    for common in (True, False):
        m = mtgp.Magma(common_hp=common).fit(train)
        m.predict(obs, inputs=grid)
        med, ts, _ = _timed(lambda: np.asarray(m.predict(obs, inputs=grid).mean), 5 if quick else 20)
        rows.append(["Common" if common else "Different (learns the new HPs)", f"{1e3 * med:.1f}",
                     f"{1e3 * min(ts):.1f}", _load()])
    return table("Prediction of one new individual on 500 points, warm (target < 50 ms)",
                 ["HP", "median ms", "min ms", "load"], rows)


_SWIM = """
import time, json
import mtgp
df = mtgp.datasets.load_swimmers().drop(columns="Gender")
if {quick}:
    df = df[df.ID.isin(df.ID.unique()[:100])]
kw = dict(common_hp={common}, grid_binning={w})
t = time.perf_counter(); m = mtgp.Magma(**kw).fit(df); first = time.perf_counter() - t
t = time.perf_counter(); m = mtgp.Magma(**kw).fit(df); warm = time.perf_counter() - t
print(json.dumps(dict(first=first, warm=warm, N=int(m.grid_.shape[0]), sizes=m.fit_info_["bucket_sizes"],
                      it=m.n_iter_, ll=m.log_likelihood_, M=df.ID.nunique(), P=len(df))))
"""


def bench_swimmers(quick):
    """Each configuration in its own process, with a time limit: on this
    machine's jax 0.10.2 the XLA CPU runtime was seen to hang (all threads
    idle) on these programs; a hang is reported, not waited for."""
    rows = []
    configs = [(True, None), (True, 0.05), (False, None)] if not quick else [(True, None)]
    limit = 150 if quick else 400
    for common, w in configs:
        name = ["Common" if common else "Different", "exact union" if w is None else f"binned {w}"]
        try:
            _, line = _run_py(_SWIM.format(quick=quick, common=common, w=w), timeout=limit)
            r = json.loads(line)
            rows.append(name + [r["N"], str(r["sizes"]), f"{r['first']:.1f}", f"{r['warm']:.1f}", r["it"],
                                f"{r['ll']:.1f}", _load()])
        except subprocess.TimeoutExpired:
            rows.append(name + ["-", "-", f"no result in {limit} s (hang, see note)", "-", "-", "-", _load()])
    return table("Swimmers (3,456 individuals, 76,832 points; --quick: first 100 swimmers); "
                 "targets: Common < 20 s, Different < 60 s",
                 ["HP", "grid", "N", "bucket sizes", "first fit s (incl. compile)", "warm fit s",
                  "EM iter", "log-lik", "load"], rows)


_BIG = """
import resource, time, json
import mtgp
sim = mtgp.simulate({M}, {n}, n_grid=200, common_grid=False, seed=0)
t = time.perf_counter(); m = mtgp.Magma().fit(sim.data); first = time.perf_counter() - t
t = time.perf_counter(); m = mtgp.Magma().fit(sim.data); warm = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(first=first, warm=warm, rss=rss, it=m.n_iter_, N=int(m.grid_.shape[0]))))
"""


def bench_sim10k(quick):
    M, n = (1000, 15) if quick else (10000, 15)
    try:
        _, line = _run_py(_BIG.format(M=M, n=n), timeout=300 if quick else 600)
    except subprocess.TimeoutExpired:
        return table("Simulated 10,000 x 15", ["result"], [["no result within the time limit (hang, see note)"]])
    r = json.loads(line)
    rows = [[f"{M} x {n}", r["N"], f"{r['first']:.1f}", f"{r['warm']:.1f}", r["it"], f"{r['rss']:.0f}", _load()]]
    return table("Simulated, Common HP, fresh process; targets: fit < 30 s, peak memory < 4 GB",
                 ["M x n", "N", "first fit s (incl. compile)", "warm fit s", "EM iter",
                  "peak RSS MB (whole process)", "load"], rows)


_FIXED = """
import time, json
import mtgp
data = mtgp.simulate({M}, {n}, n_grid=200, common_grid=False, seed=1).data
mk = lambda: mtgp.Magma(max_iter=3, tol=1e-300)
mk().fit(data)
ts = []
for _ in range(2):
    t = time.perf_counter(); mk().fit(data); ts.append(time.perf_counter() - t)
print(min(ts))
"""


def _fixed_fit(M, n, limit):
    """Warm time of 3 EM iterations, in a fresh process with a time limit
    (NaN when the XLA CPU runtime hangs, see the notes)."""
    try:
        return float(_run_py(_FIXED.format(M=M, n=n), timeout=limit)[1])
    except subprocess.TimeoutExpired:
        return float("nan")


def bench_scaling(quick, out_png):
    Ms = [20, 50, 100, 200] if quick else [50, 100, 200, 500, 1000]
    ns = [10, 20, 30] if quick else [10, 20, 40, 80]
    limit = 60 if quick else 90
    tM = [_fixed_fit(M, 30, limit) for M in Ms]
    tn = [_fixed_fit(50, n, limit) for n in ns]
    kM = Ms.index(100) if 100 in Ms else 0

    def slope(x, t):
        x, t = np.asarray(x, float), np.asarray(t, float)
        ok = np.isfinite(t)
        return np.polyfit(np.log(x[ok]), np.log(t[ok]), 1)[0] if ok.sum() >= 2 else float("nan")

    sM, sn = slope(Ms[kM:], tM[kM:]), slope(ns, tn)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
        ax[0].loglog(Ms, tM, "o-")
        ax[0].set(xlabel="M individuals (30 points each, N = 200 grid)", ylabel="s per 3 EM iterations",
                  title=f"fit time vs M: slope {sM:.2f} (M >= {Ms[kM]})")
        ax[1].loglog(ns, tn, "o-")
        ax[1].set(xlabel="points per individual (M = 50)", title=f"fit time vs n: slope {sn:.2f}")
        fig.tight_layout()
        fig.savefig(out_png, dpi=100)
    except ImportError:
        pass
    rows = [[f"M = {M}", f"{t:.3f}"] for M, t in zip(Ms, tM)] + [[f"n = {n}", f"{t:.3f}"] for n, t in zip(ns, tn)]
    rows.append(["log-log slope vs M", f"{sM:.2f}"])
    rows.append(["log-log slope vs n", f"{sn:.2f}"])
    return table(f"Scaling, Common HP, 3 EM iterations, warm (load {_load()}); plot: {Path(out_png).name}",
                 ["size", "s"], rows)


def bench_binning(quick):
    """Accuracy cost of grid_binning on a large union grid (known truth)."""
    M, ng = (50, 500) if quick else (300, 3000)
    sim = mtgp.simulate(M + 1, 30, n_grid=ng, common_grid=False, seed=2)
    train, obs, test = _paper_split(sim)
    rows = []
    for w in (None, 0.01, 0.05, 0.2):
        t = time.perf_counter()
        m = mtgp.Magma(grid_binning=w).fit(train)
        dt = time.perf_counter() - t
        p = m.predict(obs, inputs=test[["Input"]].to_numpy())
        hp = m.hyperposterior(sim.grid)
        rows.append(["exact" if w is None else w, m.grid_.shape[0], f"{dt:.1f}",
                     f"{mse(test.Output.to_numpy(), np.asarray(p.mean)):.4f}",
                     f"{_cic95(p, test.Output.to_numpy()):.2f}",
                     f"{np.sqrt(np.mean((np.asarray(hp.mean) - sim.mean_process) ** 2)):.4f}"])
    return table(f"grid_binning accuracy (simulated, {M} individuals x 30 points on a {ng}-point union, "
                 "inputs in [0, 10]; fit time includes compile)",
                 ["bin width", "N", "fit s", "pred. MSE", "CIC95", "RMSE of m_hat vs true mu_0"], rows)


def bench_exact(quick):
    """Paper's simulation: MSE with and without the exact optimisations
    (buckets vs one padded block) on uneven individuals."""
    rows = []
    for seed in range(2 if quick else 5):
        sim = mtgp.simulate(21, 30, common_grid=False, seed=seed)
        train, obs, test = _paper_split(sim)
        rng = np.random.default_rng(seed)
        cnt = {i: rng.integers(5, 31) for i in train.ID.unique()}
        train = train[train.groupby("ID").cumcount() < train.ID.map(cnt)]
        res = []
        for b in (1, 4):
            m = mtgp.Magma(buckets=b).fit(train)
            p = m.predict(obs, inputs=test[["Input"]].to_numpy())
            res.append((mse(test.Output.to_numpy(), np.asarray(p.mean)), m.log_likelihood_))
        rows.append([seed, f"{res[0][0]:.8f}", f"{res[1][0]:.8f}", f"{abs(res[0][0] - res[1][0]):.1e}",
                     f"{abs(res[0][1] - res[1][1]):.1e}"])
    return table("Exactness: paper's simulation (uneven sizes), one padded block vs size buckets",
                 ["seed", "MSE 1 block", "MSE buckets", "|diff MSE|", "|diff log-lik|"], rows)


BENCHES = ["small", "cold", "predict", "exact", "scaling", "sim10k", "swimmers", "binning"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES))
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "magma_scale_quick" if a.quick else "magma_scale"
    png = out / f"{stem}.png"
    parts = []
    for name in a.only.split(","):
        t = time.perf_counter()
        fn = globals()[f"bench_{name}"]
        txt = fn(a.quick, png) if name == "scaling" else fn(a.quick)
        txt += f"\n({name}: {time.perf_counter() - t:.0f} s)\n"
        print(txt, flush=True)
        parts.append(txt)
        (out / f"{stem}.partial.md").write_text("\n".join(parts))
    cmd = "python benchmarks/magma_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    import jax
    head = (f"# Magma at scale{' (quick)' if a.quick else ''}\n\nCommand: `{cmd.strip()}`\n\n"
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, CPU only "
            f"(no GPU), shared with other jobs (load averages shown per table); Python "
            f"{platform.python_version()}, jax {jax.__version__}, float64.\n\n")
    path = out / f"{stem}.md"
    path.write_text(head + "\n".join(parts))
    (out / f"{stem}.partial.md").unlink(missing_ok=True)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
