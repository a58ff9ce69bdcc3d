"""SynapseDrivers (rtl/synapse_drivers.py) against SynapseDriversRef, cycle by cycle."""
from __future__ import annotations

import re

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import RowSign, pack_array, pack_event
from spikeloop.model.digital.synapse_drivers import SynapseDriversRef
from spikeloop.model.digital.synapse_memory import IDLE_ROW, RowEvent
from spikeloop.rtl.synapse_drivers import SynapseDrivers
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


class Source:
    """A lawful stream source: offers ``events`` in order, each from a cycle where
    ``offer[t]`` is true, and holds it (valid, same payload) until it is taken."""

    def __init__(self, events, offer):
        self.events, self.offer = list(events), list(offer)
        self.valid = 0

    def present(self, t):
        if not self.valid and self.events and self.offer[t % len(self.offer)]:
            self.valid = 1
        return self.valid, self.events[0] if self.valid else 0

    def after(self, ready):
        if self.valid and ready:
            self.events.pop(0)
            self.valid = 0


def run(cfg, config, sources, n_cycles, *, clear=(), name="synapse_drivers"):
    """Drive RTL and reference; ``config`` is (select, mask, row_sign) or a
    function of the cycle giving it.  Returns the reference outputs per cycle."""
    dut = SynapseDrivers(cfg)
    ref = SynapseDriversRef(cfg)
    rsb = cfg.row_select_bits
    outputs = []
    config_at = config if callable(config) else (lambda t: config)

    async def bench(ctx):
        for t in range(n_cycles):
            select, mask, row_sign = config_at(t)
            put(ctx, dut.select, pack_array(select, rsb))
            put(ctx, dut.mask, pack_array(mask, rsb))
            put(ctx, dut.row_sign, pack_array(row_sign, 2))
            clr = int(t in clear)
            ctx.set(dut.clear, clr)
            valids, payloads = [], []
            for bus, src in zip(dut.buses, sources, strict=True):
                valid, payload = src.present(t)
                ctx.set(bus.valid, valid)
                put(ctx, bus.payload, payload)
                valids.append(valid)
                payloads.append(payload)
            exp = ref.tick(select, mask, row_sign, valids, payloads, clear=clr)
            outputs.append(exp)
            for b, bus in enumerate(dut.buses):
                got = ctx.get(bus.ready)
                assert got == exp["buses_ready"][b], mismatch(
                    t, f"buses[{b}].ready", got, exp["buses_ready"][b])
                got = ctx.get(dut.unmatched[b])
                assert got == exp["unmatched"][b], mismatch(
                    t, f"unmatched[{b}]", got, exp["unmatched"][b])
            for p, port in enumerate(dut.rows):
                got = RowEvent(ctx.get(port.active), ctx.get(port.row), ctx.get(port.address))
                assert got == exp["rows"][p], mismatch(t, f"rows[{p}]", got, exp["rows"][p])
                got = get(ctx, dut.signs[p])
                assert got == exp["signs"][p], mismatch(t, f"signs[{p}]", got, exp["signs"][p])
            for src, ready in zip(sources, exp["buses_ready"], strict=True):
                src.after(ready)
            await ctx.tick()

    simulate(dut, bench, name=name)
    return outputs


# -- randomized -----------------------------------------------------------------

