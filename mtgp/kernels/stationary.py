"""Stationary kernels: v * rho(|x - x'| / l), with rho from tinygp (SE,
Matérn 3/2 and 5/2, rational quadratic) and the periodic kernel."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
# imported with the kernels, not at first use: importing tinygp imports
# equinox, which adds configuration values to JAX's tracing context, so that
# every program traced before it (eager ops included) would be compiled again
from tinygp import kernels as tgk

from .base import _Leaf, register

# From this input dimension on, stationary kernels get their squared
# distances from one matrix product instead of tinygp's pairwise
# differences, which materialise an (n1, n2, d) array: with gradients, at
# n = 800 the pairwise form takes 27 ms at d = 8 and 1.2 s at d = 370
# against 6 ms and 29 ms; at d <= 4 it is the faster one
# (docs/results/kernel_distances.md). Below it (Magma's 1-D ages) the
# exact pairwise form is kept.
GRAM_MIN_DIM = 8


def scaled_sq_distances(A, B, symmetric=False):
    """|a_i - b_j|^2 for the rows of A (n1, d) and B (n2, d) through
    |a|^2 + |b|^2 - 2 a.b on inputs centred at A's mean (the distances are
    translation invariant; centring keeps the cancellation error at the
    level of the points' spread). Clipped at 0; with ``symmetric`` (B is A)
    the result is symmetrised and its diagonal set to 0 exactly."""
    c = jnp.mean(A, axis=0)
    A = A - c
    B = A if symmetric else B - c
    na = jnp.sum(A * A, axis=1)
    nb = na if symmetric else jnp.sum(B * B, axis=1)
    r2 = jnp.maximum(na[:, None] + nb[None, :] - 2.0 * (A @ B.T), 0.0)
    if symmetric:
        r2 = 0.5 * (r2 + r2.T) * (1.0 - jnp.eye(A.shape[0], dtype=r2.dtype))
    return r2


def _safe_sqrt(r2):
    # d sqrt(r2) at r2 = 0 is infinite; the correlations below are flat there
    pos = r2 > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)


class _Stationary(_Leaf):
    """v * rho(|x - x'| / l) with rho from tinygp, evaluated at unit scale
    (from ``GRAM_MIN_DIM`` input dimensions on, rho is applied to squared
    distances from a matrix product: :func:`scaled_sq_distances`)."""

    param_names = ("variance", "lengthscale")
    ard_params = ("lengthscale",)
    _tinygp_kernel = None  # set by subclasses

    def __init__(self, variance=1.0, lengthscale=1.0):
        super().__init__(variance=variance, lengthscale=lengthscale)

    def _correlation(self, params):
        # Euclidean r for every stationary kernel (tinygp's Matérn and RQ
        # default to the L1 distance, which is not the usual kernel for d > 1)
        return self._tinygp_kernel(scale=1.0, distance=tgk.distance.L2Distance())

    def _correlation_of_sq_distance(self, params, r2):
        """rho as a function of the squared scaled distance (same formula as
        the tinygp kernel of :meth:`_correlation`)."""
        raise NotImplementedError

    def evaluate(self, params, X1, X2):
        scale = jnp.exp(params["lengthscale"])
        A = X1 / scale
        if X1.shape[-1] >= GRAM_MIN_DIM:
            B = A if X2 is X1 else X2 / scale
            r2 = scaled_sq_distances(A, B, symmetric=X2 is X1)
            return jnp.exp(params["variance"]) * self._correlation_of_sq_distance(params, r2)
        rho = self._correlation(params)
        return jnp.exp(params["variance"]) * rho(A, X2 / scale)

    def evaluate_diag(self, params, X):
        # rho(0) = 1 for every stationary correlation used here
        return jnp.full(X.shape[0], jnp.exp(params["variance"]))


@register
class SE(_Stationary):
    """Squared exponential (exponentiated quadratic) kernel, Magma eq. (1):
    k(x, x') = variance * exp(-|x - x'|^2 / (2 lengthscale^2))."""

    _tinygp_kernel = tgk.ExpSquared

    def _correlation_of_sq_distance(self, params, r2):
        return jnp.exp(-0.5 * r2)


@register
class Matern32(_Stationary):
    """Matérn 3/2: variance * (1 + sqrt(3) r) exp(-sqrt(3) r), r = |x - x'| / l."""

    _tinygp_kernel = tgk.Matern32

    def _correlation_of_sq_distance(self, params, r2):
        a = np.sqrt(3.0) * _safe_sqrt(r2)
        return (1.0 + a) * jnp.exp(-a)


@register
class Matern52(_Stationary):
    """Matérn 5/2: variance * (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)."""

    _tinygp_kernel = tgk.Matern52

    def _correlation_of_sq_distance(self, params, r2):
        a = np.sqrt(5.0) * _safe_sqrt(r2)
        return (1.0 + a + a * a / 3.0) * jnp.exp(-a)


@register
class RQ(_Stationary):
    """Rational quadratic: variance * (1 + r^2 / (2 alpha))^(-alpha)."""

    param_names = ("variance", "lengthscale", "alpha")

    def __init__(self, variance=1.0, lengthscale=1.0, alpha=1.0):
        _Leaf.__init__(self, variance=variance, lengthscale=lengthscale, alpha=alpha)

    def _correlation(self, params):
        return tgk.RationalQuadratic(scale=1.0, alpha=jnp.exp(params["alpha"]),
                                     distance=tgk.distance.L2Distance())

    def _correlation_of_sq_distance(self, params, r2):
        alpha = jnp.exp(params["alpha"])
        return (1.0 + 0.5 * r2 / alpha) ** -alpha


@register
class Periodic(_Leaf):
    """Periodic (exp-sine-squared) kernel:
    variance * exp(-2 sin^2(pi |x - x'|_1 / period) / lengthscale^2)."""

    param_names = ("variance", "lengthscale", "period")

    def __init__(self, variance=1.0, lengthscale=1.0, period=1.0):
        super().__init__(variance=variance, lengthscale=lengthscale, period=period)

    def evaluate(self, params, X1, X2):
        gamma = 2.0 * jnp.exp(-2.0 * params["lengthscale"])
        k = tgk.ExpSineSquared(scale=jnp.exp(params["period"]), gamma=gamma)
        return jnp.exp(params["variance"]) * k(X1, X2)

    def evaluate_diag(self, params, X):
        return jnp.full(X.shape[0], jnp.exp(params["variance"]))


