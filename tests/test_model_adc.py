"""Column ADC (model/adc.py): quantisation, rounding, saturation, channel mismatch."""
from __future__ import annotations

import pytest
import torch

from spikeloop.base.config import FULL, MINI
from spikeloop.model.adc import ADCParams, adc_convert, adc_lsb_v
from spikeloop.model.analog import AnalogChipModel

pytestmark = pytest.mark.unit

LSB = adc_lsb_v(8)


def test_lsb_is_paper_normalisation():
    assert LSB == pytest.approx(1.2 / 256)
    assert FULL.adc_bits == 8


def test_ideal_quantisation_rounds_half_up():
    adc = ADCParams.ideal(1, 8, dtype=torch.float64)
    codes = torch.arange(0, 256, dtype=torch.float64)
    v = (codes * LSB).unsqueeze(-1)
    assert torch.equal(adc_convert(v, adc).squeeze(-1), codes.long())
    eps = 1e-9
    below = ((codes[:-1] + 0.5) * LSB - eps).unsqueeze(-1)
    above = ((codes[:-1] + 0.5) * LSB + eps).unsqueeze(-1)
    assert torch.equal(adc_convert(below, adc).squeeze(-1), codes[:-1].long())
    assert torch.equal(adc_convert(above, adc).squeeze(-1), codes[:-1].long() + 1)
    # an exact tie (x.5 representable) rounds up
    tie = torch.tensor([[80.5 * LSB]], dtype=torch.float64)
    assert adc_convert(tie / LSB * LSB, adc).item() == 81
    # the paper's normalisation: 80 codes = 0.375 V, 150 codes = 0.703125 V
    assert adc_convert(torch.tensor([[0.375]], dtype=torch.float64), adc).item() == 80
    assert adc_convert(torch.tensor([[0.703125]], dtype=torch.float64), adc).item() == 150


def test_saturation_at_both_rails():
    adc = ADCParams.ideal(1, 8)
    v = torch.tensor([-0.5, -1e-6, 0.0, 1.19, 1.2, 5.0]).unsqueeze(-1)
    assert adc_convert(v, adc).squeeze(-1).tolist() == [0, 0, 0, 254, 255, 255]
    adc6 = ADCParams.ideal(1, 6)
    assert adc6.code_max == 63
    assert adc_convert(torch.tensor([[2.0]]), adc6).item() == 63
    adc = ADCParams.build([0.0], [-3.0], 8)  # negative offset: still never below 0
    assert adc_convert(torch.tensor([[0.0]]), adc).item() == 0


def test_channel_offset_and_gain():
    adc = ADCParams.build([0.0, 0.0, 0.1, -0.1], [0.0, 2.0, 0.0, 0.0], 8, dtype=torch.float64)
    v = torch.full((1, 4), 100 * LSB, dtype=torch.float64)
    assert adc_convert(v, adc).squeeze(0).tolist() == [100, 102, 110, 90]


def test_monotonic_integer_and_batch_shapes():
    chip = AnalogChipModel(FULL, 8)
    adc = chip.adc_params()
    v = torch.linspace(-0.1, 1.3, 2001).view(-1, 1).expand(-1, FULL.n_neurons).contiguous()
    c = adc_convert(v, adc)
    assert c.dtype == torch.int64 and c.shape == v.shape
    assert (torch.diff(c, dim=0) >= 0).all()
    assert c.min() == 0 and c.max() == 255
    # element-wise: the same channel and voltage gives the same code in any batch
    assert torch.equal(adc_convert(v[7:9], adc), c[7:9])


def test_chip_adc_mismatch_spread():
    chip = AnalogChipModel(FULL, 8)
    adc = chip.adc_params(dtype=torch.float64)
    v = torch.full((1, FULL.n_neurons), 0.375, dtype=torch.float64)
    codes = adc_convert(v, adc).double()
    assert 0.8 < codes.std().item() < 4.0  # about 1.5 LSB offset + 1.5 % gain at code 80
    mini = AnalogChipModel(MINI, 8).adc_params()
    assert mini.scale_per_v.shape == (16,)
