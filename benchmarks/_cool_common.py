"""Helpers shared by the Cool-MTGP benchmarks (output folder, markdown, timing)."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import mtgp  # noqa: E402,F401  (sets float64 and XLA flags before JAX starts)


def command_line() -> str:
    return "python3 " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])


def out_dir(path) -> Path:
    p = Path(path) if path else REPO / "docs" / "results"
    p.mkdir(parents=True, exist_ok=True)
    return p


def md_table(df, floatfmt=".3f") -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = []
        for v in row.values:
            cells.append(format(v, floatfmt) if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def header(title: str, elapsed: float) -> str:
    import jax
    import platform

    env = " ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
                   if k in os.environ)
    return (f"# {title}\n\nProduced by\n\n    {env + ' ' if env else ''}{command_line()}\n\n"
            f"(jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
            f"python {platform.python_version()}; {elapsed:.0f} s wall).\n")
