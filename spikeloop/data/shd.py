"""Spiking Heidelberg Digits (SHD; Cramer, Stradmann, Schemmel, Zenke 2020) from local files.

The standard files ``shd_train.h5`` and ``shd_test.h5`` (or the distributed
``.h5.gz``, decompressed in memory) in one directory, each an HDF5 file with

- ``spikes/times``: per sample a variable-length array of spike times in
  seconds (biological time);
- ``spikes/units``: per sample a variable-length array (uint16) of the firing
  channel, ``0 .. 699``;
- ``labels``: ``[N]`` class of each sample, ``0 .. 19`` (English digits 0-9,
  German digits 10-19);
- (``extra/...``: speaker and metadata, not read).

Spikes stay sparse in memory; :meth:`SHDDataset.get_batch` bins a batch onto a
grid of ``n_steps`` bins of ``max_time_s / n_steps`` seconds, time-major
``[n_steps, batch, 700]`` float32: a spike at ``t`` counts in bin
``floor(t / dt_s)``; spikes at or after ``max_time_s`` are dropped; the value
is the number of spikes of that channel in that bin (``binary=True``: 0/1).
The defaults (100 bins over 1.4 s) are those of the common SHD tutorials; on
the chip, 1000x faster, 1.4 s is 1.4 ms.
"""
from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spikeloop.data.batching import DataError

N_CHANNELS = 700
N_CLASSES = 20
FILES = {"train": "shd_train.h5", "test": "shd_test.h5"}
DEFAULT_N_STEPS = 100
DEFAULT_MAX_TIME_S = 1.4


def bin_spikes(times_s, units, *, n_steps: int, max_time_s: float,
               n_channels: int = N_CHANNELS) -> np.ndarray:
    """Spike counts ``[n_steps, n_channels]`` (int64) of one sample."""
    t = np.asarray(times_s, dtype=np.float64)
    u = np.asarray(units, dtype=np.int64)
    step = np.floor(t / (max_time_s / n_steps)).astype(np.int64)
    keep = (t >= 0) & (step < n_steps)
    flat = step[keep] * n_channels + u[keep]
    return np.bincount(flat, minlength=n_steps * n_channels).reshape(n_steps, n_channels)


@dataclass
class SHDDataset:
    """Sparse SHD samples; batches are binned on request (see the module docstring)."""

    times_s: list[np.ndarray]
    units: list[np.ndarray]
    labels: torch.Tensor
    n_steps: int = DEFAULT_N_STEPS
    max_time_s: float = DEFAULT_MAX_TIME_S
    binary: bool = False
    name: str = "shd"
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if not (len(self.times_s) == len(self.units) == len(self.labels)):
            raise DataError(f"{self.name}: {len(self.times_s)} times, {len(self.units)} units, "
                            f"{len(self.labels)} labels; they must match")
        if self.n_steps < 1 or self.max_time_s <= 0:
            raise ValueError(f"n_steps = {self.n_steps}, max_time_s = {self.max_time_s}; "
                             "need n_steps >= 1, max_time_s > 0")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dt_s(self) -> float:
        return self.max_time_s / self.n_steps

    @property
    def n_classes(self) -> int:
        return N_CLASSES

    def get_batch(self, indices) -> torch.Tensor:
        """Time-major raster ``[n_steps, len(indices), 700]`` float32."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((self.n_steps, len(idx), N_CHANNELS), dtype=np.float32)
        for b, i in enumerate(idx):
            out[:, b] = bin_spikes(self.times_s[i], self.units[i], n_steps=self.n_steps,
                                   max_time_s=self.max_time_s)
        if self.binary:
            np.minimum(out, 1.0, out=out)
        return torch.from_numpy(out)


def _open_h5(data_dir: Path, split: str):
    import h5py

    name = FILES[split]
    for path, gz in ((data_dir / name, False), (data_dir / (name + ".gz"), True)):
        if not path.is_file():
            continue
        try:
            if gz:
                with gzip.open(path, "rb") as f:
                    return h5py.File(io.BytesIO(f.read()), "r"), path
            return h5py.File(path, "r"), path
        except (OSError, EOFError, zlib.error, ValueError) as e:
            kind = ("corrupt or truncated gzip data" if gz and not str(e).startswith("Unable")
                    else "not a readable HDF5 file")
            why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            raise DataError(f"{path}: {kind} ({why})") from None
    raise DataError(f"{data_dir}: SHD {split} file '{name}' (or '{name}.gz') not found; an SHD "
                    f"directory holds {FILES['train']} and {FILES['test']}")


def load_shd(data_dir, split: str = "train", *, n_steps: int = DEFAULT_N_STEPS,
             max_time_s: float = DEFAULT_MAX_TIME_S, binary: bool = False) -> SHDDataset:
    """Read ``shd_{split}.h5`` from ``data_dir``."""
    if split not in FILES:
        raise ValueError(f"split = {split!r}; allowed: {tuple(FILES)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"SHD directory {data_dir} does not exist")
    f, path = _open_h5(data_dir, split)
    with f:
        try:      # a corrupt file fails anywhere: in a lookup as in a read
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in f:
                    raise DataError(f"{path}: dataset '{key}' missing; an SHD file holds "
                                    "spikes/times, spikes/units and labels")
            times = [np.asarray(a, dtype=np.float64) for a in f["spikes/times"][:]]
            units = [np.asarray(a, dtype=np.int64) for a in f["spikes/units"][:]]
            labels = np.asarray(f["labels"][:], dtype=np.int64).reshape(-1)
        except DataError:
            raise
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise DataError(f"{path}: unreadable SHD data ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not len(times) == len(units) == len(labels):
        raise DataError(f"{path}: {len(times)} spike-time lists, {len(units)} unit lists and "
                        f"{len(labels)} labels; they must match")
    for k, (t, u) in enumerate(zip(times, units, strict=True)):
        if len(t) != len(u):
            raise DataError(f"{path}: sample {k} has {len(t)} times but {len(u)} units")
        if len(u) and (u.min() < 0 or u.max() >= N_CHANNELS):
            raise DataError(f"{path}: sample {k} has unit {u.max()} outside 0..699")
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"{path}: labels outside 0..19")
    return SHDDataset(times, units, torch.from_numpy(labels), n_steps=n_steps,
                      max_time_s=max_time_s, binary=binary, name=f"shd-{split}",
                      info={"source": str(path), "split": split})
