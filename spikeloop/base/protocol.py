"""The run protocol: how the host runs a batch of samples on the chip, and what
every backend (spikeloop.backends, spikeloop.cosim) does cycle by cycle.

The run protocol, per sample of a batch (cycles of the 125 MHz clock):

1. The host has written the image; it writes the sample's input events into the
   playback memory and ``playback_count``, then ``ctrl = run | clear``.
2. The clear cycle: every block's run state is cleared; nothing enters.
3. ``live_cycles(cfg, n_steps)`` running cycles, numbered ``r = 0, 1, ...`` (the
   ``time`` counter).  The analog step ``k`` integrates the weight sums of cycles
   ``kS .. kS+S-1`` (``S = analog_step_cycles``); its sums are valid in cycle
   ``r = (k+1)S`` (``step_done``).  In that cycle the analog side reads the sums
   and ``refractory_active`` (the neurons held in reset during step ``k``),
   advances every neuron by one step, drives ``spike_in`` with the step's spikes
   for that one cycle, and from then on drives ``adc_codes`` with the ADC codes
   of the new membranes (before step 0: of the initial membranes).  The last
   running cycle is the one in which the host writes ``ctrl = 0``.
4. ``DRAIN_CYCLES`` stopped cycles: events still in flight drain through the
   crossbar, the drivers and the recorder; time stands still.
5. The host reads the counters, the record memory and the ADC buffer.

The analog model's noise is keyed by (run seed, global sample index, step,
neuron); the global index of batch entry ``b`` is ``sample_offset + b``.
"""
from __future__ import annotations

import os

import numpy as np

from spikeloop.base.config import ChipConfig

#: stopped cycles after a run before the host reads back (events in flight drain)
DRAIN_CYCLES = 64

#: width of each of the co-simulated top level's ``row_activations`` counters
#: (simulation instrumentation, rtl/top.py: a run's activations per synapse driver)
ACTIVATION_BITS = 32


def live_cycles(cfg: ChipConfig, n_steps: int) -> int:
    """Running cycles of one sample: ``n_steps`` steps, the cycle in which the
    last step's spikes enter, and the cycle of the host's stop write."""
    return n_steps * cfg.analog_step_cycles + 2


#: the most bytes a single run's results may take in the worst case (every neuron
#: spiking in every step); ``$SPIKELOOP_MAX_RUN_BYTES`` changes it
MAX_RUN_BYTES = 8 << 30
ENV_MAX_RUN_BYTES = "SPIKELOOP_MAX_RUN_BYTES"
#: bytes per spike in the Observables (sample, step, cycle, neuron as int64)
SPIKE_BYTES = 32


class RunRefused(ValueError):
    """A run the chip cannot do, or one too large to start; the message names the limit."""


def max_run_bytes() -> int:
    text = os.environ.get(ENV_MAX_RUN_BYTES, "").strip()
    if not text:
        return MAX_RUN_BYTES
    try:
        value = int(text)
    except ValueError:
        raise RunRefused(f"${ENV_MAX_RUN_BYTES} = {text!r}; allowed: a number of bytes") from None
    return value


def run_bytes_bound(cfg: ChipConfig, batch: int, n_steps: int) -> int:
    """The most bytes the spikes of a run may take: every neuron spiking in
    every analog step of every sample."""
    return batch * n_steps * cfg.n_neurons * SPIKE_BYTES


def max_steps(cfg: ChipConfig) -> int:
    """The most analog steps one sample may run: its running cycles are counted
    by the ``timestamp_bits`` wide cycle counter, which must not wrap."""
    return ((1 << cfg.timestamp_bits) - 2) // cfg.analog_step_cycles


def check_run(cfg: ChipConfig, n_steps, batch: int, event_cycles=None, *, run_seed=0,
              sample_offset=0) -> None:
    """Refuse (:class:`RunRefused`), before it starts, a run the chip cannot do:
    ``n_steps`` outside ``1..max_steps(cfg)`` (the cycle counter would wrap), a
    run whose results could exceed :func:`max_run_bytes`, a negative run seed or
    sample offset, and input events released after the last running cycle (they
    would never be played; every backend refuses them alike)."""
    for name, v, lo in (("n_steps", n_steps, 1), ("run_seed", run_seed, 0),
                        ("sample_offset", sample_offset, 0)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < lo:
            raise RunRefused(f"{name} = {v!r}; allowed: an integer >= {lo}")
    top = max_steps(cfg)
    if n_steps > top:
        raise RunRefused(
            f"n_steps = {n_steps}: {live_cycles(cfg, int(n_steps))} running cycles overflow the "
            f"{cfg.timestamp_bits}-bit cycle counter; allowed: at most {top} steps "
            f"(chip config {cfg.name!r}, {cfg.analog_step_cycles} cycles per step)")
    need, limit = run_bytes_bound(cfg, batch, int(n_steps)), max_run_bytes()
    if need > limit:
        raise RunRefused(
            f"{batch} sample(s) x {n_steps} steps x {cfg.n_neurons} neurons: the spikes could "
            f"take {need / 2**30:.1f} GiB, more than the limit of {limit / 2**30:.1f} GiB per "
            f"run (${ENV_MAX_RUN_BYTES}); run fewer steps or samples at a time")
    cycles = np.asarray(event_cycles if event_cycles is not None else [], dtype=np.int64)
    last = live_cycles(cfg, int(n_steps)) - 1
    if cycles.size and cycles.max() > last:
        k = int(np.argmax(cycles > last))
        raise RunRefused(
            f"input event {k} is released in cycle {int(cycles[k])}, after the run's last "
            f"running cycle {last} ({n_steps} steps of {cfg.analog_step_cycles} cycles, plus "
            f"2); it would never be played: run at least "
            f"{-(-(int(cycles.max()) - 1) // cfg.analog_step_cycles)} steps, or drop the "
            f"{int((cycles > last).sum())} late event(s)")
