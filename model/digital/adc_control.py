"""Cycle-accurate reference of rtl/adc_control.py (docs/rtl.md, 7).

Inputs: ``period``, ``codes`` (list of ``n`` ints), ``clear``, ``host_addr``,
``ppu_addr``, ``ppu_re``.
Outputs: ``sample``, ``n_samples``, ``overflow``, ``host_rdata``, ``ppu_rdata``
(list of ``n`` codes).
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig


class AdcControlRef:
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.n = cfg.n_neurons
        self.depth = cfg.adc_buffer_depth
        self.overflow_max = (1 << cfg.counter_bits) - 1
        self.code_mask = (1 << cfg.adc_bits) - 1
        #: buffer contents, ``buffer[sample][neuron]``; not cleared by ``clear``
        self.buffer = [[0] * self.n for _ in range(self.depth)]
        self.reset()

    def reset(self) -> None:
        """The state after the domain reset (the memory keeps its contents, as the RTL's)."""
        self.phase = 0
        self.n_samples = 0
        self.overflow = 0
        self.rdata = 0
        self.ppu_rdata = [0] * self.n

    def read(self, sample: int, neuron: int) -> int:
        """The buffer entry of ``sample``, ``neuron`` (a host read, without its latency)."""
        return self.buffer[sample][neuron]

    def tick(self, *, period: int = 0, codes=None, clear: int = 0, host_addr: int = 0,
             ppu_addr: int = 0, ppu_re: int = 0) -> dict:
        if codes is None:
            codes = [0] * self.n
        due = period != 0 and self.phase + 1 >= period
        sample = int(due and not clear)
        out = {"sample": sample, "n_samples": self.n_samples, "overflow": self.overflow,
               "host_rdata": self.rdata, "ppu_rdata": self.ppu_rdata}
        if ppu_re and ppu_addr < self.depth:
            self.ppu_rdata = list(self.buffer[ppu_addr])

        # synchronous, non-transparent read: the value before this cycle's write
        if host_addr < self.depth * self.n:
            s, c = divmod(host_addr, self.n)
            self.rdata = self.buffer[s][c]
        else:
            self.rdata = 0

        if clear:
            self.phase = self.n_samples = self.overflow = 0
            return out
        if due:
            self.phase = 0
        elif period:
            self.phase += 1
        if sample:
            if self.n_samples < self.depth:
                self.buffer[self.n_samples] = [c & self.code_mask for c in codes]
                self.n_samples += 1
            else:
                self.overflow = min(self.overflow + 1, self.overflow_max)
        return out
