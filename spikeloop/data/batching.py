"""Dataset containers and the seeded batch iterator shared by all datasets.

A dataset here is anything with ``len(ds)``, a ``labels`` tensor ``[N]`` (int64)
and ``get_batch(indices) -> torch.Tensor``:

- :class:`ArrayDataset` holds its inputs as one tensor ``[N, ...]`` (MNIST
  intensities ``[N, 256]``, Yin-Yang coordinates ``[N, 5]``); a batch is
  ``inputs[indices]``, batch dimension first.
- ``spikeloop.data.shd.SHDDataset`` keeps its spikes sparse and bins a batch on
  request into a time-major raster ``[steps, batch, 700]``.

:class:`Batches` turns a dataset into ``(inputs, labels)`` batches.  With
``shuffle=True`` the order of epoch ``e`` is the permutation drawn by
``numpy.random.default_rng([seed, e])``: the same seed and epoch give the same
batches on every machine, and each epoch differs from the others.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch


class DataError(ValueError):
    """A data set is missing, incomplete or malformed."""


class Dataset(Protocol):
    labels: torch.Tensor

    def __len__(self) -> int: ...

    def get_batch(self, indices: np.ndarray) -> torch.Tensor: ...


@dataclass
class ArrayDataset:
    """Inputs ``[N, ...]`` and integer labels ``[N]`` held in memory."""

    inputs: torch.Tensor
    labels: torch.Tensor
    name: str = ""
    class_names: Sequence[str] = ()
    #: where the data came from and how it was made (split, preprocessing, ...)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.inputs = torch.as_tensor(self.inputs)
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.labels.ndim != 1 or len(self.inputs) != len(self.labels):
            raise DataError(f"{self.name or 'dataset'}: {len(self.inputs)} inputs but labels "
                            f"of shape {tuple(self.labels.shape)}; expected [{len(self.inputs)}]")

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: np.ndarray) -> torch.Tensor:
        return self.inputs[torch.as_tensor(indices, dtype=torch.int64)]

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.labels.max()) + 1


class Batches:
    """Iterate a dataset in batches of ``(inputs, labels)``.

    ``iter(batches)`` runs the next epoch (0, 1, 2, ...); ``batches.epoch(e)``
    runs epoch ``e`` explicitly.  The last, smaller batch is kept unless
    ``drop_last``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size = {batch_size!r}; allowed: an integer >= 1")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.next_epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices in the order epoch ``epoch`` visits them."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield self.dataset.get_batch(idx), self.dataset.labels[torch.as_tensor(idx)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.next_epoch = self.next_epoch, self.next_epoch + 1
        return self.epoch(epoch)
