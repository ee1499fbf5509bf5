"""Persistent XLA compilation cache for mtgp's jitted programs.

Magma's EM iteration compiles into one large XLA program (two L-BFGS
solvers, the E step): tens of seconds of compilation on a small CPU, paid by
every new Python process. JAX can keep compiled programs on disk; mtgp turns
that on at import so that a second process with the same data shapes (and
kernel structure) loads the programs instead of compiling them.

Where: ``$MTGP_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/mtgp/jax`` or
``~/.cache/mtgp/jax``. Set ``MTGP_CACHE_DIR=off`` (or ``0``, ``none``) to
disable. If JAX's ``jax_compilation_cache_dir`` is already configured (by
the user or ``JAX_COMPILATION_CACHE_DIR``) it is left alone. A directory that
cannot be created or written is skipped silently: caching is only ever a
speed-up, never a requirement. Call :func:`enable_compilation_cache` to
choose another directory at run time.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional

import jax

_DISABLED = {"", "0", "off", "none", "false", "no"}


def default_cache_dir() -> Optional[str]:
    env = os.environ.get("MTGP_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _DISABLED else env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mtgp", "jax")


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def enable_compilation_cache(path: Optional[str] = None, min_compile_time_secs: float = 0.2,
                             force: bool = False) -> Optional[str]:
    """Point JAX's persistent compilation cache at ``path`` (default:
    :func:`default_cache_dir`). Returns the directory used, or None when
    caching is disabled, already configured elsewhere (unless ``force``) or
    the directory is not writable."""
    try:
        current = jax.config.jax_compilation_cache_dir
    except AttributeError:  # very old JAX
        return None
    if current and not force:
        return None
    path = default_cache_dir() if path is None else os.fspath(path)
    if path is None or not _writable(path):
        return None
    try:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception:  # an option unknown to this JAX version: caching is optional
        return None
    return path


#: XLA CPU flag set by mtgp at import (unless XLA_FLAGS already mentions it):
#: with the default concurrency-optimised scheduler, programs holding several
#: independent batched blocks (Magma's size buckets) were seen to hang forever
#: in XLA's CPU thunk executor (jax 0.10, all threads idle on a futex), 3 runs
#: out of 3; with it off, 0 hangs in repeated runs, and no slowdown measured.
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def set_xla_cpu_flags() -> None:
    """Add :data:`SCHEDULER_FLAG` to ``XLA_FLAGS`` (read when JAX's CPU
    backend starts, i.e. at the first computation: import mtgp before running
    any JAX computation for it to apply). ``MTGP_XLA_FLAGS=off`` disables."""
    if os.environ.get("MTGP_XLA_FLAGS", "").strip().lower() in _DISABLED - {""}:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + SCHEDULER_FLAG).strip()
