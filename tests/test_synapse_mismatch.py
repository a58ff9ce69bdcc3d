"""Driver and synapse (weight DAC) mismatch: the analog side integrates each
activated synapse's weight times its fixed-point gain (model/synapses.py,
model/mismatch.py ``synapse_gain_table``), the same bits on every backend."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikeloop.backends.fast import run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import FULL, MINI
from spikeloop.base.files import FileError
from spikeloop.model import synapses
from spikeloop.model.chip import Chip
from spikeloop.model.mismatch import (
    WEIGHT_GAIN_BITS,
    MismatchConfig,
    draw_mismatch,
    driver_deviations,
    synapse_gain_table,
)
from spikeloop.ppu.asm import assemble
from tests.test_fast_equivalence import assert_same, random_case

MM = MismatchConfig(driver_gain_sigma=0.05, synapse_gain_sigma=0.2)


def with_mismatch(chip: Chip, mismatch: MismatchConfig = MM) -> Chip:
    return Chip(chip.cfg, chip.chip_seed, mismatch=mismatch)


def test_gain_table_is_drawn_from_the_chip_seed():
    assert synapse_gain_table(MINI, 1) is None                       # default: none
    a, b = synapse_gain_table(MINI, 1, MM), synapse_gain_table(MINI, 1, MM)
    assert a.dtype == np.int32 and a.shape == (MINI.n_halves, MINI.rows_per_half,
                                               MINI.columns_per_half)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, synapse_gain_table(MINI, 2, MM))
    # the synapses' own stream: the neurons' and the ADC's draws do not move
    base, other = draw_mismatch(MINI, 1), draw_mismatch(MINI, 1, MM)
    for f in dataclasses.fields(base):
        assert np.array_equal(getattr(base, f.name), getattr(other, f.name))
    # magnitudes: synapse spread alone, then the two rows of a driver share its gain
    g = synapse_gain_table(FULL, 3,
                           MismatchConfig(synapse_gain_sigma=0.1)) / 2 ** WEIGHT_GAIN_BITS
    assert abs(g.mean() - 1) < 0.005 and abs(g.std() - 0.1) < 0.005
    d = synapse_gain_table(MINI, 3, MismatchConfig(driver_gain_sigma=0.1))
    assert np.array_equal(d[:, 0::2], d[:, 1::2])
    assert (d == d[:, :, :1]).all() and len(np.unique(d)) > 4
    dev = driver_deviations(MINI, 3, MismatchConfig(driver_gain_sigma=0.1))
    assert np.array_equal(d[:, 0::2, 0], np.rint((1 + dev) * 2 ** WEIGHT_GAIN_BITS))
    assert driver_deviations(MINI, 3) is None


@pytest.mark.parametrize("bad", [-0.1, 0.6, float("nan"), "0.1"])
def test_gain_sigmas_are_checked(bad):
    with pytest.raises(ValueError, match="synapse_gain_sigma"):
        MismatchConfig(synapse_gain_sigma=bad)


def test_unit_gains_give_the_digital_weights_bits():
    """Gains of exactly 1.0 in fixed point: sums 2**10 times larger and neuron
    gains 2**10 times smaller give the same bits as no mismatch at all."""
    for seed in (3, 8):
        chip, img, events, n_steps, offset = random_case(seed, MINI)
        kw = dict(run_seed=2, sample_offset=offset, row_events=True)
        plain = run_fast(chip, img, events, n_steps, **kw)
        unit = Chip(chip.cfg, chip.chip_seed)
        unit.analog.synapse_gains = np.full((MINI.n_halves, MINI.rows_per_half,
                                             MINI.columns_per_half), 1 << WEIGHT_GAIN_BITS,
                                            np.int32)
        assert plain.spikes.shape[0] > 0
        assert_same(plain, run_fast(unit, img, events, n_steps, **kw), f"unit gains {seed}")
        assert_same(plain, run_reference(unit, img, events, n_steps, **kw),
                    f"unit gains, reference {seed}")


@pytest.mark.parametrize("seed", [3, 8, 21])
def test_fast_equals_reference_with_mismatch(seed):
    chip, img, events, n_steps, offset = random_case(seed, MINI)
    kw = dict(run_seed=1, sample_offset=offset, row_events=seed % 2 == 1)
    mm = with_mismatch(chip)
    ref = run_reference(mm, img, events, n_steps, **kw)
    assert_same(ref, run_fast(mm, img, events, n_steps, **kw), f"mismatch, seed {seed}")


def test_mismatch_changes_what_the_chip_computes():
    chip, img, events, n_steps, offset = random_case(8, MINI)
    kw = dict(run_seed=1, sample_offset=offset)
    plain = run_fast(chip, img, events, n_steps, **kw)
    mm = run_fast(with_mismatch(chip), img, events, n_steps, **kw)
    assert plain.first_difference(mm) is not None


def test_reference_checks_the_boundary_sums(monkeypatch):
    """The reference integrates its activations' synapses; their digital sums
    must equal the analog boundary's: a table off by one weight is an error."""
    chip, img, events, n_steps, offset = random_case(8, MINI)
    init = synapses.StepInput.__init__

    def off_by_one(self, *a, **k):
        init(self, *a, **k)
        self.digital.weight[...] += 1

    monkeypatch.setattr(synapses.StepInput, "__init__", off_by_one)
    with pytest.raises(AssertionError, match="sums differ from its activations"):
        run_reference(with_mismatch(chip), img, events, n_steps, sample_offset=offset)


