"""`spikeloop calibrate`: calibrate one emulated chip specimen and report.

``calibrate_main(preset, chip_seed, out, plot)`` builds the chip (ChipConfig
preset + chip seed), runs the measurement-only calibration of
``spikeloop.model.calibration`` through a ``ChipProbe``, then EVALUATES the result
against the hidden true parameters (spread before/after, ratios vs PAPER.md's
maxima), saves the settings + metadata + report to ``out`` (.npz, readable with
numpy alone; load with ``CalibrationResult.load``), the report also as JSON next
to it (``<out>.report.json``), and a histogram plot when ``plot`` is given.
With ``residual = F`` the file holds the specimen calibrated only part of the
way, ``F`` of its mismatch left (:meth:`spikeloop.model.chip.Chip.with_residual`: a
what-if, evaluated the same way).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from spikeloop.base.config import ChipConfig
from spikeloop.model.analog import AnalogChipModel
from spikeloop.model.calibration import (
    ChipProbe,
    calibrate,
    plot_spreads,
    spread_report,
)


def report_path(out: str | Path) -> Path:
    """Where ``calibrate_main`` writes the JSON report for result file ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".report.json")


def calibrate_main(preset: str, chip_seed: int, out: str, plot: str | None = None,
                   residual: float | None = None) -> dict:
    """Calibrate chip ``chip_seed`` of ``preset``; write ``out`` (+ report, + plot);
    return the report dict.  ``residual``: leave that fraction of the mismatch."""
    from spikeloop.model.chip import Chip, check_residual

    if residual is not None:
        residual = check_residual(residual)
    cfg = ChipConfig.preset(preset)
    chip = AnalogChipModel(cfg, chip_seed)
    probe = ChipProbe(chip)
    t0 = time.perf_counter()
    result = calibrate(probe)
    seconds = time.perf_counter() - t0
    # ---- evaluation (hidden truth; separate from the algorithm) ----
    if residual is not None:
        # with_residual's report is this spread report, residual_fraction added
        result = Chip(cfg, chip_seed, result).with_residual(residual).calibration
        report = dict(result.report)
    else:
        report = spread_report(chip, chip.nominal_settings(), result.settings)
    report.update(calibration_seconds=round(seconds, 3), probe_runs=probe.runs,
                  probe_steps=probe.steps_simulated, targets=result.targets.to_dict(),
                  out=str(out))
    result.report = report
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    report_path(out).write_text(json.dumps(report, indent=2, sort_keys=True))
    if plot:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        plot_spreads(chip, chip.nominal_settings(), result.settings, plot)
        report["plot"] = str(plot)
    return report
