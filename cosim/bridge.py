"""The analog bridge: advances the analog model (spikeloop.model.analog_loop)
alongside the simulated RTL of the top level (rtl/top.py), following the run
protocol of spikeloop/base/protocol.py.

Per analog step ``k`` of a sample (``S = analog_step_cycles``):

- the bridge sleeps on ``RisingEdge(dut.step_done)``: the simulator runs the
  ``S - 1`` cycles between steps without Python (a watchdog fails the run when
  ``WATCHDOG_STEPS`` steps' cycles pass without a step);
- ``step_done`` rises at the edge that starts cycle ``r = (k+1)S``; with the
  values of that edge settled and the inputs still writable in its time step
  (on Verilator at ``step_done``'s edge itself, elsewhere in the ``ReadWrite``
  phase: :func:`~spikeloop.cosim.host.inertial_deposits`) the bridge reads ``exc_sum``,
  ``inh_sum`` (packed ``ArrayLayout``: element ``n`` in bits ``[n*w, (n+1)*w)``),
  ``refractory_active`` and ``time`` (asserted to be ``(k+1)S``: the protocol's
  timing), advances the :class:`AnalogLoop` by one step, drives ``spike_in`` with
  the step's spikes and ``adc_codes`` with the codes of the new membranes;
- at the next rising edge (the one that took the spikes) it drives
  ``spike_in = 0`` (applied after that edge's clocked logic took the spikes):
  the spikes are high for exactly that one cycle (a step without spikes
  leaves ``spike_in`` at 0 and sleeps until the next step).

The step's arithmetic (the ports' bit strings parsed, the LIF update, the ADC
codes) is one compiled call (:func:`_step_kernel`, on the same ``lif_row`` and
ADC conversion as the fast backend's compiled run; one sample on the CPU in
float32, ``AnalogLoop.row_arrays``).

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
import numba
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadWrite, RisingEdge, Timer

from spikeloop.cosim.host import (
    WEAK_LEVELS,
    array_word,
    binstr,
    bits_writer,
    clock_period_ps,
    inertial_deposits,
    unsigned_or_none,
)
from spikeloop.model.adc import adc_code
from spikeloop.model.analog import lif_row
from spikeloop.model.analog_loop import AnalogLoop
from spikeloop.model.synapses import StepInput

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


# -- the step's arithmetic, compiled ----------------------------------------------------
#: the simulator's characters for a bit: "0"/"1" and the weak levels "L"/"H"
_C0, _C1, _CL, _CH = ord("0"), ord("1"), ord("L"), ord("H")


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _parse(text, bits, out):
    """The elements of a packed array port from its bit string (``text``: the
    ASCII codes, most significant bit first; element ``i`` in bits ``[i*bits,
    (i+1)*bits)``) into ``out``; False where a character is not 0, 1, L or H."""
    L = len(text)
    for i in range(len(out)):
        x = 0
        for c in range(L - (i + 1) * bits, L - i * bits):
            ch = text[c]
            if ch == _C1 or ch == _CH:
                x = (x << 1) | 1
            elif ch == _C0 or ch == _CL:
                x = x << 1
            else:
                return False
        out[i] = x
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _step_kernel(exc_text, inh_text, held_text, sum_bits, given, exc, inh, held, hold, v, ie,
                 ii, noise, has_noise, leak, reset, thresh, decay_mem, decay_exc, decay_inh,
                 k_exc, k_inh, gain_exc, gain_inh, v_min, v_max, merged, mbits, spikes, dv,
                 adc_scale, adc_offset, code_max, codes, codes_text, spikes_text):
    """One analog step of one sample from the ports' bit strings: the sums and
    the held neurons parsed, the LIF update (model/analog.py's ``lif_row``, on
    the state's rows in place), the ADC codes of the new membranes (model/adc.py's
    ``adc_code``), and the bit strings the bridge drives: ``codes_text`` (the
    codes packed as ``adc_codes``, element ``i`` in bits ``[i*w, (i+1)*w)``,
    most significant bit first) and ``spikes_text`` (``spike_in``).  Returns 0,
    or 1, 2, 3 where ``exc_sum``, ``inh_sum`` or ``refractory_active`` has a bit
    that is not 0 or 1 (nothing stepped).  ``given``: the step integrates the
    sums already in ``exc`` and ``inh`` (the synapses' gains: the ports are
    checked by the caller)."""
    if not given and not _parse(exc_text, sum_bits, exc):
        return 1
    if not given and not _parse(inh_text, sum_bits, inh):
        return 2
    if not _parse(held_text, 1, held):
        return 3
    for j in range(len(hold)):
        hold[j] = held[j] != 0
    lif_row(v, ie, ii, exc, inh, True, True, hold, True, noise, has_noise, leak, reset,
            thresh, decay_mem, decay_exc, decay_inh, k_exc, k_inh, gain_exc, gain_inh, v_min,
            v_max, merged, mbits, spikes, dv)
    for j in range(len(v)):
        codes[j] = adc_code(v[j], adc_scale[j], adc_offset[j], code_max)
    _unparse(codes, len(codes_text) // len(codes), codes_text)
    for j in range(len(spikes)):
        spikes_text[len(spikes) - 1 - j] = _C1 if spikes[j] else _C0
    return 0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _unparse(values, bits, text):
    """:func:`_parse` backwards: the bit string (ASCII codes) of a packed array
    port whose element ``i`` is ``values[i]`` (non-negative, below ``2**bits``)."""
    L = len(text)
    for i in range(len(values)):
        x = values[i]
        for c in range(bits):           # bit c of element i: character L-1-(i*bits+c)
            text[L - 1 - i * bits - c] = _C1 if (x >> c) & 1 else _C0


class AnalogBridge:
    """Couples one sample's :class:`AnalogLoop` to the top level ``dut``.

    ``spikes`` collects ``(sample, step, r, neuron)`` of every spike, across
    the samples run with the same bridge."""

    def __init__(self, dut, cfg, *, trace: MembraneTrace | None = None,
                 inputs: StepInput | None = None, rows=None):
        """``inputs`` and ``rows`` (the row-activity monitor listing every
        activation): with driver and synapse mismatch, the sums each step
        integrates come from the step's activations (weight x gain), and the
        ``exc_sum``/``inh_sum`` ports must equal their digital sums."""
        self.dut = dut
        self.cfg = cfg
        if (inputs is None) != (rows is None):
            raise ValueError("inputs and rows come together (the sums come from the "
                             "monitor's activations)")
        self.inputs, self.rows = inputs, rows
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
        #: (loop, its rows, kernel parameters, ADC constants) of the sample being run
        self._rows = None
        self._exc, self._inh, self._held = (np.zeros(self.n, np.int64) for _ in range(3))
        self._hold, self._spikes = np.zeros(self.n, np.bool_), np.zeros(self.n, np.bool_)
        self._dv = np.zeros(self.n, np.float32)
        self._codes = np.zeros(self.n, np.int64)
        #: the bit strings the kernel writes for ``adc_codes`` and ``spike_in``
        self._codes_text = np.zeros(self.n * self.adc_bits, np.uint8)
        self._spikes_text = np.zeros(self.n, np.uint8)
        self._no_spikes = "0" * self.n
        #: On Verilator (cocotb's main loop for it) an output's edge is seen
        #: after the time step's evaluation, so ``step_done``'s rising edge
        #: comes with every port settled; and a write (a deposit) is inertial:
        #: applied after the evaluation of the time step it was made in, which
        #: is then evaluated again. There a step reads the ports at
        #: ``step_done``'s edge and writes at once (the same values in the same
        #: time step as in the ``ReadWrite`` phase, one wake-up fewer), and
        #: the spikes are taken back to 0 at the clock's next edge itself (the
        #: clocked logic has taken them by the time the write applies). Other
        #: simulators may call an edge's callbacks before the clocked processes
        #: ran: there the step waits for ``ReadWrite``, and the write after the
        #: clock's edge is cocotb's (applied in that edge's ``ReadWrite`` phase).
        #: (The clock's own edge comes before the evaluation on Verilator too:
        #: with S = 1 a step that starts there waits for ``ReadWrite``.)
        self._at_edge = inertial_deposits()
        self._write_spikes = bits_writer(dut.spike_in, self._at_edge)
        self._write_codes = bits_writer(dut.adc_codes, self._at_edge)

    def _compiled_step(self, loop: AnalogLoop) -> int:
        """The step by :func:`_step_kernel` on ``loop``'s rows; returns the held
        neurons' mask (``refractory_active``'s value)."""
        if self._rows is None or self._rows[0] is not loop:
            self._rows = (loop, *loop.row_arrays())
        dut = self.dut
        texts = [binstr(h) for h in (dut.exc_sum, dut.inh_sum, dut.refractory_active)]
        if self.inputs is not None:
            self._given_sums(texts)
        status = self._kernel(texts, *self._rows[1:], loop.next_noise())
        if status:
            name = ("exc_sum", "inh_sum", "refractory_active")[status - 1]
            raise BridgeError(f"{name} is {texts[status - 1]} (X/Z bits) in a step_done cycle")
        return int(texts[2].translate(WEAK_LEVELS), 2)

    def _given_sums(self, texts) -> None:
        """The step's sums from its activations (``self._exc``, ``self._inh``:
        weight x gain), after checking the ports against their digital sums."""
        k = self._step_of_sample
        analog, digital = self.inputs.step(self.rows.events, k)
        for i, (name, text) in enumerate(zip(("exc_sum", "inh_sum"), texts[:2], strict=True)):
            port = np.zeros(self.n, np.int64)
            if not _parse(np.frombuffer(text.encode("ascii"), np.uint8), self.sum_bits, port):
                raise BridgeError(f"{name} is {text} (X/Z bits) in a step_done cycle")
            if not np.array_equal(port, digital[i]):
                j = int(np.flatnonzero(port != digital[i])[0])
                raise BridgeError(
                    f"step {k}: {name}[{j}] = {port[j]}, but the activations the monitor "
                    f"listed in cycles [{k * self.inputs.S}, {(k + 1) * self.inputs.S}) "
                    f"sum to {digital[i][j]}")
        self._exc[:] = analog[0]
        self._inh[:] = analog[1]

    def _kernel(self, texts, rows, params, adc, noise) -> int:
        (v, ie, ii), (scale, offset, code_max) = rows, adc
        return _step_kernel(
            *(np.frombuffer(t.encode("ascii"), np.uint8) for t in texts), self.sum_bits,
            self.inputs is not None, self._exc, self._inh, self._held, self._hold, v, ie, ii,
            _NO_NOISE if noise is None else noise.numpy()[0], noise is not None, *params,
            self._spikes, self._dv, scale, offset, code_max, self._codes, self._codes_text,
            self._spikes_text)

    def load_compiled(self, loop: AnalogLoop) -> None:
        """Load :func:`_step_kernel`'s machine code (from numba's cache) by one step
        of ``loop`` (a throwaway: its state changes) on ports of zeros, so that a
        run timed afterwards measures the steps alone."""
        sums, held = "0" * len(self.dut.exc_sum), "0" * self.n
        self._exc[:] = 0
        self._inh[:] = 0
        self._kernel([sums, sums, held], *loop.row_arrays(), loop.next_noise())

    def drive_codes(self, loop: AnalogLoop) -> None:
        """Drive ``adc_codes`` with the codes of ``loop``'s present membranes."""
        self.dut.adc_codes.value = array_word(loop.codes()[0].cpu().numpy(), self.adc_bits)

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
        if self.inputs is not None:
            self.inputs.reset()
        watchdog = cocotb.start_soon(self._watchdog(sample, self.steps_run, S))
        try:
            for k in range(n_steps):
                self._step_of_sample = k
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
        dut = self.dut
        # with S = 1, step_done stays high: after step 0 the edge awaited at the end
        # of the step before already starts this step_done cycle
        if S > 1 or k == 0:
            await RisingEdge(dut.step_done)
            if not self._at_edge:
                await ReadWrite()  # the edge's values settled; inputs still writable
        else:
            await ReadWrite()      # (S = 1: the clock's edge, not step_done's)
        r = _unsigned(dut.time, "time")
        if (r != (k + 1) * S or binstr(dut.running) != "1"
                or binstr(dut.step_done) != "1"):
            raise BridgeError(
                f"sample {sample}: step {k} in cycle time={r} with running="
                f"{dut.running.value}, step_done={dut.step_done.value}; the protocol "
                f"says time={(k + 1) * S}, running=1, step_done=1")
        held = self._compiled_step(loop)
        fired = self._spikes
        if held:
            self.holds.append((sample, k, held))
        idx = np.flatnonzero(fired)
        self.spikes += [(sample, k, r, int(i)) for i in idx]
        if len(idx):
            self._write_spikes(self._spikes_text.tobytes().decode("ascii"))
        self._write_codes(self._codes_text.tobytes().decode("ascii"))
        self._trace(sample, k, r, loop)
        self.steps_run += 1
        if len(idx):
            await RisingEdge(dut.clk)  # the edge that took the spikes
            self._write_spikes(self._no_spikes)
        elif S == 1:
            await RisingEdge(dut.clk)  # (starts the next step's cycle)


_NO_NOISE = np.zeros(1, np.float32)


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
