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

import copy
import dataclasses
import json
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from spikeloop.base.config import PRESETS, ChipConfig
from spikeloop.base.files import (
    FileError,
    atomic_savez,
    atomic_write_text,
    field_bool,
    field_int,
    field_json,
    field_text,
    load_npz,
)
from spikeloop.base.image import ConfigImage
from spikeloop.model.adc import adc_lsb_v
from spikeloop.model.analog import (
    DEFAULT_NOISE_SIGMA_V,
    AnalogChipModel,
    TransferRanges,
    psp_peak,
)
from spikeloop.model.calibration import (
    ADC_CHANNEL_LIMIT_LSB,
    CalibrationResult,
    CalibrationTargets,
    ChipProbe,
    calibrate,
    plot_spreads,
    spread_report,
)
from spikeloop.model.mismatch import WEIGHT_GAIN_BITS, MismatchConfig, driver_deviations
from spikeloop.model.noise import NOISE_MODELS


def check_residual(fraction) -> float:
    """``fraction`` as a float in [0, 1] (:meth:`Chip.with_residual`), or ValueError."""
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"residual fraction = {fraction!r}; allowed: a number in [0, 1]")
    return f


def check_calibration(calibration: CalibrationResult, cfg: ChipConfig, chip_seed: int,
                      where: str = "calibration") -> None:
    """Refuse (ValueError) a calibration of another chip instance than chip
    ``chip_seed`` of ``cfg``: the whole ChipConfig is compared (two variants of
    one preset never share a calibration); a calibration that predates keeping
    its config is matched by preset name and shape."""
    theirs = calibration.config
    same_cfg = (theirs == cfg if theirs is not None
                else calibration.preset == cfg.name and cfg == ChipConfig.preset(cfg.name)
                if cfg.name in PRESETS else False)
    if not same_cfg or calibration.chip_seed != chip_seed:
        what = (f"chip config {theirs.name!r}" if theirs is not None
                else f"preset {calibration.preset!r}")
        differ = ""
        if theirs is not None and theirs != cfg:
            fields = [k for k, v in theirs.to_dict().items() if cfg.to_dict()[k] != v]
            differ = f" (they differ in {', '.join(fields[:5])})"
        raise ValueError(f"{where} is of chip {calibration.chip_seed} of {what}, not of chip "
                         f"{chip_seed} of chip config {cfg.name!r}{differ}")
    if tuple(calibration.settings.shape) != (cfg.n_neurons, 8):
        raise ValueError(f"{where} holds settings of shape {list(calibration.settings.shape)}; "
                         f"chip config {cfg.name!r} needs [{cfg.n_neurons}, 8]")


#: calibrations this process made, newest last (:meth:`Chip.calibrated`): a
#: calibration is a deterministic function of its key, and a process that builds
#: the same specimen again (a sweep's workloads, an experiment's conditions, a
#: test suite's many small runs) takes a copy instead of measuring again
_CALIBRATED: OrderedDict = OrderedDict()
_CALIBRATED_MAX = 16


def _calibration_key(cfg: ChipConfig, chip_seed: int, reps: int, readout_noise_lsb: float,
                     neuron_targets: dict | None) -> tuple:
    targets = None if neuron_targets is None else tuple(
        (k, np.asarray(v, np.float64).tobytes()) for k, v in sorted(neuron_targets.items()))
    return cfg, chip_seed, reps, float(readout_noise_lsb), targets


