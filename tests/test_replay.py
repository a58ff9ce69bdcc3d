"""``spikeloop replay`` (spikeloop/training/replay.py): a network trained on the
fast backend, run again on the co-simulated RTL, batches on several workers."""
import json

import pytest
import torch

from spikeloop.cli import main
from spikeloop.data import Batches
from spikeloop.model.chip import Chip
from spikeloop.training.replay import ReplayError, ReplaySettings, outputs_digest, replay
from spikeloop.training.tasks import build_task
from spikeloop.training.train import load_network


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay") / "yy"
    assert main(["train", "yinyang", "--backend", "fast", "--preset", "mini", "--chip-seed",
                 "1", "--epochs", "1", "--train-samples", "40", "--test-samples", "10",
                 "--out", str(d), "--no-progress"]) == 0
    return d


@pytest.mark.cosim
def test_replay_on_two_workers_is_the_replay_batch_by_batch(run_dir):
    """Three batches, two at a time in their own simulator processes: every batch
    equals the fast backend, and each ran with the noise keys of a replay batch by
    batch (its outputs are those of the fast network run batch after batch)."""
    lines = []
    rep = replay(ReplaySettings(run_dir=str(run_dir), samples=6, batch=2, workers=2),
                 log=lines.append)
    assert rep["passed"] and rep["workers"] == 2 and rep["samples"] == 6
    assert [r["batch"] for r in rep["batches"]] == [0, 1, 2]
    assert "2 simulator process(es) at once" in lines[0]
    chip = Chip.load(run_dir / "chip.npz")
    net, _ = load_network(run_dir / "network.pt", chip=chip, backend="fast")
    task = build_task("yinyang", cfg=chip.cfg, test_samples=6)
    digests = []
    with torch.no_grad():
        for x, _ in Batches(task.test, 2, shuffle=False):
            raster, times = task.encode(x)
            digests.append(outputs_digest(net(raster, times_us=times)))
    assert [r["outputs_sha256"] for r in rep["batches"]] == digests
    assert len(set(digests)) == 3
    assert json.loads((run_dir / "replay.json").read_text())["batches"] == rep["batches"]


def test_replay_refuses_a_negative_worker_count(run_dir):
    with pytest.raises(ReplayError, match=r"--workers -1; allowed: .* --workers >= 0"):
        replay(ReplaySettings(run_dir=str(run_dir), workers=-1))
