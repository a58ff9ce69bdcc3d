"""The fast backend's whole-run kernel on the CPU (each sample's analog steps and
windows in one compiled call, the samples split over threads) against its
step-by-step path (the path CUDA and the PPU take) and the reference: the same
Observables on any thread count, with merged neurons, refractory periods, no
noise, and a batch that does not split evenly."""
import os

import numpy as np
import pytest

from spikeloop.backends.fast import THREADS_ENV, FastChip, run_fast, usable_cpus
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents
from spikeloop.model.chip import Chip
from tests.test_fast_equivalence import assert_same, random_case

pytestmark = pytest.mark.unit


def _runs(chip, img, events, n_steps, **kw):
    """The step-by-step path, then the whole-run kernel on 1, 2 and 3 threads."""
    step = FastChip(chip, img)
    step.whole_run = False
    out = [("step by step", step.run(events, n_steps, **kw))]
    for threads in (1, 2, 3):
        fc = FastChip(chip, img, threads=threads)
        assert fc.whole_run
        out.append((f"whole run on {threads} thread(s)", fc.run(events, n_steps, **kw)))
    return out


@pytest.mark.parametrize("seed", [1, 4, 7, 12, 30])
def test_whole_run_equals_step_by_step_on_any_thread_count(seed):
    chip, img, events, n_steps, offset = random_case(seed)
    # a batch of 5 (3 threads split it 2 / 1 / 2): the case's samples and more
    samples = [[tuple(e) for e in events.of_sample(s).tolist()] for s in range(events.batch)]
    rng = np.random.default_rng(seed)
    while len(samples) < 5:
        samples.append([tuple(int(x) for x in e) for e in
                        events.table[rng.permutation(len(events.table))[:20], 1:]])
    events = InputEvents.from_lists(chip.cfg, [sorted(s) for s in samples])
    runs = _runs(chip, img, events, n_steps, run_seed=seed % 5, sample_offset=offset)
    base = runs[0][1]
    for what, obs in runs[1:]:
        assert_same(base, obs, f"random_case({seed}): {what} vs step by step")


def _merged_case():
    chip = Chip(MINI, 2)
    _, img, events, n_steps, _ = random_case(5, cfg=MINI)
    img = chip.configure(img)
    img.neuron_merge[::2] = 1                       # every other column merged
    return chip, img, events, n_steps


def test_merged_neurons_and_the_reference():
    chip, img, events, n_steps = _merged_case()
    ref = run_reference(chip, img, events, n_steps, run_seed=3, sample_offset=9)
    for what, obs in _runs(chip, img, events, n_steps, run_seed=3, sample_offset=9):
        assert_same(ref, obs, f"merged neurons: {what}")


def test_without_noise():
    chip, img, events, n_steps = _merged_case()
    chip.analog.noise_sigma_v = 0.0
    assert chip.lif_params(img).noise_step_v is None
    ref = run_reference(chip, img, events, n_steps, run_seed=3)
    for what, obs in _runs(chip, img, events, n_steps, run_seed=3):
        assert_same(ref, obs, f"no noise: {what}")


def test_run_fast_threads_is_checked():
    chip, img, events, n_steps = _merged_case()
    with pytest.raises(ValueError, match="threads = 0; allowed"):
        run_fast(chip, img, events, n_steps, threads=0)


def test_default_threads_follow_the_environment(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert usable_cpus() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ValueError, match=f"SPIKELOOP_THREADS = '{bad}'; allowed: a "
                                             "positive integer"):
            usable_cpus()
    monkeypatch.delenv(THREADS_ENV)
    assert usable_cpus() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("n", [1, 7, 8, 16, 63, 64, 65, 130, 512])
def test_next_set_finds_every_flag_of_any_count(n):
    """The kernels' scan of rare flags (the step's spikes, the noise numbers left
    to the exact path; eight entries per machine word, then the entries left
    over) finds each set entry once, in order, from any start, for any count,
    and never one at or beyond ``n`` (the scratch arrays are longer)."""
    import numba

    from spikeloop.model.jit import next_set

    @numba.njit
    def scan(mask, start, n):
        out = []
        j = next_set(mask, start, n)
        while j < n:
            out.append(j)
            j = next_set(mask, j + 1, n)
        return out

    rng = np.random.default_rng(n)
    for p in (0.0, 0.02, 0.5, 1.0):
        mask = np.concatenate([rng.random(n) < p, np.ones(9, dtype=bool)])
        want = np.flatnonzero(mask[:n])
        for start in sorted({0, 1, 7, 8, n // 2, n}):
            if start <= n:
                assert scan(mask, start, n) == [j for j in want if j >= start], (p, start)
