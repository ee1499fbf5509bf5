"""Cold start: how fast mtgp is from the first call, each measurement in a
FRESH Python process with an EMPTY persistent compilation cache (none is
enabled: ``MTGP_CACHE_DIR=off``, no ``JAX_*`` variable, HOME and
XDG_CACHE_HOME in an empty temporary folder).

* ``import mtgp``: wall time of ``python -c "import mtgp"`` (whole process);
* ``mtgp --help``: wall time of the console script's entry point
  (``from mtgp.cli import main; main()`` with ``--help``);
* Magma, the paper's M = 20 x 30 problem (``mtgp.simulate(n_individuals=20,
  n_points=30, seed=0)``, Common HP, default kernels): first fit in the
  process (compilation included), then a second fit in the same process on
  another simulated data set of the same shapes (warm);
* Cool-MTGP (hierarchical, linear kernel) at T = 15 outputs, N = 100 points,
  20 features (the data of benchmarks/cool_synthetic.make_data, R = 10, L-BFGS budget 200): first
  fit and a warm fit in the same process;
* predict at a new size: a new individual predicted at n = 50 inputs (first
  call), then at n = 51 (second call: a new number of inputs); the same for
  Cool-MTGP's ``predict``.

Targets of the issue (quiet 2-core machine, fresh process, empty cache):
import < 1.5 s, --help < 1 s, first Magma fit < 3 s, first Cool fit < 3 s,
predict at a new size without recompiling. Each first fit also reports the
number of XLA programs it compiled (a count that a loaded machine does not
blur; tests/test_first_fit_compiles.py pins an upper bound).

    python benchmarks/cold_start.py                      # 5 processes per line (medians)
    python benchmarks/cold_start.py --quick              # CI: one process per line
    python benchmarks/cold_start.py --baseline ../baseline   # also the same numbers for another checkout

Writes ``cold_start.md`` into ``--out`` (default docs/results).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import ROOT, command_line, md_table, out_dir, page_header

CHILD_FIT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import mtgp
from mtgp.kernels import Linear
from mtgp.multioutput import CoolMTGP
out = {"import_in_process_s": time.perf_counter() - t0}
which = sys.argv[1]

import resource
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # user + system, all threads

def timed(f, name=None):
    t, c = time.perf_counter(), cpu()
    r = f()
    if name:  # the CPU time next to the wall time: on a loaded machine it is the closer to a quiet wall time
        out[name.replace("_s", "_cpu_s")] = cpu() - c
    return time.perf_counter() - t, r

def counted(f):
    # jax is imported here, inside the timed first fit, where mtgp's lazy
    # loading would import it anyway; the listener counts XLA compilations
    import jax
    events = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: events.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    r = f()
    out["first_fit_compiles"] = len(events)
    return r

if which == "magma":
    d1 = mtgp.simulate(n_individuals=20, n_points=30, seed=0).data
    d2 = mtgp.simulate(n_individuals=20, n_points=30, seed=1).data
    out["first_fit_s"], m = timed(lambda: counted(lambda: mtgp.Magma(common_hp=True).fit(d1)), "first_fit_s")
    out["warm_fit_s"], _ = timed(lambda: mtgp.Magma(common_hp=True).fit(d2))
    new = mtgp.simulate(n_individuals=1, n_points=10, seed=2).data
    out["predict_50_s"], _ = timed(lambda: m.predict(new, inputs=np.linspace(0, 10, 50)[:, None]))
    out["predict_51_s"], _ = timed(lambda: m.predict(new, inputs=np.linspace(0, 10, 51)[:, None]))
else:
    def data(seed, N=100, T=15, D=20, R=10):  # benchmarks/cool_synthetic.make_data
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(N, D)) / np.sqrt(D)
        Cc = rng.normal(size=(T, R)) / np.sqrt(R)
        Sc = rng.normal(size=(T, R)) * np.sqrt(0.5 / R)
        return X, X @ (rng.normal(size=(D, R)) @ Cc.T) + rng.normal(size=(N, R)) @ Sc.T
    X1, Y1 = data(0)
    X2, Y2 = data(1)
    out["first_fit_s"], m = timed(lambda: counted(lambda: CoolMTGP(Linear(), max_iter=200).fit(X1, Y1)),
                                 "first_fit_s")
    out["warm_fit_s"], _ = timed(lambda: CoolMTGP(Linear(), max_iter=200).fit(X2, Y2))
    Xs = np.random.default_rng(3).standard_normal((51, 20)) / np.sqrt(20)
    out["predict_50_s"], _ = timed(lambda: m.predict(Xs[:50]))
    out["predict_51_s"], _ = timed(lambda: m.predict(Xs))
print(json.dumps(out))
"""

CHILD_IMPORT = "import mtgp"
CHILD_HELP = ("import sys\nfrom mtgp.cli import main\nsys.argv = ['mtgp', '--help']\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n")