class Chip:
    def __init__(self, cfg: ChipConfig, chip_seed: int,
                 calibration: CalibrationResult | None = None, *,
                 noise_model: str = "box-muller", mismatch: MismatchConfig | None = None):
        if not isinstance(chip_seed, int) or chip_seed < 0:
            raise ValueError(f"chip_seed must be a non-negative integer, got {chip_seed!r}")
        if calibration is not None:
            check_calibration(calibration, cfg, chip_seed)
        self.cfg = cfg
        self.chip_seed = chip_seed
        self.calibration = calibration
        #: the analog half of this specimen (its hidden true parameters live here);
        #: ``noise_model``: its temporal noise's generator (model/noise.py);
        #: ``mismatch``: the magnitudes of its deviations (default: MismatchConfig())
        self.analog = AnalogChipModel(cfg, chip_seed, mismatch, noise_model=noise_model)

    @classmethod
    def calibrated(cls, cfg: ChipConfig, chip_seed: int, *, reps: int = 8,
                   readout_noise_lsb: float = 0.0, neuron_targets: dict | None = None,
                   noise_model: str = "box-muller",
                   mismatch: MismatchConfig | None = None) -> Chip:
        """Build the specimen and calibrate it by measurement (``reps`` repetitions
        per measurement, the column ADC's temporal noise ``readout_noise_lsb``,
        per-neuron ``neuron_targets``: :func:`~spikeloop.model.calibration.calibrate`;
        the membranes' temporal noise by generator ``noise_model``, which the
        chip keeps; ``mismatch``: the magnitudes of its deviations).  The same
        arguments in one process give a copy of the first result (the
        calibration is deterministic; ``_CALIBRATED``)."""
        mismatch = mismatch or MismatchConfig()
        key = (_calibration_key(cfg, chip_seed, reps, readout_noise_lsb, neuron_targets),
               noise_model, mismatch)
        result = _CALIBRATED.get(key)
        if result is None:
            chip = cls(cfg, chip_seed, noise_model=noise_model, mismatch=mismatch)
            result = calibrate(ChipProbe(chip.analog, readout_noise_lsb=readout_noise_lsb),
                               reps=reps, neuron_targets=neuron_targets)
            _CALIBRATED[key] = result
            while len(_CALIBRATED) > _CALIBRATED_MAX:
                _CALIBRATED.popitem(last=False)
        else:
            _CALIBRATED.move_to_end(key)
        return cls(cfg, chip_seed, copy.deepcopy(result), noise_model=noise_model,
                   mismatch=mismatch)

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
        out = Chip(self.cfg, self.chip_seed, dataclasses.replace(
            self.calibration, settings=settings, measured={}, report=report))
        out.analog = self.analog                  # the same specimen: its noise, its curves
        return out

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

    @property
    def synapse_gains(self) -> np.ndarray | None:
        """Every synapse's fixed-point gain (driver and synapse mismatch; int32
        [halves, rows, columns] in units of ``2**-WEIGHT_GAIN_BITS``), None when
        the chip has none: the analog side then integrates the digital weights."""
        return self.analog.synapse_gains

    def lif_params(self, image: ConfigImage, **kw):
        """The analog model's parameters for the settings and merge switches the
        image writes, for the synapse sums of :func:`~spikeloop.model.synapses.row_tables`
        (weights times the synapses' gains, when the chip has them).  The last
        few are kept (a network's runs write the same settings run after run):
        the same settings, merge switches, noise and arguments give the same
        object, whose tensors no caller writes."""
        merge = image.neuron_merge if image.neuron_merge.size else None
        shift = 0 if self.synapse_gains is None else WEIGHT_GAIN_BITS
        a = self.analog
        settings = np.ascontiguousarray(image.analog_settings)
        key = (a, a.ranges, a.noise_sigma_v, a.noise_model, shift, settings.dtype.str,
               settings.shape, settings.tobytes(),
               None if merge is None else np.asarray(merge).tobytes(),
               tuple(sorted((k, str(v)) for k, v in kw.items())))
        cache = self.__dict__.setdefault("_lif_params", OrderedDict())
        params = cache.get(key)
        if params is None:
            params = a.lif_params(torch.as_tensor(settings), merge=merge, weight_shift=shift,
                                  **kw)
            cache[key] = params
            while len(cache) > 4:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return params

    # -- files: the chip instance with its calibration --------------------------
    def analog_definition(self) -> dict:
        """What defines this specimen's analog half besides config and seed: the
        temporal noise (its generator where it is not the default Box-Muller),
        the mismatch magnitudes, the nominal transfer ranges."""
        a = self.analog
        out = {"noise_sigma_v": a.noise_sigma_v,
               "mismatch": dataclasses.asdict(a.mismatch_config),
               "ranges": dataclasses.asdict(a.ranges)}
        if a.noise_model != NOISE_MODELS[0]:
            out["noise_model"] = a.noise_model
        return out

    def save(self, path) -> None:
        """Write the chip instance (config, seed, analog definition, calibration)
        to exactly ``path``, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        if self.calibration is not None:
            cal = self.calibration
            if cal.config is None:
                cal = dataclasses.replace(cal, config=self.cfg)
            arrays = cal.arrays()
        arrays["chip_config"] = np.array(self.cfg.to_json())
        arrays["chip_seed"] = np.array(self.chip_seed)
        arrays["calibrated"] = np.array(self.calibration is not None)
        arrays["analog_json"] = np.array(json.dumps(self.analog_definition(), sort_keys=True))
        atomic_savez(path, **arrays)

    @classmethod
    def load(cls, path) -> Chip:
        """The chip instance in ``path`` (``save``, or a calibration file of
        ``spikeloop calibrate``).  Any fault is a :class:`ChipFileError` naming the
        file and the field."""
        z = load_npz(path, "a chip file (Chip.save, spikeloop calibrate)")
        try:
            return cls._from_arrays(z, path)
        except (FileError, ValueError, TypeError) as e:
            msg = str(e)
            raise ChipFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") \
                from None

    @classmethod
    def _from_arrays(cls, z: dict, path) -> Chip:
        if "chip_config" in z:
            cfg = ChipConfig.from_dict(field_json(z, "chip_config", path))
        elif "preset" in z:   # a bare calibration file
            cfg = ChipConfig.preset(field_text(z, "preset", path))
        else:
            what = ("a ConfigImage, not a chip file" if "synapse_weight" in z else
                    "InputEvents, not a chip file" if "events" in z else
                    "Observables, not a chip file" if "spikes" in z else
                    "no chip_config field")
            raise FileError(f"{path}: holds {what} (a chip file comes from Chip.save or "
                            "spikeloop calibrate)")
        if "chip_seed" not in z:
            what = ("a ConfigImage" if "synapse_weight" in z else "InputEvents" if "events" in z
                    else "Observables" if "spikes" in z else "no chip_seed field")
            raise FileError(f"{path}: holds {what}, not a chip (a chip file comes from "
                            "Chip.save or spikeloop calibrate and holds chip_seed)")
        seed = field_int(z, "chip_seed", path, lo=0)
        calibrated = field_bool(z, "calibrated", path) if "calibrated" in z else "settings" in z
        calibration = CalibrationResult.from_arrays(z, path) if calibrated else None
        if calibration is not None:
            check_calibration(calibration, cfg, seed, where=f"{path}: its calibration")
        chip = cls(cfg, seed, calibration)
        if "analog_json" in z:
            d = field_json(z, "analog_json", path)
            try:
                noise = float(d.get("noise_sigma_v", DEFAULT_NOISE_SIGMA_V))
                mismatch = MismatchConfig(**d.get("mismatch", {}))
                ranges = TransferRanges(**d.get("ranges", {}))
            except (TypeError, ValueError) as e:
                raise FileError(f"{path}: field analog_json: {e}") from None
            if not (noise >= 0 and np.isfinite(noise)):
                raise FileError(f"{path}: field analog_json: noise_sigma_v = {noise}; "
                                "allowed: a number >= 0")
            model = d.get("noise_model", NOISE_MODELS[0])
            if model not in NOISE_MODELS:
                raise FileError(f"{path}: field analog_json: noise_model = {model!r}; "
                                f"allowed: {', '.join(NOISE_MODELS)}")
            if mismatch != chip.analog.mismatch_config or ranges != chip.analog.ranges:
                chip.analog = AnalogChipModel(cfg, seed, mismatch, noise_sigma_v=noise,
                                              ranges=ranges)
            chip.analog.noise_sigma_v = noise
            chip.analog.noise_model = model
        return chip

    @classmethod
    def load_expected(cls, path, cfg: ChipConfig, chip_seed: int) -> Chip:
        """:meth:`load`, refusing (ValueError) a file that holds another chip
        instance than chip ``chip_seed`` of ``cfg`` (the whole ChipConfig is
        compared, not only its name)."""
        chip = cls.load(path)
        if chip.cfg != cfg or chip.chip_seed != chip_seed:
            fields = [k for k, v in chip.cfg.to_dict().items() if cfg.to_dict()[k] != v]
            raise ChipFileError(
                f"{path} holds chip {chip.chip_seed} of preset {chip.cfg.name!r}, not chip "
                f"{chip_seed} of {cfg.name!r}"
                + (f" (the configs differ in {', '.join(fields[:5])})" if fields else ""))
        return chip


class ChipFileError(FileError):
    """A chip file cannot be read or holds another chip; the message names the file."""


def report_path(out: str | Path) -> Path:
    """Where :func:`calibrate_to_file` writes the JSON report for the chip file ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".report.json")


