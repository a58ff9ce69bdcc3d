"""Functional coverage of the chip's digital blocks (cocotb-coverage).

One coverage model per block, written once: each block names the signals of
its own RTL instance it looks at (ports and named internal signals, by their
names in the elaborated design, which are also their names in the exported
Verilog) and classifies one cycle's values into the bins of its cover points.
Two samplers feed the same model:

- the amaranth.sim tests (``tests/simutil.py``): with ``SPIKELOOP_FCOV=DIR``
  every simulated design is sampled every cycle, and each test process writes
  its database into ``DIR`` when it exits;
- the co-simulation (``cosim/monitor.py``): with the same variable the cocotb
  monitor records the same signals of every block instance of the top level,
  cycle by cycle, into the run directory; :func:`sample_traces` replays those
  records through the model.

A block describes one RTL class; where a chip variant changes the class's
behaviour, each variant has a block of its own (``applies``), and an instance is
sampled by the block of its chip's variant only: the ADC control's buffer
(``adc``) and its ring (``adc_ring``, ``ChipConfig.adc_ring``).

:func:`report` merges every database of a directory (cocotb-coverage's XML
export and ``merge_coverage``), prints one row per block (bins hit / bins
defined / waived) and lists every bin that is neither hit nor waived; it fails
(exit 1) when there is one.  Every waiver is in :data:`WAIVERS`, with its
reason.

    python -m spikeloop.verify.fcov report build/fcov
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cocotb_coverage.coverage import CoverCross, CoverPoint, coverage_db, merge_coverage

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import FULL, MINI, ChipConfig
from spikeloop.base.isa import BY_FUNCT, BY_OPCODE, ISA, OP_VALU, field_get
from spikeloop.base.layouts import timed_event_format
from spikeloop.base.settings import Command, option, tool_main
from spikeloop.verify.table import text_table

#: the environment variable that turns sampling on: the directory of the databases
ENV_FCOV = "SPIKELOOP_FCOV"
ROOT = "chip"


# -- helpers ----------------------------------------------------------------------

def _popcount(x: int) -> int:
    return bin(x).count("1")


def _amount(n: int, full: int) -> str:
    """'0', '1', 'some' or 'all' of ``full``."""
    if n == 0:
        return "0"
    if n == full:
        return "all"
    return "1" if n == 1 else "some"


def _fill(level: int, depth: int) -> str:
    if level == 0:
        return "empty"
    return "full" if level >= depth else "partial"


def _counter(value: int, bits: int) -> str:
    if value == 0:
        return "zero"
    return "saturated" if value == (1 << bits) - 1 else "counting"


def _field(packed: int, index: int, bits: int) -> int:
    return (packed >> (index * bits)) & ((1 << bits) - 1)


def _setting(value: int, bits: int) -> str:
    """A configuration value against its range: '0', '1', 'mid', 'max'."""
    top = (1 << bits) - 1
    if value == 0:
        return "0"
    if value == top:
        return "max"
    return "1" if value == 1 else "mid"


# -- the model --------------------------------------------------------------------

@dataclass
class Block:
    """One block's coverage: its cover points (name -> bins), crosses (name ->
    the points crossed, cross bins to ignore), the signals it reads and the
    classification of one cycle (``classify(cfg, values, state) -> list of samples``,
    each sample a dict point -> bin or None)."""
    name: str
    rtl_class: str
    points: dict[str, list]
    signals: Callable[[ChipConfig], list[str]]
    classify: Callable[[ChipConfig, dict, dict], list[dict]]
    crosses: dict[str, tuple[tuple[str, ...], list]] = field(default_factory=dict)
    #: the chip variants this block describes (an RTL class whose variants differ
    #: in behaviour has one block per variant; the others' instances are not sampled)
    applies: Callable[[ChipConfig], bool] = lambda cfg: True
    sampler: Callable | None = None

    def samples(self, cfg: ChipConfig, values: dict, state: dict) -> list[dict]:
        """The samples of one cycle; none for a chip variant the block does not describe."""
        return self.classify(cfg, values, state) if self.applies(cfg) else []

    def build(self) -> None:
        """Register the cover points in cocotb-coverage's database."""
        def sample(s):
            return None
        base = f"{ROOT}.{self.name}"
        points = [CoverPoint(f"{base}.{name}", xf=(lambda s, k=name: s.get(k)),
                             bins=list(bins)) for name, bins in self.points.items()]
        crosses = [CoverCross(f"{base}.{name}", items=[f"{base}.{i}" for i in items],
                              ign_bins=ignore) for name, (items, ignore) in self.crosses.items()]
        # the crosses wrap the function innermost: they run after the points sampled
        for c in crosses + points:
            sample = c(sample)
        self.sampler = sample


BLOCKS: dict[str, Block] = {}


def block(name, rtl_class, points, signals, crosses=None, applies=None):
    def register(classify):
        b = Block(name, rtl_class, points, signals, classify, crosses or {})
        if applies is not None:
            b.applies = applies
        BLOCKS[name] = b
        return classify
    return register


