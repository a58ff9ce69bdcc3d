"""The column ADC (CADC): one channel per neuron column, ``cfg.adc_bits`` bits.

Nominal transfer: ``code = V / lsb_v`` with ``lsb_v = 1.2 V / 2**adc_bits`` (so
code 256 would be 1.2 V for 8 bits, the paper's normalisation ``ADC / 256 * 1.2 V``).
Channel ``n`` (= neuron ``n``) has a fixed-pattern gain and offset deviation::

    x    = V * (1 + gain_dev[n]) / lsb_v + offset_lsb[n]
    code = clamp(floor(x + 0.5), 0, 2**adc_bits - 1)

i.e. rounding to nearest with ties upwards, and saturation at both rails (codes
0 and ``2**adc_bits - 1``).  The conversion uses one multiply, one add and a
floor, so it is bit-identical for every batch composition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch

#: nominal full-scale voltage of the ADC range (code 2**bits would be this voltage)
ADC_RANGE_V = 1.2


def adc_lsb_v(adc_bits: int) -> float:
    """Nominal volts per ADC code."""
    return ADC_RANGE_V / (1 << adc_bits)


@dataclass(frozen=True)
class ADCParams:
    """Per-channel conversion constants (true values, drawn from the chip seed).

    ``scale_per_v``: codes per volt of each channel, ``(1 + gain_dev) / lsb_v``;
    ``offset_lsb``: offset of each channel in codes, plus the 0.5 of the rounding.
    Both ``[n_neurons]`` tensors of the simulation dtype/device."""

    scale_per_v: torch.Tensor
    offset_half_lsb: torch.Tensor
    bits: int

    @property
    def code_max(self) -> int:
        return (1 << self.bits) - 1

    @classmethod
    def build(cls, gain_dev, offset_lsb, bits: int, *, dtype=torch.float32,
              device="cpu") -> ADCParams:
        """From per-channel relative gain deviation and offset (codes), float64-exact
        constants computed on the CPU and then cast (identical on every device)."""
        g = torch.as_tensor(gain_dev, dtype=torch.float64)
        o = torch.as_tensor(offset_lsb, dtype=torch.float64)
        scale = (1.0 + g) / adc_lsb_v(bits)
        return cls(scale.to(dtype=dtype, device=device),
                   (o + 0.5).to(dtype=dtype, device=device), bits)

    @classmethod
    def ideal(cls, n_channels: int, bits: int, *, dtype=torch.float32,
              device="cpu") -> ADCParams:
        z = torch.zeros(n_channels, dtype=torch.float64)
        return cls.build(z, z, bits, dtype=dtype, device=device)


def adc_convert(v_mem_v: torch.Tensor, adc: ADCParams) -> torch.Tensor:
    """ADC codes (int64, same shape as ``v_mem_v``, last dim = channel) of membrane
    potentials in volts."""
    x = v_mem_v * adc.scale_per_v + adc.offset_half_lsb
    return torch.floor(x).clamp(0, adc.code_max).to(torch.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def adc_code(v, scale, offset, code_max):
    """:func:`adc_convert` of one float32 membrane voltage ``v`` on a channel of
    float32 ``scale`` and ``offset``, for compiled callers (the fast backend's
    compiled run, the co-simulation's bridge): the same operations in the same
    order, so the same code."""
    x = np.floor(v * scale + offset)
    if x < 0:
        x = np.float32(0)
    elif x > code_max:
        x = np.float32(code_max)
    return np.int64(x)
