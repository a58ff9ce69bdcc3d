"""Cycle-accurate reference of rtl/neuron_backend.py (docs/rtl.md, 3).

Ports as ints: ``spike_in``, ``enable``, ``spike_out``, ``refractory_active`` are
``n``-bit vectors (bit ``i`` = neuron ``i``); ``refractory`` is a list of ``n``
ints; ``prescale`` and ``clear`` are ints.
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig


class NeuronBackendRef:
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.n = cfg.n_neurons
        self.prescale_counter_bits = (1 << cfg.refractory_prescale_bits) - 1
        self.reset()

    def reset(self) -> None:
        """The state after the domain reset: all counters 0."""
        self.counters = [0] * self.n
        self.prescale_count = 0

    def tick(self, *, spike_in: int = 0, enable: int = 0, refractory=None,
             prescale: int = 0, clear: int = 0) -> dict:
        """Apply one cycle's inputs; return this cycle's outputs, then clock the state."""
        if refractory is None:
            refractory = [0] * self.n
        all_ones = (1 << self.n) - 1
        active = 0
        for i, count in enumerate(self.counters):
            if count:
                active |= 1 << i
        spike_out = spike_in & enable & ~active & all_ones
        is_tick = (self.prescale_count & ((1 << prescale) - 1)) == 0

        if clear:
            self.reset()
        else:
            for i in range(self.n):
                if (spike_out >> i) & 1:
                    self.counters[i] = refractory[i] & ((1 << self.cfg.refractory_bits) - 1)
                elif is_tick and self.counters[i]:
                    self.counters[i] -= 1
            self.prescale_count = (self.prescale_count + 1) & (
                (1 << self.prescale_counter_bits) - 1)
        return {"spike_out": spike_out, "refractory_active": active}
