"""Crossbar: routes events from the block arbiters and the external links to the
event buses and the host links (docs/rtl.md, section 5).

Sizes (all from the ChipConfig): ``I = crossbar_inputs`` (blocks, then external
links), ``O = crossbar_outputs`` (buses, then host links), ``N = I * O`` nodes,
node ``(i, o)`` has index ``i * O + o``, ``D = crossbar_fifo_depth``.

Signature:

- ``inputs[i]``, ``i < I`` (In, ``stream.Signature(event_layout(cfg))``):
  ``ready`` is constantly 1; the crossbar never stalls a source, it drops and
  counts instead.
- ``outputs[o]``, ``o < O`` (Out, ``stream.Signature(event_layout(cfg))``), with
  backpressure.  ``valid`` and ``payload`` are functions of registered state
  only (never of ``ready`` or of the inputs of the same cycle); ``payload`` is 0
  while ``valid`` is low.
- ``enable`` (In, ``ArrayLayout(unsigned(1), N)``), ``mask`` and ``target`` (In,
  ``ArrayLayout(unsigned(event_label_bits), N)``): the node configuration.
- ``event_count``, ``drop_count`` (Out, ``ArrayLayout(unsigned(counter_bits), N)``):
  per node, events queued and events dropped; registers, saturating.
- ``clear`` (In, 1): synchronous; empties every FIFO, zeroes the counters and
  the arbiter state.  Events offered in a cycle with ``clear`` are ignored.

Behaviour and timing:

- Node ``(i, o)`` takes the event on ``inputs[i]`` when ``inputs[i].valid and
  enable[n] and (label & mask[n]) == target[n]``.  Its FIFO (D registers) is
  *full* when it holds D words at the start of the cycle (a pop in the same
  cycle does not make room for the push); an event taken by a full node is
  dropped and ``drop_count[n]`` increments, otherwise it is queued and
  ``event_count[n]`` increments.  One event can be taken by several nodes
  (multicast).
- A queued event can appear on ``outputs[o]`` from the next cycle on (one cycle
  of latency through the crossbar).
- Output ``o`` has a round-robin arbiter over the FIFOs of its column: with
  ``last[o]`` the input granted last (``I - 1`` after reset and clear), it
  grants the first non-empty FIFO among inputs ``last+1, last+2, ..., last+I``
  (mod I).  The granted head is ``outputs[o].payload`` with ``valid``.  On a
  transfer the head is popped and ``last[o]`` becomes the granted input.
- A grant that is not accepted (``valid & ~ready``) is *held*: the output keeps
  presenting the same word until it is transferred, even if a FIFO of higher
  round-robin priority becomes non-empty meanwhile (the stream payload is
  stable while it waits, which the synapse drivers' serialisation relies on).
"""
from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.common import round_robin_grant
from spikeloop.rtl.layouts import event_layout


