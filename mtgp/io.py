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

__all__ = ["model_path", "write_model", "read_model"]

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
