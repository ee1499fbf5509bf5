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
infinite or non-numeric values raise :class:`~mtgp.validation.DataError`
naming the column, individual and value.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from .validation import DataError, as_float_matrix

ID_COLUMN = "ID"
OUTPUT_COLUMN = "Output"


@dataclass
class Individuals:
    """Validated individuals (original order of first appearance)."""

    ids: list
    inputs: List[np.ndarray]  # each (n_i, d)
    outputs: List[np.ndarray]  # each (n_i,)
    input_columns: List[str]

    @property
    def n_individuals(self) -> int:
        return len(self.ids)

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
                           warn_extra: bool = True) -> Individuals:
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
    X = as_float_matrix(df[input_columns], name=what)
    y = as_float_matrix(df[[OUTPUT_COLUMN]], name=what)[:, 0]
    _check_duplicates(ids, X, input_columns, what)
    # group by ID in order of first appearance; keep each individual's row order
    codes, uniques = pd.factorize(ids, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    inputs = np.split(X[order], bounds)
    outputs = np.split(y[order], bounds)
    id_list = list(uniques) if ID_COLUMN in cols else [None]
    return Individuals(id_list, inputs, outputs, [str(c) for c in input_columns])


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
                   single: bool = False) -> Individuals:
    """Validate ``data`` (any accepted form, see module doc) into Individuals.

    ``single=True`` is for one individual (a GP, or a new individual in
    Magma.predict): the ID column becomes optional and must hold one value.
    """
    if isinstance(data, pd.DataFrame):
        inds = individuals_from_frame(data, input_columns, what=what, require_id=not single)
    elif isinstance(data, dict):
        if not data:
            raise DataError(f"{what}: no individuals")
        ids, inputs, outputs = [], [], []
        for key, item in data.items():
            X, y = _pair(item, f"{what} (individual {key!r})")
            ids.append(key)
            inputs.append(X)
            outputs.append(y)
        inds = Individuals(ids, inputs, outputs, _array_input_columns(inputs[0].shape[1]))
    elif isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        X, y = _pair(data, what)
        inds = Individuals([None], [X], [y], _array_input_columns(X.shape[1]))
    elif isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise DataError(f"{what}: no individuals")
        pairs = [_pair(item, f"{what} (individual {k})") for k, item in enumerate(data)]
        inds = Individuals(list(range(len(pairs))), [p[0] for p in pairs], [p[1] for p in pairs],
                           _array_input_columns(pairs[0][0].shape[1]))
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


def _array_input_columns(d: int) -> List[str]:
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
    if X.shape[1] != d:
        raise DataError(
            f"{what}: inputs have dimension {X.shape[1]} but the model was trained on "
            f"{d}-dimensional inputs {list(input_columns)}"
        )
    return X


# --------------------------------------------------------------------------
# Padded layout


@dataclass
class Padded:
    """Individuals padded to a common size for vmapped computation.

    X (M, n, d), y (M, n), mask (M, n) in {0., 1.}, idx (M, n) index of each
    point in the pooled grid (padding points index N, one past the end)."""

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    idx: np.ndarray
    counts: np.ndarray