def calibrate_to_file(cfg: ChipConfig, chip_seed: int, out, plot=None,
                      residual: float | None = None, *, reps: int = 8,
                      readout_noise_lsb: float = 0.0, noise_model: str = "box-muller",
                      mismatch: MismatchConfig | None = None) -> dict:
    """Calibrate chip ``chip_seed`` of ``cfg`` by measurement; write ``out`` (the
    chip file, loadable with :meth:`Chip.load`), the report beside it
    (:func:`report_path`) and, with ``plot``, a histogram of the spreads; return
    the report.  ``residual``: leave that fraction of the mismatch
    (:meth:`Chip.with_residual`, a what-if evaluated the same way).  ``reps``,
    ``readout_noise_lsb``: what limits the measurements (:meth:`Chip.calibrated`);
    ``noise_model``: the membranes' noise generator, kept in the chip file;
    ``mismatch``: the specimen's mismatch magnitudes (default MismatchConfig()),
    kept in the chip file; the report holds them, the ADC channels' offsets
    against BrainScaleS-2's limit (:func:`adc_channel_report`) and the
    synapses' gains (:func:`synapse_gain_report`)."""
    if residual is not None:
        residual = check_residual(residual)
    chip = Chip(cfg, chip_seed, noise_model=noise_model, mismatch=mismatch)
    probe = ChipProbe(chip.analog, readout_noise_lsb=readout_noise_lsb)
    t0 = time.perf_counter()
    result = calibrate(probe, reps=reps)
    seconds = time.perf_counter() - t0
    # ---- evaluation (the hidden truth; separate from the algorithm) ----
    if residual is not None:
        # with_residual's report is this spread report, residual_fraction added
        result = Chip(cfg, chip_seed, result, noise_model=noise_model,
                      mismatch=mismatch).with_residual(residual).calibration
        report = dict(result.report)
    else:
        report = spread_report(chip.analog, chip.analog.nominal_settings(), result.settings)
    report.update(calibration_seconds=round(seconds, 3), probe_runs=probe.runs,
                  probe_steps=probe.steps_simulated, targets=result.targets.to_dict(),
                  out=str(out), measurement={"reps": reps,
                                             "readout_noise_lsb": readout_noise_lsb,
                                             "noise_model": noise_model},
                  adc_channels=adc_channel_report(chip.analog),
                  synapse_gains=synapse_gain_report(chip.analog))
    result.report = report
    Chip(cfg, chip_seed, result, noise_model=noise_model, mismatch=mismatch).save(out)
    atomic_write_text(report_path(out), json.dumps(report, indent=2, sort_keys=True))
    if plot:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        plot_spreads(chip.analog, chip.analog.nominal_settings(), result.settings, plot)
        report["plot"] = str(plot)
    return report