def run_child(code, mtgp_root, args=()):
    """Wall time of ``python -c code`` in a fresh process with an empty home
    and no persistent compilation cache, and its last stdout line (JSON or
    None)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "MTGP_", "XLA_"))}
        env.update(PYTHONPATH=str(mtgp_root), HOME=tmp, XDG_CACHE_HOME=os.path.join(tmp, ".cache"),
                   MTGP_CACHE_DIR="off", PYTHONDONTWRITEBYTECODE="1")
        t, ru = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                             cwd=tmp, timeout=1800)
        wall = time.perf_counter() - t
        cpu = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2]) - sum(ru[:2])
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({mtgp_root}):\n{out.stderr[-3000:]}")
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return wall, (json.loads(last) if last.startswith("{") else None), cpu


def measure(mtgp_root, reps_import, reps_fit):
    """Median of each measurement over fresh processes (and the runs)."""
    imp = [run_child(CHILD_IMPORT, mtgp_root) for _ in range(reps_import)]
    hlp = [run_child(CHILD_HELP, mtgp_root) for _ in range(reps_import)]
    res = {"import": [r[0] for r in imp], "help": [r[0] for r in hlp],
           "import_cpu": [r[2] for r in imp], "help_cpu": [r[2] for r in hlp]}
    for which in ("magma", "cool"):
        runs = [run_child(CHILD_FIT, mtgp_root, [which])[1] for _ in range(reps_fit)]
        res[which] = {k: [r[k] for r in runs] for k in runs[0]}
        print(which, mtgp_root, {k: np.round(v, 3).tolist() for k, v in res[which].items()}, flush=True)
    return res


def table(res):
    med = np.median
    fmt = lambda x: f"{x:.2f}"  # noqa: E731
    ms = lambda x: f"{1e3 * x:.0f}"  # noqa: E731
    cpu = lambda r, k: fmt(med(r[k])) if k in r else "-"  # noqa: E731  (pages written before it had none)
    rows = [["`import mtgp` (process wall, s)", fmt(med(res["import"])), cpu(res, "import_cpu"), "< 1.5"],
            ["`mtgp --help` (process wall, s)", fmt(med(res["help"])), cpu(res, "help_cpu"), "< 1"]]
    for which, name in (("magma", "Magma M = 20 x 30, Common HP"), ("cool", "Cool-MTGP T = 15, N = 100")):
        r = res[which]
        rows += [[f"{name}: first fit (s)", fmt(med(r["first_fit_s"])), cpu(r, "first_fit_cpu_s"), "< 3"]]
        if "first_fit_compiles" in r:  # pages written before it had none
            rows += [[f"{name}: XLA programs compiled by the first fit", f"{med(r['first_fit_compiles']):.0f}",
                      "", ""]]
        rows += [
                 [f"{name}: warm fit, same process (s)", fmt(med(r["warm_fit_s"])), "", ""],
                 [f"{name}: predict at n = 50, first call (ms)", ms(med(r["predict_50_s"])), "", ""],
                 [f"{name}: predict at n = 51 after 50 (ms)", ms(med(r["predict_51_s"])), "", "no recompile"]]
    return md_table(["measurement (median over fresh processes)", "wall", "CPU (user + sys, s)", "target"], rows)


def load_line():
    try:
        return "load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return ""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one process per measurement (CI)")
    ap.add_argument("--reps", type=int, default=None, help="fresh processes per measurement (default 5; 1 quick)")
    ap.add_argument("--baseline", default=None,
                    help="another checkout (its root folder) measured the same way, shown as 'before'")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = out_dir(args.out)
    reps = args.reps or (1 if args.quick else 5)
    load = load_line()
    t0 = time.perf_counter()
    targets = [("this checkout", ROOT)] + ([("baseline", os.path.abspath(args.baseline))] if args.baseline else [])
    results = [(label, root, measure(root, reps, max(1, min(reps, 3)))) for label, root in targets]
    parts = [page_header("Cold start: import, --help, first fits, predict at a new size", cmd=command_line(),
                         quick=args.quick, elapsed=time.perf_counter() - t0,
                         extra=f"{load}. Each number is the median over {reps} fresh Python process(es) "
                               f"({max(1, min(reps, 3))} for the fits) with an empty home folder and no persistent "
                               "compilation cache (`MTGP_CACHE_DIR=off`, no `JAX_*` variable): every "
                               "program is compiled in the process that uses it. Magma: "
                               "`mtgp.simulate(n_individuals=20, n_points=30, seed=0)` (warm fit: seed 1), "
                               "Common HP, default kernels. Cool-MTGP: hierarchical, linear kernel, "
                               "cool_synthetic's data (R = 10), 20 features, budget 200. Predict: a new individual (Magma) or new inputs "
                               "(Cool) at n = 50, then at n = 51.")]
    for label, root, res in results:
        parts.append(f"## {label} (`{root}`)\n\n" + table(res))
    (out / "cold_start.md").write_text("\n\n".join(parts) + "\n")
    print((out / "cold_start.md").read_text())


if __name__ == "__main__":
    main()
