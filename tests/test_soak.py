"""Soak tests (``make sim``, slow tier): many random samples with no divergence.

- 10,000 random samples through the fast backend against the reference: random
  design variants, images, routes and overloads (the generator of
  tests/test_fast_equivalence.py), each image run with a batch of random input
  events (bursts that overload the playback, events after the window);
- 1,000 random samples through the co-simulation (Verilator, or ``$SIM``)
  against the fast backend, on the mini preset (one build), a batch of 100
  samples per image.

Every sample's Observables must be identical, field by field.  Chunks are
separate tests so that ``pytest -n auto`` spreads them over the cores."""
from __future__ import annotations

import os

import numpy as np
import pytest

from spikeloop import MINI
from spikeloop.backends.fast import run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.events import InputEvents
from tests.test_fast_equivalence import assert_same, random_case

pytestmark = pytest.mark.slow

FAST_SAMPLES, FAST_CHUNKS, FAST_BATCH = 10_000, 20, 25
COSIM_SAMPLES, COSIM_CHUNKS = 1_000, 10


def soak_events(cfg, rng: np.random.Generator, template: InputEvents, n_steps: int,
                batch: int) -> InputEvents:
    """``batch`` samples of random events whose labels come from ``template``'s (the
    routes of its image) and from anywhere; bursts (many events due in the same few
    cycles) and events after the window included, as in random_case."""
    labels = template.table[:, 3] if len(template.table) else np.zeros(1, np.int64)
    window = n_steps * cfg.analog_step_cycles + 4
    per_sample = []
    for _ in range(batch):
        k = (int(rng.integers(0, cfg.playback_depth + 1)) if rng.random() < 0.3
             else int(rng.integers(0, 16)))
        burst = rng.random() < 0.3
        cycles = rng.integers(0, max(1, window // 4) if burst else window + 10, k)
        own = rng.random(k) < 0.8
        lab = np.where(own, rng.choice(labels, k),
                       rng.integers(0, 1 << cfg.event_label_bits, k))
        per_sample.append([(int(c), int(rng.integers(cfg.n_ext_inputs)), int(x))
                           for c, x in zip(cycles, lab, strict=True)])
    return InputEvents.from_lists(cfg, per_sample)


@pytest.mark.parametrize("chunk", range(FAST_CHUNKS))
def test_fast_against_reference(chunk):
    per_chunk = FAST_SAMPLES // FAST_CHUNKS
    done, k = 0, 0
    while done < per_chunk:
        seed = 7_000_000 + chunk * 10_000 + k
        chip, img, template, n_steps, offset = random_case(seed)
        batch = min(FAST_BATCH, per_chunk - done)
        events = soak_events(chip.cfg, np.random.default_rng(seed), template, n_steps, batch)
        kw = dict(run_seed=seed % 11, sample_offset=offset)
        assert_same(run_reference(chip, img, events, n_steps, **kw),
                    run_fast(chip, img, events, n_steps, **kw), f"soak seed {seed}")
        done += batch
        k += 1
    assert done == per_chunk


@pytest.mark.cosim
@pytest.mark.parametrize("chunk", range(COSIM_CHUNKS))
def test_cosim_against_fast(chunk):
    from spikeloop.cosim.backend import run_cosim

    simulator = os.environ.get("SIM", "verilator")
    batch = COSIM_SAMPLES // COSIM_CHUNKS
    seed = 8_000_000 + chunk
    chip, img, template, n_steps, offset = random_case(seed, cfg=MINI)
    events = soak_events(MINI, np.random.default_rng(seed), template, n_steps, batch)
    kw = dict(run_seed=seed % 11, sample_offset=offset)
    co = run_cosim(chip, img, events, n_steps, simulator=simulator, **kw)
    assert_same(co.replace(backend="fast"), run_fast(chip, img, events, n_steps, **kw),
                f"cosim soak seed {seed} ({batch} samples, {simulator})")
