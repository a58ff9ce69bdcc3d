"""Directed stimulus for the functional-coverage bins (spikeloop/verify/fcov.py) that
the random tests of each block do not reach; every run is still compared with
the block's reference, cycle by cycle."""
from __future__ import annotations

import pytest

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import MINI
from spikeloop.base.isa import BY_MNEMONIC
from spikeloop.ppu.asm import assemble
from tests import test_ppu_rtl, test_rtl_hostbus, test_rtl_neuron_backend, test_rtl_top

pytestmark = pytest.mark.rtl


def test_hostbus_every_region_read_and_written_and_unmapped():
    """Every region's first and last word written and read (read-only regions
    count the write as a bad access), the control register and the cycle counter
    read, unmapped addresses (beyond the map and in the holes of a region's
    decoded window), and the bad-access counter up to saturation."""
    cfg = MINI.replace(counter_bits=4)
    amap = AddressMap(cfg)
    acc = []
    for r in amap:
        for a in sorted({r.base, r.base + r.count * r.words - 1}):
            acc += [(a, 0x5A5A_5A5A ^ a, True, False), (a, 0, False, True)]
    top = (1 << amap.addr_bits) - 1
    unmapped = [a for a in range(top, top - 64, -1)
                if not any(r.base <= a < r.base + r.count * r.words for r in amap)][:2]
    assert unmapped, "the address map fills the whole address space"
    acc += [(unmapped[0], 1, True, False), (unmapped[-1], 0, False, True)]
    # the holes inside a region's decoded window (entries beyond its count) are
    # unmapped: first, while the bad-access counter still counts
    holes = []
    for r in amap:
        if r.count * r.words < r.size:
            hole = r.base + r.count * r.words
            holes += [(hole, 7, True, False), (hole, 0, False, True)]
    assert holes, "no region with a hole in its decoded window"
    acc = holes + acc
    acc += [(unmapped[0], 0, False, True)] * 20 + [(0, 0, False, False)] * 2
    status = {r.name: [(3 * i + 1) & ((1 << r.bits) - 1) for i in range(r.count)]
              for r in amap if r.kind == "status"}
    test_rtl_hostbus.run_compare(cfg, acc, status)


def test_neurons_every_prescale():
    """A spike accepted under every prescale setting, once in a tick cycle and once
    between ticks, with refractory periods 1 and the maximum."""
    cfg = MINI
    n = cfg.n_neurons
    rmax = (1 << cfg.refractory_bits) - 1
    stim = []
    for p in range(1 << cfg.refractory_prescale_bits):
        refr = [1 if i % 2 else rmax for i in range(n)]
        stim.append({"spike_in": 0, "enable": (1 << n) - 1, "refractory": refr,
                     "prescale": p, "clear": 1})
        for t in range(12):
            stim.append({"spike_in": (1 << n) - 1 if t in (0, 3) else 0,
                         "enable": (1 << n) - 1, "refractory": refr, "prescale": p,
                         "clear": 0})
    test_rtl_neuron_backend.run_compare(cfg, stim)


def _merge_all(img):
    img.neuron_merge[:] = 1


@pytest.mark.parametrize("seed", [3])
def test_top_depth_one_fifos_full_together_and_every_column_merged(seed):
    """Depth-1 FIFOs in the arbiters and the crossbar under a spike storm: the
    arbiters' and the crossbar's FIFOs full in the same cycles; every neuron pair
    merged."""
    cfg = MINI.replace(arbiter_fifo_depth=1, crossbar_fifo_depth=1)
    test_rtl_top.compare_top(cfg, seed, 24, 0.9, adjust=_merge_all)


def test_ppu_undefined_word_halts():
    """An undefined instruction word executes as ``halt``."""
    words = assemble("addi r1, r0, 5\naddi r2, r1, 1", MINI,
                     imem_words=test_ppu_rtl.IMEM).words
    defined_ops = {i.opcode for i in BY_MNEMONIC.values()}
    undefined = next(op for op in range(64) if op not in defined_ops)
    words = list(words) + [undefined << 26, 0]
    test_ppu_rtl.run_and_compare(MINI, words, test_ppu_rtl._scenario(MINI))


def test_ppu_multiplies_that_saturate():
    """``vmulu`` and ``vmul`` whose products leave the lane's range, in 8- and 16-bit
    lanes (the random programs rarely draw such operands for ``vmulu``)."""
    src = "\n".join([
        "addi r1, r0, 200", "vsplat.b v1, r1", "vmulu.b v2, v1, v1, 0",
        "vmul.b v3, v1, v1, 0", "lui r2, 1", "vsplat.h v4, r2",
        "vmulu.h v5, v4, v4, 0", "vmulu.b v6, v1, v1, 8", "halt"])
    words = assemble(src, MINI, imem_words=test_ppu_rtl.IMEM).words
    test_ppu_rtl.run_and_compare(MINI, words, test_ppu_rtl._scenario(MINI))
