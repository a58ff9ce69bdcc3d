"""The reference backend on the verification scenarios: what each must show, and
the CLI round trip through files readable with numpy alone."""
import numpy as np
import pytest

from spikeloop import backends
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents, Observables
from spikeloop.cli import main
from spikeloop.model.chip import Chip
from spikeloop.verify.scenarios import SCENARIOS

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def chip():
    return Chip.calibrated(MINI, 1)


def run(chip, name, run_seed=1):
    sc = SCENARIOS[name](MINI, np.random.default_rng(0))
    return sc, backends.run(chip, chip.configure(sc.image), sc.events, sc.n_steps,
                            run_seed=run_seed)


def test_psp_is_sampled_and_does_not_fire(chip):
    sc, obs = run(chip, "psp")
    assert len(obs.spikes) == 0
    trace = obs.adc[:obs.adc_count[0], 0, 1]
    rise = trace.max() - trace[0]
    assert rise > 5, trace                     # the PSP shows in the ADC codes
    assert abs(int(obs.adc[:obs.adc_count[0], 0, 2].max()) - int(obs.adc[0, 0, 2])) < 5


def test_fan_in_fires_and_labels_select(chip):
    _, obs = run(chip, "fan_in")
    assert set(obs.spikes[:, 3].tolist()) == {0}
    _, obs = run(chip, "label_match")
    assert set(obs.spikes[obs.spikes[:, 0] == 0][:, 3].tolist()) <= {2}
    assert len(obs.spikes[obs.spikes[:, 0] == 1]) == 0


def test_inhibition_and_refractoriness(chip):
    _, obs = run(chip, "exc_inh")
    assert 0 in obs.spikes[:, 3] and 1 not in obs.spikes[:, 3]
    _, obs = run(chip, "refractory")
    n0 = int((obs.spikes[:, 3] == 0).sum())
    n1 = int((obs.spikes[:, 3] == 1).sum())
    assert n0 > n1 >= 1


def test_overflow_drops_are_counted_exactly(chip):
    sc, obs = run(chip, "xbar_overflow")
    node = (MINI.n_blocks, 0)
    offered = len(sc.events.table)
    assert obs.xbar_drops[0][node] > 0
    assert obs.xbar_events[0][node] + obs.xbar_drops[0][node] == offered


def test_burst_is_serialised_and_recorded(chip):
    _, obs = run(chip, "arbiter_burst")
    fired = len(obs.spikes)
    assert fired == MINI.columns_per_half
    assert len(obs.records) + int(obs.xbar_drops.sum()) + int(obs.record_drops.sum()) == fired
    assert len(set(obs.records[:, 1].tolist())) == len(obs.records)   # one per cycle


def test_same_seeds_same_observables_other_run_seed_differs(chip):
    _, a = run(chip, "random", 1)
    _, b = run(chip, "random", 1)
    _, c = run(chip, "random", 2)
    assert a.first_difference(b) is None
    assert a.first_difference(c) is not None   # noise differs


def test_run_command_writes_numpy_readable_observables(chip, tmp_path, capsys):
    sc = SCENARIOS["fan_in"](MINI, np.random.default_rng(0))
    chip.save(tmp_path / "chip.npz")
    sc.image.save(tmp_path / "image.npz")
    sc.events.save(tmp_path / "events.npz")
    rc = main(["run", "--backend", "reference", "--preset", "mini", "--chip-seed", "1",
               "--chip", str(tmp_path / "chip.npz"), "--image", str(tmp_path / "image.npz"),
               "--events", str(tmp_path / "events.npz"), "--steps", str(sc.n_steps),
               "--run-seed", "1", "--out", str(tmp_path / "obs.npz")])
    assert rc == 0
    assert "spikes" in capsys.readouterr().out
    with np.load(tmp_path / "obs.npz") as z:
        assert z["spikes"].shape[1] == 4
    obs = Observables.load(tmp_path / "obs.npz")
    _, direct = run(chip, "fan_in")
    assert obs.first_difference(direct.replace(backend="reference")) is None
    assert InputEvents.load(tmp_path / "events.npz", MINI).batch == 1
