"""``spikeloop train``: surrogate-gradient training in software or in the loop on a chip.

    from spikeloop.training.train import TrainSettings, run
    result = run(TrainSettings(task="yinyang", backend="software", epochs=5, out="build/yy"))

One flag switches the backend; the network code does not change:
``software`` is :class:`spikeloop.nn.SoftwareNetwork` (the ideal model),
``fast`` / ``cosim`` is :class:`spikeloop.nn.chip_network.ChipNetwork` on the chip
instance ``(preset, chip seed)``, calibrated once by measurement and kept as
``DIR/chip.npz`` (a resumed run reloads it).

One training step (docs/paper.md, "The MNIST experiment, as run"): encode the batch
(:mod:`spikeloop.training.tasks`), ``out = net(raster, times_us=...)``, loss = NLL of
``out.log_probs`` + ``net.regularization(out)`` (5e-4 * mean squared hidden
spike count + 0.1 * mean squared hidden weight), Adam step, ``net.after_step()``
(clamps the hidden weights to the chip's range).  The learning rate is
multiplied by ``lr_decay`` after every epoch.

Seeds: ``seed`` draws the initial weights (a ``torch.Generator``) and the
order of the training samples (epoch ``e`` visits the permutation of
``numpy.random.default_rng([seed, e])``); the chip seed picks the specimen;
``run_seed`` seeds the chip's temporal noise, keyed per sample by the number of
samples the network has run before it (a buffer in its state).  The same
settings give bit-identical weights and results (wall times aside), and a run
continued with ``resume`` gives what an uninterrupted run gives.

Files in ``out``:

- ``checkpoint.pt``: after every epoch (written atomically): network,
  optimizer, scheduler, epoch, history, RNG states, settings;
- ``network.pt``: the trained network (:func:`load_network` rebuilds it);
- ``results.json``: settings, seeds, per-epoch train loss/accuracy/spikes, test
  accuracy every ``test_every`` epochs and after the last, final test accuracy,
  hidden spikes per neuron and input, wall time, and for chip backends the
  emulated cycles and time per image;
- ``curves.png``, ``raster.png``, ``traces.png`` (:mod:`spikeloop.plots`);
- ``train.log``: everything printed, and the traceback of a failed run;
- ``chip.npz``: the calibrated chip instance (chip backends): calibrated at
  the start, or copied from ``chip_file``; a resumed run, or a new run in a
  directory that holds one, loads it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import random
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikeloop import plots
from spikeloop.backends import check_backend_device
from spikeloop.base.config import PRESETS, ChipConfig
from spikeloop.base.files import (
    DirLock,
    FileError,
    atomic_open,
    atomic_write_text,
    check_input_file,
    prepare_output_dir,
)
from spikeloop.base.settings import option
from spikeloop.data import Batches
from spikeloop.data.mnist import rotate as rotate_images
from spikeloop.model.chip import Chip
from spikeloop.model.noise import NOISE_MODELS
from spikeloop.nir.convert import NirError, init_kwargs
from spikeloop.nir.network import make_graph_network
from spikeloop.nn import LIFParameters, SoftwareNetwork
from spikeloop.nn.chip_network import HIDDEN_SPIKE_SOURCES, ChipNetwork
from spikeloop.nn.functional import SURROGATE_AT, SURROGATE_AT_WORDS
from spikeloop.nn.placement import PlacementError
from spikeloop.training.tasks import (
    LOOP_BACKENDS,
    TASKS,
    TRAIN_BACKENDS,
    Task,
    TaskError,
    build_task,
    speech_chip,
)

#: the paper (docs/paper.md): Adam, learning rate 1.5e-3 (tasks.PAPER_LR), x0.97 per
#: epoch, batch 100, 50 epochs, test every 5
PAPER_LR_DECAY = 0.97
PAPER_BATCH_SIZE = 100
PAPER_EPOCHS = 50
PAPER_TEST_EVERY = 5
#: readout: log-softmax of 10 x the maximum over time of each output membrane
READOUT_SCALE = 10.0

CHECKPOINT = "checkpoint.pt"
NETWORK = "network.pt"
RESULTS = "results.json"
LOG = "train.log"
CHIP_FILE = "chip.npz"
CHECKPOINT_FORMAT = 1

#: settings that may differ between a run and its --resume (nothing else may)
RESUMABLE_CHANGES = ("epochs", "out", "resume", "progress", "chip_file", "init", "device")
#: where a measured step's surrogate derivative is taken unless told (SURROGATE_AT)
SURROGATE_AT_DEFAULT = "measured"


def surrogate_at_option(runs: str, default: str = SURROGATE_AT_DEFAULT):
    """The ``--surrogate-at`` option of a command whose ``runs`` train in the loop."""
    return option(default, choices=SURROGATE_AT,
                  help=f"{runs}: take the surrogate derivative at the measured membrane "
                       "(measured: inject, then threshold, hxtorch's order), at the model's "
                       "membrane recomputed from the measured previous state (model), or the "
                       "same from the previous state with its reset undone (model-pre-reset: "
                       "the chip samples a step that spiked after the reset); default "
                       f"{default}")


def gain_sigma_option(part: str):
    """The ``--driver-gain-sigma`` (``part`` "driver") or ``--synapse-gain-sigma``
    ("synapse") option of a command that makes chips (model/mismatch.py)."""
    what = ("each synapse driver's efficacy left after its calibration" if part == "driver"
            else "each synapse's weight DAC gain (never calibrated)")
    return option(0.0, help=f"relative std of {what}, kept in the chip file (default 0: "
                            "none; docs/analog.md)")


#: settings added after runs were made, with the value those runs had (a saved
#: run without the setting ran with it, whatever the default is now)
PREDATED = {"surrogate_at": "measured", "noise_model": None, "driver_gain_sigma": 0.0,
            "synapse_gain_sigma": 0.0}


def with_predated(saved: dict, now: dict) -> dict:
    """``saved`` (the settings a result was made with) with the :data:`PREDATED`
    values of the settings of ``now`` it lacks, for comparing with ``now``."""
    return {k: v for k, v in PREDATED.items() if k in now} | saved


class TrainError(ValueError):
    """A training run was refused or failed; the message says why (and where the log is)."""


@dataclass
class TrainSettings:
    """Everything a run depends on; the fields are ``spikeloop train``'s arguments."""

    task: str = option(positional=True, choices=TASKS,
                       help="mnist (the paper's), yinyang, shd (needs --data-dir)")
    out: str = option(required=True, help="run directory")
    backend: str = option("software", choices=TRAIN_BACKENDS,
                          help="software: the ideal model; fast or cosim: in the loop on "
                               "the emulated chip (default software)")
    preset: str | None = option(None,
                                help="chip design variant, a preset: full or mini (chip "
                                     "backends; with software it only sizes the network as "
                                     "on that chip)")
    chip_seed: int | None = option(None, help="which fabricated specimen (chip backends)")
    #: a calibrated chip file (``Chip.save``, ``spikeloop calibrate``) instead of calibrating
    chip_file: str | None = option(None, flag="--chip",
                                   help="calibrated chip file of that specimen (`spikeloop "
                                        "calibrate`); default: calibrate it at the start")
    #: the chip's membrane-noise generator (None: the chip file's, else Box-Muller)
    noise_model: str | None = option(None, choices=NOISE_MODELS,
                                     help="chip backends: the generator of the chip's "
                                          "membrane noise, box-muller (the default) or "
                                          "binomial (cheaper; docs/analog.md); a --chip file "
                                          "keeps its own")
    epochs: int = option(PAPER_EPOCHS, help=f"epochs to train in all (default {PAPER_EPOCHS}, "
                                            "the paper's)")
    batch_size: int = option(PAPER_BATCH_SIZE, help=f"default {PAPER_BATCH_SIZE}")
    #: Adam's learning rate; None: the task's (the paper's 1.5e-3; Yin-Yang 5e-3)
    lr: float | None = option(None, help="Adam learning rate (default: the task's; the "
                                         "paper's 1.5e-3, yinyang 5e-3)")
    lr_decay: float = option(PAPER_LR_DECAY, help=f"learning rate factor per epoch (default "
                                                  f"{PAPER_LR_DECAY})")
    #: regulariser strengths; None: the task's (the paper's 5e-4 and 0.1; Yin-Yang
    #: weight 1e-3)
    spike_reg: float | None = option(None, help="strength of the mean squared hidden spike "
                                                "count (default: the task's; the paper's 5e-4)")
    weight_reg: float | None = option(None, help="strength of the mean squared hidden weight "
                                                 "(default: the task's; the paper's 0.1, "
                                                 "yinyang 1e-3)")
    seed: int = option(0, help="initial weights and order of the training samples (default 0)")
    #: the chip's temporal-noise seed (chip backends; keyed with each sample's index)
    run_seed: int = option(0, help="chip backends: seed of the chip's temporal noise "
                                   "(default 0)")
    hidden: int | None = option(None, help="hidden neurons (default per task: mnist 246, "
                                           "yinyang 120 or one half's columns, shd 256 or "
                                           "what fits the chip)")
    train_samples: int | None = option(None, help="train on a stratified subset of this size "
                                                  "(default: all)")
    test_samples: int | None = option(None, help="test on a stratified subset of this size "
                                                 "(default: all)")
    data_dir: str | None = option(None, help="full MNIST IDX files, or the SHD HDF5 files")
    input_channels: int | None = option(None, help="shd: sum neighbouring channels into this "
                                                   "many inputs (default 700 in software, "
                                                   "what fits on a chip)")
    test_every: int = option(PAPER_TEST_EVERY, help=f"test every this many epochs, and after "
                                                    f"the last (default {PAPER_TEST_EVERY}; "
                                                    "0: after the last only)")
    resume: bool = option(False, help="continue the run in --out from its last checkpoint")
    #: a network.pt whose weights start the run (e.g. retraining a network on
    #: another chip instance); its sizes must match the task's
    init: str | None = option(None, help="start from the weights of this network.pt (e.g. "
                                         "retrain a network on another chip instance), or "
                                         "from a NIR graph or an imported one (`spikeloop "
                                         "nir import`): its network, with its sizes")
    #: torch threads.  One by default: the networks are small, and torch's worker
    #: threads do not flush subnormal numbers (see run()), which makes a second
    #: thread 30-60x slower, not faster.  Part of the run: the network's float sums
    #: (and, in software, the subnormals kept) follow the thread count, so another
    #: count gives other bits and a run is resumed or reused only with its own
    threads: int | None = option(1, help="torch threads (default 1: small networks; more "
                                         "threads keep subnormal numbers and are slower; "
                                         "the results depend on it, so a run resumes with "
                                         "its own)")
    #: the torch device of the fast backend's emulation (cpu, cuda, cuda:N): the same
    #: bits on either, so it may change on resume; the network's gradients stay on the cpu
    device: str = option("cpu", help="fast: the torch device of the chip's emulation, cpu "
                                     "(default), cuda or cuda:N (the same bits on either; the "
                                     "network's gradients stay on the cpu); may change on "
                                     "--resume")
    #: chip backends: the hidden spikes the gradient uses: the recorder's events (what
    #: the host sees: through the crossbar, timestamped, lost when a FIFO or the record
    #: memory overflows) or the analog side's own list (what no host sees)
    hidden_spikes: str = option("recorded", choices=HIDDEN_SPIKE_SOURCES,
                                help="chip backends: hidden spikes for the gradient from the "
                                     "recorded events (default, as the chip's host sees "
                                     "them) or from the analog side's own list (analog)")
    #: chip backends: where a measured step's surrogate derivative is taken: at the
    #: measured membrane (inject, then threshold: hxtorch's order) or at the model's
    #: membrane recomputed from the measured previous state
    surrogate_at: str = surrogate_at_option("chip backends")
    #: augmentation: dropout of hidden units during training (the same units for the
    #: whole batch: on a chip the dropped units' output weights are written as 0)
    dropout: float = option(0.0, help="training only: drop each hidden unit with this "
                                      "probability per batch (0..0.9; default 0)")
    #: augmentation (mnist): every training image rotated by an angle drawn uniformly
    #: from [-rotate, rotate] degrees
    rotate: float = option(0.0, help="mnist, training only: rotate each training image by "
                                     "a random angle in [-ROTATE, ROTATE] degrees (default 0)")
    #: the per-batch progress line on stderr
    progress: bool = option(True, flag="--no-progress", help="no per-batch progress line")

    def check(self) -> None:
        """Refuse impossible settings, naming the field and what is allowed."""
        if self.task not in TASKS:
            raise TrainError(f"task = {self.task!r}; allowed: {', '.join(TASKS)}")
        if self.backend not in TRAIN_BACKENDS:
            raise TrainError(f"backend = {self.backend!r}; allowed: {', '.join(TRAIN_BACKENDS)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise TrainError(f"preset = {self.preset!r}; allowed: {', '.join(sorted(PRESETS))}")
        if self.backend in LOOP_BACKENDS:
            if self.preset is None or self.chip_seed is None:
                raise TrainError(f"backend {self.backend!r} runs on a chip instance: give "
                                 "--preset (mini, full) and --chip-seed (an integer >= 0)")
        elif (self.chip_seed is not None or self.chip_file is not None
              or self.noise_model is not None):
            raise TrainError("--chip-seed, --chip and --noise-model apply to the chip backends "
                             "(fast, cosim); backend 'software' runs no chip (--preset alone "
                             "sizes the network)")
        if self.noise_model is not None and self.noise_model not in NOISE_MODELS:
            raise TrainError(f"noise_model = {self.noise_model!r}; allowed: "
                             f"{', '.join(NOISE_MODELS)}")
        ints = {"epochs": (self.epochs, 1), "batch_size": (self.batch_size, 1),
                "seed": (self.seed, 0), "run_seed": (self.run_seed, 0),
                "test_every": (self.test_every, 0)}
        if self.chip_seed is not None:
            ints["chip_seed"] = (self.chip_seed, 0)
        if self.threads is not None:
            ints["threads"] = (self.threads, 1)
        for name, (v, lo) in ints.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise TrainError(f"{name} = {v!r}; allowed: an integer >= {lo}")
        if self.lr is not None and not (isinstance(self.lr, int | float)
                                        and math.isfinite(self.lr) and self.lr > 0):
            raise TrainError(f"lr = {self.lr!r}; allowed: a number > 0")
        for name in ("spike_reg", "weight_reg"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v)
                                      and v >= 0):
                raise TrainError(f"{name} = {v!r}; allowed: a number >= 0")
        if self.hidden_spikes not in HIDDEN_SPIKE_SOURCES:
            raise TrainError(f"hidden_spikes = {self.hidden_spikes!r}; allowed: "
                             f"{', '.join(HIDDEN_SPIKE_SOURCES)}")
        if self.surrogate_at not in SURROGATE_AT:
            raise TrainError(f"surrogate_at = {self.surrogate_at!r}; allowed: "
                             f"{', '.join(SURROGATE_AT)}")
        if self.surrogate_at != "measured" and self.backend not in LOOP_BACKENDS:
            raise TrainError(f"--surrogate-at {self.surrogate_at} applies to the chip backends "
                             "(fast, cosim); backend 'software' measures nothing")
        if not (isinstance(self.dropout, int | float) and not isinstance(self.dropout, bool)
                and 0.0 <= self.dropout <= 0.9):
            raise TrainError(f"dropout = {self.dropout!r}; allowed: a number 0..0.9")
        if not (isinstance(self.rotate, int | float) and not isinstance(self.rotate, bool)
                and 0.0 <= self.rotate <= 180.0):
            raise TrainError(f"rotate = {self.rotate!r}; allowed: degrees 0..180")
        if self.rotate and self.task != "mnist":
            raise TrainError(f"--rotate applies to the images of mnist; task {self.task!r} "
                             "has no images")
        if not (isinstance(self.lr_decay, int | float) and 0 < self.lr_decay <= 1):
            raise TrainError(f"lr_decay = {self.lr_decay!r}; allowed: 0 < lr_decay <= 1")
        try:
            check_backend_device(self.backend, self.device)
        except ValueError as e:
            raise TrainError(str(e)) from None

    #: not an argument: a design variant of ``preset`` to train on instead of the
    #: preset itself (``spikeloop explore`` retraining on each variant); a ``--chip``
    #: file must hold a chip of this very variant
    variant: ChipConfig | None = None

    @property
    def cfg(self) -> ChipConfig | None:
        if self.variant is not None:
            return self.variant
        if self.preset is None:
            return None
        cfg = ChipConfig.preset(self.preset)
        # the paper's speech network needs every membrane sample streamed out
        return speech_chip(cfg) if self.task == "speech" else cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ output
