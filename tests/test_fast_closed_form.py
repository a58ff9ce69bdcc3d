"""The fast backend's closed forms (spikeloop/backends/fast.py): the randomised
cases reach every path of the per-window closed form of the crossbar, and the
benchmark's network equals the reference backend."""
import numpy as np
import pytest

from spikeloop.backends.fast import FastChip, run_fast
from spikeloop.backends.reference import run_reference
from tests.test_fast_equivalence import assert_same, random_case

pytestmark = pytest.mark.unit


def test_random_cases_exercise_every_path():
    """Words in closed form and cycle by cycle, carried words handed over to the
    cycle-by-cycle state before and during their service, and cases with no
    meeting at all."""
    total = dict.fromkeys(("closed_form", "cycle_by_cycle", "handed_over",
                           "handed_over_in_service", "cycles"), 0)
    only_closed = 0
    for seed in range(25):
        chip, img, events, n_steps, _ = random_case(seed)
        fc = FastChip(chip, img)
        fc.run(events, n_steps)
        for k, v in fc.stats.items():
            total[k] += v
        only_closed += fc.stats["closed_form"] > 0 and fc.stats["cycle_by_cycle"] == 0
    assert all(v > 0 for v in total.values()), total
    assert only_closed > 0


@pytest.mark.slow
def test_benchmark_network_matches_reference():
    """The MNIST network of the benchmark (FULL preset, multicast-free routes,
    one driver per event, recorder on one link), 3 samples, 120 steps."""
    from spikeloop import bench
    from spikeloop.config import FULL

    chip, image = bench.mnist_network(FULL, seed=1)
    t = bench.latency_times_us(3, np.random.default_rng(1))
    t[t >= 120 * FULL.analog_step_us] = np.nan
    events = bench.latency_events(FULL, t)
    ref = run_reference(chip, image, events, 120, run_seed=3, sample_offset=7)
    fast = run_fast(chip, image, events, 120, run_seed=3, sample_offset=7)
    assert len(ref.spikes) > 0 and len(ref.records) > 0
    assert_same(ref, fast, "benchmark network")


def test_playback_schedule_of_many_samples():
    """All samples at once (a segmented running maximum) equals the rule applied
    to each sample alone: entry j leaves in max(time_j, release_{j-1} + 1)."""
    from spikeloop.backends.fast import playback_schedule
    from spikeloop.config import FULL
    from spikeloop.events import InputEvents

    rng = np.random.default_rng(5)
    for _ in range(200):
        B, n = int(rng.integers(1, 40)), int(rng.integers(0, 400))
        tab = np.stack([rng.integers(0, B, n), rng.integers(0, rng.integers(1, 300), n),
                        rng.integers(0, 4, n), rng.integers(0, 1 << 14, n)], 1)
        n_live = int(rng.integers(1, 400))
        events = InputEvents(FULL, B, tab)
        tab = events.table                     # (the order the chip plays them in)
        rows, late = playback_schedule(FULL, events, n_live)
        want, want_late = [], np.zeros(B, dtype=np.int64)
        for s in range(B):
            last = -1
            for _, t, link, label in tab[tab[:, 0] == s]:
                last = max(int(t), last + 1)
                if last < n_live:
                    want.append((last, s, int(link), int(label)))
                    want_late[s] += last > t
        want.sort(key=lambda r: r[0])          # stable: sample order, then table order
        assert rows.tolist() == [list(r) for r in want]
        assert late.tolist() == want_late.tolist()
