"""Verilog export, Verilator lint and yosys cell counts of the chip's components
(the cell counts: :mod:`spikeloop.rtl.area`)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth._toolchain.yosys import find_yosys
from amaranth.back import rtlil, verilog

from spikeloop.base.config import ChipConfig
from spikeloop.base.files import atomic_write_text, build_cache_dir
from spikeloop.base.progress import Heartbeat
from spikeloop.rtl.area import SRAM_TRANSISTORS_PER_BIT, code_version, estimate
from spikeloop.rtl.components import COMPONENTS, build, module_name
from spikeloop.rtl.tools import ensure_verilator_on_path

#: ``SRAM_TRANSISTORS_PER_BIT`` stays importable from here
__all__ = ["ENV_EXPORT_CACHE", "LINT_WAIVERS", "SRAM_TRANSISTORS_PER_BIT", "area",
           "export_cache_dir", "export_verilog", "lint", "simulation_verilog"]

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


#: the environment variable naming the cache of exported Verilog
ENV_EXPORT_CACHE = "SPIKELOOP_VERILOG_CACHE"

#: a cache folder of another code version, unused this long, is removed
_STALE_S = 24 * 3600


def export_cache_dir() -> Path:
    """The cache of exported Verilog: ``$SPIKELOOP_VERILOG_CACHE``, else
    ``<repo>/build/verilog-cache`` in a writable source checkout, else
    ``~/.cache/spikeloop/verilog-cache``."""
    return build_cache_dir(ENV_EXPORT_CACHE, "verilog-cache")


@functools.cache
def _converter_version() -> str:
    """The Yosys that Amaranth's Verilog backend runs (its own requirement)."""
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    return f"{yosys.__name__} {'.'.join(map(str, yosys.version()))}"


