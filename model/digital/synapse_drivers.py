"""Cycle-accurate reference of rtl/synapse_drivers.py (docs/rtl.md, section 2).

Pure Python.  Events are ints packed like ``event_layout``
(:func:`~spikeloop.base.layouts.pack_event`); row activations are
:class:`~spikeloop.model.digital.synapse_memory.RowEvent` tuples.
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.base.layouts import RowSign, unpack_event
from spikeloop.model.digital.synapse_memory import IDLE_ROW, RowEvent


class SynapseDriversRef:
    """Reference of :class:`spikeloop.rtl.synapse_drivers.SynapseDrivers`.

    ``tick(select, mask, row_sign, buses_valid, buses_payload, clear=0)``:
    ``select``/``mask`` lists of ``drivers_per_half`` ints, ``row_sign`` a list of
    ``rows_per_half`` ints, ``buses_valid``/``buses_payload`` lists of
    ``buses_per_half`` ints (the stream inputs of ``buses[b]``).  Returns
    ``{"buses_ready": [B ints], "rows": [2B RowEvent], "signs": [2B ints],
    "unmatched": [B ints]}``.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.n_buses = cfg.buses_per_half
        #: drivers of each bus, in priority order (lowest index first)
        self.drivers = [list(range(b, cfg.drivers_per_half, self.n_buses))
                        for b in range(self.n_buses)]
        self.counter_max = (1 << cfg.counter_bits) - 1
        self.reset()

    def reset(self) -> None:
        #: per bus: the drivers still to activate for the head event (empty: none)
        self.pending = [[] for _ in range(self.n_buses)]
        self.unmatched = [0] * self.n_buses

    def matches(self, select: list[int], mask: list[int], label: int, bus: int) -> list[int]:
        """The drivers of ``bus`` that match event ``label``, lowest first."""
        _, row_select, _ = unpack_event(self.cfg, label)
        return [d for d in self.drivers[bus]
                if ((row_select ^ select[d]) & mask[d]) == 0]

    def tick(self, select, mask, row_sign, buses_valid, buses_payload, clear: int = 0) -> dict:
        cfg = self.cfg
        rows = [IDLE_ROW] * (2 * self.n_buses)
        signs = [int(RowSign.OFF)] * (2 * self.n_buses)
        ready = [1] * self.n_buses
        out = {"buses_ready": ready, "rows": rows, "signs": signs,
               "unmatched": list(self.unmatched)}

        next_pending = [list(p) for p in self.pending]
        next_unmatched = list(self.unmatched)
        for b in range(self.n_buses):
            if not buses_valid[b]:
                continue
            label = buses_payload[b]
            address, _, _ = unpack_event(cfg, label)
            matched = self.matches(select, mask, label, b)
            cand = self.pending[b] if self.pending[b] else matched
            if cand:
                d, remaining = cand[0], cand[1:]
                rows[2 * b] = RowEvent(1, 2 * d, address)
                rows[2 * b + 1] = RowEvent(1, 2 * d + 1, address)
                signs[2 * b] = row_sign[2 * d]
                signs[2 * b + 1] = row_sign[2 * d + 1]
            else:
                remaining = []
            ready[b] = int(not remaining)
            next_pending[b] = remaining
            if not self.pending[b] and not matched:
                next_unmatched[b] = min(self.unmatched[b] + 1, self.counter_max)

        if clear:
            self.reset()
        else:
            self.pending, self.unmatched = next_pending, next_unmatched
        return out
