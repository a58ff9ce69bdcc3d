"""Backends that run a chip instance: one run protocol, three implementations.

- ``reference``: the composed cycle-accurate references of model/digital/ (pure
  Python, one cycle at a time) with the analog model: the golden model.
- ``cosim``: the RTL in Verilator or Icarus under cocotb, with the same analog
  model in the loop (cosim/).
- ``fast``: a batched emulator (spikeloop/backends/fast.py): the analog side in
  torch for all samples of a batch at once, the digital side in compiled loops
  (digital_core.py) that skip every cycle with nothing in flight.

For the same chip instance, ConfigImage, input events and run seed they return
identical Observables (spikeloop/events.py).

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

from spikeloop.config import ChipConfig

#: stopped cycles after a run before the host reads back (events in flight drain)
DRAIN_CYCLES = 64

BACKENDS = ("reference", "cosim", "fast")


def live_cycles(cfg: ChipConfig, n_steps: int) -> int:
    """Running cycles of one sample: ``n_steps`` steps, the cycle in which the
    last step's spikes enter, and the cycle of the host's stop write."""
    return n_steps * cfg.analog_step_cycles + 2


def check_device(device):
    """``device`` as a torch device the fast backend can run on (``cpu``, ``cuda``,
    ``cuda:N``), or a ValueError naming the field and what is allowed; the fast
    backend's results are the same bits on either (tests/test_fast_equivalence.py)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device = {device!r}; allowed: cpu, cuda, cuda:N")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not n:
            raise ValueError(f"device = {device!r}: torch {torch.__version__} sees no CUDA "
                             "device here; allowed: cpu")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device = {device!r}: {n} CUDA device(s) here; allowed: "
                             f"cuda:0..cuda:{n - 1}")
    return dev


def check_backend_device(backend: str, device):
    """:func:`check_device` for ``backend``: only the fast backend runs on another
    device than the cpu."""
    if str(device) != "cpu" and backend != "fast":
        raise ValueError(f"device = {str(device)!r}: only the fast backend runs on a torch "
                         f"device (backend {backend!r}: allowed cpu)")
    return check_device(device)


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    return name
