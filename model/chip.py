"""Chip instance: a ChipConfig, a chip seed (which fabricated specimen, i.e. its
mismatch) and its calibration.  Two seeds are two different chips.

    chip = Chip.calibrated(MINI, chip_seed=3)     # measures, as on silicon
    chip.save("chip3.npz"); Chip.load("chip3.npz")
    image = chip.configure(image)                 # the image's analog settings := calibration
    worse = chip.with_residual(0.5)               # half of the mismatch left (what-if)

:func:`calibrate_to_file` is ``spikeloop calibrate``: it calibrates a specimen,
then evaluates the result against the hidden true parameters (the spreads
before and after, and their ratios against the acceptance limits of
docs/paper.md, "Calibration"), and writes the chip file, the report as JSON
beside it and, on request, a histogram of the spreads.
"""
from __future__ import annotations

import dataclasses
import json
import time
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
    plot_spreads,
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

    @classmethod
    def load_expected(cls, path, cfg: ChipConfig, chip_seed: int) -> Chip:
        """:meth:`load`, refusing (ValueError) a file that holds another chip
        instance than chip ``chip_seed`` of ``cfg``."""
        chip = cls.load(path)
        if chip.cfg != cfg or chip.chip_seed != chip_seed:
            raise ValueError(f"{path} holds chip {chip.chip_seed} of preset {chip.cfg.name!r}, "
                             f"not chip {chip_seed} of {cfg.name!r}")
        return chip


def report_path(out: str | Path) -> Path:
    """Where :func:`calibrate_to_file` writes the JSON report for the chip file ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".report.json")


def calibrate_to_file(cfg: ChipConfig, chip_seed: int, out, plot=None,
                      residual: float | None = None) -> dict:
    """Calibrate chip ``chip_seed`` of ``cfg`` by measurement; write ``out`` (the
    chip file, loadable with :meth:`Chip.load`), the report beside it
    (:func:`report_path`) and, with ``plot``, a histogram of the spreads; return
    the report.  ``residual``: leave that fraction of the mismatch
    (:meth:`Chip.with_residual`, a what-if evaluated the same way)."""
    if residual is not None:
        residual = check_residual(residual)
    chip = Chip(cfg, chip_seed)
    probe = ChipProbe(chip.analog)
    t0 = time.perf_counter()
    result = calibrate(probe)
    seconds = time.perf_counter() - t0
    # ---- evaluation (the hidden truth; separate from the algorithm) ----
    if residual is not None:
        # with_residual's report is this spread report, residual_fraction added
        result = Chip(cfg, chip_seed, result).with_residual(residual).calibration
        report = dict(result.report)
    else:
        report = spread_report(chip.analog, chip.analog.nominal_settings(), result.settings)
    report.update(calibration_seconds=round(seconds, 3), probe_runs=probe.runs,
                  probe_steps=probe.steps_simulated, targets=result.targets.to_dict(),
                  out=str(out))
    result.report = report
    Chip(cfg, chip_seed, result).save(out)
    report_path(out).write_text(json.dumps(report, indent=2, sort_keys=True))
    if plot:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        plot_spreads(chip.analog, chip.analog.nominal_settings(), result.settings, plot)
        report["plot"] = str(plot)
    return report
