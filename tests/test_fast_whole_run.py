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
def test_fired_bits_of_any_neuron_count(n):
    """The whole-run kernel's spike bits (eight neurons per machine word, then
    the neurons left over) are those of the neurons that fired, for any count."""
    import numba

    from spikeloop.backends.digital_core import _fired_bits

    @numba.njit
    def call(fired, bits):
        return _fired_bits(fired, bits)

    rng = np.random.default_rng(n)
    for p in (0.0, 0.02, 0.5, 1.0):
        fired = rng.random(n) < p
        bits = np.zeros(-(-n // 64), dtype=np.uint64)
        assert call(fired, bits) == fired.sum()
        got = np.array([(int(bits[j >> 6]) >> (j & 63)) & 1 for j in range(n)], dtype=bool)
        assert (got == fired).all()
        assert all(int(bits[-1]) >> b == 0 for b in range(n - 64 * (len(bits) - 1), 64))
