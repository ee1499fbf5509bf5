"""Many outputs and missing outputs: time and peak memory of the multi-output models.

Part 1, many outputs (issue 13): T = 100 outputs at N = 2,000 training
inputs (a synthetic linear model of coregionalisation: 3 latent SE processes
mixed into T outputs plus correlated noise), fit then predict at 500 test
points (means and per-point T x T covariances). Each model runs in its own
child process; its peak resident memory (``ru_maxrss``) is reported beside
the resident memory before the fit (Python, jax, the data) and beside the
size a dense (NT x NT) matrix would take (never formed: the likelihood and
predictive go through eigendecompositions, O(N^3 + T^3) time, memory
O(N^2 + T^2 + N T)).

Part 2, missing outputs: time of one value and gradient of Std-MT's exact
likelihood of the observed entries, dense in them (O(|O|^3)) and through
ICM's latent processes (O(T N^3 + (P N)^3)) and through the eigen route
plus the missing entries' block of the inverse (O(N^3 + |M| N^2 T + |M|^3)),
against the eigen route with
nothing missing (O(N^3 + T^3)): T = 4 with 30% of the entries missing and
T = 16 with 10%, growing N.

    python3 benchmarks/multioutput_many.py            # T = 100, N = 2000 (a few minutes per model)
    python3 benchmarks/multioutput_many.py --quick    # CI: T = 20, N = 300, small budgets

Writes ``multioutput_many.md`` into ``--out`` (default docs/results).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

from _common import load_note, md_table, out_dir, page_header

MODELS = ("Std-MT P=5", "Sigma-MT P=5", "HCool", "~Cool")


def make_data(N, n_test, T, seed=0):
    """X (N + n_test, 2) uniform on [0, 5]^2; Y = F W^T + E, F three SE
    processes (lengthscales 0.7, 1.5, 3), W (T, 3) Gaussian, E with a
    rank-3-plus-diagonal noise covariance."""
    rng = np.random.default_rng(seed)
    n = N + n_test
    X = rng.uniform(0, 5, size=(n, 2))
    d2 = np.sum((X[:, None] - X[None]) ** 2, -1)
    F = np.column_stack([np.linalg.cholesky(np.exp(-0.5 * d2 / ell**2) + 1e-8 * np.eye(n)) @ rng.normal(size=n)
                         for ell in (0.7, 1.5, 3.0)])
    W = rng.normal(size=(T, 3))
    B = 0.3 * rng.normal(size=(T, 3))
    E = rng.normal(size=(n, 3)) @ B.T + 0.2 * rng.normal(size=(n, T))
    Y = F @ W.T + E
    return X[:N], Y[:N], X[N:], (F @ W.T)[N:]


def make_model(name, max_iter):
    from mtgp.multioutput import CoolMTGP, ICM, StructuredNoiseMTGP

    if name == "Std-MT P=5":
        return ICM(rank=5, max_iter=max_iter, normalize_y=True)
    if name == "Sigma-MT P=5":
        return StructuredNoiseMTGP(rank=5, max_iter=max_iter, normalize_y=True)
    if name == "HCool":
        return CoolMTGP(method="hierarchical", max_iter=max_iter, n_outer=2, normalize_y=True)
    if name == "~Cool":
        return CoolMTGP(method="approximate", max_iter=max_iter, normalize_y=True)
    raise ValueError(name)


def _rss_mb():
    # Linux: kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args):
    """One model in this (fresh) process: JSON line with times and memory."""
    import mtgp  # noqa: F401  (through _common: float64 enabled)

    Xtr, Ytr, Xte, Fte = make_data(args.N, args.n_test, args.T)
    warnings.simplefilter("ignore")
    rss0 = _rss_mb()
    m = make_model(args.model, args.max_iter)
    t0 = time.perf_counter()
    m.fit(Xtr, Ytr)
    fit_s = time.perf_counter() - t0
    rss_fit = _rss_mb()
    t0 = time.perf_counter()
    pred = m.predict(Xte)
    predict_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.predict(Xte)
    predict_warm_s = time.perf_counter() - t0
    print(json.dumps(dict(model=args.model, fit_s=fit_s, predict_s=predict_s, predict_warm_s=predict_warm_s,
                          rss_before_mb=rss0, peak_fit_mb=rss_fit, peak_mb=_rss_mb(),
                          n_iter=int(m.fit_info_["n_iter"]),
                          mse_f=float(np.mean((pred.mean - Fte) ** 2)),
                          cov_mb=pred.cov.nbytes / 2**20)), flush=True)


def missing_costs(sizes, T=4, frac=0.3, reps=3):
    """Warm time of one value-and-gradient of the likelihood of Std-MT
    (C = a a^T + diag(kappa), diagonal Sigma): eigen route (nothing missing),
    dense-on-observed route, ICM's latent-process form and the eigen
    complement (``frac`` missing)."""
    import jax
    import jax.numpy as jnp

    from mtgp.multioutput.algebra import (complement_masked_log_likelihood, coregional_masked_log_likelihood,
                                          masked_log_likelihood, mtgp_log_likelihood, observed_index,
                                          observed_values)

    rows = []
    rng = np.random.default_rng(0)
    for N in sizes:
        X = rng.uniform(0, 5, size=(N, 2))
        K = jnp.asarray(np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, -1)))
        a, kappa, s2 = (jnp.asarray(v) for v in (rng.normal(size=(T, 1)), np.full(T, 0.1), np.full(T, 0.1)))
        Y = rng.normal(size=(N, T))
        Ym = Y.copy()
        Ym[rng.random(Y.shape) < frac] = np.nan
        i_o, t_o = observed_index(Ym)
        y_o = jnp.asarray(observed_values(Ym))
        Y0, W = jnp.asarray(np.nan_to_num(Ym)), jnp.asarray(~np.isnan(Ym), dtype=float)
        m_i, m_t = (jnp.asarray(v.astype(np.int32)) for v in np.nonzero(np.isnan(Ym)))

        def covs(a, kappa, s2):
            return a @ a.T + jnp.diag(kappa), jnp.diag(s2)

        grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))  # noqa: E731
        routes = {
            "eigen": grad(lambda K, a, k, s: mtgp_log_likelihood(K, *covs(a, k, s), jnp.asarray(Y))),
            "dense": grad(lambda K, a, k, s: masked_log_likelihood(K, *covs(a, k, s), y_o, i_o, t_o)),
            "coregional": grad(lambda K, a, k, s: coregional_masked_log_likelihood(K, a, k, s, Y0, W)),
            "complement": grad(lambda K, a, k, s: complement_masked_log_likelihood(K, *covs(a, k, s), Y0, m_i, m_t)),
        }
        times = {}
        for name, f in routes.items():
            jax.block_until_ready(f(K, a, kappa, s2))
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                jax.block_until_ready(f(K, a, kappa, s2))
                ts.append(time.perf_counter() - t0)
            times[name] = float(np.median(ts))
        rows.append([N, N * T, len(i_o)] + [f"{times[k] * 1e3:.1f}" for k in routes]
                    + [f"{len(i_o) ** 2 * 8 / 2**20:.1f}"])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--N", type=int, default=None)
    ap.add_argument("--T", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=None)
    args = ap.parse_args(argv)
    N = args.N or (300 if args.quick else 2000)
    T = args.T or (20 if args.quick else 100)
    n_test = args.n_test or (50 if args.quick else 500)
    max_iter = args.max_iter or (3 if args.quick else 5)
    if args.worker:
        args.N, args.T, args.n_test, args.max_iter = N, T, n_test, max_iter
        return worker(args)
    out = out_dir(args.out)
    t_start = time.perf_counter()
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", name, "--N", str(N), "--T", str(T),
               "--n-test", str(n_test), "--max-iter", str(max_iter)]
        print("running", name, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(proc.stderr[-3000:], file=sys.stderr)
            rows.append([name, "failed", "", "", "", "", "", "", ""])
            continue
        r = json.loads(lines[-1])
        print(r, flush=True)
        rows.append([name, r["n_iter"], f"{r['fit_s']:.1f}", f"{r['predict_s']:.2f}", f"{r['predict_warm_s']:.2f}",
                     f"{r['rss_before_mb']:.0f}", f"{r['peak_fit_mb']:.0f}", f"{r['peak_mb']:.0f}",
                     f"{r['mse_f']:.4f}"])
    sizes = (50, 100) if args.quick else (100, 200, 400, 600)
    miss_rows = missing_costs(sizes)
    many_rows = missing_costs((50,) if args.quick else (50, 100, 200), T=16, frac=0.1)
    load = load_note()
    dense_gb = (N * T) ** 2 * 8 / 2**30
    text = page_header(
        "Many outputs and missing outputs: time and memory", quick=args.quick,
        elapsed=time.perf_counter() - t_start,
        extra=load[0].upper() + load[1:] + ".")
    text += f"""
