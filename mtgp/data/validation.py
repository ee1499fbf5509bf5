"""Input validation shared by all models: clear errors that name the column,
row, individual or value at fault, raised before any numerics run (every
check of user data lives here or in :mod:`mtgp.data.individuals`)."""

from __future__ import annotations

import numbers
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


def _is_number_or_missing(v) -> bool:
    """A cell an object column may hold: a real number (not a bool) or a
    missing value (None, NaN, ``pd.NA``)."""
    if v is None or v is pd.NA:
        return True
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _numeric_column(col: pd.Series, name: str, label, allow_nan: bool) -> np.ndarray:
    """One DataFrame column as float64 (missing values as NaN), or a
    DataError naming the column, the rows and the values that are not
    numbers. Object columns of numbers and None/NaN/pd.NA are accepted (what
    JSON or a list of dicts gives); booleans and dates are refused."""
    if pd.api.types.is_bool_dtype(col):
        raise DataError(f"{name}: column {label!r} is boolean, not numeric: convert it "
                        "(e.g. .astype(float)) if 0/1 is meant")
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
        raise DataError(f"{name}: column {label!r} holds dates or durations ({col.dtype}), not numbers: "
                        "convert it to numbers first (e.g. days since a reference date)")
    cells = col.to_numpy(dtype=object)
    ok = np.fromiter((_is_number_or_missing(v) for v in cells), dtype=bool, count=cells.size)
    if not ok.all():
        as_text = ~ok & pd.to_numeric(pd.Series(cells), errors="coerce").notna().to_numpy()
        if (~ok & ~as_text).any():  # name the cells that are not numbers at all first
            rows = np.flatnonzero(~ok & ~as_text)
            hint = "; leave the cell empty (NaN) where a value was not measured" if allow_nan else ""
        else:
            rows = np.flatnonzero(as_text)
            hint = " (numbers stored as text: convert the column with pd.to_numeric)"
        shown = list(dict.fromkeys(repr(cells[r]) for r in rows[:20]))[:3]
        raise DataError(f"{name}: column {label!r} is not numeric: row(s) {_describe_rows(rows)} "
                        f"hold {', '.join(shown)}{hint}")
    return np.array([np.nan if (v is None or v is pd.NA) else float(v) for v in cells], dtype=np.float64)


def as_float_matrix(X, name: str = "X", columns: Optional[Sequence[str]] = None,
                    allow_nan: bool = False) -> np.ndarray:
    """Convert ``X`` (array-like or DataFrame) to a 2-D float64 array.

    1-D input becomes a column. Raises DataError naming the column and rows
    for non-numeric or non-finite entries (and the values, for non-numeric
    ones); NaN is kept where ``allow_nan`` (a missing output).
    """
    if isinstance(X, pd.Series):
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        parts = [_numeric_column(X.iloc[:, j], name, c, allow_nan) for j, c in enumerate(X.columns)]
        arr = np.stack(parts, axis=1) if parts else np.zeros((X.shape[0], 0))
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists etc.
            raise DataError(f"{name}: cannot be converted to an array ({exc})") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                flat = arr.reshape(-1)
                first = next((v for v in flat if not _is_number_or_missing(v)), None)
                where = f": {first!r} is not a number" if first is not None else ""
                raise DataError(f"{name}: contains non-numeric values (dtype {arr.dtype}){where}") from None
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
        nan = np.isnan(arr[rows, j])
        what = "inf" if not nan.any() else "NaN" if nan.all() else "NaN and inf"
        hint = " (NaN marks a missing value here; inf is not allowed)" if allow_nan else ""
        raise DataError(f"{name}: {names[j]} has non-finite values ({what}) at row(s) {_describe_rows(rows)}{hint}")
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
