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

from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from tinygp import kernels as tgk

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
    "kernel_from_dict",
]


def _as_2d(X):
    X = jnp.asarray(X, dtype=jnp.float64)
    if X.ndim == 0:
        X = X.reshape(1, 1)
    elif X.ndim == 1:
        X = X[:, None]
    return X


class Kernel:
    """Base class. Subclasses implement ``init_params``, ``evaluate``,
    ``with_params``, ``to_dict`` and ``input_dim``."""

    # ---- structure -------------------------------------------------------
    @property
    def input_dim(self) -> Optional[int]:
        """Input dimension the kernel requires, or None if any."""
        return None

    def init_params(self) -> Any:
        """Pytree of log hyper-parameters holding this kernel's values."""
        raise NotImplementedError

    def evaluate(self, params, X1, X2):
        """Covariance matrix k(X1, X2) for log hyper-parameters ``params``.

        X1 (n1, d) and X2 (n2, d) must already be 2-D float arrays."""
        raise NotImplementedError

    def evaluate_diag(self, params, X):
        """Diagonal of k(X, X); subclasses may override for speed."""
        return jnp.diagonal(self.evaluate(params, X, X))

    def with_params(self, params) -> "Kernel":
        """A kernel of the same structure holding the given log params."""
        raise NotImplementedError

    def to_dict(self) -> Dict[str, Any]:
        raise NotImplementedError

    # ---- conveniences ----------------------------------------------------
    def __call__(self, X1, X2=None):
        X1 = _as_2d(X1)
        X2 = X1 if X2 is None else _as_2d(X2)
        self.check_input_dim(X1.shape[1])
        self.check_input_dim(X2.shape[1])
        return self.evaluate(self.init_params(), X1, X2)

    def check_input_dim(self, d: int, what: str = "inputs") -> None:
        if self.input_dim is not None and self.input_dim != d:
            raise ValueError(
                f"kernel {self!r} expects {self.input_dim}-dimensional inputs "
                f"(from its ARD lengthscale) but the {what} have {d} dimension(s)"
            )

    def __add__(self, other):
        if not isinstance(other, Kernel):
            return NotImplemented
        return Sum(self, other)

    def __mul__(self, other):
        if not isinstance(other, Kernel):
            return NotImplemented
        return Product(self, other)

    def hyperparameters(self) -> Dict[str, Any]:
        """Flat {name: positive value} dictionary (for display and tables)."""
        raise NotImplementedError

    def structure(self) -> tuple:
        """Hashable description of the kernel's form (types and parameter
        shapes, not values): equal structures share compiled programs."""
        raise NotImplementedError

    def static(self) -> "StaticKernel":
        return StaticKernel(self)

    @property
    def n_params(self) -> int:
        leaves = jax.tree_util.tree_leaves(self.init_params())
        return int(sum(np.size(x) for x in leaves))


def _positive(name: str, value, kernel_name: str):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{kernel_name}: {name} must be a scalar or a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{kernel_name}: {name} must be positive and finite, got {value!r}")
    return arr if arr.ndim == 1 else float(arr)


class _Leaf(Kernel):
    """A kernel with named positive hyper-parameters."""

    param_names: Tuple[str, ...] = ()
    ard_params: Tuple[str, ...] = ()

    def __init__(self, **values):
        name = type(self).__name__
        for p in self.param_names:
            v = values.pop(p)
            if p not in self.ard_params and np.ndim(v) != 0:
                raise ValueError(f"{name}: {p} must be a scalar, got shape {np.shape(v)}")
            setattr(self, p, _positive(p, v, name))
        if values:
            raise TypeError(f"{name}: unexpected arguments {sorted(values)}")

    @property
    def input_dim(self):
        for p in self.ard_params:
            v = getattr(self, p)
            if np.ndim(v) == 1:
                return int(np.size(v))
        return None

    def init_params(self):
        return {p: jnp.log(jnp.asarray(getattr(self, p), dtype=jnp.float64)) for p in self.param_names}

    def with_params(self, params):
        new = copy.copy(self)
        for p in self.param_names:
            v = np.exp(np.asarray(params[p], dtype=np.float64))
            setattr(new, p, v if v.ndim == 1 else float(v))
        return new

    def hyperparameters(self):
        return {p: getattr(self, p) for p in self.param_names}

    def structure(self):
        return (type(self).__name__,) + tuple((p, np.shape(getattr(self, p))) for p in self.param_names)

    def to_dict(self):
        return {
            "type": type(self).__name__,
            "params": {
                p: (np.asarray(getattr(self, p)).tolist()) for p in self.param_names
            },
        }

    def __repr__(self):
        def fmt(v):
            if np.ndim(v) == 0:
                return f"{float(v):.4g}"
            return "[" + ", ".join(f"{x:.4g}" for x in np.asarray(v)) + "]"

        args = ", ".join(f"{p}={fmt(getattr(self, p))}" for p in self.param_names)
        return f"{type(self).__name__}({args})"


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


