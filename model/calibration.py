"""Calibration by measurement only, and its evaluation.

``ChipProbe`` is all the calibration algorithm sees of a chip: it runs the
neurons under given 10-bit settings and stimulus (synaptic weight sums per step,
reset-hold flags) and returns what the chip returns: column-ADC codes of every
neuron at every analog step (on silicon: equivalent-time sampling over repeated
runs) and spikes.  ``calibrate(probe)`` finds each neuron's settings by
vectorised binary searches (all neurons and several searches in one batched
run per bisection step) against targets in ADC codes and µs:

- stage A: leak -> 80 LSB and -> 150 LSB (mean ADC code, membrane at rest, fast
  membrane so the noise averages out), reset -> centre of code 80 (two searches
  for the code edges 79.5 and 80.5 while the neuron is held in reset);
- stage B: threshold -> the smallest setting that no longer spikes with the leak
  at 150 LSB (so threshold 150 LSB as the ADC sees it); tau_mem -> 6 µs from
  the relaxation after release from reset (leak 150, reset 80); tau_syn (exc,
  inh) -> 6 µs from the tail of a PSP with the fastest membrane;
  both by the baseline-free three-window estimator
  ``exp(-W dt / tau) = (S2 - S3) / (S1 - S2)`` (``S_j`` = sum of codes in window j);
- stage C: synaptic gains -> the nominal PSP (gain 1e-3 V/µs per weight LSB at
  tau_mem = tau_syn = 6 µs), measured as the mean deflection in ADC codes around
  the PSP peak.

Per-neuron targets (``calibrate(..., neuron_targets=...)``: threshold, tau_mem,
tau_syn_exc, tau_syn_inh of each neuron; what a deliberately *decalibrated* chip
is calibrated to, :func:`decalibrated_targets`) take the same searches; the time
constants' windows and the gains' PSP windows then follow each neuron's target,
and the membrane and inhibitory time constants are measured at a leak at the
nominal threshold level (``leak_tau``), whatever the neuron's own threshold.

What limits a calibration (docs/analog.md, "What a calibration leaves"): the
chip's temporal membrane noise during every measurement, the finite number of
repetitions averaged (``reps``), the column ADC's own temporal (readout) noise
(``ChipProbe(readout_noise_lsb=...)``), each ADC channel's offset and gain
(never calibrated here), and the 10-bit resolution of the settings.

``spread_report(chip, before, after)`` is the EVALUATION: it reads the hidden true
parameters and is never called by ``calibrate``.
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from spikeloop.base.config import ChipConfig
from spikeloop.base.files import (
    FileError,
    atomic_savez,
    field_array,
    field_int,
    field_json,
    field_text,
    load_npz,
    require_fields,
)

from .adc import adc_convert, adc_lsb_v
from .analog import (
    GAIN_EXC,
    GAIN_INH,
    LEAK,
    NOMINAL_VALUES,
    RESET,
    SETTING_NAMES,
    TAU_MEM,
    TAU_SYN_EXC,
    TAU_SYN_INH,
    THRESHOLD,
    AnalogChipModel,
    NeuronPhysical,
    psp_closed_form,
    simulate,
)
from .noise import standard_normal_steps

#: required maxima of (spread after) / (spread before): the acceptance limits of
#: docs/paper.md, "Calibration"
REQUIRED_RATIOS = {"leak": 0.30, "reset": 0.20, "threshold": 0.35, "tau_mem": 0.45,
                   "tau_syn_exc": 0.20, "tau_syn_inh": 0.20}
#: BrainScaleS-2's acceptance limits for its column ADC channels (offsets within this
#: many LSB after its calibration; docs/analog.md, "What a calibration leaves")
ADC_CHANNEL_LIMIT_LSB = 3.0
#: the per-neuron targets :func:`calibrate` takes (``neuron_targets``)
NEURON_TARGET_KEYS = ("threshold_lsb", "tau_mem_us", "tau_syn_exc_us", "tau_syn_inh_us")
#: the groups of parameters a decalibration draws individual targets for
DECALIBRATION_GROUPS = {"tau": ("tau_mem_us", "tau_syn_exc_us", "tau_syn_inh_us"),
                        "threshold": ("threshold_lsb",),
                        "all": NEURON_TARGET_KEYS}
#: smallest factor a decalibrated target may be of its nominal value (tau, or the
#: threshold's distance above the leak): 0.1 keeps time constants above 0.6 µs and
#: the threshold 7 LSB above the leak
DECALIBRATION_MIN_FACTOR = 0.1
_DECAL_STREAM = 7
_PHYS_KEYS = {"leak": "v_leak_v", "reset": "v_reset_v", "threshold": "v_thresh_v",
              "tau_mem": "tau_mem_us", "tau_syn_exc": "tau_syn_exc_us",
              "tau_syn_inh": "tau_syn_inh_us", "gain_exc": "gain_exc_v_per_us",
              "gain_inh": "gain_inh_v_per_us"}


@dataclass(frozen=True)
class CalibrationTargets:
    """Targets of the paper (docs/paper.md, "Calibration"): potentials in ADC codes, times
    in µs."""

    leak_lsb: float = 80.0
    reset_lsb: float = 80.0
    threshold_lsb: float = 150.0
    tau_mem_us: float = 6.0
    tau_syn_us: float = 6.0
    #: synaptic gains are matched to this nominal gain (V/µs per weight LSB), as
    #: seen through the ADC; None leaves the gain settings at their nominal codes
    gain_v_per_us: float | None = 1e-3
    #: weight sum of the test PSP used for the gain calibration
    gain_weight_sum: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


class ProbeResult(NamedTuple):
    #: int64 [steps, batch, n_neurons]
    adc_codes: torch.Tensor
    #: bool [steps, batch, n_neurons]
    spikes: torch.Tensor


class ChipProbe:
    """What a chip exposes to calibration (and nothing else).

    Every ``run`` starts from the resting state of the given settings (the chip
    has settled after the settings were written) and uses fresh, deterministic
    temporal noise (sample indices count up from 0 over the probe's lifetime)."""

    def __init__(self, chip: AnalogChipModel, *, run_seed: int = 0,
                 dtype: torch.dtype = torch.float32, device="cpu",
                 readout_noise_lsb: float = 0.0):
        if not (readout_noise_lsb >= 0 and math.isfinite(readout_noise_lsb)):
            raise ValueError(f"readout_noise_lsb = {readout_noise_lsb!r}; allowed: a number "
                             ">= 0")
        #: std of the column ADC's temporal noise in every reading (LSB, input-referred:
        #: added to the membrane voltage before conversion); 0: none
        self.readout_noise_lsb = float(readout_noise_lsb)
        self._chip = chip
        self._adc = chip.adc_params(dtype=dtype, device=device)
        self._dtype, self._device = dtype, device
        self._run_seed = int(run_seed)
        self._next_sample = 0
        self.cfg: ChipConfig = chip.cfg
        self.chip_seed: int = chip.chip_seed
        self.runs = 0
        self.steps_simulated = 0

    @property
    def n_neurons(self) -> int:
        return self.cfg.n_neurons

    @property
    def setting_max(self) -> int:
        return (1 << self.cfg.analog_setting_bits) - 1

    @property
    def dt_us(self) -> float:
        return self.cfg.analog_step_us

    @property
    def adc_lsb_v(self) -> float:
        """Nominal volts per code (the chip's data sheet value, not the channel's)."""
        return adc_lsb_v(self.cfg.adc_bits)

    def run(self, settings: torch.Tensor, n_steps: int, *, exc_sum=None, inh_sum=None,
            reset_hold=None) -> ProbeResult:
        """Run ``n_steps`` analog steps.  ``settings``: int ``[batch, n, 8]`` (each
        batch row its own configuration) or ``[n, 8]``; ``exc_sum``, ``inh_sum``
        (ints) and ``reset_hold`` (bool) broadcastable to ``[n_steps, batch, n]``."""
        s = torch.as_tensor(settings)
        if s.dim() == 2:
            s = s.unsqueeze(0)
        batch = s.shape[0]
        params = self._chip.lif_params(s, dtype=self._dtype, device=self._device)
        idx = torch.arange(self._next_sample, self._next_sample + batch, dtype=torch.int64)
        self._next_sample += batch
        self.runs += 1
        self.steps_simulated += n_steps
        noisy = self.readout_noise_lsb > 0
        r = simulate(params, n_steps, batch=batch, exc_sum=exc_sum, inh_sum=inh_sum,
                     reset_hold=reset_hold, adc=None if noisy else self._adc,
                     noise_seed=self._run_seed, sample_idx=idx.to(self._device),
                     record_v=noisy)
        if not noisy:
            return ProbeResult(r.adc_codes.cpu(), r.spikes.cpu())
        # the readout's own noise: deterministic per (probe seed, sample, step, neuron),
        # keyed apart from the membrane noise (seed 2 run_seed + 1, never a run_seed's)
        z = standard_normal_steps(2 * self._run_seed + 1, idx, range(n_steps), self.n_neurons)
        v = r.v_mem_v + (z * (self.readout_noise_lsb * self.adc_lsb_v)).to(
            r.v_mem_v.dtype).to(self._device)
        return ProbeResult(adc_convert(v, self._adc).cpu(), r.spikes.cpu())


# --------------------------------------------------------------------------
# the calibration algorithm (uses ChipProbe only)
def _bisect(measure: Callable[[dict], dict], targets: dict, n: int, bits: int,
            closest: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Vectorised binary searches: per key and neuron the smallest setting ``s``
    with ``measure(...)[key] >= target`` (measure increasing in ``s``); for keys
    in ``closest`` then whichever of ``s - 1`` and ``s`` measured closer to the
    target.  ``measure`` gets ``{key: int64[n]}`` and returns ``{key: float[n]}``
    (one batched probe run per bisection step for all keys)."""
    smax = (1 << bits) - 1
    lo = {k: torch.zeros(n, dtype=torch.int64) for k in targets}
    hi = {k: torch.full((n,), smax + 1, dtype=torch.int64) for k in targets}
    f_lo = {k: torch.full((n,), -math.inf, dtype=torch.float64) for k in targets}
    f_hi = {k: torch.full((n,), math.inf, dtype=torch.float64) for k in targets}
    for _ in range(bits + 1):
        if all(bool((lo[k] >= hi[k]).all()) for k in targets):
            break
        mid = {k: torch.clamp((lo[k] + hi[k]) // 2, max=smax) for k in targets}
        vals = measure(mid)
        for k, target in targets.items():
            active = lo[k] < hi[k]
            v = vals[k].to(torch.float64)
            ok = v >= target
            hi[k] = torch.where(active & ok, mid[k], hi[k])
            f_hi[k] = torch.where(active & ok, v, f_hi[k])
            lo[k] = torch.where(active & ~ok, mid[k] + 1, lo[k])
            f_lo[k] = torch.where(active & ~ok, v, f_lo[k])
    out = {}
    for k, target in targets.items():
        s = torch.clamp(lo[k], max=smax)
        if k in closest:
            lower = (s > 0) & ((target - f_lo[k]) < (f_hi[k] - target))
            s = torch.where(lower, s - 1, s)
        out[k] = s
    return out


def _unless_spiked(value: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    """``value`` per neuron, +inf where the neuron spiked (``spikes [..., n]``)."""
    spiked = spikes.reshape(-1, spikes.shape[-1]).any(0)
    return torch.where(spiked, math.inf, value)


def _tau_from_windows(mean_codes: torch.Tensor, start: int, width: int, dt_us: float):
    """Baseline-free time constant of an exponential relaxation (float64 ``[n]``)
    from ``mean_codes [steps, n]``: three consecutive windows of ``width`` steps
    from ``start``; ``rho = (S2 - S3)/(S1 - S2) = exp(-width*dt/tau)``."""
    s1, s2, s3 = (mean_codes[start + j * width:start + (j + 1) * width].sum(0)
                  for j in range(3))
    num, den = s2 - s3, s1 - s2
    rho = torch.where(den != 0, num / torch.where(den != 0, den, 1.0), 0.0)
    tau = -width * dt_us / torch.log(rho.clamp(1e-300, 1.0 - 1e-12))
    return torch.where(rho <= 0, 0.0, tau)


def _tau_from_windows_each(mean_codes: torch.Tensor, start: torch.Tensor, width: torch.Tensor,
                           dt_us: float):
    """:func:`_tau_from_windows` with a start and a width per neuron (int64 ``[n]``)."""
    c = torch.cat([torch.zeros_like(mean_codes[:1]), mean_codes.cumsum(0)])
    cols = torch.arange(mean_codes.shape[1])

    def window(j):
        return c[start + (j + 1) * width, cols] - c[start + j * width, cols]

    s1, s2, s3 = window(0), window(1), window(2)
    num, den = s2 - s3, s1 - s2
    rho = torch.where(den != 0, num / torch.where(den != 0, den, 1.0), 0.0)
    tau = -width.to(torch.float64) * dt_us / torch.log(rho.clamp(1e-300, 1.0 - 1e-12))
    return torch.where(rho <= 0, 0.0, tau)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Temporarily limit torch's intra-op threads (the probe runs thousands of
    steps on small tensors, where thread synchronisation costs more than it
    gains; results do not depend on the thread count)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class CalibrationResult:
    """Calibrated settings of one chip plus what identifies them: the chip's whole
    ChipConfig (``config``; two variants of one preset never share a
    calibration), its preset name and chip seed."""

    settings: torch.Tensor  # int64 [n_neurons, 8]
    preset: str
    chip_seed: int
    targets: CalibrationTargets
    #: per-neuron measurements at the final settings as the probe saw them
    measured: dict[str, np.ndarray] = field(default_factory=dict)
    report: dict | None = None
    #: the ChipConfig of the chip it calibrated (None: a file from before it was kept)
    config: ChipConfig | None = None
    #: per-neuron targets that replaced the scalar ones (``NEURON_TARGET_KEYS``;
    #: float64 ``[n_neurons]``; empty: every neuron at ``targets``)
    neuron_targets: dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of its ``.npz`` file (strings as 0-d unicode arrays)."""
        arrays = {"settings": self.settings.numpy().astype(np.int64),
                  "setting_names": np.array(SETTING_NAMES),
                  "preset": np.array(self.preset), "chip_seed": np.array(self.chip_seed),
                  "targets_json": np.array(json.dumps(self.targets.to_dict(), sort_keys=True)),
                  "report_json": np.array(json.dumps(self.report or {}, sort_keys=True))}
        if self.config is not None:
            arrays["calibration_config"] = np.array(self.config.to_json())
        arrays.update({f"measured_{k}": np.asarray(v) for k, v in self.measured.items()})
        arrays.update({f"neuron_target_{k}": np.asarray(v, dtype=np.float64)
                       for k, v in self.neuron_targets.items()})
        return arrays

    def save(self, path) -> None:
        """``.npz`` readable with numpy alone, written atomically."""
        atomic_savez(path, **self.arrays())

    @classmethod
    def load(cls, path) -> CalibrationResult:
        """The calibration in ``path``; a fault is a FileError naming the file."""
        z = load_npz(path, "a calibration .npz")
        return cls.from_arrays(z, path)

    @classmethod
    def from_arrays(cls, z: dict, path) -> CalibrationResult:
        require_fields(z, ("settings", "preset", "chip_seed", "targets_json"), path,
                       "a calibration")
        settings = field_array(z, "settings", path)
        if settings.ndim != 2 or settings.shape[1] != len(SETTING_NAMES):
            raise FileError(f"{path}: field settings has shape {list(settings.shape)}; "
                            f"allowed: [neurons, {len(SETTING_NAMES)}]")
        measured = {k[len("measured_"):]: z[k] for k in z if k.startswith("measured_")}
        neuron_targets = {}
        for k in z:
            if k.startswith("neuron_target_"):
                v = field_array(z, k, path, integer=False)
                if v.shape != (settings.shape[0],) or not np.isfinite(v).all():
                    raise FileError(f"{path}: field {k} has shape {list(v.shape)} or a "
                                    f"non-finite value; allowed: {settings.shape[0]} finite "
                                    "numbers")
                neuron_targets[k[len("neuron_target_"):]] = v.astype(np.float64)
        report = (field_json(z, "report_json", path) or None) if "report_json" in z else None
        try:
            targets = CalibrationTargets(**field_json(z, "targets_json", path))
        except TypeError as e:
            raise FileError(f"{path}: field targets_json: {e}") from None
        config = None
        if "calibration_config" in z:
            try:
                config = ChipConfig.from_dict(field_json(z, "calibration_config", path))
            except (TypeError, ValueError) as e:
                raise FileError(f"{path}: field calibration_config: {e}") from None
        return cls(torch.from_numpy(settings.astype(np.int64)), field_text(z, "preset", path),
                   field_int(z, "chip_seed", path, lo=0), targets, measured, report, config,
                   neuron_targets)


def calibrate(probe: ChipProbe, targets: CalibrationTargets | None = None, *,
              reps: int = 8, threads: int | None = 1,
              neuron_targets: dict | None = None) -> CalibrationResult:
    """Find every neuron's 10-bit settings from measurements through ``probe``.

    ``reps``: repetitions (batch rows with independent noise) averaged per
    time-constant, gain and resting-potential measurement.  ``neuron_targets``:
    individual targets per neuron for some of ``NEURON_TARGET_KEYS`` (arrays of
    ``n_neurons`` numbers; the others keep ``targets``).  Deterministic: the same
    probe state gives the same result."""
    if not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps = {reps!r}; allowed: an integer >= 1")
    nt = check_neuron_targets(neuron_targets or {}, probe.n_neurons)
    with _torch_threads(threads):
        return _calibrate(probe, targets or CalibrationTargets(), reps, nt)


def check_neuron_targets(neuron_targets: dict, n_neurons: int) -> dict[str, np.ndarray]:
    """``neuron_targets`` as float64 arrays, or ValueError naming the key and what
    is allowed."""
    out = {}
    for k, v in neuron_targets.items():
        if k not in NEURON_TARGET_KEYS:
            raise ValueError(f"neuron_targets: unknown key {k!r}; allowed: "
                             f"{', '.join(NEURON_TARGET_KEYS)}")
        a = np.asarray(v, dtype=np.float64)
        if a.shape != (n_neurons,) or not (np.isfinite(a).all() and (a > 0).all()):
            raise ValueError(f"neuron_targets[{k!r}]: allowed: {n_neurons} finite positive "
                             f"numbers, got shape {list(a.shape)}")
        out[k] = a
    return out


def _calibrate(probe: ChipProbe, tg: CalibrationTargets, reps: int,
               nt: dict[str, np.ndarray]) -> CalibrationResult:
    """The calibration, stage by stage (module docstring); each stage fills in its
    settings, the next one measures with them."""
    cal = _Calibration.start(probe, tg, reps)
    cal.nt = {k: torch.from_numpy(v) for k, v in nt.items()}
    leak_lo, leak_hi, leak_tau = _stage_a_leak_reset(cal)
    _stage_b_threshold_taus(cal, leak_lo, leak_hi, leak_tau)
    _stage_c_gains(cal, leak_tau)
    return CalibrationResult(cal.base.clone(), probe.cfg.name, probe.chip_seed, tg,
                             cal.measured, config=probe.cfg,
                             neuron_targets={k: v.copy() for k, v in nt.items()})


@dataclass
class _Calibration:
    """What the stages of :func:`_calibrate` share: the probe, the targets, the
    repetitions per measurement, the settings so far (``base``, int64 ``[n, 8]``,
    filled in stage by stage) and the measurements at the settings found."""

    probe: ChipProbe
    tg: CalibrationTargets
    reps: int
    base: torch.Tensor
    measured: dict[str, np.ndarray] = field(default_factory=dict)
    #: per-neuron targets (float64 ``[n]`` tensors; ``NEURON_TARGET_KEYS``)
    nt: dict[str, torch.Tensor] = field(default_factory=dict)

    def target(self, key: str, nominal: float):
        """The per-neuron target ``key`` (float64 ``[n]``), else ``nominal``."""
        return self.nt.get(key, nominal)

    @classmethod
    def start(cls, probe: ChipProbe, tg: CalibrationTargets, reps: int) -> _Calibration:
        """The starting point: mid-range settings, fastest membrane, threshold out
        of reach."""
        smax = probe.setting_max
        base = torch.full((probe.n_neurons, 8), smax // 2, dtype=torch.int64)
        base[:, THRESHOLD] = smax
        base[:, TAU_MEM] = 0
        return cls(probe, tg, reps, base)

    def rows(self, count: int, **set_cols) -> torch.Tensor:
        """``count`` batch rows of the settings so far, with the settings named in
        ``set_cols`` replaced (a value or int64 ``[n]``): int64 ``[count, n, 8]``."""
        n = self.probe.n_neurons
        s = self.base.clone()
        for name, val in set_cols.items():
            s[:, SETTING_NAMES.index(name)] = val
        return s.unsqueeze(0).expand(count, n, 8)


def _stage_a_leak_reset(cal: _Calibration) -> tuple[torch.Tensor, torch.Tensor,
                                                     torch.Tensor]:
    """Stage A: leak -> ``leak_lsb`` (``leak_lo``) and -> ``threshold_lsb``
    (``leak_hi``), the mean ADC code at rest over ``reps`` rows of ``t_a`` steps
    (a neuron that spikes counts as too high); reset -> the centre of code
    ``reset_lsb``, from searches for the code edges ``reset_lsb -+ 0.5`` (the last
    code of one row with the neuron held in reset).  All four searches in one
    batched run per bisection step.  Sets the reset in ``cal.base``, then measures
    leak and reset there (``measured``: ``leak_lsb``, ``leak_hi_lsb``,
    ``reset_lsb``).  With a per-neuron threshold target ``leak_hi`` goes to each
    neuron's threshold and a fifth search finds ``leak_tau`` -> ``threshold_lsb``
    (the nominal level the time constants are measured at); else ``leak_tau`` is
    ``leak_hi``.  Returns ``leak_lo``, ``leak_hi`` and ``leak_tau`` (int64 ``[n]``)."""
    probe, tg, reps, rows = cal.probe, cal.tg, cal.reps, cal.rows
    t_a = 48
    own = "threshold_lsb" in cal.nt

    def measure_a(c):
        parts = [rows(reps, leak=c["leak_lo"]), rows(reps, leak=c["leak_hi"]),
                 rows(1, reset=c["reset_lo"]), rows(1, reset=c["reset_hi"])]
        if own:
            parts.append(rows(reps, leak=c["leak_tau"]))
        s = torch.cat(parts)
        hold = torch.zeros(1, s.shape[0], 1, dtype=torch.bool)
        hold[:, 2 * reps:2 * reps + 2] = True
        r = probe.run(s, t_a, reset_hold=hold)
        codes = r.adc_codes.to(torch.float64)
        # a neuron that spikes has its leak above its threshold: "too high"
        out = {"leak_lo": _unless_spiked(codes[:, :reps].mean((0, 1)), r.spikes[:, :reps]),
               "leak_hi": _unless_spiked(codes[:, reps:2 * reps].mean((0, 1)),
                                         r.spikes[:, reps:2 * reps]),
               "reset_lo": codes[-1, 2 * reps], "reset_hi": codes[-1, 2 * reps + 1]}
        if own:
            out["leak_tau"] = _unless_spiked(codes[:, 2 * reps + 2:].mean((0, 1)),
                                             r.spikes[:, 2 * reps + 2:])
        return out

    searches = {"leak_lo": tg.leak_lsb, "leak_hi": cal.target("threshold_lsb", tg.threshold_lsb),
                "reset_lo": tg.reset_lsb - 0.5, "reset_hi": tg.reset_lsb + 0.5}
    if own:
        searches["leak_tau"] = tg.threshold_lsb
    a = _bisect(measure_a, searches, probe.n_neurons, probe.cfg.analog_setting_bits,
                closest=("leak_lo", "leak_hi", "leak_tau"))
    leak_lo, leak_hi = a["leak_lo"], a["leak_hi"]
    leak_tau = a["leak_tau"] if own else leak_hi
    reset = torch.div(a["reset_lo"] + a["reset_hi"], 2, rounding_mode="floor")
    cal.base[:, RESET] = reset
    final = measure_a({"leak_lo": leak_lo, "leak_hi": leak_hi, "reset_lo": reset,
                       "reset_hi": reset, "leak_tau": leak_tau})
    cal.measured.update(leak_lsb=final["leak_lo"].numpy(),
                        leak_hi_lsb=final["leak_hi"].numpy(),
                        reset_lsb=final["reset_lo"].numpy())
    return leak_lo, leak_hi, leak_tau


def _psp_weight_sums(cal: _Calibration, leak_lo: torch.Tensor, leak_hi: torch.Tensor,
                     t_in: int, tail0: int, syn_gain: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For stage B: weight sums per neuron so that each PSP deflects by about 60
    codes.  One run of ``t_in + tail0`` steps, ``reps`` rows each of an excitatory
    PSP (leak ``leak_lo``) and an inhibitory one (leak ``leak_hi``), synaptic gain
    ``syn_gain``, weight sum 100 at step ``t_in``; the sums scale 100 by 60 over
    the largest mean deflection from step 0 (at least 1 code), clamped to 1..400.
    Returns ``(w_exc, w_inh)``, int64 ``[n]``."""
    probe, reps, rows = cal.probe, cal.reps, cal.rows
    w0 = 100
    probe_w = torch.cat([rows(reps, leak=leak_lo, gain_exc=syn_gain),
                         rows(reps, leak=leak_hi, gain_inh=syn_gain)])
    exc = torch.zeros(t_in + tail0, 2 * reps, 1, dtype=torch.int64)
    inh = torch.zeros_like(exc)
    exc[t_in, :reps] = w0
    inh[t_in, reps:] = w0
    mc = probe.run(probe_w, t_in + tail0, exc_sum=exc, inh_sum=inh).adc_codes.to(torch.float64)
    defl_e = (mc[:, :reps].mean(1) - mc[0, :reps].mean(0)).amax(0).clamp(min=1.0)
    defl_i = (mc[0, reps:].mean(0) - mc[:, reps:].mean(1)).amax(0).clamp(min=1.0)
    w_exc = torch.clamp(torch.round(w0 * 60.0 / defl_e), 1, 4 * w0).to(torch.int64)
    w_inh = torch.clamp(torch.round(w0 * 60.0 / defl_i), 1, 4 * w0).to(torch.int64)
    return w_exc, w_inh


def _tau_windows(cal: _Calibration, key: str, start: int, width: int):
    """(start, width) of the three windows a time constant is measured with: the
    given ints, or per neuron (int64 ``[n]``) for a per-neuron target ``key``: a
    width of about the neuron's target tau (8 steps up to twice ``width``); a PSP
    tail (``start`` after the input at ``t_in``, passed as ``-start``) from
    about the target tau after the input, 2 to 4 µs."""
    if key not in cal.nt:
        return start, width
    dt = cal.probe.dt_us
    tau = cal.nt[key]
    w = torch.clamp(torch.round(tau / dt), 8, 2 * width).to(torch.int64)
    if start >= 0:
        return torch.full_like(w, start), w
    t_in = -start
    first = torch.round(torch.clamp(tau, 2.0, 4.0) / dt).to(torch.int64)
    return t_in + first, w


def _measure_tau(codes: torch.Tensor, win, dt_us: float) -> torch.Tensor:
    start, width = win
    if isinstance(width, int):
        return _tau_from_windows(codes, start, width, dt_us)
    return _tau_from_windows_each(codes, start, width, dt_us)


def _window_end(win) -> int:
    start, width = win
    return int((start + 3 * width).max()) if torch.is_tensor(width) else start + 3 * width


def _stage_b_threshold_taus(cal: _Calibration, leak_lo: torch.Tensor,
                            leak_hi: torch.Tensor, leak_tau: torch.Tensor) -> None:
    """Stage B, four searches in one batched run of ``t_b`` steps per bisection
    step: threshold -> the smallest setting with no spike in the first ``t_thr``
    steps at leak ``leak_hi`` (one row); tau_mem -> ``tau_mem_us`` from the
    relaxation after release from a reset held for ``hold_steps`` steps (leak
    ``leak_hi``); tau_syn_exc/inh -> ``tau_syn_us`` from the tail of a PSP (weight
    sums of :func:`_psp_weight_sums` at step ``t_in``, the windows from ``t_in +
    tail0``) with the fastest membrane; the time constants by
    :func:`_tau_from_windows` over ``reps`` rows, windows of about one target
    tau.  Measures the time constants at the settings found (``measured``:
    ``tau_mem_us``, ``tau_syn_exc_us``, ``tau_syn_inh_us``), then sets the leak
    (``leak_lo``), the threshold and the time constants in ``cal.base``.  The
    membrane and inhibitory time constants are measured at leak ``leak_tau``
    (``leak_hi`` unless the thresholds have per-neuron targets); per-neuron
    time-constant targets get per-neuron windows (:func:`_tau_windows`)."""
    probe, tg, reps, rows, base = cal.probe, cal.tg, cal.reps, cal.rows, cal.base
    n, smax, dt = probe.n_neurons, probe.setting_max, probe.dt_us
    width = max(8, round(tg.tau_syn_us / dt))  # windows of about one target tau
    hold_steps, t_in, tail0 = 4, 2, round(4.0 / dt)
    win_mem = _tau_windows(cal, "tau_mem_us", hold_steps, width)
    win_exc = _tau_windows(cal, "tau_syn_exc_us", -t_in, width)
    win_inh = _tau_windows(cal, "tau_syn_inh_us", -t_in, width)
    if not isinstance(win_exc[1], torch.Tensor):
        win_exc = (t_in + tail0, width)
    if not isinstance(win_inh[1], torch.Tensor):
        win_inh = (t_in + tail0, width)
    t_b = max(max(hold_steps, t_in + tail0) + 3 * width,
              *(_window_end(w) for w in (win_mem, win_exc, win_inh)))
    t_thr = 16
    syn_gain = smax
    w_exc, w_inh = _psp_weight_sums(cal, leak_lo, leak_tau, t_in, tail0, syn_gain)

    def measure_b(c):
        s = torch.cat([
            rows(1, leak=leak_hi, threshold=c["threshold"], tau_mem=smax // 2),
            rows(reps, leak=leak_tau, tau_mem=c["tau_mem"]),
            rows(reps, leak=leak_lo, tau_syn_exc=c["tau_syn_exc"], gain_exc=syn_gain),
            rows(reps, leak=leak_tau, tau_syn_inh=c["tau_syn_inh"], gain_inh=syn_gain)])
        b = s.shape[0]
        hold = torch.zeros(t_b, b, 1, dtype=torch.bool)
        hold[:hold_steps, 1:1 + reps] = True
        exc = torch.zeros(t_b, b, n, dtype=torch.int64)
        inh = torch.zeros(t_b, b, n, dtype=torch.int64)
        exc[t_in, 1 + reps:1 + 2 * reps] = w_exc
        inh[t_in, 1 + 2 * reps:] = w_inh
        r = probe.run(s, t_b, exc_sum=exc, inh_sum=inh, reset_hold=hold)
        codes = r.adc_codes.to(torch.float64)
        return {"threshold": (~r.spikes[:t_thr, 0].any(0)).to(torch.float64),
                "tau_mem": _measure_tau(codes[:, 1:1 + reps].mean(1), win_mem, dt),
                "tau_syn_exc": _measure_tau(codes[:, 1 + reps:1 + 2 * reps].mean(1),
                                            win_exc, dt),
                "tau_syn_inh": _measure_tau(codes[:, 1 + 2 * reps:].mean(1), win_inh, dt)}

    b = _bisect(measure_b, {"threshold": 0.5,
                            "tau_mem": cal.target("tau_mem_us", tg.tau_mem_us),
                            "tau_syn_exc": cal.target("tau_syn_exc_us", tg.tau_syn_us),
                            "tau_syn_inh": cal.target("tau_syn_inh_us", tg.tau_syn_us)},
                n, probe.cfg.analog_setting_bits,
                closest=("tau_mem", "tau_syn_exc", "tau_syn_inh"))
    final = measure_b(b)
    base[:, LEAK] = leak_lo
    base[:, THRESHOLD] = b["threshold"]
    base[:, TAU_MEM] = b["tau_mem"]
    base[:, TAU_SYN_EXC] = b["tau_syn_exc"]
    base[:, TAU_SYN_INH] = b["tau_syn_inh"]
    cal.measured.update(tau_mem_us=final["tau_mem"].numpy(),
                        tau_syn_exc_us=final["tau_syn_exc"].numpy(),
                        tau_syn_inh_us=final["tau_syn_inh"].numpy())


def _stage_c_gains(cal: _Calibration, leak_hi: torch.Tensor) -> None:
    """Stage C: the synaptic gains -> the nominal PSP: ``gain_v_per_us`` per weight
    LSB at ``tau_mem_us``/``tau_syn_us`` (closed form, in ADC codes), measured as
    the mean deflection over 17 steps around the PSP peak of a weight sum
    ``gain_weight_sum`` at step ``t0c`` from the mean before it (``reps`` rows
    each; excitatory at the calibrated leak, inhibitory at leak ``leak_hi``, the
    nominal threshold level; an excitatory PSP that makes the neuron spike counts
    as too big).  Per-neuron time-constant targets: each neuron's PSP target and
    window follow its own targets (:func:`_psp_window`).  Sets both
    gains in ``cal.base``, then measures the PSPs there (``measured``:
    ``psp_exc_lsb``, ``psp_inh_lsb``, ``psp_target_lsb``).  Without a target gain
    (``gain_v_per_us`` None) sets both gains to 0.4 of full scale."""
    probe, tg, reps, rows, base = cal.probe, cal.tg, cal.reps, cal.rows, cal.base
    smax, dt, lsb = probe.setting_max, probe.dt_us, probe.adc_lsb_v
    if tg.gain_v_per_us is None:
        base[:, GAIN_EXC] = round(0.4 * smax)
        base[:, GAIN_INH] = round(0.4 * smax)
        return
    t0c = 16
    j_peak = round(tg.tau_mem_us / dt) - 1 if tg.tau_mem_us == tg.tau_syn_us else round(
        _peak_time(tg.tau_mem_us, tg.tau_syn_us) / dt) - 1
    win = torch.arange(j_peak - 8, j_peak + 9)
    t_c = t0c + int(win[-1]) + 1
    want = float(np.mean(psp_closed_form((win.numpy() + 1) * dt, tg.tau_mem_us,
                                         tg.tau_syn_us,
                                         tg.gain_v_per_us * tg.gain_weight_sum))) / lsb

    def psp_codes(c, n_steps: int):
        """Mean ADC codes of ``reps`` excitatory and ``reps`` inhibitory PSPs (one
        input at step ``t0c``) under the gains ``c``, and the excitatory rows' spikes."""
        s = torch.cat([rows(reps, gain_exc=c["gain_exc"], threshold=smax),
                       rows(reps, leak=leak_hi, gain_inh=c["gain_inh"], threshold=smax)])
        exc = torch.zeros(n_steps, 2 * reps, 1, dtype=torch.int64)
        inh = torch.zeros_like(exc)
        exc[t0c, :reps] = tg.gain_weight_sum
        inh[t0c, reps:] = tg.gain_weight_sum
        r = probe.run(s, n_steps, exc_sum=exc, inh_sum=inh)
        codes = r.adc_codes.to(torch.float64)
        return codes[:, :reps].mean(1), codes[:, reps:].mean(1), r.spikes[:, :reps]

    def measure_c(c):
        me, mi, spikes = psp_codes(c, t_c)
        # a PSP that reaches the threshold is "too big"
        return {"gain_exc": _unless_spiked(me[t0c + win].mean(0) - me[:t0c].mean(0), spikes),
                "gain_inh": mi[:t0c].mean(0) - mi[t0c + win].mean(0)}

    want_exc = want_inh = want
    measure = measure_c
    if any(k in cal.nt for k in ("tau_mem_us", "tau_syn_exc_us", "tau_syn_inh_us")):
        # each neuron's own PSPs: the nominal jump per weight LSB at its target
        # time constants, averaged over a window around its own peak
        win_e, want_exc = _psp_window(cal, "tau_syn_exc_us")
        win_i, want_inh = _psp_window(cal, "tau_syn_inh_us")
        t_each = t0c + int(max(win_e.max(), win_i.max())) + 1
        cols = torch.arange(probe.n_neurons)

        def measure_each(c):
            me, mi, spikes = psp_codes(c, t_each)
            return {"gain_exc": _unless_spiked(me[t0c + win_e, cols].mean(0)
                                               - me[:t0c].mean(0), spikes),
                    "gain_inh": mi[:t0c].mean(0) - mi[t0c + win_i, cols].mean(0)}

        measure = measure_each

    g = _bisect(measure, {"gain_exc": want_exc, "gain_inh": want_inh}, probe.n_neurons,
                probe.cfg.analog_setting_bits, closest=("gain_exc", "gain_inh"))
    base[:, GAIN_EXC] = g["gain_exc"]
    base[:, GAIN_INH] = g["gain_inh"]
    final = measure(g)
    cal.measured.update(psp_exc_lsb=final["gain_exc"].numpy(),
                        psp_inh_lsb=final["gain_inh"].numpy(),
                        psp_target_lsb=np.array(want))
    if torch.is_tensor(want_exc):
        cal.measured.update(psp_exc_target_lsb=want_exc.numpy(),
                            psp_inh_target_lsb=want_inh.numpy())


def _psp_window(cal: _Calibration, syn_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron, for its target tau_mem and ``syn_key``: the 17 steps around its
    PSP's peak (int64 ``[17, n]``, from the input step on) and the mean deflection
    there of a PSP of the nominal gain (ADC codes, float64 ``[n]``)."""
    tg, dt, lsb = cal.tg, cal.probe.dt_us, cal.probe.adc_lsb_v
    n = cal.probe.n_neurons
    tm = np.broadcast_to(np.asarray(cal.target("tau_mem_us", tg.tau_mem_us), np.float64), n)
    ts = np.broadcast_to(np.asarray(cal.target(syn_key, tg.tau_syn_us), np.float64), n)
    same = np.isclose(tm, ts)
    t_pk = np.where(same, tm, np.log(ts / tm) * tm * ts / np.where(same, 1.0, ts - tm))
    j_peak = np.maximum(np.round(t_pk / dt).astype(np.int64) - 1, 8)
    win = j_peak[None, :] + np.arange(-8, 9)[:, None]               # [17, n]
    t = (win + 1) * dt
    x = t * (1.0 / tm - 1.0 / ts)
    safe = np.where(x == 0, 1.0, x)
    ratio = np.where(x == 0, 1.0, np.expm1(safe) / safe)
    psp = tg.gain_v_per_us * tg.gain_weight_sum * t * np.exp(-t / tm) * ratio
    return torch.from_numpy(win), torch.from_numpy(psp.mean(0) / lsb)


def _peak_time(tau_mem_us: float, tau_syn_us: float) -> float:
    return (math.log(tau_syn_us / tau_mem_us) * tau_mem_us * tau_syn_us
            / (tau_syn_us - tau_mem_us))


# --------------------------------------------------------------------------
# deliberate decalibration
def decalibrated_targets(n_neurons: int, sigma: float, group: str, seed: int,
                         targets: CalibrationTargets | None = None) -> dict[str, np.ndarray]:
    """Individual per-neuron targets for a deliberately decalibrated chip: each of
    the group's parameters (``DECALIBRATION_GROUPS``: ``tau`` the three time
    constants, ``threshold`` the threshold's distance above the leak, ``all``
    both) drawn from a normal distribution around its nominal target with the
    normalised standard deviation ``sigma`` (``target * (1 + sigma z)``, the
    factor at least ``DECALIBRATION_MIN_FACTOR``; thresholds at most code 250).
    ``z`` comes from ``seed`` alone, the same for every ``sigma`` and group, so
    the levels of one seed differ only in scale.  ``sigma`` 0: no per-neuron
    target (the ordinary calibration)."""
    if group not in DECALIBRATION_GROUPS:
        raise ValueError(f"group = {group!r}; allowed: {', '.join(DECALIBRATION_GROUPS)}")
    if not (isinstance(sigma, int | float) and 0.0 <= sigma <= 1.0):
        raise ValueError(f"sigma = {sigma!r}; allowed: a number in [0, 1]")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed = {seed!r}; allowed: an integer >= 0")
    if sigma == 0:
        return {}
    tg = targets or CalibrationTargets()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _DECAL_STREAM]))
    z = rng.standard_normal((len(NEURON_TARGET_KEYS), n_neurons))
    nominal = {"threshold_lsb": tg.threshold_lsb - tg.leak_lsb, "tau_mem_us": tg.tau_mem_us,
               "tau_syn_exc_us": tg.tau_syn_us, "tau_syn_inh_us": tg.tau_syn_us}
    out = {}
    for i, key in enumerate(NEURON_TARGET_KEYS):
        if key in DECALIBRATION_GROUPS[group]:
            v = nominal[key] * np.maximum(1.0 + sigma * z[i], DECALIBRATION_MIN_FACTOR)
            out[key] = np.minimum(v + tg.leak_lsb, 250.0) if key == "threshold_lsb" else v
    return out


# --------------------------------------------------------------------------
# evaluation (reads the hidden truth; never used by the algorithm above)
def _efficacy(phys: dict) -> np.ndarray:
    """Peak excitatory PSP of one weight LSB relative to the leak-to-threshold
    distance: how strongly a weight drives the neuron towards its threshold."""
    tm, ts = phys["tau_mem_us"], phys["tau_syn_exc_us"]
    same = np.isclose(tm, ts)
    tpk = np.where(same, tm, np.log(ts / tm) * tm * ts / np.where(same, 1.0, ts - tm))
    pk = np.where(same, tpk * np.exp(-tpk / tm),
                  tm * ts / np.where(same, 1.0, tm - ts) * (np.exp(-tpk / tm) - np.exp(-tpk / ts)))
    return phys["gain_exc_v_per_us"] * pk / (phys["v_thresh_v"] - phys["v_leak_v"])


def spread_report(chip: AnalogChipModel, before: torch.Tensor, after: torch.Tensor) -> dict:
    """EVALUATION ONLY: spreads (std across neurons) of the TRUE parameters under the
    uncalibrated settings ``before`` and the calibrated ``after``, their ratios and
    the required maxima (docs/paper.md, "Calibration"), plus usability indicators."""
    pb = {k: v.numpy() for k, v in chip.physical(before).as_dict().items()}
    pa = {k: v.numpy() for k, v in chip.physical(after).as_dict().items()}
    params = {}
    for name, key in _PHYS_KEYS.items():
        sb, sa = float(np.std(pb[key], ddof=1)), float(np.std(pa[key], ddof=1))
        req = REQUIRED_RATIOS.get(name)
        ratio = sa / sb if sb > 0 else float("nan")
        params[name] = {"unit": key.rsplit("_", 1)[-1] if "gain" not in key else "V/us/LSB",
                        "mean_before": float(np.mean(pb[key])),
                        "mean_after": float(np.mean(pa[key])),
                        "std_before": sb, "std_after": sa, "ratio": ratio,
                        "required_max_ratio": req,
                        "ok": None if req is None else bool(ratio <= req)}
    eff_b, eff_a = _efficacy(pb), _efficacy(pa)
    ideal = NeuronPhysical.uniform(1, **dict(zip(_PHYS_KEYS.values(), NOMINAL_VALUES,
                                                 strict=True)))
    eff_nominal = float(_efficacy({k: v.numpy() for k, v in ideal.as_dict().items()})[0])

    def usable(p, eff):
        tonic = p["v_leak_v"] >= p["v_thresh_v"]
        good = eff[~tonic]
        off = tonic | (np.abs(eff / eff_nominal - 1.0) > 0.5)
        return {"tonic_fraction": float(tonic.mean()),
                "efficacy_cv": float(np.std(good) / np.mean(good)) if good.size else None,
                "off_by_50pct_fraction": float(off.mean())}

    return {"preset": chip.cfg.name, "chip_seed": chip.chip_seed,
            "n_neurons": chip.n_neurons, "params": params,
            "all_ok": all(v["ok"] for v in params.values() if v["ok"] is not None),
            "usability_before": usable(pb, eff_b), "usability_after": usable(pa, eff_a),
            "mismatch": chip.mismatch_config.to_dict(),
            "noise_sigma_v": chip.noise_sigma_v}


def plot_spreads(chip: AnalogChipModel, before: torch.Tensor, after: torch.Tensor,
                 path) -> None:
    """Histograms of the true parameters before/after calibration (EVALUATION)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pb = chip.physical(before).as_dict()
    pa = chip.physical(after).as_dict()
    fig = Figure(figsize=(14, 6.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4)
    for ax, (name, key) in zip(axes.flat, _PHYS_KEYS.items(), strict=True):
        b, a = pb[key].numpy(), pa[key].numpy()
        lo, hi = min(b.min(), a.min()), max(b.max(), a.max())
        bins = np.linspace(lo, hi, 41) if hi > lo else 10
        ax.hist(b, bins=bins, color="0.6", label=f"before (std {b.std(ddof=1):.3g})")
        ax.hist(a, bins=bins, color="C0", alpha=0.8, label=f"after (std {a.std(ddof=1):.3g})")
        ax.set_title(f"{name} [{key}]", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"calibration of chip {chip.chip_seed} ({chip.cfg.name}, "
                 f"{chip.n_neurons} neurons): true parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
