"""Area of a chip variant: cells, memory bits and transistors per component and
in total, from Debian's yosys on the variant's exported netlists (docs/area.md).

How the estimate is made:

- The chip is the top level's own logic (the component ``top`` here: the cycle
  counter, the PPU's reset hold and output buffer, the analog settings memory,
  the wiring between the blocks) plus its sub-blocks, each counted as often as
  the top level instantiates it (:func:`instances`: one arbiter per neuron
  block, one synapse memory, driver block and analog boundary per half, one of
  the others).  Each component is synthesized **once** per distinct netlist
  and multiplied by its instance count; the top level is synthesized with its
  sub-blocks replaced by black boxes.  The netlist yosys reads is the RTLIL
  that Amaranth exports (the input of Amaranth's own Verilog backend, same
  design): read back from Verilog, a memory with per-lane write enables
  becomes one write port per lane, which alone keeps yosys busy for more than
  ten minutes on the full synapse array.
- Memories (every ``amaranth.lib.memory.Memory``: synapse arrays, ADC buffer,
  playback and record memories, PPU instruction and data memory, arbiter
  FIFOs, analog settings, PPU output buffer) are counted analytically from
  the ChipConfig (:func:`memories`) as SRAM bits at
  :data:`SRAM_TRANSISTORS_PER_BIT` transistors each, and kept out of the
  logic synthesis as black boxes (yosys never turns them into flip-flops).
  Storage the RTL builds from flip-flops (the crossbar's node FIFOs, the PPU's
  register files) is counted analytically too (``flipflop`` bits), but it is
  synthesized with the logic, so its transistors are in the logic figure.
- The logic goes through yosys's generic synthesis (:data:`YOSYS_SCRIPT`:
  coarse optimisation, techmap to yosys's internal gate library, ``abc -fast``)
  and every resulting cell is costed with :func:`cell_transistors`, a table
  that covers every internal gate and flip-flop type (yosys's own ``stat -tech
  cmos`` leaves flip-flops with enable or reset out of its count).

Caching: the yosys result of a component is stored under a hash of its
netlist, the yosys version and the script (:class:`AreaCache`), so a
component whose netlist a variant does not change is never synthesized again,
by this sweep or a later one; the netlist itself is remembered by the values
of the ChipConfig fields its export read and a hash of the RTL sources, so a
warm estimate exports nothing.  Entries are written atomically, under a lock
per entry, so concurrent workers share one cache safely.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import amaranth
from amaranth.back import rtlil
from amaranth.hdl import Instance, Module, Value
from amaranth.lib import wiring
from filelock import FileLock

import spikeloop.base
from spikeloop.base.config import ChipConfig
from spikeloop.base.files import atomic_write_text, prepare_output_dir
from spikeloop.base.isa import N_REGS, N_VREGS, XLEN, PpuGeometry, out_buffer_vectors
from spikeloop.base.layouts import synapse_format, timed_event_format
from spikeloop.rtl.components import COMPONENTS, build, module_name
from spikeloop.rtl.tools import require
from spikeloop.rtl.top import Top

#: the components of the area estimate, in report order: every block of
#: rtl/components.py, then ``top``: the top level's own logic and memories
#: (its sub-blocks are counted in their own rows)
AREA_COMPONENTS: tuple[str, ...] = tuple(n for n in COMPONENTS if n != "top") + ("top",)

#: transistors per bit of a 6T SRAM cell (memory macros; periphery not counted)
SRAM_TRANSISTORS_PER_BIT = 6

#: the components from the costliest to synthesize (on FULL) to the cheapest:
#: the order in which they are exported and handed to yosys
COST_ORDER: tuple[str, ...] = ("ppu", "hostbus", "analog_boundary", "synapse_memory",
                               "crossbar", "neuron_backend", "adc_control", "top",
                               "synapse_drivers", "arbiter", "playback", "recorder")

#: environment variable naming the default cache directory
ENV_CACHE_DIR = "SPIKELOOP_AREA_CACHE"

#: prefix of the black-box modules standing for the top level's sub-blocks
STUB_PREFIX = "spikeloop_area_stub_"

#: The yosys script run on one component; ``{netlist}``, ``{top}``, ``{mems}``
#: and ``{stat}`` are filled in.  It is yosys's ``synth`` flow without the
#: passes that do not scale to the full chip: no memory passes (memories stay
#: ``$mem_v2`` cells: black boxes, counted from the ChipConfig), no ``share``
#: (SAT-based sharing of mutually exclusive operators: it runs for more than
#: half an hour on the full PPU), no ``fsm`` (the RTL's state is counters and
#: flags, which it leaves alone), ``opt -fast`` where ``synth`` iterates the
#: full ``opt`` (``-full`` once, before ``techmap``: without its fine-grained
#: folding the counts grow by up to a quarter) and no ``opt`` between
#: ``techmap`` and ``abc -fast``.  docs/area.md compares it with ``synth``.
YOSYS_SCRIPT: tuple[str, ...] = (
    "read_rtlil {netlist}",
    "hierarchy -top {top}",
    "proc -norom",                        # a constant lookup table is logic, not a memory
    "flatten",
    "tee -q -o {mems} stat -json",        # memories as exported, before any optimisation
    "memory_collect",
    "opt -fast -nodffe -nosdff", "wreduce", "peepopt", "alumacc", "opt -fast -full",
    "techmap", "opt_clean", "abc -fast", "opt -fast",
    "tee -q -o {stat} stat -json",
)

# -- what the chip holds -------------------------------------------------------------


def _silence(obj) -> None:
    """No "created but never used" warning for ``obj`` and the elaboratables it
    holds (a sub-block stood in for by a black box is never elaborated)."""
    for o in [obj, *vars(obj).values()]:
        if hasattr(o, "_MustUse__silence"):
            o._MustUse__silence = True


def _sub_blocks(top: Top) -> list[tuple[str, wiring.Component]]:
    """(component name, object) of every sub-block of ``top`` that is a component
    of rtl/components.py, in attribute order."""
    _silence(top)
    by_class = {cls: name for name, (_mod, cls) in COMPONENTS.items() if name != "top"}
    found = []
    for value in vars(top).values():
        for obj in value if isinstance(value, list) else [value]:
            name = by_class.get(type(obj).__name__)
            if name is not None:
                _silence(obj)
                found.append((name, obj))
    return found


def instances(cfg: ChipConfig) -> dict[str, int]:
    """How many instances of each area component the top level holds (read from
    a :class:`~spikeloop.rtl.top.Top` of ``cfg``, so it follows the RTL)."""
    counts = Counter(name for name, _ in _sub_blocks(Top(cfg)))
    return {name: (1 if name == "top" else counts[name]) for name in AREA_COMPONENTS}


@dataclasses.dataclass(frozen=True)
class MemorySpec:
    """One storage array of one instance of a component: ``words`` x ``width``
    bits; ``kind`` ``"sram"`` (an Amaranth ``Memory``: a black box in synthesis,
    :data:`SRAM_TRANSISTORS_PER_BIT` transistors per bit) or ``"flipflop"``
    (registers in the RTL, synthesized with the logic)."""

    component: str
    name: str
    words: int
    width: int
    kind: str

    @property
    def bits(self) -> int:
        return self.words * self.width


def memories(cfg: ChipConfig) -> list[MemorySpec]:
    """Every storage array of one instance of each component, from ``cfg`` alone
    (the sizes the RTL builds; tests compare the SRAM part with the memories
    yosys finds in the exported netlists)."""
    g = PpuGeometry(cfg)
    n_nodes = cfg.crossbar_inputs * cfg.crossbar_outputs
    S, F = "sram", "flipflop"
    return [
        MemorySpec("synapse_memory", "synapses", cfg.rows_per_half,
                   cfg.columns_per_half * synapse_format(cfg).size, S),
        MemorySpec("arbiter", "fifo", cfg.arbiter_fifo_depth, cfg.event_label_bits, S),
        MemorySpec("crossbar", "node_fifos", n_nodes * cfg.crossbar_fifo_depth,
                   cfg.event_label_bits, F),
        MemorySpec("playback", "events", cfg.playback_depth,
                   timed_event_format(cfg, cfg.n_ext_inputs).size, S),
        MemorySpec("recorder", "events", cfg.record_depth,
                   timed_event_format(cfg, cfg.n_host_links).size, S),
        MemorySpec("adc_control", "buffer", cfg.adc_buffer_depth,
                   cfg.n_neurons * cfg.adc_bits, S),
        MemorySpec("ppu", "imem", g.imem_words, XLEN, S),
        MemorySpec("ppu", "dmem", g.dmem_vectors, g.vector_bits, S),
        # r0 reads as 0 and is never written: no storage
        MemorySpec("ppu", "scalar_registers", N_REGS - 1, XLEN, F),
        MemorySpec("ppu", "vector_registers", N_VREGS, g.vector_bits, F),
        MemorySpec("top", "analog_settings",
                   cfg.n_neurons * cfg.analog_settings_per_neuron, cfg.analog_setting_bits, S),
        MemorySpec("top", "ppu_out", out_buffer_vectors(cfg), g.vector_bits, S),
    ]


# -- transistors per cell --------------------------------------------------------------

#: transistors of yosys's internal combinational gates: the values of yosys's
#: own CMOS table (kernel/cost.h, ``stat -tech cmos``)
GATE_TRANSISTORS: dict[str, int] = {
    "$_BUF_": 1, "$_NOT_": 2, "$_AND_": 6, "$_NAND_": 4, "$_OR_": 6, "$_NOR_": 4,
    "$_ANDNOT_": 6, "$_ORNOT_": 6, "$_XOR_": 12, "$_XNOR_": 12, "$_AOI3_": 6,
    "$_OAI3_": 6, "$_AOI4_": 8, "$_OAI4_": 8, "$_MUX_": 12, "$_NMUX_": 10,
    "$_MUX4_": 36, "$_MUX8_": 84, "$_MUX16_": 180, "$_TBUF_": 4,
}
#: a D flip-flop (yosys: 16) and a D latch (half of one)
FF_TRANSISTORS, LATCH_TRANSISTORS, SR_LATCH_TRANSISTORS = 16, 8, 8
#: what each control of a storage cell adds: a clock enable is a $_MUX_ feeding
#: Q back, a synchronous reset an AND/OR gate before D, an asynchronous reset
#: or set turns the two latch inverters into NAND/NOR gates (+2 each), both
#: twice that, an asynchronous load a $_MUX_ into the latch
ENABLE_TRANSISTORS, SYNC_RESET_TRANSISTORS = 12, 6
ASYNC_RESET_TRANSISTORS, ASYNC_SET_RESET_TRANSISTORS, ASYNC_LOAD_TRANSISTORS = 4, 8, 12

_STORAGE = re.compile(r"^\$_(DFF|DFFE|SDFF|SDFFE|SDFFCE|DFFSR|DFFSRE|ALDFF|ALDFFE|"
                      r"DLATCH|DLATCHSR|SR)_([NP01]+)_$")
#: letters after the name: (plain, with an asynchronous reset) variants
_PLAIN_LETTERS = {"DFF": (1, 3), "DFFE": (2, 4), "DLATCH": (1, 3)}


class UnknownCellError(RuntimeError):
    """A synthesized cell type has no transistor count (the table needs it)."""


def cell_transistors(cell_type: str) -> int:
    """Transistors of one cell of yosys's internal gate library (every
    combinational gate and every flip-flop and latch type); raises
    :class:`UnknownCellError` for any other type, so nothing is left out of a
    total silently."""
    if cell_type in GATE_TRANSISTORS:
        return GATE_TRANSISTORS[cell_type]
    m = _STORAGE.match(cell_type)
    if m is None:
        raise UnknownCellError(f"no transistor count for cell type {cell_type}")
    kind, letters = m.group(1), m.group(2)
    if kind == "SR":
        return SR_LATCH_TRANSISTORS
    n = FF_TRANSISTORS if not kind.startswith("DLATCH") else LATCH_TRANSISTORS
    if kind in _PLAIN_LETTERS and len(letters) == _PLAIN_LETTERS[kind][1]:
        n += ASYNC_RESET_TRANSISTORS
    if kind.endswith("SR") or kind.endswith("SRE"):
        n += ASYNC_SET_RESET_TRANSISTORS
    if kind.startswith("ALDFF"):
        n += ASYNC_LOAD_TRANSISTORS
    if kind.startswith("SDFF"):
        n += SYNC_RESET_TRANSISTORS
    if kind.endswith("E"):
        n += ENABLE_TRANSISTORS
    return n


def transistor_table() -> dict[str, int]:
    """Every cell type's transistor count, the storage cells with the usual
    positive polarities (polarity does not change a count); for docs/area.md."""
    table = dict(GATE_TRANSISTORS)
    for name in ("$_DFF_P_", "$_DFF_PP0_", "$_DFFE_PP_", "$_DFFE_PP0P_", "$_SDFF_PP0_",
                 "$_SDFFE_PP0P_", "$_SDFFCE_PP0P_", "$_DFFSR_PPP_", "$_DFFSRE_PPPP_",
                 "$_ALDFF_PP_", "$_ALDFFE_PPP_", "$_DLATCH_P_", "$_DLATCH_PP0_",
                 "$_DLATCHSR_PPP_", "$_SR_PP_"):
        table[name] = cell_transistors(name)
    return table


# -- exporting the netlist of one component ----------------------------------------------

_FIELDS = frozenset(f.name for f in dataclasses.fields(ChipConfig))


class _RecordingConfig(ChipConfig):
    """A ChipConfig that notes which of its fields are read (through properties,
    ``to_dict``, comparisons and hashing alike): the netlist of a component
    depends on those values alone.  Unhashable, so that no cache keyed by the
    configuration can answer without reading the fields (it fails instead)."""

    __hash__ = None

    def __getattribute__(self, name):
        if name in _FIELDS:
            try:
                object.__getattribute__(self, "_read").add(name)
            except AttributeError:      # during __init__
                pass
        return object.__getattribute__(self, name)


def _recording(cfg: ChipConfig) -> _RecordingConfig:
    rec = _RecordingConfig(**cfg.to_dict())
    object.__setattr__(rec, "_read", set())
    return rec


def _stub_ports(obj: wiring.Component) -> list[tuple[str, str, Value]]:
    """("i"|"o", port name, value) of every non-empty port of ``obj``."""
    ports = []
    for path, member, value in obj.signature.flatten(obj):
        v = Value.cast(value)
        if len(v):
            ports.append(("i" if member.flow == wiring.In else "o",
                          "__".join(str(p) for p in path), v))
    return ports


def _blackbox(name: str, ports: list[tuple[str, str, Value]]) -> str:
    """An RTLIL black-box module ``name`` with ``ports``."""
    wires = "".join(f"  wire width {len(v)} {'input' if d == 'i' else 'output'} {k} \\{p}\n"
                    for k, (d, p, v) in enumerate(ports, start=1))
    return f"attribute \\blackbox 1\nmodule \\{name}\n{wires}end\n"


def _top_level_netlist(cfg: ChipConfig) -> str:
    """The top level with each sub-block replaced by an instance of a black box
    (same ports), followed by the black boxes' declarations."""
    top = Top(cfg)
    decls = {}
    for name, obj in _sub_blocks(top):
        stub = STUB_PREFIX + name
        ports = _stub_ports(obj)
        decls.setdefault(stub, _blackbox(stub, ports))

        def elaborate(platform, stub=stub, ports=ports):
            m = Module()
            m.submodules.stub = Instance(stub, *ports)
            return m
        obj.elaborate = elaborate
    text = rtlil.convert(top, name=module_name("top"), emit_src=False)
    return text + "\n" + "".join(decls[k] for k in sorted(decls))


