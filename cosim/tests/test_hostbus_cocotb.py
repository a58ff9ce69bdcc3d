"""cocotb tests of the bare HostBus component (component="hostbus"), run inside
the simulator by spikeloop.cosim.runner.run_tests (tests/test_cosim_runner.py).

Every random choice comes from ``random.Random(cocotb.RANDOM_SEED)`` (cocotb's
per-test seed, derived from COCOTB_RANDOM_SEED and the test name); each test
logs it.  Rerun one test with ``run_tests(..., testcase=NAME, seed=SEED)``.
"""
from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.image import REGION_OF, ConfigImage
from spikeloop.cosim.host import HostBusDriver, clock_period_ps, start_clock
from spikeloop.cosim.runner import cosim_context

#: set to "1" by the runner's own test to prove that a failing test is reported
SELFTEST_ENV = "SPIKELOOP_COSIM_SELFTEST_FAIL"


def _rng(name: str) -> random.Random:
    seed = cocotb.RANDOM_SEED
    cocotb.log.info("%s: random seed %d (derived from COCOTB_RANDOM_SEED=%s and the test name)",
                    name, seed, os.environ.get("COCOTB_RANDOM_SEED", "?"))
    return random.Random(seed)


async def _setup(dut):
    """Clock, reset, status and memory inputs at 0; the driver of the bare component."""
    ctx = cosim_context()
    amap = AddressMap(ctx.cfg)
    for r in amap:
        if r.kind == "status":
            _port(dut, r.name).value = 0
        elif r.kind == "mem":
            _port(dut, f"{r.name}_rdata").value = 0
    start_clock(dut, ctx.cfg)
    drv = HostBusDriver(dut, prefix="")
    await drv.reset()
    return ctx, amap, drv


def _port(dut, name: str):
    # Amaranth writes the port ``time`` as the escaped identifier ``\time ``;
    # the simulators report it as ``time``
    return getattr(dut, name)


def _entries(value: int, bits: int, count: int) -> list[int]:
    mask = (1 << bits) - 1
    return [(value >> (i * bits)) & mask for i in range(count)]


def _reg_entries(amap: AddressMap):
    return [(r, i) for r in amap if r.kind == "reg" for i in range(r.count)]


@cocotb.test()
async def test_reset_state(dut):
    """After reset: every register 0 on its port and through the bus, no
    bad access, run low, rvalid low."""
    _, amap, drv = await _setup(dut)
    await ReadOnly()
    assert dut.rvalid.value == 0
    assert dut.bad_access.value == 0
    assert dut.run.value == 0
    assert dut.clear.value == 0
    for r in amap:
        if r.kind == "reg":
            assert _port(dut, r.name).value.to_unsigned() == 0, r.name
    regs = _reg_entries(amap)
    got = await drv.read_many([r.address(i) for r, i in regs])
    bad = [(r.name, i, v) for (r, i), v in zip(regs, got, strict=True) if v]
    assert not bad, f"registers not 0 after reset: {bad[:8]}"


@cocotb.test()
async def test_registers_read_back(dut):
    """A random value in every entry of every ``reg`` region, then everything
    read back through the bus, and each value checked on the register's port."""
    rng = _rng("test_registers_read_back")
    ctx, amap, drv = await _setup(dut)
    regs = _reg_entries(amap)
    values = {(r.name, i): rng.getrandbits(r.bits) for r, i in regs}
    # upper word bits are ignored by a register: write garbage there too
    writes = [(r.address(i), values[r.name, i] | (rng.getrandbits(32 - r.bits) << r.bits))
              for r, i in regs]
    rng.shuffle(writes)
    t0 = get_sim_time("ps")
    await drv.write_many(writes)
    cycles = (get_sim_time("ps") - t0) / clock_period_ps(ctx.cfg)
    assert cycles <= len(writes) + 1, f"{len(writes)} writes took {cycles} cycles"
    got = await drv.read_many([r.address(i) for r, i in regs])
    wrong = [(r.name, i, g, values[r.name, i])
             for (r, i), g in zip(regs, got, strict=True) if g != values[r.name, i]]
    assert not wrong, f"{len(wrong)} registers read back wrong (name, index, got, wrote): " \
                      f"{wrong[:8]}"
    for r in amap:
        if r.kind == "reg":
            port = _entries(_port(dut, r.name).value.to_unsigned(), r.bits, r.count)
            assert port == [values[r.name, i] for i in range(r.count)], r.name
    assert dut.bad_access.value == 0
    cocotb.log.info("%d registers in %d regions written and read back",
                    len(regs), sum(r.kind == "reg" for r in amap))


