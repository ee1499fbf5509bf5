"""The one file format of fitted models: an ``.npz`` archive holding a JSON
header (format tag, model class, constructor parameters, ...) and named
float/int arrays, read without pickle. ``save(path)`` and ``load(path)``
agree on the file name (``.npz`` is added to both when missing), and every
problem reading a file raises one :class:`~mtgp.exceptions.ModelFileError`
naming the file and what is wrong."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Dict, Optional, Tuple

import numpy as np

from .exceptions import ModelFileError

__all__ = ["model_path", "write_model", "read_model", "pack_row_index", "unpack_row_index"]

_HEADER = "__mtgp_header__"


def model_path(path) -> str:
    """``path`` as a string with the ``.npz`` suffix numpy's savez adds."""
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def write_model(path, fmt: str, header: dict, arrays: Dict[str, np.ndarray]) -> str:
    """Write ``arrays`` and the JSON ``header`` (tagged with ``fmt``, e.g.
    "mtgp.Magma/2") to ``path`` (``.npz`` added if missing); returns the path."""
    path = model_path(path)
    meta = dict(header, format=fmt)
    try:
        text = json.dumps(meta)
    except TypeError as exc:
        raise ValueError(f"cannot save the model's settings as JSON ({exc})") from None
    bad = [k for k, a in arrays.items() if np.asarray(a).dtype == object]
    if bad:
        raise ValueError(f"cannot save arrays {bad}: they hold Python objects")
    np.savez(path, **{_HEADER: np.array(text)}, **{k: np.asarray(a) for k, a in arrays.items()})
    return path


def read_model(path, fmt: Optional[str]) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Read a file written by :func:`write_model` with format tag ``fmt``
    (None: any format, e.g. to find which model a file holds): returns
    (header, arrays). Raises :class:`ModelFileError` naming the file when it
    is missing, not an npz archive, truncated or corrupt, has no mtgp
    header, or holds another format."""
    path = model_path(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not an .npz archive (not a model saved by mtgp, or truncated)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files)
            if _HEADER not in names:
                raise ModelFileError(f"{path}: not a model saved by mtgp (no mtgp header; arrays {names[:5]})")
            meta = json.loads(str(f[_HEADER]))
            arrays = {k: f[k] for k in names if k != _HEADER}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelFileError(f"{path}: not a readable .npz archive (truncated or corrupt: {exc})") from None
    except ValueError as exc:  # object arrays (pickle) or a garbled array header
        raise ModelFileError(f"{path}: holds data mtgp did not write ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the mtgp header is corrupt ({exc})") from None
    if not isinstance(meta, dict) or (fmt is not None and meta.get("format") != fmt):
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelFileError(f"{path}: holds {found!r}, expected a saved {fmt or 'mtgp model'}")
    return meta, arrays


def _json_label(name):
    """An index level's name as JSON can hold it (None, str, int, float), else its str."""
    return name if name is None or isinstance(name, (str, int, float)) else str(name)


def pack_row_index(index, key: str) -> Tuple[Optional[dict], Dict[str, np.ndarray], Optional[str]]:
    """A pandas row index as (header entry, arrays, problem) for
    :func:`write_model`, without pickle: each level an array of numbers,
    booleans, datetimes or strings (a time-zone-aware datetime level as UTC
    plus its zone). ``(None, {}, None)`` for no index or the default
    0..N-1; ``(None, {}, reason)`` when a level holds other objects (mixed
    types, tuples...), which the caller reports."""
    import pandas as pd

    if index is None or (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        return None, {}, None
    levels, arrays = [], {}
    for i in range(index.nlevels):
        values = index.get_level_values(i)
        tz = getattr(values, "tz", None)
        if tz is not None:
            data = values.tz_convert("UTC").tz_localize(None).to_numpy()
        else:
            data = np.asarray(values)
        if data.dtype == object:
            if not all(isinstance(v, str) for v in data):
                kinds = sorted({type(v).__name__ for v in data})
                return None, {}, f"level {i} holds {', '.join(kinds)} values"
            data = data.astype(str)
        if data.dtype.kind not in "biufmMU":
            return None, {}, f"level {i} has dtype {data.dtype}"
        arrays[f"{key}_{i}"] = data
        levels.append({"name": _json_label(values.name), "tz": None if tz is None else str(tz)})
    return {"levels": levels}, arrays, None


def unpack_row_index(entry: Optional[dict], arrays: Dict[str, np.ndarray], key: str):
    """The pandas index packed by :func:`pack_row_index` (None for none)."""
    import pandas as pd

    if not entry:
        return None
    values = []
    for i, level in enumerate(entry["levels"]):
        data = arrays[f"{key}_{i}"]
        if data.dtype.kind == "U":
            data = data.astype(object)
        if level["tz"] is not None:
            data = pd.DatetimeIndex(data).tz_localize("UTC").tz_convert(level["tz"])
        values.append(pd.Index(data, name=level["name"]))
    if len(values) == 1:
        return values[0]
    return pd.MultiIndex.from_arrays(values, names=[level["name"] for level in entry["levels"]])
