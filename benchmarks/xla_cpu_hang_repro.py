"""Reproducer for the XLA CPU deadlock met while benchmarking Magma on the
swimmers data with jax/jaxlib 0.10.x on a 2-core CPU.

    python benchmarks/xla_cpu_hang_repro.py stats 4   # S accumulation, 4 size buckets
    python benchmarks/xla_cpu_hang_repro.py estep 1   # full E step, one padded block

Runs the jitted program 3 times and prints the time of each call. With
jaxlib 0.10.2 the process can stop using CPU forever. Diagnosis (gdb
``thread apply all bt``): the main thread waits in
CommonPjRtLoadedExecutable::ExecuteLaunch -> tsl::BlockUntilReady, and both
``tf_XLAEigen`` intra-op workers sit in
``jax::CholeskyFactorization<F64>::Kernel(xla::ffi::ThreadPool, ...)``
(lapack_dpotrf_ffi, called from the thunk executor), each waiting for the
pieces of its batch it scheduled on the same pool: a thread-pool starvation
deadlock, possible whenever as many batched LAPACK kernels run at once as the
pool has threads (2 here). jaxlib 0.10 added the ThreadPool argument to its
LAPACK kernels (``strings jaxlib/cpu/_lapack.so | c++filt | grep
'Kernel(xla::ffi::ThreadPool'`` finds 16 Cholesky variants in 0.10.0, none
in 0.9.2), so mtgp requires jax < 0.10: with jaxlib 0.9.2 the full swimmers
E step and fits complete (docs/results/magma_scale_notes.md).

Stall under CPU contention (jaxlib 0.9-0.12, docs/results/magma_scale_notes.md,
"Stall under CPU contention"): with other processes busy on the cores, calls
took 1.5-40 s instead of 0.5 s, because jaxlib's LAPACK kernels call scipy's
multi-threaded OpenBLAS whose spin-waiting helper threads starve. mtgp's
public methods limit the BLAS threads (``mtgp.config.blas_scope``); this
script runs its calls in the same scope (``mtgp.config.compute_scope``), so

    MTGP_BLAS_THREADS=off python benchmarks/xla_cpu_hang_repro.py estep 4   # without the limit
    python benchmarks/xla_cpu_hang_repro.py estep 4 5                       # with it, 5 calls

``benchmarks/cpu_contention.py`` runs both beside busy-loop processes.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import mtgp
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # the script computes with jax.numpy too
mtgp.config.set_xla_cpu_flags()  # as benchmarks/_common.py
from mtgp.magma import numerics as core
from mtgp.data import bucket_individuals, pooled_grid, to_individuals
from mtgp.kernels import SE

what, nb = sys.argv[1], int(sys.argv[2])
ncalls = int(sys.argv[3]) if len(sys.argv) > 3 else 3
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
        w = jnp.ones(Xb.shape[0])
        Pinv, r, lb = core._bucket_sums(ski, True, theta, jnp.zeros(N + 1), Xb, yb, mb, ib, w)
        S, ll = S.at[ib[:, :, None], ib[:, None, :]].add(Pinv), ll + lb
    return ll


for call in range(ncalls):
    t = time.perf_counter()
    with mtgp.config.compute_scope():  # as every public method of mtgp (BLAS threads limited)
        if what == "stats":
            v = float(stats(theta))
        else:
            v = float(core.e_step_jit(core.MagmaStatic(ski, ski, True), core.MagmaParams(k.init_params(), theta),
                                      core.MagmaData.from_buckets(pad, grid, np.zeros(N))).loglik)
    print(what, call, v, f"{time.perf_counter() - t:.2f} s", flush=True)
