"""Verification scenarios: small, readable chip configurations with input events.

Each scenario is a function ``(cfg, rng) -> Scenario`` building an image, input
events and a run length; `make sim` runs them on the co-simulation and checks
every observable against the reference backend (the scoreboard), and the test
suite runs a fast subset.  The helpers at the top are the minimal placement the
scenarios need: input ``i`` arrives on external link 0 with row select ``i``;
the crossbar sends it to bus ``i % B`` of half 0 (by the low row-select bits),
where driver ``i`` takes it; its rows ``2i`` and ``2i+1`` are excitatory and
inhibitory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign, pack_event


@dataclass
class Scenario:
    name: str
    image: ConfigImage
    events: InputEvents
    n_steps: int
    what: str
    #: what the scenario must show beyond backend equality (checked by tests)
    expect: dict = field(default_factory=dict)


def base_image(cfg: ChipConfig) -> ConfigImage:
    """Every neuron enabled with label = its index (row select 0), ADC every
    analog step, refractory off; external link 0 routed to bus 0 of half 0."""
    img = ConfigImage.empty(cfg)
    img.neuron_enable[:] = 1
    img.neuron_label[:] = np.arange(cfg.n_neurons) % (1 << cfg.label_bits)
    B = cfg.buses_per_half
    if B & (B - 1):
        raise ValueError(f"the scenarios route by row-select bits: buses_per_half = {B} "
                         "must be a power of two")
    for b in range(B):
        node = (cfg.n_blocks, b)
        img.xbar_enable[node] = 1
        img.xbar_mask[node] = (B - 1) << cfg.label_bits
        img.xbar_target[node] = b << cfg.label_bits
    img.adc_period = np.int64(cfg.analog_step_cycles)
    mask = (1 << cfg.row_select_bits) - 1
    for i in range(n_inputs(cfg)):
        img.driver_select[0, i] = i
        img.driver_mask[0, i] = mask
        img.row_sign[0, 2 * i] = RowSign.EXC
        img.row_sign[0, 2 * i + 1] = RowSign.INH
    return img


def n_inputs(cfg: ChipConfig) -> int:
    return min(cfg.drivers_per_half, 1 << cfg.row_select_bits)


def connect(cfg: ChipConfig, img: ConfigImage, inp: int, neuron: int, weight: int,
            address: int = 0) -> None:
    """Signed weight from input ``inp`` (its events carry ``address``) to a
    neuron of half 0."""
    row = 2 * inp if weight >= 0 else 2 * inp + 1
    img.synapse_weight[0, row, neuron] = abs(weight)
    img.synapse_label[0, row, neuron] = address


def input_event(cfg: ChipConfig, inp: int, address: int = 0) -> int:
    return pack_event(cfg, address, inp)


def _events(cfg, per_sample):
    return InputEvents.from_lists(cfg, per_sample)


def psp(cfg, rng):
    img = base_image(cfg)
    connect(cfg, img, 0, 1, 40)
    ev = [[(16, 0, input_event(cfg, 0))]]
    return Scenario("psp", img, _events(cfg, ev), 40,
                    "one synapse: the post-synaptic potential of one event, sampled by the ADC",
                    expect={"spikes": 0})


def label_match(cfg, rng):
    img = base_image(cfg)
    connect(cfg, img, 0, 2, 63, address=5)
    connect(cfg, img, 0, 3, 63, address=6)
    ev = [[(8 * k, 0, input_event(cfg, 0, 5)) for k in range(6)],
          [(8 * k, 0, input_event(cfg, 0, 7)) for k in range(6)]]
    return Scenario("label_match", img, _events(cfg, ev), 30,
                    "matching label drives neuron 2 only; a label that matches nothing drives none")


def fan_in(cfg, rng):
    img = base_image(cfg)
    k = min(8, n_inputs(cfg))
    for i in range(k):
        connect(cfg, img, i, 0, 63)
    ev = [[(4 + 2 * i, 0, input_event(cfg, i)) for i in range(k)]]
    return Scenario("fan_in", img, _events(cfg, ev), 30,
                    f"{k} rows into one neuron within a few cycles: it fires",
                    expect={"neuron_fires": 0})


def exc_inh(cfg, rng):
    img = base_image(cfg)
    for i in range(4):
        connect(cfg, img, i, 0, 63)
        connect(cfg, img, i, 1, 63)
    connect(cfg, img, 4, 1, -63)
    connect(cfg, img, 5, 1, -63)
    ev = [[(2, 0, input_event(cfg, 4)), (3, 0, input_event(cfg, 5))]
          + [(6 + 2 * i, 0, input_event(cfg, i)) for i in range(4)]]
    return Scenario("exc_inh", img, _events(cfg, ev), 30,
                    "the same excitation fires neuron 0; inhibitory rows keep neuron 1 quiet")


def recurrence(cfg, rng):
    """Neuron 0 fires; its event goes through the crossbar to a bus and back into
    the synapse array (driver of input 1), and to the host link."""
    img = base_image(cfg)
    for i in range(4):
        connect(cfg, img, i + 2, 0, 63)
    img.neuron_label[0] = input_event(cfg, 1)
    img.xbar_enable[0, 1 % cfg.buses_per_half] = 1  # block 0 -> bus of input 1 (back in)
    img.xbar_enable[0, cfg.n_buses] = 1             # block 0 -> host link 0
    connect(cfg, img, 1, 3, 50)
    ev = [[(4 + 2 * i, 0, input_event(cfg, i + 2)) for i in range(4)]]
    return Scenario("recurrence", img, _events(cfg, ev), 40,
                    "a spike routed back onto a bus drives another neuron; it is recorded too")


def arbiter_burst(cfg, rng):
    """Every neuron of half 0 fires in the same step; the arbiters serialise."""
    img = base_image(cfg)
    cols = cfg.columns_per_half
    for i in range(4):
        for c in range(cols):
            connect(cfg, img, i, c, 63)
    img.xbar_enable[:cfg.n_blocks, cfg.n_buses] = 1
    ev = [[(4 + i, 0, input_event(cfg, i)) for i in range(4)]]
    return Scenario("arbiter_burst", img, _events(cfg, ev), 30,
                    "simultaneous spikes leave the arbiters one per cycle and are all recorded")


def xbar_overflow(cfg, rng):
    """A dense input stream onto one bus whose events each match many drivers:
    the bus stalls, the node FIFO fills and drops, every drop counted."""
    img = base_image(cfg)
    B = cfg.buses_per_half
    for d in range(0, n_inputs(cfg), B):
        img.driver_mask[0, d] = 0                   # every driver of bus 0 matches
    n = min(cfg.playback_depth, 40)
    ev = [[(i, 0, input_event(cfg, 0)) for i in range(n)]]
    return Scenario("xbar_overflow", img, _events(cfg, ev), 12,
                    "crossbar FIFO overflow: drops counted exactly",
                    expect={"drops": True})


def refractory(cfg, rng):
    img = base_image(cfg)
    for i in range(6):
        connect(cfg, img, i, 0, 63)
        connect(cfg, img, i, 1, 63)
    img.refractory[0] = 0
    img.refractory[1] = 40
    img.refractory_prescale = np.int64(1)
    ev = [[(4 + 8 * k + i, 0, input_event(cfg, i)) for k in range(5) for i in range(6)]]
    return Scenario("refractory", img, _events(cfg, ev), 50,
                    "strong drive: neuron 1 with an 80-cycle refractory period fires less than "
                    "neuron 0 without")


def adc_period(cfg, rng):
    img = base_image(cfg)
    connect(cfg, img, 0, 0, 63)
    img.adc_period = np.int64(13)
    ev = [[(5, 0, input_event(cfg, 0))]]
    return Scenario("adc_period", img, _events(cfg, ev), 12,
                    "ADC sampling every 13 cycles, not aligned with the analog steps")


def adc_every_cycle(cfg, rng):
    """Strong drive fires neuron 0 within a few steps while the ADC samples every
    cycle and the spike is recorded: pins the exact cycle in which the analog
    side updates the ADC codes and drives spikes."""
    img = base_image(cfg)
    k = min(8, n_inputs(cfg))
    for i in range(k):
        connect(cfg, img, i, 0, 63)
    img.xbar_enable[0, cfg.n_buses] = 1
    img.adc_period = np.int64(1)
    ev = [[(i, 0, input_event(cfg, i)) for i in range(k)]]
    return Scenario("adc_every_cycle", img, _events(cfg, ev), 30,
                    "ADC every cycle (the buffer overflows, counted): codes change exactly "
                    "in the step_done cycles",
                    expect={"neuron_fires": 0})


def random_network(cfg, rng):
    """Random weights (mostly excitatory), labels, routes and input events,
    recurrent routing on; two samples."""
    img = base_image(cfg)
    k = n_inputs(cfg)
    for i in range(k):
        for c in range(cfg.columns_per_half):
            if rng.random() < 0.6:
                connect(cfg, img, i, c, int(rng.integers(-30, 64)), int(rng.integers(0, 2)))
    img.xbar_enable[:cfg.n_blocks, :] = rng.integers(0, 2, size=(cfg.n_blocks,
                                                                  cfg.crossbar_outputs))
    img.neuron_label[:] = [input_event(cfg, int(rng.integers(0, k)), int(rng.integers(0, 2)))
                           for _ in range(cfg.n_neurons)]
    img.refractory[:] = rng.integers(0, 16, size=cfg.n_neurons)
    batch = 2
    ev = [[(int(rng.integers(0, 200)), 0, input_event(cfg, int(rng.integers(0, k)),
                                                      int(rng.integers(0, 2))))
           for _ in range(int(rng.integers(30, 60)))] for _ in range(batch)]
    return Scenario("random", img, _events(cfg, ev), 30,
                    "random weights, labels and routes (recurrent); two samples",
                    expect={"spikes_min": 1})


SCENARIOS = {f.__name__ if f is not random_network else "random": f for f in (
    psp, label_match, fan_in, exc_inh, recurrence, arbiter_burst, xbar_overflow, refractory,
    adc_period, adc_every_cycle, random_network)}