class RunLog:
    """Messages to stdout and DIR/train.log; the per-batch progress line to stderr."""

    def __init__(self, path: Path, progress: bool):
        self.path = path
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.progress_on = progress
        self.tty = sys.stderr.isatty()
        self._line = False

    def info(self, msg: str) -> None:
        self._end_line()
        print(msg, flush=True)
        self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        self.file.flush()

    def to_file(self, msg: str) -> None:
        self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        self.file.flush()

    def progress(self, msg: str) -> None:
        if not self.progress_on:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + msg)
            self._line = True
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    def _end_line(self) -> None:
        if self._line:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._line = False

    def close(self) -> None:
        self._end_line()
        self.file.close()


# ------------------------------------------------------------------ network
def network_kwargs(settings: TrainSettings, task: Task) -> dict:
    """Constructor arguments shared by both network classes (stored in network.pt)."""
    return {"n_in": task.n_in, "n_hidden": task.n_hidden, "n_out": task.n_out,
            "recurrent": task.recurrent, "readout_scale": READOUT_SCALE,
            "params": dataclasses.asdict(LIFParameters(dt_us=task.dt_us))}


def make_network(backend: str, kwargs: dict, *, chip=None, generator=None, run_seed: int = 0,
                 device: str = "cpu", hidden_spikes: str = "recorded"):
    """SoftwareNetwork (``software``) or ChipNetwork on ``chip`` (``fast``/``cosim``,
    with the noise seed ``run_seed``; it is a buffer of the network's state too;
    ``device``: where the fast backend emulates the chip; the others run on the cpu)."""
    if "graph" in kwargs:       # a general network (spikeloop.nir: an imported NIR graph)
        return make_graph_network(backend, kwargs, chip=chip, run_seed=run_seed, device=device)
    kw = dict(kwargs)
    n_in, n_hidden, n_out = kw.pop("n_in"), kw.pop("n_hidden"), kw.pop("n_out")
    kw["params"] = LIFParameters(**kw["params"])
    if backend == "software":
        return SoftwareNetwork(n_in, n_hidden, n_out, generator=generator, **kw)

    if backend == "fast" and device != "cpu":
        kw["device"] = device
    return ChipNetwork(chip, n_in, n_hidden, n_out, backend=backend, generator=generator,
                       run_seed=run_seed, hidden_spikes=hidden_spikes, **kw)


