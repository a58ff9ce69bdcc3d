"""Cycle-accurate reference of rtl/synapse_memory.py (docs/rtl.md, section 1).

Pure Python.  Values are ints: synapses packed like ``synapse_layout``
(:func:`~spikeloop.base.layouts.pack_synapse`), row activations as
:class:`RowEvent` tuples, ``weights`` as a list (per port) of lists (per column).
"""
from __future__ import annotations

from typing import NamedTuple

from spikeloop.base.config import ChipConfig
from spikeloop.base.layouts import pack_synapse


class RowEvent(NamedTuple):
    """One row activation (the ``rows[p]`` port): ``active``, ``row``, ``address``."""

    active: int = 0
    row: int = 0
    address: int = 0


IDLE_ROW = RowEvent(0, 0, 0)


class SynapseMemoryRef:
    """Reference of :class:`spikeloop.rtl.synapse_memory.SynapseMemory`.

    ``tick(host_addr=0, host_we=0, host_wdata=0, rows=None)`` returns
    ``{"host_rdata": int, "weights": [[int] * C] * 2B}``; ``rows`` is a list of
    ``2B`` :class:`RowEvent` (or ``(active, row, address)`` tuples), idle when
    omitted.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.n_rows = cfg.rows_per_half
        self.n_cols = cfg.columns_per_half
        self.n_ports = 2 * cfg.buses_per_half
        self.reset()

    def reset(self) -> None:
        """The power-up state (all synapses zero)."""
        #: (weight, label) of every synapse, ``mem[row][col]``
        self.mem = [[(0, 0)] * self.n_cols for _ in range(self.n_rows)]
        self.rdata = 0
        self.ppu_rdata = [(0, 0)] * self.n_cols

    # -- host convenience (not part of the cycle model) ----------------------
    def synapse(self, row: int, col: int) -> tuple[int, int]:
        return self.mem[row][col]

    def tick(self, host_addr: int = 0, host_we: int = 0, host_wdata: int = 0,
             rows=None, ppu_row: int = 0, ppu_re: int = 0, ppu_we: int = 0,
             ppu_wdata=None) -> dict:
        """... plus the PPU row port: ``ppu_wdata`` a list of C (weight, label);
        outputs ``ppu_rdata`` (C (weight, label) tuples) and ``host_lost``."""
        cfg = self.cfg
        if rows is None:
            rows = [IDLE_ROW] * self.n_ports
        if len(rows) != self.n_ports:
            raise ValueError(f"rows has {len(rows)} entries, expected {self.n_ports}")

        weights = []
        for active, row, address in rows:
            ws = [0] * self.n_cols
            if active and row < self.n_rows:
                for c, (w, label) in enumerate(self.mem[row]):
                    if label == address:
                        ws[c] = w
            weights.append(ws)
        in_range = host_addr < self.n_rows * self.n_cols
        ppu_ok = ppu_row < self.n_rows
        ppu_writes = bool(ppu_we) and ppu_ok
        out = {"host_rdata": self.rdata, "weights": weights, "ppu_rdata": list(self.ppu_rdata),
               "host_lost": int(bool(host_we) and in_range and ppu_writes)}

        # -- clock edge: read-before-write ------------------------------------
        if ppu_re and ppu_ok:
            self.ppu_rdata = list(self.mem[ppu_row])
        row, col = divmod(host_addr, self.n_cols)
        self.rdata = pack_synapse(cfg, *self.mem[row][col]) if in_range else 0
        if ppu_writes:
            cur = list(self.mem[ppu_row])
            for c in range(self.n_cols):
                if (ppu_we >> c) & 1:
                    w, lab = ppu_wdata[c]
                    cur[c] = (w & cfg.weight_max, lab & ((1 << cfg.label_bits) - 1))
            self.mem[ppu_row] = cur
        elif host_we and in_range:
            w = host_wdata & cfg.weight_max
            label = (host_wdata >> cfg.weight_bits) & ((1 << cfg.label_bits) - 1)
            self.mem[row][col] = (w, label)
        return out
