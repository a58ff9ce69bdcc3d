"""SynapseMemory (rtl/synapse_memory.py) against SynapseMemoryRef, cycle by cycle."""
from __future__ import annotations

import re

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import pack_array, pack_synapse, unpack_array
from spikeloop.model.digital.synapse_memory import IDLE_ROW, RowEvent, SynapseMemoryRef
from spikeloop.rtl.synapse_memory import SynapseMemory, host_addr_bits, row_bits
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


def run(cfg, stimulus, *, name="synapse_memory"):
    """Drive RTL and reference with ``stimulus`` (a list of dicts of ref inputs),
    compare every output every cycle; returns the list of reference outputs."""
    dut = SynapseMemory(cfg)
    ref = SynapseMemoryRef(cfg)
    n_cols = cfg.columns_per_half
    outputs = []

    async def bench(ctx):
        for t, inputs in enumerate(stimulus):
            rows = inputs.get("rows") or [IDLE_ROW] * len(dut.rows)
            put(ctx, dut.host_addr, inputs.get("host_addr", 0))
            put(ctx, dut.host_we, inputs.get("host_we", 0))
            put(ctx, dut.host_wdata, inputs.get("host_wdata", 0))
            for port, (active, row, address) in zip(dut.rows, rows, strict=True):
                ctx.set(port.active, active)
                ctx.set(port.row, row)
                ctx.set(port.address, address)
            put(ctx, dut.ppu_row, inputs.get("ppu_row", 0))
            put(ctx, dut.ppu_re, inputs.get("ppu_re", 0))
            put(ctx, dut.ppu_we, inputs.get("ppu_we", 0))
            wdata = inputs.get("ppu_wdata") or [(0, 0)] * n_cols
            put(ctx, dut.ppu_wdata, pack_array([pack_synapse(cfg, w, lab) for w, lab in wdata],
                                               cfg.weight_bits + cfg.label_bits))
            exp = ref.tick(**inputs)
            outputs.append(exp)
            got = get(ctx, dut.host_lost)
            assert got == exp["host_lost"], mismatch(t, "host_lost", got, exp["host_lost"])
            got = unpack_array(get(ctx, dut.ppu_rdata), cfg.weight_bits + cfg.label_bits, n_cols)
            want = [pack_synapse(cfg, w, lab) for w, lab in exp["ppu_rdata"]]
            assert got == want, mismatch(t, "ppu_rdata", got, want)
            got = get(ctx, dut.host_rdata)
            assert got == exp["host_rdata"], mismatch(t, "host_rdata", got, exp["host_rdata"])
            for p, port in enumerate(dut.weights):
                got = unpack_array(get(ctx, port), cfg.weight_bits, n_cols)
                assert got == exp["weights"][p], mismatch(t, f"weights[{p}]", got,
                                                          exp["weights"][p])
            await ctx.tick()

    simulate(dut, bench, name=name)
    return outputs


# -- randomized -----------------------------------------------------------------

