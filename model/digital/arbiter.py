"""Cycle-accurate reference of rtl/arbiter.py (docs/rtl.md, 4).

Inputs: ``spikes`` (``P``-bit int), ``labels`` (list of ``P`` ints),
``events_ready``, ``clear``.  Outputs: ``events_valid``, ``events_payload`` (the
packed event label, 0 while not valid), ``drops``.
"""
from __future__ import annotations

from collections import deque

from spikeloop.base.config import ChipConfig


class SpikeArbiterRef:
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.p = cfg.neurons_per_block
        self.depth = cfg.arbiter_fifo_depth
        self.drops_max = (1 << cfg.counter_bits) - 1
        self.reset()

    def reset(self) -> None:
        self.pending = 0
        self.fifo: deque[int] = deque()
        self.drops = 0

    def tick(self, *, spikes: int = 0, labels=None, events_ready: int = 0,
             clear: int = 0) -> dict:
        if labels is None:
            labels = [0] * self.p
        spikes &= (1 << self.p) - 1
        valid = int(bool(self.fifo))
        out = {
            "events_valid": valid,
            "events_payload": self.fifo[0] if valid else 0,
            "drops": self.drops,
        }
        if clear:
            self.reset()
            return out

        granted = 0
        if len(self.fifo) < self.depth:          # the FIFO's w_rdy: not full
            granted = self.pending & -self.pending
        dropped = spikes & self.pending & ~granted
        if valid and events_ready:
            self.fifo.popleft()
        if granted:
            j = granted.bit_length() - 1
            self.fifo.append(labels[j] & ((1 << self.cfg.event_label_bits) - 1))
        self.pending = (self.pending & ~granted) | spikes
        self.drops = min(self.drops + bin(dropped).count("1"), self.drops_max)
        return out
