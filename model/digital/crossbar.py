"""Cycle-accurate reference of the crossbar (rtl/crossbar.py, docs/rtl.md section 5).

Streams are split into lists per port field: ``inputs_valid``,
``inputs_payload`` and ``outputs_ready`` are inputs of :meth:`CrossbarRef.tick`;
``inputs_ready``, ``outputs_valid``, ``outputs_payload``, ``event_count`` and
``drop_count`` are its outputs.  Payloads are event labels packed as
``spikeloop/base/layouts.py`` packs them (the label integer).
"""
from __future__ import annotations

from collections import deque

from spikeloop.base.config import ChipConfig


class CrossbarRef:
    """Crossbar: per-node FIFOs (full = full at the start of the cycle), per-output
    round-robin arbiters that hold an unaccepted grant."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.n_in = cfg.crossbar_inputs
        self.n_out = cfg.crossbar_outputs
        self.n_nodes = self.n_in * self.n_out
        self.depth = cfg.crossbar_fifo_depth
        self.cmax = (1 << cfg.counter_bits) - 1
        self.reset()

    def reset(self) -> None:
        self.fifos = [deque() for _ in range(self.n_nodes)]
        self.event_count = [0] * self.n_nodes
        self.drop_count = [0] * self.n_nodes
        self.last = [self.n_in - 1] * self.n_out
        self.locked = [False] * self.n_out
        self.held = [0] * self.n_out

    def _grant(self, o: int) -> int | None:
        if self.locked[o]:
            return self.held[o]
        for k in range(1, self.n_in + 1):
            i = (self.last[o] + k) % self.n_in
            if self.fifos[i * self.n_out + o]:
                return i
        return None

    def peek(self, grants=None) -> dict:
        """``outputs_valid`` and ``outputs_payload`` of this cycle: they depend on
        the state only, so a caller can compute the sinks' ``ready`` from them
        before calling :meth:`tick`."""
        if grants is None:
            grants = [self._grant(o) for o in range(self.n_out)]
        return {
            "outputs_valid": [int(g is not None) for g in grants],
            "outputs_payload": [0 if g is None else self.fifos[g * self.n_out + o][0]
                                for o, g in enumerate(grants)],
        }

    def tick(self, *, clear=0, enable, mask, target, inputs_valid, inputs_payload,
             outputs_ready) -> dict:
        n_out = self.n_out
        grants = [self._grant(o) for o in range(n_out)]
        out = {
            "inputs_ready": [1] * self.n_in,
            **self.peek(grants),
            "event_count": list(self.event_count),
            "drop_count": list(self.drop_count),
        }
        if clear:
            self.reset()
            return out
        # pushes (full is decided on the levels at the start of the cycle)
        pushes = []
        for i in range(self.n_in):
            if not inputs_valid[i]:
                continue
            label = inputs_payload[i]
            for o in range(n_out):
                n = i * n_out + o
                if not (enable[n] and (label & mask[n]) == target[n]):
                    continue
                if len(self.fifos[n]) == self.depth:
                    self.drop_count[n] = min(self.drop_count[n] + 1, self.cmax)
                else:
                    pushes.append((n, label))
                    self.event_count[n] = min(self.event_count[n] + 1, self.cmax)
        # pops and arbiter state
        for o, g in enumerate(grants):
            if g is None:
                continue
            if outputs_ready[o]:
                self.fifos[g * n_out + o].popleft()
                self.last[o] = g
                self.locked[o] = False
            else:
                self.locked[o] = True
                self.held[o] = g
        for n, label in pushes:
            self.fifos[n].append(label)
        return out
