"""The tasks of `spikeloop train`: subsets, encoders, sizes, SHD channel grouping, refusals."""
import math

import numpy as np
import pytest
import torch

from spikeloop import FULL, MINI
from spikeloop.data.encoding import PAPER_DT_US, PAPER_N_STEPS
from spikeloop.training.tasks import (
    SHD_N_STEPS,
    YINYANG_SPAN_US,
    TaskError,
    build_task,
    channel_groups,
    shd_defaults,
    stratified_subset,
)
from tests.test_data import _write_shd  # the SHD HDF5 layout, written once

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ subsets
def test_stratified_subset_is_balanced_ordered_and_seed_free():
    labels = np.repeat(np.arange(4), [10, 3, 7, 10])
    idx = stratified_subset(labels, 10)
    assert np.all(np.diff(idx) > 0)
    # round robin over classes: ranks 0, 1 of every class (8), then rank 2 of classes 0, 1
    assert np.bincount(labels[idx], minlength=4).tolist() == [3, 3, 2, 2]
    assert idx.tolist() == [0, 1, 2, 10, 11, 12, 13, 14, 20, 21]
    assert np.array_equal(stratified_subset(labels, 10), idx)
    # a class that runs out leaves its turns to the others
    assert np.bincount(labels[stratified_subset(labels, 24)], minlength=4).tolist() == \
        [7, 3, 7, 7]
    assert stratified_subset(labels, 100).tolist() == list(range(30))
    assert stratified_subset(labels, None).tolist() == list(range(30))
    with pytest.raises(TaskError, match="subset size = 0"):
        stratified_subset(labels, 0)


