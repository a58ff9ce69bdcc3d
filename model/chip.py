"""Chip instance: a ChipConfig, a chip seed (which fabricated specimen, i.e. its
mismatch) and its calibration.  Two seeds are two different chips.

    chip = Chip.calibrated(MINI, chip_seed=3)     # measures, as on silicon
    chip.save("chip3.npz"); Chip.load("chip3.npz")
    image = chip.configure(image)                 # the image's analog settings := calibration
    worse = chip.with_residual(0.5)               # half of the mismatch left (what-if)
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from spikeloop.base.config import ChipConfig
from spikeloop.base.image import ConfigImage
from spikeloop.model.analog import AnalogChipModel
from spikeloop.model.calibration import (
    CalibrationResult,
    ChipProbe,
    calibrate,
    spread_report,
)


def check_residual(fraction) -> float:
    """``fraction`` as a float in [0, 1] (:meth:`Chip.with_residual`), or ValueError."""
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"residual fraction = {fraction!r}; allowed: a number in [0, 1]")
    return f


class Chip:
    def __init__(self, cfg: ChipConfig, chip_seed: int,
                 calibration: CalibrationResult | None = None):
        if not isinstance(chip_seed, int) or chip_seed < 0:
            raise ValueError(f"chip_seed must be a non-negative integer, got {chip_seed!r}")
        if calibration is not None and (calibration.preset != cfg.name
                                        or calibration.chip_seed != chip_seed):
            raise ValueError(
                f"calibration is of chip {calibration.chip_seed} of preset "
                f"{calibration.preset!r}, not of chip {chip_seed} of preset {cfg.name!r}")
        self.cfg = cfg
        self.chip_seed = chip_seed
        self.calibration = calibration
        #: the analog half of this specimen (its hidden true parameters live here)
        self.analog = AnalogChipModel(cfg, chip_seed)

    @classmethod
    def calibrated(cls, cfg: ChipConfig, chip_seed: int) -> Chip:
        """Build the specimen and calibrate it by measurement."""
        chip = cls(cfg, chip_seed)
        result = calibrate(ChipProbe(chip.analog))
        return cls(cfg, chip_seed, result)

    def with_residual(self, fraction: float) -> Chip:
        """The same specimen calibrated only part of the way: every 10-bit setting
        ``round(calibrated + fraction * (nominal - calibrated))``, so ``fraction``
        of the mismatch is left (0: this chip's calibration, 1: the uncalibrated
        chip; the spread of each true parameter is then about ``fraction`` times
        its uncalibrated spread).  A what-if for "how good must calibration be":
        it asks how a network fares on a worse-calibrated chip; the result's
        ``report`` holds ``residual_fraction`` and the spreads it gives
        (:func:`~spikeloop.model.calibration.spread_report`, which reads the hidden
        truth: evaluation only)."""
        if self.calibration is None:
            raise ValueError("with_residual: the chip has no calibration to degrade "
                             "(Chip.calibrated or spikeloop calibrate makes one)")
        f = check_residual(fraction)
        cal = self.calibration.settings.to(torch.int64)
        nominal = self.analog.nominal_settings().to(torch.int64)
        settings = torch.round(cal + f * (nominal - cal).to(torch.float64)).to(torch.int64)
        report = spread_report(self.analog, nominal, settings)
        report["residual_fraction"] = f
        return Chip(self.cfg, self.chip_seed, dataclasses.replace(
            self.calibration, settings=settings, measured={}, report=report))

    @property
    def settings(self) -> np.ndarray:
        """The 10-bit analog settings [n_neurons, 8]: calibrated, else nominal."""
        if self.calibration is not None:
            return self.calibration.settings.numpy().astype(np.int64)
        return self.analog.nominal_settings().numpy().astype(np.int64)

    def configure(self, image: ConfigImage) -> ConfigImage:
        """A copy of ``image`` whose analog settings are this chip's calibration."""
        if image.cfg != self.cfg:
            raise ValueError(f"image is for preset {image.cfg.name!r}, chip is {self.cfg.name!r}")
        out = image.copy()
        out.analog_settings = self.settings.copy()
        return out

    def lif_params(self, image: ConfigImage, **kw):
        """The analog model's parameters for the settings and merge switches the
        image writes."""
        merge = image.neuron_merge if image.neuron_merge.size else None
        return self.analog.lif_params(torch.as_tensor(image.analog_settings), merge=merge, **kw)

    # -- files: the chip instance with its calibration --------------------------
    def save(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.calibration is not None:
            self.calibration.save(path)
            with np.load(path) as z:
                arrays = dict(z)
        else:
            arrays = {}
        arrays["chip_config"] = np.array(self.cfg.to_json())
        arrays["chip_seed"] = np.array(self.chip_seed)
        arrays["calibrated"] = np.array(self.calibration is not None)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> Chip:
        with np.load(path) as z:
            if "chip_config" in z:
                cfg = ChipConfig.from_dict(json.loads(str(z["chip_config"])))
            else:  # a bare calibration file from `spikeloop calibrate`
                cfg = ChipConfig.preset(str(z["preset"]))
            seed = int(z["chip_seed"])
            calibrated = bool(z["calibrated"]) if "calibrated" in z else "settings" in z
        return cls(cfg, seed, CalibrationResult.load(path) if calibrated else None)