@cocotb.test()
async def test_write_image_verify(dut):
    """A random ConfigImage through HostBusDriver.write_image(verify=True):
    every register word reads back, the memory words go to their ports."""
    rng = _rng("test_write_image_verify")
    ctx, amap, drv = await _setup(dut)
    cfg = ctx.cfg
    img = ConfigImage.empty(cfg)
    nprng = np.random.default_rng(rng.getrandbits(32))
    for fld, region in REGION_OF.items():
        shape = getattr(img, fld).shape
        setattr(img, fld, nprng.integers(0, 1 << amap[region].bits, size=shape))
    img.synapse_weight = nprng.integers(0, 1 << cfg.weight_bits, size=img.synapse_weight.shape)
    img.synapse_label = nprng.integers(0, 1 << cfg.label_bits, size=img.synapse_label.shape)
    n = await drv.write_image(img, verify=True)
    assert n == len(img.bus_writes())
    assert dut.bad_access.value == 0
    cocotb.log.info("write_image: %d writes verified", n)


@cocotb.test()
async def test_status_and_memory_reads(dut):
    """Status inputs and memory read data reach rdata one cycle after the read."""
    rng = _rng("test_status_and_memory_reads")
    _, amap, drv = await _setup(dut)
    status = {}
    for r in amap:
        if r.kind == "status":
            status[r.name] = [rng.getrandbits(r.bits) for _ in range(r.count)]
            word = sum(v << (i * r.bits) for i, v in enumerate(status[r.name]))
            _port(dut, r.name).value = word
    entries = [(r, i) for r in amap if r.kind == "status" for i in range(r.count)]
    got = await drv.read_many([r.address(i) for r, i in entries])
    wrong = [(r.name, i, g) for (r, i), g in zip(entries, got, strict=True)
             if g != status[r.name][i]]
    assert not wrong, f"status reads wrong: {wrong[:8]}"
    # memories: the data on <mem>_rdata in the cycle after the access (low word
    # for word 0 of two-word entries, high word for word 1)
    await RisingEdge(dut.clk)
    for r in amap:
        if r.kind != "mem":
            continue
        data = rng.getrandbits(r.bits)
        _port(dut, f"{r.name}_rdata").value = data
        for word in range(r.words):
            index = rng.randrange(r.count)
            got = await drv.read(r.address(index, word))
            assert got == (data >> (32 * word)) & 0xFFFF_FFFF, (r.name, index, word)
        await RisingEdge(dut.clk)
    assert dut.bad_access.value == 0


@cocotb.test()
async def test_bad_access_counts_unmapped(dut):
    """An unmapped read and write and a write to a read-only region each count
    once in bad_access; the unmapped read returns 0 with rvalid."""
    rng = _rng("test_bad_access_counts_unmapped")
    _, amap, drv = await _setup(dut)
    unmapped = []
    for a in range(1 << amap.addr_bits):
        try:
            amap.decode(a)
        except KeyError:
            unmapped.append(a)
    assert unmapped, "the address map covers every address: nothing to test"
    addr = rng.choice(unmapped)
    cocotb.log.info("unmapped address %#x (%d unmapped addresses)", addr, len(unmapped))
    assert await drv.read(addr) == 0
    await RisingEdge(dut.clk)
    assert dut.bad_access.value == 1
    await drv.write(addr, rng.getrandbits(32))
    await ReadOnly()
    assert dut.bad_access.value == 2
    ro = rng.choice([r for r in amap if not r.writable and r.kind == "status"])
    await drv.write(ro.address(rng.randrange(ro.count)), 1)
    await ReadOnly()
    assert dut.bad_access.value == 3, f"write to read-only {ro.name} not counted"
    # mapped accesses do not count
    reg = rng.choice([r for r in amap if r.kind == "reg"])
    await drv.write(reg.address(0), 1)
    await drv.read(reg.address(0))
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert dut.bad_access.value == 3


@cocotb.test()
async def test_ctrl_run_and_clear(dut):
    """ctrl bit 0 sets run; bit 1 pulses clear for exactly one cycle."""
    _, amap, drv = await _setup(dut)
    ctrl = amap["ctrl"].address(0)
    await drv.write(ctrl, 0b01)
    await ReadOnly()
    assert dut.run.value == 1 and dut.clear.value == 0
    await drv.write(ctrl, 0b11)
    await ReadOnly()
    assert dut.run.value == 1 and dut.clear.value == 1
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert dut.clear.value == 0, "clear is longer than one cycle"
    assert await drv.read(ctrl) == 1
    await drv.write(ctrl, 0)
    await ClockCycles(dut.clk, 2)
    await ReadOnly()
    assert dut.run.value == 0


@cocotb.test(skip=os.environ.get(SELFTEST_ENV) != "1")
async def test_deliberate_failure(dut):
    """Fails on purpose when the runner's self-test asks for it (skipped otherwise)."""
    _, _, drv = await _setup(dut)
    if os.environ.get(SELFTEST_ENV) == "1":
        assert await drv.read(0) == 0xDEAD, "deliberate failure"
