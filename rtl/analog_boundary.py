"""AnalogBoundary: per-step synaptic input sums of one half (docs/rtl.md, section 8)."""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.base.layouts import RowSign


def sum_bits(cfg: ChipConfig) -> int:
    """Width of ``exc_sum``/``inh_sum``: holds ``2B * analog_step_cycles * weight_max``."""
    return (2 * cfg.buses_per_half * cfg.analog_step_cycles * cfg.weight_max).bit_length()


class AnalogBoundary(wiring.Component):
    """Accumulates the synaptic weights of one half into per-step column sums.

    Sizes: ``C = columns_per_half``, ``P = 2 * buses_per_half`` ports, ``N =
    analog_step_cycles``, ``W = sum_bits(cfg)`` (enough for ``P * N *
    weight_max``).

    Signature:

    - ``weights[p]`` In, ``p = 0..P-1``: ``ArrayLayout(unsigned(weight_bits), C)``
      (from ``SynapseMemory.weights[p]``), sampled every cycle.
    - ``signs[p]`` In, 2 bits: a :class:`~spikeloop.base.layouts.RowSign` (from
      ``SynapseDrivers.signs[p]``); EXC adds port ``p`` to the excitatory sums,
      INH to the inhibitory ones, OFF (and the unused code 3) to neither.
    - ``clear`` In, 1 bit: synchronous; restarts the step (phase 0 in the next
      cycle), empties the accumulators, zeroes ``exc_sum``/``inh_sum`` and
      ``step_done``; the inputs of the ``clear`` cycle are discarded.
    - ``exc_sum``, ``inh_sum`` Out, ``ArrayLayout(unsigned(W), C)``: registers,
      the totals of the last completed step (element ``c`` = column ``c``).
    - ``step_done`` Out, 1 bit: register, high for one cycle, the cycle after the
      last cycle of a step, i.e. the first cycle in which that step's sums show.
    - ``phase`` Out, ``ceil_log2(N)`` bits (at least 1): the cycle of the step
      (0..N-1) the current inputs belong to.

    Verilog port names: ``weights__<p>``, ``signs__<p>``, ``clear``,
    ``exc_sum``, ``inh_sum``, ``step_done``, ``phase``.

    Timing: after ``clear`` (or reset) steps are cycles ``[k*N, (k+1)*N)``
    counted from the cycle after ``clear``.  In every cycle each column's
    excitatory and inhibitory additions (the sums over the ports with that sign)
    are added to the accumulators; in the last cycle of a step (``phase ==
    N-1``) accumulator plus addition move into ``exc_sum``/``inh_sum`` and the
    accumulators restart from 0, so the sums of cycles ``[k*N, (k+1)*N)`` show
    from cycle ``(k+1)*N`` (with ``step_done``) until the next step's sums
    replace them ``N`` cycles later.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        n_ports = 2 * cfg.buses_per_half
        n_cols = cfg.columns_per_half
        sums = data.ArrayLayout(unsigned(sum_bits(cfg)), n_cols)
        super().__init__({
            "weights": In(data.ArrayLayout(unsigned(cfg.weight_bits), n_cols)).array(n_ports),
            "signs": In(2).array(n_ports),
            "clear": In(1),
            "exc_sum": Out(sums),
            "inh_sum": Out(sums),
            "step_done": Out(1),
            "phase": Out(max(1, (cfg.analog_step_cycles - 1).bit_length())),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        n_cols = cfg.columns_per_half
        n_steps = cfg.analog_step_cycles
        m = Module()

        acc_layout = data.ArrayLayout(unsigned(sum_bits(cfg)), n_cols)
        exc_acc = Signal(acc_layout, name="exc_acc")
        inh_acc = Signal(acc_layout, name="inh_acc")

        is_exc = [Signal(name=f"exc_{p}") for p in range(len(self.signs))]
        is_inh = [Signal(name=f"inh_{p}") for p in range(len(self.signs))]
        for p, sign in enumerate(self.signs):
            m.d.comb += [is_exc[p].eq(sign == RowSign.EXC.value),
                         is_inh[p].eq(sign == RowSign.INH.value)]

        last = Signal(name="last_cycle")
        m.d.comb += last.eq(self.phase == n_steps - 1)

        with m.If(self.clear):
            m.d.sync += [
                self.phase.eq(0), exc_acc.eq(0), inh_acc.eq(0),
                self.exc_sum.eq(0), self.inh_sum.eq(0), self.step_done.eq(0),
            ]
        with m.Else():
            m.d.sync += [
                self.phase.eq(Mux(last, 0, self.phase + 1)),
                self.step_done.eq(last),
            ]
            for c in range(n_cols):
                exc_add = sum(Mux(is_exc[p], w[c], 0) for p, w in enumerate(self.weights))
                inh_add = sum(Mux(is_inh[p], w[c], 0) for p, w in enumerate(self.weights))
                exc_total = exc_acc[c] + exc_add
                inh_total = inh_acc[c] + inh_add
                with m.If(last):
                    m.d.sync += [
                        self.exc_sum[c].eq(exc_total), self.inh_sum[c].eq(inh_total),
                        exc_acc[c].eq(0), inh_acc[c].eq(0),
                    ]
                with m.Else():
                    m.d.sync += [exc_acc[c].eq(exc_total), inh_acc[c].eq(inh_total)]
        return m
