"""The kernel interface: log-scale hyper-parameters, structure (the one
compile key), parameters held fixed by multi-output models, sums and
products, and (de)serialisation. Concrete kernels live in
:mod:`mtgp.kernels.stationary` and :mod:`mtgp.kernels.dot_product`."""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import config
from ..exceptions import DataError

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
        """JSON-ready description (class name and hyper-parameter values) from
        which :func:`kernel_from_dict` rebuilds the kernel (used by the model
        files of :mod:`mtgp.io`)."""
        raise NotImplementedError

    # ---- conveniences ----------------------------------------------------
    @config.float64
    def __call__(self, X1, X2=None):
        """The covariance matrix k(X1, X2) (or k(X1, X1)) at the values the
        kernel holds, in float64."""
        X1 = _as_2d(X1)
        X2 = X1 if X2 is None else _as_2d(X2)
        self.check_input_dim(X1.shape[1])
        self.check_input_dim(X2.shape[1])
        return self.evaluate(self.init_params(), X1, X2)

    def check_input_dim(self, d: int, what: str = "inputs") -> None:
        """Raise :class:`~mtgp.exceptions.DataError` if inputs of dimension
        ``d`` do not fit the kernel's ARD lengthscale."""
        if self.input_dim is not None and self.input_dim != d:
            raise DataError(
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
        shapes, not values): equal structures share compiled programs, so it
        is the only key under which mtgp caches a compiled program.

        The default covers a subclass whose ``evaluate`` depends only on its
        class and its parameters: the class, the shapes of
        ``init_params()``, and every other hashable attribute (static
        configuration). Override it if ``evaluate`` reads anything else.

        Structures hold the kernel *classes* themselves, not their names or
        ids: two classes of the same name never share a program, and a
        cached program keeps its class alive, so no id can be reused."""
        params = self.init_params()
        leaves, treedef = jax.tree_util.tree_flatten(params)
        static = []
        for name, value in sorted(vars(self).items()):
            if isinstance(value, (bool, int, float, str, type(None), tuple)):
                static.append((name, value))
        return (type(self), str(treedef), tuple(np.shape(x) for x in leaves), tuple(static))

    def scale_mask(self, fix: bool = True):
        """Pytree of bools matching :meth:`init_params` that marks the
        kernel's overall scale, which multi-output models hold fixed: it is
        redundant with the output covariance (C (x) K = (aC) (x) (K / a)), so
        C is identifiable only once the kernel's variance is pinned. Leaf
        kernels mark their ``variance``; a sum keeps the first summand's
        variance fixed (the second's ratio stays free); a product fixes both.
        The default (unknown kernel classes) fixes nothing."""
        return jax.tree_util.tree_map(lambda _: False, self.init_params())

    def static(self) -> "StaticKernel":
        """This kernel's structure as a hashable :class:`StaticKernel`: the
        key under which compiled programs are shared (values are not part
        of it)."""
        return StaticKernel(self)

    @property
    def n_params(self) -> int:
        """Number of scalar (log) hyper-parameters, ARD entries counted."""
        leaves = jax.tree_util.tree_leaves(self.init_params())
        return int(sum(np.size(x) for x in leaves))


def _positive(name: str, value, kernel_name: str):
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{kernel_name}: {name} must be a positive finite number "
                         f"(or a 1-D array of them), got {value!r}") from None
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
        # the log on the host (numpy) then one transfer: an eager jnp.log
        # compiled a small program per parameter shape on a first fit (issue 15)
        return {p: jax.device_put(np.log(np.asarray(getattr(self, p), dtype=np.float64)))
                for p in self.param_names}

    def with_params(self, params):
        new = copy.copy(self)
        for p in self.param_names:
            v = np.exp(np.asarray(params[p], dtype=np.float64))
            setattr(new, p, v if v.ndim == 1 else float(v))
        return new

    def hyperparameters(self):
        return {p: getattr(self, p) for p in self.param_names}

    def structure(self):
        return (type(self),) + tuple((p, np.shape(getattr(self, p))) for p in self.param_names)

    def scale_mask(self, fix: bool = True):
        return {p: bool(fix and p == "variance") for p in self.param_names}

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
        return (type(self), self.k1.structure(), self.k2.structure())

    def to_dict(self):
        return {"type": type(self).__name__, "k1": self.k1.to_dict(), "k2": self.k2.to_dict()}

    def __repr__(self):
        return f"({self.k1!r} {self._symbol} {self.k2!r})"


class Sum(_Combination):
    """k1 + k2."""

    _symbol = "+"

    def scale_mask(self, fix: bool = True):
        return (self.k1.scale_mask(fix), self.k2.scale_mask(False))

    def evaluate(self, params, X1, X2):
        return self.k1.evaluate(params[0], X1, X2) + self.k2.evaluate(params[1], X1, X2)

    def evaluate_diag(self, params, X):
        return self.k1.evaluate_diag(params[0], X) + self.k2.evaluate_diag(params[1], X)


class Product(_Combination):
    """k1 * k2 (elementwise)."""

    _symbol = "*"

    def scale_mask(self, fix: bool = True):
        return (self.k1.scale_mask(fix), self.k2.scale_mask(fix))

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
        """The wrapped kernel's :meth:`Kernel.evaluate`."""
        return self.kernel.evaluate(params, X1, X2)

    def evaluate_diag(self, params, X):
        """The wrapped kernel's :meth:`Kernel.evaluate_diag`."""
        return self.kernel.evaluate_diag(params, X)



_REGISTRY: Dict[str, type] = {"Sum": Sum, "Product": Product}


def register(cls):
    """Class decorator: make a kernel class loadable by :func:`kernel_from_dict`."""
    _REGISTRY[cls.__name__] = cls
    return cls


def kernel_from_dict(spec: Dict[str, Any]) -> Kernel:
    """Inverse of ``Kernel.to_dict`` (used by model save/load)."""
    cls = _REGISTRY.get(spec.get("type"))
    if cls is None:
        raise ValueError(f"unknown kernel type {spec.get('type')!r}")
    if issubclass(cls, _Combination):
        return cls(kernel_from_dict(spec["k1"]), kernel_from_dict(spec["k2"]))
    return cls(**spec["params"])
