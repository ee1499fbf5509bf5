"""mtgp: multi-task Gaussian processes in JAX (float64).

Magma (Leroy et al. 2022) for many individuals sharing a mean process, and
Cool-MTGP (García-Hinde et al. 2022) for many outputs at shared inputs.
"""

import jax

# All numerics are float64; must be set before any array is created.
jax.config.update("jax_enable_x64", True)

from ._cache import enable_compilation_cache, set_xla_cpu_flags  # noqa: E402

# XLA CPU scheduler flag against a runtime hang (see mtgp/_cache.py)
set_xla_cpu_flags()

# persistent compilation cache (see mtgp/_cache.py; MTGP_CACHE_DIR=off disables)
enable_compilation_cache()

from . import kernels, linalg, optim  # noqa: E402

__version__ = "0.1.0"
from . import datasets  # noqa: E402
from .magma import Magma  # noqa: E402
from .prediction import Prediction  # noqa: E402
from . import metrics  # noqa: E402
from .gp import GP  # noqa: E402
from .simulate import simulate, SimulatedData  # noqa: E402
