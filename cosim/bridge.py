"""The analog bridge: advances the analog model (spikeloop.model.analog_loop)
alongside the simulated RTL of the top level (rtl/top.py), following the run
protocol of spikeloop/base/protocol.py.

Per analog step ``k`` of a sample (``S = analog_step_cycles``):

- the bridge sleeps on ``RisingEdge(dut.step_done)``: the simulator runs the
  ``S - 1`` cycles between steps without Python (a watchdog fails the run when
  ``WATCHDOG_STEPS`` steps' cycles pass without a step);
- ``step_done`` rises at the edge that starts cycle ``r = (k+1)S``; in that
  cycle's ``ReadWrite`` phase (values of the edge settled, inputs still
  writable, on Verilator and Icarus alike) the bridge reads ``exc_sum``,
  ``inh_sum`` (packed ``ArrayLayout``: element ``n`` in bits ``[n*w, (n+1)*w)``),
  ``refractory_active`` and ``time`` (asserted to be ``(k+1)S``: the protocol's
  timing), advances the :class:`AnalogLoop` by one step, drives ``spike_in`` with
  the step's spikes and ``adc_codes`` with the codes of the new membranes;
- at the next rising edge (the one that took the spikes) it drives
  ``spike_in = 0``: the spikes are high for exactly that one cycle.

After ``n_steps`` steps :meth:`AnalogBridge.run` returns right after the
rising edge that starts cycle ``r = n_steps * S + 1`` (the last running cycle,
where the host writes ``ctrl = 0``), with ``spike_in`` back at 0.

Spikes are recorded as ``(sample, step, r, neuron)`` with ``r`` the ``time``
output in the cycle the spikes entered, as the reference backend records them.

Membrane trace (optional, for waveforms): with ``trace`` set the bridge keeps
``(sim time ps, sample, step, r, v_mem [n] in V)`` per step;
:func:`write_membrane_vcd` / :func:`write_membrane_csv` write them next to the
simulator's waveform (the top level has no port to carry analog values).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cocotb
import numpy as np
import torch
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadWrite, RisingEdge, Timer

from spikeloop.cosim.host import (
    array_word,
    binstr,
    clock_period_ps,
    unsigned_array_or_none,
    unsigned_or_none,
)
from spikeloop.model.analog_loop import AnalogLoop

#: the watchdog's window: a run fails when this many steps' cycles pass without a step
WATCHDOG_STEPS = 64


class BridgeError(AssertionError):
    """The RTL did not follow the run protocol (a step at the wrong cycle, X values)."""


def _unsigned(handle, name: str) -> int:
    v = unsigned_or_none(handle)
    if v is None:
        raise BridgeError(f"{name} is {handle.value} (X/Z bits) in a step_done cycle")
    return v


@dataclass
class MembraneTrace:
    """Membrane potentials per step of a run (for the companion waveform)."""

    n_neurons: int
    #: (sim time in ps, sample, step, cycle r, [v_mem in V per neuron])
    rows: list[tuple[int, int, int, int, list[float]]] = field(default_factory=list)


class AnalogBridge:
    """Couples one sample's :class:`AnalogLoop` to the top level ``dut``.

    ``spikes`` collects ``(sample, step, r, neuron)`` of every spike, across
    the samples run with the same bridge."""

    def __init__(self, dut, cfg, *, trace: MembraneTrace | None = None):
        self.dut = dut
        self.cfg = cfg
        self.n = cfg.n_neurons
        self.sum_bits = len(dut.exc_sum) // self.n
        if self.sum_bits * self.n != len(dut.exc_sum):
            raise BridgeError(f"exc_sum has {len(dut.exc_sum)} bits, not a multiple of "
                              f"n_neurons = {self.n}")
        self.adc_bits = cfg.adc_bits
        self.spikes: list[tuple[int, int, int, int]] = []
        self.trace = trace
        self.steps_run = 0
        #: (sample, step, refractory_active mask) of every step with a held neuron
        #: (refractory, or the PPU's reset hold)
        self.holds: list[tuple[int, int, int]] = []

    def drive_codes(self, loop: AnalogLoop) -> None:
        """Drive ``adc_codes`` with the codes of ``loop``'s present membranes."""
        self.dut.adc_codes.value = array_word(loop.codes()[0].cpu().numpy(), self.adc_bits)

    def _per_neuron(self, handle, name: str, bits: int) -> np.ndarray:
        """A port of one ``bits``-bit element per neuron, as int64 numpy ``[n]``."""
        v = unsigned_array_or_none(handle, bits, self.n)
        if v is None:
            raise BridgeError(f"{name} is {handle.value} (X/Z bits) in a step_done cycle")
        return v

    def _trace(self, sample: int, step: int, r: int, loop: AnalogLoop) -> None:
        if self.trace is not None:
            self.trace.rows.append((int(get_sim_time("ps")), sample, step, r,
                                    loop.state.v_mem_v[0].tolist()))

    async def run(self, loop: AnalogLoop, sample: int, n_steps: int) -> None:
        """Run ``n_steps`` analog steps of batch entry ``sample`` (see the module
        docstring).  Start it after the clear cycle (right after the edge that
        ends it), with ``adc_codes`` already driven with the initial codes."""
        S = self.cfg.analog_step_cycles
        self._trace(sample, -1, 0, loop)
        watchdog = cocotb.start_soon(self._watchdog(sample, self.steps_run, S))
        try:
            for k in range(n_steps):
                await self._step(loop, sample, k, S)
        finally:
            watchdog.cancel()

    async def _watchdog(self, sample: int, first: int, S: int) -> None:
        """Fail the test when no step is taken for ``WATCHDOG_STEPS`` steps' cycles
        (the RTL stopped raising ``step_done``); the step itself checks that each
        ``step_done`` comes in its cycle.  One timer for many steps: a timeout
        on every step's wait cost more than the step's analog model."""
        cycles = WATCHDOG_STEPS * S + 4
        while True:
            seen = self.steps_run
            await Timer(cycles * clock_period_ps(self.cfg), "ps")
            if self.steps_run == seen:
                raise BridgeError(
                    f"sample {sample}: no step_done for step {seen - first} within {cycles} "
                    f"cycles (time={self.dut.time.value}, running={self.dut.running.value})")

    async def _step(self, loop: AnalogLoop, sample: int, k: int, S: int) -> None:
        dut, n = self.dut, self.n
        # with S = 1, step_done stays high: after step 0 the edge awaited at the end
        # of the step before already starts this step_done cycle
        if S > 1 or k == 0:
            await RisingEdge(dut.step_done)
        await ReadWrite()          # the edge's values settled; inputs still writable
        r = _unsigned(dut.time, "time")
        if (r != (k + 1) * S or binstr(dut.running) != "1"
                or binstr(dut.step_done) != "1"):
            raise BridgeError(
                f"sample {sample}: step {k} in cycle time={r} with running="
                f"{dut.running.value}, step_done={dut.step_done.value}; the protocol "
                f"says time={(k + 1) * S}, running=1, step_done=1")
        exc = self._per_neuron(dut.exc_sum, "exc_sum", self.sum_bits)
        inh = self._per_neuron(dut.inh_sum, "inh_sum", self.sum_bits)
        held = self._per_neuron(dut.refractory_active, "refractory_active", 1)
        if held.any():
            self.holds.append((sample, k, array_word(held, 1)))
        fired = loop.step(*(torch.from_numpy(a).reshape(1, n)
                            for a in (exc, inh, held.astype(bool))))[0]
        idx = torch.nonzero(fired).reshape(-1).tolist()
        self.spikes += [(sample, k, r, i) for i in idx]
        dut.spike_in.value = sum(1 << i for i in idx)
        self.drive_codes(loop)
        self._trace(sample, k, r, loop)
        self.steps_run += 1
        await RisingEdge(dut.clk)  # the edge that took the spikes
        dut.spike_in.value = 0


