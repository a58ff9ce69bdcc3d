"""EventPlayback RTL against EventPlaybackRef, every output every cycle (docs/rtl.md
section 6)."""
from __future__ import annotations

import random

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import pack_timed_event
from spikeloop.model.digital.playback import EventPlaybackRef
from spikeloop.rtl.playback import EventPlayback
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


def run_playback(cfg, stimulus):
    """Drive RTL and reference with ``stimulus`` (per-cycle dicts of EventPlaybackRef.tick
    inputs), compare every output every cycle; return the reference outputs."""
    dut = EventPlayback(cfg)
    ref = EventPlaybackRef(cfg)
    trace = []

    async def bench(ctx):
        for cycle, stim in enumerate(stimulus):
            ctx.set(dut.clear, stim["clear"])
            ctx.set(dut.host_addr, stim["host_addr"])
            ctx.set(dut.host_we, stim["host_we"])
            put(ctx, dut.host_wdata, stim["host_wdata"])
            ctx.set(dut.count, stim["count"])
            ctx.set(dut.time, stim["time"])
            for link, ready in zip(dut.links, stim["links_ready"], strict=True):
                ctx.set(link.ready, ready)
            exp = ref.tick(**stim)
            trace.append(exp)
            got = {
                "host_rdata": get(ctx, dut.host_rdata),
                "links_valid": [ctx.get(link.valid) for link in dut.links],
                "links_payload": [get(ctx, link.payload) for link in dut.links],
                "late": ctx.get(dut.late),
                "done": ctx.get(dut.done),
            }
            for name, value in exp.items():
                assert got[name] == value, mismatch(cycle, name, got[name], value)
            await ctx.tick()

    simulate(dut, bench, name="playback")
    return trace


def _cycle(cfg, **kw):
    s = {"clear": 0, "host_addr": 0, "host_we": 0, "host_wdata": 0, "count": 0, "time": 0,
         "links_ready": [1] * cfg.n_ext_inputs}
    s.update(kw)
    return s


def _write_entries(cfg, entries, count):
    """Host writes of (label, link, time) entries (count 0 meanwhile), then ``count`` and
    a clear: the stimulus prefix."""
    stim = []
    for addr, (label, link, t) in enumerate(entries):
        stim.append(_cycle(cfg, host_addr=addr, host_we=1,
                           host_wdata=pack_timed_event(cfg, cfg.n_ext_inputs, label, link, t)))
    stim.append(_cycle(cfg, clear=1, count=count))
    return stim


def _random_entries(cfg, rng, n, dense):
    link_values = 1 << max(1, (cfg.n_ext_inputs - 1).bit_length())
    t, entries = 0, []
    for _ in range(n):
        r = rng.random()
        if r < (0.5 if dense else 0.2):
            pass                                   # same time as the previous: released late
        elif r < 0.9:
            t += rng.randrange(1, 6)
        else:
            t = max(0, t - rng.randrange(1, 4))     # out of order: late
        link = rng.randrange(link_values) if rng.random() < 0.1 else rng.randrange(
            cfg.n_ext_inputs)
        entries.append((rng.randrange(1 << cfg.event_label_bits), link,
                        t % (1 << cfg.timestamp_bits)))
    return entries


cfg_strategy = st.builds(
    lambda depth, links, cbits, tbits: MINI.replace(
        playback_depth=depth, n_ext_inputs=links, counter_bits=cbits, timestamp_bits=tbits),
    st.sampled_from([64, 5, 8, 13]), st.sampled_from([1, 2, 3]), st.sampled_from([4, 16]),
    st.sampled_from([16, 32]))


@settings(max_examples=20, deadline=None)
@given(cfg=cfg_strategy, seed=st.integers(0, 2**32 - 1), dense=st.booleans(),
       p_ready=st.sampled_from([1.0, 0.5]), p_run=st.sampled_from([1.0, 0.8]))
def test_playback_matches_reference(cfg, seed, dense, p_ready, p_run):
    rng = random.Random(seed)
    depth = cfg.playback_depth
    entries = _random_entries(cfg, rng, min(depth, 40), dense)
    count = rng.choice([len(entries), len(entries), max(0, len(entries) - 3), 0,
                        (1 << depth.bit_length()) - 1])
    stim = _write_entries(cfg, entries, count)
    time = 0
    for _ in range(200):
        s = _cycle(cfg, count=count, time=time,
                   links_ready=[int(rng.random() < p_ready) for _ in range(cfg.n_ext_inputs)])
        r = rng.random()
        if r < 0.03:   # the host rewrites an entry while playing
            s.update(host_we=1, host_addr=rng.randrange(1 << (depth - 1).bit_length()),
                     host_wdata=pack_timed_event(cfg, cfg.n_ext_inputs,
                                                 *_random_entries(cfg, rng, 1, False)[0]))
        elif r < 0.3:  # the host reads (possibly out of range)
            s["host_addr"] = rng.randrange(1 << max(1, (depth - 1).bit_length()))
        elif r < 0.32:
            s["clear"] = 1
        stim.append(s)
        if s["clear"]:
            time = 0
        elif rng.random() < p_run:
            time = (time + 1) % (1 << cfg.timestamp_bits)
    run_playback(cfg, stim)


def _released(trace, cfg):
    """(cycle, link, label) of every transfer (all links always ready)."""
    return [(c, k, t["links_payload"][k]) for c, t in enumerate(trace)
            for k in range(cfg.n_ext_inputs) if t["links_valid"][k]]


def test_release_cycles_and_late():
    cfg = MINI
    entries = [(10, 0, 3), (11, 1, 3), (12, 0, 3), (13, 1, 7), (14, 0, 6)]
    stim = _write_entries(cfg, entries, len(entries))
    t0 = len(stim)
    stim += [_cycle(cfg, count=len(entries), time=t) for t in range(12)]
    trace = run_playback(cfg, stim)
    rel = [(c - t0, k, label) for c, k, label in _released(trace, cfg)]
    # identical timestamps leave one per cycle; entry 4 (time 6) follows at once; in order
    assert rel == [(3, 0, 10), (4, 1, 11), (5, 0, 12), (7, 1, 13), (8, 0, 14)]
    assert trace[-1]["late"] == 3
    assert [t["done"] for t in trace[t0:]] == [0] * 9 + [1] * 3


def test_backpressure_holds_the_entry():
    cfg = MINI
    entries = [(5, 1, 0), (6, 1, 0)]
    stim = _write_entries(cfg, entries, 2)
    t0 = len(stim)
    stim += [_cycle(cfg, count=2, time=t, links_ready=[1, int(t >= 3)]) for t in range(6)]
    trace = run_playback(cfg, stim)[t0:]
    assert [t["links_valid"][1] for t in trace] == [1, 1, 1, 1, 1, 0]
    assert [t["links_payload"][1] for t in trace] == [5, 5, 5, 5, 6, 0]
    assert trace[-1]["late"] == 2 and trace[-1]["done"] == 1


def test_count_zero_is_done_and_host_readback():
    cfg = MINI
    word = pack_timed_event(cfg, cfg.n_ext_inputs, 77, 1, 1234)
    stim = [_cycle(cfg, host_addr=9, host_we=1, host_wdata=word),
            _cycle(cfg, host_addr=9), _cycle(cfg)]
    trace = run_playback(cfg, stim)
    assert trace[0]["done"] == 1
    assert trace[2]["host_rdata"] == word
    assert not any(any(t["links_valid"]) for t in trace)


def test_full_preset_converts_to_verilog():
    text = verilog.convert(EventPlayback(FULL), name="playback")
    assert "module playback" in text
