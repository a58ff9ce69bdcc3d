"""SpikeArbiter: turns the spikes of one neuron block into a stream of event labels
(docs/rtl.md, 4).

Signature (``P = cfg.neurons_per_block``; every port in the ``sync`` domain):

- ``spikes`` (In, ``P`` bits): the accepted spikes of the block's neurons in this
  cycle (``NeuronBackend.spike_out`` of neurons ``k*P .. k*P+P-1``), bit ``j`` for
  the block's neuron ``j``.
- ``labels`` (In, ``ArrayLayout(unsigned(event_label_bits), P)``, config): the event
  label each neuron's spike carries.
- ``events`` (Out, ``stream.Signature(event_layout(cfg))``): the event labels, in
  grant order; ``payload`` is 0 while ``valid`` is low.
- ``drops`` (Out, ``counter_bits``): spikes lost because the neuron was still
  pending; saturates at ``2**counter_bits - 1``.
- ``clear`` (In, 1): synchronous clear of the pending register, the FIFO and
  ``drops``; spikes in a clear cycle are ignored (neither queued nor counted) and
  nothing is granted in it.

Behaviour, each cycle:

1. *Grant* (fixed priority, lowest index first): if the output FIFO is not full
   (fewer than ``arbiter_fifo_depth`` words in it at the start of the cycle, the
   FIFO's ``w_rdy``; a word read out in the same cycle does **not** make room for a
   grant in that cycle), the lowest-index pending neuron ``j`` is granted and
   ``labels[j]`` is written into the FIFO.  With a full FIFO nothing is granted.
2. ``pending <= (pending & ~granted) | spikes``.
3. ``drops += popcount(spikes & pending & ~granted)``: a spike of a neuron that is
   still pending and not granted in this cycle is lost (a spike of the neuron
   granted in this cycle makes it pending again).

FIFO: ``amaranth.lib.fifo.SyncFIFO`` of depth ``arbiter_fifo_depth``: a word
written in cycle t is at the head (``events.valid``) from cycle t+1; a transfer
(``valid & ready``) pops the head at the clock edge.  Latency: a spike in cycle t
is pending in t+1, granted and written in t+1 and shows on ``events`` in t+2 at
the earliest.  Sustained throughput is one event per cycle while the FIFO is not
full; when it is full and the consumer reads every cycle, grants alternate with
idle cycles (the full FIFO refuses the grant in the cycle of the read).
"""
from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth.hdl import Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.layouts import event_layout


def popcount(bits):
    """The number of set bits of ``bits`` (a Value), as an adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class SpikeArbiter(wiring.Component):
    """Block arbiter with fixed priority and an output FIFO; see the module docstring."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        p = cfg.neurons_per_block
        super().__init__({
            "spikes": In(p),
            "labels": In(data.ArrayLayout(unsigned(cfg.event_label_bits), p)),
            "events": Out(stream.Signature(event_layout(cfg))),
            "drops": Out(cfg.counter_bits),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        p = cfg.neurons_per_block

        fifo = SyncFIFO(width=cfg.event_label_bits, depth=cfg.arbiter_fifo_depth)
        m.submodules.fifo = ResetInserter(self.clear)(fifo)

        pending = Signal(p)
        lowest = Signal(p)
        granted = Signal(p)
        label = Signal(cfg.event_label_bits)
        m.d.comb += [
            lowest.eq(pending & (~pending + 1)),
            granted.eq(Mux(fifo.w_rdy, lowest, 0)),
            label.eq(reduce(or_, [Mux(granted[j], self.labels[j], 0) for j in range(p)])),
            fifo.w_data.eq(label),
            fifo.w_en.eq(granted.any()),
            self.events.valid.eq(fifo.r_rdy),
            self.events.payload.eq(Mux(fifo.r_rdy, fifo.r_data, 0)),
            fifo.r_en.eq(self.events.ready),
        ]

        dropped = Signal(p)
        n_dropped = popcount(dropped)
        total = Signal(cfg.counter_bits + 1 + max(1, len(n_dropped)))
        drops_max = (1 << cfg.counter_bits) - 1
        m.d.comb += [
            dropped.eq(self.spikes & pending & ~granted),
            total.eq(self.drops + n_dropped),
        ]
        with m.If(self.clear):
            m.d.sync += [pending.eq(0), self.drops.eq(0)]
        with m.Else():
            m.d.sync += [
                pending.eq((pending & ~granted) | self.spikes),
                self.drops.eq(Mux(total > drops_max, drops_max, total)),
            ]
        return m