# ------------------------------------------------------------------ MNIST
def test_mnist_task_paper_sizes_and_latency_code():
    task = build_task("mnist", train_samples=40, test_samples=20)
    assert (task.n_in, task.n_hidden, task.n_out) == (256, 246, 10)
    assert (task.n_steps, task.dt_us, task.recurrent) == (PAPER_N_STEPS, PAPER_DT_US, False)
    assert math.isclose(task.window_us, 34.0)
    assert len(task.train) == 40 and len(task.test) == 20
    assert np.bincount(task.train.labels.numpy()).tolist() == [4] * 10
    x = task.train.get_batch(np.arange(8))
    raster, times = task.encode(x)
    assert raster.shape == (20, 8, 256) and times.shape == (8, 256)
    assert set(raster.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(raster.sum(0) <= 1)
    # a spike in the raster exactly where a time is given, in the step that covers it
    spiking = ~torch.isnan(times)
    assert torch.equal(raster.sum(0) > 0, spiking)
    b, i = torch.nonzero(spiking, as_tuple=True)
    steps = torch.floor(times[b, i] / PAPER_DT_US).long()
    assert torch.all(raster[steps, b, i] == 1)
    assert float(times[spiking].min()) == 0.0          # batch-shifted
    assert float(times[spiking].max()) < task.window_us
    # dark pixels (<= 0.2) never spike
    assert not torch.any(spiking & (x <= 0.2))


def test_hidden_override_and_refusals():
    assert build_task("mnist", hidden=7, train_samples=10, test_samples=10).n_hidden == 7
    with pytest.raises(TaskError, match="hidden = 0"):
        build_task("mnist", hidden=0)
    with pytest.raises(TaskError, match="train_samples = 0"):
        build_task("yinyang", train_samples=0)
    with pytest.raises(TaskError, match="task = 'cifar'; allowed: mnist, yinyang, shd"):
        build_task("cifar")
    with pytest.raises(TaskError, match="--input-channels is an SHD option"):
        build_task("mnist", input_channels=16)
    with pytest.raises(TaskError, match="generated in code"):
        build_task("yinyang", data_dir=".")


def test_mnist_missing_idx_files_named(tmp_path):
    with pytest.raises(TaskError, match="train-images-idx3-ubyte"):
        build_task("mnist", data_dir=str(tmp_path))
    with pytest.raises(TaskError, match="not a directory"):
        build_task("mnist", data_dir=str(tmp_path / "nowhere"))


# ------------------------------------------------------------------ Yin-Yang
def test_yinyang_linear_latency_code():
    task = build_task("yinyang", train_samples=30, test_samples=9)
    assert (task.n_in, task.n_out, task.n_hidden) == (5, 3, 120)
    assert np.bincount(task.test.labels.numpy()).tolist() == [3, 3, 3]
    x = task.train.get_batch(np.arange(6))
    raster, times = task.encode(x)
    assert raster.shape == (20, 6, 5)
    expected = (1.0 - x.double()) * YINYANG_SPAN_US
    assert torch.allclose(times, expected)
    assert torch.all(times[:, 4] == 0)                  # the bias spikes first
    assert torch.all(raster.sum(0) == 1)                # every input spikes once
    steps = torch.floor(times / PAPER_DT_US).long()
    assert torch.equal(raster.argmax(0), steps)


def test_yinyang_default_hidden_fits_a_half_of_the_preset():
    assert build_task("yinyang", cfg=MINI, train_samples=3).n_hidden == MINI.columns_per_half
    assert build_task("yinyang", cfg=FULL, train_samples=3).n_hidden == 120


# ------------------------------------------------------------------ SHD
def write_shd_dir(path, n_train=6, n_test=4, seed=0):
    """Small SHD files in the standard format (random spikes, labels 0..19)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        samples = []
        for _ in range(n):
            k = int(rng.integers(20, 60))
            samples.append((np.sort(rng.uniform(0, 1.5, k)), rng.integers(0, 700, k)))
        _write_shd(path / f"shd_{split}.h5", samples, np.arange(n) % 20)
    return path


def test_channel_groups_sum_neighbours():
    g = channel_groups(700, 128)
    assert g.shape == (700, 128) and torch.all(g.sum(1) == 1)
    sizes = g.sum(0)
    assert int(sizes.min()) == 5 and int(sizes.max()) == 6 and int(sizes.sum()) == 700
    assert g[0, 0] == 1 and g[699, 127] == 1 and g[6, 1] == 1     # 6*128//700 = 1
    assert torch.equal(channel_groups(700, 700), torch.eye(700))
    for bad in (0, 701):
        with pytest.raises(TaskError, match=f"input_channels = {bad}; allowed: 1..700"):
            channel_groups(700, bad)


def test_shd_task_encodes_grouped_binary_raster(tmp_path):
    write_shd_dir(tmp_path)
    task = build_task("shd", data_dir=str(tmp_path))
    assert (task.n_in, task.n_out, task.n_hidden, task.recurrent) == (700, 20, 256, True)
    assert task.n_steps == SHD_N_STEPS and task.dt_us == PAPER_DT_US
    counts = task.train.get_batch(np.arange(3))
    raster, times = task.encode(counts)
    assert times is None
    assert torch.equal(raster, (counts > 0).float())

    task = build_task("shd", data_dir=str(tmp_path), input_channels=10, hidden=5,
                      train_samples=4)
    assert task.n_in == 10 and task.n_hidden == 5 and len(task.train) == 4
    counts = task.train.get_batch(np.arange(4))
    raster, _ = task.encode(counts)
    grouped = torch.stack([counts[..., 70 * j:70 * (j + 1)].sum(-1) for j in range(10)], -1)
    assert torch.equal(raster, (grouped > 0).float())


def test_shd_chip_defaults_and_fit(tmp_path):
    write_shd_dir(tmp_path)
    assert shd_defaults(None) == (700, 256)
    assert shd_defaults(FULL) == (64, 64)
    k, h = shd_defaults(MINI)
    task = build_task("shd", data_dir=str(tmp_path), cfg=MINI)
    assert (task.n_in, task.n_hidden) == (k, h) and k + h <= MINI.drivers_per_half
    with pytest.raises(TaskError, match=r"--input-channels 200 plus the 64 recurrent hidden "
                                        r"neurons are 264 .* has 256 .* by 8"):
        build_task("shd", data_dir=str(tmp_path), cfg=FULL, input_channels=200)


def test_shd_needs_its_files(tmp_path):
    with pytest.raises(TaskError, match="shd needs --data-dir"):
        build_task("shd")
    with pytest.raises(TaskError, match="shd_train.h5"):
        build_task("shd", data_dir=str(tmp_path))


def test_with_steps_keeps_the_code_on_a_shorter_window(tmp_path):
    for name in ("mnist", "yinyang"):
        task = build_task(name, train_samples=10, test_samples=10)
        short = task.with_steps(6)
        assert short.n_steps == 6 and short.window_us == pytest.approx(6 * PAPER_DT_US)
        x = task.test.get_batch(np.arange(5))
        r20, t20 = task.encode(x)
        r6, t6 = short.encode(x)
        assert r6.shape == (6, 5, task.n_in)
        assert torch.equal(r6, r20[:6])                     # the same spikes, window cut
        inside = t20 < 6 * PAPER_DT_US
        assert torch.equal(t6[inside], t20[inside])
        assert torch.all(torch.isnan(t6[~inside]))
    write_shd_dir(tmp_path)
    shd = build_task("shd", data_dir=str(tmp_path), input_channels=7).with_steps(10)
    raster, _ = shd.encode(shd.test.get_batch(np.arange(2)))
    assert raster.shape == (10, 2, 7)
    with pytest.raises(TaskError, match="n_steps = 0"):
        shd.with_steps(0)


def test_mnist_from_idx_files(tmp_path):
    from spikeloop.data import write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    task = build_task("mnist", data_dir=str(tmp_path), train_samples=10)
    assert len(task.train) == 10 and len(task.test) == 6 and task.n_in == 256
    assert "IDX files in" in task.info["data"]
