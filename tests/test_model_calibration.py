"""Calibration by measurement only (model/calibration.py; calibrate_to_file in
model/chip.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spikeloop.base.config import FULL, MINI
from spikeloop.cli import main as cli_main
from spikeloop.cli.chip import print_residual_sources
from spikeloop.model.analog import AnalogChipModel
from spikeloop.model.calibration import (
    NEURON_TARGET_KEYS,
    REQUIRED_RATIOS,
    CalibrationResult,
    ChipProbe,
    calibrate,
    decalibrated_targets,
    spread_report,
)
from spikeloop.model.chip import (
    adc_channel_report,
    calibrate_to_file,
    report_path,
    synapse_gain_report,
)
from spikeloop.model.mismatch import MismatchConfig

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
    check_adc_channels_and_measurement(rep)
    # the saved settings are those of another calibration of the same chip
    assert torch.equal(res.settings, _calibrated(MINI, 0)[1].settings)


# -- what a calibration leaves: readout noise and finite repetitions --------------------
def test_readout_noise_is_deterministic_and_apart_from_the_membrane_noise():
    chip = AnalogChipModel(MINI, 0)
    s = chip.nominal_settings()
    quiet = ChipProbe(chip).run(s, 40).adc_codes
    a = ChipProbe(chip, readout_noise_lsb=2.0).run(s, 40).adc_codes
    b = ChipProbe(chip, readout_noise_lsb=2.0).run(s, 40).adc_codes
    assert torch.equal(a, b)                                 # same probe seed, same numbers
    d = (a - quiet).to(torch.float64)
    assert 1.5 < float(d.std()) < 2.5                        # about 2 LSB on top
    other = ChipProbe(chip, readout_noise_lsb=2.0, run_seed=1).run(s, 40).adc_codes
    assert not torch.equal(other, a)
    with pytest.raises(ValueError, match="readout_noise_lsb = -1.0; allowed: a number >= 0"):
        ChipProbe(chip, readout_noise_lsb=-1.0)
    with pytest.raises(ValueError, match="reps = 0; allowed: an integer >= 1"):
        calibrate(ChipProbe(chip), reps=0)


def test_noisy_few_repetition_calibration_leaves_more_but_stays_within_the_limits():
    chip, _, clean = _calibrated(MINI, 0)
    res = calibrate(ChipProbe(chip, readout_noise_lsb=2.0), reps=2)
    rep = spread_report(chip, chip.nominal_settings(), res.settings)
    assert rep["all_ok"], {k: v["ratio"] for k, v in rep["params"].items()}
    # the time constants are where measurement noise shows most
    for name in ("tau_mem", "tau_syn_exc", "tau_syn_inh"):
        assert rep["params"][name]["std_after"] > 1.5 * clean["params"][name]["std_after"]


def check_adc_channels_and_measurement(rep):
    """The report of calibrate_to_file (MINI, chip 0) on the ADC channels and the
    measurement (test_calibrate_to_file_writes_loadable_result)."""
    adc = rep["adc_channels"]
    chip = AnalogChipModel(MINI, 0)
    assert adc["limit_lsb"] == 3.0
    assert adc["offset_max_abs_lsb"] == pytest.approx(np.abs(chip.mismatch.adc_offset_lsb).max())
    assert adc["ok"] == (adc["within_limit_fraction"] == 1.0)
    assert rep["measurement"] == {"reps": 8, "readout_noise_lsb": 0.0,
                                  "noise_model": "box-muller"}


# -- deliberate decalibration ---------------------------------------------------------------
def test_decalibrated_targets_have_the_requested_spread_and_depend_on_the_seed_only():
    n = 20000
    for sigma in (0.1, 0.3):
        t = decalibrated_targets(n, sigma, "all", 3)
        assert set(t) == set(NEURON_TARGET_KEYS)
        for k in ("tau_mem_us", "tau_syn_exc_us", "tau_syn_inh_us"):
            assert np.std(t[k]) / 6.0 == pytest.approx(sigma, rel=0.03)
            assert np.mean(t[k]) == pytest.approx(6.0, rel=0.01)
        assert np.std(t["threshold_lsb"] - 80.0) / 70.0 == pytest.approx(sigma, rel=0.03)
    # clipped at 10 % of the nominal value: at 50 % the spread is a little below sigma
    t = decalibrated_targets(n, 0.5, "tau", 3)
    assert set(t) == {"tau_mem_us", "tau_syn_exc_us", "tau_syn_inh_us"}
    assert t["tau_mem_us"].min() == pytest.approx(0.6)
    assert 0.45 < np.std(t["tau_mem_us"]) / 6.0 < 0.5
    assert set(decalibrated_targets(n, 0.2, "threshold", 3)) == {"threshold_lsb"}
    assert decalibrated_targets(n, 0.0, "all", 3) == {}
    # the same seed draws the same neurons at every level; another seed others
    a, b = decalibrated_targets(50, 0.1, "all", 3), decalibrated_targets(50, 0.4, "all", 3)
    np.testing.assert_allclose((b["tau_mem_us"] / 6 - 1) / 0.4, (a["tau_mem_us"] / 6 - 1) / 0.1)
    np.testing.assert_array_equal(decalibrated_targets(50, 0.1, "tau", 3)["tau_mem_us"],
                                  a["tau_mem_us"])
    assert not np.array_equal(decalibrated_targets(50, 0.1, "all", 4)["tau_mem_us"],
                              a["tau_mem_us"])
    for args, msg in (((50, 0.1, "taus", 0), "group = 'taus'; allowed: tau, threshold, all"),
                      ((50, 1.5, "all", 0), r"sigma = 1.5; allowed: a number in \[0, 1\]"),
                      ((50, 0.1, "all", -1), "seed = -1; allowed: an integer >= 0")):
        with pytest.raises(ValueError, match=msg):
            decalibrated_targets(*args)


def test_calibration_to_individual_targets_reaches_them():
    chip = AnalogChipModel(MINI, 2)
    nt = decalibrated_targets(MINI.n_neurons, 0.3, "all", 1)
    res = calibrate(ChipProbe(chip), neuron_targets=nt)
    p = {k: v.numpy() for k, v in chip.physical(res.settings).as_dict().items()}
    lsb = 1.2 / 256
    true = {"tau_mem_us": p["tau_mem_us"], "tau_syn_exc_us": p["tau_syn_exc_us"],
            "tau_syn_inh_us": p["tau_syn_inh_us"],
            "threshold_lsb": (p["v_thresh_v"] - p["v_leak_v"]) / lsb + 80.0}
    for k, want in nt.items():
        base = 80.0 if k == "threshold_lsb" else 0.0
        rel = (true[k] - base) / (want - base) - 1.0
        assert np.median(np.abs(rel)) < 0.05, (k, rel)
        assert np.corrcoef(true[k], want)[0, 1] > 0.95, k
    # the leak and the reset stay at their nominal targets
    assert np.abs(p["v_leak_v"] / lsb - 80).max() < 6
    # the per-neuron targets travel with the calibration
    path = "/dev/null"
    again = CalibrationResult.from_arrays(res.arrays(), path)
    assert set(again.neuron_targets) == set(nt)
    for k in nt:
        np.testing.assert_array_equal(again.neuron_targets[k], nt[k])
    with pytest.raises(ValueError, match="unknown key 'leak_lsb'"):
        calibrate(ChipProbe(chip), neuron_targets={"leak_lsb": np.ones(16)})
    with pytest.raises(ValueError, match=r"allowed: 16 finite positive numbers"):
        calibrate(ChipProbe(chip), neuron_targets={"tau_mem_us": np.ones(3)})


def test_cli_calibrate_prints_what_the_calibration_leaves(capsys):
    chip, _, rep = _calibrated(MINI, 0)
    print_residual_sources({**rep, "measurement": {"reps": 8, "readout_noise_lsb": 0.0,
                                                   "noise_model": "binomial"},
                            "adc_channels": adc_channel_report(chip)})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "measurements: 8 repetitions each, membrane noise 1.5 mV (binomial), " \
                     "ADC readout noise 0 LSB"
    assert out[1].startswith("ADC channels (not calibrated): offset std ")
    assert "within 3 LSB: " in out[1]
    assert out[2].startswith("PSP efficacy spread after calibration (std/mean over neurons): ")
    assert out[3] == "synapse gains: ideal (--driver-gain-sigma, --synapse-gain-sigma; " \
                     "docs/analog.md)"
    mm = AnalogChipModel(MINI, 0, MismatchConfig(driver_gain_sigma=0.02,
                                                 synapse_gain_sigma=0.05))
    print_residual_sources({**rep, "adc_channels": adc_channel_report(chip),
                            "synapse_gains": synapse_gain_report(mm)})
    line, drivers = capsys.readouterr().out.splitlines()[3:5]
    assert line.startswith("synapse gains (not calibrated): drivers 2 %, synapses 5 % (std "
                           "drawn); every synapse's gain: std "), line
    assert drivers.startswith("synapse drivers, on the 29.7 LSB PSP of a full weight: std "), \
        drivers
    assert drivers.endswith("within 4 LSB: 100.0 % of the drivers (BrainScaleS-2's limit "
                            "after its calibration: all)"), drivers
    for args, msg in ((["--reps", "0"], "reps = 0; allowed: an integer >= 1"),
                      (["--readout-noise-lsb", "-2"],
                       "readout_noise_lsb = -2.0; allowed: a number >= 0"),
                      (["--synapse-gain-sigma", "0.7"],
                       "synapse_gain_sigma = 0.7; allowed: a number from 0 to 0.5")):
        assert cli_main(["calibrate", "--preset", "mini", "--chip-seed", "0", "--out",
                         "/nonexistent/x.npz", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
