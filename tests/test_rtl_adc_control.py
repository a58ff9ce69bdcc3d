"""AdcControl (rtl/adc_control.py) against AdcControlRef, cycle by cycle."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import pack_array, unpack_array
from spikeloop.model.digital.adc_control import AdcControlRef
from spikeloop.rtl.adc_control import AdcControl
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl

OUTPUTS = ("sample", "n_samples", "overflow", "host_rdata")


def run_compare(cfg, stimulus):
    """Drive RTL and reference with ``stimulus`` (dicts of period, codes, clear,
    host_addr), compare every output every cycle; return the reference outputs."""
    dut = AdcControl(cfg)
    ref = AdcControlRef(cfg)
    outputs = []

    async def bench(ctx):
        for cycle, inp in enumerate(stimulus):
            put(ctx, dut.period, inp["period"])
            put(ctx, dut.codes, pack_array(inp["codes"], cfg.adc_bits))
            put(ctx, dut.clear, inp["clear"])
            put(ctx, dut.host_addr, inp["host_addr"])
            put(ctx, dut.ppu_addr, inp.get("ppu_addr", 0))
            put(ctx, dut.ppu_re, inp.get("ppu_re", 0))
            expected = ref.tick(**inp)
            outputs.append(expected)
            for name in OUTPUTS:
                rtl = get(ctx, getattr(dut, name))
                assert rtl == expected[name], mismatch(cycle, name, rtl, expected[name])
            rtl = unpack_array(get(ctx, dut.ppu_rdata), cfg.adc_bits, cfg.n_neurons)
            assert rtl == expected["ppu_rdata"], mismatch(cycle, "ppu_rdata", rtl,
                                                          expected["ppu_rdata"])
            await ctx.tick()

    simulate(dut, bench, name="adc_control")
    return outputs


@st.composite
def scenarios(draw, ring=False):
    n = draw(st.sampled_from([2, 4, 6, 16]))
    depths = [1, 2, 3, 5, MINI.adc_buffer_depth] if ring else [1, 2, 3, MINI.adc_buffer_depth]
    cfg = MINI.replace(
        n_neurons=n,
        neurons_per_block=2,
        adc_buffer_depth=draw(st.sampled_from(depths)),
        adc_period_bits=draw(st.sampled_from([2, 3, MINI.adc_period_bits])),
        adc_bits=draw(st.sampled_from([2, MINI.adc_bits])),
        counter_bits=draw(st.sampled_from([4, MINI.counter_bits])),
        adc_ring=ring,
    )
    pmax = (1 << cfg.adc_period_bits) - 1
    addr_max = (1 << (cfg.adc_buffer_depth * n - 1).bit_length()) - 1
    cmax = (1 << cfg.adc_bits) - 1
    period = draw(st.sampled_from([0, 1, 2, 3, pmax]) | st.integers(0, pmax))
    cycles = draw(st.integers(20, 80))
    sweep = draw(st.booleans())          # read the addresses in order, or at random
    stimulus = []
    for t in range(cycles):
        if draw(st.integers(0, 20)) == 0:
            period = draw(st.integers(0, min(pmax, 6)))
        stimulus.append({
            "period": period,
            "codes": draw(st.lists(st.integers(0, cmax), min_size=n, max_size=n)),
            "clear": int(draw(st.integers(0, 30)) == 0),
            "host_addr": t % (addr_max + 1) if sweep else draw(st.integers(0, addr_max)),
            # the PPU's port: samples near the write pointer too (read-before-write)
            "ppu_addr": draw(st.integers(0, (1 << max(1, (cfg.adc_buffer_depth - 1)
                                                      .bit_length())) - 1)),
            "ppu_re": int(draw(st.booleans())),
        })
    return cfg, stimulus


@settings(max_examples=20, deadline=None)
@given(scenarios())
def test_random_against_reference(scenario):
    run_compare(*scenario)


@settings(max_examples=20, deadline=None)
@given(scenarios(ring=True))
def test_random_ring_against_reference(scenario):
    """The ring variant (``adc_ring``), power-of-two and other depths."""
    run_compare(*scenario)


@pytest.mark.parametrize("depth", [MINI.adc_buffer_depth, 5])
def test_random_ring_stimulus_against_reference(depth):
    """A fixed long run of the ring variants the brief names (mini, depth 5):
    several wraps, clears, host and PPU reads everywhere."""
    cfg = MINI.replace(adc_ring=True, adc_buffer_depth=depth)
    rng = np.random.default_rng(depth)
    n = cfg.n_neurons
    addr_max = (1 << (depth * n - 1).bit_length()) - 1
    cycles = 3 * depth + 40
    stimulus = [{"period": int(rng.choice([1, 1, 2, 3])),
                 "codes": [int(c) for c in rng.integers(0, 1 << cfg.adc_bits, size=n)],
                 "clear": int(t == cycles // 2 or rng.random() < 0.01),
                 "host_addr": int(rng.integers(0, addr_max + 1)),
                 "ppu_addr": int(rng.integers(0, 1 << max(1, (depth - 1).bit_length()))),
                 "ppu_re": int(rng.random() < 0.5)} for t in range(cycles)]
    out = run_compare(cfg, stimulus)
    assert max(o["n_samples"] for o in out) > depth     # it wrapped


def _codes(cfg, t):
    return [(t * 7 + i * 3) % (1 << cfg.adc_bits) for i in range(cfg.n_neurons)]


def _run_then_read(cfg, period, cycles, clear_at=()):
    """``cycles`` of sampling, then one host read of every buffer entry."""
    n, depth = cfg.n_neurons, cfg.adc_buffer_depth
    stim = [{"period": period, "codes": _codes(cfg, t), "clear": int(t in clear_at),
             "host_addr": 0} for t in range(cycles)]
    stim += [{"period": 0, "codes": [0] * n, "clear": 0, "host_addr": a}
             for a in range(depth * n)]
    stim.append({"period": 0, "codes": [0] * n, "clear": 0, "host_addr": 0})
    out = run_compare(cfg, stim)
    readback = [o["host_rdata"] for o in out[cycles + 1:]]
    return out[:cycles], [readback[s * n:(s + 1) * n] for s in range(depth)], out[-1]


@pytest.mark.parametrize("period", [1, 2, 5])
def test_samples_every_period_and_host_reads_them(period):
    cfg = MINI
    out, buffer, last = _run_then_read(cfg, period, 30)
    times = [t for t, o in enumerate(out) if o["sample"]]
    assert times == list(range(period - 1, 30, period))
    stored = times[:cfg.adc_buffer_depth]
    assert last["n_samples"] == len(stored)
    for s, t in enumerate(stored):
        assert buffer[s] == _codes(cfg, t)
    assert last["overflow"] == len(times) - len(stored)


def test_period_zero_is_off():
    out, _, last = _run_then_read(MINI, 0, 20)
    assert not any(o["sample"] for o in out)
    assert last["n_samples"] == 0 and last["overflow"] == 0


def test_overflow_saturates_and_clear_restarts():
    cfg = MINI.replace(adc_buffer_depth=2, counter_bits=4)
    out, buffer, last = _run_then_read(cfg, 1, 40, clear_at=(30,))
    assert out[29]["overflow"] == 15 and out[29]["n_samples"] == 2
    assert out[30]["sample"] == 0
    # after the clear, cycles 31..39 sample: buffer entries 0, 1 are cycles 31, 32
    assert buffer == [_codes(cfg, 31), _codes(cfg, 32)]
    assert last["n_samples"] == 2 and last["overflow"] == 7


def test_non_power_of_two_columns_and_out_of_range_reads():
    cfg = MINI.replace(n_neurons=6, neurons_per_block=2, adc_buffer_depth=3)
    out, buffer, last = _run_then_read(cfg, 3, 12)
    assert buffer == [_codes(cfg, 2), _codes(cfg, 5), _codes(cfg, 8)]
    n = cfg.n_neurons
    stim = [{"period": 3, "codes": _codes(cfg, t), "clear": 0, "host_addr": 0}
            for t in range(12)]
    stim += [{"period": 0, "codes": [0] * n, "clear": 0, "host_addr": a}
             for a in (18, 31, 5, 17, 0)]
    rdata = [o["host_rdata"] for o in run_compare(cfg, stim)[13:]]
    assert rdata == [0, 0, _codes(cfg, 2)[5], _codes(cfg, 8)[5]]


def test_full_preset_converts_to_verilog():
    text = verilog.convert(AdcControl(FULL), name="adc_control")
    assert "module adc_control" in text
    assert "wptr" not in text            # the ring's logic exists only with adc_ring


# -- the ring variant (adc_ring) --------------------------------------------------------

RING = MINI.replace(adc_ring=True)


def test_ring_wraps_and_host_reads_entry_order():
    """Depth 5, every cycle a sample: 13 samples; entry j holds the latest sample
    i with i % 5 == j; n_samples counts all 13, overflow stays 0."""
    cfg = RING.replace(adc_buffer_depth=5)
    out, buffer, last = _run_then_read(cfg, 1, 13)
    assert [o["n_samples"] for o in out] == list(range(13))
    assert all(o["overflow"] == 0 for o in out) and last["overflow"] == 0
    assert last["n_samples"] == 13
    # sample i is cycle i (period 1); entries 0..4 hold samples 10, 11, 12, 8, 9
    assert buffer == [_codes(cfg, t) for t in (10, 11, 12, 8, 9)]


def test_ring_mini_wraps_after_depth_samples():
    cfg = RING
    S = cfg.adc_buffer_depth
    out, buffer, last = _run_then_read(cfg, 2, 2 * (S + 3))   # S + 3 samples
    times = [t for t, o in enumerate(out) if o["sample"]]
    assert len(times) == S + 3 and last["n_samples"] == S + 3
    want = {i % S: times[i] for i in range(len(times))}     # the latest wins
    assert buffer == [_codes(cfg, want[j]) for j in range(S)]
    assert last["overflow"] == 0


def test_ring_count_saturates():
    """counter_bits = 4: n_samples stops at 15 while the ring goes on writing."""
    cfg = RING.replace(adc_buffer_depth=3, counter_bits=4)
    out, buffer, last = _run_then_read(cfg, 1, 24)
    assert [o["n_samples"] for o in out] == [min(t, 15) for t in range(24)]
    assert last["n_samples"] == 15 and last["overflow"] == 0
    # the write pointer does not saturate: 24 samples, the last three are 21, 22, 23
    assert buffer == [_codes(cfg, 21), _codes(cfg, 22), _codes(cfg, 23)]


def test_ring_clear_resets_the_write_pointer():
    """A clear after 7 samples (depth 5): the next samples go to entries 0, 1, ...
    again; the entries not written since keep the samples of before the clear."""
    cfg = RING.replace(adc_buffer_depth=5)
    out, buffer, last = _run_then_read(cfg, 1, 11, clear_at=(7,))
    # cycles 0..6 sample (entries 0..4, then 0, 1); cycle 7 clears; cycles 8..10
    # sample into entries 0, 1, 2
    assert out[7]["sample"] == 0 and out[8]["n_samples"] == 0
    assert last["n_samples"] == 3 and last["overflow"] == 0
    assert buffer == [_codes(cfg, t) for t in (8, 9, 10, 3, 4)]


def test_ring_reads_are_not_transparent_across_the_wrap():
    """The host and the PPU read the entry being overwritten by the wrap in the
    same cycle: both see the old sample."""
    cfg = RING.replace(adc_buffer_depth=3)
    n = cfg.n_neurons
    stim = [{"period": 1, "codes": _codes(cfg, t), "clear": 0,
             "host_addr": 0 * n + 1 if t == 3 else 0, "ppu_addr": 0, "ppu_re": int(t == 3)}
            for t in range(5)]
    out = run_compare(cfg, stim)
    # cycle 3 writes entry 0 (sample 3) while reading it: the reads show sample 0
    assert out[4]["host_rdata"] == _codes(cfg, 0)[1]
    assert out[4]["ppu_rdata"] == _codes(cfg, 0)


def test_ring_full_preset_converts_to_verilog():
    text = verilog.convert(AdcControl(FULL.replace(adc_ring=True)), name="adc_control")
    assert "module adc_control" in text and "wptr" in text


def ring_coverage_stimulus():
    """Directed stimulus for every bin of the ring's functional-coverage block
    (``adc_ring`` in spikeloop/verify/fcov.py), on a ring of 3 entries with
    4-bit counters and 2-bit periods: the sampler off, periods max, mid and 1;
    host and PPU reads of entries not yet taken, of taken samples, of entries
    the wrap rewrote, out of range, and of the entry written in the same
    cycle; the count up to saturation with the ring still wrapping; a clear,
    then samples into the entries of the run before."""
    cfg = MINI.replace(adc_ring=True, adc_buffer_depth=3, counter_bits=4, adc_period_bits=2)
    n = cfg.n_neurons
    # (period, clear, host_addr, ppu_re, ppu_addr) per cycle
    plan = [(0, 0, 1 * n, 1, 2), (0, 0, 3 * n + 2, 1, 3)]      # off: not yet taken, out of range
    plan += [(3, 0, 0, 0, 0)] * 3                              # period max: sample 0
    plan += [(2, 0, 5, 1, 0)] + [(2, 0, 5, 0, 0)]              # period mid: sample 1
    plan += [(1, 0, 2 * n, 0, 0)] * 2                          # period 1: samples 2, 3 (wrap)
    # sample 4 writes entry 1 while the host and the PPU read it; then entry 0,
    # rewritten by sample 3, is read
    plan += [(1, 0, 1 * n + 3, 1, 1), (1, 0, 7, 1, 0)]
    plan += [(1, 0, 7, 0, 0)] * 14                             # the count saturates at 15
    plan += [(1, 1, 7, 0, 0)]                                  # clear
    plan += [(1, 0, 7, 0, 0)] * 3                              # samples into the old entries
    plan += [(0, 0, 0, 0, 0)] * 2
    stim = [{"period": p, "codes": _codes(cfg, t), "clear": c, "host_addr": h,
             "ppu_re": re, "ppu_addr": a} for t, (p, c, h, re, a) in enumerate(plan)]
    return cfg, stim


def test_ring_directed_stimulus_for_the_coverage_bins():
    """The directed stimulus for the ring's coverage bins, compared with the
    reference every cycle (tests/test_fcov_adc_ring.py checks that it reaches
    every bin)."""
    cfg, stim = ring_coverage_stimulus()
    out = run_compare(cfg, stim)
    assert max(o["n_samples"] for o in out) == 15 and not any(o["overflow"] for o in out)


def test_longest_period_fills_the_buffer():
    """The longest period (2-bit periods: 3) until the buffer of 2 entries is full
    and samples overflow: the functional-coverage bins of the longest period at
    an empty, a partly filled and a full buffer (``adc`` in
    spikeloop/verify/fcov.py), whatever the random tests draw."""
    cfg = MINI.replace(adc_buffer_depth=2, adc_period_bits=2)
    out, buffer, last = _run_then_read(cfg, 3, 12)
    assert [t for t, o in enumerate(out) if o["sample"]] == [2, 5, 8, 11]
    assert [out[t]["n_samples"] for t in (2, 5, 8, 11)] == [0, 1, 2, 2]
    assert buffer == [_codes(cfg, 2), _codes(cfg, 5)]
    assert last["n_samples"] == 2 and last["overflow"] == 2
