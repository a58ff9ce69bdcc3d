"""Verilog export, Verilator lint and yosys cell counts of the chip's components."""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

from amaranth.back import verilog

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.components import COMPONENTS, build, module_name
from spikeloop.rtl.tools import ensure_verilator_on_path, require

#: Verilator warnings that Amaranth's generated Verilog raises by construction,
#: each with the reason it is waived.  Anything else is a finding.
LINT_WAIVERS: dict[str, str] = {
    "DECLFILENAME": "one file holds a component and its generated submodules, "
                    "named after the component, not after each module",
    "UNUSEDSIGNAL": "Amaranth keeps every declared signal and port bit; unused "
                    "bits of shared layouts (e.g. event fields a block ignores) are expected",
    "UNUSEDPARAM": "generated parameters of memories",
    "PINCONNECTEMPTY": "generated instances leave unused outputs unconnected",
    "GENUNNAMED": "generated code",
    "WIDTHTRUNC": "yosys's Verilog backend writes Amaranth's dynamic part selects "
                  "(word_select, Array indexing) as a wide shift assigned to a narrow "
                  "net; Amaranth defines the truncation, amaranth.sim tests check it",
    "WIDTHEXPAND": "yosys's Verilog backend compares slices with constants sized "
                   "for the wider operand; Amaranth's width rules define the result",
    "CASEINCOMPLETE": "Amaranth assigns every signal's default before a Switch; "
                      "the generated case needs no default branch",
    "ASCRANGE": "yosys writes Amaranth's zero-width signals (the address of a "
                "depth-1 FIFO) as [-1:0]; they hold no bits",
    "PROCASSINIT": "Amaranth initialises registers in their declaration and "
                   "assigns them in processes: the reset value, not a race",
}


def export_verilog(cfg: ChipConfig, out: Path, names=None) -> dict[str, Path]:
    """Write ``<out>/<component>.v`` for every component (and the top level)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in names or COMPONENTS:
        text = verilog.convert(build(name, cfg), name=module_name(name),
                               emit_src=False, strip_internal_attrs=True)
        path = out / f"{name}.v"
        path.write_text(text)
        files[name] = path
    (out / "chip_config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    return files


def lint(cfg: ChipConfig, names=None, workdir: Path | None = None) -> dict[str, list[str]]:
    """Verilator ``--lint-only -Wall`` over each exported file, with the waivers
    above.  Returns the unexplained warnings per component (empty lists: clean)."""
    exe = ensure_verilator_on_path()
    findings = {}
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(workdir or tmp)
        files = export_verilog(cfg, wd / "verilog", names)
        waivers = wd / "waivers.vlt"
        waivers.write_text("`verilator_config\n" + "".join(
            f"lint_off -rule {rule}\n" for rule in LINT_WAIVERS))
        for name, path in files.items():
            proc = subprocess.run(
                [exe, "--lint-only", "-Wall", "--top-module", module_name(name),
                 str(waivers), str(path)],
                capture_output=True, text=True)
            lines = [ln for ln in proc.stderr.splitlines()
                     if ln.startswith("%Warning") or ln.startswith("%Error")]
            if proc.returncode and not lines:
                lines = [f"verilator exited {proc.returncode}: {proc.stderr.strip()[:2000]}"]
            findings[name] = lines
    return findings


#: transistors per bit of a 6T SRAM cell, for memories kept as macros
SRAM_TRANSISTORS_PER_BIT = 6


def _stat_number(text: str, label: str) -> int:
    m = re.search(rf"{label}:\s+(\d+)", text)
    return int(m.group(1)) if m else 0


def _yosys_area(path: Path, top: str, workdir: Path, timeout_s: int,
                log_dir: Path | None = None) -> dict:
    """Memories are collected into ``$mem_v2`` cells, counted (their bits), and
    turned into black boxes (an SRAM macro each); the rest goes through
    ``synth`` (from its ``coarse`` label on) and ``stat -tech cmos`` estimates
    its transistors.  The yosys log goes to ``log_dir`` (default: ``workdir``),
    which a failure message names."""
    yosys = require("yosys", "yosys")
    log = (log_dir or workdir) / f"{top}.yosys.log"
    pre, post = workdir / f"{top}.coarse.json", workdir / f"{top}.stat.txt"
    script = "; ".join([
        f"read_verilog -sv {path}",
        f"hierarchy -top {top}",
        "proc", "flatten", "memory_collect",
        f"write_json {pre}",
        # the memory passes of `synth` (opt_mem, memory_share) take hours on the
        # full synapse array's 256-lane row words; an SRAM macro needs none of them
        "chtype -set $__spikeloop_sram t:$mem_v2",
        f"synth -top {top} -run coarse:check",
        f"tee -q -o {post} stat -tech cmos",
    ])
    try:
        proc = subprocess.run([yosys, "-q", "-l", str(log), "-p", script],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"yosys took more than {timeout_s} s on {top}; log: {log}") from None
    if proc.returncode:
        raise RuntimeError(f"yosys failed on {top} (exit {proc.returncode}); log: {log}\n"
                           + proc.stderr[-2000:])
    stat = post.read_text()
    memories = [cell["parameters"] for mod in json.loads(pre.read_text())["modules"].values()
                for cell in mod["cells"].values() if cell["type"] == "$mem_v2"]
    types = {t: int(n) for t, n in re.findall(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$",
                                                 stat, re.M)}
    return {
        "cells": _stat_number(stat, "Number of cells"),
        "transistors_logic": _stat_number(stat, "Estimated number of transistors"),
        "memories": len(memories),
        "memory_bits": sum(int(p["WIDTH"], 2) * int(p["SIZE"], 2) for p in memories),
        "cell_types": types,
    }


def area(cfg: ChipConfig, names=None, timeout_s: int = 1800,
         log_dir=Path("build") / "area-logs") -> dict:
    """Cell counts per component and in total from Debian's yosys ``synth; stat``,
    with memories counted as SRAM bits (6 transistors each).  The yosys logs are
    kept in ``log_dir/<preset>/`` (a failure names its log there)."""
    result = {"preset": cfg.name, "components": {}}
    logs = Path(log_dir) / cfg.name
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        names = list(names or [n for n in COMPONENTS if n != "top"])
        files = export_verilog(cfg, wd / "verilog", names)
        for name, path in files.items():
            r = _yosys_area(path, module_name(name), wd, timeout_s, logs)
            r["transistors_sram"] = r["memory_bits"] * SRAM_TRANSISTORS_PER_BIT
            r["transistors_total"] = r["transistors_logic"] + r["transistors_sram"]
            result["components"][name] = r
    comps = result["components"].values()
    result["total"] = {
        key: sum(c[key] for c in comps)
        for key in ("cells", "memory_bits", "transistors_logic", "transistors_total")
    }
    return result
