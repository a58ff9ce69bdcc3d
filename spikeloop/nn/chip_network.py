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
   More bins than the ADC buffer holds need a chip with the ADC ring
   (``ChipConfig.adc_ring``): the PPU's stream program then records every
   sample as it is taken and the codes come from its stream.
   Spikes are binned to the ADC grid: a spike in analog step ``s`` belongs to
   the first sample whose codes are taken after step ``s``.  By default
   (``hidden_spikes="recorded"``) they are what the host sees, as on the real
   chip: the recorder's events (``Observables.records``: through the arbiter
   and the crossbar to a host link, with the recorder's timestamp), decoded by
   their labels; a recorded event at time ``t`` is a spike of analog step
   ``(t - RECORD_LATENCY_CYCLES) // S - 1`` (the shortest path from the analog
   boundary to the recorder's timestamp is 3 cycles; an event delayed by a
   full FIFO by a step or more is binned later, as the host would bin it).  A
   spike dropped by an arbiter, a crossbar node or a full record memory never
   reaches the gradient; ``last_stats`` counts them
   (``recorded_hidden_spikes``, ``lost_hidden_spikes``).  With
   ``hidden_spikes="analog"`` they come from ``Observables.spikes`` instead
   (every spike as the analog side emitted it: what the host cannot see).
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
from spikeloop.base.isa import chip_geometry
from spikeloop.base.protocol import live_cycles, max_run_bytes, run_bytes_bound
from spikeloop.model.analog import THRESHOLD
from spikeloop.model.calibration import CalibrationTargets
from spikeloop.model.chip import Chip
from spikeloop.nn.functional import DEFAULT_PARAMS, LIFParameters, max_over_time_log_softmax
from spikeloop.nn.modules import HIDDEN_SCALE, WEIGHT_MAX, LoopNetwork, NetworkOutput
from spikeloop.nn.placement import INPUT, Placement, PlacementError, output_scale, place, quantize
from spikeloop.ppu.programs import (
    INFERENCE_SPACING_CYCLES,
    RESET_LOG,
    STREAM_MISSED,
    inference_dmem,
    program,
    stream_chunks,
    stream_dmem,
    stream_vectors_to_codes,
)

__all__ = ["ChipNetwork", "BASELINE_SAMPLES", "INFERENCE_SPACING_US", "HIDDEN_SPIKE_SOURCES",
           "RECORD_LATENCY_CYCLES", "recorded_spikes", "BackToBack", "back_to_back",
           "images_per_run", "INFERENCE_INPUT_OFFSET_CYCLES"]

#: samples of the no-input run that measures each neuron's resting ADC code
BASELINE_SAMPLES = 16
#: the paper's inference mode: a sample every 11.8 µs (85 k frames/s)
INFERENCE_SPACING_US = 11.8
#: where the hidden spikes of the gradient come from: the recorder's events (what
#: the host sees, the default) or the analog side's own list
HIDDEN_SPIKE_SOURCES = ("recorded", "analog")
#: cycles from a spike entering the logic (the analog boundary) to the recorder's
#: timestamp on the shortest path: arbiter, crossbar node, recorder
RECORD_LATENCY_CYCLES = 3


