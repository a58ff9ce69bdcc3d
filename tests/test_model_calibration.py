"""Calibration by measurement only (model/calibration.py; calibrate_to_file in
model/chip.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spikeloop.base.config import FULL, MINI
from spikeloop.model.analog import AnalogChipModel
from spikeloop.model.calibration import (
    REQUIRED_RATIOS,
    CalibrationResult,
    ChipProbe,
    calibrate,
    spread_report,
)
from spikeloop.model.chip import calibrate_to_file, report_path

pytestmark = pytest.mark.unit


class OpaqueProbe:
    """Forwards only ChipProbe's public measurement interface: calibration that
    works through it cannot have read the hidden parameters."""

    __slots__ = ("_run", "cfg", "chip_seed", "n_neurons", "setting_max", "dt_us", "adc_lsb_v")

    def __init__(self, probe: ChipProbe):
        self._run = probe.run
        for k in self.__slots__[1:]:
            setattr(self, k, getattr(probe, k))

    def run(self, *args, **kwargs):
        return self._run(*args, **kwargs)


_cache: dict = {}


def _calibrated(cfg, seed):
    key = (cfg.name, seed)
    if key not in _cache:
        chip = AnalogChipModel(cfg, seed)
        res = calibrate(OpaqueProbe(ChipProbe(chip)))
        _cache[key] = (chip, res, spread_report(chip, chip.nominal_settings(), res.settings))
    return _cache[key]


@pytest.mark.parametrize("cfg,seed", [(MINI, 0), (MINI, 1), (MINI, 2), (FULL, 11)])
def test_calibration_reaches_required_spread_ratios(cfg, seed):
    chip, res, rep = _calibrated(cfg, seed)
    assert res.settings.shape == (cfg.n_neurons, 8) and res.settings.dtype == torch.int64
    for name, req in REQUIRED_RATIOS.items():
        r = rep["params"][name]
        assert r["ratio"] <= req, (name, r)
        assert r["ok"]
    assert rep["all_ok"]
    # means on target (true values; ADC mismatch averages out over neurons)
    p = rep["params"]
    assert p["leak"]["mean_after"] == pytest.approx(0.375, abs=0.01)
    assert p["threshold"]["mean_after"] == pytest.approx(0.703, abs=0.012)
    assert p["tau_mem"]["mean_after"] == pytest.approx(6.0, rel=0.02)
    assert p["tau_syn_exc"]["mean_after"] == pytest.approx(6.0, rel=0.02)
    assert p["gain_exc"]["mean_after"] == pytest.approx(1e-3, rel=0.03)


def test_calibration_hits_targets_as_the_adc_sees_them():
    _, res, _ = _calibrated(MINI, 0)
    m = res.measured
    assert np.abs(m["leak_lsb"] - 80).max() < 0.5
    assert np.abs(m["reset_lsb"] - 80).max() < 0.5
    assert np.abs(m["tau_mem_us"] - 6).max() < 0.3
    assert np.abs(m["tau_syn_exc_us"] - 6).max() < 0.3
    assert np.abs(m["tau_syn_inh_us"] - 6).max() < 0.3
    assert np.abs(m["psp_exc_lsb"] - m["psp_target_lsb"]).max() < 1.0


def test_uncalibrated_chip_is_visibly_unusable_calibrated_is_not():
    _, _, rep = _calibrated(FULL, 11)
    before, after = rep["usability_before"], rep["usability_after"]
    assert before["off_by_50pct_fraction"] > 0.2
    assert after["off_by_50pct_fraction"] == 0.0
    assert after["tonic_fraction"] == 0.0
    assert after["efficacy_cv"] < 0.05 < 0.5 < before["efficacy_cv"]


def test_calibrating_twice_is_identical():
    chip, res, _ = _calibrated(MINI, 0)
    again = calibrate(ChipProbe(AnalogChipModel(MINI, 0)))
    assert torch.equal(again.settings, res.settings)
    other = _calibrated(MINI, 1)[1]
    assert not torch.equal(other.settings, res.settings)


def test_calibrate_to_file_writes_loadable_result(tmp_path):
    out = tmp_path / "cal" / "mini0.npz"
    plot = tmp_path / "cal" / "mini0.png"
    rep = calibrate_to_file(MINI, 0, str(out), str(plot))
    assert rep["all_ok"] and rep["preset"] == "mini" and rep["chip_seed"] == 0
    assert plot.stat().st_size > 10_000
    on_disk = json.loads(report_path(out).read_text())
    assert on_disk["params"]["leak"]["ratio"] == rep["params"]["leak"]["ratio"]
    z = np.load(out)  # numpy alone
    assert z["settings"].shape == (16, 8) and str(z["preset"]) == "mini"
    assert int(z["chip_seed"]) == 0
    assert json.loads(str(z["targets_json"]))["threshold_lsb"] == 150.0
    res = CalibrationResult.load(out)
    assert res.preset == "mini" and res.chip_seed == 0 and res.targets.tau_mem_us == 6.0
    assert res.report["all_ok"]
    # the saved settings are those of another calibration of the same chip
    assert torch.equal(res.settings, _calibrated(MINI, 0)[1].settings)