AMOUNT = ["0", "1", "some", "all"]
FILL = ["empty", "partial", "full"]
COUNTER = ["zero", "counting", "saturated"]
SETTING = ["0", "1", "mid", "max"]


# arbiter -------------------------------------------------------------------------

@block("arbiter", "SpikeArbiter", {
    "requests": AMOUNT,                       # neurons spiking in one cycle
    "fifo": FILL,                             # output FIFO occupancy
    "grant": ["none", "first", "middle", "last"],   # which neuron is granted
    "contended": ["alone", "others pending"],  # a grant while other neurons wait
    "drop": ["none", "drop"],
    "drops": COUNTER,
    "output": ["idle", "transfer", "stall"],
    "clear": ["busy clear"],                  # a clear with spikes pending or queued
}, lambda cfg: ["spikes", "pending", "granted", "dropped", "drops", "clear",
                "events__valid", "events__ready", "fifo.level"],
    crosses={"fifo_x_drop": (("fifo", "drop"), [("empty", "drop")]),
             "requests_x_fifo": (("requests", "fifo"), [])})
def _arbiter(cfg, v, st):
    p = cfg.neurons_per_block
    g = v["granted"]
    if g == 0:
        grant = "none"
    else:
        j = g.bit_length() - 1
        grant = "first" if j == 0 else "last" if j == p - 1 else "middle"
    return [{
        "requests": _amount(_popcount(v["spikes"]), p),
        "fifo": _fill(v["fifo.level"], cfg.arbiter_fifo_depth),
        "grant": grant,
        "contended": None if g == 0 else
        ("others pending" if v["pending"] & ~g else "alone"),
        "drop": "drop" if v["dropped"] else "none",
        "drops": _counter(v["drops"], cfg.counter_bits),
        "output": ("transfer" if v["events__ready"] else "stall") if v["events__valid"]
        else "idle",
        "clear": "busy clear" if v["clear"] and (v["pending"] or v["fifo.level"]) else None,
    }]


# crossbar ------------------------------------------------------------------------

XBAR_CLASS = ["block>bus", "block>host", "ext>bus", "ext>host"]


def _xbar_signals(cfg):
    names = ["clear", "enable", "event_count", "drop_count"]
    for i in range(cfg.crossbar_inputs):
        names += [f"inputs__{i}__valid"]
        for o in range(cfg.crossbar_outputs):
            names += [f"n{i}_{o}_take", f"n{i}_{o}_level"]
    for o in range(cfg.crossbar_outputs):
        names += [f"outputs__{o}__valid", f"outputs__{o}__ready"]
    return names


@block("crossbar", "Crossbar", {
    "node": XBAR_CLASS,                       # the class of the node sampled
    "match": ["hit", "miss", "disabled"],     # a valid input event at this node
    "fifo": FILL,
    "event": ["queued", "dropped"],
    "events": COUNTER,                        # the node's event counter
    "drops": COUNTER,                         # the node's drop counter
    "fanout": ["none", "unicast", "multicast", "broadcast"],  # nodes taking one event
    "output": ["idle", "transfer", "held", "contended"],
}, _xbar_signals, crosses={
    "node_x_match": (("node", "match"), []),
    "node_x_event": (("node", "event"), []),
    "node_x_fifo": (("node", "fifo"), []),
})
def _crossbar(cfg, v, st):
    n_in, n_out = cfg.crossbar_inputs, cfg.crossbar_outputs
    depth, cb = cfg.crossbar_fifo_depth, cfg.counter_bits
    out = []
    for i in range(n_in):
        valid = v[f"inputs__{i}__valid"]
        takers = 0
        for o in range(n_out):
            n = i * n_out + o
            level = v[f"n{i}_{o}_level"]
            take = v[f"n{i}_{o}_take"]
            takers += take
            ec, dc = _field(v["event_count"], n, cb), _field(v["drop_count"], n, cb)
            if not (valid or level or ec or dc):
                continue
            cls = ("block" if i < cfg.n_blocks else "ext") + ">" + \
                ("bus" if o < cfg.n_buses else "host")
            enabled = (v["enable"] >> n) & 1
            out.append({
                "node": cls,
                "match": None if not valid else "hit" if take else
                "miss" if enabled else "disabled",
                "fifo": _fill(level, depth),
                "event": None if not take else "dropped" if level >= depth else "queued",
                "events": _counter(ec, cb), "drops": _counter(dc, cb),
            })
        if valid:
            out.append({"fanout": "none" if takers == 0 else "unicast" if takers == 1 else
                        "broadcast" if takers == n_out else "multicast"})
    for o in range(n_out):
        req = sum(1 for i in range(n_in) if v[f"n{i}_{o}_level"])
        if not v[f"outputs__{o}__valid"]:
            state = "idle"
        elif not v[f"outputs__{o}__ready"]:
            state = "held"
        else:
            state = "contended" if req > 1 else "transfer"
        out.append({"output": state})
    return out


