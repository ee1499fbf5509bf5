"""Magma scaled out (issue 15): fit time against the number of Dask workers
and against the number of individuals M, bytes moved per EM iteration, peak
memory per worker.

    python benchmarks/scale_out.py            # workers 1, 2, 4 at M = 20,000; M = 10^3 .. 10^5 (~20-40 min on 2 cores)
    python benchmarks/scale_out.py --quick    # CI smoke run (M = 400 with 1, 2 workers; M = 200, 400)
    python benchmarks/scale_out.py --workers 1,2,4 --workers-M 20000 --sizes 1000,10000,100000
    python benchmarks/scale_out.py --clusters [--quick]   # MagmaClust, Dask against Local (page scale_out_clusters.md)

Writes docs/results/scale_out.md (scale_out_quick.md with --quick) into
--out. Data: M simulated individuals of n = 15 points each (Sec. 6's model,
Common HP: SE mean process, SE individual processes, noise), inputs drawn
uniformly on [0, 10] and binned to a fixed pooled grid of 0.2 (51 points,
``grid_binning``): the pooled grid is what bounds the (N x N) work and what a
Dask worker sends back per E step (O(N^2)), whatever its number of
individuals. Fits: Common HP, at most 25 EM iterations, tolerance 1e-3.
"Warm" is the second fit in the same process (and, for Dask, the same
workers: programs compiled). The Dask part needs ``pip install mtgp[dask]``;
without it the page says so.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402

import mtgp  # noqa: E402

N_POINTS, BIN = 15, 0.2


def simulate(M: int, n: int = N_POINTS, seed: int = 0):
    """Sec. 6's generative model, vectorised: mu_0 on the binned grid (SE,
    v0 = 20, l0 = 2, m0 = 0), individual SE (v = 5, l = 1) plus noise 0.5."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    grid = np.round(np.arange(0, 10 + 1e-9, BIN), 10)
    se = lambda a, b, v, l: v * np.exp(-0.5 * (a[..., :, None] - b[..., None, :]) ** 2 / l**2)
    K0 = se(grid, grid, 20.0, 2.0) + 1e-8 * np.eye(grid.size)
    mu0 = np.linalg.cholesky(K0) @ rng.normal(size=grid.size)
    t = np.sort(rng.uniform(0, 10, size=(M, n)), axis=1)
    pos = np.clip(np.round(t / BIN).astype(int), 0, grid.size - 1)
    Ki = se(grid[pos], grid[pos], 5.0, 1.0) + 0.5 * np.eye(n)
    y = mu0[pos] + np.einsum("mij,mj->mi", np.linalg.cholesky(Ki), rng.normal(size=(M, n)))
    ids = np.repeat(np.arange(M), n)
    return pd.DataFrame({"ID": ids, "Input": t.ravel(), "Output": y.ravel()})


