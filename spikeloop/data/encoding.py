"""Latency encoding of intensities, as in the paper's MNIST experiment.

A pixel of intensity ``x`` in [0, 1] spikes at most once, at

    t = tau_in * ln(x / (x - theta)),   tau_in = 8 µs, theta = 0.2,

(the time a leaky integrator with time constant ``tau_in``, driven by a
constant ``x`` from rest, needs to cross ``theta``); pixels with
``x <= theta`` never spike.  Brighter pixels spike earlier (``x = 1`` ->
8 µs * ln(1.25) = 1.785 µs before the shift).  Times are then shifted so that
the earliest spike of the whole *batch* is at 0 (so a sample's times depend
on the batch it is in, as in the paper).

Three views of the same spikes:

- :func:`latency_times_us`: spike times in µs (hardware time) ``[batch, n]``,
  ``inf`` where an input does not spike;
- :func:`latency_raster`: a time-major ``[steps, batch, n]`` 0/1 raster on a
  grid of ``dt_us`` (a spike at ``t`` lands in step ``floor(t / dt_us)``, the
  step covering ``[k*dt_us, (k+1)*dt_us)``; spikes at or after
  ``n_steps * dt_us`` fall outside the window and are dropped);
- :func:`to_input_events`: :class:`spikeloop.base.events.InputEvents` for the chip,
  one event per spike, released at cycle ``round(t_us * cfg.clock_mhz)``
  (round half to even).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents

#: input time constant of the latency code (µs, hardware time)
TAU_IN_US = 8.0
#: intensities at or below this never spike
THRESHOLD = 0.2
#: the paper's time grid: the column ADC samples every 1.7 µs, 20 samples per image
PAPER_DT_US = 1.7
PAPER_N_STEPS = 20


def latency_times_us(x, *, tau_in_us: float = TAU_IN_US, threshold: float = THRESHOLD,
                     shift_to_zero: bool = True) -> torch.Tensor:
    """Spike times (µs) ``[batch, n]`` of intensities ``x`` ``[batch, n]``; ``inf``: no spike.

    ``shift_to_zero``: subtract the earliest finite time of the batch, so it is 0.
    """
    x = torch.as_tensor(x)
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    spikes = x > threshold
    safe = torch.where(spikes, x, torch.ones_like(x))
    # ln(x / (x - theta)) = -log1p(-theta / x): the same value, better rounded, and
    # monotone in floating point (the quotient form is not: brighter could be 1 ulp later)
    t = -tau_in_us * torch.log1p(-threshold / safe)
    t = torch.where(spikes, t, torch.full_like(t, float("inf")))
    if shift_to_zero and bool(spikes.any()):
        t = t - t[spikes].min()
    return t


def latency_raster(times_us, *, dt_us: float, n_steps: int) -> torch.Tensor:
    """Time-major 0/1 raster ``[n_steps, batch, n]`` (float32) of spike times ``[batch, n]``."""
    if dt_us <= 0 or n_steps < 1:
        raise ValueError(f"dt_us = {dt_us}, n_steps = {n_steps}; need dt_us > 0, n_steps >= 1")
    t = torch.as_tensor(times_us, dtype=torch.float64)
    if bool((t < 0).any()):
        raise ValueError("spike times must be >= 0")
    batch, n = t.shape
    raster = torch.zeros(n_steps, batch, n, dtype=torch.float32)
    step = torch.floor(t / dt_us)
    b, i = torch.nonzero(torch.isfinite(t) & (step < n_steps), as_tuple=True)
    raster[step[b, i].long(), b, i] = 1.0
    return raster


def events_from_spikes(cfg: ChipConfig, batch: int, sample, source, times_us,
                       source_label_fn: Callable[[int], int], *, link: int = 0,
                       offset_cycles: int = 0) -> InputEvents:
    """InputEvents from a list of spikes ``(sample[k], source[k], times_us[k])``.

    Any number of spikes per source; cycle = ``offset_cycles + round(t_us *
    cfg.clock_mhz)``; label = ``source_label_fn(source)``.  InputEvents checks
    the ranges (link, label, cycle) and the playback depth per sample.
    """
    sample = np.asarray(sample, dtype=np.int64).reshape(-1)
    source = np.asarray(source, dtype=np.int64).reshape(-1)
    t = np.asarray(times_us, dtype=np.float64).reshape(-1)
    if not (len(sample) == len(source) == len(t)):
        raise ValueError(f"sample, source, times_us have {len(sample)}, {len(source)}, "
                         f"{len(t)} entries; they must match")
    if not np.all(np.isfinite(t)):
        raise ValueError("events_from_spikes takes finite spike times only")
    uniq, inv = np.unique(source, return_inverse=True)
    labels = np.empty(len(uniq), dtype=np.int64)
    for j, s in enumerate(uniq):
        lab = source_label_fn(int(s))
        if not isinstance(lab, int | np.integer) or isinstance(lab, bool):
            raise TypeError(f"source_label_fn({int(s)}) returned {lab!r}; expected an int label")
        labels[j] = lab
    cycles = offset_cycles + np.rint(t * cfg.clock_mhz).astype(np.int64)
    table = np.stack([sample, cycles, np.full_like(sample, link), labels[inv]], axis=1)
    return InputEvents(cfg, batch, table)


def to_input_events(cfg: ChipConfig, times_us, source_label_fn: Callable[[int], int],
                    link: int = 0, *, offset_cycles: int = 0) -> InputEvents:
    """InputEvents of spike times ``[batch, n]`` (µs, ``inf`` = no spike).

    Input ``i`` of sample ``b`` spiking at ``t`` becomes the event
    ``(b, offset_cycles + round(t * cfg.clock_mhz), link, source_label_fn(i))``.
    """
    t = torch.as_tensor(times_us).detach().cpu().numpy().astype(np.float64)
    if t.ndim != 2:
        raise ValueError(f"times_us must be [batch, n_inputs], got shape {list(t.shape)}")
    b, i = np.nonzero(np.isfinite(t))
    return events_from_spikes(cfg, t.shape[0], b, i, t[b, i], source_label_fn, link=link,
                              offset_cycles=offset_cycles)
