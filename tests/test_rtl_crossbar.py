"""Crossbar RTL against CrossbarRef, every output every cycle (docs/rtl.md section 5)."""
from __future__ import annotations

import random

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import pack_array, unpack_array
from spikeloop.model.digital.crossbar import CrossbarRef
from spikeloop.rtl.crossbar import Crossbar
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


def _config_ports(cfg, enable, mask, target):
    n = cfg.crossbar_inputs * cfg.crossbar_outputs
    assert len(enable) == len(mask) == len(target) == n
    return {"enable": enable, "mask": mask, "target": target}


def run_crossbar(cfg, config, stimulus, *, check=True):
    """Drive the RTL and the reference with ``stimulus`` (a list of per-cycle dicts with
    ``clear``, ``inputs_valid``, ``inputs_payload``, ``outputs_ready``); compare every
    output every cycle.  Returns the per-cycle reference outputs and the RTL's counters
    after the last cycle."""
    dut = Crossbar(cfg)
    ref = CrossbarRef(cfg)
    n_in, n_out = cfg.crossbar_inputs, cfg.crossbar_outputs
    nodes = n_in * n_out
    cb = cfg.counter_bits
    trace = []
    final = {}

    async def bench(ctx):
        put(ctx, dut.enable, pack_array(config["enable"], 1))
        put(ctx, dut.mask, pack_array(config["mask"], cfg.event_label_bits))
        put(ctx, dut.target, pack_array(config["target"], cfg.event_label_bits))
        for cycle, stim in enumerate(stimulus):
            ctx.set(dut.clear, stim["clear"])
            for i in range(n_in):
                ctx.set(dut.inputs[i].valid, stim["inputs_valid"][i])
                put(ctx, dut.inputs[i].payload, stim["inputs_payload"][i])
            for o in range(n_out):
                ctx.set(dut.outputs[o].ready, stim["outputs_ready"][o])
            exp = ref.tick(**config, **stim)
            trace.append(exp)
            if check:
                got = {
                    "inputs_ready": [ctx.get(p.ready) for p in dut.inputs],
                    "outputs_valid": [ctx.get(p.valid) for p in dut.outputs],
                    "outputs_payload": [get(ctx, p.payload) for p in dut.outputs],
                    "event_count": unpack_array(get(ctx, dut.event_count), cb, nodes),
                    "drop_count": unpack_array(get(ctx, dut.drop_count), cb, nodes),
                }
                for name, value in exp.items():
                    assert got[name] == value, mismatch(cycle, name, got[name], value)
            await ctx.tick()
        final["event_count"] = unpack_array(get(ctx, dut.event_count), cb, nodes)
        final["drop_count"] = unpack_array(get(ctx, dut.drop_count), cb, nodes)

    simulate(dut, bench, name="crossbar")
    return trace, final


def _idle(cfg):
    return {"clear": 0, "inputs_valid": [0] * cfg.crossbar_inputs,
            "inputs_payload": [0] * cfg.crossbar_inputs,
            "outputs_ready": [1] * cfg.crossbar_outputs}


def _random_config(cfg, rng, mode):
    n_in, n_out = cfg.crossbar_inputs, cfg.crossbar_outputs
    lmask = (1 << cfg.event_label_bits) - 1
    enable, mask, target = [], [], []
    hot = rng.randrange(n_out)
    for _ in range(n_in):
        for o in range(n_out):
            if mode == "collide":       # every input to one output, everything matches
                e, mk, tg = int(o == hot), 0, 0
            elif mode == "multicast":   # every input to several outputs
                e, mk, tg = int(rng.random() < 0.6), 0, 0
            else:                       # label-dependent routing on the low bits
                mk = rng.choice([0, 1, 3, 7, 0x30, lmask])
                e, tg = int(rng.random() < 0.7), rng.randrange(lmask + 1) & mk
            enable.append(e)
            mask.append(mk)
            target.append(tg)
    return _config_ports(cfg, enable, mask, target)


