"""The functional-coverage block of the ADC ring (``adc_ring`` in
spikeloop/verify/fcov.py): its classification against the provenance of every
entry that the reference model writes, the directed stimulus that reaches every
bin, and the separation from the block of the buffer without the ring (``adc``):
neither is credited by a run of the other variant."""
from __future__ import annotations

import numpy as np
import pytest

from spikeloop.base.config import MINI
from spikeloop.model.digital.adc_control import AdcControlRef
from spikeloop.verify import fcov
from tests import test_rtl_adc_control as adc_tests

RING = MINI.replace(adc_ring=True)
SIGNALS = ("period", "sample", "n_samples", "host_addr", "ppu_re", "ppu_addr", "clear")


def _values(inp: dict, out: dict, overflow: bool = False) -> dict:
    """One cycle's values of the block's signals: the inputs and the outputs
    before the clock edge (what the samplers see)."""
    v = {k: inp.get(k, 0) for k in ("period", "host_addr", "ppu_re", "ppu_addr", "clear")}
    v.update(sample=out["sample"], n_samples=out["n_samples"])
    if overflow:
        v["overflow"] = out["overflow"]
    return v


def _hits(block: str, samples: list[dict]) -> set[str]:
    """The bins ``samples`` hit, named as :func:`fcov.bins_of` names them."""
    b = fcov.BLOCKS[block]
    hit = set()
    for s in samples:
        hit |= {f"{p}.{s[p]}" for p in b.points if s.get(p) is not None}
        for name, (items, _) in b.crosses.items():
            if all(s.get(i) is not None for i in items):
                hit.add(f"{name}.{'|'.join(str(s[i]) for i in items)}")
    return hit


def _classify(block: str, cfg, cycles) -> list[dict]:
    b, st, out = fcov.BLOCKS[block], {}, []
    for v in cycles:
        out += b.samples(cfg, v, st)
    return out


