"""The one cache of compiled programs.

``cached_jit(key, builder)`` returns ``jax.jit(builder())`` memoised under a
hashable ``key``. Keys name the function and the *structure* of what it
closes over (``Kernel.structure()``, flags, budgets), never an object's
``id``: an id can be reused by another object after garbage collection and
would fetch a program compiled for something else. The cache is bounded
(``mtgp.config.get().compile_cache_size`` entries, least recently used
dropped), so a long-lived process fitting many model forms does not grow
without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable

import jax

from . import config

_CACHE: "OrderedDict[Hashable, Callable]" = OrderedDict()


def cached_jit(key: Hashable, builder: Callable[[], Callable]) -> Callable:
    """``jax.jit(builder())`` memoised under ``key`` (which must identify the
    function completely: its name and the static structure it closes over)."""
    # the numerical settings are read when a program is traced: they are part
    # of its identity
    key = (key, config.get())
    hash(key)  # fail early, with Python's message, on an unhashable key
    fn = _CACHE.get(key)
    if fn is not None:
        _CACHE.move_to_end(key)
        return fn
    fn = _CACHE[key] = jax.jit(builder())
    limit = max(1, int(config.get().compile_cache_size))
    while len(_CACHE) > limit:
        _CACHE.popitem(last=False)
    return fn


def clear_cache() -> None:
    """Forget every cached program (they are compiled again on next use)."""
    _CACHE.clear()


def cache_size() -> int:
    """Number of programs currently cached."""
    return len(_CACHE)