## Many outputs: T = {T}, N = {N}, {n_test} test points

Synthetic data (3 latent SE processes mixed into T outputs, correlated noise;
`make_data`), `normalize_y=True`, SE kernel, at most {max_iter} L-BFGS
iterations per run (HCool: 2 alternations), one child process per model.
A dense (NT x NT) matrix would take {dense_gb:,.1f} GiB; no such matrix is
formed. Memory is the peak resident set size of the child process
(`ru_maxrss`, MiB): before the fit (Python, jax, the data), after the fit,
and after predicting (means and the per-point T x T covariances, which
alone take {n_test * T * T * 8 / 2**20:.0f} MiB). "predict" is the first
call (compilation included), "warm" the second. MSE of the predictive mean
against the noise-free outputs at the test points: a sanity check only (the
fits stop at the iteration budget; this page measures time and memory, not
accuracy).

{md_table(["model", "L-BFGS iterations", "fit (s)", "predict (s)", "predict warm (s)", "RSS before fit (MiB)",
           "peak after fit (MiB)", "peak after predict (MiB)", "MSE f*"], rows)}

## Missing outputs: cost of the exact likelihood of the observed entries

One value and gradient (jitted, warm, median of 3) of eq. (4) for Std-MT
(C = a a^T + diag(kappa), P = 1, diagonal Sigma; SE kernel): the eigen route
with every entry observed, against three exact forms on the observed entries
only. The dense route factorises the |O| x |O| covariance of the observed
entries: time O(|O|^3), memory O(|O|^2) (last column: one |O| x |O|
matrix); ICM's latent-process form (`coregional_masked_log_likelihood`)
costs O(T N^3 + (P N)^3); the eigen complement
(`complement_masked_log_likelihood`, any C and Sigma) O(N^3 + T^3 +
|M| N^2 T + |M|^3) for |M| missing entries; the eigen route O(N^3 + T^3).
The fits take the cheapest form (`fit_info_["likelihood"]`).

T = 4 outputs, 30% missing at random:

{md_table(["N", "N T", "observed entries n_O", "eigen, complete (ms)", "dense on observed (ms)",
           "latent-process form (ms)", "eigen complement (ms)", "n_O x n_O matrix (MiB)"], miss_rows)}

T = 16 outputs, 10% missing at random (the Mulan sets oes97, oes10 and
scm20d have T = 16):

{md_table(["N", "N T", "observed entries n_O", "eigen, complete (ms)", "dense on observed (ms)",
           "latent-process form (ms)", "eigen complement (ms)", "n_O x n_O matrix (MiB)"], many_rows)}
"""
    path = out / "multioutput_many.md"
    path.write_text(text)
    print("wrote", path)


if __name__ == "__main__":
    main()
