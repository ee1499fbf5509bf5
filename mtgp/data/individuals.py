"""Long-format longitudinal data: validation and the padded, batched layout
used by Magma and the single-task GP.

A data set is a list of individuals, each with its own inputs (n_i, d) and
outputs (n_i,). Accepted forms:

* a pandas DataFrame in long format with columns ``ID``, ``Output`` and the
  input column(s): ``Input``, or ``Input_1 .. Input_d``, or any columns named
  with ``input_columns=``;
* a dict ``{id: (inputs, outputs)}`` or a list of ``(inputs, outputs)``;
* a single ``(inputs, outputs)`` pair (one individual; for ``GP`` and for a
  new individual in ``Magma.predict``).

Nothing is silently dropped or changed: duplicate (ID, input) rows, NaN,
infinite or non-numeric values raise :class:`~mtgp.exceptions.DataError`
naming the column, individual and value.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from ..exceptions import DataError
from .validation import as_float_matrix, check_input_dim

ID_COLUMN = "ID"
OUTPUT_COLUMN = "Output"


class IndividualIds:
    """What every set of individuals has: ``ids`` (in order) and their number."""

    ids: list

    @property
    def n_individuals(self) -> int:
        """Number of individuals."""
        return len(self.ids)


@dataclass
class Individuals(IndividualIds):
    """Validated individuals (original order of first appearance)."""

    ids: list
    inputs: List[np.ndarray]  # each (n_i, d)
    outputs: List[np.ndarray]  # each (n_i,)
    input_columns: List[str]

    @property
    def input_dim(self) -> int:
        return self.inputs[0].shape[1]

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(y) for y in self.outputs], dtype=np.int64)

    def to_frame(self) -> pd.DataFrame:
        frames = []
        for i, X, y in zip(self.ids, self.inputs, self.outputs):
            f = pd.DataFrame(X, columns=self.input_columns)
            f.insert(0, ID_COLUMN, i)
            f[OUTPUT_COLUMN] = y
            frames.append(f)
        return pd.concat(frames, ignore_index=True)


def default_input_columns(columns: Sequence[str]) -> List[str]:
    cols = [c for c in columns if c == "Input" or re.fullmatch(r"Input_\d+", str(c))]
    if "Input" in cols and len(cols) > 1:
        raise DataError(
            f"ambiguous input columns {cols}: use either 'Input' or 'Input_1..Input_d', "
            "or name them with input_columns="
        )
    return sorted(cols, key=lambda c: (len(str(c)), str(c)))


def _check_duplicates(ids, X, input_columns, what):
    key = pd.DataFrame(X, columns=input_columns)
    key.insert(0, "__id", ids)
    dup = key.duplicated(keep=False)
    if dup.any():
        first = key[dup].iloc[0]
        n_dup = int(key.duplicated().sum())
        vals = ", ".join(f"{c}={float(first[c]):g}" for c in input_columns)
        ident = first["__id"].item() if hasattr(first["__id"], "item") else first["__id"]
        raise DataError(
            f"{what}: individual {ident!r} has several rows at the same input ({vals}); "
            f"{n_dup} duplicate (ID, input) row(s) in all. Magma needs one output per input and "
            "individual: average or remove the duplicates explicitly before fitting."
        )


def individuals_from_frame(df: pd.DataFrame, input_columns: Optional[Sequence[str]] = None,
                           what: str = "data", require_id: bool = True,
                           warn_extra: bool = True, warned: Optional[set] = None) -> Individuals:
    """Individuals from a long DataFrame. Columns that are neither ID, Output
    nor an input raise a UserWarning (with ``warn_extra``); ``warned``, a set
    kept by a model, holds the column names already warned about, which are
    not warned about again (one warning per fit, not per predict call)."""
    if df.shape[0] == 0:
        raise DataError(f"{what}: the table is empty")
    cols = list(df.columns)
    if OUTPUT_COLUMN not in cols:
        raise DataError(f"{what}: missing column '{OUTPUT_COLUMN}' (columns are {cols})")
    if ID_COLUMN not in cols and require_id:
        raise DataError(f"{what}: missing column '{ID_COLUMN}' (columns are {cols})")
    if input_columns is None:
        input_columns = default_input_columns(cols)
        if not input_columns:
            raise DataError(
                f"{what}: no input column: expected 'Input' or 'Input_1', 'Input_2', ... "
                f"(columns are {cols}); name other columns with input_columns="
            )
    else:
        input_columns = list(input_columns)
        missing = [c for c in input_columns if c not in cols]
        if missing:
            raise DataError(f"{what}: missing input column(s) {missing} (columns are {cols})")
    extra = [c for c in cols if c not in set(input_columns) | {ID_COLUMN, OUTPUT_COLUMN}]
    if warned is not None:
        extra_new = [c for c in extra if c not in warned]
        warned.update(extra)
        extra = extra_new
    if extra and warn_extra:
        warnings.warn(
            f"{what}: column(s) {extra} are not used (neither ID, Output nor an input column); "
            "pass input_columns=[...] to use them as inputs",
            UserWarning,
            stacklevel=3,
        )
    if ID_COLUMN in cols:
        ids = df[ID_COLUMN]
        if ids.isna().any():
            rows = np.where(ids.isna().to_numpy())[0][:5].tolist()
            raise DataError(f"{what}: column '{ID_COLUMN}' has missing values at row(s) {rows}")
        ids = ids.to_numpy()
    else:
        ids = np.zeros(df.shape[0], dtype=np.int64)
    try:
        X = as_float_matrix(df[input_columns], name=what)
        y = as_float_matrix(df[[OUTPUT_COLUMN]], name=what)[:, 0]
    except DataError as err:
        raise DataError(f"{err}{_first_bad_individual(df, list(input_columns) + [OUTPUT_COLUMN], ids)}") from None
    _check_duplicates(ids, X, input_columns, what)
    # group by ID in order of first appearance; keep each individual's row order
    codes, uniques = pd.factorize(ids, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    inputs = np.split(X[order], bounds)
    outputs = np.split(y[order], bounds)
    id_list = list(uniques) if ID_COLUMN in cols else [None]
    return Individuals(id_list, inputs, outputs, [str(c) for c in input_columns])


def _first_bad_individual(df, columns, ids) -> str:
    """", individual ID" of the first row holding a non-finite or non-numeric
    value in ``columns`` (for the message of a partition of a large table,
    where a row number alone is hard to trace); "" when none is found."""
    if ID_COLUMN not in df.columns:
        return ""
    bad = np.zeros(df.shape[0], dtype=bool)
    for c in columns:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad |= ~np.isfinite(v)
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return ""
    ident = ids[rows[0]]
    return f" (individual {ident.item() if hasattr(ident, 'item') else ident!r})"


def _pair(item, what):
    try:
        X, y = item
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected an (inputs, outputs) pair") from None
    X = as_float_matrix(X, name=f"{what} inputs")
    y = as_float_matrix(y, name=f"{what} outputs")
    if y.shape[1] != 1:
        raise DataError(f"{what}: outputs must be one-dimensional, got shape {y.shape}")
    y = y[:, 0]
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{what}: {X.shape[0]} input rows but {y.shape[0]} outputs")
    return X, y


def to_individuals(data, input_columns: Optional[Sequence[str]] = None, what: str = "data",
                   single: bool = False, warned: Optional[set] = None) -> Individuals:
    """Validate ``data`` (any accepted form, see module doc) into Individuals.

    ``single=True`` is for one individual (a GP, or a new individual in
    Magma.predict): the ID column becomes optional and must hold one value.
    ``warned``: see :func:`individuals_from_frame` (unused columns warned
    about once per model).
    """
    if isinstance(data, pd.DataFrame):
        inds = individuals_from_frame(data, input_columns, what=what, require_id=not single, warned=warned)
    elif isinstance(data, dict):
        if not data:
            raise DataError(f"{what}: no individuals")
        ids, inputs, outputs = [], [], []
        for key, item in data.items():
            X, y = _pair(item, f"{what} (individual {key!r})")
            ids.append(key)
            inputs.append(X)
            outputs.append(y)
        inds = Individuals(ids, inputs, outputs, _array_input_columns(inputs[0].shape[1], input_columns))
    elif isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        X, y = _pair(data, what)
        inds = Individuals([None], [X], [y], _array_input_columns(X.shape[1], input_columns))
    elif isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise DataError(f"{what}: no individuals")
        pairs = [_pair(item, f"{what} (individual {k})") for k, item in enumerate(data)]
        inds = Individuals(list(range(len(pairs))), [p[0] for p in pairs], [p[1] for p in pairs],
                           _array_input_columns(pairs[0][0].shape[1], input_columns))
    else:
        raise DataError(
            f"{what}: expected a DataFrame (ID, Input, Output), a dict {{id: (X, y)}}, "
            f"a list of (X, y) pairs or one (X, y) pair; got {type(data).__name__}"
        )
    dims = {X.shape[1] for X in inds.inputs}
    if len(dims) > 1:
        raise DataError(f"{what}: individuals have inputs of different dimensions {sorted(dims)}")
    if not isinstance(data, pd.DataFrame):
        for i, X in zip(inds.ids, inds.inputs):
            _check_duplicates(np.zeros(len(X)), X, inds.input_columns, f"{what} (individual {i!r})")
    if single and inds.n_individuals != 1:
        raise DataError(f"{what}: expected one individual, got {inds.n_individuals} IDs "
                        f"({inds.ids[:5]}...)")
    return inds


def _array_input_columns(d: int, names: Optional[Sequence[str]] = None) -> List[str]:
    """Names of array inputs: ``names`` when given with d entries (a saved
    model's input columns), else Input or Input_1..Input_d."""
    if names is not None and len(names) == d:
        return [str(c) for c in names]
    return ["Input"] if d == 1 else [f"Input_{j + 1}" for j in range(d)]


def as_inputs(inputs, input_columns: Sequence[str], what: str = "inputs") -> np.ndarray:
    """Prediction inputs: an array (n,) / (n, d) or a DataFrame holding the
    training input columns. Checks the dimension."""
    d = len(input_columns)
    if isinstance(inputs, pd.DataFrame):
        missing = [c for c in input_columns if c not in inputs.columns]
        if missing:
            raise DataError(f"{what}: missing input column(s) {missing}")
        X = as_float_matrix(inputs[list(input_columns)], name=what)
    else:
        X = as_float_matrix(inputs, name=what)
        if d > 1 and X.shape[1] == 1 and X.shape[0] == d and np.ndim(inputs) == 1:
            X = X.T  # a single d-dimensional point given as a vector
    check_input_dim(X, d, what, input_columns)
    return X