class SE(_Stationary):
    """Squared exponential (exponentiated quadratic) kernel, Magma eq. (1):
    k(x, x') = variance * exp(-|x - x'|^2 / (2 lengthscale^2))."""

    _tinygp_kernel = tgk.ExpSquared

    def _correlation_of_sq_distance(self, params, r2):
        return jnp.exp(-0.5 * r2)


class Matern32(_Stationary):
    """Matérn 3/2: variance * (1 + sqrt(3) r) exp(-sqrt(3) r), r = |x - x'| / l."""

    _tinygp_kernel = tgk.Matern32

    def _correlation_of_sq_distance(self, params, r2):
        a = np.sqrt(3.0) * _safe_sqrt(r2)
        return (1.0 + a) * jnp.exp(-a)


class Matern52(_Stationary):
    """Matérn 5/2: variance * (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)."""

    _tinygp_kernel = tgk.Matern52

    def _correlation_of_sq_distance(self, params, r2):
        a = np.sqrt(5.0) * _safe_sqrt(r2)
        return (1.0 + a + a * a / 3.0) * jnp.exp(-a)


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


class Constant(_Leaf):
    """Constant kernel: k(x, x') = variance."""

    param_names = ("variance",)

    def __init__(self, variance=1.0):
        super().__init__(variance=variance)

    def evaluate(self, params, X1, X2):
        return jnp.full((X1.shape[0], X2.shape[0]), jnp.exp(params["variance"]))

    def evaluate_diag(self, params, X):
        return jnp.full(X.shape[0], jnp.exp(params["variance"]))


class _Combination(Kernel):
    _symbol = "?"

    def __init__(self, k1: Kernel, k2: Kernel):
        if not isinstance(k1, Kernel) or not isinstance(k2, Kernel):
            raise TypeError("kernels can only be combined with kernels")
        d1, d2 = k1.input_dim, k2.input_dim
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(f"cannot combine kernels of input dimensions {d1} and {d2}")
        self.k1, self.k2 = k1, k2

    @property
    def input_dim(self):
        return self.k1.input_dim if self.k1.input_dim is not None else self.k2.input_dim

    def init_params(self):
        return (self.k1.init_params(), self.k2.init_params())

    def with_params(self, params):
        return type(self)(self.k1.with_params(params[0]), self.k2.with_params(params[1]))

    def hyperparameters(self):
        out = {}
        for prefix, k in (("k1", self.k1), ("k2", self.k2)):
            for name, v in k.hyperparameters().items():
                out[f"{prefix}.{name}"] = v
        return out

    def structure(self):
        return (type(self).__name__, self.k1.structure(), self.k2.structure())

    def to_dict(self):
        return {"type": type(self).__name__, "k1": self.k1.to_dict(), "k2": self.k2.to_dict()}

    def __repr__(self):
        return f"({self.k1!r} {self._symbol} {self.k2!r})"


class Sum(_Combination):
    """k1 + k2."""

    _symbol = "+"

    def evaluate(self, params, X1, X2):
        return self.k1.evaluate(params[0], X1, X2) + self.k2.evaluate(params[1], X1, X2)

    def evaluate_diag(self, params, X):
        return self.k1.evaluate_diag(params[0], X) + self.k2.evaluate_diag(params[1], X)


class Product(_Combination):
    """k1 * k2 (elementwise)."""

    _symbol = "*"

    def evaluate(self, params, X1, X2):
        return self.k1.evaluate(params[0], X1, X2) * self.k2.evaluate(params[1], X1, X2)

    def evaluate_diag(self, params, X):
        return self.k1.evaluate_diag(params[0], X) * self.k2.evaluate_diag(params[1], X)


class StaticKernel:
    """Wraps a kernel for use as a static ``jax.jit`` argument: hashed and
    compared by structure only, so refits and new models with the same kernel
    form reuse compiled programs (values travel as traced log params)."""

    __slots__ = ("kernel", "_key")

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self._key = kernel.structure()

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, StaticKernel) and self._key == other._key

    def evaluate(self, params, X1, X2):
        return self.kernel.evaluate(params, X1, X2)

    def evaluate_diag(self, params, X):
        return self.kernel.evaluate_diag(params, X)


_REGISTRY = {
    cls.__name__: cls
    for cls in (SE, Matern32, Matern52, RQ, Periodic, Linear, Constant, Sum, Product)
}


def kernel_from_dict(spec: Dict[str, Any]) -> Kernel:
    """Inverse of ``Kernel.to_dict`` (used by model save/load)."""
    cls = _REGISTRY.get(spec.get("type"))
    if cls is None:
        raise ValueError(f"unknown kernel type {spec.get('type')!r}")
    if issubclass(cls, _Combination):
        return cls(kernel_from_dict(spec["k1"]), kernel_from_dict(spec["k2"]))
    return cls(**spec["params"])
