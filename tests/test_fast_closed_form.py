"""The fast backend's own machinery (spikeloop/backends/fast.py and
digital_core.py): idle cycles skipped, the weights summed on the device's path,
arbiter blocks wider than one 64-bit word, the closed-form playback schedule,
and the benchmark's network against the reference backend."""
import numpy as np
import pytest

from spikeloop.backends.fast import FastChip, run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import MINI
from tests.test_fast_equivalence import assert_same, check_seed, random_case

pytestmark = pytest.mark.unit


def test_idle_cycles_are_skipped():
    """The digital side runs only the sample-cycles with something in flight:
    some in every case with events, never all of them, none without events."""
    from spikeloop.base.events import InputEvents
    from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles

    ran = total = 0
    for seed in range(25):
        chip, img, events, n_steps, _ = random_case(seed)
        fc = FastChip(chip, img)
        fc.run(events, n_steps)
        busy = int(fc.digital.busy[0])
        all_cycles = events.batch * (live_cycles(chip.cfg, n_steps) + DRAIN_CYCLES)
        assert busy <= all_cycles
        ran, total = ran + busy, total + all_cycles
    assert 0 < ran < total
    chip, img, _, _, _ = random_case(0)
    img.neuron_enable[:] = 0                       # no spike leaves, no input event
    fc = FastChip(chip, img)
    fc.run(InputEvents.from_lists(chip.cfg, [[], []]), 10)
    assert int(fc.digital.busy[0]) == 0


@pytest.mark.parametrize("per_row", [False, True])
def test_sums_on_the_device_path(per_row, monkeypatch):
    """The torch path that sums the activations' weights on an accelerator (a
    table per driver and address, or per activation when the table is too
    large), run here on the CPU, gives the reference's Observables."""
    orig = FastChip.__init__

    def on_device(self, *a, **kw):
        orig(self, *a, **kw)
        self.sum_on_host = False
        self._device_tables()
        if per_row:
            self.row_w_addr = None

    monkeypatch.setattr(FastChip, "__init__", on_device)
    for seed in range(8):
        check_seed(seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_arbiter_blocks_wider_than_a_word(seed):
    """Blocks of 80 and 160 neurons: the pending neurons span two and three
    64-bit words (the grant takes the lowest across words)."""
    for p in (80, 160):
        cfg = MINI.replace(name=f"mini-p{p}", n_neurons=2 * p, neurons_per_block=p)
        chip, img, events, n_steps, offset = random_case(seed, cfg)
        kw = dict(run_seed=1, sample_offset=offset)
        ref = run_reference(chip, img, events, n_steps, **kw)
        assert len(ref.spikes) > 0
        assert_same(ref, run_fast(chip, img, events, n_steps, **kw), f"P = {p}, seed {seed}")


@pytest.mark.slow
def test_benchmark_network_matches_reference():
    """The MNIST network of the benchmark (FULL preset, multicast-free routes,
    one driver per event, recorder on one link), 3 samples, 120 steps."""
    from spikeloop import bench
    from spikeloop.base.config import FULL

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
    from spikeloop.base.config import FULL
    from spikeloop.base.events import InputEvents

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
        by_sample, late_s = playback_schedule(FULL, events, n_live, by="sample")
        assert by_sample.tolist() == [list(r) for r in want]     # (built sample by sample)
        assert late_s.tolist() == want_late.tolist()
        want.sort(key=lambda r: r[0])          # stable: sample order, then table order
        assert rows.tolist() == [list(r) for r in want]
        assert late.tolist() == want_late.tolist()
    with pytest.raises(ValueError, match="by = 'step'"):
        playback_schedule(FULL, events, 10, by="step")


def test_input_events_sorted_as_a_lexsort():
    """InputEvents sorts its rows by (sample, cycle, link, label): the packed
    key's sort and, where the columns' bits do not fit one key, the lexsort
    give the rows a lexsort gives; a sorted table is kept as it is."""
    from spikeloop.base.config import FULL
    from spikeloop.base.events import InputEvents, row_order

    rng = np.random.default_rng(9)
    for _ in range(100):
        B, n = int(rng.integers(2, 300)), int(rng.integers(0, 500))
        tab = np.stack([rng.integers(0, B, n), rng.integers(0, 1 << FULL.timestamp_bits, n),
                        rng.integers(0, FULL.n_ext_inputs, n),
                        rng.integers(0, 1 << FULL.event_label_bits, n)], 1)
        tab[n // 2:] = tab[:n - n // 2]          # repeated rows
        want = tab[np.lexsort(tab.T[::-1])]
        assert np.array_equal(InputEvents(FULL, B, tab).table, want.reshape(-1, 4))
        wide = tab * np.array([1 << 40, 1 << 20, 1, 1])
        limits = [(B - 1) << 40, ((1 << FULL.timestamp_bits) - 1) << 20,
                  FULL.n_ext_inputs - 1, (1 << FULL.event_label_bits) - 1]
        assert sum(int(x).bit_length() for x in limits) > 63
        order = row_order(wide, limits)
        got = wide if order is None else wide[order]
        assert np.array_equal(got, want * np.array([1 << 40, 1 << 20, 1, 1]))
        assert row_order(want, limits) is None


def test_breakdown_leaves_parts_out_on_copies(capsys):
    """``bench fast --breakdown``'s whole-run parts: its run without noise takes
    a copy of the chip (the chip passed in keeps its noise), its run without
    events has none, and every part is printed."""
    import types

    from spikeloop import bench
    from spikeloop.base.config import FULL

    chip, image = bench.mnist_network(FULL, seed=1)
    sigma = chip.analog.noise_sigma_v
    assert sigma > 0
    t = bench.latency_times_us(2, np.random.default_rng(1))
    events = [bench.latency_events(FULL, t) for _ in range(2)]
    bench._whole_run_parts(chip, image, events, 60, types.SimpleNamespace(repeats=1, batch=2))
    assert chip.analog.noise_sigma_v == sigma
    out = capsys.readouterr().out
    for part in ("whole run", "membrane noise", "input events", "the rest"):
        assert part in out, part
    quiet = FastChip(chip, image)
    with_noise = quiet.run(events[0], 60).adc
    assert with_noise.size
    chip.analog.noise_sigma_v = 0.0
    try:
        assert not np.array_equal(FastChip(chip, image).run(events[0], 60).adc, with_noise)
    finally:
        chip.analog.noise_sigma_v = sigma
