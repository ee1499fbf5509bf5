"""mtgp: multi-task Gaussian processes in JAX (float64).

Magma (Leroy et al. 2022) for many individuals sharing a mean process, and
Cool-MTGP (García-Hinde et al. 2022) for many outputs at shared inputs.
``import mtgp`` changes nothing in your process (see :mod:`mtgp.config`).
"""

from . import backends, config, datasets, kernels, metrics, multioutput, testing
from .distributions import MultiOutputPrediction, Prediction
from .exceptions import DataError, DegenerateOutputsWarning, JitterWarning
from .gp import GP, GPFDA
from .magma import Magma
from .magmaclust import MagmaClust
from .multioutput import ICM, CoolMTGP, IndependentGPs, StructuredNoiseMTGP
from .simulate import SimulatedData, simulate

__version__ = "0.2.0.dev0"

__all__ = [
    "Magma", "MagmaClust", "GP", "GPFDA", "CoolMTGP", "IndependentGPs", "ICM", "StructuredNoiseMTGP",
    "Prediction", "MultiOutputPrediction", "DataError", "NotFittedError", "JitterWarning",
    "DegenerateOutputsWarning", "simulate", "SimulatedData", "backends", "config", "datasets",
    "kernels", "metrics", "multioutput", "testing", "__version__",
]


def __getattr__(name):
    if name == "NotFittedError":  # created on first use (see mtgp.exceptions)
        from .exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
