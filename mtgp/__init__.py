"""mtgp: multi-task Gaussian processes in JAX (float64).

Magma (Leroy et al. 2022) for many individuals sharing a mean process, and
Cool-MTGP (García-Hinde et al. 2022) for many outputs at shared inputs.
"""

import os

# jaxlib 0.9 logs a spurious "machine type doesn't match" ERROR on every
# persistent-compilation-cache hit (mtgp/_cache.py); XLA's C++ log is kept to
# fatal messages unless the user chose a level. Must precede loading jaxlib.
import sys as _sys

_XLA_LOG_QUIET = ("jaxlib" not in _sys.modules
                  or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() in {"3", "4"})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Eigen single-threaded inside XLA:CPU (no blocking waits on the intra-op
# pool; see docs/results/magma_scale_notes.md on the runtime deadlock).
# Only effective if set before the JAX backend starts, i.e. when mtgp is
# imported before any JAX computation.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import jax

# All numerics are float64; must be set before any array is created.
jax.config.update("jax_enable_x64", True)
# CPU async dispatch can hang programs with while-loops (jax-ml/jax#25861).
jax.config.update("jax_cpu_enable_async_dispatch", False)

from ._cache import enable_compilation_cache, set_xla_cpu_flags  # noqa: E402

# XLA CPU scheduler flag against a runtime hang (see mtgp/_cache.py)
set_xla_cpu_flags()

# persistent compilation cache (see mtgp/_cache.py; MTGP_CACHE_DIR=off
# disables). When jaxlib was loaded before mtgp with XLA's log at its default
# level, a cache hit would print jaxlib 0.9's spurious error: then the cache
# is only used if MTGP_CACHE_DIR asks for it explicitly.
if _XLA_LOG_QUIET or os.environ.get("MTGP_CACHE_DIR"):
    enable_compilation_cache()

def _warn_if_deadlocking_jaxlib():
    import warnings

    import jaxlib

    try:
        major, minor = (int(v) for v in jaxlib.__version__.split(".")[:2])
    except ValueError:
        return
    if (major, minor) >= (0, 10):
        warnings.warn(
            f"jaxlib {jaxlib.__version__}: its CPU LAPACK kernels can deadlock on batched "
            "problems (e.g. Magma on thousands of individuals); mtgp is tested with "
            "jaxlib < 0.10 (see README, 'Why jax is pinned below 0.10').", RuntimeWarning, stacklevel=3)


_warn_if_deadlocking_jaxlib()

from . import kernels, linalg, optim  # noqa: E402

__version__ = "0.1.0"
from . import datasets, metrics  # noqa: E402
from .gp import GP  # noqa: E402
from .magma import Magma  # noqa: E402
from .prediction import Prediction  # noqa: E402
from .simulate import SimulatedData, simulate  # noqa: E402
from . import multioutput  # noqa: E402
from .multioutput import ICM, CoolMTGP, IndependentGPs, StructuredNoiseMTGP  # noqa: E402
