"""`spikeloop train`: outputs, determinism, checkpoints and --resume, refusals, learning."""
import json

import pytest
import torch

from spikeloop import cli
from spikeloop.training import train as T
from spikeloop.training.train import TrainError, TrainSettings, load_network, run

pytestmark = pytest.mark.unit

#: a tiny Yin-Yang run: 3 batches of 20 per epoch, 16 hidden neurons
TINY = {"task": "yinyang", "backend": "software", "hidden": 16, "train_samples": 60,
        "test_samples": 30, "batch_size": 20, "lr": 5e-3, "progress": False}


def _settings(out, **kw):
    return TrainSettings(out=str(out), **{**TINY, **kw})


def _comparable(results: dict) -> dict:
    """results.json without what legitimately differs between two runs."""
    r = json.loads(json.dumps(results))
    r.pop("wall_s")
    for k in ("out", "resume"):
        r["args"].pop(k)
    return r


def _weights(out):
    return torch.load(out / T.NETWORK, weights_only=True)["state_dict"]


def _assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_run_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "yinyang", "--backend", "software", "--epochs", "2",
                   "--out", str(out), "--hidden", "16", "--train-samples", "60",
                   "--test-samples", "30", "--batch-size", "20", "--seed", "3",
                   "--test-every", "1"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "seeds: seed 3, init 3, data_order 3" in captured.out
    # one progress line per batch on stderr
    assert "epoch 1/2 batch 1/3 loss" in captured.err
    assert "epoch 2/2 batch 3/3 loss" in captured.err
    assert "spikes/neuron/input" in captured.err
    for name in ("checkpoint.pt", "network.pt", "results.json", "train.log",
                 "curves.png", "raster.png", "traces.png"):
        assert (out / name).is_file(), name
    for png in ("curves.png", "raster.png", "traces.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out / "results.json").read_text())
    assert (res["task"], res["backend"], res["preset"], res["chip_seed"]) == \
        ("yinyang", "software", None, None)
    assert res["seeds"]["seed"] == 3 and res["args"]["seed"] == 3
    assert res["network"]["n_hidden"] == 16 and res["network"]["n_in"] == 5
    assert res["data"]["train_samples"] == 60 and res["data"]["test_samples"] == 30
    assert [r["epoch"] for r in res["history"]] == [1, 2]
    for r in res["history"]:                           # --test-every 1: tested every epoch
        assert 0.0 <= r["test_accuracy"] <= 1.0
        assert r["test_spikes_per_neuron_input"] >= 0
        assert 0.0 <= r["train_accuracy"] <= 1.0 and r["train_loss"] > 0
    assert res["history"][1]["lr"] == pytest.approx(5e-3 * 0.97)     # yinyang's default lr
    assert res["hyperparameters"] == {"lr": 5e-3, "lr_decay": 0.97, "spike_reg": 5e-4,
                                      "weight_reg": 1e-3, "batch_size": 20}
    assert res["final_test_accuracy"] == res["history"][-1]["test_accuracy"]
    assert res["wall_s"] > 0
    assert "emulation" not in res
    log = (out / "train.log").read_text()
    assert "epoch 2/2" in log and "done: 2 epochs" in log
    # the trained network rebuilds and gives the same test output
    net, meta = load_network(out / "network.pt")
    assert meta["task"] == "yinyang" and sum(p.numel() for p in net.parameters()) == \
        res["network"]["parameters"]


def test_test_every_and_final_test(tmp_path):
    res = run(_settings(tmp_path / "a", epochs=3, test_every=2))
    tested = [r["epoch"] for r in res["history"] if r["test_accuracy"] is not None]
    assert tested == [2, 3]
    assert all(r["train_loss"] > r["train_nll"] for r in res["history"])
    # the regulariser strengths reach the loss: with both 0, loss == NLL
    res = run(_settings(tmp_path / "b", epochs=2, test_every=0, spike_reg=0.0, weight_reg=0.0))
    assert [r["test_accuracy"] is not None for r in res["history"]] == [False, True]
    assert all(r["train_loss"] == r["train_nll"] for r in res["history"])
    assert res["hyperparameters"]["weight_reg"] == 0.0


def test_same_seed_bit_identical_other_seed_differs(tmp_path):
    a = run(_settings(tmp_path / "a", epochs=2, seed=5))
    b = run(_settings(tmp_path / "b", epochs=2, seed=5))
    c = run(_settings(tmp_path / "c", epochs=2, seed=6))
    assert _comparable(a) == _comparable(b)
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    wa, wc = _weights(tmp_path / "a"), _weights(tmp_path / "c")
    assert not torch.equal(wa["hidden_synapse.weight"], wc["hidden_synapse.weight"])
    assert a["history"] != c["history"]


def test_resume_equals_uninterrupted(tmp_path):
    full = run(_settings(tmp_path / "full", epochs=2))
    run(_settings(tmp_path / "split", epochs=1))
    resumed = run(_settings(tmp_path / "split", epochs=2, resume=True))
    assert _comparable(full) == _comparable(resumed)
    _assert_same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "split"))
    ca = torch.load(tmp_path / "full" / T.CHECKPOINT, weights_only=True)
    cb = torch.load(tmp_path / "split" / T.CHECKPOINT, weights_only=True)
    assert ca["epoch"] == cb["epoch"] == 2
    assert ca["history"] == cb["history"]
    assert ca["scheduler"] == cb["scheduler"]
    for k, v in ca["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(v[name], cb["optimizer"]["state"][k][name])
    log = (tmp_path / "split" / "train.log").read_text()
    assert "resuming from epoch 1" in log


def test_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    """Interrupted in the middle of epoch 2: --resume restarts epoch 2 from its checkpoint."""
    full = run(_settings(tmp_path / "full", epochs=3))
    calls = {"n": 0}
    after_step = T._after_step

    def dying(net):
        calls["n"] += 1
        if calls["n"] == 5:                  # the 2nd of 3 batches of epoch 2
            raise KeyboardInterrupt
        after_step(net)

    monkeypatch.setattr(T, "_after_step", dying)
    with pytest.raises(KeyboardInterrupt):
        run(_settings(tmp_path / "killed", epochs=3))
    monkeypatch.setattr(T, "_after_step", after_step)
    assert torch.load(tmp_path / "killed" / T.CHECKPOINT, weights_only=True)["epoch"] == 1
    assert "interrupted" in (tmp_path / "killed" / "train.log").read_text()
    resumed = run(_settings(tmp_path / "killed", epochs=3, resume=True))
    assert _comparable(full) == _comparable(resumed)
    _assert_same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "killed"))


