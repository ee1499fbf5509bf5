"""Prior means m_0 of the models: a constant, a callable of the inputs, or
values on the pooled training grid (Magma, Sec. 2: mu_0 ~ GP(m_0, K_theta0);
the single-task GP's fixed mean)."""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .exceptions import DataError

PriorMeanSpec = Union[float, Callable, Sequence[float], np.ndarray]

__all__ = ["PriorMean", "PriorMeanSpec"]


class PriorMean:
    """m_0 given as a constant, a callable f(X (n, d)) -> (n,), or (with a
    ``grid``) one value per point of the pooled training grid, then linearly
    interpolated at other 1-D inputs, with a warning.

    ``kind`` is "constant", "callable" or "values"; ``values`` holds m_0 on
    the grid (when one is given)."""

    def __init__(self, spec: PriorMeanSpec, grid: Optional[np.ndarray] = None, name: str = "prior_mean"):
        self.spec = spec
        self.grid = grid
        self.name = name
        if callable(spec):
            self.kind = "callable"
            self.values = None if grid is None else self(grid, what=f"{name} on the training inputs")
        elif np.ndim(spec) == 0:
            try:
                v = float(spec)
            except (TypeError, ValueError):
                raise DataError(f"{name} must be a number, a callable or values, got {spec!r}") from None
            if not np.isfinite(v):
                raise DataError(f"{name} must be finite, got {spec!r}")
            self.kind = "constant"
            self.values = None if grid is None else np.full(len(grid), v)
        else:
            if grid is None:
                raise DataError(f"{name}: give a constant or a callable (values need a training grid)")
            vals = np.asarray(spec, dtype=np.float64).reshape(-1)
            if vals.shape[0] != grid.shape[0]:
                raise DataError(
                    f"{name} given as values has length {vals.shape[0]}, but the training data "
                    f"have {grid.shape[0]} distinct inputs (the pooled grid, sorted): give one "
                    "value per distinct input, a constant or a callable"
                )
            if not np.all(np.isfinite(vals)):
                raise DataError(f"{name} values contain NaN or inf")
            self.kind, self.values = "values", vals

    def __call__(self, X: np.ndarray, what: Optional[str] = None) -> np.ndarray:
        """m_0 at inputs X (n, d)."""
        what = self.name if what is None else what
        if self.kind == "constant":
            return np.full(X.shape[0], float(self.spec))
        if self.kind == "callable":
            v = np.asarray(self.spec(X), dtype=np.float64).reshape(-1)
            if v.shape[0] != X.shape[0] or not np.all(np.isfinite(v)):
                raise DataError(f"{what}: the callable must return {X.shape[0]} finite values")
            return v
        # values on the grid
        on_grid = {tuple(r): k for k, r in enumerate(self.grid)}
        hits = [on_grid.get(tuple(r)) for r in X]
        if all(h is not None for h in hits):
            return self.values[np.array(hits, dtype=np.int64)]
        if self.grid.shape[1] != 1:
            raise DataError(
                f"{self.name} was given as values on the training inputs; it cannot be evaluated at "
                "new multi-dimensional inputs: give a constant or a callable instead"
            )
        warnings.warn(f"{self.name} given as values: linearly interpolated at inputs off the training grid",
                      UserWarning, stacklevel=3)
        return np.interp(X[:, 0], self.grid[:, 0], self.values)