def _random_stimulus(cfg, rng, cycles, p_valid, p_ready, stall):
    n_in, n_out = cfg.crossbar_inputs, cfg.crossbar_outputs
    labels = [rng.randrange(1 << cfg.event_label_bits) for _ in range(6)]
    stalls = [(rng.randrange(cycles), rng.randrange(5, 40)) for _ in range(n_out)]
    out = []
    for t in range(cycles):
        ready = []
        for o in range(n_out):
            start, length = stalls[o]
            blocked = stall and start <= t < start + length
            ready.append(int(not blocked and rng.random() < p_ready))
        out.append({
            "clear": int(rng.random() < 0.01),
            "inputs_valid": [int(rng.random() < p_valid) for _ in range(n_in)],
            "inputs_payload": [rng.choice(labels) if rng.random() < 0.8
                               else rng.randrange(1 << cfg.event_label_bits)
                               for _ in range(n_in)],
            "outputs_ready": ready,
        })
    return out


cfg_strategy = st.builds(
    lambda depth, ext, host, cbits: MINI.replace(
        crossbar_fifo_depth=depth, n_ext_inputs=ext, n_host_links=host, counter_bits=cbits),
    st.sampled_from([1, 2, 3, 4]), st.sampled_from([1, 2, 3]), st.sampled_from([1, 2]),
    st.sampled_from([4, 16]))


@settings(max_examples=10, deadline=None)
@given(cfg=cfg_strategy, seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["collide", "multicast", "route"]),
       p_valid=st.sampled_from([0.3, 1.0]), p_ready=st.sampled_from([0.2, 0.7, 1.0]),
       stall=st.booleans())
def test_crossbar_matches_reference(cfg, seed, mode, p_valid, p_ready, stall):
    rng = random.Random(seed)
    config = _random_config(cfg, rng, mode)
    run_crossbar(cfg, config, _random_stimulus(cfg, rng, 100, p_valid, p_ready, stall))


@settings(max_examples=5, deadline=None)
@given(depth=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["collide", "multicast", "route"]))
def test_every_offered_event_is_counted(depth, seed, mode):
    """Under overload, per node: offered matching events == event_count + drop_count."""
    cfg = MINI.replace(crossbar_fifo_depth=depth)
    rng = random.Random(seed)
    config = _random_config(cfg, rng, mode)
    stim = _random_stimulus(cfg, rng, 60, 1.0, 0.3, True)
    for s in stim:
        s["clear"] = 0
    n_in, n_out = cfg.crossbar_inputs, cfg.crossbar_outputs
    offered = [0] * (n_in * n_out)
    for s in stim:
        for i in range(n_in):
            for o in range(n_out):
                n = i * n_out + o
                if (s["inputs_valid"][i] and config["enable"][n]
                        and s["inputs_payload"][i] & config["mask"][n] == config["target"][n]):
                    offered[n] += 1
    _, final = run_crossbar(cfg, config, stim, check=False)
    total = [e + d for e, d in zip(final["event_count"], final["drop_count"], strict=True)]
    assert total == offered
    assert sum(final["drop_count"]) > 0  # it was an overload


def _one_to_one_config(cfg, routes):
    """Node (i, o) enabled, matching everything, for (i, o) in routes."""
    n_out = cfg.crossbar_outputs
    n = cfg.crossbar_inputs * n_out
    enable = [0] * n
    for i, o in routes:
        enable[i * n_out + o] = 1
    return _config_ports(cfg, enable, [0] * n, [0] * n)


