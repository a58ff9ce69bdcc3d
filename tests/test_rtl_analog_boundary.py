"""AnalogBoundary (rtl/analog_boundary.py) against AnalogBoundaryRef, cycle by cycle."""
from __future__ import annotations

import re

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import RowSign, pack_array, unpack_array
from spikeloop.model.digital.analog_boundary import AnalogBoundaryRef
from spikeloop.rtl.analog_boundary import AnalogBoundary, sum_bits
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl


def run(cfg, stimulus, *, name="analog_boundary"):
    """``stimulus``: per cycle a dict ``weights`` (per port, per column), ``signs``
    (per port), optional ``clear``.  Returns the reference outputs per cycle."""
    dut = AnalogBoundary(cfg)
    ref = AnalogBoundaryRef(cfg)
    n_cols, wb, sb = cfg.columns_per_half, cfg.weight_bits, sum_bits(cfg)
    outputs = []

    async def bench(ctx):
        for t, inputs in enumerate(stimulus):
            for port, ws in zip(dut.weights, inputs["weights"], strict=True):
                put(ctx, port, pack_array(ws, wb))
            for port, sign in zip(dut.signs, inputs["signs"], strict=True):
                ctx.set(port, sign)
            ctx.set(dut.clear, inputs.get("clear", 0))
            exp = ref.tick(**inputs)
            outputs.append(exp)
            for name_ in ("exc_sum", "inh_sum"):
                got = unpack_array(get(ctx, getattr(dut, name_)), sb, n_cols)
                assert got == exp[name_], mismatch(t, name_, got, exp[name_])
            for name_ in ("step_done", "phase"):
                got = ctx.get(getattr(dut, name_))
                assert got == exp[name_], mismatch(t, name_, got, exp[name_])
            await ctx.tick()

    simulate(dut, bench, name=name)
    return outputs


# -- randomized -----------------------------------------------------------------

@st.composite
def variant_configs(draw):
    cols = draw(st.integers(1, 6))
    return MINI.replace(
        n_neurons=2 * cols, neurons_per_block=2,
        buses_per_half=draw(st.integers(1, 3)), weight_bits=draw(st.integers(1, 6)),
        analog_step_cycles=draw(st.integers(1, 6)))


@st.composite
def stimuli(draw, cfg, n_cycles):
    n_cols, n_ports = cfg.columns_per_half, 2 * cfg.buses_per_half
    overload = draw(st.booleans())  # every port EXC (or INH) at full weight
    overload_sign = draw(st.sampled_from([RowSign.EXC, RowSign.INH]))
    weight = st.one_of(st.just(cfg.weight_max), st.integers(0, cfg.weight_max))
    clear_p = draw(st.sampled_from([0, 0, 0.05]))
    stim = []
    for _ in range(n_cycles):
        if overload and draw(st.integers(0, 7)):
            weights = [[cfg.weight_max] * n_cols] * n_ports
            signs = [int(overload_sign)] * n_ports
        else:
            weights = [[draw(weight) for _ in range(n_cols)] for _ in range(n_ports)]
            signs = [draw(st.integers(0, 3)) for _ in range(n_ports)]
        clear = int(clear_p > 0 and draw(st.integers(0, 19)) == 0)
        stim.append({"weights": weights, "signs": signs, "clear": clear})
    return stim


@pytest.mark.parametrize("variant", [False, True], ids=["mini", "variant"])
@settings(max_examples=15)
@given(data=st.data())
def test_random_against_reference(variant, data):
    cfg = data.draw(variant_configs()) if variant else MINI
    run(cfg, data.draw(stimuli(cfg, 40)))


# -- directed ---------------------------------------------------------------------

def idle(cfg):
    n_ports = 2 * cfg.buses_per_half
    return {"weights": [[0] * cfg.columns_per_half] * n_ports, "signs": [0] * n_ports}


def test_sums_of_a_step_appear_with_step_done():
    cfg = MINI.replace(analog_step_cycles=4)
    c = cfg.columns_per_half
    n_ports = 2 * cfg.buses_per_half
    stim = []
    for t in range(12):
        weights = [[t + 1] * c] + [[1] * c] * (n_ports - 1)
        signs = [RowSign.EXC, RowSign.INH] + [RowSign.OFF] * (n_ports - 2)
        stim.append({"weights": weights, "signs": signs})
    out = run(cfg, stim)
    assert [o["step_done"] for o in out] == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    assert [o["phase"] for o in out] == [0, 1, 2, 3] * 3
    assert out[4]["exc_sum"] == [1 + 2 + 3 + 4] * c
    assert out[4]["inh_sum"] == [4] * c
    assert out[8]["exc_sum"] == [5 + 6 + 7 + 8] * c
    assert out[7]["exc_sum"] == out[4]["exc_sum"], "sums hold until the next step"


def test_maximum_sum_does_not_overflow():
    cfg = MINI
    n_ports = 2 * cfg.buses_per_half
    full = {"weights": [[cfg.weight_max] * cfg.columns_per_half] * n_ports,
            "signs": [RowSign.INH] * n_ports}
    n = cfg.analog_step_cycles
    out = run(cfg, [full] * n + [idle(cfg)])
    top = n_ports * n * cfg.weight_max
    assert top < (1 << sum_bits(cfg))
    assert out[n]["step_done"] == 1
    assert out[n]["inh_sum"] == [top] * cfg.columns_per_half
    assert out[n]["exc_sum"] == [0] * cfg.columns_per_half


def test_clear_restarts_the_step():
    cfg = MINI.replace(analog_step_cycles=3)
    c = cfg.columns_per_half
    n_ports = 2 * cfg.buses_per_half
    one = {"weights": [[1] * c] * n_ports, "signs": [RowSign.EXC] + [0] * (n_ports - 1)}
    stim = [one] * 4 + [dict(one, clear=1)] + [one] * 4
    out = run(cfg, stim)
    assert out[3]["step_done"] == 1 and out[3]["exc_sum"] == [3] * c
    # clear in cycle 4: its inputs are discarded, the sums are zeroed
    assert out[5]["exc_sum"] == [0] * c and out[5]["phase"] == 0
    assert out[8]["step_done"] == 1 and out[8]["exc_sum"] == [3] * c


# -- full preset: it builds, and its ports have meaningful names --------------------

def port_names(text: str) -> set[str]:
    header = re.search(r"^module \w+\((.*?)\);", text, re.S | re.M).group(1)
    return {name.strip() for name in header.split(",")}


def test_full_preset_verilog_port_names():
    cfg = FULL
    text = verilog.convert(AnalogBoundary(cfg), name="analog_boundary",
                           emit_src=False, strip_internal_attrs=True)
    expected = {"clk", "rst", "clear", "exc_sum", "inh_sum", "step_done", "phase"}
    for p in range(2 * cfg.buses_per_half):
        expected |= {f"weights__{p}", f"signs__{p}"}
    assert port_names(text) == expected
    width = cfg.columns_per_half * sum_bits(cfg)
    assert re.search(rf"output \[{width - 1}:0\] exc_sum;", text)