def test_chip_file_keeps_the_mismatch(tmp_path):
    chip = with_mismatch(Chip(MINI, 2))
    chip.save(tmp_path / "c.npz")
    back = Chip.load(tmp_path / "c.npz")
    assert back.analog.mismatch_config == MM
    assert np.array_equal(back.synapse_gains, chip.synapse_gains)
    plain = Chip(MINI, 2)
    plain.save(tmp_path / "p.npz")
    assert Chip.load(tmp_path / "p.npz").synapse_gains is None


def test_chip_file_with_a_bad_sigma_names_file_and_field(tmp_path):
    import json
    chip = Chip(MINI, 2)
    chip.save(tmp_path / "c.npz")
    z = dict(np.load(tmp_path / "c.npz"))
    d = json.loads(str(z["analog_json"]))
    d["mismatch"]["driver_gain_sigma"] = 3
    z["analog_json"] = np.array(json.dumps(d))
    np.savez(tmp_path / "bad.npz", **z)
    with pytest.raises(FileError, match=r"bad\.npz: field analog_json: driver_gain_sigma"):
        Chip.load(tmp_path / "bad.npz")


@pytest.mark.cosim
@pytest.mark.parametrize("seed", [5, 12])
def test_cosim_equals_fast_with_mismatch(seed):
    """The co-simulation takes each step's sums from the activations its
    monitor lists (weight x gain) after checking their digital sums against
    the RTL's ports: the same bits as the fast backend."""
    from spikeloop.cosim.backend import run_cosim
    from tests.test_cosim_chip import COSIM_VARIANTS
    from tests.test_fast_equivalence import describe_difference

    plain, img, events, n_steps, offset = random_case(seed, COSIM_VARIANTS[1])
    chip = with_mismatch(plain)
    kw = dict(run_seed=3, sample_offset=offset, row_events=seed == 5)
    fast = run_fast(chip, img, events, n_steps, **kw)
    cos = run_cosim(chip, img, events, n_steps, **kw)
    diff = describe_difference(fast, cos)
    assert diff is None, f"mismatch, seed {seed}: first difference (fast != cosim): {diff}"
    # (and the mismatch mattered in this run)
    assert run_fast(plain, img, events, n_steps, **kw).first_difference(cos) is not None


@pytest.mark.cosim
def test_programs_that_write_synapses_with_mismatch_on_every_backend():
    """A program that rewrites the weights changes what every step's sums of
    weight x gain add: before the samples (the weight update) and after each
    sample's drain (random rows); cosim, reference and fast identical, and
    the mismatch mattered."""
    import random

    from spikeloop.base.events import InputEvents
    from spikeloop.base.protocol import live_cycles
    from spikeloop.cosim.backend import run_cosim
    from tests.test_cosim_ppu_programs import same_on_every_backend
    from tests.test_ppu_backends import _after_drain, _program, _run_case, weight_update_case

    chip = with_mismatch(Chip.calibrated(MINI, 1))
    sc, image, _, _, job = weight_update_case(chip, MINI)
    co = run_cosim(chip, image, sc.events, sc.n_steps, run_seed=2, ppu=job)
    same_on_every_backend(chip, image, sc.events, sc.n_steps, 2, job, co)
    plain = backends_run_plain(image, sc.events, sc.n_steps, 2, job)
    assert plain.first_difference(co) is not None

    seed = 17
    image, events, n_steps = _run_case(seed)
    image = chip.configure(image)
    lines, dmem = _program(seed, writes=False)
    lines = _after_drain(lines, live_cycles(MINI, n_steps), random.Random(seed))
    two = InputEvents.from_lists(MINI, [events.of_sample(0).tolist()] * 2)
    job = {"words": assemble("\n".join(lines), MINI).words, "dmem": dmem,
           "when": "each_sample", "read_synapses": True}
    co = run_cosim(chip, image, two, n_steps, run_seed=seed, ppu=job)
    assert not np.array_equal(co.ppu[0]["weights"], image.synapse_weight), "rows written"
    same_on_every_backend(chip, image, two, n_steps, seed, job, co)


def backends_run_plain(image, events, n_steps, run_seed, job):
    """The same run on the chip without driver and synapse mismatch (fast)."""
    return run_fast(Chip.calibrated(MINI, 1), image, events, n_steps, run_seed=run_seed,
                    ppu=job)