def test_round_robin_order():
    cfg = MINI.replace(crossbar_fifo_depth=2)
    n_in = cfg.crossbar_inputs
    config = _one_to_one_config(cfg, [(i, 0) for i in range(n_in)])
    stim = []
    for k in range(2):   # two events per input, label = 16 * k + input, output stalled
        s = _idle(cfg)
        s["inputs_valid"] = [1] * n_in
        s["inputs_payload"] = [16 * k + i for i in range(n_in)]
        s["outputs_ready"][0] = 0
        stim.append(s)
    stim += [_idle(cfg) for _ in range(2 * n_in + 3)]
    trace, _ = run_crossbar(cfg, config, stim)
    seen = [t["outputs_payload"][0] for t in trace[2:] if t["outputs_valid"][0]]
    assert seen == [i for i in range(n_in)] + [16 + i for i in range(n_in)]


def test_round_robin_skips_to_next_after_last_grant():
    cfg = MINI
    n_in = cfg.crossbar_inputs
    config = _one_to_one_config(cfg, [(i, 0) for i in range(n_in)])
    s0 = _idle(cfg)
    s0["inputs_valid"][2] = 1
    s0["inputs_payload"][2] = 2
    s1 = _idle(cfg)   # input 2 granted here; inputs 0 and 3 arrive
    s1["inputs_valid"][0] = s1["inputs_valid"][3] = 1
    s1["inputs_payload"][0], s1["inputs_payload"][3] = 100, 103
    trace, _ = run_crossbar(cfg, config, [s0, s1] + [_idle(cfg) for _ in range(4)])
    seen = [t["outputs_payload"][0] for t in trace if t["outputs_valid"][0]]
    assert seen == [2, 103, 100]


def test_unaccepted_grant_is_held():
    cfg = MINI
    config = _one_to_one_config(cfg, [(0, 1), (1, 1)])
    s0 = _idle(cfg)
    s0["inputs_valid"][1], s0["inputs_payload"][1] = 1, 11
    s0["outputs_ready"][1] = 0
    s1 = _idle(cfg)  # input 1 presented, not accepted; input 0 arrives (higher priority)
    s1["inputs_valid"][0], s1["inputs_payload"][0] = 1, 10
    s1["outputs_ready"][1] = 0
    s2 = _idle(cfg)
    s2["outputs_ready"][1] = 0
    trace, _ = run_crossbar(cfg, config, [s0, s1, s2] + [_idle(cfg) for _ in range(3)])
    assert [t["outputs_payload"][1] for t in trace[1:5]] == [11, 11, 11, 10]
    assert [t["outputs_valid"][1] for t in trace[:6]] == [0, 1, 1, 1, 1, 0]


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_exact_drop_count(depth):
    cfg = MINI.replace(crossbar_fifo_depth=depth)
    o = cfg.crossbar_outputs - 1
    config = _one_to_one_config(cfg, [(1, o)])
    offered = 10
    stim = []
    for k in range(offered):
        s = _idle(cfg)
        s["inputs_valid"][1], s["inputs_payload"][1] = 1, k
        s["outputs_ready"][o] = 0
        stim.append(s)
    stim += [_idle(cfg) for _ in range(depth + 2)]
    trace, final = run_crossbar(cfg, config, stim)
    n = 1 * cfg.crossbar_outputs + o
    assert final["event_count"][n] == depth
    assert final["drop_count"][n] == offered - depth
    seen = [t["outputs_payload"][o] for t in trace[offered:] if t["outputs_valid"][o]]
    assert seen == list(range(depth))   # the first events were kept, in order


def test_counters_saturate():
    cfg = MINI.replace(counter_bits=4, crossbar_fifo_depth=1)
    config = _one_to_one_config(cfg, [(0, 0)])
    stim = []
    for _ in range(40):
        s = _idle(cfg)
        s["inputs_valid"][0] = 1
        s["outputs_ready"][0] = 0
        stim.append(s)
    _, final = run_crossbar(cfg, config, stim)
    assert final["event_count"][0] == 1 and final["drop_count"][0] == 15


def test_full_preset_converts_to_verilog():
    text = verilog.convert(Crossbar(FULL), name="crossbar")
    assert "module crossbar" in text
