"""Input validation shared by all models: clear errors that name the column,
row, individual or value at fault, raised before any numerics run (every
check of user data lives here or in :mod:`mtgp.data.individuals`)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..exceptions import DataError


def _describe_rows(rows: np.ndarray, limit: int = 5) -> str:
    rows = list(np.asarray(rows).tolist())
    txt = ", ".join(str(r) for r in rows[:limit])
    if len(rows) > limit:
        txt += f", ... ({len(rows)} in all)"
    return txt


def as_float_matrix(X, name: str = "X", columns: Optional[Sequence[str]] = None,
                    allow_nan: bool = False) -> np.ndarray:
    """Convert ``X`` (array-like or DataFrame) to a 2-D float64 array.

    1-D input becomes a column. Raises DataError naming the column and rows
    for non-numeric or non-finite entries.
    """
    if isinstance(X, pd.Series):
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        cols = list(X.columns)
        bad = [c for c in cols if not (pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c]))]
        if bad:
            raise DataError(f"{name}: column(s) {bad} are not numeric")
        arr = X.to_numpy(dtype=np.float64)
        names = [str(c) for c in cols]
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists etc.
            raise DataError(f"{name}: cannot be converted to an array ({exc})") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{name}: contains non-numeric values (dtype {arr.dtype})") from None
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise DataError(f"{name}: expected a 1-D or 2-D array, got shape {arr.shape}")
        names = list(columns) if columns is not None else [f"column {j}" for j in range(arr.shape[1])]
    if arr.shape[0] == 0:
        raise DataError(f"{name}: is empty")
    bad = ~np.isfinite(arr)
    if allow_nan:
        bad &= ~np.isnan(arr)
    if bad.any():
        j = int(np.where(bad.any(axis=0))[0][0])
        rows = np.where(bad[:, j])[0]
        raise DataError(
            f"{name}: {names[j]} has non-finite values (NaN or inf) at row(s) {_describe_rows(rows)}"
        )
    return arr


def check_same_rows(X: np.ndarray, Y: np.ndarray, xname="X", yname="Y") -> None:
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"{xname} has {X.shape[0]} rows but {yname} has {Y.shape[0]}")


def check_input_dim(X: np.ndarray, expected: int, what: str, columns=None) -> None:
    """The one input-dimension check of fitted models: ``X`` (n, d) must have
    the training inputs' dimension ``expected``."""
    if X.shape[1] != expected:
        named = f" {list(columns)}" if columns is not None else ""
        raise DataError(
            f"{what}: inputs have dimension {X.shape[1]} but the model was trained on "
            f"{expected}-dimensional inputs{named}"
        )
