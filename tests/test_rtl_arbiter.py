"""SpikeArbiter (rtl/arbiter.py) against SpikeArbiterRef, cycle by cycle."""
from __future__ import annotations

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import pack_array
from spikeloop.model.digital.arbiter import SpikeArbiterRef
from spikeloop.rtl.arbiter import SpikeArbiter
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


def run_compare(cfg, labels, stimulus):
    """Drive RTL and reference with ``stimulus`` (dicts of spikes, events_ready, clear),
    compare every output every cycle; return the reference outputs."""
    dut = SpikeArbiter(cfg)
    ref = SpikeArbiterRef(cfg)
    outputs = []

    async def bench(ctx):
        put(ctx, dut.labels, pack_array(labels, cfg.event_label_bits))
        for cycle, inp in enumerate(stimulus):
            put(ctx, dut.spikes, inp["spikes"])
            ctx.set(dut.events.ready, inp["events_ready"])
            ctx.set(dut.clear, inp["clear"])
            expected = ref.tick(labels=labels, **inp)
            outputs.append(expected)
            rtl = {
                "events_valid": ctx.get(dut.events.valid),
                "events_payload": get(ctx, dut.events.payload),
                "drops": ctx.get(dut.drops),
            }
            for name, value in rtl.items():
                assert value == expected[name], mismatch(cycle, name, value, expected[name])
            await ctx.tick()

    simulate(dut, bench, name="arbiter")
    return outputs


def _stim(spikes, ready=1, clear=()):
    return [{"spikes": s, "events_ready": ready(t) if callable(ready) else ready,
             "clear": int(t in clear)} for t, s in enumerate(spikes)]


@st.composite
def scenarios(draw):
    p = draw(st.sampled_from([1, 2, 4, 8]))
    cfg = MINI.replace(
        neurons_per_block=p,
        arbiter_fifo_depth=draw(st.sampled_from([1, 2, 3, 4])),
        counter_bits=draw(st.sampled_from([4, MINI.counter_bits])),
        event_label_bits=draw(st.sampled_from([MINI.label_bits + MINI.row_select_bits,
                                               MINI.event_label_bits])),
    )
    all_ones = (1 << p) - 1
    labels = draw(st.lists(st.integers(0, (1 << cfg.event_label_bits) - 1),
                           min_size=p, max_size=p))
    cycles = draw(st.integers(20, 70))
    spike_mode = draw(st.sampled_from(["overload", "random", "sparse", "burst"]))
    ready_mode = draw(st.sampled_from(["always", "never", "random", "stall"]))
    stall_from, stall_len = draw(st.integers(0, cycles)), draw(st.integers(1, 30))
    stimulus = []
    for t in range(cycles):
        if spike_mode == "overload":
            spikes = all_ones
        elif spike_mode == "random":
            spikes = draw(st.integers(0, all_ones))
        elif spike_mode == "sparse":
            spikes = (1 << draw(st.integers(0, 3 * p))) & all_ones
        else:
            spikes = all_ones if t % 8 == 0 else 0
        ready = {"always": 1, "never": 0, "random": draw(st.integers(0, 1)),
                 "stall": int(not stall_from <= t < stall_from + stall_len)}[ready_mode]
        stimulus.append({"spikes": spikes, "events_ready": ready,
                         "clear": int(draw(st.integers(0, 30)) == 0)})
    return cfg, labels, stimulus


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_random_against_reference(scenario):
    run_compare(*scenario)


def test_simultaneous_spikes_leave_in_index_order():
    """4 simultaneous spikes: events two cycles later, one per cycle, index order."""
    cfg = MINI
    labels = [0x11, 0x22, 0x33, 0x44]
    out = run_compare(cfg, labels, _stim([0b1111] + [0] * 9))
    events = [(t, o["events_payload"]) for t, o in enumerate(out) if o["events_valid"]]
    assert events == [(2, 0x11), (3, 0x22), (4, 0x33), (5, 0x44)]
    assert out[-1]["drops"] == 0


def test_pending_neuron_spiking_again_is_dropped():
    cfg = MINI
    labels = [1, 2, 3, 4]
    # all four spike in cycle 0; in cycle 1 neuron 0 is granted (not dropped), neurons
    # 1..3 are still pending and spike again: 3 drops; in cycle 2 neuron 0 (pending again)
    # is granted, neuron 1 spikes again while pending: 1 drop
    out = run_compare(cfg, labels, _stim([0b1111, 0b1111, 0b0010] + [0] * 8))
    assert [o["drops"] for o in out[:4]] == [0, 0, 3, 4]
    events = [o["events_payload"] for o in out if o["events_valid"]]
    assert events == [1, 1, 2, 3, 4]


def test_full_fifo_stops_grants_and_counts_drops():
    """Consumer not ready: the FIFO fills to its depth, then nothing is granted and the
    still-pending neurons' spikes are dropped; the queue drains in order afterwards."""
    cfg = MINI.replace(neurons_per_block=4, arbiter_fifo_depth=2)
    labels = [10, 20, 30, 40]
    n = 20
    out = run_compare(cfg, labels, _stim([0b1111] * 10 + [0] * (n - 10),
                                         ready=lambda t: int(t >= 12)))
    # neuron 0 is granted in cycles 1 and 2 (it spikes again every cycle, so it is
    # pending again at once); from cycle 3 the FIFO is full: no grant, every spike of
    # the four pending neurons is dropped (3 + 3 drops in cycles 1, 2, then 4 per cycle)
    assert out[10]["drops"] == 3 + 3 + 4 * 7
    # the consumer reads from cycle 12; the full FIFO refuses the grant in that cycle,
    # then the pending neurons leave in index order
    events = [(t, o["events_payload"]) for t, o in enumerate(out) if o["events_valid"]]
    assert events == [(t, 10) for t in range(2, 14)] + [(14, 10), (15, 20), (16, 30),
                                                         (17, 40)]


def test_drops_saturate():
    cfg = MINI.replace(counter_bits=4)
    out = run_compare(cfg, [0] * 4, _stim([0b1111] * 30, ready=0))
    assert out[-1]["drops"] == 15


def test_clear_empties_pending_and_fifo():
    cfg = MINI
    out = run_compare(cfg, [5, 6, 7, 8], _stim([0b1111] * 3 + [0] * 7, ready=0, clear=(5,)))
    assert out[5]["events_valid"] == 1 and out[5]["drops"] > 0
    assert all(o["events_valid"] == 0 and o["drops"] == 0 for o in out[6:])


def test_full_preset_converts_to_verilog():
    text = verilog.convert(SpikeArbiter(FULL), name="spike_arbiter")
    assert "module spike_arbiter" in text