# synapse drivers -----------------------------------------------------------------

def _drv_signals(cfg):
    names = ["clear"]
    for b in range(cfg.buses_per_half):
        names += [f"buses__{b}__valid", f"buses__{b}__ready", f"match_{b}",
                  f"pending_{b}", f"unmatched__{b}"]
    return names


@block("drivers", "SynapseDrivers", {
    "row_select": ["miss", "one driver", "several drivers"],  # drivers matching an event
    "serialise": ["first row", "continued"],  # rows of a multi-driver event, cycle by cycle
    "backpressure": ["ready", "stall"],
    "unmatched": COUNTER,
}, _drv_signals, crosses={"select_x_backpressure": (("row_select", "backpressure"),
                                                     [("miss", "stall"),
                                                      ("one driver", "stall")])})
def _drivers(cfg, v, st):
    out = []
    for b in range(cfg.buses_per_half):
        valid = v[f"buses__{b}__valid"]
        s = {"unmatched": _counter(v[f"unmatched__{b}"], cfg.counter_bits)}
        if valid:
            n = _popcount(v[f"match_{b}"])
            s["row_select"] = "miss" if n == 0 else "one driver" if n == 1 else \
                "several drivers"
            s["serialise"] = "continued" if v[f"pending_{b}"] else "first row"
            s["backpressure"] = "ready" if v[f"buses__{b}__ready"] else "stall"
        out.append(s)
    return out


# synapse memory: label match -----------------------------------------------------

def _syn_signals(cfg):
    names = ["host_we", "host_lost", "ppu_re", "ppu_we"]
    for p in range(2 * cfg.buses_per_half):
        names += [f"rows__{p}__active", f"weights__{p}"]
    return names


@block("synapses", "SynapseMemory", {
    # an activated row: columns whose synapse label matched (non-zero weight out)
    "label": ["no column", "some columns", "every column"],
    "rows_active": AMOUNT,                    # row ports active in one cycle
    "host": ["write", "write lost to the PPU"],
    "ppu": ["read", "write"],
}, _syn_signals)
def _synapses(cfg, v, st):
    ports = 2 * cfg.buses_per_half
    c, wb = cfg.columns_per_half, cfg.weight_bits
    out = []
    active = 0
    for p in range(ports):
        if v[f"rows__{p}__active"]:
            active += 1
            w = v[f"weights__{p}"]
            n = sum(1 for k in range(c) if _field(w, k, wb))
            out.append({"label": "no column" if n == 0 else "every column" if n == c
                        else "some columns"})
    s = {"rows_active": _amount(active, ports)}
    if v["host_we"]:
        s["host"] = "write lost to the PPU" if v["host_lost"] else "write"
    if v["ppu_we"]:
        s["ppu"] = "write"
    elif v["ppu_re"]:
        s["ppu"] = "read"
    out.append(s)
    return out


# neuron back end -----------------------------------------------------------------

@block("neurons", "NeuronBackend", {
    "refractory": SETTING,                    # the setting of a neuron whose spike is taken
    "prescale": list(range(1 << FULL.refractory_prescale_bits)),  # at an accepted spike
    "tick": ["tick", "between ticks"],         # an accepted spike against the prescaler
    "suppressed": ["refractory", "disabled"],  # a threshold crossing that is not taken
    "simultaneous": AMOUNT,                   # accepted spikes in one cycle
}, lambda cfg: ["spike_in", "enable", "refractory", "prescale", "refractory_active",
                "spike_out", "tick"],
    crosses={"refractory_x_tick": (("refractory", "tick"), [])})
def _neurons(cfg, v, st):
    n = cfg.n_neurons
    out = []
    taken = v["spike_out"]
    for i in range(n):
        if (taken >> i) & 1:
            out.append({"refractory": _setting(_field(v["refractory"], i,
                                                      cfg.refractory_bits),
                                               cfg.refractory_bits),
                        "prescale": v["prescale"],
                        "tick": "tick" if v["tick"] else "between ticks"})
    crossing = v["spike_in"]
    s = {"simultaneous": _amount(_popcount(taken), n)}
    if crossing & v["enable"] & v["refractory_active"]:
        s["suppressed"] = "refractory"
    elif crossing & ~v["enable"]:
        s["suppressed"] = "disabled"
    out.append(s)
    return out


# playback ------------------------------------------------------------------------

def _pb_signals(cfg):
    names = ["ptr", "count", "done", "late", "take", "time", "rd__data", "host_we"]
    for lk in range(cfg.n_ext_inputs):
        names += [f"links__{lk}__valid", f"links__{lk}__ready"]
    return names


