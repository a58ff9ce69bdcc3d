"""Host configuration bus: the register bank and the decoder of the address map.

Signature (all sizes from the ChipConfig through :class:`~spikeloop.base.addrmap.AddressMap`):

- ``addr`` (In, ``addr_bits``), ``wdata`` (In, 32), ``we`` (In, 1), ``re`` (In, 1):
  one access per cycle from the host.
- ``rdata`` (Out, 32), ``rvalid`` (Out, 1): the read data of the access
  presented in the previous cycle (one cycle of latency for every region).
  Unmapped addresses read as 0 and ignore writes; ``bad_access`` (Out, counter)
  counts accesses to unmapped addresses and writes to read-only regions, so a
  wrong address never goes unnoticed.
- ``reg`` regions: ``<name>`` (Out, ``ArrayLayout(unsigned(bits), count)``): the
  configuration registers, all 0 after reset.
- ``status`` regions: ``<name>`` (In, ``ArrayLayout(unsigned(bits), count)``).
- ``mem`` regions: ``<name>_addr`` (Out, entry index), ``<name>_we`` (Out),
  ``<name>_wdata`` (Out, entry bits), ``<name>_rdata`` (In, entry bits): a
  memory's host port with a synchronous read (data the cycle after the address).
  For two-word entries (playback, record) a write of word 0 is held in a
  register and the entry is written when word 1 is written.
- ``run`` (Out): bit 0 of ``ctrl``; ``clear`` (Out): high for the one cycle after
  a write of ``ctrl`` with bit 1 set.
- ``pulse`` regions: ``<name>`` (Out, ``bits``): each bit written 1 is high for
  the one cycle after the write (like ``clear``), 0 otherwise; reads give 0.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import ChipConfig


def _array(bits: int, count: int) -> data.ArrayLayout:
    return data.ArrayLayout(unsigned(bits), count)


class HostBus(wiring.Component):
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.amap = AddressMap(cfg)
        dw = cfg.host_data_bits
        sig = {
            "addr": In(self.amap.addr_bits),
            "wdata": In(dw),
            "we": In(1),
            "re": In(1),
            "rdata": Out(dw),
            "rvalid": Out(1),
            "bad_access": Out(cfg.counter_bits),
            "run": Out(1),
            "clear": Out(1),
        }
        for r in self.amap:
            if r.kind == "reg":
                sig[r.name] = Out(_array(r.bits, r.count))
            elif r.kind == "status":
                sig[r.name] = In(_array(r.bits, r.count))
            elif r.kind == "pulse":
                sig[r.name] = Out(r.bits)
            elif r.kind == "mem":
                sig[f"{r.name}_addr"] = Out(range(r.count))
                sig[f"{r.name}_rdata"] = In(r.bits)
                if r.writable:
                    sig[f"{r.name}_we"] = Out(1)
                    sig[f"{r.name}_wdata"] = Out(r.bits)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        cfg, amap = self.cfg, self.amap
        dw = cfg.host_data_bits
        addr_bits = amap.addr_bits

        # registered read: which region was read, and the register data
        rd_region = Signal(range(len(amap.regions) + 1))
        rd_word = Signal()
        rd_regdata = Signal(dw)
        m.d.sync += rd_region.eq(0), self.rvalid.eq(self.re)
        bad = Signal()

        ctrl_run = Signal()
        m.d.comb += self.run.eq(ctrl_run)
        m.d.sync += self.clear.eq(0)

        hit_any = Signal()
        for idx, r in enumerate(amap, start=1):
            size_bits = (r.size - 1).bit_length()
            hit = Signal(name=f"hit_{r.name}")
            m.d.comb += hit.eq(self.addr[size_bits:addr_bits] == (r.base >> size_bits))
            offset = Signal(max(1, size_bits), name=f"off_{r.name}")
            if size_bits:
                m.d.comb += offset.eq(self.addr[:size_bits])
            in_range = Signal(name=f"in_{r.name}")
            m.d.comb += in_range.eq(hit & (offset < r.count * r.words))
            with m.If(in_range):
                m.d.comb += hit_any.eq(1)
            with m.If(in_range & self.re):
                m.d.sync += rd_region.eq(idx)
            if r.words == 2:
                index = offset[1:] if size_bits > 1 else Const(0, 1)
                word = offset[0]
            else:
                index, word = offset, Const(0, 1)
            with m.If(in_range & self.re):
                m.d.sync += rd_word.eq(word)

            if r.kind == "ctrl":
                with m.If(in_range & self.we):
                    m.d.sync += ctrl_run.eq(self.wdata[0]), self.clear.eq(self.wdata[1])
                with m.If(in_range & self.re):
                    m.d.sync += rd_regdata.eq(ctrl_run)
            elif r.kind == "pulse":
                pulse = getattr(self, r.name)
                m.d.sync += pulse.eq(0)
                with m.If(in_range & self.we):
                    m.d.sync += pulse.eq(self.wdata[:r.bits])
                with m.If(in_range & self.re):
                    m.d.sync += rd_regdata.eq(0)
            elif r.kind in ("reg", "status"):
                port = getattr(self, r.name)
                flat = port.as_value()
                if r.count == 1:
                    entry = flat
                else:
                    entry = flat.word_select(index, r.bits)
                if r.kind == "reg":
                    with m.If(in_range & self.we):
                        m.d.sync += entry.eq(self.wdata[:r.bits])
                with m.If(in_range & self.re):
                    m.d.sync += rd_regdata.eq(entry)
            else:  # mem
                m.d.comb += getattr(self, f"{r.name}_addr").eq(index)
                if r.writable and r.words == 1:
                    m.d.comb += [
                        getattr(self, f"{r.name}_we").eq(in_range & self.we),
                        getattr(self, f"{r.name}_wdata").eq(self.wdata[:r.bits]),
                    ]
                elif r.writable:
                    hold = Signal(dw, name=f"{r.name}_word0")
                    with m.If(in_range & self.we & (word == 0)):
                        m.d.sync += hold.eq(self.wdata)
                    m.d.comb += [
                        getattr(self, f"{r.name}_we").eq(in_range & self.we & (word == 1)),
                        getattr(self, f"{r.name}_wdata").eq(
                            Cat(hold, self.wdata)[:r.bits]),
                    ]
            if not r.writable:
                with m.If(in_range & self.we):
                    m.d.comb += bad.eq(1)

        with m.If((self.re | self.we) & ~hit_any):
            m.d.comb += bad.eq(1)
        with m.If(bad & (self.bad_access != (1 << cfg.counter_bits) - 1)):
            m.d.sync += self.bad_access.eq(self.bad_access + 1)

        # read data mux (registers were captured at the access, memories answer now)
        with m.Switch(rd_region):
            for idx, r in enumerate(amap, start=1):
                with m.Case(idx):
                    if r.kind == "mem":
                        rdata = getattr(self, f"{r.name}_rdata")
                        if r.words == 2:
                            with m.If(rd_word):
                                m.d.comb += self.rdata.eq(rdata[dw:])
                            with m.Else():
                                m.d.comb += self.rdata.eq(rdata[:dw])
                        else:
                            m.d.comb += self.rdata.eq(rdata)
                    else:
                        m.d.comb += self.rdata.eq(rd_regdata)
        return m
