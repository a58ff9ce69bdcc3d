"""SynapseDrivers: event buses to row activations, one half (docs/rtl.md, section 2)."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.layouts import event_layout
from spikeloop.rtl.synapse_memory import row_port_signature


def bus_drivers(cfg: ChipConfig, bus: int) -> list[int]:
    """The synapse drivers of a half that listen to bus ``bus``, in priority order."""
    return list(range(bus, cfg.drivers_per_half, cfg.buses_per_half))


class SynapseDrivers(wiring.Component):
    """The synapse drivers of one half.

    Sizes: ``D = drivers_per_half``, ``R = rows_per_half = 2D``, ``B =
    buses_per_half``, ``S = row_select_bits``.  Driver ``d`` listens to bus ``d %
    B`` and drives rows ``2d`` (on port ``2b``) and ``2d+1`` (on port ``2b+1``).

    Signature:

    - ``select`` In, ``ArrayLayout(unsigned(S), D)``: ``select[d]`` (config).
    - ``mask`` In, ``ArrayLayout(unsigned(S), D)``: ``mask[d]`` (config).
    - ``row_sign`` In, ``ArrayLayout(unsigned(2), R)``: ``row_sign[r]``, a
      :class:`~spikeloop.base.layouts.RowSign` (config; 3 is passed through).
    - ``clear`` In, 1 bit: synchronous; empties the pending masks and zeroes
      ``unmatched`` (configuration is untouched).
    - ``buses[b]`` In, ``b = 0..B-1``: ``stream.Signature(event_layout(cfg))``
      (``valid``, ``payload`` in; ``ready`` out, combinational).
    - ``rows[p]`` Out, ``p = 0..2B-1``: ``row_port_signature(cfg)`` (``active``,
      ``row``, ``address``), combinational; all fields are 0 when inactive.
    - ``signs[p]`` Out, 2 bits: ``row_sign`` of the activated row, ``OFF`` (0)
      when inactive; combinational.
    - ``unmatched[b]`` Out, ``counter_bits``: bus events that matched no driver
      (registered, saturating).

    Verilog port names: ``select``, ``mask``, ``row_sign``, ``clear``,
    ``buses__<b>__valid``/``__ready``/``__payload``, ``rows__<p>__active``/
    ``__row``/``__address``, ``signs__<p>``, ``unmatched__<b>``.

    Behaviour, per bus ``b`` (independent of the other buses): driver ``d``
    matches the event when ``((row_select ^ select[d]) & mask[d]) == 0``.  The
    candidates of a cycle are the ``pending`` mask when it is non-zero (an event
    under way), else the matching drivers of the head event, and none when
    ``valid`` is low.  The lowest-index candidate is activated in this cycle
    (zero latency: in the first cycle the event is valid); ``ready`` is high when
    no candidate is left after it (so immediately for 0 or 1 matches, and
    ``ready`` is also high while ``valid`` is low).  At the edge, if ``valid``:
    ``pending <= remaining candidates`` (0 on the transfer); if ``valid`` is low
    the pending mask holds (a lawful source never drops ``valid`` before the
    transfer).  A transfer of an event without a match increments
    ``unmatched[b]``.  ``clear`` has priority over both updates; it does not
    change the outputs of its own cycle.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        n_buses = cfg.buses_per_half
        sel = unsigned(cfg.row_select_bits)
        super().__init__({
            "select": In(data.ArrayLayout(sel, cfg.drivers_per_half)),
            "mask": In(data.ArrayLayout(sel, cfg.drivers_per_half)),
            "row_sign": In(data.ArrayLayout(unsigned(2), cfg.rows_per_half)),
            "clear": In(1),
            "buses": In(stream.Signature(event_layout(cfg))).array(n_buses),
            "rows": Out(row_port_signature(cfg)).array(2 * n_buses),
            "signs": Out(2).array(2 * n_buses),
            "unmatched": Out(cfg.counter_bits).array(n_buses),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        counter_max = (1 << cfg.counter_bits) - 1

        for b, bus in enumerate(self.buses):
            drivers = bus_drivers(cfg, b)
            n = len(drivers)
            match = Signal(n, name=f"match_{b}")
            pending = Signal(n, name=f"pending_{b}")
            cand = Signal(n, name=f"cand_{b}")
            lowest = Signal(n, name=f"lowest_{b}")
            remaining = Signal(n, name=f"remaining_{b}")
            row_select = bus.payload.row_select

            for j, d in enumerate(drivers):
                m.d.comb += match[j].eq(
                    ((row_select ^ self.select[d]) & self.mask[d]) == 0)
            with m.If(bus.valid):
                with m.If(pending != 0):
                    m.d.comb += cand.eq(pending)
                with m.Else():
                    m.d.comb += cand.eq(match)
            m.d.comb += [
                lowest.eq(cand & (~cand + 1)),
                remaining.eq(cand & ~lowest),
                bus.ready.eq(remaining == 0),
            ]

            even, odd = self.rows[2 * b], self.rows[2 * b + 1]
            # the lowest set bit wins: later assignments take precedence
            for j in reversed(range(n)):
                d = drivers[j]
                with m.If(cand[j]):
                    m.d.comb += [
                        even.active.eq(1), even.row.eq(2 * d),
                        even.address.eq(bus.payload.address),
                        odd.active.eq(1), odd.row.eq(2 * d + 1),
                        odd.address.eq(bus.payload.address),
                        self.signs[2 * b].eq(self.row_sign[2 * d]),
                        self.signs[2 * b + 1].eq(self.row_sign[2 * d + 1]),
                    ]

            count = self.unmatched[b]
            with m.If(self.clear):
                m.d.sync += [pending.eq(0), count.eq(0)]
            with m.Elif(bus.valid):
                m.d.sync += pending.eq(remaining)
                with m.If((pending == 0) & (match == 0) & (count != counter_max)):
                    m.d.sync += count.eq(count + 1)
        return m