@block("playback", "EventPlayback", {
    "entry": ["on time", "late"],             # an entry played
    "burst": ["single", "back to back"],      # entries played in consecutive cycles
    "backpressure": ["stall"],                # an entry due on a link that is not ready
    "memory": ["empty program", "partly used", "every entry played"],
    "late_counter": COUNTER,
    "host": ["write while idle", "write while playing"],
}, _pb_signals, crosses={"entry_x_burst": (("entry", "burst"), [])})
def _playback(cfg, v, st):
    links = range(cfg.n_ext_inputs)
    s = {"late_counter": _counter(v["late"], cfg.counter_bits)}
    if v["take"]:
        head_time = _entry_time(cfg, v["rd__data"])
        s["entry"] = "late" if v["time"] > head_time else "on time"
        s["burst"] = "back to back" if st.get("take_prev") else "single"
    st["take_prev"] = v["take"]
    if any(v[f"links__{lk}__valid"] and not v[f"links__{lk}__ready"] for lk in links):
        s["backpressure"] = "stall"
    count = min(v["count"], cfg.playback_depth)
    if v["done"]:
        s["memory"] = "empty program" if count == 0 else \
            "every entry played" if count == cfg.playback_depth else "partly used"
    if v["host_we"]:
        s["host"] = "write while idle" if v["done"] else "write while playing"
    return [s]


def _entry_time(cfg, word: int) -> int:
    """The ``time`` field of a packed playback entry (timed_event_layout)."""
    f = timed_event_format(cfg, cfg.n_ext_inputs)["time"]
    return (word >> f.offset) & f.mask


# recorder ------------------------------------------------------------------------

def _rec_signals(cfg):
    names = ["count", "drops", "clear"]
    for lk in range(cfg.n_host_links):
        names += [f"links__{lk}__valid", f"links__{lk}__ready"]
    return names


@block("recorder", "EventRecorder", {
    "links": ["one link", "several links"],   # links offering an event in one cycle
    "memory": FILL,                           # at an event taken
    "event": ["recorded", "overflow"],
    "drops": COUNTER,
}, _rec_signals, crosses={"links_x_event": (("links", "event"), [])})
def _recorder(cfg, v, st):
    n = sum(v[f"links__{lk}__valid"] for lk in range(cfg.n_host_links))
    s = {"drops": _counter(v["drops"], cfg.counter_bits)}
    if n and not v["clear"]:
        full = v["count"] >= cfg.record_depth
        s.update(links="one link" if n == 1 else "several links",
                 memory=_fill(v["count"], cfg.record_depth),
                 event="overflow" if full else "recorded")
    return [s]


# ADC control ---------------------------------------------------------------------

@block("adc", "AdcControl", {
    "period": SETTING,                        # at a sample ('0': the sampler is off)
    "buffer": FILL,                           # at a sample
    "sample": ["stored", "overflow"],
    "refill": ["overwrite after clear"],      # a sample into an entry of an earlier run
    "host_read": ["taken sample", "not yet taken", "out of range"],
    "ppu_read": ["taken sample", "not yet taken"],
    "overflow": COUNTER,
}, lambda cfg: ["period", "sample", "n_samples", "overflow", "host_addr", "ppu_re",
                "ppu_addr", "clear"],
    crosses={"period_x_buffer": (("period", "buffer"), [("0", None)])},
    # the buffer filled from entry 0 (the presets'); the ring is the block adc_ring
    applies=lambda cfg: not cfg.adc_ring)
def _adc(cfg, v, st):
    n, depth = cfg.n_neurons, cfg.adc_buffer_depth
    s = {"overflow": _counter(v["overflow"], cfg.counter_bits)}
    if v["clear"]:
        st["written"] = max(st.get("written", 0), v["n_samples"])
    if v["sample"]:
        full = v["n_samples"] >= depth
        s.update(period=_setting(v["period"], cfg.adc_period_bits),
                 buffer=_fill(v["n_samples"], depth),
                 sample="overflow" if full else "stored")
        if not full and v["n_samples"] < st.get("written", 0):
            s["refill"] = "overwrite after clear"
    elif v["period"] == 0:
        s["period"] = "0"
    addr = v["host_addr"]
    if addr != st.get("host_addr_prev", 0):   # a new address: the host reads it
        s["host_read"] = "out of range" if addr >= depth * n else \
            "taken sample" if addr // n < v["n_samples"] else "not yet taken"
    st["host_addr_prev"] = addr
    if v["ppu_re"] and v["ppu_addr"] < depth:
        s["ppu_read"] = "taken sample" if v["ppu_addr"] < v["n_samples"] else "not yet taken"
    return [s]


# ADC control, the ring (cfg.adc_ring) ----------------------------------------------
# Sample i of a run (since the clear) goes to entry i % S; n_samples counts the
# samples taken, saturating at 2**counter_bits - 1, so it is the exact i only
# below that; a bin that a saturated count leaves undecided is not sampled.

#: what a host or PPU read of the ring finds in the entry it addresses
RING_ENTRY = ["taken sample", "rewritten entry", "not yet taken", "out of range"]


