"""Backend "fast" against the reference backend: identical Observables.

Every verification scenario on the mini preset, then randomised chips, images
and input events with overloads (dense input, multicast and recurrent routes,
multi-driver matches, refractory periods with a prescaler, FIFOs of depth 1,
small record and ADC memories, 4-bit saturating counters, short analog steps).
A failure names the first differing field and index (``first_difference``:
field[sample, ...] for counters, [row] of spikes/records, [adc sample, batch,
neuron] of the ADC) and the seed that rebuilds the case (``random_case(seed)``).
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeloop.backends.fast import run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import MINI, ChipConfig
from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import pack_event
from spikeloop.model.analog import LEAK, THRESHOLD
from spikeloop.model.chip import Chip
from spikeloop.model.mismatch import MismatchConfig
from spikeloop.verify.scenarios import SCENARIOS

pytestmark = pytest.mark.unit


ROWS = {"spikes": "(sample, step, cycle, neuron)", "records": "(sample, cycle, link, label)",
        "row_events": "(sample, cycle, half, driver, label)"}


def describe_difference(ref: Observables, fast: Observables) -> str | None:
    """None when identical; else the first differing field and where: the index
    for arrays (``xbar_drops[sample, input, output]``, ``adc[adc sample, sample,
    neuron]``, ...), the first differing row for the event lists."""
    diff = ref.first_difference(fast)
    field = diff and diff.split("[")[0].split(":")[0]
    if field not in ROWS:
        return diff
    a, b = getattr(ref, field), getattr(fast, field)
    n = min(len(a), len(b))
    bad = np.flatnonzero((a[:n] != b[:n]).any(1))
    row = int(bad[0]) if len(bad) else n

    def at(x):
        return tuple(int(v) for v in x[row]) if row < len(x) else "none"

    return (f"{field} row {row} {ROWS[field]}: reference {at(a)} != fast {at(b)} "
            f"({len(a)} vs {len(b)} rows)")


def assert_same(ref: Observables, fast: Observables, what: str) -> None:
    diff = describe_difference(ref, fast)
    if diff is not None:
        pytest.fail(f"{what}: first difference (reference != fast): {diff}")


@pytest.fixture(scope="module")
def mini_chip():
    return Chip(MINI, 1)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_matches_reference(mini_chip, name):
    sc = SCENARIOS[name](MINI, np.random.default_rng(0))
    image = mini_chip.configure(sc.image)
    ref = run_reference(mini_chip, image, sc.events, sc.n_steps, run_seed=5, row_events=True)
    fast = run_fast(mini_chip, image, sc.events, sc.n_steps, run_seed=5, row_events=True)
    assert fast.backend == "fast"
    assert len(fast.row_events) == fast.row_activations.sum()
    assert_same(ref, fast, f"scenario {name}")


# ----------------------------------------------------------------------------
# randomised chips, images and events
def random_case(seed: int, cfg=None):
    """(chip, image, events, n_steps, sample_offset) drawn from ``seed``; the
    design variant too unless ``cfg`` is given."""
    rng = np.random.default_rng(seed)

    def pick(*values):
        return values[int(rng.integers(len(values)))]

    cfg = cfg or MINI.replace(
        name="mini-random",
        buses_per_half=pick(1, 2, 4),
        neurons_per_block=pick(2, 4, 8, 16),
        analog_step_cycles=pick(1, 2, 3, 8, 8),
        crossbar_fifo_depth=pick(1, 1, 2, 3),
        arbiter_fifo_depth=pick(1, 2, 3),
        counter_bits=pick(4, 16),
        record_depth=pick(4, 64),
        adc_buffer_depth=pick(3, 64),
        refractory_prescale_bits=pick(1, 2, 3),
        playback_depth=128,
    )
    chip = Chip(cfg, int(rng.integers(0, 4)))
    img = chip.configure(ConfigImage.empty(cfg))
    H, R, C, n = cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half, cfg.n_neurons
    D, I, O = cfg.drivers_per_half, cfg.crossbar_inputs, cfg.crossbar_outputs
    n_addr, n_rs = 3, 4               # few addresses and row selects: many matches

    def label():
        return pack_event(cfg, int(rng.integers(n_addr)), int(rng.integers(n_rs)),
                          int(rng.integers(2)))

    density = rng.uniform(0.2, 0.8)
    img.synapse_weight[:] = (rng.integers(0, 64, (H, R, C))
                             * (rng.random((H, R, C)) < density))
    img.synapse_label[:] = rng.integers(0, n_addr, (H, R, C))
    img.driver_select[:] = rng.integers(0, n_rs, (H, D))
    img.driver_mask[:] = rng.choice([0, 1, 2, 3, 31], size=(H, D))   # 0: every event
    img.row_sign[:] = rng.choice([0, 1, 1, 1, 2], size=(H, R))
    img.neuron_enable[:] = rng.random(n) < 0.9
    img.neuron_label[:] = [label() for _ in range(n)]
    img.refractory[:] = rng.integers(0, 12, n) * (rng.random(n) < 0.6)
    img.refractory_prescale = np.int64(rng.integers(0, 2 ** cfg.refractory_prescale_bits - 1))
    # routes: multicast, recurrent (blocks -> buses), selective by label bits
    img.xbar_enable[:] = rng.random((I, O)) < rng.uniform(0.3, 0.9)
    rs_field = (n_rs - 1) << cfg.label_bits
    masks = [0, rs_field, 1 << cfg.label_bits, 1 << (cfg.label_bits + cfg.row_select_bits)]
    img.xbar_mask[:] = rng.choice(masks, size=(I, O))
    img.xbar_target[:] = img.xbar_mask & np.array([[label() for _ in range(O)]
                                                  for _ in range(I)])
    img.adc_period = np.int64(pick(0, 1, 5, 8, 13, 40))
    if rng.random() < 0.4:            # "hot" neurons: threshold below leak, a spike a step
        hot = rng.random(n) < rng.uniform(0.1, 0.8)
        img.analog_settings[hot, THRESHOLD] = np.maximum(img.analog_settings[hot, LEAK] - 40, 0)

    n_steps = int(rng.integers(3, 30))
    window = n_steps * cfg.analog_step_cycles + 4
    batch = int(rng.integers(1, 4))
    per_sample = []
    for _ in range(batch):
        k = int(rng.integers(0, cfg.playback_depth + 1)) if rng.random() < 0.5 \
            else int(rng.integers(0, 12))
        burst = rng.random() < 0.3            # many events due in the same cycle: late
        cycles = rng.integers(0, max(1, window // 4) if burst else window + 10, k)
        per_sample.append([(int(c), int(rng.integers(cfg.n_ext_inputs)), label())
                           for c in cycles])
    events = InputEvents.from_lists(cfg, per_sample)
    offset = int(rng.integers(0, 100))
    if rng.random() < 0.4:            # driver and synapse mismatch: sums of weight x gain
        chip = Chip(cfg, chip.chip_seed, mismatch=MismatchConfig(
            driver_gain_sigma=float(rng.uniform(0, 0.1)),
            synapse_gain_sigma=float(rng.uniform(0, 0.3))))
    return chip, img, events, n_steps, offset


def check_seed(seed: int) -> None:
    chip, img, events, n_steps, offset = random_case(seed)
    # every driver activation listed on every other seed (the counts always)
    kw = dict(run_seed=seed % 7, sample_offset=offset, row_events=seed % 2 == 0)
    ref = run_reference(chip, img, events, n_steps, **kw)
    fast = run_fast(chip, img, events, n_steps, **kw)
    assert_same(ref, fast, f"random_case({seed})")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_matches_reference(seed):
    check_seed(seed)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_matches_reference_long(seed):
    check_seed(seed)


def test_random_cases_exercise_the_overloads():
    """The random cases reach every rule the comparison is meant to check."""
    seen = dict.fromkeys(("spikes", "records", "xbar_drops", "arbiter_drops",
                          "driver_unmatched", "playback_late", "record_drops",
                          "adc_overflow", "saturated", "multicast"), False)
    for seed in range(25):
        chip, img, events, n_steps, _ = random_case(seed)
        o = run_fast(chip, img, events, n_steps)
        cmax = (1 << chip.cfg.counter_bits) - 1
        for f in seen:
            if f == "saturated":
                seen[f] |= bool((o.xbar_drops == cmax).any() or (o.xbar_events == cmax).any())
            elif f == "multicast":      # bus events that several drivers of the bus took
                bus = o.xbar_events[:, :, :chip.cfg.n_buses].sum() - o.driver_unmatched.sum()
                seen[f] |= bool(o.row_activations.sum() > bus and cmax > 1000)
            else:
                seen[f] |= bool(np.asarray(getattr(o, f)).sum() > 0)
    assert all(seen.values()), seen


# ----------------------------------------------------------------------------
def sample_of(o: Observables, s: int) -> Observables:
    """Batch entry ``s`` of ``o`` as a batch of one."""
    def rows(a):
        a = a[a[:, 0] == s].copy()
        a[:, 0] = 0
        return a

    one = {f: getattr(o, f)[s:s + 1] for f in o.FIELDS
           if f not in o.EVENT_FIELDS and f != "adc"}
    n = int(o.adc_count[s])
    return o.replace(**{f: rows(getattr(o, f)) for f in o.EVENT_FIELDS},
                     adc=o.adc[:n, s:s + 1], **one)


@pytest.mark.parametrize("seed", [3, 11, 20])
def test_batch_size_independence(seed):
    chip, img, events, n_steps, offset = random_case(seed)
    samples = [[tuple(e) for e in events.of_sample(s).tolist()] for s in range(events.batch)]
    samples.append([(3 * i, 0, pack_event(chip.cfg, 0, 1)) for i in range(20)])
    batched = run_fast(chip, img, InputEvents.from_lists(chip.cfg, samples), n_steps,
                       run_seed=2, sample_offset=offset)
    for s, evs in enumerate(samples):
        alone = run_fast(chip, img, InputEvents.from_lists(chip.cfg, [evs]), n_steps,
                         run_seed=2, sample_offset=offset + s)
        assert_same(sample_of(batched, s), alone, f"random_case({seed}) sample {s}")


def test_rejects_bad_arguments(mini_chip):
    sc = SCENARIOS["psp"](MINI, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_steps = 0"):
        run_fast(mini_chip, sc.image, sc.events, 0)
    other = ConfigImage.empty(ChipConfig.preset("full"))
    with pytest.raises(ValueError, match="image is for preset 'full'"):
        run_fast(mini_chip, other, sc.events, 5)


# ----------------------------------------------------------------------------
# on CUDA: the same Observables as the reference
@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_cuda_scenario_matches_reference(mini_chip, name):
    sc = SCENARIOS[name](MINI, np.random.default_rng(0))
    image = mini_chip.configure(sc.image)
    ref = run_reference(mini_chip, image, sc.events, sc.n_steps, run_seed=5)
    fast = run_fast(mini_chip, image, sc.events, sc.n_steps, run_seed=5, device="cuda")
    assert_same(ref, fast, f"scenario {name} on cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("seed", range(40))
def test_cuda_random_matches_reference(seed):
    chip, img, events, n_steps, offset = random_case(seed)
    kw = dict(run_seed=seed % 7, sample_offset=offset)
    ref = run_reference(chip, img, events, n_steps, **kw)
    fast = run_fast(chip, img, events, n_steps, device="cuda", **kw)
    assert_same(ref, fast, f"random_case({seed}) on cuda")


def test_device_is_checked(mini_chip, tmp_path, capsys):
    """A device the fast backend cannot run on is refused, naming the field and
    what is allowed (the Python facade, ``spikeloop run`` and training)."""
    from spikeloop.backends.devices import check_device
    from spikeloop.cli import main
    from spikeloop.experiments.mismatch import ExperimentError, MismatchSettings
    from spikeloop.training.train import TrainError, TrainSettings

    sc = SCENARIOS["psp"](MINI, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"device = 'tpu'; allowed: cpu, cuda, cuda:N"):
        run_fast(mini_chip, sc.image, sc.events, 5, device="tpu")
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        with pytest.raises(ValueError, match=rf"{n} CUDA device\(s\) here"):
            check_device(f"cuda:{n}")
    else:
        with pytest.raises(ValueError, match="sees no CUDA device here; allowed: cpu"):
            check_device("cuda")
    assert check_device("cpu") == torch.device("cpu")
    sc.image.save(tmp_path / "image.npz")
    sc.events.save(tmp_path / "events.npz")
    args = ["run", "--preset", "mini", "--chip-seed", "1", "--image",
            str(tmp_path / "image.npz"), "--events", str(tmp_path / "events.npz"),
            "--steps", "5", "--out", str(tmp_path / "obs.npz")]
    assert main([*args, "--backend", "reference", "--device", "cuda"]) == 2
    assert "only the fast backend runs on a torch device" in capsys.readouterr().err
    assert main([*args, "--backend", "fast", "--device", "cpu"]) == 0
    assert "backend fast on cpu" in capsys.readouterr().out
    with pytest.raises(TrainError, match="only the fast backend runs on a torch device"):
        TrainSettings(task="mnist", out=str(tmp_path / "t"), backend="software",
                      device="cuda").check()
    with pytest.raises(TrainError, match=r"device = 'tpu'; allowed"):
        TrainSettings(task="mnist", out=str(tmp_path / "t"), backend="fast", preset="mini",
                      chip_seed=1, device="tpu").check()
    with pytest.raises(ExperimentError, match="only the fast backend runs on a torch device"):
        MismatchSettings(out=str(tmp_path / "e"), backend="cosim", device="cuda").check()
