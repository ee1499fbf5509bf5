"""Real data shipped with mtgp (provenance in ``data/PROVENANCE.md``).

Longitudinal sets come in long format (``ID``, ``Input``, ``Output`` plus
extra columns) ready for :class:`mtgp.Magma`; the Mulan multi-target sets come
as ``(X, Y)`` DataFrames for the multi-output models.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Tuple

if TYPE_CHECKING:  # pandas is imported when a data set is read (import time)
    import pandas as pd

__all__ = ["load_weight", "load_swimmers", "load_mtr", "MTR_DATASETS", "data_path"]

MTR_DATASETS = ("andro", "atp1d", "atp7d", "edm", "enb", "oes10", "oes97", "scm20d", "slump")


def data_path(filename: str):
    """Path of a file shipped in ``mtgp/datasets/data``."""
    return resources.files(__name__).joinpath("data", filename)


def _read_long(filename: str) -> pd.DataFrame:
    import pandas as pd

    with data_path(filename).open("rb") as fh:
        df = pd.read_csv(fh, compression="gzip", dtype={"ID": str})
    return df


def load_weight() -> pd.DataFrame:
    """Children weight (GUSTO cohort, from the MagmaClustR package, MIT).

    3,629 rows, 342 children: ``ID``, ``Input`` (age in months, 0..72),
    ``Output`` (weight, kg), ``Sex``.
    """
    return _read_long("gusto_weight.csv.gz")


def load_swimmers() -> pd.DataFrame:
    """French 100 m freestyle swimmers (from the MagmaClustR package, MIT).

    76,832 rows, 3,456 swimmers: ``ID``, ``Input`` (age in years),
    ``Output`` (time, s), ``Gender`` (male or female).
    """
    return _read_long("swimmers_100m_freestyle.csv.gz")


def load_mtr(name: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """A Mulan multi-target regression set: returns ``(X, Y)`` DataFrames.

    The targets are the last ``n_targets`` columns of the file
    (Spyromitros-Xioufis et al. 2016); see ``data/PROVENANCE.md``.
    """
    if name not in MTR_DATASETS:
        raise ValueError(f"unknown Mulan data set {name!r}; available: {', '.join(MTR_DATASETS)}")
    with data_path("mtr_targets.json").open("r") as fh:
        meta = json.load(fh)[name]
    import pandas as pd

    with data_path(f"{name}.csv.gz").open("rb") as fh:
        df = pd.read_csv(fh, compression="gzip")
    targets = list(meta["target_columns"])
    return df.drop(columns=targets), df[targets]
