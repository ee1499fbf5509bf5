"""Compare the result files of two runs of the benchmarks' quick modes.

    python benchmarks/compare_quick.py OLD_DIR NEW_DIR [--rtol 1e-8] [--atol 1e-10] [--show 5]

Typical use: prove that a restructuring of the package leaves every number
unchanged. Run the quick mode of each benchmark (``python benchmarks/<script>
--quick --out DIR``) once with the old code into OLD_DIR and once with the new
code into NEW_DIR, then compare the two folders.

* Both folders must hold the same result files (``*.png`` and other images
  are skipped).
* CSV files: same columns and number of rows; every cell equal, numbers within
  ``|a - b| <= atol + rtol * max(|a|, |b|)`` (NaN equals NaN, empty equals
  empty). Columns that hold timings or depend on the machine (names such as
  ``train_s``, ``fit time``, ``seconds``, ``wall``, ``speed``, ``ratio``,
  ``memory``, ``peak MB``, ``load``) are left out.
* Markdown pages: compared line by line and token by token, numbers within
  the same tolerance, the text between them exactly. Left out: lines that
  describe the run (command, date, machine, versions, load averages), numbers
  followed by a unit of time or memory (``4 s``, ``75 ms``, ``12 MB``),
  table columns whose header names a timing (as for CSV), and, in a section
  whose heading is about times, a table none of whose columns is so named
  (its cells are then the times, e.g. one column per model).
* Any other file: byte for byte.
* magma_real.py reuses the per-group results of an earlier run with the same
  arguments (kept in ``$TMPDIR/mtgp_<data>_s<seed>_tr<n>_te<n>``; its page
  then says ``cached`` under ``attempts``). Such a NEW page is reported as
  not recomputed: run the new code with ``TMPDIR`` set to an empty folder.

Prints one line per file (identical / equal within tolerance / DIFFERENT,
with the first differing cells) and exits with 1 if anything differs or is
missing, else 0. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

SKIP_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf"}

# A column (CSV or markdown table) whose name matches holds timings or
# machine-dependent values.
TIMING_COLUMN = re.compile(
    r"time|second|wall|speed|it/s|ratio|memory|\bmem\b|\bmb\b|_mb\b|mib|gib|\bpeak\b|\brss\b|\bload\b|uptime"
    r"|(?:^|[\s_(])m?s\)?$|\(m?s\b"              # train_s, fit s, median ms, train (s), (s / individual)
    r"|\b(?:fit|predict|train)\b.*\b(?:cold|warm)\b"  # "fit cold", "predict warm (median)"
    r"|^attempts$",                              # watchdog retries (magma_real.py)
    re.IGNORECASE)
# A markdown heading after which tables without such a column are all timings.
TIMING_HEADING = re.compile(r"\btimes?\b|timing|second|speed|memory|\bwall\b", re.IGNORECASE)
# Lines that describe the run rather than its results.
VOLATILE_LINE = re.compile(
    r"Produced by|Command:|Machine:|machine:|\bUTC\b|\bjax \d|\bpython ?\d|CPU cores|\bload\b"
    r"|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}", re.IGNORECASE)
# The last line of a page header that starts with "Produced by": the date
# (benchmarks/_common.page_header) or the versions (older pages).
RUN_LINE = re.compile(r"\bUTC\b|^\(jax \d")
MAX_HEADER_LINES = 8
# A number followed by a unit of time or memory: masked before comparing.
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
TIMING_VALUE = re.compile(
    NUMBER + r"(?:\s*(?:s|ms|us|µs|ns|sec|secs|seconds?|min|minutes?|h|hours?|[KMG]i?B)\b|[x×](?=\W|$))")
TOKEN = re.compile(r"nan|-?inf|" + NUMBER, re.IGNORECASE)


def _float(s):
    try:
        return float(s)
    except ValueError:
        return None


def close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def same_cell(a: str, b: str, rtol: float, atol: float) -> bool:
    a, b = a.strip(), b.strip()
    if a == b:
        return True
    x, y = _float(a), _float(b)
    return x is not None and y is not None and close(x, y, rtol, atol)


def same_text(a: str, b: str, rtol: float, atol: float) -> bool:
    """Equal text between the numbers, numbers equal within the tolerance."""
    ta, tb = TOKEN.split(a), TOKEN.split(b)
    na, nb = TOKEN.findall(a), TOKEN.findall(b)
    return (ta == tb and len(na) == len(nb)
            and all(close(float(x), float(y), rtol, atol) for x, y in zip(na, nb)))


def compare_csv(old: Path, new: Path, rtol, atol):
    """Returns (list of differences, list of left-out columns)."""
    with old.open(newline="") as f:
        a = list(csv.reader(f))
    with new.open(newline="") as f:
        b = list(csv.reader(f))
    if not a or not b:
        return ([] if a == b else ["one file is empty"]), []
    if a[0] != b[0]:
        return [f"columns differ: {a[0]} vs {b[0]}"], []
    cols = a[0]
    skip = [c for c in cols if TIMING_COLUMN.search(c)]
    keep = [i for i, c in enumerate(cols) if c not in skip]
    diffs = []
    if len(a) != len(b):
        diffs.append(f"{len(a) - 1} vs {len(b) - 1} rows")
    for r, (ra, rb) in enumerate(zip(a[1:], b[1:]), start=1):
        if len(ra) != len(rb):
            diffs.append(f"row {r}: {len(ra)} vs {len(rb)} cells")
            continue
        diffs += [f"row {r}, {cols[i]}: {ra[i]!r} vs {rb[i]!r}"
                  for i in keep if i < len(ra) and not same_cell(ra[i], rb[i], rtol, atol)]
    return diffs, skip


def _cells(line: str):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _md_lines(text: str):
    """(line number, what to compare) for every line that is compared: a
    string, or the list of cells of a table row, with what is left out
    masked. Blank lines, and the page header from "Produced by" to the line
    with the date or the versions (both header styles), are passed over."""
    heading, header, skip, header_end = "", None, set(), 0
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if n <= header_end:  # at most MAX_HEADER_LINES lines after "Produced by"
            header_end = 0 if RUN_LINE.search(s) else header_end
            continue
        if s.startswith("Produced by"):
            header_end = n + MAX_HEADER_LINES
            continue
        if not s.startswith("|"):
            header = None
            if not s or VOLATILE_LINE.search(s):
                continue
            if s.startswith("#"):
                heading = s
        elif header is None:  # first line of a table: its header
            header = _cells(s)
            skip = {i for i, c in enumerate(header) if TIMING_COLUMN.search(c)}
            if not skip and TIMING_HEADING.search(heading):
                skip = set(range(len(header)))
            yield n, header
            continue
        if header is not None:
            cells = [TIMING_VALUE.sub("<t>", c) for c in _cells(s)]
            yield n, ["<left out>" if i in skip else c for i, c in enumerate(cells)]
        else:
            yield n, TIMING_VALUE.sub("<t>", s)


def not_recomputed(text: str) -> bool:
    """True if a magma_real.py page says that its numbers were read from the
    files of an earlier run (``attempts`` column ``cached``; that script keeps
    them in ``$TMPDIR/mtgp_<data>_s<seed>_tr<n>_te<n>``)."""
    col = None
    for line in text.splitlines():
        if not line.startswith("|"):
            col = None
        elif col is None:
            cells = _cells(line)
            col = cells.index("attempts") if "attempts" in cells else -1
        elif col >= 0 and _cells(line)[col:col + 1] == ["cached"]:
            return True
    return False


def compare_md(old: Path, new: Path, rtol, atol):
    a = list(_md_lines(old.read_text()))
    b = list(_md_lines(new.read_text()))
    diffs = [] if len(a) == len(b) else [f"{len(a)} vs {len(b)} lines compared"]
    if not_recomputed(new.read_text()):
        diffs.append(f"{new} was not recomputed: it reuses an earlier run's files (attempts 'cached'); run "
                     "magma_real.py again with an empty TMPDIR, or delete $TMPDIR/mtgp_*_s*_tr*_te*")
    for (n, la), (m, lb) in zip(a, b):
        where = f"line {n}" if n == m else f"lines {n} / {m}"
        if isinstance(la, list) and isinstance(lb, list) and len(la) == len(lb):
            diffs += [f"{where}, cell {i + 1}: {x!r} vs {y!r}"
                      for i, (x, y) in enumerate(zip(la, lb)) if not same_text(x, y, rtol, atol)]
        elif isinstance(la, list) or isinstance(lb, list) or not same_text(la, lb, rtol, atol):
            diffs.append(f"{where}: {la!r} vs {lb!r}")
    return diffs, []


def result_files(folder: Path):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() not in SKIP_SUFFIXES}


def compare_dirs(old: Path, new: Path, rtol=1e-8, atol=1e-10, show=5, out=sys.stdout) -> bool:
    """Print one line per file; True if every file matches."""
    fa, fb = result_files(old), result_files(new)
    ok = True
    for name in sorted(fa | fb):
        if name not in fb or name not in fa:
            print(f"DIFFERENT  {name}: only in {old if name in fa else new}", file=out)
            ok = False
            continue
        pa, pb = old / name, new / name
        if pa.read_bytes() == pb.read_bytes():
            print(f"identical  {name}", file=out)
            continue
        suffix = pa.suffix.lower()
        if suffix == ".csv":
            diffs, skipped = compare_csv(pa, pb, rtol, atol)
        elif suffix == ".md":
            diffs, skipped = compare_md(pa, pb, rtol, atol)
        else:
            diffs, skipped = ["the bytes differ"], []
        note = f" (left out: {', '.join(skipped)})" if skipped else ""
        if diffs:
            ok = False
            print(f"DIFFERENT  {name}: {len(diffs)} difference(s){note}", file=out)
            for d in diffs[:show]:
                print(f"    {d}", file=out)
        else:
            print(f"equal within tolerance  {name}{note}", file=out)
    n = len(fa | fb)
    print(f"{n} file(s) compared: {'all match' if ok else 'DIFFERENCES FOUND'} "
          f"(rtol {rtol:g}, atol {atol:g})", file=out)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="output folder of the reference run")
    ap.add_argument("new", type=Path, help="output folder of the run to check")
    ap.add_argument("--rtol", type=float, default=1e-8, help="relative tolerance (default 1e-8)")
    ap.add_argument("--atol", type=float, default=1e-10, help="absolute tolerance (default 1e-10)")
    ap.add_argument("--show", type=int, default=5, help="differences shown per file (default 5)")
    a = ap.parse_args(argv)
    for d in (a.old, a.new):
        if not d.is_dir():
            ap.error(f"not a folder: {d}")
    return 0 if compare_dirs(a.old, a.new, a.rtol, a.atol, a.show) else 1


if __name__ == "__main__":
    sys.exit(main())