@st.composite
def variant_configs(draw):
    cols = draw(st.integers(1, 6))
    rows = draw(st.sampled_from([2, 4, 6, 8, 12, 16]))
    return MINI.replace(
        n_neurons=2 * cols, neurons_per_block=2, rows_per_half=rows,
        buses_per_half=draw(st.integers(1, min(3, rows // 2))),
        weight_bits=draw(st.integers(1, 6)), label_bits=draw(st.integers(1, 6)))


@st.composite
def stimuli(draw, cfg, n_cycles, ppu=False):
    n_rows, n_cols = cfg.rows_per_half, cfg.columns_per_half
    n_ports = 2 * cfg.buses_per_half
    overload = draw(st.booleans())
    # a few hot rows and labels so that writes, reads and events collide
    hot_rows = draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=3))
    labels = draw(st.lists(st.integers(0, (1 << cfg.label_bits) - 1), min_size=1, max_size=2))
    weight = st.one_of(st.just(cfg.weight_max), st.integers(0, cfg.weight_max))
    any_addr = st.integers(0, (1 << host_addr_bits(cfg)) - 1)  # out of range too
    hot_addr = st.builds(lambda r, c: r * n_cols + c, st.sampled_from(hot_rows),
                         st.integers(0, n_cols - 1))
    any_row = st.integers(0, (1 << row_bits(cfg)) - 1)
    stim = []
    for _ in range(n_cycles):
        inputs = {
            "host_addr": draw(st.one_of(hot_addr, hot_addr, any_addr)),
            "host_we": draw(st.booleans()),
            "host_wdata": pack_synapse(cfg, draw(weight), draw(st.sampled_from(labels))),
        }
        rows = []
        for _ in range(n_ports):
            active = 1 if overload else int(draw(st.booleans()))
            row = draw(st.one_of(st.sampled_from(hot_rows), any_row))
            rows.append(RowEvent(active, row, draw(st.sampled_from(labels))))
        inputs["rows"] = rows
        if ppu:   # the PPU row port: reads and column-masked writes on the hot rows
            inputs["ppu_row"] = draw(st.one_of(st.sampled_from(hot_rows), any_row))
            inputs["ppu_re"] = int(draw(st.booleans()))
            inputs["ppu_we"] = draw(st.sampled_from([0, 0, (1 << n_cols) - 1])) or draw(
                st.integers(0, (1 << n_cols) - 1))
            inputs["ppu_wdata"] = [(draw(weight), draw(st.sampled_from(labels)))
                                   for _ in range(n_cols)]
        stim.append(inputs)
    return stim


@pytest.mark.parametrize("variant", [False, True], ids=["mini", "variant"])
@settings(max_examples=15)
@given(data=st.data())
def test_random_against_reference(variant, data):
    cfg = data.draw(variant_configs()) if variant else MINI
    stim = data.draw(stimuli(cfg, 48))
    run(cfg, stim)


@settings(max_examples=10)
@given(data=st.data())
def test_ppu_row_port_against_reference(data):
    """Host writes, event ports and the PPU's row reads and writes colliding on
    a few hot rows (a PPU write wins over a host write: host_lost)."""
    cfg = data.draw(st.sampled_from([MINI, None]))
    cfg = cfg or data.draw(variant_configs())
    run(cfg, data.draw(stimuli(cfg, 48, ppu=True)))


def test_ppu_read_is_read_before_write_and_holds():
    cfg = MINI
    c = cfg.columns_per_half
    row = [(i + 1, i) for i in range(c)]
    out = run(cfg, [
        {"ppu_row": 5, "ppu_we": (1 << c) - 1, "ppu_wdata": row, "ppu_re": 1,
         "host_addr": 5 * c, "host_we": 1, "host_wdata": pack_synapse(cfg, 9, 9)},
        {"ppu_row": 5, "ppu_re": 1},
        {"ppu_row": 0},                  # ppu_re low: rdata holds
        {"ppu_row": 0},
    ])
    assert out[0]["host_lost"] == 1
    assert [o["ppu_rdata"] for o in out] == [[(0, 0)] * c, [(0, 0)] * c, row, row]


# -- directed ---------------------------------------------------------------------

def test_host_write_read_latency():
    cfg = MINI
    c = cfg.columns_per_half
    addr = 3 * c + 5
    word = pack_synapse(cfg, 42, 17)
    out = run(cfg, [
        {"host_addr": addr, "host_we": 1, "host_wdata": word},  # t0: write (reads old)
        {"host_addr": addr},                                    # t1: read issued
        {"host_addr": 0},                                       # t2: shows the write
        {"host_addr": 0},
    ])
    assert [o["host_rdata"] for o in out] == [0, 0, word, 0]


def two_label_row(cfg, row: int = 2) -> list[dict]:
    """Host writes of synapse row ``row``: column ``col`` gets weight ``col + 1``
    and label 9 on odd columns, 4 on even ones (one host write per cycle)."""
    c = cfg.columns_per_half
    return [{"host_addr": row * c + col, "host_we": 1,
             "host_wdata": pack_synapse(cfg, col + 1, 9 if col % 2 else 4)}
            for col in range(c)]


def test_label_match_and_mismatch():
    cfg = MINI
    c = cfg.columns_per_half
    n_ports = 2 * cfg.buses_per_half
    stim = two_label_row(cfg)
    rows = [RowEvent(1, 2, 9), RowEvent(1, 2, 4), RowEvent(1, 2, 5), RowEvent(0, 2, 9)]
    rows += [IDLE_ROW] * (n_ports - len(rows))
    stim.append({"rows": rows})
    out = run(cfg, stim)[-1]["weights"]
    assert out[0] == [col + 1 if col % 2 else 0 for col in range(c)]
    assert out[1] == [0 if col % 2 else col + 1 for col in range(c)]
    assert out[2] == [0] * c, "a label mismatch gives 0"
    assert out[3] == [0] * c, "an inactive port gives 0"


def test_every_port_on_one_row_at_full_weight():
    cfg = MINI
    c = cfg.columns_per_half
    n_ports = 2 * cfg.buses_per_half
    stim = [{"host_addr": 7 * c + col, "host_we": 1,
             "host_wdata": pack_synapse(cfg, cfg.weight_max, 0)} for col in range(c)]
    stim.append({"rows": [RowEvent(1, 7, 0)] * n_ports})
    assert run(cfg, stim)[-1]["weights"] == [[cfg.weight_max] * c] * n_ports


# -- full preset: it builds, and its ports have meaningful names --------------------

def port_names(text: str) -> set[str]:
    header = re.search(r"^module \w+\((.*?)\);", text, re.S | re.M).group(1)
    return {name.strip() for name in header.split(",")}


def test_full_preset_verilog_port_names():
    cfg = FULL
    text = verilog.convert(SynapseMemory(cfg), name="synapse_memory",
                           emit_src=False, strip_internal_attrs=True)
    n_ports = 2 * cfg.buses_per_half
    expected = {"clk", "rst", "host_addr", "host_we", "host_wdata", "host_rdata", "host_lost",
                "ppu_row", "ppu_re", "ppu_rdata", "ppu_we", "ppu_wdata"}
    for p in range(n_ports):
        expected |= {f"rows__{p}__active", f"rows__{p}__row", f"rows__{p}__address",
                     f"weights__{p}"}
    assert port_names(text) == expected
    width = cfg.columns_per_half * cfg.weight_bits
    assert re.search(rf"output \[{width - 1}:0\] weights__0;", text)
