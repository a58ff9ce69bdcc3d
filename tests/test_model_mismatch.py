"""Fixed-pattern mismatch (model/mismatch.py) and the mismatched transfer curves."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikeloop.base.config import FULL, MINI
from spikeloop.model.analog import (
    NOMINAL_VALUES,
    SETTING_NAMES,
    AnalogChipModel,
    TransferRanges,
    nominal_settings,
)
from spikeloop.model.mismatch import SETTING_KINDS, MismatchConfig, draw_mismatch

pytestmark = pytest.mark.unit


def test_same_seed_is_bit_identical_and_seeds_differ():
    a, b, c = draw_mismatch(FULL, 42), draw_mismatch(FULL, 42), draw_mismatch(FULL, 43)
    for f in ("offset", "slope", "nonlin", "adc_offset_lsb", "adc_gain_dev"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
        assert not np.array_equal(getattr(a, f), getattr(c, f))
    s = nominal_settings(FULL)
    p1 = AnalogChipModel(FULL, 42).physical(s).as_dict()
    p2 = AnalogChipModel(FULL, 42).physical(s).as_dict()
    p3 = AnalogChipModel(FULL, 43).physical(s).as_dict()
    for k in p1:
        assert torch.equal(p1[k], p2[k]) and not torch.equal(p1[k], p3[k])
    a1 = AnalogChipModel(FULL, 42).adc_params()
    assert torch.equal(a1.scale_per_v, AnalogChipModel(FULL, 42).adc_params().scale_per_v)


def test_drawn_spreads_match_configuration_full():
    """Sample std of the deviations of the 512 FULL neurons vs the configured sigma
    (4 standard errors: sigma * 4/sqrt(2N))."""
    cfg = MismatchConfig()
    mm = draw_mismatch(FULL, 5, cfg)
    for kind in ("voltage", "tau", "gain"):
        rows = [i for i, k in enumerate(SETTING_KINDS) if k == kind]
        for arr, sigma in zip((mm.offset, mm.slope, mm.nonlin), cfg.sigmas(kind), strict=True):
            x = arr[rows].ravel()
            tol = 4 / math.sqrt(2 * x.size)
            assert np.std(x, ddof=1) == pytest.approx(sigma, rel=tol), kind
            assert abs(np.mean(x)) < 4 * sigma / math.sqrt(x.size)
    tol = 4 / math.sqrt(2 * FULL.n_neurons)
    assert np.std(mm.adc_offset_lsb, ddof=1) == pytest.approx(cfg.adc_offset_sigma_lsb, rel=tol)
    assert np.std(mm.adc_gain_dev, ddof=1) == pytest.approx(cfg.adc_gain_sigma, rel=tol)


def test_true_parameter_spread_at_nominal_settings_full():
    """The physical spread of an uncalibrated chip follows from the curve model."""
    cfg, ranges = MismatchConfig(), TransferRanges()
    chip = AnalogChipModel(FULL, 9)
    phys = chip.physical(chip.nominal_settings())
    x = chip.nominal_settings()[0].double() / 1023
    n = FULL.n_neurons
    tol = 4 / math.sqrt(2 * n)
    for i, key in enumerate(("v_leak_v", "v_reset_v", "v_thresh_v")):
        so, ss, sn = cfg.sigmas("voltage")
        span = ranges.v_hi_v - ranges.v_lo_v
        xi = float(x[i])
        want = math.sqrt(so**2 + (span * xi * ss) ** 2 + (span * 4 * xi * (1 - xi) * sn) ** 2)
        got = getattr(phys, key).std().item()
        assert got == pytest.approx(want, rel=tol + 0.02), key
    # time constants: lognormal spread of about exp(sigma_ln) - 1
    so, ss, sn = cfg.sigmas("tau")
    xi = float(x[3])
    ln_span = math.log(ranges.tau_mem_hi_us / ranges.tau_mem_lo_us)
    want = math.sqrt(so**2 + (ln_span * xi * ss) ** 2 + (ln_span * 4 * xi * (1 - xi) * sn) ** 2)
    got = torch.log(phys.tau_mem_us).std().item()
    assert got == pytest.approx(want, rel=tol + 0.02)


def test_ideal_chip_has_no_mismatch_and_hits_nominal_values():
    chip = AnalogChipModel(FULL, 1, MismatchConfig(scale=0.0))
    phys = chip.physical(chip.nominal_settings()).as_dict()
    for (k, v), want in zip(phys.items(), NOMINAL_VALUES, strict=True):
        assert (v == v[0]).all(), k
        # within half a setting step of the nominal value
        step = 1.2 / 1023 if k.startswith("v_") else (
            want * math.log(120) / 1023 if "tau" in k else 2.5e-3 / 1023)
        assert abs(v[0].item() - want) <= step, k
    adc = chip.adc_params(dtype=torch.float64)
    assert (adc.offset_half_lsb == 0.5).all()


def test_transfer_curves_are_mismatched_but_monotonic():
    """Every neuron's curve is strictly increasing over all 1024 codes; the same
    code gives different values on different neurons and different chips."""
    chip = AnalogChipModel(FULL, 3)
    codes = torch.arange(1024)
    s = codes.view(1024, 1, 1).expand(1024, FULL.n_neurons, 8)
    phys = chip.physical(s).as_dict()  # [1024, n]
    for k, v in phys.items():
        assert (torch.diff(v, dim=0) > 0).all(), k
        assert v[512].std() > 0, k
    other = AnalogChipModel(FULL, 4).physical(s[512]).as_dict()
    for k in phys:
        assert not torch.allclose(phys[k][512], other[k])
    # the targets of the paper are reachable on every neuron
    assert (phys["tau_mem_us"][0] < 6).all() and (phys["tau_mem_us"][-1] > 6).all()
    assert (phys["tau_syn_exc_us"][0] < 6).all() and (phys["tau_syn_inh_us"][-1] > 6).all()
    assert (phys["v_leak_v"][0] < 0.375).all() and (phys["v_thresh_v"][-1] > 0.75).all()


def test_settings_validation():
    chip = AnalogChipModel(MINI, 0)
    with pytest.raises(ValueError):
        chip.physical(torch.full((16, 8), 1024))
    with pytest.raises(ValueError):
        chip.physical(torch.zeros(15, 8, dtype=torch.int64))
    with pytest.raises(TypeError):
        chip.physical(torch.zeros(16, 8))
    with pytest.raises(ValueError):
        AnalogChipModel(MINI, -1)
    assert len(SETTING_NAMES) == MINI.analog_settings_per_neuron


def test_batched_settings_map_row_by_row():
    chip = AnalogChipModel(MINI, 2)
    s = torch.randint(0, 1024, (3, 16, 8))
    batched = chip.physical(s).as_dict()
    for b in range(3):
        single = chip.physical(s[b]).as_dict()
        for k in single:
            assert torch.equal(batched[k][b], single[k])
