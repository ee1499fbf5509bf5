"""Input checks specific to the multi-output models (shared inputs, T outputs).

Every check raises :class:`mtgp.exceptions.DataError` with a message naming
the column, rows or value at fault, before any numerics run.
"""

from __future__ import annotations

import warnings
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from ..data.validation import _describe_rows, as_float_matrix, check_input_dim, check_same_rows
from ..exceptions import DataError, DegenerateOutputsWarning


def _names(Y) -> Optional[List[str]]:
    if isinstance(Y, pd.DataFrame):
        return [str(c) for c in Y.columns]
    if isinstance(Y, pd.Series):
        return [str(Y.name)]
    return None


def check_outputs(Y, name: str = "Y", allow_missing: bool = False) -> Tuple[np.ndarray, List[str]]:
    """Validate the (N, T) output matrix; return it as float64 and output names.

    Missing outputs (NaN) are kept when ``allow_missing`` (fit: heterotopic
    data; ``predict(Y_observed=...)``), else the error names the rows.
    Infinite values are always an error.
    """
    names = _names(Y)
    arr = as_float_matrix(Y, name, allow_nan=True)
    nan = np.isnan(arr)
    if nan.any() and not allow_missing:
        rows = np.where(nan.any(axis=1))[0]
        cols = np.where(nan.any(axis=0))[0]
        cnames = [names[j] if names else f"column {j}" for j in cols]
        raise DataError(
            f"{name}: missing outputs (NaN) at row(s) {_describe_rows(rows)} in {cnames}; "
            "every output must be observed here: drop those rows"
        )
    if names is None:
        names = [f"output {j}" for j in range(arr.shape[1])]
    return arr, names


def feature_names(X) -> Optional[np.ndarray]:
    """The input column names of ``X`` (scikit-learn's ``feature_names_in_``):
    an object array of the DataFrame's column names when they are all
    strings, else None (arrays, or non-string column labels, which
    scikit-learn does not record either)."""
    if isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in X.columns):
        return np.asarray(list(X.columns), dtype=object)
    return None


def _warn_if_indexes_differ(X, Y, yname="Y", stacklevel=4):
    """X and Y are matched by position; warn when both are pandas objects
    whose row indexes disagree (a join or shuffle gone wrong upstream)."""
    if not (isinstance(X, (pd.DataFrame, pd.Series)) and isinstance(Y, (pd.DataFrame, pd.Series))):
        return
    if len(X) != len(Y) or X.index.equals(Y.index):
        return
    pos = np.where(np.asarray(X.index != Y.index))[0]
    first = int(pos[0])
    warnings.warn(
        f"X and {yname} have different row indexes ({pos.size} of {len(X)} rows differ; first at position "
        f"{first}: X index {X.index[first]!r}, {yname} index {Y.index[first]!r}); rows are matched by "
        f"position, not by index: align them (e.g. {yname}.loc[X.index]) if that is not what you mean",
        UserWarning, stacklevel=stacklevel,
    )


def check_fit_data(X, Y):
    """Validate training data: returns ``(X (N, D), Y (N, T), output_names)``.
    ``Y`` may hold NaN where an output was not measured (heterotopic data);
    every output needs at least two observed values."""
    _warn_if_indexes_differ(X, Y)
    Xa = as_float_matrix(X, "X")
    Ya, names = check_outputs(Y, "Y", allow_missing=True)
    check_same_rows(Xa, Ya)
    N, T = Ya.shape
    if T < 2:
        raise DataError(
            "Y has a single output: a multi-output model has nothing to share; "
            "use a single-output GP (e.g. mtgp.GP) instead"
        )
    if T > N:
        raise DataError(
            f"Y has {T} outputs but only {N} samples: the T x T output and noise covariances "
            "cannot be estimated from fewer samples than outputs"
        )
    missing = np.isnan(Ya)
    if missing.any():
        n_obs = (~missing).sum(axis=0)
        few = np.where(n_obs < 2)[0]
        if few.size:
            raise DataError(
                f"Y: output(s) {[names[j] for j in few]} have fewer than 2 observed values "
                f"({[int(n_obs[j]) for j in few]}); an output needs observations to be learnt: remove it"
            )
        sd = np.nanstd(Ya, axis=0)
        scale = np.nanmax(np.abs(Ya), axis=0)
    else:
        sd = Ya.std(axis=0)
        scale = np.abs(Ya).max(axis=0)
    const = np.where(sd <= 1e-12 * np.maximum(1.0, scale))[0]
    if const.size:
        raise DataError(
            f"Y: output(s) {[names[j] for j in const]} are constant; a constant output has no "
            "covariance to learn: remove it (its prediction is the constant)"
        )
    complete = ~missing.any(axis=1)
    if complete.sum() >= T:  # the rank check needs complete rows
        _warn_if_rank_deficient(Ya[complete], names)
    return Xa, Ya, names


