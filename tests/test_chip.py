"""Chip instance: seed, calibration, save/load, configuring an image."""
import numpy as np
import pytest
import torch

from spikeloop.base.config import MINI
from spikeloop.base.image import ConfigImage, ImageError
from spikeloop.model.calibration import ChipProbe, calibrate
from spikeloop.model.chip import Chip, calibrate_to_file

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def chip3():
    return Chip.calibrated(MINI, 3)


def test_calibration_is_reproducible_and_chip_specific(chip3):
    # measured again from scratch (Chip.calibrated keeps this process's results)
    fresh = calibrate(ChipProbe(Chip(MINI, 3).analog))
    assert np.array_equal(chip3.settings, fresh.settings.numpy())
    # the kept result comes back as a copy: changing one chip's calibration
    # changes no other
    again = Chip.calibrated(MINI, 3)
    assert np.array_equal(chip3.settings, again.settings)
    again.calibration.settings[0, 0] += 1
    again.calibration.measured["changed"] = np.zeros(1)
    assert np.array_equal(chip3.settings, Chip.calibrated(MINI, 3).settings)
    assert "changed" not in Chip.calibrated(MINI, 3).calibration.measured
    # another measurement (a noisy readout) is not the kept one
    noisy = Chip.calibrated(MINI, 3, reps=2, readout_noise_lsb=2.0)
    assert not np.array_equal(chip3.settings, noisy.settings)
    other = Chip.calibrated(MINI, 4)
    assert not np.array_equal(chip3.settings, other.settings)
    assert not np.array_equal(chip3.settings, Chip(MINI, 3).settings)  # nominal


def test_chip_saves_and_loads_with_its_calibration(chip3, tmp_path):
    chip3.save(tmp_path / "c.npz")
    back = Chip.load(tmp_path / "c.npz")
    assert back.cfg == MINI and back.chip_seed == 3
    assert np.array_equal(back.settings, chip3.settings)
    Chip(MINI, 5).save(tmp_path / "u.npz")
    assert Chip.load(tmp_path / "u.npz").calibration is None


def test_cli_calibration_file_loads_as_a_chip(chip3, tmp_path):
    out = tmp_path / "cal.npz"
    report = calibrate_to_file(MINI, 3, str(out))
    assert report["all_ok"]
    assert np.array_equal(Chip.load(out).settings, chip3.settings)


def test_configure_writes_the_calibration_into_the_image(chip3):
    img = chip3.configure(ConfigImage.empty(MINI))
    assert np.array_equal(img.analog_settings, chip3.settings)
    with pytest.raises(ValueError, match="calibration is of chip 3"):
        Chip(MINI, 4, chip3.calibration)


def test_with_residual_leaves_that_fraction_of_the_mismatch(chip3, tmp_path):
    nominal = Chip(MINI, 3).settings
    assert np.array_equal(chip3.with_residual(0).settings, chip3.settings)
    assert np.array_equal(chip3.with_residual(1.0).settings, nominal)
    half = chip3.with_residual(0.5)
    assert half.chip_seed == 3 and half.cfg == MINI
    # every setting half way (rounded) between calibrated and nominal
    assert np.abs(2 * half.settings - chip3.settings - nominal).max() <= 1
    rep = half.calibration.report
    assert rep["residual_fraction"] == 0.5
    ratios = {k: v["ratio"] for k, v in rep["params"].items()}
    assert all(0.35 < r < 0.65 for r in ratios.values()), ratios
    eff = [chip3.with_residual(f).calibration.report["usability_after"]["efficacy_cv"]
           for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert eff == sorted(eff) and eff[0] < 0.05 < eff[-1], eff
    # the degraded chip is a chip file like any other
    half.save(tmp_path / "half.npz")
    back = Chip.load(tmp_path / "half.npz")
    assert np.array_equal(back.settings, half.settings)
    assert back.calibration.report["residual_fraction"] == 0.5


def test_with_residual_refusals(chip3):
    for bad in (-0.1, 1.5, "half", None):
        with pytest.raises(ValueError, match=r"residual fraction = .*allowed: a number in "
                                             r"\[0, 1\]"):
            chip3.with_residual(bad)
    with pytest.raises(ValueError, match="no calibration to degrade"):
        Chip(MINI, 3).with_residual(0.5)


def test_image_validation_names_field_and_range(tmp_path):
    img = ConfigImage.empty(MINI)
    img.synapse_weight[0, 1, 2] = 64
    with pytest.raises(ImageError, match=r"synapse_weight\[0, 1, 2\] = 64 is out of range; "
                                         r"allowed: 0\.\.63"):
        ConfigImage(**{**img.__dict__})
    with pytest.raises(ImageError, match="neuron_label has shape"):
        ConfigImage(**{**ConfigImage.empty(MINI).__dict__, "neuron_label": np.zeros(3, int)})
    good = ConfigImage.empty(MINI)
    good.synapse_weight[1, 2, 3] = 63
    good.save(tmp_path / "i.npz")
    assert ConfigImage.load(tmp_path / "i.npz") == good


def test_cli_calibrate_residual(chip3, tmp_path, capsys):
    from spikeloop.cli import main as cli_main

    out = tmp_path / "half.npz"
    assert cli_main(["calibrate", "--preset", "mini", "--chip-seed", "3", "--out", str(out),
                     "--residual", "0.5"]) == 0
    assert "50 % of the mismatch put back" in capsys.readouterr().out
    chip = Chip.load(out)
    assert np.array_equal(chip.settings, chip3.with_residual(0.5).settings)
    assert chip.calibration.report["residual_fraction"] == 0.5
    assert cli_main(["calibrate", "--preset", "mini", "--chip-seed", "3", "--out", str(out),
                     "--residual", "2"]) == 2
    assert "residual fraction = 2.0; allowed: a number in [0, 1]" in capsys.readouterr().err


def test_lif_params_are_kept_while_what_defines_them_is_the_same():
    chip = Chip(MINI, 1)
    img = chip.configure(ConfigImage.empty(MINI))
    first = chip.lif_params(img)
    assert chip.lif_params(img) is first
    assert chip.lif_params(img, dtype=torch.float64) is not first
    chip.analog.noise_model = "binomial"
    assert chip.lif_params(img).noise_model == "binomial"
    chip.analog.noise_model = "box-muller"
    assert chip.lif_params(img) is first
    sigma, chip.analog.noise_sigma_v = chip.analog.noise_sigma_v, 0.0
    assert chip.lif_params(img).noise_step_v is None
    chip.analog.noise_sigma_v = sigma
    assert chip.lif_params(img) is first
    img.analog_settings[3, 0] += 1
    changed = chip.lif_params(img)
    assert not torch.equal(changed.v_leak_v, first.v_leak_v)
