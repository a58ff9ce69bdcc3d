"""``spikeloop rtl ...``: the chip's digital logic: Verilog export, synthesis
area, Verilator lint, the host bus's address map."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import PRESETS, ChipConfig
from spikeloop.base.settings import option
from spikeloop.rtl.components import COMPONENTS
from spikeloop.rtl.export import LINT_WAIVERS, area, export_verilog, lint

PRESET_HELP = f"chip design variant, a preset: {', '.join(sorted(PRESETS))}"


@dataclass
class ExportSettings:
    preset: str = option(required=True, help=PRESET_HELP)
    out: str = option(required=True, help="output directory")


def export(s: ExportSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    t0 = time.perf_counter()
    files = export_verilog(cfg, Path(s.out))
    for name, path in files.items():
        print(f"{name:<18} {path}  ({path.stat().st_size} bytes)")
    print(f"exported {len(files)} components for preset {cfg.name} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


@dataclass
class AreaSettings:
    preset: str = option(required=True, help=PRESET_HELP)
    component: str | None = option(None, choices=list(COMPONENTS), help="only this component")
    out: str | None = option(None, help="also write the JSON to this file")
    timeout: int = option(1800, help="seconds per yosys run")


def area_report(s: AreaSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    result = area(cfg, [s.component] if s.component else None, timeout_s=s.timeout)
    text = json.dumps(result, indent=2, sort_keys=True)
    if s.out:
        Path(s.out).write_text(text + "\n")
    print(text)
    return 0


@dataclass
class LintSettings:
    preset: str = option(required=True, help=PRESET_HELP)


def lint_report(s: LintSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    findings = lint(cfg)
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
