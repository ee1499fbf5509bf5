"""Covariance kernels with log-scale hyper-parameters.

A kernel object holds *initial* (or fitted) hyper-parameter values and its
structure; all numerics go through the pure function
``kernel.evaluate(params, X1, X2)`` where ``params`` is a pytree of
**log** hyper-parameters (``kernel.init_params()`` gives the kernel's own).
This split lets the models vmap one kernel structure over a batch of
parameter sets (one per individual, Magma's "Different HP") and optimise on
the log scale, as the reference implementations do.

Leaf kernels delegate the correlation function to :mod:`tinygp` and add the
variance and (ARD) lengthscale on top:

========== ==================================================================
``SE``      v * exp(-|x - x'|^2 / (2 l^2))          (Magma paper, eq. 1)
``Matern32`` v * (1 + sqrt(3) r) exp(-sqrt(3) r),  r = |x - x'|_2 / l
``Matern52`` v * (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)
``RQ``      v * (1 + r^2 / (2 alpha))^(-alpha)
``Periodic`` v * exp(-2 sin^2(pi |x - x'|_1 / p) / l^2)
``Linear``  v * <x, x'>
``Constant`` v
========== ==================================================================

For every stationary kernel r is the Euclidean distance of the inputs
divided by the lengthscale (tinygp's Matérn and RQ kernels default to the L1
distance; mtgp passes L2, as scikit-learn and GPyTorch use).

``lengthscale`` may be a vector (one per input dimension, ARD); the kernel
then only accepts inputs of that dimension. Sums and products of kernels are
kernels (``SE() + Linear()``, ``SE() * Periodic()``).
"""

from .base import Kernel, Product, StaticKernel, Sum, kernel_from_dict, register
from .dot_product import Constant, Linear
from .stationary import GRAM_MIN_DIM, RQ, SE, Matern32, Matern52, Periodic, scaled_sq_distances

__all__ = [
    "Kernel",
    "SE",
    "Matern32",
    "Matern52",
    "RQ",
    "Periodic",
    "Linear",
    "Constant",
    "Sum",
    "Product",
    "StaticKernel",
    "kernel_from_dict",
    "register",
    "GRAM_MIN_DIM",
    "scaled_sq_distances",
]
