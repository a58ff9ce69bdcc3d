"""``spikeloop rtl ...``: the chip's digital logic: Verilog export, synthesis
area, Verilator lint, the host bus's address map."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import PRESETS, ChipConfig
from spikeloop.base.files import (
    atomic_write_text,
    lock_output_dir,
    prepare_output_dir,
    prepare_output_file,
)
from spikeloop.base.settings import option
from spikeloop.rtl.area import (
    AREA_COMPONENTS,
    default_cache_dir,
    estimate,
    flat_metrics,
    format_table,
)
from spikeloop.rtl.export import LINT_WAIVERS, export_verilog, lint

PRESET_HELP = f"chip design variant, a preset: {', '.join(sorted(PRESETS))}"


@dataclass
class ExportSettings:
    preset: str = option(required=True, help=PRESET_HELP)
    out: str = option(required=True, help="output directory")


def export(s: ExportSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    t0 = time.perf_counter()
    with lock_output_dir(s.out, command="spikeloop rtl export") as lock:
        if lock.note:
            print(lock.note)
        files = export_verilog(cfg, Path(s.out))
    for name, path in files.items():
        print(f"{name:<18} {path}  ({path.stat().st_size} bytes)")
    print(f"exported {len(files)} components for preset {cfg.name} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


@dataclass
class AreaSettings:
    preset: str = option(required=True, help=PRESET_HELP)
    component: str | None = option(None, choices=list(AREA_COMPONENTS),
                                   help="only this component (top: the top level's own logic)")
    out: str | None = option(None, help="also write the JSON to this file")
    force: bool = option(False, help="replace the --out file when it exists")
    timeout: int = option(1800, help="seconds per yosys run")
    progress: bool = option(True, flag="--no-progress",
                            help="no progress lines on stderr (each synthesis run, elapsed time)")
    jobs: int = option(0, help="yosys runs at a time (0: one per CPU core)")
    cache_dir: str | None = option(None, help="the synthesis cache (default: "
                                   "$SPIKELOOP_AREA_CACHE, else ~/.cache/spikeloop/area)")
    cache: bool = option(True, flag="--no-cache",
                         help="synthesize every component afresh, without the cache")
    table: bool = option(False, help="print a markdown table (all instances of each "
                         "component, and the total) instead of the JSON")


def area_report(s: AreaSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    if s.timeout < 1:
        raise ValueError(f"timeout = {s.timeout}; allowed: an integer >= 1 (seconds)")
    if s.jobs < 0:
        raise ValueError(f"jobs = {s.jobs}; allowed: an integer >= 0 (0: one per CPU core)")
    if s.out:
        prepare_output_file(s.out, "--out", overwrite=s.force, example="area.json")
    cache_dir = None
    if s.cache:     # checked before any work: a FileError naming it
        cache_dir = prepare_output_dir(s.cache_dir or default_cache_dir(),
                                       "--cache-dir" if s.cache_dir else "area cache")
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if s.progress else None
    result = estimate(cfg, [s.component] if s.component else None, cache_dir=cache_dir,
                      jobs=s.jobs or os.cpu_count() or 1, timeout_s=s.timeout,
                      log_dir=Path("build") / "area-logs" / cfg.name, progress=say)
    result["metrics"] = flat_metrics(result)
    text = json.dumps(result, indent=2, sort_keys=True)
    if s.out:
        atomic_write_text(s.out, text + "\n")
    print(format_table(result) if s.table else text)
    if say is not None:
        run = result["run"]
        say(f"area of preset {cfg.name}: {result['total']['cells']} cells, "
            f"{result['total']['memory_bits']} memory bits, "
            f"{result['total']['transistors_total']} transistors; "
            f"{run['synthesized']} yosys runs, {run['cached']} from the cache, "
            f"{run['seconds']:.1f} s")
    return 0


@dataclass
class LintSettings:
    preset: str = option(required=True, help=PRESET_HELP)
    progress: bool = option(True, flag="--no-progress",
                            help="no progress lines on stderr (what runs, elapsed time)")


def lint_report(s: LintSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    findings = lint(cfg, progress=s.progress)
    print(f"verilator --lint-only -Wall, preset {cfg.name}; waived rules:")
    for rule, why in LINT_WAIVERS.items():
        print(f"  {rule}: {why}")
    bad = 0
    for name, lines in findings.items():
        print(f"{name:<18} {'clean' if not lines else f'{len(lines)} finding(s)'}")
        for ln in lines:
            print("   ", ln)
        bad += len(lines)
    return 1 if bad else 0


@dataclass
class AddrmapSettings:
    preset: str = option(required=True, help=PRESET_HELP)


def addrmap(s: AddrmapSettings) -> int:
    amap = AddressMap(ChipConfig.preset(s.preset))
    print(amap.table())
    print(f"address bits: {amap.addr_bits}")
    return 0