def _random_stimulus(cfg, cycles: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    n, depth = cfg.n_neurons, cfg.adc_buffer_depth
    addr_max = (1 << (depth * n - 1).bit_length()) - 1
    stim = []
    period = 1
    for _ in range(cycles):
        if rng.random() < 0.05:
            period = int(rng.integers(0, 4))
        stim.append({"period": period,
                     "codes": [int(c) for c in rng.integers(0, 1 << cfg.adc_bits, size=n)],
                     "clear": int(rng.random() < 0.03),
                     # the host's address changes now and then (a read of a new address)
                     "host_addr": int(rng.integers(0, addr_max + 1)) if rng.random() < 0.3
                     else (stim[-1]["host_addr"] if stim else 0),
                     "ppu_re": int(rng.random() < 0.4),
                     "ppu_addr": int(rng.integers(0, 1 << max(1, (depth - 1).bit_length())))})
    return stim


@pytest.mark.unit
@pytest.mark.parametrize("depth,counter_bits,seed", [(1, 16, 1), (3, 16, 2), (5, 16, 3),
                                                     (64, 16, 4), (3, 4, 5), (64, 4, 6)])
def test_ring_bins_are_those_of_the_entries_provenance(depth, counter_bits, seed):
    """Every bin the ring's block gives matches what the reference model's ring
    holds, tracked independently: for each entry the run and the sample index
    that wrote it.  With counters wide enough never to saturate, every sample,
    read and refill is classified; with 4-bit counters a bin the saturated
    count leaves undecided is left out, and only then (a refill, also after a
    run that saturated its count below the depth)."""
    cfg = RING.replace(adc_buffer_depth=depth, counter_bits=counter_bits)
    n, top = cfg.n_neurons, (1 << counter_bits) - 1
    ref = AdcControlRef(cfg)
    block = fcov.BLOCKS["adc_ring"]
    st = {}
    prov = [None] * depth            # entry -> (run, sample index) of its last write
    run, taken = 0, 0                # taken: samples of this run (not saturating)
    prev_addr = 0
    seen, undecided = set(), 0
    refill_known = True

    def holds(entry):
        if prov[entry] is None or prov[entry][0] != run:
            return "not yet taken"
        return "taken sample" if prov[entry][1] == entry else "rewritten entry"

    for inp in _random_stimulus(cfg, 400, seed):
        out = ref.tick(**inp)
        # the reference ticked: its state is after the edge; `out` is before it
        v = _values(inp, out)
        got = {}
        for s in block.samples(cfg, v, st):
            for k, x in s.items():
                if x is not None:
                    got.setdefault(k, []).append(x)
        seen |= {f"{k}.{x}" for k, xs in got.items() for x in xs}
        exact = taken < top              # the count is the run's sample index
        want = {}
        entry = taken % depth
        if out["sample"]:
            want["write"] = ["wrap" if taken >= depth else "fresh entry"]
            if taken < depth and prov[entry] is not None and prov[entry][0] != run:
                want["refill"] = ["overwrite after clear"]
        addr = inp["host_addr"]
        rdw = []
        if addr != prev_addr:
            want["host_read"] = ["out of range" if addr >= depth * n else holds(addr // n)]
            if out["sample"] and addr // n == entry:
                rdw.append("host")
        if inp["ppu_re"]:
            a = inp["ppu_addr"]
            want["ppu_read"] = ["out of range" if a >= depth else holds(a)]
            if out["sample"] and a == entry:
                rdw.append("ppu")
        if rdw:
            want["read_during_write"] = rdw
        for k, xs in want.items():
            if exact and (k != "refill" or refill_known):
                assert got.get(k, []) == xs, (k, got, want, taken)
            else:                        # saturated: a bin given is the true one
                assert set(got.get(k, [])) <= set(xs), (k, got, want, taken)
                undecided += len(xs) - len(got.get(k, []))
        for k in ("write", "refill", "host_read", "ppu_read", "read_during_write"):
            if k not in want:
                assert k not in got, (k, got, taken)
        # the provenance after the edge
        if inp["clear"]:
            # the entries a run wrote are known from its count unless it saturated
            # below the depth
            refill_known &= taken <= top or top >= depth
            run, taken = run + 1, 0
        elif out["sample"]:
            prov[entry] = (run, taken)
            taken += 1
        assert ref.wptr == taken % depth
        prev_addr = addr
    print(f"depth {depth}, counter_bits {counter_bits}: {undecided} bins undecided")
    if counter_bits == 16:
        assert undecided == 0
    elif depth == 64:
        assert undecided > 0             # the saturated count was reached and left out
    if depth == 3:
        assert {"write.wrap", "host_read.rewritten entry", "ppu_read.taken sample"} <= seen


@pytest.mark.unit
def test_a_known_ring_cycle_classifies():
    """Ring of 3 entries, 4 samples taken: the fifth sample wraps into entry 1
    while the PPU reads entry 1 (still sample 1), the host a new address in
    entry 0 (sample 3 rewrote it); a count of 15 on 4-bit counters is saturated,
    so entry 0 of a 3-entry ring is rewritten while entry 5 of 64 is undecided."""
    cfg = RING.replace(adc_buffer_depth=3, counter_bits=4)
    n = cfg.n_neurons
    v = {"period": 1, "sample": 1, "n_samples": 4, "host_addr": 2, "ppu_re": 1,
         "ppu_addr": 1, "clear": 0}
    main, *extra = fcov.BLOCKS["adc_ring"].samples(cfg, v, {})
    assert main == {"period": "1", "write": "wrap", "count": "counting",
                    "host_read": "rewritten entry", "ppu_read": "taken sample"}
    assert extra == [{"read_during_write": "ppu"}]
    sat = dict(v, n_samples=15, host_addr=n + 1, ppu_addr=0)
    main, = fcov.BLOCKS["adc_ring"].samples(cfg, sat, {})
    assert main["write"] == "wrap" and main["count"] == "saturated"
    assert main["ppu_read"] == main["host_read"] == "rewritten entry"
    deep = cfg.replace(adc_buffer_depth=64)
    main, = fcov.BLOCKS["adc_ring"].samples(deep, dict(sat, ppu_addr=5), {})
    assert main["write"] is None and main["ppu_read"] is None   # 15 or more samples
    assert main["count"] == "saturated"


@pytest.mark.rtl
def test_the_directed_stimulus_hits_every_ring_bin():
    """tests/test_rtl_adc_control.py's directed stimulus for the ring, compared
    with the reference cycle by cycle, reaches every bin of ``adc_ring`` (so the
    RTL tier closes the block whatever its random tests draw), and no cross bin
    the model ignores as impossible."""
    cfg, stim = adc_tests.ring_coverage_stimulus()
    out = adc_tests.run_compare(cfg, stim)
    samples = _classify("adc_ring", cfg, [_values(i, o) for i, o in zip(stim, out,
                                                                          strict=True)])
    hit = _hits("adc_ring", samples)
    assert hit >= set(fcov.bins_of("adc_ring")), set(fcov.bins_of("adc_ring")) - hit
    for s in samples:
        assert (s.get("write"), s.get("count")) not in {("wrap", "zero"),
                                                       ("fresh entry", "saturated")}


@pytest.mark.rtl
def test_neither_adc_block_is_credited_by_the_other_variant():
    """The ring's runs are sampled by ``adc_ring`` only and the plain buffer's by
    ``adc`` only: the routing by chip variant (amaranth.sim sampler and the
    co-simulation's top level) and the blocks themselves, on real runs of both
    (each compared with its reference); the database of the other block does not
    move."""
    assert fcov.block_of_class("AdcControl", MINI) == "adc"
    assert fcov.block_of_class("AdcControl", RING) == "adc_ring"
    assert ("adc", "adc") in fcov.top_instances(MINI)
    assert ("adc", "adc_ring") in fcov.top_instances(RING)
    assert ("adc", "adc") not in fcov.top_instances(RING)
    cfg_ring, stim_ring = adc_tests.ring_coverage_stimulus()
    cfg_plain = cfg_ring.replace(adc_ring=False)
    runs = {}
    for cfg in (cfg_ring, cfg_plain):
        out = adc_tests.run_compare(cfg, stim_ring)
        runs[cfg.adc_ring] = [_values(i, o, overflow=True)
                              for i, o in zip(stim_ring, out, strict=True)]
    # each block classifies the run of its own variant into samples ...
    assert _hits("adc_ring", _classify("adc_ring", cfg_ring, runs[True]))
    assert _hits("adc", _classify("adc", cfg_plain, runs[False]))
    # ... and nothing of the other's
    assert _classify("adc", cfg_ring, runs[True]) == []
    assert _classify("adc_ring", cfg_plain, runs[False]) == []

    def db(block):
        return {p: dict(fcov.coverage_db[f"{fcov.ROOT}.{block}.{p}"].detailed_coverage)
                for p in fcov.BLOCKS[block].points}

    before = db("adc"), db("adc_ring")
    for name, cfg, run in (("adc", cfg_ring, runs[True]), ("adc_ring", cfg_plain, runs[False])):
        st = {}
        for v in run:
            fcov.sample(name, cfg, v, st)
    assert (db("adc"), db("adc_ring")) == before
