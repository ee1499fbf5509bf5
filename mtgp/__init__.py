"""mtgp: multi-task Gaussian processes in JAX (float64).

Magma (Leroy et al. 2022) for many individuals sharing a mean process, and
Cool-MTGP (García-Hinde et al. 2022) for many outputs at shared inputs.
"""

import jax

# All numerics are float64; must be set before any array is created.
jax.config.update("jax_enable_x64", True)

from . import kernels, linalg, optim  # noqa: E402

__version__ = "0.1.0"

from . import multioutput  # noqa: E402
from .multioutput import ICM, CoolMTGP, IndependentGPs, StructuredNoiseMTGP  # noqa: E402