def pooled_grid(inds: Individuals):
    """Sorted distinct inputs of all individuals (the pooled grid t of
    Prop. 4) and, per individual, the index of each of its points in it."""
    allX = np.concatenate(inds.inputs, axis=0)
    grid, inverse = np.unique(allX, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    splits = np.split(inverse, np.cumsum(inds.counts)[:-1])
    return grid, splits


def pad_individuals(inds: Individuals, index_lists, n_grid: int, size: Optional[int] = None) -> Padded:
    counts = inds.counts
    n = int(counts.max()) if size is None else int(size)
    M, d = inds.n_individuals, inds.input_dim
    X = np.zeros((M, n, d))
    y = np.zeros((M, n))
    mask = np.zeros((M, n))
    idx = np.full((M, n), n_grid, dtype=np.int64)
    # vectorised scatter of all points (no Python loop over individuals)
    row = np.repeat(np.arange(M), counts)
    pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    X[:] = np.stack([Xi[0] for Xi in inds.inputs])[:, None, :]  # padding copies a real input
    X[row, pos] = np.concatenate(inds.inputs, axis=0)
    y[row, pos] = np.concatenate(inds.outputs)
    mask[row, pos] = 1.0
    idx[row, pos] = np.concatenate(index_lists)
    return Padded(X, y, mask, idx, counts)


# --------------------------------------------------------------------------
# Buckets by size (exact) and optional binning of inputs (approximate)

#: Padded sizes used by bucketing: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, ...
#: (powers of two and 1.5 times them), so padding wastes at most a third of
#: a bucket and the same few shapes (hence compiled programs) recur.
def _size_ladder(n_max: int) -> np.ndarray:
    ladder = {1}
    p = 1
    while p < 2 * n_max:
        ladder.update({p, (3 * p) // 2 if p >= 2 else p})
        p *= 2
    return np.array(sorted(ladder), dtype=np.int64)


@dataclass
class Buckets:
    """Individuals split into buckets of similar size, each padded to its own
    size. ``blocks[b]`` is a :class:`Padded` holding the individuals
    ``rows[b]`` (indices in training order); every individual is in exactly
    one bucket. Padding is exact (padding points contribute nothing)."""

    blocks: List[Padded]
    rows: List[np.ndarray]
    counts: np.ndarray

    @property
    def sizes(self) -> List[int]:
        return [int(b.X.shape[1]) for b in self.blocks]


def bucket_sizes(counts: np.ndarray, max_buckets: Optional[int] = 4) -> np.ndarray:
    """Padded size of each individual: its count rounded up the size ladder,
    then adjacent buckets merged greedily (the merge that adds the least
    padded work sum(count * size^3)) until at most ``max_buckets`` remain.
    ``max_buckets=1`` (or None) pads everyone to the largest count."""
    counts = np.asarray(counts, dtype=np.int64)
    n_max = int(counts.max())
    if max_buckets is None or int(max_buckets) <= 1:
        return np.full(len(counts), n_max, dtype=np.int64)
    ladder = _size_ladder(n_max)
    size = ladder[np.searchsorted(ladder, counts)]
    size = np.minimum(size, n_max)  # the top bucket is the exact maximum
    uniq, members = np.unique(size, return_counts=True)
    sizes, nums = list(uniq), list(members)
    while len(sizes) > int(max_buckets):
        # merging bucket j into j+1 pads its members to sizes[j+1]
        extra = [nums[j] * (sizes[j + 1] ** 3 - sizes[j] ** 3) for j in range(len(sizes) - 1)]
        j = int(np.argmin(extra))
        nums[j + 1] += nums[j]
        del sizes[j], nums[j]
    sizes = np.array(sizes, dtype=np.int64)
    return sizes[np.searchsorted(sizes, counts)]


def bucket_individuals(inds: Individuals, index_lists, n_grid: int,
                       max_buckets: Optional[int] = 4) -> Buckets:
    """Split individuals into at most ``max_buckets`` buckets by size (see
    :func:`bucket_sizes`) and pad each bucket to its own size."""
    counts = inds.counts
    size = bucket_sizes(counts, max_buckets)
    blocks, rows = [], []
    for s in np.unique(size):
        r = np.flatnonzero(size == s)
        sub = Individuals([inds.ids[k] for k in r], [inds.inputs[k] for k in r],
                          [inds.outputs[k] for k in r], inds.input_columns)
        blocks.append(pad_individuals(sub, [index_lists[k] for k in r], n_grid, size=int(s)))
        rows.append(r)
    return Buckets(blocks, rows, counts)


def bin_inputs(inds: Individuals, width) -> Individuals:
    """APPROXIMATE: move every input to the nearest point of a regular
    lattice of spacing ``width`` (a float, or one per input dimension):
    x -> width * round(x / width). The pooled grid then has at most
    range / width points per dimension, which bounds the (N x N) work of the
    E step and of the theta_0 update whatever the number of individuals.
    Several points of one individual may fall on the same lattice point; they
    are kept (nothing is dropped or averaged). Inputs move by at most
    width / 2: choose ``width`` small against the kernels' lengthscales."""
    w = np.broadcast_to(np.asarray(width, dtype=np.float64), (inds.input_dim,))
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"grid_binning must be a positive width, got {width!r}")
    inputs = [np.round(X / w) * w for X in inds.inputs]
    return Individuals(list(inds.ids), inputs, [y.copy() for y in inds.outputs], list(inds.input_columns))
