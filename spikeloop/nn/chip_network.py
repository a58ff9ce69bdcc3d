"""ChipNetwork: the paper's network with its forward pass on an emulated chip.

    chip = Chip.calibrated(FULL, chip_seed=1)
    net = ChipNetwork(chip, 256, 246, 10, backend="fast")     # or "cosim"
    out = net(raster, times_us)            # what the chip measured, as tensors
    loss = F.nll_loss(out.log_probs, labels) + net.regularization(out)
    loss.backward(); opt.step(); net.after_step()

One forward pass (docs/paper.md, "How the gradient is formed in the loop"):

1. **Weights to the chip.**  Hidden (and recurrent) weights are quantised with
   the paper's scale 240, output weights with the adaptive scale
   ``min(63 / max|W_out|, 250)``; signed weights go to excitatory/inhibitory row
   pairs (:mod:`spikeloop.nn.placement`, ``reserve="both"``: every synapse of the
   dense projections is reserved at construction, so any weight can be written
   later).  The placement is made once; a network whose hidden and output
   populations do not fit one half each is placed on merged neurons (both
   halves' synapse rows per neuron: the paper's 256 inputs need that).
2. **Inputs to events.**  ``times_us`` (exact spike times) become playback
   events at ``round(t * clock_mhz)`` cycles; without them every spike of the
   raster is played at the start of its bin.
3. **The run.**  The chip backend (``fast`` or ``cosim``) runs the batch; each
   sample gets its own noise (the samples' global indices come from a counter
   kept in the state dict, so a resumed training run is deterministic).
4. **Measured traces.**  The column ADC samples every ``adc_period`` cycles
   (``round(dt_us * clock_mhz)``: 212 cycles = 1.696 µs for the paper's 1.7 µs);
   sample ``k`` is the state after input bin ``k``.  Codes are normalised as the
   paper does (leak at 0, threshold at 1): ``(code - baseline) / (150 - 80)``,
   the baseline being each neuron's resting code measured once at construction
   with no input (the paper subtracted each trace's first sample; a resting
   baseline averaged over many samples carries less noise).  Output traces are
   divided by ``output_scale / 240`` so they are comparable with the model's.
   Spikes are binned to the ADC grid: a spike in analog step ``s`` belongs to
   the first sample whose codes are taken after step ``s``.  They are taken
   from ``Observables.spikes`` (every neuron's spikes as the analog side
   emitted them), not from the recorder's events: a record memory that
   overflows (``last_stats["record_drops"]``, counted) loses events for the
   host but not for the gradient.  On the real chip the host sees only the
   recorded events.
5. **Gradient injection** (:meth:`LoopNetwork.model_pass`): forward values are
   the measured ones, backpropagation runs through the ideal LIF equations
   along the measured trajectory.

Output neurons are leaky integrators on the chip too: their threshold setting
is the largest (so they do not fire within the ADC range) and their spikes go
nowhere.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from spikeloop import backends
from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.protocol import live_cycles
from spikeloop.model.analog import THRESHOLD
from spikeloop.model.calibration import CalibrationTargets
from spikeloop.model.chip import Chip
from spikeloop.nn.functional import DEFAULT_PARAMS, LIFParameters
from spikeloop.nn.modules import HIDDEN_SCALE, WEIGHT_MAX, LoopNetwork, NetworkOutput
from spikeloop.nn.placement import INPUT, Placement, PlacementError, output_scale, place, quantize

__all__ = ["ChipNetwork", "BASELINE_SAMPLES", "INFERENCE_SPACING_US"]

#: samples of the no-input run that measures each neuron's resting ADC code
BASELINE_SAMPLES = 16
#: the paper's inference mode: a sample every 11.8 µs (85 k frames/s)
INFERENCE_SPACING_US = 11.8


def adc_period_cycles(cfg, dt_us: float, what: str = "dt_us") -> int:
    """The ADC period register's value for samples every ``dt_us``; refused (naming
    ``what``) when the register cannot hold it."""
    period = int(round(dt_us * cfg.clock_mhz))
    if not 0 < period < 1 << cfg.adc_period_bits:
        raise ValueError(f"{what} = {dt_us} µs is {period} cycles; "
                         f"the ADC period register allows 1..{(1 << cfg.adc_period_bits) - 1}")
    return period


@dataclasses.dataclass
class MeasuredBatch:
    """One batch run on the chip by a chip network (:func:`measure_batch`)."""

    obs: Observables
    #: ADC codes minus each neuron's resting code, over the code scale: [T, B, n]
    norm: np.ndarray
    #: what the network's ``prepare`` returned (its weights' scales)
    prepared: object
    n_steps: int
    wall_s: float
    #: analog steps completed when each of the T ADC samples was taken
    sample_step: np.ndarray

    def spikes_on_grid(self, rows: np.ndarray, size: int, dtype) -> torch.Tensor:
        """``[T, B, size]`` 0/1 spikes of a population (``rows``: (sample, step,
        cycle, member)) on the ADC grid: a spike in analog step ``s`` shows first
        in the ADC sample taken after it."""
        T, B = self.norm.shape[0], self.norm.shape[1]
        z = torch.zeros(T, B, size, dtype=dtype)
        if len(rows):
            k = np.searchsorted(self.sample_step, rows[:, 1], side="right")
            keep = k < T
            z[k[keep], rows[keep, 0], rows[keep, 3]] = 1.0
        return z

    def record(self, net, *, n_spikes: int, output_scale) -> None:
        """``net.last_observables`` and ``net.last_stats``: what the run cost on the
        emulated chip."""
        cfg = net.chip.cfg
        obs = self.obs
        n_live = live_cycles(cfg, self.n_steps)
        net.last_observables = obs
        net.last_stats = {
            "backend": net.backend, "samples": self.norm.shape[1], "analog_steps": self.n_steps,
            "cycles_per_sample": int(n_live), "emulated_us_per_sample": n_live / cfg.clock_mhz,
            "wall_s": self.wall_s,
            "xbar_drops": int(obs.xbar_drops.sum()),
            "arbiter_drops": int(obs.arbiter_drops.sum()),
            "record_drops": int(obs.record_drops.sum()),
            "playback_late": int(obs.playback_late.sum()),
            "adc_overflow": int(obs.adc_overflow.sum()),
            "hidden_spikes": int(n_spikes),
            "inputs_after_window": net._inputs_after_window,
            "output_scale": output_scale,
        }


def measure_batch(net, raster: torch.Tensor, times_us: torch.Tensor | None,
                  prepare) -> MeasuredBatch:
    """Run one batch of a chip network (:class:`ChipNetwork`, or the general one of
    spikeloop.nir) on its chip: check the input, measure the resting codes once,
    ``prepare()`` (write the weights), play the input events, normalise the ADC
    codes.  Counts the samples run (they key the chip's noise) and the input
    events played."""
    net.check_input(raster, times_us)
    T, B = raster.shape[0], raster.shape[1]
    cfg = net.chip.cfg
    if T > cfg.adc_buffer_depth:
        raise ValueError(f"{T} time bins, the ADC buffer of preset {cfg.name!r} holds "
                         f"{cfg.adc_buffer_depth} samples per neuron")
    baseline = net.baseline()
    prepared = prepare()
    events = net.input_events(raster, times_us)
    n_steps = net.analog_steps(T)
    t0 = time.perf_counter()
    obs = net._run(events, n_steps, int(net.samples_run))
    wall = time.perf_counter() - t0
    net.samples_run += B
    net.last_input_events = len(events.table)
    if obs.adc.shape[0] < T:
        raise RuntimeError(f"the chip took {obs.adc.shape[0]} ADC samples, {T} expected")
    norm = (obs.adc[:T].astype(np.float64) - baseline) / net.code_scale
    # sample k holds the codes after m_k = (adc_period * (k + 1) - 1) // S completed steps
    sample_step = (net.adc_period * np.arange(1, T + 1) - 1) // cfg.analog_step_cycles
    return MeasuredBatch(obs, norm, prepared, n_steps, wall, sample_step)


class ChipNetwork(LoopNetwork):
    """:class:`LoopNetwork` whose forward pass is measured on ``chip`` (a
    :class:`~spikeloop.model.chip.Chip`, calibrated for the paper's working point).

    ``backend``: ``"fast"`` or ``"cosim"``; ``run_seed``: the chip's noise seed
    for this network's runs; ``backend_options``: passed to the backend (e.g.
    ``device="cuda"`` for fast, ``simulator="icarus"`` for cosim).  After every
    forward :attr:`last_stats` holds what the run cost on the emulated chip and
    :attr:`last_observables` the raw Observables."""

    def __init__(self, chip: Chip, n_in: int, n_hidden: int, n_out: int, *,
                 backend: str = "fast", params: LIFParameters = DEFAULT_PARAMS,
                 readout_scale: float = 10.0, generator: torch.Generator | None = None,
                 recurrent: bool = False, hidden_scale: float = HIDDEN_SCALE,
                 run_seed: int = 0, merged: bool | None = None, **backend_options) -> None:
        super().__init__(n_in, n_hidden, n_out, params=params, readout_scale=readout_scale,
                         generator=generator, recurrent=recurrent, hidden_scale=hidden_scale)
        if backend not in ("fast", "cosim"):
            raise ValueError(f"backend {backend!r}: a ChipNetwork runs on 'fast' or 'cosim' "
                             "(the golden 'reference' is too slow to train on; the ideal "
                             "model without a chip is SoftwareNetwork)")
        self.chip, self.backend = chip, backend
        self.backend_options = dict(backend_options)
        cfg = chip.cfg
        self.adc_period = adc_period_cycles(cfg, params.dt_us, "params.dt_us")
        self.placement = self._place(merged)
        image = self.placement.image
        image.analog_settings = chip.settings.copy()
        # output neurons integrate without firing: the highest threshold setting
        out = self.placement.neurons["out"]
        image.analog_settings[out, THRESHOLD] = (1 << cfg.analog_setting_bits) - 1
        targets = CalibrationTargets()
        self.code_scale = targets.threshold_lsb - targets.leak_lsb
        #: global sample index of the next sample (keys the chip's noise)
        self.register_buffer("samples_run", torch.zeros((), dtype=torch.int64))
        self.register_buffer("run_seed", torch.tensor(int(run_seed), dtype=torch.int64))
        #: chip time per sample (µs); None: just the T bins of the raster.  The
        #: paper's inference mode spaces samples 11.8 µs apart (:data:`INFERENCE_SPACING_US`)
        self.sample_spacing_us: float | None = None
        self.last_stats: dict = {}
        self.last_observables: Observables | None = None
        #: the input events the host played in the last forward (energy accounting)
        self.last_input_events = 0
        self._baseline: np.ndarray | None = None

    # -- placement -------------------------------------------------------------------
    def _projections(self):
        def dense(n_pre, n_post):
            return np.zeros((n_pre, n_post), np.int64), np.ones((n_pre, n_post), bool)

        projs = [(INPUT, "hidden", *dense(self.n_in, self.n_hidden))]
        if self.recurrent:
            projs.append(("hidden", "hidden", *dense(self.n_hidden, self.n_hidden)))
        projs.append(("hidden", "out", *dense(self.n_hidden, self.n_out)))
        return projs

    def _place(self, merged: bool | None) -> Placement:
        kw = dict(reserve="both", record=["hidden"], adc_period=self.adc_period)
        if merged is None:
            try:
                return place(self.chip.cfg, self._projections(), **kw)
            except PlacementError as unmerged:
                if self.chip.cfg.n_halves != 2:
                    raise
                try:
                    return place(self.chip.cfg, self._projections(), merged=["hidden", "out"],
                                 **kw)
                except PlacementError as e:
                    raise PlacementError(f"{unmerged}; merged neurons: {e}") from None
        return place(self.chip.cfg, self._projections(),
                     merged=["hidden", "out"] if merged else (), **kw)

    @property
    def merged(self) -> bool:
        return bool(self.placement.merged)

    def analog_steps(self, n_bins: int) -> int:
        """Analog steps of one sample: enough for the ADC to take ``n_bins``
        samples, or as many as fit :attr:`sample_spacing_us` when that is set
        (whose run protocol cycles, ``live_cycles``, stay within the spacing)."""
        cfg = self.chip.cfg
        need = math.ceil(n_bins * self.adc_period / cfg.analog_step_cycles)
        if self.sample_spacing_us is None:
            return need
        fit = (int(self.sample_spacing_us * cfg.clock_mhz) - live_cycles(cfg, 0)) \
            // cfg.analog_step_cycles
        if fit < need:
            raise ValueError(f"sample_spacing_us = {self.sample_spacing_us}: {fit} analog steps "
                             f"fit, {n_bins} ADC samples of {self.adc_period} cycles need {need}")
        return fit

    def chip_weights(self) -> dict[str, np.ndarray]:
        """The integer weights the chip gets now (``[n_pre, n_post]`` each) and the
        output scale used."""
        w_h = quantize(self.hidden_synapse.weight.t(), self.hidden_scale, WEIGHT_MAX)
        s_out = output_scale(self.output_synapse.weight, WEIGHT_MAX)
        out = {"hidden": w_h, "out": quantize(self.output_synapse.weight.t(), s_out, WEIGHT_MAX),
               "output_scale": s_out}
        if self.recurrent:
            out["recurrent"] = quantize(self.recurrent_synapse.weight.t(), self.hidden_scale,
                                        WEIGHT_MAX)
        return out

    def write_weights(self) -> float:
        """Write the present weights into the image; returns the output scale."""
        w = self.chip_weights()
        k = 0
        self.placement.set_weights(k, w["hidden"])
        if self.recurrent:
            k += 1
            self.placement.set_weights(k, w["recurrent"])
        self.placement.set_weights(k + 1, w["out"])
        return w["output_scale"]

    # -- events --------------------------------------------------------------------------
    def input_events(self, raster: torch.Tensor, times_us: torch.Tensor | None) -> InputEvents:
        cfg, pl = self.chip.cfg, self.placement
        if times_us is not None:
            t = torch.as_tensor(times_us).detach().cpu().to(torch.float64).numpy()
            b, i = np.nonzero(np.isfinite(t))
            cycles = np.rint(t[b, i] * cfg.clock_mhz).astype(np.int64)
        else:
            r = raster.detach().cpu()
            counts = r.round().to(torch.int64).numpy()
            if (counts < 0).any():
                raise ValueError("raster must hold spike counts >= 0")
            tt, b, i = np.nonzero(counts)
            reps = counts[tt, b, i]
            tt, b, i = np.repeat(tt, reps), np.repeat(b, reps), np.repeat(i, reps)
            cycles = tt * self.adc_period
        if len(cycles) and cycles.min() < 0:
            raise ValueError("input spike times must be >= 0")
        # spikes after the run's last analog step cannot reach the chip: counted, not played
        end = self.analog_steps(raster.shape[0]) * cfg.analog_step_cycles
        late = cycles >= end
        self._inputs_after_window = int(late.sum())
        b, i, cycles = b[~late], i[~late], cycles[~late]
        order = np.lexsort((i, cycles, b))
        b, i, cycles = b[order], i[order], cycles[order]
        table = np.stack([b, cycles, pl.input_links[i], pl.input_labels[i]], axis=1)
        return InputEvents(cfg, raster.shape[1], table.astype(np.int64).reshape(-1, 4))

    # -- running the chip --------------------------------------------------------------------
    def _run(self, events: InputEvents, n_steps: int, sample_offset: int) -> Observables:
        return backends.run(self.chip, self.placement.image, events, n_steps, backend=self.backend,
                             run_seed=int(self.run_seed), sample_offset=sample_offset,
                             **self.backend_options)

    def baseline(self) -> np.ndarray:
        """Each neuron's resting ADC code (float64 ``[n_neurons]``), measured once
        on the chip with no input (:data:`BASELINE_SAMPLES` samples of noise,
        sample indices far from the training samples')."""
        if self._baseline is None:
            cfg = self.chip.cfg
            events = InputEvents(cfg, BASELINE_SAMPLES, np.zeros((0, 4), np.int64))
            steps = math.ceil(8 * self.adc_period / cfg.analog_step_cycles)
            obs = self._run(events, steps, sample_offset=1 << 40)
            self._baseline = obs.adc[:8].reshape(-1, cfg.n_neurons).mean(axis=0)
        return self._baseline

    def measure(self, raster: torch.Tensor, times_us: torch.Tensor | None = None):
        """Run one batch on the chip: ``(hidden_v, hidden_z, output_v)`` measured
        and normalised, time-major on the ADC grid; updates :attr:`last_stats`."""
        m = measure_batch(self, raster, times_us, self.write_weights)
        s_out = m.prepared
        pl = self.placement
        hid, out = pl.neurons["hidden"], pl.neurons["out"]
        dtype = self.hidden_synapse.weight.dtype
        hidden_v = torch.as_tensor(m.norm[:, :, hid], dtype=dtype)
        output_v = torch.as_tensor(m.norm[:, :, out] * (self.hidden_scale / s_out), dtype=dtype)
        rows = pl.spikes_of(m.obs.spikes, "hidden")        # (sample, step, cycle, member)
        hidden_z = m.spikes_on_grid(rows, self.n_hidden, dtype)
        m.record(self, n_spikes=len(rows), output_scale=s_out)
        return hidden_v, hidden_z, output_v

    def forward(self, raster: torch.Tensor, times_us: torch.Tensor | None = None
                ) -> NetworkOutput:
        hidden_v, hidden_z, output_v = self.measure(raster, times_us)
        return self.model_pass(raster, hidden_v=hidden_v, hidden_z=hidden_z, output_v=output_v)

    def extra_repr(self) -> str:
        return (f"chip={self.chip.cfg.name}#{self.chip.chip_seed}, backend={self.backend}, "
                f"merged={self.merged}, adc_period={self.adc_period}")