def _ring_entry(row: int, k: int, saturated: bool, depth: int) -> str | None:
    """What entry ``row`` (< S) holds after ``k`` samples of the run: 'not yet
    taken' (no sample of this run: k <= row), 'taken sample' (sample ``row``, the
    run's only sample there), 'rewritten entry' (a later sample ``row + j*S``: the
    wrap has overwritten sample ``row``).  ``saturated``: at least ``k`` samples."""
    if k > row + depth:
        return "rewritten entry"
    if saturated:
        return None
    return "taken sample" if k > row else "not yet taken"


@block("adc_ring", "AdcControl", {
    "period": SETTING,                        # at a sample ('0': the sampler is off)
    "write": ["fresh entry", "wrap"],         # at a sample: i < S, or over sample i - S
    "count": COUNTER,                         # n_samples at a sample ('zero': the run's first)
    "refill": ["overwrite after clear"],      # a fresh entry holding a sample of a run before
    "host_read": RING_ENTRY,                  # the entry a new host address reads
    "ppu_read": RING_ENTRY,
    "read_during_write": ["host", "ppu"],     # a read of the entry written in that cycle
}, lambda cfg: ["period", "sample", "n_samples", "host_addr", "ppu_re", "ppu_addr",
                "clear"],
    crosses={"write_x_count": (("write", "count"),
                               [("wrap", "zero"), ("fresh entry", "saturated")])},
    applies=lambda cfg: cfg.adc_ring)
def _adc_ring(cfg, v, st):
    n, depth = cfg.n_neurons, cfg.adc_buffer_depth
    top = (1 << cfg.counter_bits) - 1
    k = v["n_samples"]
    sat = k == top
    # the entry a sample of this cycle writes (unknown once the count saturated)
    entry = None if sat else k % depth
    s, out = {}, []
    if v["clear"]:
        # entries holding a sample of a run before the next one (at least these)
        st["written"] = max(st.get("written", 0), min(k, depth))
    if v["sample"]:
        write = "wrap" if k >= depth else None if sat else "fresh entry"
        s.update(period=_setting(v["period"], cfg.adc_period_bits), write=write,
                 count=_counter(k, cfg.counter_bits))
        if write == "fresh entry" and k < st.get("written", 0):
            s["refill"] = "overwrite after clear"
    elif v["period"] == 0:
        s["period"] = "0"
    written = entry if v["sample"] else None
    addr = v["host_addr"]
    if addr != st.get("host_addr_prev", 0):   # a new address: the host reads it
        row = addr // n
        s["host_read"] = "out of range" if addr >= depth * n else \
            _ring_entry(row, k, sat, depth)
        if row == written:
            out.append({"read_during_write": "host"})
    st["host_addr_prev"] = addr
    if v["ppu_re"]:
        a = v["ppu_addr"]
        s["ppu_read"] = "out of range" if a >= depth else _ring_entry(a, k, sat, depth)
        if a == written:
            out.append({"read_during_write": "ppu"})
    return [s] + out


# host bus ------------------------------------------------------------------------

def _regions() -> list[str]:
    names = []
    for cfg in (FULL, MINI):
        for r in AddressMap(cfg).regions.values():
            if r.name not in names:
                names.append(r.name)
    return names


REGIONS = _regions()


@block("hostbus", "HostBus", {
    "region": REGIONS,
    "access": ["read", "write"],
    "unmapped": ["read", "write"],
    "bad_access": COUNTER,
}, lambda cfg: ["addr", "we", "re", "bad_access"]
    + [f"in_{r}" for r in AddressMap(cfg).regions],
    crosses={"region_x_access": (("region", "access"), [])})
def _hostbus(cfg, v, st):
    s = {"bad_access": _counter(v["bad_access"], cfg.counter_bits)}
    if not (v["we"] or v["re"]):
        return [s]
    hit = [r for r in AddressMap(cfg).regions if v[f"in_{r}"]]
    op = "write" if v["we"] else "read"
    if hit:
        s.update(region=hit[0], access=op)
    else:
        s["unmapped"] = op
    return [s]


# the top level: neuron merging and interactions across blocks --------------------

def _top_signals(cfg):
    names = []
    if cfg.n_halves == 2:
        names.append("neuron_merge")
    names += [f"arbiter{k}.fifo.level" for k in range(cfg.n_blocks)]
    names += [f"crossbar.n{i}_{o}_level" for i in range(cfg.crossbar_inputs)
              for o in range(cfg.crossbar_outputs)]
    return names