class Crossbar(wiring.Component):
    """The event crossbar; see the module docstring for the signature and timing."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        n_in, n_out = cfg.crossbar_inputs, cfg.crossbar_outputs
        nodes = n_in * n_out
        ev = stream.Signature(event_layout(cfg))
        lbits = cfg.event_label_bits
        super().__init__({
            "inputs": In(ev).array(n_in),
            "outputs": Out(ev).array(n_out),
            "enable": In(data.ArrayLayout(unsigned(1), nodes)),
            "mask": In(data.ArrayLayout(unsigned(lbits), nodes)),
            "target": In(data.ArrayLayout(unsigned(lbits), nodes)),
            "event_count": Out(data.ArrayLayout(unsigned(cfg.counter_bits), nodes)),
            "drop_count": Out(data.ArrayLayout(unsigned(cfg.counter_bits), nodes)),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        n_in, n_out = cfg.crossbar_inputs, cfg.crossbar_outputs
        depth = cfg.crossbar_fifo_depth
        lbits = cfg.event_label_bits
        cmax = (1 << cfg.counter_bits) - 1

        for inp in self.inputs:
            m.d.comb += inp.ready.eq(1)

        labels = [Value.cast(inp.payload) for inp in self.inputs]
        # per node: head word, non-empty flag, pop strobe (driven by the output arbiters)
        heads = [[None] * n_out for _ in range(n_in)]
        nonempty = [[None] * n_out for _ in range(n_in)]
        pops = [[None] * n_out for _ in range(n_in)]

        for i in range(n_in):
            for o in range(n_out):
                n = i * n_out + o
                pfx = f"n{i}_{o}"
                store = [Signal(lbits, name=f"{pfx}_w{k}", reset_less=True)
                         for k in range(depth)]
                level = Signal(range(depth + 1), name=f"{pfx}_level")
                head = Signal(lbits, name=f"{pfx}_head")
                pop = Signal(name=f"{pfx}_pop")
                take = Signal(name=f"{pfx}_take")
                full = Signal(name=f"{pfx}_full")
                m.d.comb += [
                    take.eq(self.inputs[i].valid & self.enable[n]
                            & ((labels[i] & self.mask[n]) == self.target[n])),
                    full.eq(level == depth),
                ]
                push = take & ~full
                if depth == 1:
                    m.d.comb += head.eq(store[0])
                    with m.If(push):
                        m.d.sync += store[0].eq(labels[i])
                else:
                    rp = Signal(range(depth), name=f"{pfx}_rp")
                    wp = Signal(range(depth), name=f"{pfx}_wp")
                    m.d.comb += head.eq(Array(store)[rp])
                    with m.If(push):
                        with m.Switch(wp):
                            for k in range(depth):
                                with m.Case(k):
                                    m.d.sync += store[k].eq(labels[i])
                    with m.If(self.clear):
                        m.d.sync += [rp.eq(0), wp.eq(0)]
                    with m.Else():
                        with m.If(push):
                            m.d.sync += wp.eq(_wrap_inc(wp, depth))
                        with m.If(pop):
                            m.d.sync += rp.eq(_wrap_inc(rp, depth))
                with m.If(self.clear):
                    m.d.sync += [level.eq(0), self.event_count[n].eq(0),
                                 self.drop_count[n].eq(0)]
                with m.Else():
                    m.d.sync += level.eq(level + push - pop)
                    with m.If(push & (self.event_count[n] != cmax)):
                        m.d.sync += self.event_count[n].eq(self.event_count[n] + 1)
                    with m.If(take & full & (self.drop_count[n] != cmax)):
                        m.d.sync += self.drop_count[n].eq(self.drop_count[n] + 1)
                heads[i][o], pops[i][o] = head, pop
                nonempty[i][o] = level != 0

        for o in range(n_out):
            out = self.outputs[o]
            last = Signal(range(n_in), init=n_in - 1, name=f"o{o}_last")
            locked = Signal(name=f"o{o}_locked")
            held = Signal(range(n_in), name=f"o{o}_held")
            req = Signal(n_in, name=f"o{o}_req")
            for i in range(n_in):
                m.d.comb += req[i].eq(nonempty[i][o])
            grant = round_robin_grant(m, req, last, n_in, f"o{o}")
            with m.If(locked):
                m.d.comb += grant.eq(held)
            valid = req.any()
            m.d.comb += out.valid.eq(valid)
            with m.If(valid):
                m.d.comb += out.payload.eq(Array(heads[i][o] for i in range(n_in))[grant])
            xfer = valid & out.ready
            for i in range(n_in):
                m.d.comb += pops[i][o].eq(xfer & (grant == i))
            with m.If(self.clear):
                m.d.sync += [last.eq(n_in - 1), locked.eq(0), held.eq(0)]
            with m.Elif(xfer):
                m.d.sync += [last.eq(grant), locked.eq(0)]
            with m.Elif(valid):
                m.d.sync += [locked.eq(1), held.eq(grant)]
        return m


def _wrap_inc(ptr: Signal, depth: int):
    """ptr + 1 modulo depth (for any depth)."""
    if depth & (depth - 1) == 0:
        return (ptr + 1)[:len(ptr)]
    return Mux(ptr == depth - 1, 0, ptr + 1)
