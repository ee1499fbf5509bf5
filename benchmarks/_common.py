"""Helpers shared by the benchmark scripts (Magma and multi-output experiments):
output folder, command line, page header with the machine description,
markdown tables, timing, data-driven initial hyper-parameters, and the
watchdog that retries a hanging child process.

Importing this module also makes a checkout usable without installing it:
it puts the repository root first on ``sys.path``, selects matplotlib's
non-interactive Agg backend, imports ``mtgp``, enables JAX's float64 and
mtgp's opt-in XLA CPU flags for the script (``import mtgp`` itself changes no global setting;
the scripts also compute with ``jax.numpy`` directly)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "results"
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import jax  # noqa: E402

import mtgp  # noqa: E402,F401

jax.config.update("jax_enable_x64", True)
# the XLA CPU flags mtgp < 0.2 set at import: same rounding as the pages
# written before (single-threaded Eigen), no hang on jax 0.10
mtgp.config.set_xla_cpu_flags()

# Thread settings worth recording with the command that produced a page.
THREAD_ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def setup_jax_cache():
    """Persistent XLA compilation cache (ignored by git): re-runs skip most
    compilation. Harmless if the JAX version does not support it."""
    try:
        import jax
        jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    except Exception:  # pragma: no cover
        pass


def out_dir(path=None) -> Path:
    """The output folder (``docs/results`` by default), created if missing."""
    p = Path(path) if path else RESULTS_DIR
    p.mkdir(parents=True, exist_ok=True)
    return p


def command_line() -> str:
    """The command that is running, as a user would type it from the repository
    root, preceded by the thread settings of the environment."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT) if sys.argv and sys.argv[0] else "?"
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in THREAD_ENV_VARS if k in os.environ]
    return " ".join(env + ["python", shlex.quote(script)] + [shlex.quote(a) for a in sys.argv[1:]])


def machine() -> str:
    import jax
    platforms = sorted({d.platform for d in jax.devices()})
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores visible "
            f"(shared with other jobs, so timings are noisy), JAX devices: {', '.join(platforms)}; "
            f"Python {platform.python_version()}, jax {jax.__version__}"
            + ("" if "gpu" in platforms or "cuda" in platforms else "; no GPU"))


def load_note() -> str:
    """The load averages at the end of a run and what they mean for its times."""
    averages = os.getloadavg()
    quiet = max(averages) <= (os.cpu_count() or 1)
    return (f"load average at the end {' '.join(f'{x:.2f}' for x in averages)} ("
            + ("at most one job per core: times are representative of this machine"
               if quiet else "loaded machine: times are inflated and indicative only") + ")")


def page_header(title, cmd=None, quick=False, extra="", elapsed=None) -> str:
    """Title, the command that produced the page (default: this process's,
    see :func:`command_line`), date, machine, wall time (``elapsed`` seconds,
    if given), a warning in quick mode, then ``extra``."""
    return (f"# {title}\n\nProduced by\n\n```\n{cmd or command_line()}\n```\n\n"
            f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}"
            + (f"; {elapsed:.0f} s wall" if elapsed is not None else "") + "."
            + (" **Quick mode: tiny numbers of repetitions, for CI only; not results.**" if quick else "")
            + ("\n\n" + extra if extra else "") + "\n")


def md_table(table, rows=None, floatfmt=".3f") -> str:
    """Markdown table, either ``md_table(header, rows)``: a list of column
    names and rows of cells written with ``str``; or ``md_table(df[, floatfmt])``:
    a pandas DataFrame whose float cells are written with ``floatfmt``."""
    if hasattr(table, "iterrows"):  # DataFrame: the second argument is the float format
        fmt = floatfmt if rows is None else rows
        header = table.columns
        rows = ([format(v, fmt) if isinstance(v, float) else v for v in row.values] for _, row in table.iterrows())
    else:
        header = table
    lines = ["| " + " | ".join(str(c) for c in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def mean_sd(x, digits=1) -> str:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "-"
    sd = x.std(ddof=1) if x.size > 1 else 0.0
    return f"{x.mean():.{digits}f} ({sd:.{digits}f})"


def init_values(y, inputs, prior_mean=0.0):
    """Data-driven initial hyper-parameters, the same rule for GP, GPFDA and
    Magma: variance = mean square of the outputs around the prior mean (0,
    as in the paper) for kernels whose process carries the level, variance
    of the outputs otherwise, lengthscale = a fifth of the input range,
    noise = 5% of the output variance."""
    y = np.asarray(y, float)
    x = np.asarray(inputs, float).reshape(-1)
    var = float(np.var(y)) if y.size > 1 else 1.0
    var = max(var, 1e-3)
    return {"level_var": float(np.mean((y - prior_mean) ** 2)) + 1e-3, "var": var,
            "lengthscale": max((x.max() - x.min()) / 5.0, 1e-2), "noise": 0.05 * var}


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def quiet():
    """Silence the per-fit jitter / convergence warnings in long loops."""
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)


def beat():
    """Touch the heartbeat file of a supervised child process (no-op otherwise)."""
    hb = os.environ.get("MTGP_HEARTBEAT")
    if hb:
        Path(hb).touch()


def supervise(cmd, heartbeat, stall_s, max_tries=10, label="job"):
    """Run ``cmd`` in a child process; kill and retry it when its heartbeat
    file has not been touched for ``stall_s`` seconds. Works around an
    intermittent hang of XLA:CPU inside ``Magma.fit`` seen on this machine
    (jax 0.10.2: every thread idle in futex waits, the main thread blocked on
    the result of the EM iteration). Runs are seeded, so a retry gives the
    same numbers. Returns the number of attempts used."""
    import subprocess
    heartbeat = Path(heartbeat)
    env = dict(os.environ, MTGP_HEARTBEAT=str(heartbeat))
    for attempt in range(1, max_tries + 1):
        heartbeat.touch()
        proc = subprocess.Popen(cmd, env=env)
        while proc.poll() is None:
            time.sleep(2)
            if time.time() - heartbeat.stat().st_mtime > stall_s:
                print(f"  {label}: no progress for {stall_s} s (attempt {attempt}): killing pid {proc.pid}, "
                      "retrying", flush=True)
                proc.kill()
                proc.wait()
                break
        if proc.returncode == 0:
            return attempt
        if proc.returncode >= 0:  # killed by a signal (watchdog or user): retry
            raise RuntimeError(f"{label} failed with exit code {proc.returncode}")
    raise RuntimeError(f"{label}: still hanging after {max_tries} attempts")