class ExportCache:
    """Exported Verilog kept between calls, one file per export: an export is a
    function of the RTL's sources and the Amaranth version (:func:`code_version`:
    every file of ``rtl/`` and ``spikeloop/base/``), the Yosys that writes the
    Verilog, the component, the options and every ChipConfig field, and all of
    these are in the file's key.  ``<root>/<code version>/<key>.v``, written
    under a temporary name and renamed into place, so concurrent processes
    share it; the folders of other code versions are removed once unused for a
    day."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.version = code_version()

    def path(self, cfg: ChipConfig, name: str, *, simulation: bool, instrument: bool) -> Path:
        key = json.dumps({"component": name, "simulation": simulation,
                          "instrument": instrument, "yosys": _converter_version(),
                          "config": cfg.to_dict()}, sort_keys=True)
        return (self.root / self.version
                / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.v")

    def load(self, path: Path) -> str | None:
        try:
            text = path.read_text()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path.parent)          # in use: not stale
        return text

    def store(self, path: Path, text: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
        except OSError:
            return                         # an unwritable cache: the export stands alone
        now = time.time()
        for d in self.root.iterdir():
            with contextlib.suppress(OSError):
                if d.is_dir() and d.name != self.version and now - d.stat().st_mtime > _STALE_S:
                    shutil.rmtree(d)


def _component_verilog(cfg: ChipConfig, name: str, *, simulation: bool,
                       instrument: bool) -> str:
    if simulation:
        return simulation_verilog(build(name, cfg, instrument=instrument), module_name(name))
    return verilog.convert(build(name, cfg, instrument=instrument), name=module_name(name),
                           emit_src=False, strip_internal_attrs=True)


def export_verilog(cfg: ChipConfig, out: Path, names=None, *,
                   simulation: bool = False, instrument: bool = False,
                   cache: Path | None | bool = True) -> dict[str, Path]:
    """Write ``<out>/<component>.v`` for every component (and the top level).

    ``instrument``: the top level with its simulation instrumentation (the
    co-simulation's builds; rtl/top.py); default: the chip alone.

    ``simulation``: the same design written for a cycle-based simulator
    (:func:`simulation_verilog`, what the Verilator co-simulation compiles);
    default: Amaranth's own Verilog (lint, area, ``spikeloop rtl export``).

    ``cache``: True (default): the :class:`ExportCache` at
    :func:`export_cache_dir`; a folder: the cache there; False or None: export
    afresh (the full preset's top level takes about two minutes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cache is True:
        cache = export_cache_dir()
    store = ExportCache(cache) if cache else None
    files = {}
    for name in names or COMPONENTS:
        entry = store.path(cfg, name, simulation=simulation,
                           instrument=instrument) if store else None
        text = store.load(entry) if store else None
        if text is None:
            text = _component_verilog(cfg, name, simulation=simulation, instrument=instrument)
            if store:
                store.store(entry, text)
        path = out / f"{name}.v"
        path.write_text(text)
        files[name] = path
    (out / "chip_config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    return files


#: the last statement of the process that computes a register's next value: its
#: synchronous domain reset, as Amaranth writes it in RTLIL
_RESET_SWITCH = re.compile(
    r"    switch \\rst \[0\]\n      case 1'1\n        assign (\S+(?: \[\d+(?::\d+)?\])?) "
    r"(\d+'[01]+)\n    end\n  end\n")
_DFF = re.compile(r"  cell \$dff (\S+)\n((?:    [^\n]*\n)*?)  end\n")


def _sync_resets_in_flip_flops(module: str) -> str:
    """One RTLIL module with the domain reset moved out of the next-value
    processes into the flip-flops: a process ending ``if (rst) next = init``
    that feeds only a ``$dff`` loses that statement, and the ``$dff`` becomes
    a ``$sdff`` with reset ``rst`` and reset value ``init``.  Same behaviour at
    every clock edge (``q <= rst ? init : next``); the Verilog then holds each
    register's reset in its ``always @(posedge clk)`` block, so the next-value
    logic no longer reads a top-level input.  Processes that do not match
    exactly are left as they are."""
    resets = {}
    for m in _RESET_SWITCH.finditer(module):
        resets[m.group(1)] = m.group(2)
    if not resets:
        return module
    uses, assigns = {}, {}
    for w in re.findall(r"\S+", module):
        uses[w] = uses.get(w, 0) + 1
    for w in re.findall(r"(?m)^\s+assign (\S+) ", module):
        assigns[w] = assigns.get(w, 0) + 1
    dffs = {}
    for m in _DFF.finditer(module):
        d = re.search(r"^    connect \\D (.+)$", m.group(2), re.M)
        if d:
            dffs[d.group(1)] = m
    done = set()
    for lhs, value in resets.items():
        base = lhs.split(" ")[0]
        m = dffs.get(lhs)
        # the next-value wire: declared, assigned in its process, read by the flip-flop
        # only (every other occurrence is an assignment in the process)
        if m is None or uses.get(base, 0) != assigns.get(base, 0) + 2:
            continue
        done.add((lhs, value, m.group(1)))
    if not done:
        return module

    moved = {lhs for lhs, _, _ in done}

    def reset_switch(m: re.Match) -> str:
        return "  end\n" if m.group(1) in moved else m.group(0)

    module = _RESET_SWITCH.sub(reset_switch, module)
    values = {cell: value for _, value, cell in done}

    def flip_flop(m: re.Match) -> str:
        if m.group(1) not in values:
            return m.group(0)
        body = m.group(2)
        body = body.replace("    connect \\CLK ", "    connect \\SRST \\rst [0]\n"
                            "    connect \\CLK ", 1)
        return (f"  cell $sdff {m.group(1)}\n    parameter \\SRST_POLARITY 1\n"
                f"    parameter \\SRST_VALUE {values[m.group(1)]}\n{body}  end\n")

    return _DFF.sub(flip_flop, module)


def simulation_verilog(component, name: str) -> str:
    """The Verilog of ``component`` (a ``wiring.Component``) for a cycle-based
    simulator: Amaranth's RTLIL with every register's synchronous reset moved
    into its flip-flop (:func:`_sync_resets_in_flip_flops`), then written by
    Amaranth's own Yosys script.  The same design as :func:`verilog.convert`
    writes (same ports, same registers, same behaviour at every clock edge),
    but Verilator evaluates logic that reads a top-level input on every call of
    its model (both clock edges, every write of an input), and in Amaranth's
    Verilog every register's next value reads the reset input ``rst``; here
    only the inputs a block really reads do."""
    text = rtlil.convert(component, name=name, emit_src=False)
    modules = re.split(r"(?m)^(?=module )", text)
    text = "".join(_sync_resets_in_flip_flops(m) for m in modules)
    # amaranth.back.verilog's own Yosys script (Amaranth 0.5.10, pinned in pyproject.toml)
    return verilog._convert_rtlil_text(text, strip_internal_attrs=True)


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

        def lint_one(name: str) -> list[str]:
            proc = subprocess.run(
                [exe, "--lint-only", "-Wall", "--top-module", module_name(name),
                 str(waivers), str(files[name])],
                capture_output=True, text=True)
            lines = [ln for ln in proc.stderr.splitlines()
                     if ln.startswith("%Warning") or ln.startswith("%Error")]
            if proc.returncode and not lines:
                lines = [f"verilator exited {proc.returncode}: "
                         f"{proc.stderr.strip()[:2000]}"]
            return lines

        # one Verilator per core, the largest file (the top level) first
        order = sorted(files, key=lambda n: -files[n].stat().st_size)
        with Heartbeat(f"verilator --lint-only -Wall over {len(files)} components",
                       enabled=progress), \
                ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1)) as pool:
            results = dict(zip(order, pool.map(lint_one, order), strict=True))
        findings = {name: results[name] for name in files}
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
