"""Settings of mtgp, scoped, and the opt-in process-wide switches.

``import mtgp`` changes nothing in the user's process: no environment
variable, no XLA flag, no global JAX option, no file. Instead:

* every mtgp computation runs in float64 inside :func:`float64` (a scoped
  ``jax_enable_x64``), whatever the global setting; the public methods of the
  estimators enter it themselves;
* numerical settings are read from :func:`get` and changed for a block of
  code with :func:`settings` (a context manager, thread- and task-local)::

      with mtgp.config.settings(jitter=1e-8):
          model.fit(data)

* the persistent compilation cache (:func:`enable_compilation_cache`) and
  the XLA CPU flag (:func:`set_xla_cpu_flags`) are opt-in; the ``mtgp``
  command turns the cache on for itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
import tempfile
from typing import Optional

import jax


@dataclasses.dataclass(frozen=True)
class Settings:
    """Numerical settings (see :func:`settings`).

    jitter : first relative diagonal jitter tried by
        :func:`mtgp.linalg.safe_cholesky` when a factorisation fails (then
        x10 per try), relative to the mean diagonal.
    jitter_max_tries : how many times the jitter is grown before giving up.
    compile_cache_size : how many compiled programs
        :func:`mtgp.compile.cached_jit` keeps (least recently used dropped).
    """

    jitter: float = 1e-10
    jitter_max_tries: int = 10
    compile_cache_size: int = 512


_SETTINGS: contextvars.ContextVar = contextvars.ContextVar("mtgp_settings", default=Settings())


def get() -> Settings:
    """The settings in force here."""
    return _SETTINGS.get()


@contextlib.contextmanager
def settings(**overrides):
    """Change numerical settings for the duration of a ``with`` block
    (names: the fields of :class:`Settings`)."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise TypeError(f"unknown mtgp setting(s) {sorted(unknown)}; known: "
                        f"{[f.name for f in dataclasses.fields(Settings)]}")
    token = _SETTINGS.set(dataclasses.replace(_SETTINGS.get(), **overrides))
    try:
        yield _SETTINGS.get()
    finally:
        _SETTINGS.reset(token)


def _x64_context():
    state = getattr(jax, "enable_x64", None)  # jax >= 0.4.36: a config State
    if state is not None and callable(state):
        return state(True)
    from jax.experimental import enable_x64  # older jax

    return enable_x64()


@contextlib.contextmanager
def float64_scope():
    """Run the block with 64-bit JAX types enabled (a no-op when the user
    already enabled them globally)."""
    if jax.config.jax_enable_x64:
        yield
        return
    with _x64_context():
        yield


def float64(fn):
    """Decorator: run ``fn`` inside :func:`float64_scope` (every public
    numerical entry point of mtgp is wrapped in it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if jax.config.jax_enable_x64:
            return fn(*args, **kwargs)
        with _x64_context():
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------- opt-in
# Persistent XLA compilation cache: a second process with the same data
# shapes (and kernel structure) loads compiled programs instead of
# compiling them. Where: ``path``, else ``$MTGP_CACHE_DIR``, else
# ``$XDG_CACHE_HOME/mtgp/jax`` or ``~/.cache/mtgp/jax``;
# ``MTGP_CACHE_DIR=off`` (or ``0``, ``none``) disables it.

_DISABLED = {"", "0", "off", "none", "false", "no"}


def default_cache_dir() -> Optional[str]:
    """Where :func:`enable_compilation_cache` puts the cache by default:
    ``$MTGP_CACHE_DIR`` (None when it is ``off``, ``0``, ``none``...), else
    ``$XDG_CACHE_HOME/mtgp/jax``, else ``~/.cache/mtgp/jax``."""
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


#: XLA CPU flags that :func:`set_xla_cpu_flags` adds (opt-in; mtgp < 0.2
#: set both at import): the scheduler flag against a hang seen with jax 0.10
#: (programs holding several independent batched blocks waited forever in
#: XLA's CPU thunk executor), and single-threaded Eigen inside XLA:CPU (no
#: blocking waits on the intra-op pool). Eigen's threading also changes the
#: rounding of large products: the benchmarks' quick modes set both so that
#: their numbers are comparable across versions of mtgp.
XLA_CPU_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",
                 "--xla_cpu_multi_thread_eigen=false")


def set_xla_cpu_flags() -> None:
    """Opt-in: add :data:`XLA_CPU_FLAGS` to ``XLA_FLAGS`` (each unless
    ``XLA_FLAGS`` already names it). XLA reads them when JAX's CPU backend
    starts, i.e. before the first computation; ``import mtgp`` never calls
    this. ``MTGP_XLA_FLAGS=off`` disables."""
    if os.environ.get("MTGP_XLA_FLAGS", "").strip().lower() in _DISABLED - {""}:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in XLA_CPU_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = (flags + " " + flag).strip()
    os.environ["XLA_FLAGS"] = flags
