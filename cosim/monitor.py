"""cocotb monitors of the co-simulated chip: the synapse drivers' activations
(:func:`activation_counts`, part of every run's Observables; with every
activation listed, :class:`RowActivity`) and, for functional coverage, any set
of signals (:class:`Monitor`).

Driver activations per run: the co-simulated top level counts them itself
(its simulation instrumentation, port ``row_activations``: rtl/top.py), so no
Python runs in the cycles in between; :func:`activation_counts` reads them
once after a run.

Every activation (``row_events``, and on a chip with driver and synapse
mismatch, whose steps' sums the bridge takes from them): per half ``h`` and bus
``b`` the monitor reads the DUT's own signals of ``drivers<h>``
(rtl/synapse_drivers.py): ``rows__<2b>__active`` (the bus's activation in this
cycle: port ``2b`` drives the first row of the activated driver),
``rows__<2b>__row`` (``2 * driver``) and ``buses__<b>__payload`` (the event's
label), at the falling edge of each cycle in which one is active. It sleeps
while none is (a rising ``active`` wakes it), so an idle chip costs nothing.
The Verilator build makes these signals reachable (cosim/row_activity.vlt);
every other internal net stays Verilator's to optimise.

Functional coverage:

With ``SPIKELOOP_FCOV_MONITOR`` naming a JSON file ``{"signals": [...],
"config": {...}, "out": DIR}`` (written by spikeloop.verify.fcov, which knows
which signals its coverage model reads), :func:`start` samples those signals of
the DUT (paths below the top level, e.g. ``arbiter0.fifo.level``: the RTL's own
ports and named internal signals) in ``ReadOnly`` of every clock cycle, and
writes them to ``DIR/<pid>-<n>.fcov.jsonl``: a header line (signals, config),
then one line per run of cycles with the same values (``{"d": [[index, value],
...], "n": cycles}``: the values that changed, the cycles they held).  The
coverage model replays that file (``fcov.sample_traces``).  Without the
variable nothing is started and the co-simulation runs at its usual speed.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge

from spikeloop.base.config import ChipConfig
from spikeloop.base.protocol import ACTIVATION_BITS
from spikeloop.cosim.backend import ROW_ACTIVITY_VLT
from spikeloop.cosim.host import binstr, binstr_reader, unsigned_array_or_none

ENV_MONITOR = "SPIKELOOP_FCOV_MONITOR"
_files = itertools.count()


def row_signals(cfg: ChipConfig) -> list[tuple[int, int, str, str, str]]:
    """(half, bus, active, row, payload): the paths of the signals :class:`RowActivity` reads."""
    out = []
    for h in range(cfg.n_halves):
        for b in range(cfg.buses_per_half):
            d = f"drivers{h}"
            out.append((h, b, f"{d}.rows__{2 * b}__active", f"{d}.rows__{2 * b}__row",
                        f"{d}.buses__{b}__payload"))
    return out


class RowActivity:
    """The synapse drivers' activations of the DUT (see the module docstring).

    The engine calls :meth:`begin` right after the rising edge that starts a
    sample's running cycle 0 and :meth:`take` after the drain: per sample the
    activations per driver (half by half) and, with ``keep_events``, every
    activation as (cycle, half, driver, label), ``cycle`` counted from running
    cycle 0 on through the drain (``time`` must equal it while ``running``)."""

    def __init__(self, dut, cfg: ChipConfig, period_ps: int, *, keep_events: bool):
        self.cfg = cfg
        self.clk = dut.clk
        self.running, self.time = dut.running, dut.time
        self.period = period_ps
        self.keep = keep_events
        self.ports = []
        self.edges = []
        missing = []
        for h, b, *paths in row_signals(cfg):
            try:
                active, row, payload = (_handle(dut, p) for p in paths)
            except AttributeError:
                missing.append(paths[0])
                continue
            self.ports.append((h, b, binstr_reader(active), row, payload))
            self.edges.append(RisingEdge(active))
        if missing:
            raise RuntimeError(f"row-activity monitor: the DUT has no signal {missing[0]} "
                               f"(reachable through the VPI: {ROW_ACTIVITY_VLT.name})")
        self.t0 = None
        self._reset()
        self.task = cocotb.start_soon(self._run())

    def _reset(self) -> None:
        c = self.cfg
        self.counts = [[0] * c.drivers_per_half for _ in range(c.n_halves)]
        self.events: list[tuple[int, int, int, int]] = []

    def begin(self) -> None:
        """A sample's running cycle 0 starts now (right after its rising edge)."""
        self.t0 = get_sim_time("ps")
        self._reset()

    def take(self) -> tuple[list[int], list[tuple[int, int, int, int]]]:
        """The sample's activations per driver (flat, half by half) and its events."""
        out = [a for h in self.counts for a in h], self.events
        self.t0 = None
        self._reset()
        return out

    def stop(self) -> None:
        self.task.cancel()

    def _sample(self, check_time: bool) -> bool:
        """Count this cycle's activations (at its falling edge); whether there were any.
        ``check_time``: compare the monitor's cycle with the DUT's ``time`` (in the
        first cycle of each burst of activity: within a burst both advance by one
        per clock edge)."""
        # (a 1-bit flag: "1", where X or Z before reset reads as not active)
        hits = [(h, b, row, payload) for h, b, active, row, payload in self.ports
                if active() == "1"]
        if not hits or self.t0 is None:
            return bool(hits)
        cycle = (get_sim_time("ps") - self.t0) // self.period
        if cycle < 0:
            return True
        if check_time and _int(self.running) and _int(self.time) != cycle:
            raise AssertionError(f"row-activity monitor: time = {_int(self.time)} in the "
                                 f"monitor's cycle {cycle} of the run")
        for h, _b, row, payload in hits:
            d = _int(row) // 2
            self.counts[h][d] += 1
            if self.keep:
                self.events.append((cycle, h, d, _int(payload)))
        return True

    async def _run(self) -> None:
        while True:
            await First(*self.edges)
            check = True
            # one trigger a cycle: at the falling edge the values of the rising
            # edge before have settled (the design is clocked on rising edges
            # alone, and the testbench drives its inputs at rising edges)
            await FallingEdge(self.clk)
            while self._sample(check):
                check = False
                await FallingEdge(self.clk)