@block("chip", "Top", {
    "merge": ["none", "some columns", "every column"],
    "arbiter_fifo": ["not full", "full"],
    "crossbar_fifo": ["not full", "full"],
}, _top_signals, crosses={"arbiter_x_crossbar": (("arbiter_fifo", "crossbar_fifo"), [])})
def _chip(cfg, v, st):
    s = {}
    if "neuron_merge" in v:
        m, c = v["neuron_merge"], cfg.columns_per_half
        s["merge"] = "none" if m == 0 else "every column" if m == (1 << c) - 1 else \
            "some columns"
    a_full = any(v[f"arbiter{k}.fifo.level"] >= cfg.arbiter_fifo_depth
                 for k in range(cfg.n_blocks))
    x_full = any(v[f"crossbar.n{i}_{o}_level"] >= cfg.crossbar_fifo_depth
                 for i in range(cfg.crossbar_inputs) for o in range(cfg.crossbar_outputs))
    s["arbiter_fifo"] = "full" if a_full else "not full"
    s["crossbar_fifo"] = "full" if x_full else "not full"
    return [s]


# PPU -----------------------------------------------------------------------------

MNEMONICS = [i.mnemonic for i in ISA]
SATURATING = ("vadds", "vsubs", "vaddu", "vsubu", "vmul", "vmulu")


def _mnemonic(word: int) -> str | None:
    op = field_get(word, "op")
    if op == OP_VALU:
        ins = BY_FUNCT.get(field_get(word, "funct"))
    else:
        ins = BY_OPCODE.get(op)
    return ins.mnemonic if ins else None


def _sat_s(x, w):
    return min(max(x, -(1 << (w - 1))), (1 << (w - 1)) - 1)


def _sat_u(x, w):
    return min(max(x, 0), (1 << w) - 1)


def saturates(mn: str, va: int, vb: int, size: int, sh: int, vbits: int) -> bool:
    """Whether any lane of ``mn`` on vector registers ``va``, ``vb`` saturates
    (the result differs from the exact value); docs/ppu.md."""
    w = 16 if size else 8
    for i in range(vbits // w):
        a, b = _field(va, i, w), _field(vb, i, w)
        sa = a - (1 << w) if a >> (w - 1) else a
        sb = b - (1 << w) if b >> (w - 1) else b
        exact, sat = {
            "vadds": (sa + sb, _sat_s), "vsubs": (sa - sb, _sat_s),
            "vaddu": (a + b, _sat_u), "vsubu": (a - b, _sat_u),
            "vmul": ((sa * sb) >> sh, _sat_s), "vmulu": ((a * b) >> sh, _sat_u),
        }[mn]
        if sat(exact, w) != exact:
            return True
    return False


@block("ppu", "Ppu", {
    "opcode": MNEMONICS,                      # every instruction, executed (its last cycle)
    "undefined": ["undefined word"],          # an undefined instruction word executed
    "saturating_op": SATURATING,
    "saturation": ["saturates", "in range"],
    "lanes": ["8-bit", "16-bit"],             # vector ALU lane size
    "port": ["synapse read", "synapse write", "adc read", "neuron reset",
             "out transfer", "out stall"],
    "control": ["start", "halt", "stop", "stop abandons"],
}, lambda cfg: ["ins", "fire", "running", "defined", "halting", "phase", "two_cycle",
                "start", "stop", "vreg_b", "vreg_c", "syn__re", "syn__we", "adc__re",
                "nreset", "out__valid", "out__ready"],
    crosses={"saturation_x_op": (("saturating_op", "saturation"), [])})
def _ppu(cfg, v, st):
    out = []
    s = {}
    word = v["ins"]
    if v["fire"]:
        mn = _mnemonic(word)
        if mn is None or not v["defined"]:
            s["undefined"] = "undefined word"
        else:
            s["opcode"] = mn
            if field_get(word, "op") == OP_VALU:
                size = field_get(word, "size")
                s["lanes"] = "16-bit" if size else "8-bit"
                if mn in SATURATING:
                    sat = saturates(mn, v["vreg_b"], v["vreg_c"], size, field_get(word, "sh"),
                                    cfg.ppu_vector_bits)
                    out.append({"saturating_op": mn,
                                "saturation": "saturates" if sat else "in range"})
    if v["running"]:
        if v["syn__re"]:
            out.append({"port": "synapse read"})
        if v["syn__we"]:
            out.append({"port": "synapse write"})
        if v["adc__re"]:
            out.append({"port": "adc read"})
        if v["nreset"]:
            out.append({"port": "neuron reset"})
        if v["out__valid"]:
            out.append({"port": "out transfer" if v["out__ready"] else "out stall"})
        if v["stop"]:
            abandon = (v["two_cycle"] and not v["phase"]) or \
                (v["out__valid"] and not v["out__ready"])
            out.append({"control": "stop abandons" if abandon else "stop"})
        elif v["fire"] and v["halting"]:
            out.append({"control": "halt"})
    elif v["start"]:
        out.append({"control": "start"})
    out.append(s)
    return out


#: bins that no test reaches, with the reason; keys are "<block>.<point>.<bin>"
#: (a cross bin: "<block>.<cross>.<bin a>|<bin b>").
WAIVERS: dict[str, str] = {
}


for _b in BLOCKS.values():
    _b.build()


# -- sampling ----------------------------------------------------------------------

def sample(block_name: str, cfg: ChipConfig, values: dict, state: dict) -> None:
    """Sample one cycle of one instance of ``block_name`` (values: signal -> int)."""
    b = BLOCKS[block_name]
    for s in b.samples(cfg, values, state):
        b.sampler(s)


def block_of_class(class_name: str, cfg: ChipConfig) -> str | None:
    """The block that describes an instance of RTL class ``class_name`` on ``cfg``."""
    for b in BLOCKS.values():
        if b.rtl_class == class_name and b.applies(cfg):
            return b.name
    return None


def top_instances(cfg: ChipConfig) -> list[tuple[str, str]]:
    """(instance path below the top level, block) of every sampled block of the top."""
    inst = [("", "chip"), ("hostbus", "hostbus"), ("neurons", "neurons"),
            ("crossbar", "crossbar"), ("playback", "playback"), ("recorder", "recorder"),
            ("adc", block_of_class("AdcControl", cfg)), ("ppu", "ppu")]
    inst += [(f"arbiter{k}", "arbiter") for k in range(cfg.n_blocks)]
    for h in range(cfg.n_halves):
        inst += [(f"drivers{h}", "drivers"), (f"synapses{h}", "synapses")]
    return inst


def enabled() -> str | None:
    """The database directory when sampling is on ($SPIKELOOP_FCOV), else None."""
    return os.environ.get(ENV_FCOV) or None


def export(directory: str | os.PathLike, tag: str) -> Path | None:
    """Write this process's database into ``directory`` (atomically, a new file)."""
    if not any(coverage_db[f"{ROOT}.{b}"].coverage for b in BLOCKS):
        return None   # nothing sampled: no file
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".xml")
    os.close(fd)
    coverage_db.export_to_xml(filename=tmp)
    path = d / f"{tag}-{os.getpid()}-{os.urandom(4).hex()}.xml"
    os.replace(tmp, path)
    return path


