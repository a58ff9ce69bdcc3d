"""NeuronBackend: spike acceptance and refractory counters of all neurons (docs/rtl.md, 3).

Signature (``n = cfg.n_neurons``; every port in the ``sync`` domain):

- ``spike_in`` (In, ``n`` bits): the threshold crossings of the analog neurons in
  this cycle, bit ``i`` for neuron ``i``.
- ``enable`` (In, ``n`` bits, config): bit ``i`` set lets neuron ``i`` fire.
- ``refractory`` (In, ``ArrayLayout(unsigned(refractory_bits), n)``, config): the
  refractory period of each neuron in prescaler ticks.
- ``prescale`` (In, ``refractory_prescale_bits``, config): the refractory counters
  tick every ``2**prescale`` cycles.
- ``clear`` (In, 1): synchronous clear of the run state (refractory counters and
  the prescale counter); configuration is untouched.  Spikes accepted in a clear
  cycle still show on ``spike_out`` but do not load a counter.
- ``spike_out`` (Out, ``n`` bits, combinational): the accepted spikes,
  ``spike_in & enable & ~refractory_active``.
- ``refractory_active`` (Out, ``n`` bits, from registers): bit ``i`` is set while
  neuron ``i``'s refractory counter is nonzero (the analog model holds these
  neurons at their reset potential).

Behaviour: a free-running prescale counter of ``2**refractory_prescale_bits - 1``
bits (enough for the largest ``2**prescale``) counts up every cycle from 0 after
reset or ``clear``; a *tick* is a cycle where its low ``prescale`` bits are all
zero (every cycle when ``prescale == 0``).  At the clock edge of a cycle where
neuron ``i``'s spike is accepted, its counter is loaded with ``refractory[i]``;
otherwise, in a tick cycle, a nonzero counter decrements by one.  A spike accepted
in a tick cycle therefore keeps the neuron refractory for exactly
``refractory[i] * 2**prescale`` cycles (the cycles after the spike); a spike
between ticks for ``(refractory[i] - 1) * 2**prescale + 1`` to
``refractory[i] * 2**prescale`` cycles.  ``refractory[i] == 0`` disables the
refractory period (the neuron may fire every cycle).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig


class NeuronBackend(wiring.Component):
    """Spike acceptance and refractory counters; see the module docstring."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        n = cfg.n_neurons
        #: width of the free-running prescale counter
        self.prescale_counter_bits = (1 << cfg.refractory_prescale_bits) - 1
        super().__init__({
            "spike_in": In(n),
            "enable": In(n),
            "refractory": In(data.ArrayLayout(unsigned(cfg.refractory_bits), n)),
            "prescale": In(cfg.refractory_prescale_bits),
            "clear": In(1),
            "spike_out": Out(n),
            "refractory_active": Out(n),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        w = self.prescale_counter_bits

        prescale_count = Signal(w)
        tick = Signal()
        tick_mask = Signal(w)
        m.d.comb += [
            tick_mask.eq((Const(1, w + 1) << self.prescale) - 1),
            tick.eq((prescale_count & tick_mask) == 0),
        ]
        m.d.sync += prescale_count.eq(prescale_count + 1)

        counters = [Signal(cfg.refractory_bits, name=f"refractory_count{i}")
                    for i in range(cfg.n_neurons)]
        for i, count in enumerate(counters):
            active = self.refractory_active[i]
            accepted = self.spike_out[i]
            m.d.comb += [
                active.eq(count != 0),
                accepted.eq(self.spike_in[i] & self.enable[i] & ~active),
            ]
            with m.If(accepted):
                m.d.sync += count.eq(self.refractory[i])
            with m.Elif(tick & active):
                m.d.sync += count.eq(count - 1)

        with m.If(self.clear):
            m.d.sync += prescale_count.eq(0)
            m.d.sync += [count.eq(0) for count in counters]
        return m