def component_netlist(name: str, cfg: ChipConfig) -> str:
    """The RTLIL netlist (Amaranth's export, the input of its Verilog backend)
    that the area estimate synthesizes for component ``name`` (``top``: the top
    level with black boxes for its sub-blocks)."""
    if name == "top":
        return _top_level_netlist(cfg)
    return rtlil.convert(build(name, cfg), name=module_name(name), emit_src=False)


def _export_recording(name: str, cfg: ChipConfig) -> tuple[str, dict]:
    """(netlist of ``name``, the ChipConfig fields the export read, with values)."""
    rec = _recording(cfg)
    text = component_netlist(name, rec)
    read = object.__getattribute__(rec, "_read")
    return text, {f: getattr(cfg, f) for f in sorted(read)}


@functools.cache
def code_version() -> str:
    """A hash of the sources the exported netlists depend on: the RTL, the
    formats it is built from, and the Amaranth version."""
    h = hashlib.sha256(f"amaranth {amaranth.__version__}\n".encode())
    for pkg, root in (("rtl", Path(__file__).parent),
                      ("base", Path(spikeloop.base.__file__).parent)):
        for path in sorted(root.glob("*.py")):
            h.update(f"{pkg}/{path.name}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


@functools.cache
def yosys_version() -> str:
    yosys = require("yosys", "yosys")
    return subprocess.run([yosys, "-V"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def synth_key(netlist: str) -> str:
    """The cache key of a synthesis: netlist text, yosys version, script."""
    return _sha("\n".join([yosys_version(), *YOSYS_SCRIPT, netlist]))[:32]


# -- the cache -----------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$SPIKELOOP_AREA_CACHE``, else ``$XDG_CACHE_HOME/spikeloop/area``, else
    ``~/.cache/spikeloop/area``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spikeloop" / "area"


class AreaCache:
    """Synthesis results and exported netlists, shared by every process that
    uses ``root``:

    - ``synth/<key>.json``: one component's yosys result, ``key`` =
      :func:`synth_key`; ``synth/<key>.yosys.log``: its log;
    - ``netlists/<sha>.il``: an exported netlist (RTLIL), by its SHA-256;
    - ``exports/<component>/<code version>/<hash>.json``: the ChipConfig field
      values an export read and the SHA-256 of the netlist it gave.

    Every file is written under a temporary name and renamed into place; a
    synthesis holds ``synth/<key>.lock`` (a ``filelock``) while it runs, so a
    second worker asking for the same entry waits and then reads it."""

    def __init__(self, root: Path, option: str = "area cache"):
        self.root = prepare_output_dir(root, option)     # a FileError naming it if unusable
        for sub in ("synth", "netlists", "exports"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # exported netlists
    def _export_dir(self, name: str) -> Path:
        return self.root / "exports" / name / code_version()

    def find_netlist(self, name: str, cfg: ChipConfig) -> str | None:
        d = self._export_dir(name)
        if not d.is_dir():
            return None
        for entry in sorted(d.glob("*.json")):
            try:
                rec = json.loads(entry.read_text())
                if all(getattr(cfg, f) == v for f, v in rec["fields"].items()):
                    return (self.root / "netlists" / f"{rec['sha256']}.il").read_text()
            except (OSError, ValueError, KeyError, AttributeError):
                continue            # a damaged or foreign entry: export again
        return None

    def store_netlist(self, name: str, fields: dict, text: str) -> None:
        sha = _sha(text)
        blob = self.root / "netlists" / f"{sha}.il"
        if not blob.is_file():
            atomic_write_text(blob, text)
        d = self._export_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        key = _sha(json.dumps(fields, sort_keys=True))[:32]
        atomic_write_text(d / f"{key}.json",
                          json.dumps({"fields": fields, "sha256": sha}, sort_keys=True))

    # synthesis results
    def synth_path(self, key: str) -> Path:
        return self.root / "synth" / f"{key}.json"

    def log_path(self, key: str) -> Path:
        return self.root / "synth" / f"{key}.yosys.log"

    def lock(self, key: str) -> FileLock:
        return FileLock(str(self.root / "synth" / f"{key}.lock"))

    def load(self, key: str) -> dict | None:
        try:
            return json.loads(self.synth_path(key).read_text())
        except (OSError, ValueError):
            return None

    def store(self, key: str, result: dict) -> None:
        atomic_write_text(self.synth_path(key), json.dumps(result, sort_keys=True))


# -- one yosys run -----------------------------------------------------------------------

Progress = Callable[[str], None]


def _parse_stat(path: Path, top: str) -> dict:
    stat = json.loads(path.read_text())
    return stat["modules"][f"\\{top}"]


def _wait(proc: subprocess.Popen, t0: float, timeout_s: float, progress: Progress | None,
          what: str) -> tuple[int, float]:
    """Wait for ``proc`` (started at ``t0``), saying every 30 s how long it has
    run; kill it past ``timeout_s`` (raising ``TimeoutExpired``).  Returns its
    exit code and the CPU seconds it and its children (``yosys-abc``) used."""
    next_beat = 30.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        elapsed = time.monotonic() - t0
        if elapsed >= timeout_s:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        if elapsed >= next_beat:
            if progress is not None:
                progress(f"  {what}: {elapsed:.0f} s so far")
            next_beat += 30.0
        time.sleep(min(0.2, max(0.01, timeout_s - elapsed)))


def run_yosys(text: str, top: str, log: Path, timeout_s: int,
              progress: Progress | None = None, what: str = "") -> dict:
    """Synthesize the RTLIL netlist ``text`` (module ``top``) with :data:`YOSYS_SCRIPT`;
    the log goes to ``log``, which a failure names.  Returns the cell counts
    by type (``cell_types``: logic cells only), ``cells``, ``transistors_logic``,
    ``memories_yosys`` and ``memory_bits_yosys`` (the memories as written in
    the netlist), ``seconds`` (wall) and ``cpu_seconds``."""
    yosys = require("yosys", "yosys")
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spikeloop-area-") as tmp:
        wd = Path(tmp)
        src, mems, stat = wd / f"{top}.il", wd / "mems.json", wd / "stat.json"
        src.write_text(text)
        script = "; ".join(YOSYS_SCRIPT).format(netlist=src, top=top, mems=mems, stat=stat)
        t0 = time.monotonic()
        with open(wd / "stderr.txt", "w+") as err:
            proc = subprocess.Popen([yosys, "-q", "-l", str(log), "-p", script],
                                    stdout=subprocess.DEVNULL, stderr=err)
            try:
                rc, cpu = _wait(proc, t0, timeout_s, progress, what or top)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"yosys took more than {timeout_s} s on {top}; "
                                   f"log: {log}") from None
            err.seek(0)
            stderr = err.read()
        seconds = time.monotonic() - t0
        if rc:
            raise RuntimeError(f"yosys failed on {top} (exit {rc}); log: {log}\n"
                               + stderr[-2000:])
        before = _parse_stat(mems, top)
        after = _parse_stat(stat, top)
    types = {t: int(n) for t, n in after["num_cells_by_type"].items()
             if t != "$mem_v2" and not t.startswith(STUB_PREFIX)}
    return {
        "cells": sum(types.values()),
        "cell_types": dict(sorted(types.items())),
        "transistors_logic": sum(cell_transistors(t) * n for t, n in types.items()),
        "memories_yosys": int(before["num_memories"]),
        "memory_bits_yosys": int(before["num_memory_bits"]),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
    }


# -- the estimate ----------------------------------------------------------------------------

METHOD = ("yosys {yosys}: each component synthesized once per distinct netlist "
          "(synth without memory, fsm and share passes; techmap; abc -fast) and "
          "multiplied by its "
          "instance count; logic transistors from a per-cell table covering every "
          "gate and flip-flop type; memories counted from the ChipConfig, SRAM at "
          f"{SRAM_TRANSISTORS_PER_BIT} transistors per bit (periphery not counted), "
          "flip-flop storage inside the logic figure; docs/area.md")


def method() -> str:
    """How the estimate is made, in one line (with the yosys version)."""
    return METHOD.format(yosys=yosys_version())


def estimate(cfg: ChipConfig, names: Iterable[str] | None = None, *,
             cache_dir: Path | None = None, jobs: int = 1, timeout_s: int = 1800,
             log_dir: Path | None = None, progress: Progress | None = None) -> dict:
    """The area of ``cfg``: per component (one instance and all instances) and in
    total; ``names`` restricts it to some components (default: all of
    :data:`AREA_COMPONENTS`; the total is over those).

    ``cache_dir``: an :class:`AreaCache` directory (``None``: no cache, every
    component exported and synthesized afresh).  ``jobs``: yosys runs at a
    time.  ``timeout_s``: the limit of one yosys run.  ``log_dir``: where the
    yosys logs go (default: beside the cache entries; without a cache a
    temporary directory, removed after a success: a failure names its log,
    which is kept).  ``progress``: called
    with one line per step (export, each synthesis with its elapsed time)."""
    names = list(names) if names is not None else list(AREA_COMPONENTS)
    for n in names:
        if n not in AREA_COMPONENTS:
            raise ValueError(f"unknown area component {n!r}; allowed: "
                             f"{', '.join(AREA_COMPONENTS)}")
    if timeout_s < 1:
        raise ValueError(f"timeout_s = {timeout_s}; allowed: an integer >= 1 (seconds)")
    if jobs < 1:
        raise ValueError(f"jobs = {jobs}; allowed: an integer >= 1")
    say = progress or (lambda _msg: None)
    cache = AreaCache(cache_dir) if cache_dir is not None else None
    logs = Path(log_dir) if log_dir is not None else None
    if cache is None and logs is None:
        logs = Path(tempfile.mkdtemp(prefix="spikeloop-area-logs-"))
        temporary_logs = logs       # removed after a success; a failure names its log there
    else:
        temporary_logs = None
    counts = instances(cfg)
    mems = memories(cfg)
    t0 = time.monotonic()

    # 1. the netlist of each component (remembered in the cache), costliest first;
    # 2. one yosys run per distinct netlist not in the cache, started as soon as
    #    its netlist is there (the exports of the others overlap the runs)
    results: dict[str, dict] = {}      # synthesis key -> yosys result
    keys: dict[str, str] = {}
    exported = 0
    futures = []

    def synthesize(key: str, n: str, text: str) -> tuple[str, dict, bool]:
        top = module_name(n)
        log = (logs / f"{top}.yosys.log") if logs is not None else cache.log_path(key)
        what = f"yosys {n}"
        if cache is not None:
            with cache.lock(key):
                hit = cache.load(key)           # another worker may have made it meanwhile
                if hit is not None:
                    return key, hit, False
                say(f"{what} (preset {cfg.name}) ...")
                r = run_yosys(text, top, log, timeout_s, say, what)
                cache.store(key, r)
        else:
            say(f"{what} (preset {cfg.name}) ...")
            r = run_yosys(text, top, log, timeout_s, say, what)
        say(f"  {what}: done in {r['seconds']:.1f} s ({r['cpu_seconds']:.1f} s CPU), "
            f"{r['cells']} cells")
        return key, r, True

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            for n in sorted(names, key=COST_ORDER.index):
                text = cache.find_netlist(n, cfg) if cache is not None else None
                if text is None:
                    t1 = time.monotonic()
                    say(f"exporting the netlist of {n} ...")
                    text, fields = _export_recording(n, cfg)
                    exported += 1
                    say(f"  exporting {n}: done in {time.monotonic() - t1:.1f} s")
                    if cache is not None:
                        cache.store_netlist(n, fields, text)
                keys[n] = key = synth_key(text)
                if key in results or any(f.key == key for f in futures):
                    continue
                hit = cache.load(key) if cache is not None else None
                if hit is not None:
                    results[key] = hit
                    continue
                future = pool.submit(synthesize, key, n, text)
                future.key = key
                futures.append(future)
            ran = 0
            for future in futures:
                key, r, fresh = future.result()
                results[key] = r
                ran += fresh
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    if temporary_logs is not None:
        shutil.rmtree(temporary_logs, ignore_errors=True)

    # 3. the figures
    comps = {}
    for n in names:
        r = results[keys[n]]
        own = [m for m in mems if m.component == n]
        sram = sum(m.bits for m in own if m.kind == "sram")
        ff = sum(m.bits for m in own if m.kind == "flipflop")
        k = counts[n]
        one = {
            "cells": r["cells"],
            "cell_types": r["cell_types"],
            "transistors_logic": r["transistors_logic"],
            "memories": {m.name: {"words": m.words, "width": m.width, "bits": m.bits,
                                  "kind": m.kind} for m in own},
            "memory_bits": sram + ff,
            "sram_bits": sram,
            "flipflop_bits": ff,
            "memory_bits_yosys": r["memory_bits_yosys"],
            "transistors_sram": sram * SRAM_TRANSISTORS_PER_BIT,
        }
        one["transistors_total"] = one["transistors_logic"] + one["transistors_sram"]
        comps[n] = {"instances": k, **one, "all_instances": {
            key: one[key] * k for key in ("cells", "memory_bits", "sram_bits", "flipflop_bits",
                                          "transistors_logic", "transistors_sram",
                                          "transistors_total")}}
    totals = {key: sum(c["all_instances"][key] for c in comps.values())
              for key in ("cells", "memory_bits", "sram_bits", "flipflop_bits",
                          "transistors_logic", "transistors_sram", "transistors_total")}
    return {
        "preset": cfg.name,
        "config": cfg.to_dict(),
        "method": method(),
        "components": comps,
        "total": totals,
        "run": {"exported": exported, "synthesized": ran,
                "cached": len(set(keys.values())) - ran if cache is not None else 0,
                "seconds": round(time.monotonic() - t0, 2),
                "cache_dir": str(cache.root) if cache is not None else None},
    }


def flat_metrics(result: dict) -> dict:
    """The flat ``area.*`` metrics of an :func:`estimate` result (JSON-able):
    ``area.<quantity>_total`` and ``area.<quantity>.<component>`` (all instances
    of it) for cells, memory_bits, sram_bits, flipflop_bits, transistors,
    transistors_logic and transistors_sram; ``area.instances.<component>``;
    ``area.method``."""
    out: dict = {}
    quantities = {"cells": "cells", "memory_bits": "memory_bits", "sram_bits": "sram_bits",
                  "flipflop_bits": "flipflop_bits", "transistors": "transistors_total",
                  "transistors_logic": "transistors_logic",
                  "transistors_sram": "transistors_sram"}
    for q, key in quantities.items():
        out[f"area.{q}_total"] = result["total"][key]
        for n, c in result["components"].items():
            out[f"area.{q}.{n}"] = c["all_instances"][key]
    for n, c in result["components"].items():
        out[f"area.instances.{n}"] = c["instances"]
    out["area.method"] = result["method"]
    return out


def format_table(result: dict) -> str:
    """A markdown table of an :func:`estimate` result: per component its
    instances and the figures of all instances, then the total."""
    cols = ("instances", "cells", "sram_bits", "flipflop_bits", "transistors_logic",
            "transistors_sram", "transistors_total")
    head = ("component", "instances", "cells", "SRAM bits", "flip-flop bits",
            "transistors, logic", "transistors, SRAM", "transistors")
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for n, c in result["components"].items():
        row = [c["instances"]] + [c["all_instances"][k] for k in cols[1:]]
        lines.append(f"| {n} | " + " | ".join(f"{v:,}" for v in row) + " |")
    t = result["total"]
    lines.append("| **total** | | " + " | ".join(f"**{t[k]:,}**" for k in cols[1:]) + " |")
    return "\n".join(lines)
