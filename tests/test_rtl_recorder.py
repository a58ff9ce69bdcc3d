"""EventRecorder RTL against EventRecorderRef, every output every cycle (docs/rtl.md
section 6)."""
from __future__ import annotations

import random

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import unpack_timed_event
from spikeloop.model.digital.recorder import EventRecorderRef
from spikeloop.rtl.recorder import EventRecorder
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


def run_recorder(cfg, cycles, sources, *, times=None, clears=(), host_addrs=None):
    """Drive RTL and reference for ``cycles`` cycles and compare every output every cycle.

    ``sources[l]`` is a list of (first cycle valid, label): link ``l`` offers each
    event from that cycle on and holds it until it is transferred (a stream source).
    Returns (reference outputs per cycle, list of (cycle, link, label) transfers)."""
    dut = EventRecorder(cfg)
    ref = EventRecorderRef(cfg)
    n_links = cfg.n_host_links
    queues = [list(s) for s in sources]
    trace, transfers = [], []

    async def bench(ctx):
        for cycle in range(cycles):
            valid = [int(bool(q) and q[0][0] <= cycle) for q in queues]
            payload = [q[0][1] if v else 0 for q, v in zip(queues, valid, strict=True)]
            stim = {"clear": int(cycle in clears),
                    "time": cycle if times is None else times[cycle],
                    "links_valid": valid, "links_payload": payload,
                    "host_addr": 0 if host_addrs is None else host_addrs[cycle]}
            ctx.set(dut.clear, stim["clear"])
            ctx.set(dut.time, stim["time"])
            ctx.set(dut.host_addr, stim["host_addr"])
            for link in range(n_links):
                ctx.set(dut.links[link].valid, valid[link])
                put(ctx, dut.links[link].payload, payload[link])
            exp = ref.tick(**stim)
            trace.append(exp)
            got = {
                "links_ready": [ctx.get(link.ready) for link in dut.links],
                "count": ctx.get(dut.count),
                "drops": ctx.get(dut.drops),
                "host_rdata": get(ctx, dut.host_rdata),
            }
            for name, value in exp.items():
                assert got[name] == value, mismatch(cycle, name, got[name], value)
            for link in range(n_links):
                if valid[link] and exp["links_ready"][link]:
                    transfers.append((cycle, link, queues[link].pop(0)[1]))
            await ctx.tick()

    simulate(dut, bench, name="recorder")
    return trace, transfers


def _random_sources(cfg, rng, cycles, rate):
    sources = []
    for _ in range(cfg.n_host_links):
        starts = sorted(rng.randrange(cycles) for _ in range(int(cycles * rate)))
        sources.append([(s, rng.randrange(1 << cfg.event_label_bits)) for s in starts])
    return sources


cfg_strategy = st.builds(
    lambda depth, links, cbits, tbits: MINI.replace(
        record_depth=depth, n_host_links=links, counter_bits=cbits, timestamp_bits=tbits),
    st.sampled_from([64, 5, 8, 13]), st.sampled_from([1, 2, 3]), st.sampled_from([4, 16]),
    st.sampled_from([16, 32]))


@settings(max_examples=20, deadline=None)
@given(cfg=cfg_strategy, seed=st.integers(0, 2**32 - 1),
       rate=st.sampled_from([0.1, 0.5, 1.5]), p_run=st.sampled_from([1.0, 0.7]))
def test_recorder_matches_reference(cfg, seed, rate, p_run):
    rng = random.Random(seed)
    cycles = 150
    depth = cfg.record_depth
    times, t = [], rng.randrange(1 << cfg.timestamp_bits)   # wraps in some examples
    for _ in range(cycles):
        times.append(t)
        if rng.random() < p_run:
            t = (t + 1) % (1 << cfg.timestamp_bits)
    clears = {c for c in range(cycles) if rng.random() < 0.01}
    host_addrs = [rng.randrange(1 << max(1, (depth - 1).bit_length())) for _ in range(cycles)]
    run_recorder(cfg, cycles, _random_sources(cfg, rng, cycles, rate), times=times,
                 clears=clears, host_addrs=host_addrs)


def _read_back(cfg, trace, t0, n):
    """Entries 0..n-1 as (label, link, time), read through the host port from cycle t0."""
    return [unpack_timed_event(cfg, cfg.n_host_links, trace[t0 + 1 + k]["host_rdata"])
            for k in range(n)]


def test_timestamps_and_round_robin():
    cfg = MINI.replace(n_host_links=3)
    # all three links offer two events at cycle 5, link 1 another at cycle 20
    sources = [[(5, 100), (5, 101)], [(5, 110), (5, 111), (20, 112)], [(5, 120), (5, 121)]]
    n = 7
    cycles = 25 + n + 1
    host_addrs = [0] * 25 + list(range(n)) + [0]
    trace, transfers = run_recorder(cfg, cycles, sources, times=[1000 + c for c in range(cycles)],
                                    host_addrs=host_addrs)
    assert transfers == [(5, 0, 100), (6, 1, 110), (7, 2, 120), (8, 0, 101), (9, 1, 111),
                         (10, 2, 121), (20, 1, 112)]
    assert _read_back(cfg, trace, 25, n) == [
        (label, link, 1000 + c) for c, link, label in transfers]
    assert trace[-1]["count"] == n and trace[-1]["drops"] == 0


def test_memory_full_drops_and_counts():
    cfg = MINI.replace(record_depth=5, n_host_links=2)
    sources = [[(0, k) for k in range(8)], [(0, 50 + k) for k in range(6)]]
    trace, transfers = run_recorder(cfg, 20, sources, host_addrs=[0] * 15 + list(range(5)))
    assert len(transfers) == 14          # events are still taken when full
    assert trace[-1]["count"] == 5 and trace[-1]["drops"] == 9
    assert [e[0] for e in _read_back(cfg, trace, 15, 4)] == [0, 50, 1, 51]


def test_clear_restarts_recording():
    cfg = MINI.replace(record_depth=4, n_host_links=1, counter_bits=4)
    sources = [[(0, k) for k in range(24)] + [(30, 99)]]
    trace, _ = run_recorder(cfg, 34, sources, clears={25}, host_addrs=[0] * 32 + [0, 0])
    assert trace[24]["count"] == 4 and trace[24]["drops"] == 15  # saturated (20 dropped)
    assert trace[26]["count"] == 0 and trace[26]["drops"] == 0
    assert trace[33]["count"] == 1
    assert unpack_timed_event(cfg, 1, trace[33]["host_rdata"]) == (99, 0, 30)


def test_full_preset_converts_to_verilog():
    text = verilog.convert(EventRecorder(FULL), name="recorder")
    assert "module recorder" in text
