"""mtgp on a shared CPU: the swimmers E step reproducer and a full swimmers
Common-HP fit, each in a fresh process, beside busy-loop processes
(``python -c 'while True: pass'``), with and without mtgp's BLAS thread limit
(``mtgp.config.blas_scope``; without: ``MTGP_BLAS_THREADS=off``).

Diagnosis (docs/results/magma_scale_notes.md, "Stall under CPU contention"):
jaxlib's CPU LAPACK kernels call scipy's OpenBLAS; at the swimmers' pooled
grid (N = 994) dpotrf/dtrsm run multi-threaded and OpenBLAS's spin-waiting
helper threads starve when other processes hold the cores.

    python benchmarks/cpu_contention.py                       # 5 runs per line, 2 busy loops
    python benchmarks/cpu_contention.py --only repro --runs 3
    python benchmarks/cpu_contention.py --quick               # 1 run, repro only, 1 busy loop

The variants of one workload alternate run by run, so that both meet the
same background load; the load average is recorded at the start and the end
of every run. Children get no ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``
/ ``MKL_NUM_THREADS`` (what a user's shell has by default) and no persistent
compilation cache. A run that exceeds ``--timeout`` is killed and reported.
Writes ``cpu_contention.md`` into ``--out`` (default docs/results).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np

from _common import ROOT, command_line, md_table, out_dir, page_header

SWIM = r"""
import json, time
import mtgp
df = mtgp.datasets.load_swimmers().drop(columns="Gender")
out = {}
for name in ("first", "warm"):
    t = time.perf_counter()
    m = mtgp.Magma(common_hp=True).fit(df)
    out[name] = time.perf_counter() - t
    print(name, f"{out[name]:.2f} s", flush=True)
print(json.dumps(dict(out, N=int(m.grid_.shape[0]), it=m.n_iter_, ll=m.log_likelihood_)))
"""

VARIANTS = {"limit": {}, "nolimit": {"MTGP_BLAS_THREADS": "off"}}
LABEL = {"limit": "with the BLAS limit (default)", "nolimit": "without (MTGP_BLAS_THREADS=off)"}


def _load():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _child_env(variant):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MTGP_BLAS_THREADS")}
    env.update(PYTHONPATH=str(ROOT), MTGP_CACHE_DIR="off", **VARIANTS[variant])
    return env


def run_once(workload, variant, busy, timeout, calls):
    """One fresh process beside ``busy`` busy loops: per-call times (s)."""
    if workload == "repro":
        cmd = [sys.executable, str(ROOT / "benchmarks" / "xla_cpu_hang_repro.py"), "estep", "4", str(calls)]
        pat = re.compile(r"^estep \d+ \S+ ([0-9.]+) s$")
    else:
        cmd = [sys.executable, "-c", SWIM]
        pat = re.compile(r"^(?:first|warm) ([0-9.]+) s$")
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    l0, t0 = _load(), time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the busy loops are reaped later: not counted
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(variant), timeout=timeout)
        out, status = r.stdout, ("ok" if r.returncode == 0 else f"rc={r.returncode}: {r.stderr[-300:]!r}")
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        status = f"killed at {timeout} s"
    finally:
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        for p in loops:
            p.kill()
            p.wait()
    times = [float(m.group(1)) for m in map(pat.match, out.splitlines()) if m]
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    return dict(workload=workload, variant=variant, times=times, status=status,
                wall=time.perf_counter() - t0, cpu=cpu, load=(l0, _load()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes beside each run")
    ap.add_argument("--only", default="repro,swimmers")
    ap.add_argument("--variants", default="limit,nolimit")
    ap.add_argument("--calls", type=int, default=3, help="reproducer: calls per process")
    ap.add_argument("--timeout", type=float, default=300.0, help="per process (s)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--from-log", default=None, nargs="+",
                    help="write the page from the JSON lines that earlier runs printed (no new runs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.busy, args.only, args.calls = 1, 1, "repro", 2
    t_start = time.perf_counter()
    res = []
    if args.from_log:
        for path in args.from_log:
            with open(path) as f:
                res += [json.loads(line) for line in f if line.startswith("{")]
        args.only = ",".join(dict.fromkeys(r["workload"] for r in res))
        args.variants = ",".join(dict.fromkeys(r["variant"] for r in res))
    for workload in args.only.split(",") if not args.from_log else ():
        for run in range(args.runs):
            for variant in args.variants.split(","):
                r = run_once(workload, variant, args.busy, args.timeout, args.calls)
                r["run"] = run + 1
                print(json.dumps(r), flush=True)
                res.append(r)
    rows = []
    for r in res:
        t = r["times"]
        first = f"{t[0]:.2f}" if t else "-"
        rest = ", ".join(f"{x:.2f}" for x in t[1:]) or "-"
        cpu = f"{r['cpu']:.1f}" if "cpu" in r else "-"
        rows.append([r["workload"], LABEL[r["variant"]], r["run"], first, rest, f"{r['wall']:.1f}", cpu,
                     f"{r['load'][0]:.1f} -> {r['load'][1]:.1f}", r["status"]])
    summary = []
    for workload in args.only.split(","):
        for variant in args.variants.split(","):
            rs = [r for r in res if r["workload"] == workload and r["variant"] == variant]
            later = [x for r in rs for x in r["times"][1:]]
            ok = sum(r["status"] == "ok" for r in rs)
            summary.append([workload, LABEL[variant], f"{ok}/{len(rs)}",
                            f"{np.median([r['times'][0] for r in rs if r['times']]):.2f}" if any(r["times"] for r in rs) else "-",
                            f"{np.median(later):.2f}" if later else "-", f"{max(later):.2f}" if later else "-",
                            f"{min(r['load'][0] for r in rs):.1f}-{max(max(r['load']) for r in rs):.1f}"])
    extra = (f"{args.busy} busy-loop process(es) beside every run; reproducer: "
             "`benchmarks/xla_cpu_hang_repro.py estep 4` (swimmers E step, 4 size buckets, N = 994), "
             f"{args.calls} calls per process; swimmers: `mtgp.Magma(common_hp=True).fit` on the whole "
             "data set, twice per process (first fit with compilation, then warm). Times in seconds; "
             "the CPU time of the measured process (all its threads) next to its wall time shows "
             "how much of the wall time it spent waiting for a core. "
             "Quiet-machine references (jax 0.12.0.1, 2 cores, docs/results/magma_scale_notes.md): "
             "reproducer 4.5 s first call, 0.50 s after; swimmers warm fit 20-21 s.")
    page = page_header("mtgp beside busy processes (CPU contention)", cmd=command_line(), quick=args.quick,
                       extra=extra, elapsed=None if args.from_log else time.perf_counter() - t_start)
    page += "\n## Summary\n\n" + md_table(["workload", "variant", "runs ok", "median first call / fit",
                                           "median later calls / warm fit", "max later", "load range"], summary)
    page += "\n\n## Every run\n\n" + md_table(["workload", "variant", "run", "first", "later", "process wall s",
                                               "process CPU s (user + sys)",
                                               "load start -> end", "status"], rows) + "\n"
    path = out_dir(args.out) / "cpu_contention.md"
    path.write_text(page)
    print(page)
    print("wrote", path)


if __name__ == "__main__":
    main()
