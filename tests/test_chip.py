"""Chip instance: seed, calibration, save/load, configuring an image."""
import numpy as np
import pytest

from spikeloop.calibrate import calibrate_main
from spikeloop.chip import Chip
from spikeloop.config import MINI
from spikeloop.image import ConfigImage, ImageError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def chip3():
    return Chip.calibrated(MINI, 3)


def test_calibration_is_reproducible_and_chip_specific(chip3):
    again = Chip.calibrated(MINI, 3)
    assert np.array_equal(chip3.settings, again.settings)
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
    report = calibrate_main("mini", 3, str(out))
    assert report["all_ok"]
    assert np.array_equal(Chip.load(out).settings, chip3.settings)


def test_configure_writes_the_calibration_into_the_image(chip3):
    img = chip3.configure(ConfigImage.empty(MINI))
    assert np.array_equal(img.analog_settings, chip3.settings)
    with pytest.raises(ValueError, match="calibration is of chip 3"):
        Chip(MINI, 4, chip3.calibration)


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
