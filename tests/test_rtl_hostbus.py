"""Host configuration bus: RTL against HostBusRef, every output every cycle."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import MINI
from spikeloop.model.digital.hostbus import HostBusRef
from spikeloop.rtl.hostbus import HostBus
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


def _access(amap):
    """A host access aimed mostly at mapped addresses, sometimes anywhere."""
    regions = list(amap)
    mapped = st.sampled_from(regions).flatmap(
        lambda r: st.integers(r.base, r.base + r.count * r.words - 1))
    anywhere = st.integers(0, (1 << amap.addr_bits) - 1)
    return st.tuples(st.one_of(mapped, mapped, anywhere), st.integers(0, 2**32 - 1),
                     st.booleans(), st.booleans())


def run_compare(cfg, accesses, status):
    dut = HostBus(cfg)
    ref = HostBusRef(cfg)
    amap = ref.amap
    mems = {r.name: {} for r in amap if r.kind == "mem"}
    mem_rdata = {name: 0 for name in mems}

    async def bench(ctx):
        for r in amap:
            if r.kind == "status":
                word = 0
                for i, v in enumerate(status[r.name]):
                    word |= v << (i * r.bits)
                put(ctx, getattr(dut, r.name), word)
        for cycle, (addr, wdata, we, re) in enumerate(accesses):
            put(ctx, dut.addr, addr)
            put(ctx, dut.wdata, wdata)
            put(ctx, dut.we, int(we))
            put(ctx, dut.re, int(re))
            for name, v in mem_rdata.items():
                put(ctx, getattr(dut, f"{name}_rdata"), v)
            exp = ref.tick(addr, wdata, int(we), int(re), status, mem_rdata)
            for port in ("rdata", "rvalid", "run", "clear", "bad_access"):
                got = get(ctx, getattr(dut, port))
                assert got == exp[port], mismatch(cycle, port, got, exp[port])
            for name, value in exp["pulses"].items():
                got = get(ctx, getattr(dut, name))
                assert got == value, mismatch(cycle, name, got, value)
            for name, values in exp["regs"].items():
                bits = amap[name].bits
                got = get(ctx, getattr(dut, name))
                got = [(got >> (i * bits)) & ((1 << bits) - 1) for i in range(len(values))]
                assert got == values, mismatch(cycle, name, got, values)
            # the memories behind the mem ports: synchronous read of old data, then write
            for name, port in exp["mem"].items():
                for field, value in port.items():
                    got = get(ctx, getattr(dut, f"{name}_{field}"))
                    assert got == value, mismatch(cycle, f"{name}_{field}", got, value)
                mem_rdata[name] = mems[name].get(port["addr"], 0)
                if port.get("we"):
                    mems[name][port["addr"]] = port["wdata"]
            await ctx.tick()

    simulate(dut, bench, name="hostbus")


@settings(max_examples=8)
@given(data=st.data())
def test_hostbus_matches_reference(data):
    cfg = MINI
    amap = AddressMap(cfg)
    accesses = data.draw(st.lists(_access(amap), min_size=20, max_size=120))
    status = {r.name: data.draw(st.lists(st.integers(0, (1 << r.bits) - 1),
                                         min_size=r.count, max_size=r.count))
              for r in amap if r.kind == "status"}
    run_compare(cfg, accesses, status)


def test_every_register_reads_back():
    """Write a distinct value to every register entry, then read each back."""
    cfg = MINI
    amap = AddressMap(cfg)
    writes, expect = [], {}
    for r in amap:
        if r.kind == "reg":
            for i in range(r.count):
                v = (i * 7 + r.base + 1) & ((1 << r.bits) - 1)
                writes.append((r.address(i), v, True, False))
                expect[r.address(i)] = v
    reads = [(a, 0, False, True) for a in expect] + [(0, 0, False, False)]
    status = {r.name: [0] * r.count for r in amap if r.kind == "status"}
    run_compare(cfg, writes + reads, status)  # the reference checks every rdata
    ref = HostBusRef(cfg)
    for a, v, _, _ in writes:
        ref.tick(a, v, 1, 0, status, {})
    for r in amap:
        if r.kind == "reg":
            for i in range(r.count):
                assert ref.regs[r.name][i] == expect[r.address(i)]


def test_ppu_ctrl_pulses_for_one_cycle():
    """A write of ppu_ctrl makes the written bits high in the next cycle only;
    the region reads 0 (run_compare checks the pulses and rdata every cycle)."""
    cfg = MINI
    amap = AddressMap(cfg)
    a = amap["ppu_ctrl"].address(0)
    idle = (0, 0, False, False)
    status = {r.name: [0] * r.count for r in amap if r.kind == "status"}
    run_compare(cfg, [(a, 0b01, True, False), idle, (a, 0b10, True, True), idle,
                      (a, 0b11, True, False), (a, 0, False, True), idle], status)
    ref = HostBusRef(cfg)
    seen = []
    for acc in [(a, 0b01, 1, 0), (0, 0, 0, 0), (0, 0, 0, 0), (a, 0b110, 1, 0), (0, 0, 0, 0)]:
        seen.append(ref.tick(*acc, status, {})["pulses"]["ppu_ctrl"])
    assert seen == [0, 0b01, 0, 0, 0b10]
