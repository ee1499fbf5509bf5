"""Single-output GP regression: numerics (:mod:`~mtgp.gp.numerics`), the
estimator (:class:`GP`) and the GPFDA-style baseline of the Magma paper's
experiments (:class:`GPFDA`)."""

from .estimator import GP
from .gpfda import GPFDA

__all__ = ["GP", "GPFDA"]