def simulate_clusters(M: int, K: int = 3, n: int = N_POINTS, seed: int = 0):
    """K mean processes mu_k (SE, v0 = 20, l0 = 2, m = 0) on the binned grid;
    individual i follows mu_{i mod K} plus SE (v = 5, l = 1) and noise 0.5,
    at n distinct grid points (MagmaClust has no input binning: the inputs
    are the grid's own values, so the pooled grid has 51 points)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    grid = np.round(np.arange(0, 10 + 1e-9, BIN), 10)
    se = lambda a, b, v, l: v * np.exp(-0.5 * (a[..., :, None] - b[..., None, :]) ** 2 / l**2)
    K0 = se(grid, grid, 20.0, 2.0) + 1e-8 * np.eye(grid.size)
    mus = np.linalg.cholesky(K0) @ rng.normal(size=(grid.size, K))
    pos = np.sort(np.argsort(rng.random((M, grid.size)), axis=1)[:, :n], axis=1)
    Ki = se(grid[pos], grid[pos], 5.0, 1.0) + 0.5 * np.eye(n)
    cl = np.arange(M) % K
    y = mus[pos, cl[:, None]] + np.einsum("mij,mj->mi", np.linalg.cholesky(Ki), rng.normal(size=(M, n)))
    return pd.DataFrame({"ID": np.repeat(np.arange(M), n), "Input": grid[pos].ravel(), "Output": y.ravel()})


def _peak_mb() -> float:
    """This process' peak resident memory (MB): VmHWM, which a new program
    starts afresh (ru_maxrss is carried over exec from the parent on Linux,
    so a spawned worker would report at least its parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fit(df, backend=None):
    m = mtgp.Magma(grid_binning=BIN, backend=backend)
    t = time.perf_counter()
    m.fit(df)
    return time.perf_counter() - t, m


def _on_dask_workers(workers, fit):
    """For each k in ``workers``: a LocalCluster of k single-threaded worker
    processes, ``fit(backend) -> (seconds, model)`` twice on its Dask backend
    (the first compiles on the workers); yields (k, seconds and model of the
    second fit, bytes the backend moved in it, peak RSS per worker)."""
    import distributed
    from mtgp.backends import Dask

    # workers import mtgp from this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join([str(C.ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    for k in workers:
        with distributed.LocalCluster(n_workers=k, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", memory_limit=0) as cluster, \
                distributed.Client(cluster) as client:
            backend = Dask(client)
            fit(backend)
            backend.bytes_moved = 0
            t, m = fit(backend)
            yield k, t, m, backend.bytes_moved, client.run(_peak_mb)


def bench_workers(quick: bool, workers, M: int):
    """Local, then Dask with k single-threaded worker processes."""
    try:
        import distributed  # noqa: F401 - is the extra installed?
    except ImportError:
        return "## Fit time against Dask workers\n\nNot run: dask.distributed is not installed " \
               "(`pip install mtgp[dask]`).\n", []

    df = simulate(M)
    rows = []
    _fit(df)
    t_loc, m_loc = _fit(df)
    rows.append(["local (this process)", "-", f"{t_loc:.2f}", m_loc.n_iter_, "-", "-",
                 f"{_peak_mb():.0f} (this process)", "0"])
    for k, t, m, moved, peak in _on_dask_workers(workers, lambda backend: _fit(df, backend)):
        scatter = sum(p.nbytes for p in m._handle.copies)
        per_iter = (moved - scatter) / max(1, m.n_iter_)
        dll = abs(m.log_likelihood_ - m_loc.log_likelihood_) / abs(m_loc.log_likelihood_)
        rows.append([f"Dask, {k} worker process(es)", k, f"{t:.2f}", m.n_iter_, f"{scatter / 1e6:.2f}",
                     f"{per_iter / 1e6:.3f}", " / ".join(f"{v:.0f}" for v in peak.values()), f"{dll:.1e}"])
    head = ["backend", "workers", "fit warm (s)", "EM iterations", "scattered once (MB)",
            "moved per EM iteration (MB)", "peak RSS per worker (MB)", "rel. diff. log-lik vs local"]
    text = (f"## Fit time against Dask workers (M = {M:,} x {N_POINTS} points, Common HP)\n\n"
            f"Load average at start: {C_load()}.\n\n" + C.md_table(head, rows) + "\n")
    return text, rows


def _fit_clust(df, K, max_iter, backend=None):
    m = mtgp.MagmaClust(n_clusters=K, max_iter=max_iter, tol=1e-3, random_state=0, backend=backend)
    t = time.perf_counter()
    m.fit(df)
    return time.perf_counter() - t, m


def bench_clusters(workers, M: int, K: int, max_iter: int):
    """MagmaClust (Common HP, shared mean HP) on Local, then on Dask with k
    single-threaded worker processes; the second fit of each is timed."""
    try:
        import distributed  # noqa: F401 - is the extra installed?
    except ImportError:
        return "## MagmaClust: Local against Dask workers\n\nNot run: dask.distributed is not installed " \
               "(`pip install mtgp[dask]`).\n"

    df = simulate_clusters(M, K)
    load = C_load()
    _fit_clust(df, K, max_iter)
    t_loc, loc = _fit_clust(df, K, max_iter)
    rows = [["local (this process)", "-", f"{t_loc:.2f}", loc.n_iter_, "-", "-", "-", "0", "0"]]
    for k, t, m, moved, peak in _on_dask_workers(workers, lambda backend: _fit_clust(df, K, max_iter, backend)):
        scatter = _scattered_bytes(m)
        per_iter = (moved - scatter) / max(1, m.n_iter_)
        delbo = abs(m.elbo_ - loc.elbo_) / abs(loc.elbo_)
        dtau = np.max(np.abs(m.responsibilities_.to_numpy() - loc.responsibilities_.to_numpy()))
        rows.append([f"Dask, {k} worker process(es)", k, f"{t:.2f}", m.n_iter_, f"{scatter / 1e6:.2f}",
                     f"{per_iter / 1e6:.3f}", " / ".join(f"{v:.0f}" for v in peak.values()),
                     f"{delbo:.1e}", f"{dtau:.1e}"])
    head = ["backend", "workers", "fit warm (s)", "VEM iterations", "scattered once (MB)",
            "moved per VEM iteration (MB)", "peak RSS per worker (MB)", "rel. diff. ELBO vs local",
            "max abs. diff. responsibilities"]
    return (f"## MagmaClust: Local against Dask workers (M = {M:,} x {N_POINTS} points, K = {K}, "
            f"at most {max_iter} VEM iterations, Common HP)\n\nLoad average at start: {load}.\n\n"
            + C.md_table(head, rows) + "\n")


def _scattered_bytes(m) -> int:
    """Bytes of the individuals' padded arrays (what prepare scatters once)."""
    return int(sum(np.asarray(a).nbytes for t in (m._data.X, m._data.y, m._data.mask, m._data.idx,
                                                   m._data.weights) for a in t))


def C_load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


_CHILD = """
import sys, time, json
sys.path.insert(0, {here!r})
import scale_out as S
df = S.simulate({M})
t0, m = S._fit(df)
t1, m = S._fit(df)
print("RESULT", json.dumps(dict(cold=t0, warm=t1, n_iter=m.n_iter_, N=int(m.grid_.shape[0]),
      peak=S._peak_mb())))
"""


def bench_sizes(sizes, timeout):
    """Local fits, each size in a fresh process (peak memory is per size)."""
    import json

    rows, pts = [], []
    for M in sizes:
        code = _CHILD.format(here=str(HERE), M=int(M))
        try:
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
            line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                rows.append([f"{M:,}", "failed", "", "", "", p.stderr[-200:].replace("\n", " ")])
                continue
            r = json.loads(line[0][7:])
        except subprocess.TimeoutExpired:
            rows.append([f"{M:,}", f"> {timeout} s", "", "", "", ""])
            continue
        pts.append((M, r["warm"]))
        per = r["warm"] / max(1, r["n_iter"])
        rows.append([f"{M:,}", f"{r['cold']:.2f}", f"{r['warm']:.2f}", r["n_iter"], f"{per:.3f}",
                     f"{r['peak']:.0f}"])
    slope = ""
    if len(pts) >= 2:
        x, t = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
        slope = f"\n\nEmpirical scaling exponent of the warm fit time in M (least squares, log-log): " \
                f"{np.polyfit(x, t, 1)[0]:.2f}."
    head = ["M", "fit cold (s, compile incl.)", "fit warm (s)", "EM iterations", "warm s per EM iteration",
            "peak RSS of the process (MB)"]
    return (f"## Fit time against M (local backend, one process, {N_POINTS} points each, "
            f"pooled grid {int(10 / BIN) + 1} points)\n\nLoad average at start: {C_load()}.\n\n"
            + C.md_table(head, rows) + slope + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", default=None, help="comma-separated numbers of Dask workers")
    ap.add_argument("--workers-M", type=int, default=None)
    ap.add_argument("--sizes", default=None, help="comma-separated M for the local scaling")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per size")
    ap.add_argument("--out", default=None)
    ap.add_argument("--clusters", action="store_true",
                    help="MagmaClust on Local and Dask only (page scale_out_clusters.md)")
    ap.add_argument("--clusters-M", type=int, default=None, help="individuals of the MagmaClust run")
    ap.add_argument("--clusters-K", type=int, default=3)
    ap.add_argument("--clusters-iter", type=int, default=None, help="at most this many VEM iterations")
    a = ap.parse_args(argv)
    if a.clusters:
        return main_clusters(a)
    workers = [int(k) for k in (a.workers or ("1,2" if a.quick else "1,2,4")).split(",")]
    wM = a.workers_M or (400 if a.quick else 20000)
    sizes = [int(s) for s in (a.sizes or ("200,400" if a.quick else "1000,3000,10000,30000,100000")).split(",")]
    t0 = time.time()
    parts = [bench_workers(a.quick, workers, wM)[0], bench_sizes(sizes, a.timeout)]
    notes = (
        "How to read it: on the Dask backend each worker holds its partition of the individuals for "
        "the whole fit (scattered once); per EM iteration only the hyper-parameters go out and the "
        "pooled-grid sums (S: N x N, c: N, ll) come back from every worker, plus, in the Common-HP "
        "M step, one small value-and-gradient vector per worker per L-BFGS evaluation and the "
        "hyper-posterior (O(N^2)) broadcast once. So the bytes per iteration grow with the number of "
        "workers and N^2, not with M. On this shared 2-core machine, more worker processes than "
        "cores cannot be faster; the point of the table is that the sums agree and what moves.\n")
    text = C.page_header("Magma scaled out: Dask workers, number of individuals", quick=a.quick,
                         elapsed=time.time() - t0) + "\n" + notes + "\n" + "\n".join(parts)
    out = C.out_dir(a.out) / ("scale_out_quick.md" if a.quick else "scale_out.md")
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


def main_clusters(a):
    """--clusters: MagmaClust, Local against Dask (1, 2(, 4) workers)."""
    workers = [int(k) for k in (a.workers or ("1,2" if a.quick else "1,2,4")).split(",")]
    M = a.clusters_M or (150 if a.quick else 5000)
    n_iter = a.clusters_iter or (3 if a.quick else 10)
    t0 = time.time()
    part = bench_clusters(workers, M, int(a.clusters_K), n_iter)
    notes = (
        "How to read it: MagmaClust on the Dask backend keeps each worker's partition of the "
        "individuals for the whole fit (scattered once, as Magma). Per VEM iteration these move: "
        "the K weighted E-step sums (each partition gets its rows of tau[:, k] and returns S_k: "
        "N x N, c_k: N, ll_k), twice per iteration (q(mu_k) at the new tau, and after the M step; "
        "the first iteration, with tau frozen, only the latter), the K posteriors' means and covariances on the grid "
        "(O(K N^2), broadcast for the responsibilities' terms and for the M step), each partition's "
        "rows of tau and of E (M_p x K) and, in the Common-HP M step, one small value-and-gradient "
        "vector per worker per L-BFGS evaluation. So the bytes per iteration grow with the number "
        "of workers, K and N^2, and with M only through the M x K responsibilities. On this shared "
        "2-core machine, more worker processes than cores cannot be faster; the point of the table "
        "is that the fits agree and what moves.\n")
    text = C.page_header("MagmaClust scaled out: Local against Dask workers", quick=a.quick,
                         elapsed=time.time() - t0) + "\n" + notes + "\n" + part
    out = C.out_dir(a.out) / ("scale_out_clusters_quick.md" if a.quick else "scale_out_clusters.md")
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
