"""Event recorder: timestamps the events of the crossbar's host links into the
record memory (docs/rtl.md, section 6).

Sizes (from the ChipConfig): ``L = n_host_links`` links, ``R = record_depth``
entries of ``E = timed_event_layout(cfg, L)`` (``label``, ``link``, ``time``).

Signature:

- ``links[l]``, ``l < L`` (In, ``stream.Signature(event_layout(cfg))``): the
  recorder is the sink; ``ready`` is high on the granted link only and depends
  combinationally on the ``valid`` of all links (never on a payload).
- ``time`` (In, ``timestamp_bits``): the top level's cycle counter.
- ``count`` (Out, ``R.bit_length()`` bits): entries written since clear
  (register; stops at R, the memory is then full).
- ``drops`` (Out, ``counter_bits``): events taken while the memory was full;
  register, saturating.
- ``host_addr`` (In, ``range(R)``), ``host_rdata`` (Out, E): the host's read
  port, synchronous: the entry addressed in the previous cycle (old contents when
  that entry was written in the same cycle); out-of-range addresses read entry 0.
- ``clear`` (In, 1): synchronous: ``count``, ``drops`` and the round-robin
  pointer to their reset values (the memory is kept, and overwritten from 0).

Behaviour and timing: one event per cycle.  A round-robin arbiter with ``last``
the link granted last (``L - 1`` after reset and clear) grants the first valid
link among ``last+1, ..., last+L`` (mod L); that link's ``ready`` is high, so the
event is transferred in that cycle and ``last`` becomes the granted link.  The
entry ``{label: payload, link: l, time: time}`` (``time`` of the transfer cycle)
is written at address ``count`` at the clock edge and ``count`` increments; when
``count == R`` it is dropped instead and ``drops`` increments.  In a cycle with
``clear`` a transfer still happens (the link is ready) but is neither written nor
counted.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.common import round_robin_grant
from spikeloop.rtl.layouts import event_layout, timed_event_layout


class EventRecorder(wiring.Component):
    """Records host-link events with their cycle; see the module docstring."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        entry = timed_event_layout(cfg, cfg.n_host_links)
        super().__init__({
            "links": In(stream.Signature(event_layout(cfg))).array(cfg.n_host_links),
            "time": In(cfg.timestamp_bits),
            "count": Out(cfg.record_depth.bit_length()),
            "drops": Out(cfg.counter_bits),
            "host_addr": In(range(cfg.record_depth)),
            "host_rdata": Out(entry),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        depth, n_links = cfg.record_depth, cfg.n_host_links
        entry = timed_event_layout(cfg, n_links)
        cmax = (1 << cfg.counter_bits) - 1

        m.submodules.mem = mem = Memory(shape=entry, depth=depth, init=[])
        wr = mem.write_port()
        host_rd = mem.read_port()
        m.d.comb += [
            host_rd.addr.eq(Mux(self.host_addr < depth, self.host_addr, 0)),
            self.host_rdata.eq(host_rd.data),
        ]

        # round-robin grant over the valid links
        last = Signal(range(n_links), init=n_links - 1)
        req = Signal(n_links)
        for idx, link in enumerate(self.links):
            m.d.comb += req[idx].eq(link.valid)
        grant = round_robin_grant(m, req, last, n_links, "link")
        take = req.any()
        for idx, link in enumerate(self.links):
            m.d.comb += link.ready.eq(take & (grant == idx))
        label = Signal(cfg.event_label_bits)
        m.d.comb += label.eq(Value.cast(self.links[0].payload))
        for idx in range(1, n_links):
            with m.If(grant == idx):
                m.d.comb += label.eq(Value.cast(self.links[idx].payload))

        full = self.count == depth
        m.d.comb += [
            wr.addr.eq(self.count),
            wr.data.label.eq(label),
            wr.data.link.eq(grant),
            wr.data.time.eq(self.time),
            wr.en.eq(take & ~full & ~self.clear),
        ]
        with m.If(self.clear):
            m.d.sync += [self.count.eq(0), self.drops.eq(0), last.eq(n_links - 1)]
        with m.Elif(take):
            m.d.sync += last.eq(grant)
            with m.If(~full):
                m.d.sync += self.count.eq(self.count + 1)
            with m.Elif(self.drops != cmax):
                m.d.sync += self.drops.eq(self.drops + 1)
        return m