def test_resume_refusals(tmp_path, capsys):
    with pytest.raises(TrainError, match="no checkpoint in .*start the run without --resume"):
        run(_settings(tmp_path / "none", epochs=1, resume=True))
    assert not (tmp_path / "none").exists()
    run(_settings(tmp_path / "r", epochs=1))
    with pytest.raises(TrainError, match=r"task: checkpoint 'yinyang', now 'mnist'"):
        run(_settings(tmp_path / "r", task="mnist", epochs=2, resume=True))
    with pytest.raises(TrainError, match=r"batch_size: checkpoint 20, now 10.*seed: "
                                         r"checkpoint 0, now 1"):
        run(_settings(tmp_path / "r", seed=1, batch_size=10, epochs=2, resume=True))
    with pytest.raises(TrainError, match="already holds a run .*pass --resume"):
        run(_settings(tmp_path / "r", epochs=2))
    # the thread count is part of the run: torch's float sums follow it
    with pytest.raises(TrainError, match=r"threads: checkpoint 1, now 2"):
        run(_settings(tmp_path / "r", threads=2, epochs=2, resume=True))
    # through the command line: a clear message and exit status 2
    rc = cli.main(["train", "yinyang", "--backend", "fast", "--preset", "mini",
                   "--chip-seed", "1", "--out", str(tmp_path / "r"), "--resume",
                   "--hidden", "16", "--train-samples", "60", "--test-samples", "30",
                   "--batch-size", "20", "--lr", "5e-3", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "backend: checkpoint 'software', now 'fast'" in err
    assert "preset: checkpoint None, now 'mini'" in err


def test_settings_refusals(tmp_path):
    cases = [({"backend": "fast"}, "give --preset .* and --chip-seed"),
             ({"backend": "software", "chip_seed": 1},
              "--chip-seed, --chip and --noise-model apply to the chip"),
             ({"backend": "gpu"}, "backend = 'gpu'; allowed: software, fast, cosim"),
             ({"epochs": 0}, "epochs = 0; allowed: an integer >= 1"),
             ({"batch_size": 0}, "batch_size = 0; allowed: an integer >= 1"),
             ({"lr": -1.0}, "lr = -1.0; allowed: a number > 0"),
             ({"weight_reg": -1.0}, "weight_reg = -1.0; allowed: a number >= 0"),
             ({"lr_decay": 1.5}, "lr_decay = 1.5; allowed: 0 < lr_decay <= 1"),
             ({"test_every": -1}, "test_every = -1; allowed: an integer >= 0"),
             ({"preset": "huge"}, "preset = 'huge'; allowed: full, mini"),
             ({"surrogate_at": "chip"}, "surrogate_at = 'chip'; allowed: measured, model"),
             ({"surrogate_at": "model"}, "--surrogate-at model applies to the chip backends")]
    for kw, msg in cases:
        with pytest.raises(TrainError, match=msg):
            run(_settings(tmp_path / "x", **kw))
    assert not (tmp_path / "x").exists()


def test_failing_run_says_why_and_where_the_log_is(tmp_path, capsys):
    out = tmp_path / "shd"
    rc = cli.main(["train", "shd", "--backend", "software", "--epochs", "1", "--out", str(out),
                   "--data-dir", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "shd_train.h5" in err and f"log: {out / 'train.log'}" in err
    assert "shd_train.h5" in (out / "train.log").read_text()


def test_unexpected_failure_logs_traceback(tmp_path, monkeypatch):
    def broken(net, raster, times_us):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(T, "_forward", broken)
    with pytest.raises(TrainError, match=r"RuntimeError: backend exploded \(traceback in "):
        run(_settings(tmp_path / "f", epochs=1))
    log = (tmp_path / "f" / "train.log").read_text()
    assert "Traceback" in log and "backend exploded" in log


def test_shd_trains_on_small_files(tmp_path):
    from tests.test_tasks import write_shd_dir

    (tmp_path / "shd").mkdir()
    data = write_shd_dir(tmp_path / "shd", n_train=8, n_test=4)
    res = run(TrainSettings(task="shd", backend="software", out=str(tmp_path / "run"),
                            data_dir=str(data), input_channels=50, hidden=12, epochs=1,
                            batch_size=4, progress=False))
    assert res["network"]["recurrent"] is True and res["network"]["n_in"] == 50
    assert res["data"]["input_channels"] == 50
    assert 0.0 <= res["final_test_accuracy"] <= 1.0


def test_mnist_software_learns(tmp_path):
    """Two epochs on 1000 MNIST images: far above chance (10 %) on 200 test images."""
    res = run(TrainSettings(task="mnist", backend="software", out=str(tmp_path / "m"),
                            train_samples=1000, test_samples=200, epochs=2, progress=False))
    assert res["final_test_accuracy"] > 0.6, res["history"]
    assert res["network"]["n_in"] == 256
    assert 0 < res["final_test_spikes_per_neuron_input"] < 5


# ------------------------------------------------------------------ chip backend
@pytest.fixture(scope="module")
def mini_chip_file(tmp_path_factory):
    from spikeloop import MINI
    from spikeloop.model.chip import Chip

    path = tmp_path_factory.mktemp("chip") / "mini-1.npz"
    Chip.calibrated(MINI, 1).save(path)
    return path


def _chip_settings(out, chip_file, **kw):
    return _settings(out, **{"backend": "fast", "preset": "mini", "chip_seed": 1,
                             "chip_file": chip_file and str(chip_file), "hidden": None,
                             "lr": 1e-2,
                             "train_samples": 40, "test_samples": 20, **kw})


def test_fast_backend_in_the_loop_and_resume(tmp_path, mini_chip_file):
    """Yin-Yang on the mini chip (fast backend): results carry the emulated cost per
    image, and 1 epoch + --resume for 1 more equals 2 epochs, chip noise included."""
    full = run(_chip_settings(tmp_path / "full", mini_chip_file, epochs=2))
    assert full["network"]["n_hidden"] == 8                 # one half of mini
    emu = full["emulation"]
    assert emu["test_pass"]["samples"] == 20
    assert emu["cycles_per_image"] == pytest.approx(emu["emulated_us_per_image"] * 125)
    # 20 ADC samples of 212 cycles each: the window is at least 20 x 1.696 us
    assert emu["emulated_us_per_image"] >= 20 * 212 / 125
    assert emu["test_pass"]["xbar_drops"] >= 0 and emu["backend_wall_s_per_image"] > 0
    assert full["history"][0]["train_chip"]["samples"] == 40
    assert (tmp_path / "full" / "chip.npz").is_file()
    run(_chip_settings(tmp_path / "split", mini_chip_file, epochs=1))
    resumed = run(_chip_settings(tmp_path / "split", None, epochs=2, resume=True))
    a, b = _comparable(full), _comparable(resumed)
    for r in (a, b):
        r["args"].pop("chip_file")
        r["emulation"].pop("backend_wall_s_per_image")
    assert a == b
    _assert_same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "split"))
    with pytest.raises(TrainError, match="holds chip 1 of preset 'mini', not chip 2"):
        run(_chip_settings(tmp_path / "other", mini_chip_file, chip_seed=2, epochs=1))


def test_surrogate_at_reaches_the_loop_gradient(tmp_path, mini_chip_file):
    """--surrogate-at model changes the loop's gradient, not its first measurement."""
    a = run(_chip_settings(tmp_path / "a", mini_chip_file, epochs=1, train_samples=20))
    b = run(_chip_settings(tmp_path / "b", mini_chip_file, epochs=1, train_samples=20,
                           surrogate_at="model"))
    assert a["args"]["surrogate_at"] == "measured" and b["args"]["surrogate_at"] == "model"
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(TrainError, match="surrogate_at: checkpoint 'model', now 'measured'"):
        run(_chip_settings(tmp_path / "b", None, epochs=2, resume=True))


def test_init_from_a_trained_network(tmp_path):
    run(_settings(tmp_path / "a", epochs=1))
    start = _weights(tmp_path / "a")
    # lr so small that one epoch moves no weight by more than a few ulps of Adam's step
    res = run(_settings(tmp_path / "b", epochs=1, init=str(tmp_path / "a" / "network.pt"),
                        lr=1e-12, seed=9))
    after = _weights(tmp_path / "b")
    for k in start:
        assert torch.allclose(start[k], after[k], atol=1e-9), k
    assert "init: weights from" in (tmp_path / "b" / "train.log").read_text()
    assert res["args"]["init"].endswith("network.pt")
    with pytest.raises(TrainError, match="--init .*its network is .*'n_hidden': 16.*"
                                         "this task's is .*'n_hidden': 5"):
        run(_settings(tmp_path / "c", epochs=1, hidden=5,
                      init=str(tmp_path / "a" / "network.pt")))


def test_network_too_large_for_the_chip_is_refused(tmp_path, mini_chip_file):
    with pytest.raises(TrainError, match=r"the network 5 -> 20 -> 3 does not fit chip preset "
                                         r"'mini': .*--hidden.*log: "):
        run(_chip_settings(tmp_path / "big", mini_chip_file, hidden=20, epochs=1))


def test_noise_model_reaches_the_chip(tmp_path, mini_chip_file):
    """--noise-model binomial calibrates the chip with that generator and keeps it
    in the run's chip file (a replay runs it); a --chip file with another one,
    and the option without a chip, are refused."""
    from spikeloop.model.chip import Chip

    run(_chip_settings(tmp_path / "b", None, epochs=1, train_samples=20,
                       noise_model="binomial"))
    assert Chip.load(tmp_path / "b" / "chip.npz").analog.noise_model == "binomial"
    assert "membrane noise binomial" in (tmp_path / "b" / "train.log").read_text()
    with pytest.raises(TrainError, match="--noise-model binomial: the chip file .* holds a "
                                         "chip with the box-muller generator"):
        run(_chip_settings(tmp_path / "c", mini_chip_file, epochs=1, noise_model="binomial"))
    with pytest.raises(TrainError, match="--chip-seed, --chip and --noise-model apply"):
        run(_settings(tmp_path / "d", backend="software", noise_model="binomial"))
