"""mtgp: multi-task Gaussian processes in JAX (float64).

Magma (Leroy et al. 2022) for many individuals sharing a mean process, and
Cool-MTGP (García-Hinde et al. 2022) for many outputs at shared inputs.
``import mtgp`` changes nothing in your process (see :mod:`mtgp.config`).

``import mtgp`` is cheap: the submodules and the names below are imported on
first use (PEP 562), so JAX, pandas and the rest load when a model, kernel or
data set is first touched (``from mtgp import Magma`` works as usual).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .exceptions import DataError, DegenerateOutputsWarning, JitterWarning, ModelFileError
from .simulate import SimulatedData, simulate  # the function shadows its module's name: bound here

__version__ = "0.2.0.dev0"

__all__ = [
    "Magma", "MagmaClust", "select_n_clusters", "GP", "GPFDA", "CoolMTGP", "IndependentGPs", "ICM",
    "StructuredNoiseMTGP", "Prediction", "MultiOutputPrediction", "MixtureOfGaussians", "DataError",
    "ModelFileError", "NotFittedError", "JitterWarning", "DegenerateOutputsWarning", "simulate",
    "SimulatedData", "backends", "config", "datasets", "kernels", "metrics", "multioutput", "plotting",
    "testing", "__version__",
]

# name -> submodule that defines it (imported on first access)
_LAZY_NAMES = {
    "Magma": "magma", "MagmaClust": "magmaclust", "select_n_clusters": "magmaclust", "GP": "gp", "GPFDA": "gp",
    "CoolMTGP": "multioutput", "IndependentGPs": "multioutput", "ICM": "multioutput",
    "StructuredNoiseMTGP": "multioutput",
    "Prediction": "distributions", "MultiOutputPrediction": "distributions",
    "MixtureOfGaussians": "distributions",
    "NotFittedError": "exceptions",  # created on first use (see mtgp.exceptions)
}
# submodules reachable as attributes without an explicit import
_SUBMODULES = frozenset({
    "backends", "base", "compile", "config", "data", "datasets", "distributions", "exceptions", "gp", "io",
    "kernels", "linalg", "magma", "magmaclust", "means", "metrics", "multioutput", "optim", "plotting",
    "testing",
})

if TYPE_CHECKING:  # static type checkers and IDEs see the eager imports
    from . import backends, config, datasets, kernels, metrics, multioutput, plotting, testing  # noqa: F401
    from .distributions import MixtureOfGaussians, MultiOutputPrediction, Prediction  # noqa: F401
    from .exceptions import NotFittedError  # noqa: F401
    from .gp import GP, GPFDA  # noqa: F401
    from .magma import Magma  # noqa: F401
    from .magmaclust import MagmaClust, select_n_clusters  # noqa: F401
    from .multioutput import ICM, CoolMTGP, IndependentGPs, StructuredNoiseMTGP  # noqa: F401


def __getattr__(name):
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # binds mtgp.<name> as well
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
