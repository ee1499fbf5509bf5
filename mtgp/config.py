"""Settings of mtgp, scoped, and the opt-in process-wide switches.

``import mtgp`` changes nothing in the user's process: no environment
variable, no XLA flag, no global JAX option, no file. Instead:

* every mtgp computation runs in float64 inside :func:`float64` (a scoped
  ``jax_enable_x64``), whatever the global setting; the public methods of the
  estimators enter it themselves;
* inside the same scope the BLAS/LAPACK thread pools (OpenBLAS of numpy and
  scipy; jaxlib's CPU LAPACK kernels call scipy's) run ``blas_threads``
  threads, 1 unless set (:func:`blas_scope`), and get the user's setting back
  on the way out;
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
import operator
import os
import tempfile
import threading
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
    blas_threads : threads of the BLAS/LAPACK libraries (as threadpoolctl
        sees them) while an mtgp method runs (:func:`blas_scope`): an int
        >= 1, 0 to leave them alone, or None (default): ``$MTGP_BLAS_THREADS``
        if set (an int, or ``off``), else 1.
    """

    jitter: float = 1e-10
    jitter_max_tries: int = 10
    compile_cache_size: int = 512
    blas_threads: Optional[int] = None


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


# ---------------------------------------------------------------- BLAS threads
# Why (docs/results/magma_scale_notes.md, "Stall under CPU contention"):
# jaxlib's CPU LAPACK kernels (Cholesky, triangular solves, ...) call
# scipy's LAPACK, i.e. scipy's OpenBLAS, from inside XLA's intra-op worker
# threads. On a pooled grid of ~1000 points dpotrf/dtrsm go multi-threaded,
# and OpenBLAS's helper threads spin-wait for each other: when the CPU is
# shared (other processes, XLA's own workers) a descheduled helper stalls
# the whole call for seconds. One BLAS thread per call (XLA already runs
# independent kernels in parallel) removes the stall and costs nothing on a
# quiet machine.

_BLAS_LOCK = threading.Lock()
_BLAS_DEPTH = 0  # mtgp calls in progress in this process (all threads)
_BLAS_LIMITER = None  # the threadpoolctl limiter of the outermost call
_LAPACK_LOADED = False


def _blas_threads_wanted() -> int:
    """Threads for this call: :class:`Settings`.blas_threads, else
    ``$MTGP_BLAS_THREADS`` (read here, at each call), else 1; 0 = leave alone."""
    n = get().blas_threads
    if n is None:
        env = os.environ.get("MTGP_BLAS_THREADS")
        if env is None or not env.strip():
            return 1
        if env.strip().lower() in _DISABLED:
            return 0
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MTGP_BLAS_THREADS must be a number of threads (>= 1) or 'off', "
                             f"got {env!r}") from None
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)
    except TypeError:
        n = -1
    if n < 0:
        raise ValueError(f"blas_threads must be an int >= 0 (0: leave BLAS alone), got {get().blas_threads!r}")
    return n


def _blas_enter() -> None:
    global _BLAS_DEPTH, _BLAS_LIMITER, _LAPACK_LOADED
    n = _blas_threads_wanted()  # outside the lock: may raise
    with _BLAS_LOCK:
        _BLAS_DEPTH += 1
        if _BLAS_DEPTH > 1 or n == 0:
            return
        try:
            if not _LAPACK_LOADED:
                # jaxlib loads scipy's LAPACK (and its OpenBLAS) at its first
                # linear-algebra call: load it now so that the limit reaches it
                import scipy.linalg.cython_lapack  # noqa: F401

                _LAPACK_LOADED = True
            from threadpoolctl import threadpool_limits

            _BLAS_LIMITER = (threadpool_limits(limits=n, user_api="blas"), threading.current_thread())
        except BaseException:
            _BLAS_DEPTH -= 1
            raise


def _blas_exit() -> None:
    global _BLAS_DEPTH, _BLAS_LIMITER
    with _BLAS_LOCK:
        _BLAS_DEPTH -= 1
        if _BLAS_DEPTH == 0 and _BLAS_LIMITER is not None:
            (limiter, owner), _BLAS_LIMITER = _BLAS_LIMITER, None
            # threadpoolctl >= 3.6 lets one thread at a time set OpenBLAS's
            # (process-wide) pool: hand it to this thread for the restore,
            # and release it afterwards (as its own ``with`` block does)
            from threadpoolctl import OpenBLASController

            clear = getattr(OpenBLASController, "clear_controlling_thread", None)
            if clear is not None and owner is not threading.current_thread():
                clear(force=True)
            limiter.restore_original_limits()
            if clear is not None:
                clear()


@contextlib.contextmanager
def blas_scope():
    """Run the block with the BLAS/LAPACK thread pools limited to
    ``blas_threads`` (see :class:`Settings`; threadpoolctl's
    ``threadpool_limits(user_api="blas")``) and restore the previous numbers
    of threads afterwards. Nested and concurrent mtgp calls share the
    outermost call's limit; it is restored when the last one leaves."""
    _blas_enter()
    try:
        yield
    finally:
        _blas_exit()


@contextlib.contextmanager
def compute_scope():
    """:func:`float64_scope` and :func:`blas_scope` together: the scope of
    every public numerical entry point of mtgp."""
    with float64_scope(), blas_scope():
        yield


def float64(fn):
    """Decorator: run ``fn`` inside :func:`compute_scope` (float64 and the
    BLAS thread limit; every public numerical entry point of mtgp is wrapped
    in it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _blas_enter()
        try:
            if jax.config.jax_enable_x64:
                return fn(*args, **kwargs)
            with _x64_context():
                return fn(*args, **kwargs)
        finally:
            _blas_exit()

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