def recorded_spikes(placement: Placement, records: np.ndarray, population: str,
                    analog_step_cycles: int) -> np.ndarray:
    """The ``population``'s spikes as the host sees them: the recorded events
    ``(sample, cycle, link, label)`` whose label is one of its members', as
    ``(sample, step, cycle, member)`` rows (``cycle``: the recorder's timestamp;
    ``step``: the analog step the host bins it to, ``(cycle -
    RECORD_LATENCY_CYCLES) // analog_step_cycles - 1``)."""
    rec = np.asarray(records, dtype=np.int64).reshape(-1, 4)
    labels = np.asarray(placement.neuron_labels[population], dtype=np.int64)
    lut = np.full(1 << int(placement.cfg.event_label_bits), -1, dtype=np.int64)
    lut[labels] = np.arange(len(labels))
    member = lut[rec[:, 3]]
    rec, member = rec[member >= 0], member[member >= 0]
    step = (rec[:, 1] - RECORD_LATENCY_CYCLES) // analog_step_cycles - 1
    return np.stack([rec[:, 0], step, rec[:, 1], member], axis=1).reshape(-1, 4)


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
    #: the T ADC samples' codes: [T, B, n] (int64; float64 from a stream, NaN
    #: for the neurons it did not measure)
    codes: np.ndarray
    #: each neuron's resting code [n] (float64) and the code scale
    baseline: np.ndarray
    code_scale: float
    #: what the network's ``prepare`` returned (its weights' scales)
    prepared: object
    n_steps: int
    wall_s: float
    #: analog steps completed when each of the T ADC samples was taken
    sample_step: np.ndarray

    def norm(self, neurons) -> np.ndarray:
        """The codes of ``neurons`` (indices) minus their resting codes, over the
        code scale: float64 ``[T, B, len(neurons)]``.  Only the neurons asked for
        are converted (a network reads a part of the chip's neurons: the
        paper's network on FULL half of them)."""
        idx = np.asarray(neurons, dtype=np.int64).reshape(-1)
        if len(idx) and (np.diff(idx) == 1).all():      # a range: read in place
            idx = slice(int(idx[0]), int(idx[-1]) + 1)
        x = self.codes[:, :, idx].astype(np.float64)
        x -= self.baseline[idx]
        x /= self.code_scale
        return x

    def spikes_on_grid(self, rows: np.ndarray, size: int, dtype) -> torch.Tensor:
        """``[T, B, size]`` 0/1 spikes of a population (``rows``: (sample, step,
        cycle, member)) on the ADC grid: a spike in analog step ``s`` shows first
        in the ADC sample taken after it."""
        T, B = self.codes.shape[0], self.codes.shape[1]
        z = torch.zeros(T, B, size, dtype=dtype)
        if len(rows):
            k = np.searchsorted(self.sample_step, rows[:, 1], side="right")
            keep = k < T
            z[k[keep], rows[keep, 0], rows[keep, 3]] = 1.0
        return z

    def record(self, net, *, n_spikes: int, output_scale, n_recorded: int | None = None
               ) -> None:
        """``net.last_observables`` and ``net.last_stats``: what the run cost on the
        emulated chip."""
        cfg = net.chip.cfg
        obs = self.obs
        n_live = live_cycles(cfg, self.n_steps)
        net.last_observables = obs
        net.last_stats = {
            "backend": net.backend, "samples": self.codes.shape[1], "analog_steps": self.n_steps,
            "cycles_per_sample": int(n_live), "emulated_us_per_sample": n_live / cfg.clock_mhz,
            "wall_s": self.wall_s,
            "xbar_drops": int(obs.xbar_drops.sum()),
            "arbiter_drops": int(obs.arbiter_drops.sum()),
            "record_drops": int(obs.record_drops.sum()),
            "playback_late": int(obs.playback_late.sum()),
            "adc_overflow": int(obs.adc_overflow.sum()),
            "hidden_spikes": int(n_spikes),
            **({"recorded_hidden_spikes": int(n_recorded),
                "lost_hidden_spikes": int(n_spikes) - int(n_recorded)}
               if n_recorded is not None else {}),
            "inputs_after_window": net._inputs_after_window,
            "output_scale": output_scale,
        }


def streamed_codes(cfg, obs: Observables, T: int, first_chunk: int, n_chunks: int
                   ) -> np.ndarray:
    """``[T, B, n_neurons]`` ADC codes of a batch from each sample's stream
    (spikeloop/ppu/programs.py ``STREAM``); the neurons outside the streamed
    chunks are NaN (not measured).  A sample that missed samples (the PPU fell
    behind the ADC ring) or lost vectors is an error naming it: its stream no
    longer says which sample is which."""
    lanes = chip_geometry(cfg).adc_lanes
    lo, hi = first_chunk * lanes, min((first_chunk + n_chunks) * lanes, cfg.n_neurons)
    codes = np.full((T, len(obs.ppu), cfg.n_neurons), np.nan)
    for b, res in enumerate(obs.ppu):
        missed, drops = res["dmem"][STREAM_MISSED], res["out_drops"]
        if missed or drops or res["status"] != 0b10 or len(res["out"]) != T * n_chunks:
            raise RuntimeError(
                f"sample {b}: the PPU's stream holds {len(res['out'])} vectors, "
                f"{T * n_chunks} expected ({missed} ADC samples missed, {drops} vectors "
                f"lost, status {res['status']})")
        got = stream_vectors_to_codes(cfg, res["out"], first_chunk, n_chunks)
        codes[:, b, lo:hi] = got[:, :hi - lo]
    return codes


