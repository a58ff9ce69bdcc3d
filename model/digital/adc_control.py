"""Cycle-accurate reference of rtl/adc_control.py (docs/rtl.md, 7).

Inputs: ``period``, ``codes`` (list of ``n`` ints), ``clear``, ``host_addr``,
``ppu_addr``, ``ppu_re``.
Outputs: ``sample``, ``n_samples``, ``overflow``, ``host_rdata``, ``ppu_rdata``
(list of ``n`` codes).

``cfg.adc_ring``: the ring variant (rtl/adc_control.py): every sample is written
at the write pointer ``wptr``, which wraps at ``adc_buffer_depth``;
``n_samples`` counts the samples taken, saturating at ``2**counter_bits - 1``;
``overflow`` stays 0.
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig


class AdcControlRef:
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.n = cfg.n_neurons
        self.depth = cfg.adc_buffer_depth
        self.overflow_max = (1 << cfg.counter_bits) - 1
        self.ring = cfg.adc_ring
        self.code_mask = (1 << cfg.adc_bits) - 1
        #: buffer contents, ``buffer[sample][neuron]``; not cleared by ``clear``
        self.buffer = [[0] * self.n for _ in range(self.depth)]
        self.reset()

    def reset(self) -> None:
        """The state after the domain reset (the memory keeps its contents, as the RTL's)."""
        self.phase = 0
        self.n_samples = 0
        self.overflow = 0
        #: the ring's write pointer (``cfg.adc_ring``; stays 0 otherwise)
        self.wptr = 0
        self.rdata = 0
        self.ppu_rdata = [0] * self.n

    def read(self, sample: int, neuron: int) -> int:
        """The buffer entry of ``sample``, ``neuron`` (a host read, without its latency)."""
        return self.buffer[sample][neuron]

    def host_rows(self) -> list[list[int]]:
        """What the host reads back after a run: buffer entries
        ``0 .. min(n_samples, S) - 1`` in entry order (with the ring, after more
        than ``S`` samples, entry ``j`` holds the latest sample ``i`` with
        ``i % S == j``)."""
        return [list(self.buffer[i]) for i in range(min(self.n_samples, self.depth))]

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
            self.phase = self.n_samples = self.overflow = self.wptr = 0
            return out
        if due:
            self.phase = 0
        elif period:
            self.phase += 1
        if sample and self.ring:
            self.buffer[self.wptr] = [c & self.code_mask for c in codes]
            self.wptr = (self.wptr + 1) % self.depth
            self.n_samples = min(self.n_samples + 1, self.overflow_max)
        elif sample:
            if self.n_samples < self.depth:
                self.buffer[self.n_samples] = [c & self.code_mask for c in codes]
                self.n_samples += 1
            else:
                self.overflow = min(self.overflow + 1, self.overflow_max)
        return out
