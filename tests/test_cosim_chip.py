"""Backend "cosim" (the whole chip's RTL under cocotb with the analog model in the
loop) against the reference backend: identical Observables.

Fast tier (mini preset, Verilator): a few scenarios and a bridge-timing probe;
the one-time Verilator build of the mini top takes ~35-40 s on this 2-core
machine, each cosim run ~5 s (mostly simulator and torch start-up).  The slow
tier (`make sim`) runs every scenario on Verilator and Icarus and the waveform
path."""
import time
from pathlib import Path

import numpy as np
import pytest

from spikeloop.backends.reference import run_reference
from spikeloop.base.config import FULL, MINI
from spikeloop.base.events import InputEvents
from spikeloop.base.image import ConfigImage
from spikeloop.cosim import runner
from spikeloop.cosim.backend import run_cosim
from spikeloop.cosim.bridge import WATCHDOG_STEPS
from spikeloop.cosim.runner import CosimTestFailure
from spikeloop.cosim.tests.test_chip_cocotb import WATCHDOG_ENV
from spikeloop.model.chip import Chip
from spikeloop.verify.regression import check_expect, run_scenario
from spikeloop.verify.scenarios import SCENARIOS, base_image, connect, input_event, n_inputs
from tests.cosimutil import build_verilator_top

pytestmark = pytest.mark.cosim


@pytest.fixture(scope="module")
def chip():
    return Chip.calibrated(MINI, 1)


@pytest.fixture(scope="module")
def verilator_top():
    return build_verilator_top(MINI)


def both(chip, image, events, n_steps, *, run_seed=1, sample_offset=0, simulator="verilator",
         **cosim_options):
    image = chip.configure(image)
    co = run_cosim(chip, image, events, n_steps, run_seed=run_seed,
                   sample_offset=sample_offset, simulator=simulator, row_events=True,
                   **cosim_options)
    ref = run_reference(chip, image, events, n_steps, run_seed=run_seed,
                        sample_offset=sample_offset, row_events=True)
    return co, ref


@pytest.mark.parametrize("name, sample_offset, write_zeros", [
    ("recurrence", 0, False),     # spike -> crossbar -> bus and host link -> recorder
    ("xbar_overflow", 0, False),  # FIFO overflow, drops counted
    ("label_match", 3, True),     # two samples, noise keyed by sample_offset + b; every
])                                # image word written (zeros too)
def test_scenario_equals_reference(chip, verilator_top, name, sample_offset, write_zeros):
    sc = SCENARIOS[name](MINI, np.random.default_rng(0))
    t0 = time.monotonic()
    co, ref = both(chip, sc.image, sc.events, sc.n_steps, sample_offset=sample_offset,
                   write_zeros=write_zeros)
    assert co.stats["image_writes"] == (len(sc.image.bus_writes()) if write_zeros else
                                        sum(v != 0 for _, v in chip.configure(
                                            sc.image).bus_writes()))
    s = co.stats
    print(f"{name}: {s['sim_cycles']} cycles simulated in {s['test_wall_s']:.2f} s "
          f"({s['cycles_per_s']:.0f} cycles/s), call {time.monotonic() - t0:.1f} s")
    assert co.backend == "cosim" and ref.backend == "reference"
    assert co.first_difference(ref) is None, co.first_difference(ref)
    assert check_expect(sc, co) is None


def test_adc_every_cycle_pins_the_bridge_timing(chip, verilator_top):
    """The ADC samples every cycle, so a code change the bridge drives one cycle
    late (or early) shows in the buffer; the scenarios sample one cycle before
    the step_done cycle and cannot see it.  A spike recorded on a host link pins
    the spike_in cycle the same way."""
    img = base_image(MINI)
    k = n_inputs(MINI)
    for i in range(k):
        connect(MINI, img, i, 0, 63)
    img.adc_period = np.int64(1)
    img.xbar_enable[0, MINI.n_buses] = 1           # block 0 -> host link 0: spikes recorded
    ev = InputEvents.from_lists(MINI, [[(2 * i, 0, input_event(MINI, i)) for i in range(k)]])
    co, ref = both(chip, img, ev, 20)
    assert co.first_difference(ref) is None, co.first_difference(ref)
    assert ref.adc_count[0] == MINI.adc_buffer_depth and ref.adc_overflow[0] > 0
    assert len(np.unique(ref.adc[:, 0, 0])) > 2    # the membrane moves within the buffer
    assert len(ref.spikes) and len(ref.records)    # neuron 0 fires, its event is recorded


def test_run_cosim_rejects_an_image_of_another_preset(chip):
    sc = SCENARIOS["psp"](MINI, np.random.default_rng(0))
    with pytest.raises(ValueError, match="preset"):
        run_cosim(chip, ConfigImage.empty(FULL), sc.events, 4)


