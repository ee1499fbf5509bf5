"""Progress of long fits (EM iterations with their log-likelihood, starts).

One small interface, :func:`progress`, used by the estimators' loops:

* ``verbose=None`` (the estimators' default): a bar when standard error is a
  terminal, nothing otherwise (scripts, CI logs, notebooks' captured output);
* ``verbose=True``: always shown; ``verbose=False``: never.

The bar is `tqdm <https://tqdm.github.io>`_'s, imported only when a bar is
shown. Without tqdm installed, a shown progress falls back to one plain line
per update on standard error (nothing is required to fit a model).
"""

from __future__ import annotations

import sys
from typing import Optional

__all__ = ["progress", "is_enabled"]


def is_enabled(verbose: Optional[bool]) -> bool:
    """Whether progress is shown for this ``verbose`` setting (None: when
    standard error is a terminal)."""
    if verbose is None:
        stream = sys.stderr
        try:
            return bool(stream is not None and stream.isatty())
        except (AttributeError, ValueError):  # closed or replaced streams
            return False
    return bool(verbose)


class _Silent:
    """Progress that shows nothing (the same methods as :class:`_Bar`)."""

    def update(self, n: int = 1, **values) -> None:
        """Advance by ``n`` steps and record ``values`` (shown as postfix)."""

    def note(self, text: str) -> None:
        """Set the bar's description."""

    def close(self) -> None:
        """Finish the bar."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _fmt(values: dict) -> str:
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


class _Lines(_Silent):
    """Fallback without tqdm: one line per update on standard error."""

    def __init__(self, total, desc):
        self.total, self.desc, self.n = total, desc, 0

    def update(self, n: int = 1, **values) -> None:
        self.n += n
        of = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: {self.n}{of} {_fmt(values)}".rstrip(), file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        self.desc = text


class _Bar(_Silent):
    def __init__(self, tqdm, total, desc, unit):
        self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                         dynamic_ncols=True)

    def update(self, n: int = 1, **values) -> None:
        self._bar.update(n)
        if values:  # EM iterations are seconds apart: always show the latest value
            self._bar.set_postfix_str(_fmt(values), refresh=True)

    def note(self, text: str) -> None:
        self._bar.set_description_str(text)

    def close(self) -> None:
        self._bar.close()


def progress(total: Optional[int], desc: str, verbose: Optional[bool] = None, unit: str = "it"):
    """A progress reporter for a loop of at most ``total`` steps (a context
    manager with ``update(n=1, **values)``, ``note(text)`` and ``close()``);
    silent unless :func:`is_enabled` says otherwise."""
    if not is_enabled(verbose):
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Lines(total, desc)
    return _Bar(tqdm, total, desc, unit)
