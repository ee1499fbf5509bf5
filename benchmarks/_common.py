"""Small shared helpers of the Magma experiment scripts (output folder,
markdown tables, machine description, data-driven initial hyper-parameters)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "results"


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
    p = Path(path) if path is not None else RESULTS_DIR
    p.mkdir(parents=True, exist_ok=True)
    return p


def command_line() -> str:
    """The command that is running, as a user would type it from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT) if sys.argv and sys.argv[0] else "?"
    return " ".join(["python", shlex.quote(script)] + [shlex.quote(a) for a in sys.argv[1:]])


def machine() -> str:
    import jax
    dev = ", ".join(sorted({d.platform for d in jax.devices()}))
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores visible "
            f"(shared with other jobs, so timings are noisy), JAX devices: {dev}; "
            f"Python {platform.python_version()}, jax {jax.__version__}")


def mean_sd(x, digits=1) -> str:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return "-"
    sd = x.std(ddof=1) if x.size > 1 else 0.0
    return f"{x.mean():.{digits}f} ({sd:.{digits}f})"


def md_table(header, rows) -> str:
    """Markdown table from a header list and rows of strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def page_header(title, cmd, quick, extra="") -> str:
    return (f"# {title}\n\nProduced by\n\n```\n{cmd}\n```\n\n"
            f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}; no GPU."
            + (" **Quick mode: tiny numbers of repetitions, for CI only; not results.**" if quick else "")
            + ("\n\n" + extra if extra else "") + "\n")


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


@contextmanager
def timer(store, key):
    t = time.perf_counter()
    yield
    store[key] = time.perf_counter() - t


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
