"""Magma (Leroy et al. 2022): many individuals sharing a mean process that is
itself a GP. Numerics as pure functions (:mod:`~mtgp.magma.numerics`), the
estimator (:class:`Magma`)."""

from .estimator import Magma

__all__ = ["Magma"]
