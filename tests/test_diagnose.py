"""``spikeloop diagnose`` (spikeloop/training/diagnose.py): a loop's network on
the chip beside its ideal model, and the gradients of both."""
import json

import pytest
import torch
import torch.nn.functional as F

from spikeloop.cli import main
from spikeloop.model.chip import Chip
from spikeloop.training.diagnose import (
    DiagnoseError,
    DiagnoseSettings,
    _grad,
    _loss_parts,
    _measured_pass,
    _params,
    _upstream,
    diagnose,
)
from spikeloop.training.tasks import build_task
from spikeloop.training.train import load_network


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("diagnose") / "yy"
    assert main(["train", "yinyang", "--backend", "fast", "--preset", "mini", "--chip-seed",
                 "1", "--epochs", "1", "--train-samples", "40", "--test-samples", "10",
                 "--dropout", "0.3", "--surrogate-at", "model-pre-reset", "--out", str(d),
                 "--no-progress"]) == 0
    # one epoch on 40 samples leaves the hidden layer silent; its input weights made
    # larger (clamped to the chip's range) so that the chip's hidden neurons spike
    meta = torch.load(d / "network.pt", weights_only=False)
    w = meta["state_dict"]["hidden_synapse.weight"]
    meta["state_dict"]["hidden_synapse.weight"] = (w * 8).clamp(-63 / 240, 63 / 240)
    torch.save(meta, d / "network.pt")
    return d


def _batch(run_dir, n=10):
    chip = Chip.load(run_dir / "chip.npz")
    task = build_task("yinyang", cfg=chip.cfg, train_samples=40, test_samples=1)
    x, y = task.train.get_batch(torch.arange(n).numpy()), task.train.labels[:n]
    with torch.no_grad():
        raster, times = task.encode(x)
    return chip, task, raster, times, y


def test_the_loop_gradient_is_the_training_steps_and_its_parts_add_up(run_dir):
    """The diagnosis's loop pass is the training's forward (the same gradient for
    the same noise keys), and its three parts add up to the training loss's gradient."""
    chip, task, raster, times, y = _batch(run_dir)
    net, _ = load_network(run_dir / "network.pt", chip=chip, backend="fast")
    net.surrogate_at = "model-pre-reset"
    names = sorted(_params(net))
    hp = {"spike_reg": task.spike_reg, "weight_reg": task.weight_reg}
    start = int(net.samples_run)

    def training_loss(out):
        return F.nll_loss(out.log_probs, y) + net.regularization(
            out, spike_strength=hp["spike_reg"], weight_strength=hp["weight_reg"])

    g_train = _grad(net, names, training_loss(net(raster, times_us=times)))
    net.samples_run.fill_(start)                        # the same noise keys
    out = _measured_pass(net, raster, times)()
    parts = [_grad(net, names, v) for v in _loss_parts(net, out, y, hp).values()]
    assert float(out.z_hidden.detach().sum()) > 0 and float(g_train.norm()) > 0
    # the same sum in another order: equal to the float's rounding
    torch.testing.assert_close(sum(parts), g_train, rtol=1e-5,
                               atol=1e-6 * float(g_train.abs().max()))
    torch.testing.assert_close(_grad(net, names, training_loss(out)), g_train, rtol=0, atol=0)
    # the activity direction lives on the hidden weights: the readout's are left out
    ideal, _ = load_network(run_dir / "network.pt", backend="software")
    act = _grad(ideal, names, ideal(raster).z_hidden.sum())
    mask = _upstream(ideal, names, act)
    pieces = dict(zip(names, mask.split([_params(ideal)[k].numel() for k in names]),
                      strict=True))
    assert not pieces["output_synapse.weight"].any()
    assert pieces["hidden_synapse.weight"].all()
    # another noise key gives another gradient: the keys matter, so the check above bites
    g_other = _grad(net, names, training_loss(net(raster, times_us=times)))
    assert not torch.equal(g_other, g_train)


def test_diagnose_reports_both_sides_and_keeps_earlier_reports(run_dir, capsys):
    args = ["diagnose", str(run_dir), "--samples", "20", "--batch", "10"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "hidden dropout 0.3 (as the run trained)" in text
    assert "wrong classes with their maximum at sample 0" in text
    assert main(args) == 0                              # the same again: a second report
    a = json.loads((run_dir / "diagnose.json").read_text())
    b = json.loads((run_dir / "diagnose-2.json").read_text())
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b                                       # same seeds, same network: same figures
    for side in ("loop", "ideal"):
        r = a[side]
        assert r["spikes_per_neuron_input"] == pytest.approx(sum(r["spikes_per_bin"]))
        assert 0 <= r["wrong_classes_max_at_first_sample"] <= 1
        assert 0 <= r["accuracy"] <= 1 and r["nll"] > 0
        comp = a["gradient"]["activity_component"][side]
        assert comp["total"] == pytest.approx(
            comp["correct class"] + comp["wrong classes"] + comp["regularisers"])
        assert -1 <= comp["total"] <= 1
    assert len(a["gradient"]["cosine_per_batch"]) == 2
    assert a["dropout"] == 0.3 and a["surrogate_at"] == "model-pre-reset"
    # the chip and the ideal model differ (mismatch, noise): the spikes are not the same
    assert a["loop"]["spikes_per_bin"] != a["ideal"]["spikes_per_bin"]


def test_diagnose_refuses_a_software_run_and_bad_options(run_dir, tmp_path, capsys):
    sw = tmp_path / "sw"
    assert main(["train", "yinyang", "--epochs", "1", "--train-samples", "20",
                 "--test-samples", "10", "--out", str(sw), "--no-progress"]) == 0
    (sw / "chip.npz").write_bytes((run_dir / "chip.npz").read_bytes())
    capsys.readouterr()
    assert main(["diagnose", str(sw)]) == 2
    err = capsys.readouterr().err
    assert "backend 'software'" in err and len(err.strip().splitlines()) == 1
    assert main(["diagnose", str(run_dir), "--dropout", "1.5"]) == 2
    assert "--dropout 1.5" in capsys.readouterr().err
    with pytest.raises(DiagnoseError, match="--samples 0"):
        diagnose(DiagnoseSettings(run_dir=str(run_dir), samples=0))