def activation_counts(dut, cfg: ChipConfig) -> list[int]:
    """The top level's ``row_activations`` counters (flat: half by half, driver
    by driver, as :meth:`RowActivity.take`), read once after a run; an X/Z bit
    or a saturated counter is an error (no count is silently wrong)."""
    n = cfg.n_halves * cfg.drivers_per_half
    counts = unsigned_array_or_none(dut.row_activations, ACTIVATION_BITS, n)
    if counts is None:
        raise AssertionError(f"row_activations is {dut.row_activations.value} (X/Z bits)")
    full = (1 << ACTIVATION_BITS) - 1
    if (counts == full).any():
        d = int(np.flatnonzero(counts == full)[0])
        raise AssertionError(f"row_activations[{d}] saturated at {full}: the run's "
                             "activations of that driver are not known")
    return counts.tolist()


def _handle(dut, path: str):
    h = dut
    for part in path.split("."):
        h = getattr(h, part)
    return h


#: X or Z bits (before reset) as 0, like amaranth.sim's reset; weak levels as strong
_AS_BITS = str.maketrans("xXzZuUwW-LH", "00000000001")


def _int(handle) -> int:
    text = binstr(handle)
    try:
        return int(text, 2)
    except ValueError:
        return int(text.translate(_AS_BITS), 2)


class Monitor:
    def __init__(self, dut, spec: dict):
        self.names = list(spec["signals"])
        missing = []
        self.handles = []
        for name in self.names:
            try:
                self.handles.append(_handle(dut, name))
            except AttributeError:
                missing.append(name)
        if missing:
            raise RuntimeError(f"functional-coverage monitor: the DUT has no signal "
                               f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        out = Path(spec["out"])
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f"{os.getpid()}-{next(_files)}.fcov.jsonl"
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.file = open(self.tmp, "w")        # noqa: SIM115 (closed in stop())
        self.file.write(json.dumps({"signals": self.names, "config": spec["config"]}) + "\n")
        self.clk = dut.clk
        self.task = None
        self.cycles = 0

    async def run(self) -> None:
        prev = [None] * len(self.handles)
        held = 0
        pending: list = []
        while True:
            await RisingEdge(self.clk)
            await ReadOnly()
            now = [_int(h) for h in self.handles]
            delta = [[i, x] for i, (x, p) in enumerate(zip(now, prev, strict=True)) if x != p]
            self.cycles += 1
            if delta or held == 0:
                if held:
                    self.file.write(json.dumps({"d": pending, "n": held}) + "\n")
                pending, held = delta, 1
                prev = now
            else:
                held += 1
            self._pending, self._held = pending, held

    def stop(self) -> Path:
        if self.task is not None:
            self.task.cancel()
        pending, held = getattr(self, "_pending", []), getattr(self, "_held", 0)
        if held:
            self.file.write(json.dumps({"d": pending, "n": held}) + "\n")
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path


def start(dut) -> Monitor | None:
    """Start the monitor when $SPIKELOOP_FCOV_MONITOR is set; else None."""
    spec_path = os.environ.get(ENV_MONITOR)
    if not spec_path:
        return None
    mon = Monitor(dut, json.loads(Path(spec_path).read_text()))
    mon.task = cocotb.start_soon(mon.run())
    return mon
