"""Renamed arguments and attributes keep working for one release, with a
:class:`~mtgp.exceptions.MtgpDeprecationWarning` naming the new name (the
glossary: *individual* for Magma's groups, *output* for the multi-output
models' columns, *cluster* for MagmaClust's groups)."""

from __future__ import annotations

import warnings

from .exceptions import MtgpDeprecationWarning

#: value of a renamed constructor argument that was not given
DEPRECATED = "deprecated"


def renamed_attribute(owner: str, old: str, new: str, stacklevel: int = 4) -> None:
    warnings.warn(f"{owner}.{old} is renamed {new}; the old name will be removed in the next release",
                  MtgpDeprecationWarning, stacklevel=stacklevel)


def _given(value, default) -> bool:
    """Whether ``value`` differs from the parameter's ``default`` (identity
    first: kernels and arrays need not support ==)."""
    if value is default:
        return False
    try:
        return not bool(value == default)
    except Exception:  # arrays and objects without a scalar ==
        return True


def renamed_argument(owner: str, old: str, new: str, old_value, new_value, new_default=None,
                     stacklevel: int = 4):
    """The value to use for argument ``new`` when the deprecated ``old`` may
    have been given (old != DEPRECATED): warns, and refuses both at once."""
    if isinstance(old_value, str) and old_value == DEPRECATED:
        return new_value
    if _given(new_value, new_default):
        raise TypeError(f"{owner}: give {new}= only ({old}= is its old name)")
    warnings.warn(f"{owner}({old}=...) is renamed {new}=...; the old name will be removed in the "
                  "next release", MtgpDeprecationWarning, stacklevel=stacklevel)
    return old_value