def _warn_if_rank_deficient(Y, names):
    """Warn when the N x T outputs have rank r < T: some combination of the
    outputs is exactly zero at every sample, so C (x) K + Sigma (x) I can be
    singular along it with the data in its range and eq. (4) is unbounded
    above; C and Sigma along that direction are not identifiable (Sigma-MT's
    noise then runs to 0 and its C and Sigma grow without bound)."""
    _, sv, Vt = np.linalg.svd(Y, full_matrices=False)
    tol = sv[0] * max(Y.shape) * np.finfo(float).eps
    rank = int(np.sum(sv > tol))
    if rank < Y.shape[1]:
        v = Vt[-1]
        big = np.argsort(-np.abs(v))[: min(4, len(v))]
        combo = " + ".join(f"{v[j]:.3g}*{names[j]!r}" for j in big if abs(v[j]) > 1e-8)
        warnings.warn(
            f"Y has rank {rank} < {Y.shape[1]} outputs: the outputs satisfy exact linear relations "
            f"(e.g. {combo} + ... = 0 at every sample). The likelihood is then unbounded when the "
            "noise covariance can become singular along such a combination, and C and Sigma are "
            "not identifiable there; remove redundant outputs or expect degenerate estimates",
            DegenerateOutputsWarning, stacklevel=4,
        )


def check_predict_inputs(X, n_features: int, names: Optional[np.ndarray] = None) -> np.ndarray:
    """Validate prediction inputs. With the training column ``names``
    (``feature_names_in_``) and a DataFrame ``X``, the columns are taken by
    name (reordered when given in another order); missing or unexpected
    columns raise :class:`DataError` naming them. Arrays (and DataFrames
    when the model was fitted on an array) are taken by position."""
    if names is not None and isinstance(X, pd.DataFrame):
        cols = list(X.columns)
        known = set(names)
        missing = [c for c in names if c not in cols]
        extra = [c for c in cols if c not in known]
        dup = list(dict.fromkeys(c for c in cols if c in known and cols.count(c) > 1))
        if missing or extra or dup:
            parts = ([f"missing column(s) {missing}"] if missing else []) + \
                    ([f"unexpected column(s) {extra}"] if extra else []) + \
                    ([f"duplicated column(s) {dup}"] if dup else [])
            raise DataError(
                f"X: {'; '.join(parts)}; the model was fitted on columns {list(names)} "
                "(feature_names_in_); predict takes them by name, in any order"
            )
        X = X.loc[:, list(names)]
    Xa = as_float_matrix(X, "X")
    check_input_dim(Xa, n_features, "X")
    return Xa


def check_observed_outputs(Y, n: int, names: List[str]) -> np.ndarray:
    """``Y_observed`` of ``predict``: (n, T) with NaN where not measured; a
    DataFrame's columns are matched to the fitted output names (reordered
    by name; a fitted output without a column was not measured in any row;
    an unknown or repeated name is an error)."""
    if isinstance(Y, pd.DataFrame):
        cols = [str(c) for c in Y.columns]
        unknown = [c for c in cols if c not in names]
        if unknown or len(set(cols)) != len(cols):
            what = f"unknown {unknown}" if unknown else "a repeated column"
            raise DataError(f"Y_observed: columns {cols} are not the fitted outputs {names} ({what})")
        Y = pd.DataFrame({nm: (Y.iloc[:, cols.index(nm)].to_numpy() if nm in cols else np.full(len(Y), np.nan))
                          for nm in names})
    arr, _ = check_outputs(Y, "Y_observed", allow_missing=True)
    if arr.shape != (n, len(names)):
        raise DataError(f"Y_observed: shape {arr.shape}, expected ({n}, {len(names)}) "
                        "(one row per row of X, one column per output; NaN where not measured)")
    return arr
