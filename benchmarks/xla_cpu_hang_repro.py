"""Reproducer for the XLA CPU runtime hang met while benchmarking Magma on
the swimmers data (jax/jaxlib 0.10.2, 2-core CPU).

    python benchmarks/xla_cpu_hang_repro.py stats 4   # S accumulation, 4 size buckets
    python benchmarks/xla_cpu_hang_repro.py estep 1   # full E step, one padded block

Runs the jitted program 3 times and prints the time of each call. A hang
shows as a process using no CPU forever: the Python thread waits in
ArrayImpl._value -> BlockUntilReady; gdb shows one XLA worker in
CpuPjRtRawLoadedExecutable::Execute -> tsl::BlockUntilReady and every other
Eigen worker idle in ThreadPoolTempl::WaitForWork (a lost completion, not
starvation). Observed here (load 2-12 from other jobs):

* ``stats 4`` without flags: 3/3 hangs; with
  ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` (which mtgp now
  sets at import): 0/3 hangs, and 4x faster than one padded block;
* ``estep`` (with that flag, with or without
  ``--xla_cpu_multi_thread_eigen=false``): the 2nd call hangs;
* the same programs at M = 20 x 30 never hung (hundreds of calls).
"""

import sys
import time

import jax
import jax.numpy as jnp

import mtgp
from mtgp import _magma_core as core
from mtgp.data import bucket_individuals, pooled_grid, to_individuals
from mtgp.kernels import SE

what, nb = sys.argv[1], int(sys.argv[2])
df = mtgp.datasets.load_swimmers().drop(columns="Gender")
inds = to_individuals(df)
grid, splits = pooled_grid(inds)
pad = bucket_individuals(inds, splits, grid.shape[0], nb)
N = grid.shape[0]
blk = lambda f: tuple(jnp.asarray(getattr(b, f)) for b in pad.blocks)
X, y, mask, idx = blk("X"), blk("y"), blk("mask"), blk("idx")
rows = tuple(jnp.asarray(r) for r in pad.rows)
k = SE()
ski = k.static()
theta = {"kernel": k.init_params(), "log_noise": jnp.asarray(0.0)}
print("bucket sizes", pad.sizes, "N", N, flush=True)


@jax.jit
def stats(theta):
    S, ll = jnp.zeros((N + 1, N + 1)), 0.0
    for Xb, yb, mb, ib in zip(X, y, mask, idx):
        Pinv, r, lb = core._individual_stats(ski, True, theta, jnp.zeros(N + 1), Xb, yb, mb, ib)
        S, ll = S.at[ib[:, :, None], ib[:, None, :]].add(Pinv), ll + lb
    return ll


for call in range(3):
    t = time.perf_counter()
    if what == "stats":
        v = float(stats(theta))
    else:
        v = float(core.e_step_jit(ski, ski, True, k.init_params(), theta, jnp.asarray(grid), jnp.zeros(N),
                                  X, y, mask, idx, rows).loglik)
    print(what, call, v, f"{time.perf_counter() - t:.2f} s", flush=True)
