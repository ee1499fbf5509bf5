"""Magma (Leroy et al. 2022): many individuals sharing a mean process that is
itself a GP.

Modules: :mod:`~mtgp.magma.numerics` (pure functions over named pytrees:
weighted E-step sums, hyper-posterior, M-step objectives),
:mod:`~mtgp.magma.em` (the EM loop, Algorithm 1, and the several-start
option), :mod:`~mtgp.magma.prediction` (a new individual, Sec. 4 and 4.3),
:mod:`~mtgp.magma.io` (save/load), :mod:`~mtgp.magma.estimator`
(:class:`Magma`). The per-individual work runs in a backend
(:mod:`mtgp.backends`)."""

from .estimator import Magma
from .numerics import MagmaData, MagmaParams, MagmaStatic, MeanPosterior

__all__ = ["Magma", "MagmaData", "MagmaParams", "MagmaStatic", "MeanPosterior"]