#: BrainScaleS-2's acceptance of its calibrated synapse drivers (docs/paper.md,
#: "Calibration"): within this many ADC LSB of each other
DRIVER_LIMIT_LSB = 4.0


def synapse_gain_report(analog: AnalogChipModel) -> dict:
    """EVALUATION: the synapse drivers' and synapses' true gains (not calibrated:
    BrainScaleS-2 calibrates its drivers to within 4 LSB and no synapse at all;
    docs/analog.md).  ``std``: over every synapse of weight x gain / weight."""
    mm = analog.mismatch_config
    out = {"driver_gain_sigma": mm.driver_gain_sigma * mm.scale,
           "synapse_gain_sigma": mm.synapse_gain_sigma * mm.scale,
           "modelled": analog.synapse_gains is not None}
    if analog.synapse_gains is not None:
        g = analog.synapse_gains.astype(np.float64) / (1 << WEIGHT_GAIN_BITS)
        out.update(std=float(g.std()), min=float(g.min()), max=float(g.max()))
        # the drivers in ADC LSB, as BrainScaleS-2's acceptance counts them: each
        # driver's deviation of the PSP peak a full weight gives at the calibration's
        # nominal gain and time constants
        cfg, t = analog.cfg, CalibrationTargets()
        _, peak_v = psp_peak(t.tau_mem_us, t.tau_syn_us, t.gain_v_per_us * cfg.weight_max)
        peak_lsb = peak_v / adc_lsb_v(cfg.adc_bits)
        d = driver_deviations(cfg, analog.chip_seed, mm) * peak_lsb
        out.update(full_weight_psp_lsb=float(peak_lsb), driver_std_lsb=float(d.std()),
                   driver_max_abs_lsb=float(np.abs(d).max()),
                   driver_limit_lsb=DRIVER_LIMIT_LSB,
                   driver_within_limit_fraction=float((np.abs(d) <= DRIVER_LIMIT_LSB).mean()))
    return out


def adc_channel_report(analog: AnalogChipModel) -> dict:
    """EVALUATION: the column ADC channels' true offsets (LSB) and gain deviations
    against BrainScaleS-2's acceptance limit for its calibrated channels (offsets
    within ``ADC_CHANNEL_LIMIT_LSB``; docs/analog.md).  This model does not
    calibrate its ADC channels: their mismatch is what every reading carries."""
    off = np.asarray(analog.mismatch.adc_offset_lsb, dtype=np.float64)
    gain = np.asarray(analog.mismatch.adc_gain_dev, dtype=np.float64)
    within = np.abs(off) <= ADC_CHANNEL_LIMIT_LSB
    return {"offset_std_lsb": float(np.std(off, ddof=1)),
            "offset_max_abs_lsb": float(np.abs(off).max()),
            "gain_std": float(np.std(gain, ddof=1)),
            "limit_lsb": ADC_CHANNEL_LIMIT_LSB,
            "within_limit_fraction": float(within.mean()), "ok": bool(within.all())}
