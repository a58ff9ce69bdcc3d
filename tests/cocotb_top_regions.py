"""cocotb test of the whole chip's host bus (component "top"), run by
tests/test_cosim_coverage.py::test_every_region_through_the_top through
spikeloop.cosim.runner: every configuration bit written 1 and 0 and read back,
and every region of the address map read through the top.

Not collected by pytest (no ``test_`` prefix): it runs inside the simulator."""
from __future__ import annotations

import os

import cocotb
import numpy as np

from spikeloop.base.image import ConfigImage
from spikeloop.cosim import engine
from spikeloop.cosim.runner import cosim_context

#: seed of the random image (the test passes it)
ENV_SEED = "SPIKELOOP_REGIONS_SEED"


def complement(amap, writes):
    """Every bit of every written field flipped (within the region's bits)."""
    return [(a, v ^ ((1 << amap.decode(a)[0].bits) - 1)) for a, v in writes]


@cocotb.test()
async def test_every_region(dut):
    cfg = cosim_context().cfg
    host = await engine.start(dut, cfg)
    drv, amap = host.drv, host.amap
    rng = np.random.default_rng(int(os.environ.get(ENV_SEED, "0")))
    image = ConfigImage.random(cfg, rng)
    a_writes = image.bus_writes()
    # image A, its complement, A again: every configuration bit rises and falls
    for writes in (a_writes, complement(amap, a_writes), a_writes):
        await drv.write_many(writes)
        await host.edge()
        got = await drv.read_many([a for a, _ in writes])
        await host.edge()
        bad = [(a, v, g) for (a, v), g in zip(writes, got, strict=True) if v != g]
        assert not bad, f"{len(bad)} words read back wrong, first {bad[0]}"
    # the regions no image holds: the PPU's program and playback memories written and
    # read back, the rest read (status, control, pulse)
    imem = amap["ppu_imem"]
    prog = [(imem.address(i), int(rng.integers(1 << 32))) for i in (0, 1, imem.count - 1)]
    pb = amap["playback"]
    # an entry: word 0 the release cycle, word 1 the event (label, then the link)
    event_bits = cfg.event_label_bits + max(1, (cfg.n_ext_inputs - 1).bit_length())
    play = []
    for i in (0, pb.count - 1):
        play += [(pb.address(i, 0), int(rng.integers(1 << 32))),
                 (pb.address(i, 1), int(rng.integers(1 << event_bits)))]
    count = [(amap["playback_count"].address(0), pb.count - 1)]
    for writes in (prog, play, count):
        await drv.write_many(writes)
        await host.edge()
        got = await drv.read_many([a for a, _ in writes])
        await host.edge()
        assert got == [v for _, v in writes], (writes, got)
    for r in amap:
        if r.writable and r.kind != "pulse":
            continue
        addrs = sorted({r.address(0, 0), r.address(r.count - 1, r.words - 1)})
        got = await drv.read_many(addrs)
        await host.edge()
        if r.kind == "pulse":
            assert got == [0] * len(addrs), (r.name, got)
    ctrl = await drv.read(amap["ctrl"].address(0))
    await host.edge()
    assert ctrl == 0, f"ctrl reads {ctrl} before any run"
    assert int(dut.host_bad_access.value.to_unsigned()) == 0
