"""Verilog export, Verilator lint and yosys cell counts of the chip's components
(the cell counts: :mod:`spikeloop.rtl.area`)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from spikeloop.base.config import ChipConfig
from spikeloop.base.progress import Heartbeat
from spikeloop.rtl.area import SRAM_TRANSISTORS_PER_BIT, estimate
from spikeloop.rtl.components import COMPONENTS, build, module_name
from spikeloop.rtl.tools import ensure_verilator_on_path

#: ``SRAM_TRANSISTORS_PER_BIT`` stays importable from here
__all__ = ["LINT_WAIVERS", "SRAM_TRANSISTORS_PER_BIT", "area", "export_verilog", "lint"]

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


def lint(cfg: ChipConfig, names=None, workdir: Path | None = None, *,
         progress: bool = False) -> dict[str, list[str]]:
    """Verilator ``--lint-only -Wall`` over each exported file, with the waivers
    above.  Returns the unexplained warnings per component (empty lists: clean).
    ``progress``: say on stderr what runs and for how long."""
    exe = ensure_verilator_on_path()
    findings = {}
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(workdir or tmp)
        with Heartbeat(f"exporting the Verilog of preset {cfg.name}", enabled=progress):
            files = export_verilog(cfg, wd / "verilog", names)
        waivers = wd / "waivers.vlt"
        waivers.write_text("`verilator_config\n" + "".join(
            f"lint_off -rule {rule}\n" for rule in LINT_WAIVERS))
        with Heartbeat(f"verilator --lint-only -Wall over {len(files)} components",
                       enabled=progress):
            for name, path in files.items():
                proc = subprocess.run(
                    [exe, "--lint-only", "-Wall", "--top-module", module_name(name),
                     str(waivers), str(path)],
                    capture_output=True, text=True)
                lines = [ln for ln in proc.stderr.splitlines()
                         if ln.startswith("%Warning") or ln.startswith("%Error")]
                if proc.returncode and not lines:
                    lines = [f"verilator exited {proc.returncode}: "
                             f"{proc.stderr.strip()[:2000]}"]
                findings[name] = lines
    return findings


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def area(cfg: ChipConfig, names=None, timeout_s: int = 1800,
         log_dir=Path("build") / "area-logs", *, progress: bool = False,
         cache_dir: Path | None = None, jobs: int = 1) -> dict:
    """Cells, memory bits and transistors of ONE instance of each component
    (default: every block of rtl/components.py; ``top`` is the top level's own
    logic), and their sum in ``total``, from :func:`spikeloop.rtl.area.estimate`
    (docs/area.md; the whole chip, every instance counted:
    :func:`~spikeloop.rtl.area.estimate` itself).  The yosys logs are kept in
    ``log_dir/<preset>/`` (a failure names its log there).  ``cache_dir``: the
    synthesis cache (default none: every component synthesized afresh);
    ``jobs``: yosys runs at a time; ``progress``: say on stderr what runs and
    for how long."""
    names = list(names or [n for n in COMPONENTS if n != "top"])
    est = estimate(cfg, names, cache_dir=cache_dir, jobs=jobs, timeout_s=timeout_s,
                   log_dir=Path(log_dir) / cfg.name, progress=_say if progress else None)
    keys = ("cells", "cell_types", "memory_bits", "sram_bits", "flipflop_bits",
            "transistors_logic", "transistors_sram", "transistors_total")
    comps = {n: {k: c[k] for k in keys} | {"memories": len(c["memories"])}
             for n, c in est["components"].items()}
    total = {k: sum(c[k] for c in comps.values()) for k in keys if k != "cell_types"}
    return {"preset": cfg.name, "method": est["method"], "components": comps, "total": total}
