"""Fit times quoted in the issue-2 closing note: the paper's M = 20 x 30
simulation (Common and Different HP) and the full children weight data.

    python3 benchmarks/magma_fit_times.py

Prints cold (first fit in the process: includes compilation) and warm times.
"""

import time
import warnings

import numpy as np

import mtgp
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # the script computes with jax.numpy too
mtgp.config.set_xla_cpu_flags()  # as benchmarks/_common.py
from mtgp.kernels import SE


def main():
    warnings.simplefilter("ignore")
    for common in (True, False):
        ts = []
        for k in range(4):
            s = mtgp.simulate(20, 30, common_grid=True, common_hp=common, seed=k)
            m = mtgp.Magma(SE(50.0, 3.0), SE(20.0, 3.0), noise=1.0, common_hp=common)
            t = time.perf_counter()
            m.fit(s.data)
            ts.append(time.perf_counter() - t)
        print(f"M=20x30 common_hp={common}: first (cold) {ts[0]:.2f} s, warm median "
              f"{np.median(ts[1:]):.3f} s, {m.n_iter_} EM iterations", flush=True)
    w = mtgp.datasets.load_weight().drop(columns="Sex")
    v = w.Output.var()
    for common in (True, False):
        m = mtgp.Magma(SE(v, 24.0), SE(v / 4, 24.0), noise=0.05 * v, prior_mean=w.Output.mean(),
                       common_hp=common)
        t = time.perf_counter()
        m.fit(w)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        m.fit(w)
        t2 = time.perf_counter() - t
        print(f"children weight (342 children, 3629 points) common_hp={common}: cold {t1:.2f} s, "
              f"warm {t2:.2f} s, {m.n_iter_} EM iterations, log-likelihood {m.log_likelihood_:.2f}", flush=True)


if __name__ == "__main__":
    main()