def open_chip_run(run_dir: Path, command: str, error: type[Exception],
                  why: str = "") -> tuple[dict, Chip]:
    """The ``network.pt`` contents and the chip instance of a ``spikeloop train``
    run on a chip backend, for ``spikeloop <command>``; a missing file, an
    unreadable network.pt or a software run raise ``error`` naming the file (``why``:
    what the command does with the run, said when it is a software run)."""
    for f in ("network.pt", "chip.npz"):
        if not (run_dir / f).is_file():
            raise error(f"{run_dir / f} is missing: {command} takes the output directory "
                        "of `spikeloop train --backend fast` (or cosim)")
    try:
        meta = load_torch_file(run_dir / "network.pt", "a network.pt of spikeloop train",
                               ("backend", "settings", "state_dict", "network_kwargs"))
    except TrainError as e:
        raise error(str(e)) from None
    if meta["backend"] not in LOOP_BACKENDS:
        raise error(f"{run_dir} was trained on backend {meta['backend']!r}; {command} "
                    f"{why}needs a chip backend's run (fast or cosim)")
    return meta, Chip.load(run_dir / "chip.npz")


def load_network(path, *, chip=None, backend: str | None = None, device: str = "cpu"):
    """Rebuild a trained network from ``network.pt``.

    ``backend`` defaults to the one it was trained on; a chip backend needs
    ``chip`` (e.g. ``Chip.load(DIR / "chip.npz")``, or another chip instance
    to deploy it on); ``device``: where the fast backend emulates the chip.
    Returns ``(net, meta)``.
    """
    meta = load_torch_file(path, "a network.pt of spikeloop train",
                           ("state_dict", "network_kwargs", "backend"))
    if not isinstance(meta["backend"], str) or meta["backend"] not in TRAIN_BACKENDS:
        raise TrainError(f"{path}: not a readable network.pt of spikeloop train (backend "
                         f"{str(meta['backend'])[:40]!r}; allowed: {', '.join(TRAIN_BACKENDS)})")
    backend = backend or meta["backend"]
    if backend in LOOP_BACKENDS and chip is None:
        raise TrainError(f"load_network(backend={backend!r}) needs the chip instance (chip=)")
    try:
        net = make_network(backend, meta["network_kwargs"], chip=chip, device=device)
        state = meta["state_dict"]
        if backend != meta["backend"]:
            own = net.state_dict()
            state = {k: v for k, v in state.items() if k in own}
            net.load_state_dict(state, strict=False)
        else:
            net.load_state_dict(state)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        if isinstance(e, TrainError | PlacementError):    # PlacementError: not this chip's size
            raise
        raise TrainError(f"{path}: not a readable network.pt of spikeloop train (its network "
                         f"does not rebuild: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
    return net, meta


def _forward(net, raster: torch.Tensor, times_us: torch.Tensor | None):
    return net(raster, times_us=times_us)


def _after_step(net) -> None:
    net.after_step()


def augmentation_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s augmentation (rotation angles, dropout
    masks): keyed by (seed, epoch), so a resumed run draws what an uninterrupted
    one draws."""
    key = int(np.random.SeedSequence([seed, epoch, 0x617567]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(key & ((1 << 63) - 1))


def hidden_keep_mask(n_hidden: int, dropout: float, gen: torch.Generator,
                     dtype: torch.dtype) -> torch.Tensor:
    """One training step's hidden dropout mask (``net.hidden_keep``): each unit
    kept with probability ``1 - dropout``, the kept ones scaled by ``1 / (1 - dropout)``."""
    keep = torch.rand(n_hidden, generator=gen, dtype=torch.float64) >= dropout
    return keep.to(dtype) / (1.0 - dropout)


def augment(s: TrainSettings, net, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One training batch's augmentation: its images rotated (``s.rotate``) and
    the network's hidden dropout mask for this step set (``s.dropout``).  Draws
    nothing when both are off, so runs without augmentation are unchanged."""
    if s.rotate:
        angles = (torch.rand(len(x), generator=gen, dtype=torch.float64) * 2 - 1) * s.rotate
        x = rotate_images(x, angles)
    if s.dropout:
        net.hidden_keep = hidden_keep_mask(net.n_hidden, s.dropout, gen,
                                           net.output_synapse.weight.dtype)
    return x


def _stats_add(acc: dict, net) -> None:
    """Accumulate ``net.last_stats`` (chip backends) over the batches of a pass.

    ``x_per_sample`` entries add up ``x_per_sample * samples`` under ``x``
    (``cycles_per_sample`` -> ``cycles``); ``samples`` and the counters
    (``*_drops``, ``*_late``, ``*_overflow``, ``*_spikes``, ``cycles``,
    ``inputs_after_window``) add up;
    ``wall_s`` (the backend's wall time) adds up under ``acc["wall"]``, apart, so
    that what goes into the history is deterministic; any other number
    (``output_scale``, ``analog_steps``) keeps the last batch's value.
    """
    stats = getattr(net, "last_stats", None)
    if not stats:
        return
    samples = stats.get("samples")
    for k, v in stats.items():
        if isinstance(v, torch.Tensor | np.ndarray) and np.size(v) == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if k.endswith("_per_sample") and samples is not None:
            name = k[:-len("_per_sample")]
            acc[name] = acc.get(name, 0) + v * samples
        elif k == "wall_s":
            acc.setdefault("wall", {})
            acc["wall"]["wall_s"] = acc["wall"].get("wall_s", 0.0) + v
        elif k in ("samples", "cycles", "inputs_after_window") or k.endswith(_COUNTERS):
            acc[k] = acc.get(k, 0) + v
        else:
            acc[k] = v


_COUNTERS = ("_drops", "_late", "_overflow", "_spikes")


# ------------------------------------------------------------------ loop
class _Meter:
    def __init__(self, n_hidden: int):
        self.n_hidden = n_hidden
        self.n = 0
        self.loss = self.nll = self.correct = self.spikes = 0.0

    def add(self, loss: float, nll: float, correct: int, spikes: float, b: int) -> None:
        self.n += b
        self.loss += loss * b
        self.nll += nll * b
        self.correct += correct
        self.spikes += spikes

    def summary(self) -> dict:
        n = max(self.n, 1)
        return {"loss": self.loss / n, "nll": self.nll / n, "accuracy": self.correct / n,
                "spikes_per_neuron_input": self.spikes / (n * self.n_hidden), "samples": self.n}


def hyperparameters(s: TrainSettings, task: Task) -> dict:
    """The run's learning rate and regulariser strengths: the settings', else the task's;
    with an augmentation, its dropout and rotation too."""
    def pick(v, default):
        return default if v is None else v

    hp = {"lr": pick(s.lr, task.lr), "lr_decay": s.lr_decay,
          "spike_reg": pick(s.spike_reg, task.spike_reg),
          "weight_reg": pick(s.weight_reg, task.weight_reg), "batch_size": s.batch_size}
    if s.dropout or s.rotate:          # the augmentation, when there is one
        hp.update(dropout=s.dropout, rotate_deg=s.rotate)
    return hp


def _loss(net, out, y, hp: dict):
    nll = F.nll_loss(out.log_probs, y)
    reg = net.regularization(out, spike_strength=hp["spike_reg"],
                             weight_strength=hp["weight_reg"])
    return nll + reg, nll


def evaluate(net, task: Task, dataset, batch_size: int, hp: dict | None = None) -> dict:
    """Test loss (NLL + regularisers), accuracy, hidden spikes per neuron and input.

    ``hp``: the regulariser strengths (``spike_reg``, ``weight_reg``); default the task's.

    ``res["first"]`` is the network's output on the first batch (for the plots).
    """
    hp = hp or {"spike_reg": task.spike_reg, "weight_reg": task.weight_reg}
    meter = _Meter(task.n_hidden)
    chip_stats: dict = {}
    first = None
    net.eval()
    with torch.no_grad():
        for x, y in Batches(dataset, batch_size, shuffle=False):
            raster, times = task.encode(x)
            out = _forward(net, raster, times)
            first = out if first is None else first
            _stats_add(chip_stats, net)
            loss, nll = _loss(net, out, y, hp)
            correct = int((out.log_probs.argmax(1) == y).sum())
            meter.add(float(loss), float(nll), correct, float(out.z_hidden.sum()), len(y))
    net.train()
    res = meter.summary()
    res["first"] = first
    if chip_stats:
        res["chip_wall_s"] = chip_stats.pop("wall", {}).get("wall_s", 0.0)
        res["chip"] = chip_stats
    return res


def _rng_state(generator: torch.Generator) -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "init_generator": generator.get_state(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      *np_state[2:]),
            "python": random.getstate()}


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["init_generator"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def _atomic_save(obj, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def load_torch_file(path, what: str, keys=()) -> dict:
    """A checkpoint or network file, loaded with ``torch.load(weights_only=True)``
    only (the file's tensors and plain containers; never code from it).  A file
    that is missing, corrupt, truncated, not torch's, or lacks ``keys`` is a
    :class:`TrainError` naming the file; torch's own advice is not passed on."""
    try:
        p = check_input_file(path, what)
    except FileError as e:
        raise TrainError(str(e)) from None
    try:
        with warnings.catch_warnings():     # torch's notes on the pickle protocol: not ours
            warnings.simplefilter("ignore")
            obj = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as e:    # noqa: BLE001 - whatever the file holds, it is not what we wrote
        kind = ("holds objects other than tensors and plain containers"
                if "weights_only" in str(e) or "Unpickl" in type(e).__name__
                else "corrupt, truncated or not a torch file")
        raise TrainError(f"{path}: not readable as {what} ({kind})") from None
    if not isinstance(obj, dict):
        raise TrainError(f"{path}: not {what} (it holds a {type(obj).__name__}, not a dict)")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise TrainError(f"{path}: not {what} (it lacks {', '.join(missing)})")
    return obj


def _seeds(s: TrainSettings) -> dict:
    chip = s.backend in LOOP_BACKENDS
    return {"seed": s.seed, "init": s.seed, "data_order": s.seed,
            "augmentation": s.seed if (s.dropout or s.rotate) else None,
            "chip": s.chip_seed, "chip_noise": s.run_seed if chip else None}


def _graph_network(s: TrainSettings, task: Task, kwargs: dict, ckpt: dict | None,
                   log: RunLog) -> tuple[dict, Task, str | None]:
    """A general network instead of the paper's when ``--init`` names a NIR graph or
    the network file of an imported one (or the checkpoint holds one): its
    constructor arguments, the task with its spiking neurons as the hidden ones,
    and ``"nir"``, ``"network"`` or None (the paper's network)."""
    if ckpt is not None:
        saved = ckpt.get("network_kwargs", {})
        found = (saved, "network") if "graph" in saved else None
    elif s.init is not None:
        try:
            found = init_kwargs(s.init, n_in=task.n_in, n_out=task.n_out, dt_us=task.dt_us)
        except NirError as e:
            raise TrainError(str(e)) from None
        except Exception as e:    # noqa: BLE001 - a file torch cannot read: not its advice
            kind = ("holds objects other than tensors and plain containers"
                    if "weights_only" in str(e) or "Unpickl" in type(e).__name__
                    else f"corrupt, truncated or not a network file: {type(e).__name__}")
            raise TrainError(f"--init {s.init}: not a readable network.pt or NIR graph "
                             f"({kind})") from None
    else:
        found = None
    if found is None:
        return kwargs, task, None
    if s.hidden is not None:
        raise TrainError(f"--hidden {s.hidden}: the network of --init {s.init} has its own "
                         "sizes")
    graph, kind = found
    if kind == "nir":
        log.info(f"init: the network and its weights from the NIR graph {s.init}")
    pops = ", ".join(f"{p['name']!r} ({p['size']} {'LIF' if p['spiking'] else 'readout'})"
                     for p in graph["graph"]["populations"])
    log.info(f"network: {task.n_in} inputs -> populations {pops}")
    return graph, dataclasses.replace(task, n_hidden=graph["n_hidden"],
                                      recurrent=graph["recurrent"]), kind


def _load_init(net, kwargs: dict, path: Path, log: RunLog) -> None:
    """Start from the weights (parameters only: not a chip network's sample counter)
    of the network in ``path``."""
    if not path.is_file():
        raise TrainError(f"--init {path}: no such file (give a network.pt of a training run)")
    meta = load_torch_file(path, "a network.pt of spikeloop train",
                           ("state_dict", "network_kwargs", "backend"))
    theirs = {k: meta["network_kwargs"][k] for k in ("n_in", "n_hidden", "n_out", "recurrent")}
    ours = {k: kwargs[k] for k in theirs}
    if theirs != ours:
        raise TrainError(f"--init {path}: its network is {theirs}, this task's is {ours}")
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(meta["state_dict"][name])
    log.info(f"init: weights from {path} (trained on {meta['backend']}"
             + (f", chip {meta['chip_seed']}" if meta.get("chip_seed") is not None else "")
             + ")")


def setting_conflicts(saved: dict, now: TrainSettings, there: str = "there") -> list[str]:
    """The settings of ``now`` that differ from a run's saved arguments ``saved``,
    beyond :data:`RESUMABLE_CHANGES`, as ``"name: <there> old, now new"``; a
    setting the saved run predates counts as the value it ran with
    (:data:`PREDATED`, else the default)."""
    before = {f.name: f.default for f in dataclasses.fields(TrainSettings)} | PREDATED
    return [f"{k}: {there} {saved.get(k, before.get(k))!r}, now {v!r}"
            for k, v in now.to_dict().items()
            if k not in RESUMABLE_CHANGES and saved.get(k, before.get(k)) != v]


def train_or_reuse(st: TrainSettings, log, error: type[Exception] = TrainError) -> dict:
    """:func:`run` in ``st.out``, reused when a run there finished with the same
    settings (``log`` says so), resumed when one was interrupted; a run there with
    other settings is refused (``error``)."""
    out = Path(st.out)
    results = out / RESULTS
    if results.is_file():
        done = json.loads(results.read_text())
        conflicts = setting_conflicts(done["args"], st)
        if conflicts:
            raise error(f"{out} holds a run with other settings ({'; '.join(conflicts)}); "
                        "remove it or use another --out")
        if done.get("epochs_done") == st.epochs:
            log(f"  {out}: finished earlier (test accuracy "
                f"{done['final_test_accuracy']:.4f}), reused")
            return done
    st.resume = (out / CHECKPOINT).is_file()
    return run(st)


def _check_resume(saved: dict, now: TrainSettings, ckpt: Path) -> None:
    conflicts = setting_conflicts(saved, now, "checkpoint")
    if conflicts:
        raise TrainError(f"--resume: the arguments conflict with the run in {ckpt} "
                         f"({'; '.join(conflicts)}); only --epochs (and --device, "
                         "--no-progress, --chip, --init: the checkpoint holds the chip and "
                         "the weights) may change when resuming")


def _prepare_out(s: TrainSettings) -> tuple[Path, dict | None]:
    """Check ``out`` against ``resume``; return the directory and the checkpoint (or None)."""
    out = Path(s.out)
    ckpt_path = out / CHECKPOINT
    if s.resume:
        if not ckpt_path.is_file():
            raise TrainError(f"--resume: no checkpoint in {out} ({ckpt_path} does not exist); "
                             "start the run without --resume")
        ckpt = load_torch_file(ckpt_path, "checkpoint of spikeloop train", ("format",))
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise TrainError(f"{ckpt_path}: checkpoint format {ckpt.get('format')!r}; "
                             f"this version reads format {CHECKPOINT_FORMAT}")
        missing = [k for k in ("epoch", "network", "optimizer", "scheduler", "history", "rng",
                               "settings", "wall_s") if k not in ckpt]
        if missing:
            raise TrainError(f"{ckpt_path}: not a readable checkpoint of spikeloop train (it "
                             f"lacks {', '.join(missing)})")
        _check_resume(ckpt["settings"], s, ckpt_path)
        if s.epochs < ckpt["epoch"]:
            raise TrainError(f"--epochs {s.epochs}: the run in {out} has done {ckpt['epoch']} "
                             f"epochs already; give --epochs {ckpt['epoch'] + 1} or more to "
                             "continue it")
        return out, ckpt
    if ckpt_path.exists():
        raise TrainError(f"{out} already holds a run ({ckpt_path}); pass --resume to continue "
                         "it, or choose another --out")
    return out, None


def _get_chip(s: TrainSettings, out: Path, log: RunLog, resuming: bool):

    path = out / CHIP_FILE
    cfg = s.cfg
    if s.chip_file is not None and not resuming:
        src = Path(s.chip_file)
        try:
            check_input_file(src, "a chip file (spikeloop calibrate)")
            chip = Chip.load_expected(src, cfg, s.chip_seed)
        except ValueError as e:
            raise TrainError(f"--chip {e}") from None
        if s.noise_model is not None and s.noise_model != chip.analog.noise_model:
            raise TrainError(f"--noise-model {s.noise_model}: the chip file {src} holds a chip "
                             f"with the {chip.analog.noise_model} generator (spikeloop "
                             "calibrate --noise-model makes one with another)")
        if chip.calibration is None:
            log.info(f"chip: {src} holds no calibration: the chip runs with its nominal "
                     "settings, its mismatch uncorrected (spikeloop calibrate makes a "
                     "calibrated one)")
        chip.save(path)
        log.info(f"chip: loaded {src} (preset {cfg.name}, chip seed {s.chip_seed}, membrane "
                 f"noise {chip.analog.noise_model}); copied to {path}")
        return chip
    if resuming or path.exists():
        if not path.is_file():
            raise TrainError(f"--resume: the chip instance {path} is missing")
        try:
            chip = Chip.load_expected(path, cfg, s.chip_seed)
        except ValueError as e:
            raise TrainError(str(e)) from None
        log.info(f"chip: loaded {path} (preset {cfg.name}, chip seed {s.chip_seed}, membrane "
                 f"noise {chip.analog.noise_model})")
        return chip
    t0 = time.perf_counter()
    model = s.noise_model or NOISE_MODELS[0]
    log.info(f"chip: calibrating preset {cfg.name}, chip seed {s.chip_seed} (measurement only; "
             f"membrane noise {model})")
    chip = Chip.calibrated(cfg, s.chip_seed, noise_model=model)
    chip.save(path)
    log.info(f"chip: calibrated in {time.perf_counter() - t0:.1f} s; wrote {path}")
    return chip


def run(s: TrainSettings) -> dict:
    """Train as ``s`` says; returns the results dict (also written to ``out/results.json``).

    Raises :class:`TrainError` with the reason (and the log's path once ``out``
    exists) when the run is refused or fails.
    """
    s.check()
    if s.resume and not Path(s.out).is_dir():
        raise TrainError(f"--resume: no checkpoint in {s.out} (no such directory); start the "
                         "run without --resume")
    # the run directory: checked and locked before any work (one writer at a time)
    lock = DirLock(prepare_output_dir(s.out), "spikeloop train").acquire()
    try:
        out, ckpt = _prepare_out(s)
    except BaseException:
        lock.release()
        raise
    log = RunLog(out / LOG, s.progress)
    if lock.note:
        log.info(lock.note)
    # Software only: Adam's second moments of the tiny surrogate gradients of a silent
    # network go subnormal and slow the CPU down 30x.  Flushing acts on this thread
    # only (torch's intra-op worker threads keep subnormals: hence threads = 1).  Not
    # on a chip backend: its analog model must compute exactly what the co-simulation
    # (another process, default mode) computes.  torch has no getter; the process
    # default, off, is restored afterwards, and so is the number of threads.
    flush = s.backend == "software"
    if flush:
        torch.set_flush_denormal(True)
    threads_before = torch.get_num_threads()
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    try:
        return _run(s, out, ckpt, log)
    except (TrainError, TaskError) as e:
        log.to_file(f"error: {e}")
        raise TrainError(f"{e} (log: {log.path})") from e
    except KeyboardInterrupt:
        log.info(f"interrupted; continue from the last checkpoint with --resume "
                 f"(log: {log.path})")
        raise
    except Exception as e:
        log.to_file("error:\n" + traceback.format_exc())
        raise TrainError(f"training failed: {type(e).__name__}: {e} "
                         f"(traceback in {log.path})") from e
    finally:
        if flush:
            torch.set_flush_denormal(False)
        torch.set_num_threads(threads_before)
        log.close()
        lock.release()


@dataclass
class _Session:
    """What a run carries from epoch to epoch."""

    task: Task
    chip: object
    net: torch.nn.Module
    kwargs: dict
    hp: dict
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    history: list
    start_epoch: int = 0
    wall_before: float = 0.0
    #: the output of the latest test's first batch (for the plots), and the chip
    #: backend's wall time in the latest test pass
    first: object = None
    test_wall: float | None = None


def _run(s: TrainSettings, out: Path, ckpt: dict | None, log: RunLog) -> dict:
    t_start = time.perf_counter()
    run = _start(s, out, ckpt, log)
    batches = Batches(run.task.train, s.batch_size, shuffle=True, seed=s.seed)
    for epoch in range(run.start_epoch, s.epochs):
        _epoch(s, run, batches, epoch, log)
        _atomic_save({"format": CHECKPOINT_FORMAT, "epoch": epoch + 1,
                      "network": run.net.state_dict(), "optimizer": run.opt.state_dict(),
                      "scheduler": run.sched.state_dict(), "history": run.history,
                      "rng": _rng_state(run.generator), "settings": s.to_dict(),
                      "network_kwargs": run.kwargs,
                      "wall_s": run.wall_before + time.perf_counter() - t_start},
                     out / CHECKPOINT)
    history = _final_test(s, run, log)
    wall = run.wall_before + time.perf_counter() - t_start
    return _finish(s, out, run.task, run.net, run.kwargs, history, run.first, wall, log,
                   run.chip, run.test_wall, run.hp)


def _start(s: TrainSettings, out: Path, ckpt: dict | None, log: RunLog) -> _Session:
    """The task, the chip, the network, its optimiser and schedule; restored from
    the checkpoint ``ckpt`` when resuming, else from ``s.init`` when given."""
    log.info(f"spikeloop train {s.task}: backend {s.backend}"
             + (f", preset {s.preset}" if s.preset is not None else "") + f", out {out}"
             + (f" (resuming from epoch {ckpt['epoch']})" if ckpt else ""))
    log.info("seeds: " + ", ".join(f"{k} {v}" for k, v in _seeds(s).items() if v is not None)
             + ("; the noise of a sample is keyed by (chip_noise, its index among the samples "
                "run, kept in the network's state)" if s.backend in LOOP_BACKENDS else ""))
    task = build_task(s.task, cfg=s.cfg, data_dir=s.data_dir, hidden=s.hidden,
                      train_samples=s.train_samples, test_samples=s.test_samples,
                      input_channels=s.input_channels)
    log.info(f"task {task.name}: {len(task.train)} train / {len(task.test)} test samples, "
             f"{task.n_in} inputs -> {task.n_hidden} hidden LIF"
             f"{' (recurrent)' if task.recurrent else ''} -> {task.n_out} LI, "
             f"{task.n_steps} steps of {task.dt_us} us ({task.window_us:.1f} us)")
    chip = _get_chip(s, out, log, ckpt is not None) if s.backend in LOOP_BACKENDS else None
    generator = torch.Generator().manual_seed(s.seed)
    kwargs = network_kwargs(s, task)
    kwargs, task, init_kind = _graph_network(s, task, kwargs, ckpt, log)
    try:
        net = make_network(s.backend, kwargs, chip=chip, generator=generator,
                           run_seed=s.run_seed, device=s.device,
                           hidden_spikes=s.hidden_spikes)
    except PlacementError as e:
        raise TrainError(f"the network {task.n_in} -> {task.n_hidden}"
                         f"{' (recurrent)' if task.recurrent else ''} -> {task.n_out} does not "
                         f"fit chip preset {s.preset!r}: {e} (sizes: --hidden"
                         f"{', --input-channels' if task.name == 'shd' else ''})") from e
    if s.dropout and not hasattr(net, "hidden_keep"):
        raise TrainError(f"--dropout {s.dropout:g}: the network of --init {s.init} is a general "
                         "graph; hidden dropout applies to a network of one hidden layer and a "
                         "readout (the paper's); allowed for this network: 0")
    net.surrogate_at = s.surrogate_at
    hp = hyperparameters(s, task)
    log.info("hyperparameters: " + ", ".join(f"{k} {v:g}" for k, v in hp.items()))
    if s.backend in LOOP_BACKENDS:
        log.info("gradient: the chip's traces injected, the surrogate derivative taken at "
                 + SURROGATE_AT_WORDS[s.surrogate_at])
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=s.lr_decay)
    run = _Session(task, chip, net, kwargs, hp, opt, sched, generator, history=[])
    if s.init is not None and ckpt is None and init_kind != "nir":
        _load_init(net, kwargs, Path(s.init), log)
    if ckpt is not None:
        net.load_state_dict(ckpt["network"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        run.history = list(ckpt["history"])
        run.start_epoch, run.wall_before = int(ckpt["epoch"]), float(ckpt["wall_s"])
        _set_rng_state(ckpt["rng"], generator)
    return run


def _epoch(s: TrainSettings, run: _Session, batches: Batches, epoch: int, log: RunLog) -> None:
    """One epoch of training steps, then the test when ``test_every`` asks for it;
    appends the epoch's row to ``run.history``."""
    t_epoch = time.perf_counter()
    task, net, opt = run.task, run.net, run.opt
    lr = opt.param_groups[0]["lr"]
    meter = _Meter(task.n_hidden)
    chip_stats: dict = {}
    n_batches = len(batches)
    net.train()
    aug = augmentation_generator(s.seed, epoch)
    for i, (x, y) in enumerate(batches.epoch(epoch)):
        x = augment(s, net, x, aug)
        raster, times = task.encode(x)
        try:
            out_ = _forward(net, raster, times)
            _stats_add(chip_stats, net)
            loss, nll = _loss(net, out_, y, run.hp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            net.hidden_keep = None          # dropout acts on this batch's training step only
        opt.step()
        _after_step(net)
        with torch.no_grad():
            correct = int((out_.log_probs.argmax(1) == y).sum())
            spikes = float(out_.z_hidden.sum())
        meter.add(float(loss.detach()), float(nll.detach()), correct, spikes, len(y))
        m = meter.summary()
        rate = meter.n / max(time.perf_counter() - t_epoch, 1e-9)
        log.progress(f"epoch {epoch + 1}/{s.epochs} batch {i + 1}/{n_batches} "
                     f"loss {m['loss']:.4f} acc {m['accuracy']:.3f} "
                     f"spikes/neuron/input {m['spikes_per_neuron_input']:.3f} "
                     f"({rate:.0f} samples/s)")
    run.sched.step()
    train = meter.summary()
    row = {"epoch": epoch + 1, "lr": lr, "train_loss": train["loss"],
           "train_nll": train["nll"], "train_accuracy": train["accuracy"],
           "train_spikes_per_neuron_input": train["spikes_per_neuron_input"],
           "test_loss": None, "test_accuracy": None, "test_spikes_per_neuron_input": None}
    if chip_stats:
        chip_stats.pop("wall", None)
        row["train_chip"] = chip_stats
    if s.test_every and (epoch + 1) % s.test_every == 0:
        test = evaluate(net, task, task.test, s.batch_size, run.hp)
        _put_test(row, test)
        run.first, run.test_wall = test["first"], test.get("chip_wall_s")
    run.history.append(row)
    log.info(f"epoch {epoch + 1}/{s.epochs}: lr {lr:.3g}, train loss {train['loss']:.4f} "
             f"acc {train['accuracy']:.4f} spikes/neuron/input "
             f"{train['spikes_per_neuron_input']:.3f}"
             + (f"; test acc {row['test_accuracy']:.4f} spikes/neuron/input "
                f"{row['test_spikes_per_neuron_input']:.3f}"
                if row["test_accuracy"] is not None else "")
             + (f"; hidden spikes recorded {chip_stats['recorded_hidden_spikes']} of "
                f"{chip_stats['hidden_spikes']} ({chip_stats['lost_hidden_spikes']} lost on the "
                "way to the host)" if "recorded_hidden_spikes" in chip_stats else "")
             + f" ({time.perf_counter() - t_epoch:.1f} s)")


def _final_test(s: TrainSettings, run: _Session, log: RunLog) -> list[dict]:
    """The history with the test after the last epoch.

    That test comes after the last checkpoint (unless ``test_every`` made it
    part of the epoch): the checkpoint, and so a resumed run, never sees it, and
    a run of E epochs continued to E' equals a run of E' epochs."""
    history = run.history
    final = dict(history[-1]) if history else None
    if final is not None and final["test_accuracy"] is None:
        test = evaluate(run.net, run.task, run.task.test, s.batch_size, run.hp)
        _put_test(final, test)
        run.first, run.test_wall = test["first"], test.get("chip_wall_s")
        log.info(f"final test: acc {final['test_accuracy']:.4f} spikes/neuron/input "
                 f"{final['test_spikes_per_neuron_input']:.3f}")
    if run.first is None:
        x, _ = next(iter(Batches(run.task.test, s.batch_size, shuffle=False)))
        run.net.eval()
        with torch.no_grad():
            run.first = _forward(run.net, *run.task.encode(x))
    return history[:-1] + [final] if final is not None else history


def _put_test(row: dict, test: dict) -> None:
    row.update(test_loss=test["loss"], test_accuracy=test["accuracy"],
               test_spikes_per_neuron_input=test["spikes_per_neuron_input"])
    if "chip" in test:
        row["test_chip"] = test["chip"]


def _chip_summary(history: list[dict], cfg: ChipConfig) -> dict:
    """Emulated cycles and time per image (training-mode spacing: the cycles the
    backend ran per sample), from the last test pass's counters."""
    rows = [r for r in history if "test_chip" in r]
    if not rows:
        return {}
    stats = rows[-1]["test_chip"]
    res = {"test_pass": stats, "clock_mhz": cfg.clock_mhz}
    samples = stats.get("samples")
    if samples and "cycles" in stats:
        per = stats["cycles"] / samples
        res.update(cycles_per_image=per, emulated_us_per_image=per / cfg.clock_mhz)
    return res


def _finish(s: TrainSettings, out: Path, task: Task, net, kwargs: dict, history: list[dict],
            sample, wall: float, log: RunLog, chip, test_wall: float | None,
            hp: dict) -> dict:

    _atomic_save({"state_dict": net.state_dict(), "network_kwargs": kwargs,
                  "backend": s.backend, "task": s.task, "preset": s.preset,
                  "chip_seed": s.chip_seed, "settings": s.to_dict()}, out / NETWORK)
    tested = [r for r in history if r["test_accuracy"] is not None]
    final = tested[-1] if tested else {}
    results = {
        "task": s.task, "backend": s.backend, "preset": s.preset, "chip_seed": s.chip_seed,
        "seeds": _seeds(s), "args": s.to_dict(), "hyperparameters": hp,
        "network": {"n_in": task.n_in, "n_hidden": task.n_hidden, "n_out": task.n_out,
                    "recurrent": task.recurrent, "n_steps": task.n_steps, "dt_us": task.dt_us,
                    "window_us": task.window_us, "readout_scale": READOUT_SCALE,
                    "parameters": sum(p.numel() for p in net.parameters())},
        "data": {"train_samples": len(task.train), "test_samples": len(task.test),
                 **task.info},
        "epochs_done": len(history),
        "history": history,
        "final_test_accuracy": final.get("test_accuracy"),
        "final_test_loss": final.get("test_loss"),
        "final_test_spikes_per_neuron_input": final.get("test_spikes_per_neuron_input"),
        "final_train_accuracy": history[-1]["train_accuracy"] if history else None,
        "final_train_spikes_per_neuron_input":
            history[-1]["train_spikes_per_neuron_input"] if history else None,
        "wall_s": wall,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "device": s.device,
                        "flush_denormal": s.backend == "software"},
        "files": {"checkpoint": CHECKPOINT, "network": NETWORK, "log": LOG,
                  **({"chip": CHIP_FILE} if chip is not None else {}),
                  **{k: v for k, v in plots.FILES.items()}},
    }
    if chip is not None:
        results["emulation"] = _chip_summary(history, chip.cfg)
        if test_wall is not None and results["emulation"].get("test_pass", {}).get("samples"):
            results["emulation"]["backend_wall_s_per_image"] = \
                test_wall / results["emulation"]["test_pass"]["samples"]
    measured = s.backend in LOOP_BACKENDS
    plots.write_all(out, history, sample, dt_us=task.dt_us, measured=measured,
                    label=int(task.test.labels[0]),
                    title=f"{s.task}, {s.backend}" + (f", {s.preset} chip {s.chip_seed}"
                                                      if measured else ""))
    atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
    acc = results["final_test_accuracy"]
    spk = results["final_test_spikes_per_neuron_input"]
    log.info(f"done: {len(history)} epochs, final test accuracy "
             f"{'-' if acc is None else f'{acc:.4f}'}, hidden spikes per neuron and input "
             f"{'-' if spk is None else f'{spk:.3f}'}, wall {wall:.1f} s; "
             f"wrote {out / RESULTS}")
    return results