@st.composite
def variant_configs(draw):
    rows = draw(st.sampled_from([2, 4, 6, 8, 12, 16, 20]))
    rsb = draw(st.integers(1, 4))
    return MINI.replace(
        rows_per_half=rows, buses_per_half=draw(st.integers(1, min(3, rows // 2))),
        row_select_bits=rsb, label_bits=draw(st.integers(1, 6)),
        counter_bits=4)  # the narrowest counters, to reach saturation


@st.composite
def driver_settings(draw, cfg):
    rs_max = (1 << cfg.row_select_bits) - 1
    n_drv = cfg.drivers_per_half
    mode = draw(st.sampled_from(["random", "match_all", "match_none"]))
    if mode == "match_all":  # every event matches every driver of its bus
        select, mask = [0] * n_drv, [0] * n_drv
    elif mode == "match_none":  # only row_select == rs_max matches: floods `unmatched`
        select, mask = [rs_max] * n_drv, [rs_max] * n_drv
    else:
        # few distinct selects (colliding), masks 0 (match every event) or full often
        selects = draw(st.lists(st.integers(0, rs_max), min_size=1, max_size=3))
        select = draw(st.lists(st.sampled_from(selects), min_size=n_drv, max_size=n_drv))
        mask_st = st.one_of(st.just(0), st.just(rs_max), st.integers(0, rs_max))
        mask = draw(st.lists(mask_st, min_size=n_drv, max_size=n_drv))
    row_sign = draw(st.lists(st.integers(0, 3), min_size=cfg.rows_per_half,
                             max_size=cfg.rows_per_half))
    return select, mask, row_sign


@st.composite
def bus_sources(draw, cfg, n_cycles):
    rs_max = (1 << cfg.row_select_bits) - 1
    upper = (1 << (cfg.event_label_bits - cfg.label_bits - cfg.row_select_bits)) - 1
    flood = draw(st.booleans())  # every bus offers an event in every cycle
    sources = []
    for _ in range(cfg.buses_per_half):
        events = draw(st.lists(st.builds(
            lambda a, r, u: pack_event(cfg, a, r, u),
            st.integers(0, (1 << cfg.label_bits) - 1), st.integers(0, rs_max),
            st.integers(0, upper)), min_size=0, max_size=n_cycles))
        busy = flood or draw(st.booleans())  # always offering when it has events
        if flood:
            events += [events[-1] if events else 0] * (n_cycles - len(events))
        offer = [True] if busy else draw(st.lists(st.booleans(), min_size=1, max_size=8))
        sources.append(Source(events, offer))
    return sources


@pytest.mark.parametrize("variant", [False, True], ids=["mini", "variant"])
@settings(max_examples=15)
@given(data=st.data())
def test_random_against_reference(variant, data):
    cfg = data.draw(variant_configs()) if variant else MINI
    n_cycles = 64
    settings_a = data.draw(driver_settings(cfg))
    # the host may rewrite the configuration once in the middle of a run
    settings_b = data.draw(st.one_of(st.just(settings_a), driver_settings(cfg)))
    switch = data.draw(st.integers(0, n_cycles))
    sources = data.draw(bus_sources(cfg, n_cycles))
    clear = data.draw(st.sets(st.integers(0, n_cycles - 1), max_size=2))
    run(cfg, lambda t: settings_a if t < switch else settings_b, sources, n_cycles,
        clear=clear)


# -- directed ---------------------------------------------------------------------

def mini_settings(cfg, select_of=None, mask_of=None, sign_of=None):
    n_drv = cfg.drivers_per_half
    rs_max = (1 << cfg.row_select_bits) - 1
    select = [(select_of or {}).get(d, rs_max) for d in range(n_drv)]
    mask = [(mask_of or {}).get(d, rs_max) for d in range(n_drv)]
    row_sign = [(sign_of or {}).get(r, RowSign.EXC) for r in range(cfg.rows_per_half)]
    return select, mask, row_sign


def test_event_matching_three_drivers_takes_three_cycles():
    cfg = MINI  # B = 2: bus 0 has drivers 0, 2, 4, 6
    config = mini_settings(cfg, select_of={0: 5, 2: 5, 4: 5, 6: 6},
                           sign_of={9: RowSign.INH, 4: RowSign.OFF})
    ev = pack_event(cfg, address=11, row_select=5)
    sources = [Source([ev], [True]), Source([], [True])]
    out = run(cfg, config, sources, 5)
    assert [o["buses_ready"][0] for o in out] == [0, 0, 1, 1, 1]
    assert [o["rows"][0] for o in out[:3]] == [RowEvent(1, 0, 11), RowEvent(1, 4, 11),
                                                RowEvent(1, 8, 11)]
    assert [o["rows"][1] for o in out[:3]] == [RowEvent(1, 1, 11), RowEvent(1, 5, 11),
                                                RowEvent(1, 9, 11)]
    assert [o["signs"][0] for o in out[:3]] == [RowSign.EXC, RowSign.OFF, RowSign.EXC]
    assert [o["signs"][1] for o in out[:3]] == [RowSign.EXC, RowSign.EXC, RowSign.INH]
    assert out[3]["rows"][:2] == [IDLE_ROW, IDLE_ROW]
    assert out[3]["signs"] == [RowSign.OFF] * 4
    assert out[-1]["unmatched"] == [0, 0]


def test_unmatched_events_count_and_saturate():
    cfg = MINI.replace(counter_bits=4)
    config = mini_settings(cfg)  # every driver selects rs_max with a full mask
    ev = pack_event(cfg, address=1, row_select=0)
    sources = [Source([ev] * 20, [True]), Source([ev] * 3, [True])]
    out = run(cfg, config, sources, 22)
    assert all(o["buses_ready"] == [1, 1] for o in out), "no match: ready at once"
    assert out[-1]["unmatched"] == [15, 3]


def test_mask_zero_matches_every_driver_of_the_bus():
    cfg = MINI
    config = mini_settings(cfg, mask_of={d: 0 for d in range(cfg.drivers_per_half)})
    ev = pack_event(cfg, address=2, row_select=3)
    sources = [Source([], [True]), Source([ev, ev], [True])]
    out = run(cfg, config, sources, 9)
    assert [o["rows"][2].row for o in out[:8]] == [2, 6, 10, 14] * 2
    assert [o["buses_ready"][1] for o in out] == [0, 0, 0, 1] * 2 + [1]


# -- full preset: it builds, and its ports have meaningful names --------------------

def port_names(text: str) -> set[str]:
    header = re.search(r"^module \w+\((.*?)\);", text, re.S | re.M).group(1)
    return {name.strip() for name in header.split(",")}


def test_full_preset_verilog_port_names():
    cfg = FULL
    text = verilog.convert(SynapseDrivers(cfg), name="synapse_drivers",
                           emit_src=False, strip_internal_attrs=True)
    expected = {"clk", "rst", "select", "mask", "row_sign", "clear"}
    for b in range(cfg.buses_per_half):
        expected |= {f"buses__{b}__valid", f"buses__{b}__ready", f"buses__{b}__payload",
                     f"unmatched__{b}"}
    for p in range(2 * cfg.buses_per_half):
        expected |= {f"rows__{p}__active", f"rows__{p}__row", f"rows__{p}__address",
                     f"signs__{p}"}
    assert port_names(text) == expected