def sample_traces(directory: str | os.PathLike) -> int:
    """Replay the co-simulation monitor's records (``*.fcov.jsonl``, cosim/monitor.py)
    under ``directory`` through the model; returns the cycles sampled."""
    cycles = 0
    for path in sorted(Path(directory).rglob("*.fcov.jsonl")):
        with open(path) as f:
            head = json.loads(f.readline())
            cfg = ChipConfig.from_dict(head["config"])
            names = head["signals"]
            states = {}
            values = [0] * len(names)
            for line in f:
                rec = json.loads(line)
                for i, x in rec["d"]:
                    values[i] = x
                for _ in range(rec.get("n", 1)):
                    _sample_top(cfg, names, values, states)
                    cycles += 1
    return cycles


#: the co-simulation monitor's variable (cosim/monitor.py: ENV_MONITOR)
ENV_MONITOR = "SPIKELOOP_FCOV_MONITOR"


def monitor_cosim(cfg: ChipConfig, trace_dir: str | os.PathLike) -> None:
    """Have every co-simulation of ``cfg`` started from this process (and its
    children) record the model's signals into ``trace_dir`` (cosim/monitor.py)."""
    d = Path(trace_dir)
    d.mkdir(parents=True, exist_ok=True)
    spec = d / "monitor.json"
    spec.write_text(json.dumps({"signals": top_signals(cfg), "config": cfg.to_dict(),
                                "out": str(d.resolve())}))
    os.environ[ENV_MONITOR] = str(spec.resolve())


def _sample_top(cfg, names, values, states):
    full = dict(zip(names, values, strict=True))
    for path, blk in top_instances(cfg):
        pre = f"{path}." if path else ""
        v = {s: full[pre + s] for s in BLOCKS[blk].signals(cfg)}
        sample(blk, cfg, v, states.setdefault(path, {}))


def top_signals(cfg: ChipConfig) -> list[str]:
    """Every signal path the co-simulation monitor records (relative to the top)."""
    names = []
    for path, blk in top_instances(cfg):
        pre = f"{path}." if path else ""
        names += [pre + s for s in BLOCKS[blk].signals(cfg) if pre + s not in names]
    return names


# -- the report ----------------------------------------------------------------------

@dataclass
class BlockResult:
    name: str
    defined: int
    hit: int
    waived: list[tuple[str, str]]
    missed: list[str]


def _bin_names(path: Path) -> set[str]:
    return {e.attrib["abs_name"] for e in ET.parse(path).getroot().iter() if "bin" in e.attrib}


