"""Fixed-pattern mismatch of one chip specimen, drawn from its chip seed.

Every neuron has, for each of its 8 analog settings (see ``analog.SETTING_NAMES``),
a mismatched *transfer curve* from the 10-bit setting to the physical value: an
offset, a slope deviation and a mild bow-shaped nonlinearity (see
``analog.transfer``).  Every ADC channel has an offset and a gain deviation.
Optionally every synapse driver and every synapse has a gain deviation
(:func:`synapse_gain_table`; off by default).

Draws use ``numpy.random.default_rng(SeedSequence([chip_seed, stream]))`` with one
stream for the neurons, one for the ADC and one for the synapses, always in
the same order: the same
seed gives bit-identical deviations, two seeds give different chips.

Default magnitudes (documented in docs/analog.md): chosen so that an
*uncalibrated* chip (every neuron given the nominal settings) has leak, reset
and threshold potentials spread by about 0.1 V (~21 ADC LSB, about a third of the
0.33 V leak-to-threshold distance of the paper's operating point), time
constants spread by about 35 % and synaptic gains by about 20 %: a few neurons
fire tonically, many barely respond, so the paper's MNIST network is visibly
unusable.  Calibration is limited by the ADC (offset 1.5 LSB, gain 1.5 %) and
the 10-bit resolution, leaving about 8-15 mV and 1-3 %.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from spikeloop.base.config import ChipConfig

N_SETTINGS = 8
#: transfer-curve kinds of the 8 settings (leak, reset, threshold, tau_mem,
#: tau_syn_exc, tau_syn_inh, gain_exc, gain_inh)
SETTING_KINDS = ("voltage", "voltage", "voltage", "tau", "tau", "tau", "gain", "gain")

_NEURON_STREAM = 1
_ADC_STREAM = 2
_SYNAPSE_STREAM = 3
#: fraction bits of the fixed-point gain of each synapse (:func:`synapse_gain_table`):
#: the analog side integrates weight x gain in units of ``2**-WEIGHT_GAIN_BITS``
#: weight LSB
WEIGHT_GAIN_BITS = 10
#: clip limits that keep every mismatched transfer curve strictly increasing
_SLOPE_MIN = -0.5
_NONLIN_MAX = 0.2


@dataclass(frozen=True)
class MismatchConfig:
    """Standard deviations of the fixed-pattern deviations (all scaled by ``scale``).

    Voltage settings (leak, reset, threshold): ``V = V_lo + span*(x*(1+slope) +
    nonlin*4x(1-x)) + offset``; offset in volts, slope relative, nonlin as a
    fraction of the span at mid-range.  Time constants: the same shape applied to
    ``ln(tau)`` over ``ln(tau_hi/tau_lo)``, offset in natural-log units (0.3 ~ 30 %).
    Gains: ``g = g_hi*(x*(1+slope) + nonlin*4x(1-x))*exp(offset)``.
    ADC: offset in codes, gain relative.  Synapses: each synapse's current is
    ``weight * (1 + driver) * (1 + synapse)`` with one relative deviation per
    driver and one per synapse (:func:`synapse_gain_table`; 0, the default:
    none, and the analog side integrates the digital weights exactly)."""

    voltage_offset_sigma_v: float = 0.10
    voltage_slope_sigma: float = 0.05
    voltage_nonlin_sigma: float = 0.02
    tau_offset_sigma: float = 0.30
    tau_slope_sigma: float = 0.05
    tau_nonlin_sigma: float = 0.02
    gain_offset_sigma: float = 0.20
    gain_slope_sigma: float = 0.05
    gain_nonlin_sigma: float = 0.02
    adc_offset_sigma_lsb: float = 1.5
    adc_gain_sigma: float = 0.015
    #: relative std of each synapse driver's efficacy left after calibration
    #: (one gain for both rows the driver feeds)
    driver_gain_sigma: float = 0.0
    #: relative std of each synapse's weight DAC gain (never calibrated)
    synapse_gain_sigma: float = 0.0
    #: multiplies every sigma above (0 = an ideal chip)
    scale: float = 1.0

    def __post_init__(self):
        for name in ("driver_gain_sigma", "synapse_gain_sigma"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 <= v <= 0.5):
                raise ValueError(f"{name} = {v!r}; allowed: a number from 0 to 0.5")

    def to_dict(self) -> dict:
        return asdict(self)

    def sigmas(self, kind: str) -> tuple[float, float, float]:
        """(offset, slope, nonlin) sigmas of a setting kind, scaled."""
        s = self.scale
        return (getattr(self, f"{kind}_offset_sigma" + ("_v" if kind == "voltage" else "")) * s,
                getattr(self, f"{kind}_slope_sigma") * s,
                getattr(self, f"{kind}_nonlin_sigma") * s)


@dataclass(frozen=True)
class ChipMismatch:
    """The drawn deviations of one chip (float64 numpy arrays; hidden truth).

    ``offset``, ``slope``, ``nonlin``: ``[8, n_neurons]`` (row = setting);
    ``adc_offset_lsb``, ``adc_gain_dev``: ``[n_neurons]``."""

    offset: np.ndarray
    slope: np.ndarray
    nonlin: np.ndarray
    adc_offset_lsb: np.ndarray
    adc_gain_dev: np.ndarray


def draw_mismatch(cfg: ChipConfig, chip_seed: int,
                  config: MismatchConfig | None = None) -> ChipMismatch:
    """Draw the fixed-pattern deviations of chip ``chip_seed`` (a non-negative int)."""
    if not isinstance(chip_seed, int | np.integer) or chip_seed < 0:
        raise ValueError(f"chip_seed must be a non-negative integer, got {chip_seed!r}")
    config = config or MismatchConfig()
    n = cfg.n_neurons
    rng = np.random.default_rng(np.random.SeedSequence([int(chip_seed), _NEURON_STREAM]))
    z = rng.standard_normal((3, N_SETTINGS, n))  # offset, slope, nonlin; fixed order
    sig = np.array([config.sigmas(k) for k in SETTING_KINDS])  # [8, 3]
    offset = z[0] * sig[:, 0:1]
    slope = np.clip(z[1] * sig[:, 1:2], _SLOPE_MIN, None)
    nonlin = np.clip(z[2] * sig[:, 2:3], -_NONLIN_MAX, _NONLIN_MAX)
    rng_adc = np.random.default_rng(np.random.SeedSequence([int(chip_seed), _ADC_STREAM]))
    za = rng_adc.standard_normal((2, n))
    adc_offset = za[0] * (config.adc_offset_sigma_lsb * config.scale)
    adc_gain = np.clip(za[1] * (config.adc_gain_sigma * config.scale), -0.5, 0.5)
    return ChipMismatch(offset, slope, nonlin, adc_offset, adc_gain)


def _synapse_draws(cfg: ChipConfig, chip_seed: int, config: MismatchConfig | None
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """(driver deviations [halves, drivers], synapse deviations [halves, rows,
    columns]) of chip ``chip_seed``, or None when both stds are 0."""
    config = config or MismatchConfig()
    sd, ss = config.driver_gain_sigma * config.scale, config.synapse_gain_sigma * config.scale
    if sd == 0 and ss == 0:
        return None
    H, R, C = cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half
    rng = np.random.default_rng(np.random.SeedSequence([int(chip_seed), _SYNAPSE_STREAM]))
    d = np.clip(rng.standard_normal((H, R // 2)) * sd, -0.5, 0.5)   # fixed order
    s = np.clip(rng.standard_normal((H, R, C)) * ss, -0.5, 0.5)
    return d, s


def synapse_gain_table(cfg: ChipConfig, chip_seed: int,
                       config: MismatchConfig | None = None) -> np.ndarray | None:
    """The fixed-point gain of every synapse of chip ``chip_seed``: int32
    ``[halves, rows, columns]``, ``round(2**WEIGHT_GAIN_BITS (1 + d) (1 + s))``
    with ``d`` the deviation of the row's driver (rows ``2i`` and ``2i + 1``
    share driver ``i``) and ``s`` the synapse's own (normal, std
    ``driver_gain_sigma`` and ``synapse_gain_sigma`` times ``scale``, each
    clipped to [-0.5, 0.5]); None when both stds are 0.  Drawn from the chip
    seed's own stream (the neurons' and the ADC's draws do not change)."""
    draws = _synapse_draws(cfg, chip_seed, config)
    if draws is None:
        return None
    d, s = draws
    g = (1.0 + np.repeat(d, 2, axis=1))[:, :, None] * (1.0 + s)
    return np.rint(g * (1 << WEIGHT_GAIN_BITS)).astype(np.int32)


def driver_deviations(cfg: ChipConfig, chip_seed: int,
                      config: MismatchConfig | None = None) -> np.ndarray | None:
    """Each synapse driver's relative efficacy deviation [halves, drivers] (the
    ``d`` of :func:`synapse_gain_table`; hidden truth, for evaluation), None
    when the chip has neither driver nor synapse mismatch."""
    draws = _synapse_draws(cfg, chip_seed, config)
    return None if draws is None else draws[0]
