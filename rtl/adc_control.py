"""AdcControl: periodic sampling of the column ADCs into a buffer the host reads
(docs/rtl.md, 7).

Signature (``n = cfg.n_neurons``, ``S = cfg.adc_buffer_depth``; every port in the
``sync`` domain):

- ``period`` (In, ``adc_period_bits``, config): sampling period in cycles; 0 = off.
- ``codes`` (In, ``ArrayLayout(unsigned(adc_bits), n)``): the ADC codes of all
  columns, driven by the analog side.
- ``clear`` (In, 1): synchronous clear of the phase counter, ``n_samples`` and
  ``overflow`` (and of the ring's write pointer; the buffer contents stay; they
  are overwritten by later samples).
- ``sample`` (Out, 1, combinational): high in the cycles where the ADC samples.
- ``n_samples`` (Out, ``bit_length(S)`` bits): samples in the buffer, 0..S.  With
  ``cfg.adc_ring``: ``counter_bits`` bits, the samples taken since the clear,
  saturating at ``2**counter_bits - 1``.
- ``overflow`` (Out, ``counter_bits``): samples lost because the buffer was full;
  saturates at ``2**counter_bits - 1``.  Always 0 with ``cfg.adc_ring``.
- ``host_addr`` (In, ``range(S * n)``): ``sample * n + neuron``.
- ``host_rdata`` (Out, ``adc_bits``): synchronous read: the code addressed by
  ``host_addr`` in the previous cycle (0 for an address ``>= S * n``, and 0 after
  reset until the first read).  Not transparent: a read of the entry written in the
  same cycle returns its old contents.

- ``ppu_addr`` (In, ``max(1, ceil_log2(S))`` bits), ``ppu_re`` (In): the PPU's
  read port: ``ppu_rdata`` (Out, ``ArrayLayout(unsigned(adc_bits), n)``) shows
  the sample that ``ppu_addr`` addressed in the last cycle with ``ppu_re``
  (non-transparent: a sample written in that same cycle reads its old
  contents) and holds it while ``ppu_re`` is low; an address ``>= S`` reads
  nothing.

Behaviour: a phase counter is 0 after reset and ``clear``.  In a cycle where
``period != 0`` and ``phase + 1 >= period`` (``phase == period - 1`` while
``period`` is constant; the ``>=`` makes a period lowered below the phase take
effect at once), ``sample`` is high and the phase restarts at 0; otherwise the
phase counts up (it stays 0 while ``period == 0``).  So with a constant period
the samples fall in cycles ``period - 1, 2*period - 1, ...`` after a clear
(every cycle for ``period == 1``).  In a sampling cycle ``codes`` are written as
buffer entry ``n_samples`` and ``n_samples`` increments; when ``n_samples == S``
the sample is lost and ``overflow`` increments instead.  In a ``clear`` cycle
``sample`` is low and nothing is written.

The ring (``cfg.adc_ring``; its logic exists only in that variant): a write
pointer ``wptr`` (0..S-1) is 0 after reset and ``clear``; in a sampling cycle
``codes`` are written as entry ``wptr`` and ``wptr`` advances to
``(wptr + 1) % S`` (S need not be a power of two).  No sample is refused:
after ``k`` samples entry ``j`` holds the latest sample ``i < k`` with
``i % S == j``.  The phase, ``sample`` and both read ports are as above.

Storage: one ``amaranth.lib.memory.Memory`` of ``S`` rows of all ``n`` codes (one
write port, written a whole row per sample; one synchronous read port whose row is
``host_addr // n``, and the column ``host_addr % n`` is selected from the read
row).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig


class AdcControl(wiring.Component):
    """ADC sampling control and sample buffer; see the module docstring."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        n, depth = cfg.n_neurons, cfg.adc_buffer_depth
        self.row_layout = data.ArrayLayout(unsigned(cfg.adc_bits), n)
        super().__init__({
            "period": In(cfg.adc_period_bits),
            "codes": In(self.row_layout),
            "clear": In(1),
            "sample": Out(1),
            "n_samples": Out(cfg.counter_bits if cfg.adc_ring else range(depth + 1)),
            "overflow": Out(cfg.counter_bits),
            "host_addr": In(range(depth * n)),
            "host_rdata": Out(cfg.adc_bits),
            "ppu_addr": In(max(1, (depth - 1).bit_length())),
            "ppu_re": In(1),
            "ppu_rdata": Out(self.row_layout),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        n, depth = cfg.n_neurons, cfg.adc_buffer_depth

        # -- sampling phase -----------------------------------------------------
        phase = Signal(cfg.adc_period_bits)
        due = Signal()
        m.d.comb += [
            due.eq((self.period != 0) & (phase + 1 >= self.period)),
            self.sample.eq(due & ~self.clear),
        ]

        # -- buffer -------------------------------------------------------------
        m.submodules.buffer = buffer = Memory(shape=self.row_layout, depth=depth, init=[])
        wport = buffer.write_port()
        rport = buffer.read_port()
        if cfg.adc_ring:
            self._ring(m, wport, phase, due)
        else:
            self._fill(m, wport, phase, due)

        # -- host read port ----------------------------------------------------
        if n & (n - 1) == 0:
            shift = n.bit_length() - 1
            row, col = self.host_addr[shift:], self.host_addr[:shift]
        else:
            row, col = self.host_addr // n, self.host_addr % n
        col_q = Signal(range(n))
        in_range_q = Signal()
        m.d.comb += rport.addr.eq(row)
        m.d.sync += [col_q.eq(col), in_range_q.eq(self.host_addr < depth * n)]
        m.d.comb += self.host_rdata.eq(Mux(in_range_q, rport.data[col_q], 0))

        # -- PPU read port: one whole sample -------------------------------------
        pport = buffer.read_port()
        m.d.comb += [pport.addr.eq(self.ppu_addr),
                     pport.en.eq(self.ppu_re & (self.ppu_addr < depth)),
                     self.ppu_rdata.eq(pport.data)]
        return m

    def _fill(self, m: Module, wport, phase, due) -> None:
        """The buffer filled from entry 0; a sample is lost (counted in ``overflow``)
        when it is full."""
        cfg, depth = self.cfg, self.cfg.adc_buffer_depth
        full = Signal()
        m.d.comb += [
            full.eq(self.n_samples == depth),
            wport.addr.eq(self.n_samples),
            wport.data.eq(self.codes),
            wport.en.eq(self.sample & ~full),
        ]

        overflow_max = (1 << cfg.counter_bits) - 1
        with m.If(self.clear):
            m.d.sync += [phase.eq(0), self.n_samples.eq(0), self.overflow.eq(0)]
        with m.Else():
            with m.If(due):
                m.d.sync += phase.eq(0)
            with m.Elif(self.period != 0):
                m.d.sync += phase.eq(phase + 1)
            with m.If(self.sample & ~full):
                m.d.sync += self.n_samples.eq(self.n_samples + 1)
            with m.If(self.sample & full & (self.overflow != overflow_max)):
                m.d.sync += self.overflow.eq(self.overflow + 1)

    def _ring(self, m: Module, wport, phase, due) -> None:
        """The ring: every sample written at ``wptr``, which wraps at ``S``;
        ``n_samples`` counts the samples taken (saturating); ``overflow`` stays 0."""
        cfg, depth = self.cfg, self.cfg.adc_buffer_depth
        wptr = Signal(range(depth), name="wptr")
        m.d.comb += [
            wport.addr.eq(wptr),
            wport.data.eq(self.codes),
            wport.en.eq(self.sample),
            self.overflow.eq(0),
        ]
        count_max = (1 << cfg.counter_bits) - 1
        with m.If(self.clear):
            m.d.sync += [phase.eq(0), self.n_samples.eq(0), wptr.eq(0)]
        with m.Else():
            with m.If(due):
                m.d.sync += phase.eq(0)
            with m.Elif(self.period != 0):
                m.d.sync += phase.eq(phase + 1)
            with m.If(self.sample):
                m.d.sync += wptr.eq(Mux(wptr == depth - 1, 0, wptr + 1))
                with m.If(self.n_samples != count_max):
                    m.d.sync += self.n_samples.eq(self.n_samples + 1)