# -- companion waveform of the membranes ---------------------------------------------

def _vcd_id(i: int) -> str:
    chars = [chr(c) for c in range(33, 127)]
    out = ""
    i += 1
    while i:
        i, d = divmod(i - 1, len(chars))
        out = chars[d] + out
    return out


def write_membrane_vcd(trace: MembraneTrace, path: str | Path) -> Path:
    """A VCD of ``real`` variables ``v_mem_<n>`` (mV) and integers ``sample``,
    ``step``, ``time_r``, on the simulator's time base (1 ps), so it lines up
    with the digital waveform (load both in surfer/gtkwave side by side).  A
    value changes at the step_done edge that computed it."""
    path = Path(path)
    n = trace.n_neurons
    ids = {"sample": _vcd_id(0), "step": _vcd_id(1), "time_r": _vcd_id(2)}
    vids = [_vcd_id(3 + i) for i in range(n)]
    lines = ["$date spikeloop cosim $end", "$version spikeloop.cosim.bridge $end",
             "$timescale 1ps $end", "$scope module analog $end"]
    lines += [f"$var integer 32 {ids[k]} {k} $end" for k in ("sample", "step", "time_r")]
    lines += [f"$var real 64 {v} v_mem_{i}_mV $end" for i, v in enumerate(vids)]
    lines += ["$upscope $end", "$enddefinitions $end"]
    last_t = None
    for t, sample, step, r, v in trace.rows:
        if t != last_t:
            lines.append(f"#{t}")
            last_t = t
        lines += [f"b{max(sample, 0):b} {ids['sample']}",
                  f"b{step & 0xFFFFFFFF:b} {ids['step']}", f"b{r:b} {ids['time_r']}"]
        lines += [f"r{x * 1e3:.6g} {vid}" for x, vid in zip(v, vids, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_membrane_csv(trace: MembraneTrace, path: str | Path) -> Path:
    """CSV: ``sim_time_ps,sample,step,cycle,v_mem_0_mV,...`` per step (step -1:
    the initial membranes at the start of the sample)."""
    path = Path(path)
    head = ["sim_time_ps", "sample", "step", "cycle"] + [
        f"v_mem_{i}_mV" for i in range(trace.n_neurons)]
    lines = [",".join(head)]
    for t, sample, step, r, v in trace.rows:
        lines.append(",".join([str(t), str(sample), str(step), str(r)]
                              + [f"{x * 1e3:.4f}" for x in v]))
    path.write_text("\n".join(lines) + "\n")
    return path
