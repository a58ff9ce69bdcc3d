"""Host bus: the unmapped words inside a region's aligned block.

A region of ``count * words`` words is placed in a block of the next power of
two (the crossbar's 36-entry tables in 64-word blocks on mini): the words past
its last entry share the region's decoded high address bits but are unmapped.
Every access to them must read 0, change nothing and count as a bad access,
like any unmapped address; the random accesses of tests/test_rtl_hostbus.py
hit these few words too rarely to be relied on."""
import pytest

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import MINI
from spikeloop.model.digital.hostbus import HostBusRef
from tests.test_rtl_hostbus import run_compare

pytestmark = pytest.mark.rtl


def gap_words(amap: AddressMap) -> list[tuple[object, int]]:
    """(region, address) of the first and the last unmapped word of every region
    whose block holds unmapped words."""
    out = []
    for r in amap:
        used = r.count * r.words
        if used < r.size:
            out += [(r, a) for a in sorted({r.base + used, r.base + r.size - 1})]
    return out


def test_words_past_a_regions_last_entry_are_unmapped():
    cfg = MINI
    amap = AddressMap(cfg)
    gaps = gap_words(amap)
    assert gaps, "mini has regions with unmapped words in their block"
    status = {r.name: [(i * 5 + 3) & ((1 << r.bits) - 1) for i in range(r.count)]
              for r in amap if r.kind == "status"}
    idle = (0, 0, False, False)
    accesses = []
    for r, a in gaps:
        last = r.address(r.count - 1)
        # a write, a read, both at once: each one bad access, the reads give 0; the
        # region's last entry (written when writable) keeps and reads back its value
        accesses += [(last, 1, r.kind == "reg", False), (a, 0xFFFF_FFFF, True, False),
                     (a, 0, False, True), idle, (a, 0x1234_5678, True, True), idle,
                     (last, 0, False, True), idle]
    run_compare(cfg, accesses, status)       # rdata, bad_access, registers every cycle
    ref = HostBusRef(cfg)
    mem = {r.name: 0 for r in amap if r.kind == "mem"}
    for addr, wdata, we, re in accesses:
        ref.tick(addr, wdata, int(we), int(re), status, mem)
    assert ref.bad_access == 3 * len(gaps), ref.bad_access
