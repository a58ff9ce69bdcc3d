"""The ADC ring (``ChipConfig.adc_ring``) across the layers: the host's address
map, the reference backend's Observables (the buffer's entries in entry order,
every sample counted, nothing overflowing) against a chip whose buffer is deep
enough to keep every sample, and the co-simulated RTL against the reference
backend, with and without the PPU's stream program reading the ring.

The RTL block and the top level against their cycle-accurate references:
tests/test_rtl_adc_control.py and tests/test_rtl_top.py; the stream program on
the reference and fast backends: tests/test_ppu_stream.py."""
from __future__ import annotations

import time

import numpy as np
import pytest

from spikeloop.backends.reference import run_reference
from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import FULL, MINI
from spikeloop.base.events import InputEvents
from spikeloop.base.protocol import live_cycles
from spikeloop.cosim.backend import run_cosim
from spikeloop.model.chip import Chip
from spikeloop.ppu import programs as P
from spikeloop.rtl.area import estimate
from spikeloop.verify.scenarios import SCENARIOS
from tests.cosimutil import build_verilator_top

RING = MINI.replace(name="mini-ring", adc_ring=True, ppu_out_vectors=256)


def _scenario(cfg, period, batch=2):
    """The ``exc_inh`` scenario's image and first sample's events (``batch``
    times) on a calibrated chip of ``cfg``, sampling every ``period`` cycles."""
    chip = Chip.calibrated(cfg, 1)
    sc = SCENARIOS["exc_inh"](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    image.adc_period = period
    events = InputEvents.from_lists(cfg, [sc.events.of_sample(0).tolist()] * batch)
    return chip, image, events


def _ring_entries(samples: np.ndarray, n: int, depth: int) -> np.ndarray:
    """What a ring of ``depth`` entries holds after the samples ``samples[:n]``
    (all samples taken, in order), in entry order: entry ``j`` is the latest
    sample ``i < n`` with ``i % depth == j``; ``min(n, depth)`` entries."""
    return np.stack([samples[max(i for i in range(n) if i % depth == j)]
                     for j in range(min(n, depth))])


def test_address_map_of_the_ring():
    """``adc_samples`` is ``counter_bits`` wide with the ring (it counts every sample);
    every other region, and every region of the presets, as without the ring."""
    for base in (MINI, FULL):
        plain, ring = AddressMap(base), AddressMap(base.replace(adc_ring=True))
        assert plain["adc_samples"].bits == base.adc_buffer_depth.bit_length()
        assert ring["adc_samples"].bits == base.counter_bits
        assert ring.addr_bits == plain.addr_bits
        for r in plain:
            q = ring[r.name]
            assert (q.base, q.count, q.words, q.kind, q.writable) == (
                r.base, r.count, r.words, r.kind, r.writable), r.name
            if r.name != "adc_samples":
                assert q.bits == r.bits, r.name


def test_reference_backend_reads_the_ring_in_entry_order():
    """A sample every 2 cycles for 9 analog steps (37 samples) on a ring of 5
    entries with 5-bit counters: the reference backend's ``adc`` is the ring's
    entries in entry order, ``adc_count`` the samples taken, saturated at 31
    (the ring keeps writing), ``adc_overflow`` 0; the samples are those that
    mini, whose buffer keeps all 37, takes (the same spikes)."""
    period, n_steps, depth = 2, 9, 5
    cfg = MINI.replace(name="mini-ring5", adc_ring=True, adc_buffer_depth=depth,
                       counter_bits=5)
    taken = live_cycles(cfg, n_steps) // period
    assert 31 < taken <= MINI.adc_buffer_depth
    obs = run_reference(*_scenario(cfg, period), n_steps, run_seed=2)
    deep = run_reference(*_scenario(MINI, period), n_steps, run_seed=2)
    assert np.array_equal(obs.spikes, deep.spikes)
    assert (deep.adc_count == taken).all() and (deep.adc_overflow == 0).all()
    assert (obs.adc_count == 31).all() and (obs.adc_overflow == 0).all()
    assert obs.adc.shape[0] == depth
    for b in range(obs.adc.shape[1]):
        # the membranes move: a sample in the wrong entry would show
        assert len(np.unique(deep.adc[:, b], axis=0)) > depth
        # the ring holds the latest of every sample taken, counted or not
        assert np.array_equal(obs.adc[:, b], _ring_entries(deep.adc[:, b], taken, depth))


@pytest.mark.rtl
def test_area_counts_the_ring_in_the_adc_control(tmp_path):
    """The area estimate synthesizes the ring's ADC control from its own netlist
    (the write pointer and the wider count instead of the overflow counter);
    the buffer's SRAM bits are the same."""
    plain = estimate(MINI, ["adc_control"], cache_dir=tmp_path)["components"]["adc_control"]
    ring = estimate(MINI.replace(adc_ring=True), ["adc_control"],
                    cache_dir=tmp_path)["components"]["adc_control"]
    print(f"adc_control on mini: {plain['cells']} cells, ring {ring['cells']}")
    assert ring["sram_bits"] == plain["sram_bits"] > 0
    assert ring["cell_types"] != plain["cell_types"]


# -- the co-simulated RTL (Verilator) against the reference backend ---------------

@pytest.fixture(scope="module")
def verilator_ring_top():
    return build_verilator_top(RING)


@pytest.mark.slow
@pytest.mark.cosim
@pytest.mark.parametrize("program", [False, True])
def test_cosim_ring_equals_reference(verilator_ring_top, program):
    """mini with the ring, two samples of a run that takes 80 ADC samples (the
    ring of 64 wraps): the co-simulated chip's Observables (ADC rows in entry
    order, the count of every sample, no overflow) equal the reference
    backend's; with the stream program started in each sample's clear cycle,
    every PPU result (the streamed samples, the missed count) as well."""
    period = P.stream_cycles_per_sample(RING, 1)
    n = 80
    n_steps = n * period // RING.analog_step_cycles
    chip, image, events = _scenario(RING, period)
    taken = live_cycles(RING, n_steps) // period
    assert taken >= n > RING.adc_buffer_depth
    job = None
    if program:
        job = {"words": P.program("stream", RING).words,
               "dmem": P.stream_dmem(RING, n, 0, 1, adc_period=period),
               "when": "each_sample", "read_dmem": [P.STREAM_MISSED, P.STREAM_END_CYCLE]}
    t0 = time.monotonic()
    co = run_cosim(chip, image, events, n_steps, run_seed=4, ppu=job)
    t1 = time.monotonic()
    ref = run_reference(chip, image, events, n_steps, run_seed=4, ppu=job)
    print(f"cosim {t1 - t0:.1f} s ({co.stats['sim_cycles']} cycles), "
          f"reference {time.monotonic() - t1:.1f} s")
    assert co.first_difference(ref) is None, co.first_difference(ref)
    assert (co.adc_count == taken).all() and (co.adc_overflow == 0).all()
    assert co.adc.shape[0] == RING.adc_buffer_depth
    if program:
        for res in co.ppu:
            assert res["status"] == 0b10 and res["dmem"][P.STREAM_MISSED] == 0
            assert len(res["out"]) == n and res["out_drops"] == 0
