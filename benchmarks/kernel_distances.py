"""Stationary kernels: squared distances from tinygp's pairwise differences
against one matrix product (|a|^2 + |b|^2 - 2ab on centred inputs), the
form mtgp uses from ``mtgp.kernels.GRAM_MIN_DIM`` input dimensions on.

Times one jitted value-and-gradient of sum(k(X, X)) with respect to the
log-lengthscale (SE kernel) for N points in D dimensions, and the largest
absolute difference of the two kernel matrices.

    python3 benchmarks/kernel_distances.py            # N in {300, 800}, D in {1, ..., 370}
    python3 benchmarks/kernel_distances.py --quick    # CI: N = 200, D in {2, 8, 64}

Writes ``kernel_distances.md`` into ``--out`` (default docs/results).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from _common import md_table, out_dir, page_header

import jax
import jax.numpy as jnp
from tinygp import kernels as tgk

from mtgp.kernels import GRAM_MIN_DIM, scaled_sq_distances


def pairwise(log_l, X):
    A = X / jnp.exp(log_l)
    return tgk.ExpSquared(scale=1.0)(A, A)


def matrix_product(log_l, X):
    A = X / jnp.exp(log_l)
    return jnp.exp(-0.5 * scaled_sq_distances(A, A, symmetric=True))


def best_time(f, *args, repeats=5):
    jax.block_until_ready(f(*args))
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    t0 = time.perf_counter()
    Ns = (200,) if args.quick else (300, 800)
    Ds = (2, 8, 64) if args.quick else (1, 2, 4, 8, 16, 32, 64, 370)
    rows = []
    for N in Ns:
        for D in Ds:
            X = jnp.asarray(np.random.default_rng(0).normal(size=(N, D)))
            ll = jnp.asarray(0.5 * np.log(D))
            diff = float(jnp.max(jnp.abs(pairwise(ll, X) - matrix_product(ll, X))))
            vg = [jax.jit(jax.value_and_grad(lambda l, X, f=f: jnp.sum(f(l, X)))) for f in (pairwise, matrix_product)]
            tp, tm = (best_time(f, ll, X) for f in vg)
            rows.append(dict(N=N, D=D, pairwise_ms=1e3 * tp, matrix_product_ms=1e3 * tm, speedup=tp / tm,
                             max_abs_diff=diff, mtgp_uses="matrix product" if D >= GRAM_MIN_DIM else "pairwise"))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join([
        page_header("Stationary kernels: pairwise vs matrix-product squared distances", quick=args.quick,
                    elapsed=time.perf_counter() - t0),
        f"SE kernel, value and gradient of sum(k(X, X)) in the log-lengthscale, jitted, best of 5 "
        f"(load average {load:.1f} at the end). Inputs N(0, 1). `max_abs_diff`: largest difference "
        f"of the two kernel matrices. mtgp switches at D >= {GRAM_MIN_DIM}.\n",
        md_table(df, ".3g"),
    ])
    (out / "kernel_distances.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
