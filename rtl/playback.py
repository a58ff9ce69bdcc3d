"""Event playback: the host's timed input events, released onto the external
links of the crossbar (docs/rtl.md, section 6).

Sizes (from the ChipConfig): ``L = n_ext_inputs`` links, ``P = playback_depth``
entries of ``E = timed_event_layout(cfg, L)`` (``label``, ``link``, ``time``).

Signature:

- ``host_addr`` (In, ``range(P)``), ``host_we`` (In, 1), ``host_wdata`` (In, E):
  the host's write port; ``host_rdata`` (Out, E): synchronous read, the entry
  addressed in the previous cycle, old contents when that cycle also wrote it.
  Out-of-range addresses (non-power-of-two P) ignore writes and read entry 0.
- ``count`` (In, ``P.bit_length()`` bits, config): entries ``0..count-1`` are
  played (values above P mean P).
- ``time`` (In, ``timestamp_bits``): the top level's cycle counter.
- ``links[l]``, ``l < L`` (Out, ``stream.Signature(event_layout(cfg))``), with
  backpressure; ``payload`` is 0 while ``valid`` is low.
- ``late`` (Out, ``counter_bits``): entries transferred in a cycle with ``time >
  entry.time``; register, saturating.
- ``done`` (Out, 1): all ``count`` entries are played (combinational from the
  play pointer and ``count``; high at once when ``count`` is 0).
- ``clear`` (In, 1): synchronous rewind: play pointer and ``late`` to 0 (the
  memory is kept).

Behaviour and timing: the play pointer ``ptr`` indexes the next entry.  A
synchronous read port whose address is the pointer's next value keeps the head
entry ``mem[ptr]`` at its data output, so entries can leave back to back, one
per cycle.  In a cycle where ``ptr < count`` and ``time >= head.time`` the
head is presented (``valid``) on ``links[head.link]`` with ``payload =
head.label``; it is played (``ptr`` advances) in the cycle it is transferred
(``valid & ready``), which is also the cycle ``late`` looks at.  An entry whose
``link >= L`` (only possible for L not a power of two) is consumed at its time
without appearing on any link.  The head is read from memory one cycle before
it is presented: a host write to the head entry shows one cycle later (the
read port is not transparent), and after ``clear`` the head is entry 0 in the
next cycle.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.layouts import event_layout, timed_event_layout


class EventPlayback(wiring.Component):
    """Timed input events to the crossbar's external links; see the module docstring."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        entry = timed_event_layout(cfg, cfg.n_ext_inputs)
        super().__init__({
            "host_addr": In(range(cfg.playback_depth)),
            "host_we": In(1),
            "host_wdata": In(entry),
            "host_rdata": Out(entry),
            "count": In(cfg.playback_depth.bit_length()),
            "time": In(cfg.timestamp_bits),
            "links": Out(stream.Signature(event_layout(cfg))).array(cfg.n_ext_inputs),
            "late": Out(cfg.counter_bits),
            "done": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        depth, n_links = cfg.playback_depth, cfg.n_ext_inputs
        entry = timed_event_layout(cfg, n_links)
        cmax = (1 << cfg.counter_bits) - 1

        m.submodules.mem = mem = Memory(shape=entry, depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        host_rd = mem.read_port()

        host_ok = self.host_addr < depth
        m.d.comb += [
            wr.addr.eq(self.host_addr),
            wr.data.eq(self.host_wdata),
            wr.en.eq(self.host_we & host_ok),
            host_rd.addr.eq(Mux(host_ok, self.host_addr, 0)),
            self.host_rdata.eq(host_rd.data),
        ]

        ptr = Signal(range(depth + 1))
        n_play = Signal(range(depth + 1))
        m.d.comb += n_play.eq(Mux(self.count > depth, depth, self.count))
        head = rd.data
        active = ptr < n_play
        due = Signal()
        m.d.comb += [
            due.eq(active & (self.time >= head.time)),
            self.done.eq(~active),
        ]
        sink_ready = Signal()
        m.d.comb += sink_ready.eq(head.link >= n_links)
        for link_idx, link in enumerate(self.links):
            here = head.link == link_idx
            m.d.comb += link.valid.eq(due & here)
            with m.If(due & here):
                m.d.comb += link.payload.eq(head.label)
            with m.If(here & link.ready):
                m.d.comb += sink_ready.eq(1)
        take = Signal()
        m.d.comb += take.eq(due & sink_ready)

        ptr_next = Signal(range(depth + 1))
        with m.If(self.clear):
            m.d.comb += ptr_next.eq(0)
        with m.Else():
            m.d.comb += ptr_next.eq(ptr + take)
        m.d.comb += rd.addr.eq(Mux(ptr_next < depth, ptr_next, 0))
        m.d.sync += ptr.eq(ptr_next)

        with m.If(self.clear):
            m.d.sync += self.late.eq(0)
        with m.Elif(take & (self.time > head.time) & (self.late != cmax)):
            m.d.sync += self.late.eq(self.late + 1)
        return m