def test_the_bridge_watchdog_fails_a_chip_that_never_steps(verilator_top):
    """A run whose chip never raises ``step_done`` fails, naming the step, within
    the watchdog's window (cosim/bridge.py ``WATCHDOG_STEPS``)."""
    cycles = WATCHDOG_STEPS * MINI.analog_step_cycles + 4
    with pytest.raises(CosimTestFailure,
                       match=f"sample 0: no step_done for step 0 within {cycles} cycles"):
        runner.run_tests(verilator_top, "spikeloop.cosim.tests.test_chip_cocotb",
                         testcase="test_bridge_watchdog", extra_env={WATCHDOG_ENV: "1"})


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_on_every_simulator(chip, name, simulator):
    row = run_scenario(chip, name, simulator)
    print(f"{name} on {simulator}: {row.sim_cycles} cycles, {row.cycles_per_s:.0f} cycles/s")
    assert row.passed, row.verdict


@pytest.mark.slow
def test_waves_write_fst_and_membranes(chip):
    """waves=True: the FST of the digital signals and the companion membrane VCD
    and CSV in the run directory; the observables are unchanged."""
    sc = SCENARIOS["fan_in"](MINI, np.random.default_rng(0))
    image = chip.configure(sc.image)
    co = run_cosim(chip, image, sc.events, sc.n_steps, run_seed=1, waves=True)
    ref = run_reference(chip, image, sc.events, sc.n_steps, run_seed=1)
    assert co.first_difference(ref) is None
    run_dir = Path(co.stats["run_dir"])
    assert Path(co.stats["waves"]).is_file()
    vcd = (run_dir / "membranes.vcd").read_text()
    assert "$var real 64" in vcd and f"v_mem_{MINI.n_neurons - 1}_mV" in vcd
    rows = (run_dir / "membranes.csv").read_text().splitlines()
    assert len(rows) == 1 + sc.n_steps + 1      # header, initial state, one per step


@pytest.mark.slow
@pytest.mark.parametrize("step_cycles", [1, 3])
def test_other_analog_step_lengths(step_cycles):
    """A design variant with another analog step: with ``S = 1`` step_done stays
    high (the bridge cannot wait for its rising edge), with ``S = 3`` the ADC
    period of the scenarios is odd.  Same chip time as the mini scenario."""
    cfg = MINI.replace(analog_step_cycles=step_cycles)
    chip = Chip.calibrated(cfg, 1)
    for name in ("recurrence", "arbiter_burst"):
        sc = SCENARIOS[name](cfg, np.random.default_rng(0))
        n_steps = sc.n_steps * MINI.analog_step_cycles // step_cycles
        co, ref = both(chip, sc.image, sc.events, n_steps)
        assert co.first_difference(ref) is None, (name, co.first_difference(ref))


def test_random_image_reads_back_through_the_top(verilator_top):
    from spikeloop.cosim.backend import run_readback
    from spikeloop.verify.regression import random_image

    st = run_readback(random_image(MINI, seed=3))
    assert st["mismatches"] == 0 and st["words"] == len(random_image(MINI, 3).bus_writes())


# -- randomized: the RTL against the fast backend, field by field ----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spikeloop.backends.fast import run_fast  # noqa: E402
from tests.test_fast_equivalence import describe_difference, random_case  # noqa: E402

#: design variants built once each: the mini preset, and one with the smallest
#: FIFOs and memories and 4-bit counters, so overloads queue, drop and saturate
COSIM_VARIANTS = (
    MINI.replace(name="mini-random", playback_depth=128),
    MINI.replace(name="mini-tight", playback_depth=128, crossbar_fifo_depth=1,
                 arbiter_fifo_depth=1, counter_bits=4, record_depth=8, adc_buffer_depth=4),
)


def check_cosim_seed(seed: int, cfg=None) -> None:
    cfg = COSIM_VARIANTS[seed % len(COSIM_VARIANTS)] if cfg is None else cfg
    chip, img, events, n_steps, offset = random_case(seed, cfg)
    kw = dict(run_seed=seed % 7, sample_offset=offset, row_events=True)
    fast = run_fast(chip, img, events, n_steps, **kw)
    cos = run_cosim(chip, img, events, n_steps, **kw)
    diff = describe_difference(fast, cos)
    assert diff is None, f"seed {seed} ({cfg.name}): first difference (fast != cosim): {diff}"


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_cosim_equals_fast(seed):
    # the default tier builds one variant, the one whose overloads queue, drop and
    # saturate; the slow tier below draws from both
    check_cosim_seed(seed, COSIM_VARIANTS[1])


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_cosim_equals_fast_long(seed):
    check_cosim_seed(seed)


def test_binomial_noise_cosim_equals_fast():
    """The chip file the co-simulation reads keeps the noise's generator: with
    the binomial one the RTL with the analog bridge equals the fast backend too
    (and the run is not Box-Muller's)."""
    chip, img, events, n_steps, offset = random_case(12, COSIM_VARIANTS[1])
    chip.analog.noise_model = "binomial"
    kw = dict(run_seed=3, sample_offset=offset, row_events=True)
    fast = run_fast(chip, img, events, n_steps, **kw)
    cos = run_cosim(chip, img, events, n_steps, **kw)
    diff = describe_difference(fast, cos)
    assert diff is None, f"binomial noise: first difference (fast != cosim): {diff}"
    chip.analog.noise_model = "box-muller"
    assert run_fast(chip, img, events, n_steps, **kw).first_difference(cos) is not None
