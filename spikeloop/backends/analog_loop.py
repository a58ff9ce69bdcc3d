"""The analog side of a run, shared by every backend: one piece of code, so the
backends agree bit for bit (DESIGN.md, "The emulation contract")."""
from __future__ import annotations

import torch

from spikeloop.chip import Chip
from spikeloop.image import ConfigImage
from spikeloop.model.adc import adc_convert
from spikeloop.model.analog import lif_step
from spikeloop.model.noise import membrane_noise


class AnalogLoop:
    """State of all neurons of ``len(sample_idx)`` samples, advanced one analog
    step at a time from the integer weight sums the digital side delivers."""

    def __init__(self, chip: Chip, image: ConfigImage, sample_idx, run_seed: int, *,
                 dtype=torch.float32, device="cpu"):
        self.params = chip.lif_params(image, dtype=dtype, device=device)
        self.adc = chip.analog.adc_params(dtype=dtype, device=device)
        self.sample_idx = torch.as_tensor(sample_idx, dtype=torch.int64, device=device)
        self.run_seed = int(run_seed)
        self.state = self.params.initial_state(len(self.sample_idx))
        self.step_index = 0

    def codes(self) -> torch.Tensor:
        """ADC codes of the present membranes, int64 [batch, n]."""
        return adc_convert(self.state.v_mem_v, self.adc)

    def step(self, exc_sum, inh_sum, hold) -> torch.Tensor:
        """Advance one step; ``exc_sum``/``inh_sum`` int [batch, n], ``hold`` bool
        [batch, n] (refractory).  Returns the bool spikes [batch, n]."""
        dev = self.params.device
        noise = membrane_noise(self.params.noise_step_v, self.run_seed, self.sample_idx,
                               self.step_index)
        self.state, spikes = lif_step(
            self.state, self.params, torch.as_tensor(exc_sum, device=dev),
            torch.as_tensor(inh_sum, device=dev), torch.as_tensor(hold, device=dev), noise)
        self.step_index += 1
        return spikes


def bits_to_bool(mask: int, n: int) -> list[bool]:
    return [bool((mask >> i) & 1) for i in range(n)]


def bool_to_bits(values) -> int:
    return sum(1 << i for i, v in enumerate(values) if v)
