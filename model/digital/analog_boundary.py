"""Cycle-accurate reference of rtl/analog_boundary.py (docs/rtl.md, section 8).

Pure Python: ``weights`` is a list (per port) of lists (per column) of ints,
``signs`` a list of ints (:class:`~spikeloop.base.layouts.RowSign` values),
``exc_sum``/``inh_sum`` lists (per column) of ints.
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.base.layouts import RowSign


class AnalogBoundaryRef:
    """Reference of :class:`spikeloop.rtl.analog_boundary.AnalogBoundary`.

    ``tick(weights, signs, clear=0)`` returns ``{"exc_sum": [C ints],
    "inh_sum": [C ints], "step_done": int, "phase": int}``.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.n_cols = cfg.columns_per_half
        self.n_ports = 2 * cfg.buses_per_half
        self.step_cycles = cfg.analog_step_cycles
        self.reset()

    def reset(self) -> None:
        self.phase = 0
        self.exc_acc = [0] * self.n_cols
        self.inh_acc = [0] * self.n_cols
        self.exc_sum = [0] * self.n_cols
        self.inh_sum = [0] * self.n_cols
        self.step_done = 0

    def tick(self, weights, signs, clear: int = 0) -> dict:
        out = {"exc_sum": list(self.exc_sum), "inh_sum": list(self.inh_sum),
               "step_done": self.step_done, "phase": self.phase}
        if clear:
            self.reset()
            return out
        exc = list(self.exc_acc)
        inh = list(self.inh_acc)
        for p in range(self.n_ports):
            if signs[p] == RowSign.EXC:
                target = exc
            elif signs[p] == RowSign.INH:
                target = inh
            else:
                continue
            for c in range(self.n_cols):
                target[c] += weights[p][c]
        last = self.phase == self.step_cycles - 1
        if last:
            self.exc_sum, self.inh_sum = exc, inh
            self.exc_acc = [0] * self.n_cols
            self.inh_acc = [0] * self.n_cols
            self.phase = 0
        else:
            self.exc_acc, self.inh_acc = exc, inh
            self.phase += 1
        self.step_done = int(last)
        return out
