"""Dot-product and constant kernels."""

from __future__ import annotations

import jax.numpy as jnp

from .base import _Leaf, register

@register
class Linear(_Leaf):
    """Linear (dot-product) kernel: variance * <x, x'>. Add ``Constant()``
    for an offset."""

    param_names = ("variance",)

    def __init__(self, variance=1.0):
        super().__init__(variance=variance)

    def evaluate(self, params, X1, X2):
        return jnp.exp(params["variance"]) * (X1 @ X2.T)

    def evaluate_diag(self, params, X):
        return jnp.exp(params["variance"]) * jnp.sum(X * X, axis=1)


@register
class Constant(_Leaf):
    """Constant kernel: k(x, x') = variance."""

    param_names = ("variance",)

    def __init__(self, variance=1.0):
        super().__init__(variance=variance)

    def evaluate(self, params, X1, X2):
        return jnp.full((X1.shape[0], X2.shape[0]), jnp.exp(params["variance"]))

    def evaluate_diag(self, params, X):
        return jnp.full(X.shape[0], jnp.exp(params["variance"]))