def measure_batch(net, raster: torch.Tensor, times_us: torch.Tensor | None,
                  prepare) -> MeasuredBatch:
    """Run one batch of a chip network (:class:`ChipNetwork`, or the general one of
    spikeloop.nir) on its chip: check the input, measure the resting codes once,
    ``prepare()`` (write the weights), play the input events, keep the ADC codes
    (normalised population by population: :meth:`MeasuredBatch.norm`).  Counts
    the samples run (they key the chip's noise) and the input events played."""
    net.check_input(raster, times_us)
    T, B = raster.shape[0], raster.shape[1]
    cfg = net.chip.cfg
    stream = T > cfg.adc_buffer_depth
    if stream and not cfg.adc_ring:
        raise ValueError(f"{T} time bins, the ADC buffer of chip {cfg.name!r} holds "
                         f"{cfg.adc_buffer_depth} samples per neuron (a chip variant with "
                         "adc_ring = true streams every sample through the PPU)")
    baseline = net.baseline()
    prepared = prepare()
    events = net.input_events(raster, times_us)
    n_steps = net.analog_steps(T)
    job = chunks = None
    if stream:
        chunks = stream_chunks(cfg, np.concatenate(list(net.placement.neurons.values())))
        job = {"words": program("stream", cfg).words,
               "dmem": stream_dmem(cfg, T, *chunks, adc_period=net.adc_period),
               "when": "each_sample", "read_dmem": [STREAM_MISSED]}
    t0 = time.perf_counter()
    obs = net._run(events, n_steps, int(net.samples_run), ppu=job)
    wall = time.perf_counter() - t0
    net.samples_run += B
    net.last_input_events = len(events.table)
    if stream:
        codes = streamed_codes(cfg, obs, T, *chunks)
    else:
        if obs.adc.shape[0] < T:
            raise RuntimeError(f"the chip took {obs.adc.shape[0]} ADC samples, {T} expected")
        codes = obs.adc[:T]
    # sample k holds the codes after m_k = (adc_period * (k + 1) - 1) // S completed steps
    sample_step = (net.adc_period * np.arange(1, T + 1) - 1) // cfg.analog_step_cycles
    return MeasuredBatch(obs, codes, baseline, net.code_scale, prepared, n_steps, wall,
                         sample_step)


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
                 run_seed: int = 0, merged: bool | None = None,
                 hidden_spikes: str = "recorded", **backend_options) -> None:
        super().__init__(n_in, n_hidden, n_out, params=params, readout_scale=readout_scale,
                         generator=generator, recurrent=recurrent, hidden_scale=hidden_scale)
        if backend not in ("fast", "cosim"):
            raise ValueError(f"backend {backend!r}: a ChipNetwork runs on 'fast' or 'cosim' "
                             "(the golden 'reference' is too slow to train on; the ideal "
                             "model without a chip is SoftwareNetwork)")
        if hidden_spikes not in HIDDEN_SPIKE_SOURCES:
            raise ValueError(f"hidden_spikes = {hidden_spikes!r}; allowed: "
                             f"{', '.join(HIDDEN_SPIKE_SOURCES)}")
        self.chip, self.backend = chip, backend
        #: where the gradient's hidden spikes come from (HIDDEN_SPIKE_SOURCES)
        self.hidden_spikes = hidden_spikes
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
        w_o = self.output_weight()          # with the training's dropout, if any
        s_out = output_scale(w_o, WEIGHT_MAX)
        out = {"hidden": w_h, "out": quantize(w_o.t(), s_out, WEIGHT_MAX),
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
        table = np.stack([b, cycles, pl.input_links[i], pl.input_labels[i]], axis=1)
        return InputEvents(cfg, raster.shape[1], table.astype(np.int64).reshape(-1, 4))

    # -- running the chip --------------------------------------------------------------------
    def _run(self, events: InputEvents, n_steps: int, sample_offset: int, ppu=None
             ) -> Observables:
        """One batch on the chip; a batch whose results could exceed the limit of
        one run (:func:`~spikeloop.base.protocol.max_run_bytes`: every neuron
        spiking in every step, e.g. 100 recordings of 7,791 steps on full) runs
        as consecutive runs of fewer samples.  The results are those of one run:
        each sample's noise is keyed by its index, and nothing the network runs
        carries state from sample to sample (its one PPU program, the stream
        recording, starts afresh)."""
        per_run = max(1, max_run_bytes() // run_bytes_bound(self.chip.cfg, 1, n_steps))
        parts = []
        for b0 in range(0, events.batch, per_run):
            b1 = min(b0 + per_run, events.batch)
            t = events.table
            sub = events if b1 - b0 == events.batch else InputEvents(
                events.cfg, b1 - b0, t[(t[:, 0] >= b0) & (t[:, 0] < b1)] - [b0, 0, 0, 0])
            parts.append(backends.run(
                self.chip, self.placement.image, sub, n_steps, backend=self.backend,
                run_seed=int(self.run_seed), sample_offset=sample_offset + b0, ppu=ppu,
                **self.backend_options))
        return parts[0] if len(parts) == 1 else Observables.concat(parts)

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
        hidden_v = torch.as_tensor(m.norm(hid), dtype=dtype)
        output_v = torch.as_tensor(m.norm(out) * (self.hidden_scale / s_out), dtype=dtype)
        analog = pl.spikes_of(m.obs.spikes, "hidden")      # (sample, step, cycle, member)
        recorded = recorded_spikes(pl, m.obs.records, "hidden", self.chip.cfg.analog_step_cycles)
        rows = recorded if self.hidden_spikes == "recorded" else analog
        hidden_z = m.spikes_on_grid(rows, self.n_hidden, dtype)
        m.record(self, n_spikes=len(analog), output_scale=s_out, n_recorded=len(recorded))
        return hidden_v, hidden_z, output_v

    def forward(self, raster: torch.Tensor, times_us: torch.Tensor | None = None
                ) -> NetworkOutput:
        hidden_v, hidden_z, output_v = self.measure(raster, times_us)
        if torch.is_grad_enabled():
            return self.model_pass(raster, hidden_v=hidden_v, hidden_z=hidden_z,
                                   output_v=output_v)
        # without gradients the model pass returns the measured values themselves
        # (every membrane and spike is injected), so it is left out
        return NetworkOutput(max_over_time_log_softmax(output_v, self.readout_scale),
                             output_v, hidden_z, hidden_v)

    def extra_repr(self) -> str:
        return (f"chip={self.chip.cfg.name}#{self.chip.chip_seed}, backend={self.backend}, "
                f"merged={self.merged}, adc_period={self.adc_period}")


# -- inference mode as the chip runs it -------------------------------------------------
#: in inference mode, an image's input events start this many cycles after its
#: slot's boundary: the PPU's resets of that boundary (a few cycles after it sees
#: ``time >= k * spacing``, one cycle per neuron chunk) are over by then
INFERENCE_INPUT_OFFSET_CYCLES = 16


def images_per_run(cfg, adc_period: int, spacing: int = INFERENCE_SPACING_CYCLES) -> int:
    """The most images one inference-mode run holds: every ADC sample of its
    images must fit the ADC buffer (``adc_buffer_depth`` samples, every
    ``adc_period`` cycles), and the INFERENCE program logs one reset per boundary
    in its data memory."""
    by_adc = (cfg.adc_buffer_depth * adc_period) // spacing
    from_isa = chip_geometry(cfg).dmem_words - RESET_LOG
    k = min(by_adc, from_isa)
    if k < 1:
        raise ValueError(f"spacing = {spacing} cycles: not one image's ADC samples "
                         f"({spacing // adc_period} at period {adc_period}) fit the ADC "
                         f"buffer of preset {cfg.name!r} ({cfg.adc_buffer_depth} samples)")
    return k


@dataclasses.dataclass
class BackToBack:
    """What :func:`back_to_back` measured, one entry per image unless said."""

    #: the class read from the recorded ADC samples (argmax over the output
    #: neurons of the maximum of their samples in the image's slot)
    predictions: np.ndarray
    #: hidden spikes the host recorded, per image
    recorded_hidden_spikes: np.ndarray
    #: hidden spikes the analog side emitted, per image (not visible to a host;
    #: their difference to the recorded ones is what the path lost)
    analog_hidden_spikes: np.ndarray
    #: ADC samples read per image
    samples_per_image: np.ndarray
    #: the runs' Observables (one per backend call) and the input events played in each
    observables: list
    input_events: list
    #: images per run, runs, the spacing (cycles), clock cycles of all runs together,
    #: clock cycles of one run (clear cycle, running cycles of all its slots, drain)
    images_per_run: int
    runs: int
    spacing_cycles: int
    cycles: int
    cycles_per_run: int
    #: input spikes that did not fit their image's slot (not played; counted)
    inputs_after_window: int
    #: the cycle of every boundary's first reset relative to the boundary (max over runs)
    reset_delay_max: int

    @property
    def images(self) -> int:
        return len(self.predictions)

    @property
    def emulated_us_per_image(self) -> float:
        """Chip time per image in runs of :attr:`images_per_run` images: a whole
        run's cycles (clear cycle, every slot, the drain; not the host's writes
        and read-back between runs) over its images."""
        return self.cycles_per_run / self.images_per_run / self._clock_mhz

    _clock_mhz: float = 125.0


def _per_slot(run: np.ndarray, cycle: np.ndarray, K: int, spacing: int, n: int) -> np.ndarray:
    """How many of the events (``run``, ``cycle`` in the run) fall in each of the
    first ``n`` images' slots, image ``j`` being slot ``j % K`` of run ``j // K``
    (``[slot * spacing, (slot + 1) * spacing)``)."""
    slot = cycle // spacing
    keep = (cycle >= 0) & (slot < K)
    j = run[keep] * K + slot[keep]
    return np.bincount(j[j < n], minlength=n)[:n]


def back_to_back(net: ChipNetwork, times_us: torch.Tensor, *,
                 spacing: int = INFERENCE_SPACING_CYCLES, per_run: int | None = None,
                 runs_per_call: int = 100, backend: str | None = None,
                 sample_offset: int = 1 << 41) -> BackToBack:
    """The paper's inference mode as the chip runs it: the images of ``times_us``
    (``[N, n_in]`` input spike times in µs, NaN: no spike) back to back in
    runs of ``per_run`` images (default and most: :func:`images_per_run`),
    ``spacing`` cycles apart (1475 = 11.8 µs), the PPU's INFERENCE program
    resetting every neuron at each boundary; the outputs read from what the
    host reads back after each run: the ADC buffer (the output neurons are
    leaky integrators, they send no events) and the recorded events (the
    hidden spikes).

    Image ``j`` of a run owns the slot ``[j * spacing, (j + 1) * spacing)``: its
    input events at ``j * spacing + INFERENCE_INPUT_OFFSET_CYCLES +
    round(t * clock_mhz)`` (spikes that fall outside the slot are not played and
    are counted); its output is read from the ADC samples taken in ``[j *
    spacing + offset, (j + 1) * spacing)``; its hidden spikes are the recorded
    events whose timestamp (minus :data:`RECORD_LATENCY_CYCLES`) falls in the
    slot.  ``runs_per_call`` runs go to the backend at once (its batch): the
    results do not depend on it (tests/test_paper.py; every run's noise is
    keyed by ``sample_offset`` plus its index); fewer, larger calls pay the host's
    set-up (the weights, the PPUs, the events) less often and split more
    evenly over the fast backend's threads.  ``backend``: default the
    network's."""
    cfg = net.chip.cfg
    t = torch.as_tensor(times_us).detach().cpu().to(torch.float64).numpy()
    if t.ndim != 2 or t.shape[1] != net.n_in:
        raise ValueError(f"times_us must be [N, {net.n_in}], got {list(t.shape)}")
    n_img = t.shape[0]
    if runs_per_call < 1:
        raise ValueError(f"runs_per_call = {runs_per_call}; allowed: an integer >= 1")
    K = images_per_run(cfg, net.adc_period, spacing) if per_run is None else int(per_run)
    if not 1 <= K <= images_per_run(cfg, net.adc_period, spacing):
        raise ValueError(f"per_run = {per_run}; allowed: 1.."
                         f"{images_per_run(cfg, net.adc_period, spacing)} on preset {cfg.name!r}")
    off = INFERENCE_INPUT_OFFSET_CYCLES
    S = cfg.analog_step_cycles
    n_steps = math.ceil(K * spacing / S)
    job = {"words": program("inference", cfg).words, "dmem": inference_dmem(cfg, K, spacing),
           "when": "each_sample", "read_dmem": [RESET_LOG + k for k in range(1, K)]}
    pl = net.placement
    out = pl.neurons["out"]
    baseline = net.baseline()
    net.write_weights()
    n_runs = math.ceil(n_img / K)
    sample_cycle = net.adc_period * np.arange(1, cfg.adc_buffer_depth + 1) - 1
    pred = np.full(n_img, -1, dtype=np.int64)
    rec_h = np.zeros(n_img, dtype=np.int64)
    ana_h = np.zeros(n_img, dtype=np.int64)
    n_samp = np.zeros(n_img, dtype=np.int64)
    observables, played = [], []
    cycles = late = 0
    reset_delay = 0
    backend = backend or net.backend
    for r0 in range(0, n_runs, runs_per_call):
        runs = min(runs_per_call, n_runs - r0)
        first = r0 * K
        imgs = np.arange(first, min(first + runs * K, n_img))
        img_t = t[imgs]
        b, i = np.nonzero(np.isfinite(img_t))
        cyc = np.rint(img_t[b, i] * cfg.clock_mhz).astype(np.int64) + off
        inside = (cyc >= off) & (cyc < spacing)
        late += int((~inside).sum())
        b, i, cyc = b[inside], i[inside], cyc[inside]
        run, slot = b // K, b % K
        table = np.stack([run, slot * spacing + cyc, pl.input_links[i], pl.input_labels[i]],
                         axis=1).astype(np.int64).reshape(-1, 4)
        events = InputEvents(cfg, runs, table)
        obs = backends.run(net.chip, pl.image, events, n_steps, backend=backend,
                           run_seed=int(net.run_seed), sample_offset=sample_offset + r0,
                           ppu=job, **({} if backend != net.backend else net.backend_options))
        observables.append(obs)
        played.append(len(table))
        cycles += int(obs.cycles.sum())
        # the boundaries' resets happened where the slots say (else the readout is wrong)
        for rr in obs.ppu or []:
            for k in range(1, K):
                d = int(rr["dmem"][RESET_LOG + k]) - k * spacing
                reset_delay = max(reset_delay, d)
        if reset_delay + 3 + chip_geometry(cfg).neuron_chunks > off:
            raise RuntimeError(f"the PPU reset a boundary {reset_delay} cycles after it; the "
                               f"inputs start {off} cycles after it")
        n_taken = obs.adc.shape[0]
        rec = recorded_spikes(pl, obs.records, "hidden", S)
        ana = pl.spikes_of(obs.spikes, "hidden")
        # image j of this call is slot j % K of run j // K; slot by slot, every run at once
        n = len(imgs)
        taken = sample_cycle[:n_taken]
        codes = obs.adc[:, :, out]                      # [samples, runs, outputs]
        for slot in range(K):
            lo, hi = slot * spacing + off, (slot + 1) * spacing
            m = np.flatnonzero((taken >= lo) & (taken < hi))
            j = np.arange(slot, n, K)                  # this slot's images, run by run
            n_samp[imgs[j]] = len(m)
            if len(m):
                peak = codes[m][:, j // K].max(axis=0).astype(np.float64)
                pred[imgs[j]] = np.argmax(peak - baseline[out], axis=1)
        rec_h[imgs] = _per_slot(rec[:, 0], rec[:, 2] - RECORD_LATENCY_CYCLES, K, spacing, n)
        ana_h[imgs] = _per_slot(ana[:, 0], ana[:, 2], K, spacing, n)
    per_run = max(int(o.cycles.max()) for o in observables)
    res = BackToBack(pred, rec_h, ana_h, n_samp, observables, played, K, n_runs, spacing,
                     cycles, per_run, late, reset_delay)
    res._clock_mhz = float(cfg.clock_mhz)
    return res
