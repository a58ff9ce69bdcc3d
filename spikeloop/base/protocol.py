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

from spikeloop.base.config import ChipConfig

#: stopped cycles after a run before the host reads back (events in flight drain)
DRAIN_CYCLES = 64


def live_cycles(cfg: ChipConfig, n_steps: int) -> int:
    """Running cycles of one sample: ``n_steps`` steps, the cycle in which the
    last step's spikes enter, and the cycle of the host's stop write."""
    return n_steps * cfg.analog_step_cycles + 2
