"""SynapseMemory: the synapse array of one half (docs/rtl.md, section 1)."""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.layouts import synapse_layout


def row_bits(cfg: ChipConfig) -> int:
    """Width of a row index of one half."""
    return max(1, ceil_log2(cfg.rows_per_half))


def host_addr_bits(cfg: ChipConfig) -> int:
    """Width of the synapse memory's host address (``row * C + col``)."""
    return max(1, ceil_log2(cfg.rows_per_half * cfg.columns_per_half))


def row_port_signature(cfg: ChipConfig) -> wiring.Signature:
    """One row activation, as driven by the synapse drivers (``Out`` members)
    and consumed by the synapse memory (flipped): ``active`` (1 bit), ``row``
    (``row_bits``), ``address`` (``label_bits``, the event's synapse address)."""
    return wiring.Signature({
        "active": Out(1),
        "row": Out(row_bits(cfg)),
        "address": Out(cfg.label_bits),
    })


def _split_addr(addr, n_cols: int):
    """(row, col) of a row-major index; plain slices when ``n_cols`` is a power of 2."""
    if n_cols & (n_cols - 1) == 0:
        k = ceil_log2(n_cols)
        return addr[k:], addr[:k]
    return addr // n_cols, addr % n_cols


class SynapseMemory(wiring.Component):
    """The synapse array of one half: host port and ``2B`` event ports.

    Signature (all sizes from the :class:`~spikeloop.base.config.ChipConfig`; ``R =
    rows_per_half``, ``C = columns_per_half``, ``B = buses_per_half``, ``P = 2B``
    event ports):

    - ``host_addr`` In, ``ceil_log2(R*C)`` bits: synapse ``row * C + col``;
      sampled every cycle.
    - ``host_we`` In, 1 bit: write ``host_wdata`` at ``host_addr`` at the edge.
    - ``host_wdata`` In, ``synapse_layout(cfg)`` (weight, label).
    - ``host_rdata`` Out, ``synapse_layout(cfg)``: registered, 1 cycle latency.
    - ``rows[p]`` In, ``p = 0..P-1``: ``active`` (1 bit), ``row`` (``ceil_log2(R)``
      bits), ``address`` (``label_bits``); combinational.
    - ``weights[p]`` Out, ``ArrayLayout(unsigned(weight_bits), C)``; combinational
      from ``rows[p]`` and the stored array.

    ``rows`` is an array (``In(row_port_signature(cfg)).array(P)``) of
    sub-interfaces, so its Verilog ports are ``rows__<p>__active``,
    ``rows__<p>__row``, ``rows__<p>__address``; ``weights`` is an array
    (``Out(ArrayLayout).array(P)``) whose ports are ``weights__<p>`` (column 0 in the
    low bits).

    Behaviour:

    - Storage: a :class:`amaranth.lib.memory.Memory` of ``R`` row words
      (``ArrayLayout(synapse_layout, C)``), all zero at power-up (the memory's
      ``init``; like any RAM, a later domain reset does not clear the contents,
      only the host read register); a synapse lane of the row word is written on
      its own (write granularity one synapse).
    - Host port: in a cycle with ``host_we`` the synapse ``host_addr`` takes
      ``host_wdata`` at the clock edge.  ``host_rdata`` shows the synapse that
      ``host_addr`` addressed in the previous cycle, as it was *before* a write in
      that same cycle (read-before-write), so a write in cycle t is visible to reads
      issued from cycle t+1 (``host_rdata`` in cycle t+2).  Addresses ``>= R*C``
      (possible when ``R*C`` is not a power of two) are ignored by writes and read
      as 0.  No enable: the read port samples every cycle.
    - Event ports, combinational: ``weights[p][c] = weight[row][c]`` if
      ``rows[p].active`` and ``label[row][c] == rows[p].address``, else 0.  A row
      index ``>= R`` gives 0.  Every port reads its own row, so all ``P`` ports may
      hit the same row or different rows in the same cycle; a write is seen by the
      event ports from the cycle after it.

    - PPU row port (rtl/ppu.py's ``syn`` port, through the top level):
      ``ppu_row`` (In), ``ppu_re`` (In): a synchronous, non-transparent row
      read: ``ppu_rdata`` (Out, ``ArrayLayout(synapse_layout, C)``) shows the
      row that ``ppu_row`` addressed in the last cycle with ``ppu_re`` (as it
      was before a write in that cycle) and holds it while ``ppu_re`` is low;
      ``ppu_we`` (In, C bits, one per column) and ``ppu_wdata`` (In, row) write
      the enabled synapses of ``ppu_row`` at the edge.  A row ``>= R`` reads
      and writes nothing.  A PPU write and a host write in the same cycle
      share the one write port: the PPU's wins, the host's is not applied and
      ``host_lost`` (Out, combinational) is high in that cycle (the top level
      counts it).

    No run state, hence no ``clear``: the synapse array is configuration.
    """

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        n_ports = 2 * cfg.buses_per_half
        super().__init__({
            "host_addr": In(host_addr_bits(cfg)),
            "host_we": In(1),
            "host_wdata": In(synapse_layout(cfg)),
            "host_rdata": Out(synapse_layout(cfg)),
            "rows": In(row_port_signature(cfg)).array(n_ports),
            "weights": Out(data.ArrayLayout(unsigned(cfg.weight_bits),
                                            cfg.columns_per_half)).array(n_ports),
            "ppu_row": In(row_bits(cfg)),
            "ppu_re": In(1),
            "ppu_rdata": Out(data.ArrayLayout(synapse_layout(cfg), cfg.columns_per_half)),
            "ppu_we": In(cfg.columns_per_half),
            "ppu_wdata": In(data.ArrayLayout(synapse_layout(cfg), cfg.columns_per_half)),
            "host_lost": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        n_rows, n_cols = cfg.rows_per_half, cfg.columns_per_half
        m = Module()

        m.submodules.mem = mem = Memory(
            shape=data.ArrayLayout(synapse_layout(cfg), n_cols), depth=n_rows, init=[])

        # -- host port ------------------------------------------------------
        host_row, host_col = _split_addr(self.host_addr, n_cols)
        host_in_range = self.host_addr < n_rows * n_cols
        wr = mem.write_port(granularity=1)
        rd = mem.read_port(domain="sync")  # not transparent: read-before-write
        m.d.comb += [
            rd.addr.eq(host_row),
            rd.en.eq(1),
        ]
        ppu_in_range = Signal(name="ppu_in_range")
        m.d.comb += ppu_in_range.eq(self.ppu_row < n_rows)
        ppu_writes = Signal(name="ppu_writes")
        m.d.comb += ppu_writes.eq(self.ppu_we.any() & ppu_in_range)
        with m.If(ppu_writes):
            m.d.comb += [wr.addr.eq(self.ppu_row), wr.data.eq(self.ppu_wdata),
                         wr.en.eq(self.ppu_we)]
        with m.Else():
            m.d.comb += wr.addr.eq(host_row)
            for c in range(n_cols):
                m.d.comb += wr.data[c].eq(self.host_wdata)
            with m.If(self.host_we & host_in_range):
                m.d.comb += wr.en.eq(Const(1) << host_col)
        m.d.comb += self.host_lost.eq(self.host_we & host_in_range & ppu_writes)

        # -- PPU row read port (non-transparent, holds while ppu_re is low) --------
        prd = mem.read_port(domain="sync")
        m.d.comb += [prd.addr.eq(self.ppu_row), prd.en.eq(self.ppu_re & ppu_in_range),
                     self.ppu_rdata.eq(prd.data)]

        rd_col = Signal(range(n_cols), name="host_rd_col")
        rd_valid = Signal(name="host_rd_valid")
        m.d.sync += [rd_col.eq(host_col), rd_valid.eq(host_in_range)]
        with m.If(rd_valid):
            m.d.comb += self.host_rdata.eq(rd.data[rd_col])

        # -- event ports ------------------------------------------------------
        for p, (port, weights) in enumerate(zip(self.rows, self.weights, strict=True)):
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(port.row)
            hit_row = port.active
            if (1 << row_bits(cfg)) > n_rows:
                hit_row = hit_row & (port.row < n_rows)
            hit_row_sig = Signal(name=f"row_hit_{p}")
            m.d.comb += hit_row_sig.eq(hit_row)
            for c in range(n_cols):
                syn = rp.data[c]
                m.d.comb += weights[c].eq(
                    Mux(hit_row_sig & (syn.label == port.address), syn.weight, 0))
        return m
