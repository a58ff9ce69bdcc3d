"""NeuronBackend (rtl/neuron_backend.py) against NeuronBackendRef, cycle by cycle."""
from __future__ import annotations

import pytest
from amaranth.back import verilog
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.layouts import pack_array
from spikeloop.model.digital.neuron_backend import NeuronBackendRef
from spikeloop.rtl.neuron_backend import NeuronBackend
from tests.simutil import get, mismatch, put, simulate

pytestmark = pytest.mark.rtl

OUTPUTS = ("spike_out", "refractory_active")


def run_compare(cfg, stimulus):
    """Drive RTL and reference with ``stimulus`` (a list of input dicts), compare every
    output every cycle."""
    dut = NeuronBackend(cfg)
    ref = NeuronBackendRef(cfg)

    async def bench(ctx):
        for cycle, inp in enumerate(stimulus):
            put(ctx, dut.spike_in, inp["spike_in"])
            put(ctx, dut.enable, inp["enable"])
            put(ctx, dut.refractory, pack_array(inp["refractory"], cfg.refractory_bits))
            put(ctx, dut.prescale, inp["prescale"])
            put(ctx, dut.clear, inp["clear"])
            expected = ref.tick(**inp)
            for name in OUTPUTS:
                rtl = get(ctx, getattr(dut, name))
                assert rtl == expected[name], mismatch(cycle, name, rtl, expected[name])
            await ctx.tick()

    simulate(dut, bench, name="neuron_backend")


@st.composite
def configs(draw):
    n = draw(st.sampled_from([2, 4, 8, 16]))
    return MINI.replace(
        n_neurons=n,
        neurons_per_block=min(4, n),
        refractory_bits=draw(st.sampled_from([1, 2, 3, MINI.refractory_bits])),
        refractory_prescale_bits=draw(st.sampled_from([1, 2, 3])),
    )


@st.composite
def scenarios(draw):
    cfg = draw(configs())
    n = cfg.n_neurons
    all_ones = (1 << n) - 1
    rmax = (1 << cfg.refractory_bits) - 1
    pmax = (1 << cfg.refractory_prescale_bits) - 1
    cycles = draw(st.integers(20, 60))
    refractory = draw(st.lists(st.sampled_from(sorted({0, 1, 2, 3, rmax} & set(range(rmax + 1))))
                               | st.integers(0, rmax),
                               min_size=n, max_size=n))
    enable = draw(st.sampled_from([all_ones]) | st.integers(0, all_ones))
    prescale = draw(st.sampled_from([0, 1, pmax]) | st.integers(0, pmax))
    # spike density: overload (all spiking every cycle), random, sparse
    mode = draw(st.sampled_from(["overload", "random", "sparse"]))
    stimulus = []
    for _ in range(cycles):
        if mode == "overload":
            spikes = all_ones
        elif mode == "random":
            spikes = draw(st.integers(0, all_ones))
        else:
            spikes = 1 << draw(st.integers(0, n)) & all_ones
        if draw(st.integers(0, 15)) == 0:        # occasional reconfiguration
            prescale = draw(st.integers(0, pmax))
            enable = draw(st.integers(0, all_ones))
        stimulus.append({
            "spike_in": spikes,
            "enable": enable,
            "refractory": list(refractory),
            "prescale": prescale,
            "clear": int(draw(st.integers(0, 24)) == 0),
        })
    return cfg, stimulus


@settings(max_examples=20, deadline=None)
@given(scenarios())
def test_random_against_reference(scenario):
    cfg, stimulus = scenario
    run_compare(cfg, stimulus)


def _constant(cfg, cycles, *, spike_in, refractory, prescale, clear_at=()):
    n = cfg.n_neurons
    return [{"spike_in": spike_in(t), "enable": (1 << n) - 1, "refractory": refractory,
             "prescale": prescale, "clear": int(t in clear_at)} for t in range(cycles)]


@pytest.mark.parametrize("prescale", [0, 1, 3])
@pytest.mark.parametrize("period", [0, 1, 5])
def test_refractory_length(prescale, period):
    """A spike in a tick cycle keeps the neuron refractory for refractory * 2**prescale
    cycles; it fires again in the first cycle after."""
    cfg = MINI
    n = cfg.n_neurons
    ref = NeuronBackendRef(cfg)
    # neuron 0 wants to spike every cycle; first spike at cycle 0, a tick cycle
    stim = _constant(cfg, 2 + 3 * (period << prescale) + 4, spike_in=lambda t: 1,
                     refractory=[period] * n, prescale=prescale)
    fired = [t for t, inp in enumerate(stim) if ref.tick(**inp)["spike_out"] & 1]
    assert fired[0] == 0
    assert fired[1] - fired[0] - 1 == period << prescale
    run_compare(cfg, stim)


def test_refractory_unaligned_spike():
    """A spike between ticks: refractory between (r-1)*2**p+1 and r*2**p cycles."""
    cfg = MINI
    r, p = 3, 2
    ref = NeuronBackendRef(cfg)
    stim = _constant(cfg, 40, spike_in=lambda t: int(t >= 1), refractory=[r] * cfg.n_neurons,
                     prescale=p)
    fired = [t for t, inp in enumerate(stim) if ref.tick(**inp)["spike_out"] & 1]
    assert fired[0] == 1
    assert (r - 1) * 2**p + 1 <= fired[1] - fired[0] - 1 <= r * 2**p
    run_compare(cfg, stim)


def test_max_refractory_and_clear():
    """The largest refractory setting at the largest prescale holds the neuron off;
    ``clear`` releases it at once and restarts the prescaler."""
    cfg = MINI.replace(refractory_bits=2, refractory_prescale_bits=2)
    n = cfg.n_neurons
    stim = _constant(cfg, 80, spike_in=lambda t: (1 << n) - 1, refractory=[3] * n,
                     prescale=3, clear_at=(30,))
    ref = NeuronBackendRef(cfg)
    outs = [ref.tick(**inp) for inp in stim]
    fired = [t for t, o in enumerate(outs) if o["spike_out"]]
    assert fired == [0, 25, 31, 56]
    assert all(o["refractory_active"] == (1 << n) - 1 for o in outs[1:25])
    run_compare(cfg, stim)


def test_disabled_neurons_never_fire():
    cfg = MINI
    n = cfg.n_neurons
    stim = [{"spike_in": (1 << n) - 1, "enable": 0b1010, "refractory": [1] * n,
             "prescale": 0, "clear": 0} for _ in range(6)]
    ref = NeuronBackendRef(cfg)
    assert [ref.tick(**s)["spike_out"] for s in stim] == [0b1010, 0, 0b1010, 0, 0b1010, 0]
    run_compare(cfg, stim)


def test_full_preset_converts_to_verilog():
    text = verilog.convert(NeuronBackend(FULL), name="neuron_backend")
    assert "module neuron_backend" in text
