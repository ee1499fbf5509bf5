"""Training data that never sit in one process (issue 15): a Dask DataFrame
or a directory of Parquet files, each partition holding whole individuals.

The validation is the same as for a pandas table
(:func:`~mtgp.data.individuals.individuals_from_frame`), run on each
partition where it is (a Dask worker); this process receives only a
:func:`summary` per partition (IDs, counts, distinct inputs) and merges them
(:func:`merge_summaries`: the pooled grid, the checks across partitions).
Dask itself is imported only by :func:`read_parquet_individuals`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from ..exceptions import DataError
from .individuals import IndividualIds, Individuals, individuals_from_frame
from .layout import bin_inputs

__all__ = ["read_parquet_individuals", "is_dask_frame", "RemoteIndividuals"]


def is_dask_frame(data) -> bool:
    """True for a ``dask.dataframe`` DataFrame (checked without importing
    dask)."""
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(data, "to_delayed")


def read_parquet_individuals(path, columns: Optional[Sequence[str]] = None, **kwargs):
    """A Parquet file or directory of files, each holding whole individuals
    (long format: ``ID``, input column(s), ``Output``), as a lazy
    ``dask.dataframe`` with one partition per file (row groups are never
    split apart: an individual must not straddle two partitions). Nothing is
    read until a fit or prediction runs, on the workers:
    ``Magma(backend=Dask(client)).fit(read_parquet_individuals("data/"))``.
    ``kwargs`` go to ``dask.dataframe.read_parquet``. Needs dask and pyarrow
    (``pip install mtgp[dask,parquet]``)."""
    try:
        import dask.dataframe as dd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("read_parquet_individuals needs dask: pip install 'mtgp[dask,parquet]'") from err
    kwargs.setdefault("split_row_groups", False)
    return dd.read_parquet(path, columns=None if columns is None else list(columns), **kwargs)


def validate_partition(frame, input_columns, index: int, grid_binning=None,
                       what: str = "training data") -> Individuals:
    """One partition of a long table, validated exactly as a pandas table is
    (:func:`individuals_from_frame`; the error names the partition too), then
    binned (``grid_binning``, see :func:`mtgp.data.bin_inputs`)."""
    if frame.shape[0] == 0:  # an empty partition (e.g. after a filter): nothing to lay out
        return None
    inds = individuals_from_frame(frame, input_columns, what=f"{what} (partition {index})", warn_extra=False)
    return inds if grid_binning is None else bin_inputs(inds, grid_binning)


def summary(inds: Individuals) -> dict:
    """What this process needs of one partition: IDs, counts, the distinct
    inputs and the input columns (O(individuals + distinct inputs)); None
    for an empty partition."""
    if inds is None:
        return None
    return {"ids": list(inds.ids), "counts": inds.counts,
            "inputs": np.unique(np.concatenate(inds.inputs, axis=0), axis=0),
            "input_columns": list(inds.input_columns)}


@dataclass
class RemoteIndividuals(IndividualIds):
    """The training individuals of a fit whose data stay on the workers:
    IDs, counts and input columns only (the :class:`Individuals` fields that
    do not hold data)."""

    ids: list
    counts: np.ndarray
    input_columns: List[str]

    @property
    def input_dim(self) -> int:
        """Dimension of the inputs."""
        return len(self.input_columns)

    @property
    def outputs(self):
        """Not here: raises DataError (the data stay on the workers)."""
        raise DataError("the training data of this model stay on the Dask workers (fit from a Dask "
                        "DataFrame): they are not available in this process")

    inputs = outputs

    def to_frame(self):
        """Not here: raises DataError (the data stay on the workers)."""
        return self.outputs


def merge_summaries(summaries: Sequence[dict], what: str = "training data"):
    """The partitions' :func:`summary` merged: (RemoteIndividuals in
    partition order, pooled grid (sorted distinct inputs, as
    :func:`mtgp.data.pooled_grid`)). Raises DataError when partitions
    disagree on the input columns or share an individual."""
    summaries = [s for s in summaries if s is not None]
    if not summaries:
        raise DataError(f"{what}: the table is empty (every partition)")
    cols = summaries[0]["input_columns"]
    for k, s in enumerate(summaries):
        if s["input_columns"] != cols:
            raise DataError(f"{what}: partition {k} has input columns {s['input_columns']}, "
                            f"partition 0 has {cols}")
    ids = check_whole_individuals([s["ids"] for s in summaries], what)
    grid = np.unique(np.concatenate([s["inputs"] for s in summaries], axis=0), axis=0)
    counts = np.concatenate([np.asarray(s["counts"], dtype=np.int64) for s in summaries])
    return RemoteIndividuals(ids, counts, list(cols)), grid


def check_whole_individuals(ids_per_partition: Sequence[list], what: str = "data") -> list:
    """All partitions' IDs, in order; DataError naming the individual and
    the partitions when one individual is in several partitions."""
    ids = [i for p in ids_per_partition for i in p]
    part = np.repeat(np.arange(len(ids_per_partition)), [len(p) for p in ids_per_partition])
    dup = pd.Series(ids, dtype=object).duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[int(np.flatnonzero(dup)[0])]
        where = [k for k, i in enumerate(ids) if dup[k] and i == first]
        raise DataError(
            f"{what}: individual {first!r} is in partitions {sorted(set(part[where].tolist()))}: "
            "each partition must hold whole individuals (e.g. ddf.shuffle('ID') or one Parquet "
            "file per group of individuals)")
    return ids


def grid_index(grid: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Index in ``grid`` (sorted distinct rows, every row of ``X`` among
    them) of each row of ``X``."""
    _, inverse = np.unique(np.concatenate([grid, X], axis=0), axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    if inverse[:len(grid)].tolist() != list(range(len(grid))):
        raise ValueError("grid_index: X holds inputs that are not in the grid")
    return inverse[len(grid):]