def model_bins() -> set[str]:
    """The bins of the current model, as a database exported from it names them."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "model.xml"
        coverage_db.export_to_xml(filename=str(p))
        return _bin_names(p)


def merge(files: list[Path], out: Path) -> Path:
    """Merge cocotb-coverage XML databases into ``out`` (atomically).  Every
    database must have the bins of the current model (one written by another
    version of the model is refused: its bins would not line up)."""
    want = model_bins()
    for f in files:
        if _bin_names(f) != want:
            raise ValueError(f"{f}: written by a different version of the coverage model "
                             "(its bins differ); remove it and run its tests again")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if len(files) == 1:
        tmp.write_bytes(files[0].read_bytes())
    else:
        merge_coverage(lambda *a: None, str(tmp), *[str(f) for f in files])
    os.replace(tmp, out)
    return out


def results(merged: Path) -> list[BlockResult]:
    root = ET.parse(merged).getroot()
    by_name = {e.attrib.get("abs_name"): e for e in root.iter()}
    out = []
    for b in BLOCKS.values():
        items = list(b.points) + list(b.crosses)
        defined = hit = 0
        waived, missed = [], []
        for item in items:
            elem = by_name.get(f"top.{ROOT}.{b.name}.{item}")
            bins = ([(e.attrib["bin"], int(e.attrib["hits"])) for e in elem]
                    if elem is not None else [(str(x), 0) for x in _bins(b, item)])
            for label, hits in bins:
                defined += 1
                key = f"{b.name}.{item}.{_label(label)}"
                if hits:
                    hit += 1
                elif key in WAIVERS:
                    waived.append((key, WAIVERS[key]))
                else:
                    missed.append(key)
        out.append(BlockResult(b.name, defined, hit, waived, missed))
    return out


def bins_of(block_name: str) -> list[str]:
    """Every bin of a block as the report and :data:`WAIVERS` name it, without the
    block's name: '<point>.<bin>', a cross bin '<cross>.<bin a>|<bin b>'."""
    b = BLOCKS[block_name]
    return [f"{item}.{_label(str(x))}"
            for item in list(b.points) + list(b.crosses) for x in _bins(b, item)]


def _bins(b: Block, item: str) -> list:
    if item in b.points:
        return b.points[item]
    items, ignore = b.crosses[item]
    return [x for x in itertools.product(*(b.points[i] for i in items))
            if not any(all(g is None or g == y for g, y in zip(ig, x, strict=True))
                       for ig in ignore)]


def _label(text: str) -> str:
    """A bin as exported ('a' or "('a', 'b')") -> 'a' or 'a|b'."""
    t = text.strip()
    if t.startswith("(") and t.endswith(")"):
        parts = [p.strip().strip("'\"") for p in t[1:-1].split(",")]
        return "|".join(p for p in parts if p)
    return t


def table(res: list[BlockResult]) -> str:
    rows = [("block", "bins hit", "bins defined", "waived", "missed", "coverage")]
    for r in res:
        pct = 100.0 * (r.hit + len(r.waived)) / r.defined if r.defined else 100.0
        rows.append((r.name, str(r.hit), str(r.defined), str(len(r.waived)),
                     str(len(r.missed)), f"{pct:.1f} %"))
    tot = [sum(r.hit for r in res), sum(r.defined for r in res),
           sum(len(r.waived) for r in res), sum(len(r.missed) for r in res)]
    rows.append(("all", str(tot[0]), str(tot[1]), str(tot[2]), str(tot[3]),
                 f"{100.0 * (tot[0] + tot[2]) / tot[1]:.1f} %"))
    return text_table(rows)


@dataclass
class ReportSettings:
    """Merge the functional-coverage databases of a directory, print the table per
    block, fail when a bin is neither hit nor waived."""
    directory: str = option(help="directory of the databases (*.xml) that the tests and "
                                 "the co-simulation wrote", positional=True)
    traces: str = option(default="", help="also sample the co-simulation monitor's "
                                          "records (*.fcov.jsonl) under this directory")
    out: str = option(default="", help="merged database (default: DIRECTORY/merged/"
                                       "coverage.xml)")


def report(settings: ReportSettings) -> int:
    d = Path(settings.directory)
    if settings.traces:
        n = sample_traces(settings.traces)
        print(f"co-simulation monitor: {n} cycles sampled from {settings.traces}")
        export(d, "cosim")
    files = sorted(p for p in d.glob("*.xml"))
    if not files:
        print(f"{d}: no coverage databases (*.xml); run the tests with {ENV_FCOV}={d}",
              file=sys.stderr)
        return 2
    out = Path(settings.out) if settings.out else d / "merged" / "coverage.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    merge(files, out)
    res = results(out)
    print(f"functional coverage: {len(files)} databases merged into {out}")
    print(table(res))
    for r in res:
        for key, why in r.waived:
            print(f"waived {key}: {why}")
    missed = [m for r in res for m in r.missed]
    for m in missed:
        print(f"NOT HIT {m}")
    return 1 if missed else 0


COMMAND = Command(("report",), ReportSettings, report,
                  "merge the functional-coverage databases and print the table per block",
                  description=__doc__)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["report"]:
        args = args[1:]
    sys.exit(tool_main("python -m spikeloop.verify.fcov report", COMMAND, args))
