"""``spikeloop experiment speech``: the paper's speech benchmark (SHD's network)
on SHD-layout files (docs/speech.md).

    spikeloop experiment speech --data-dir DIR --out DIR [--seeds 0 1 2] [--epochs 30]

``--data-dir`` holds ``shd_train.h5`` and ``shd_test.h5``: the spoken digits of
``spikeloop data speech`` or the real SHD, read the same way (task ``speech``
of :mod:`spikeloop.training.tasks`: 70 of the 700 channels, 186 recurrent
hidden LIF neurons, 20 LI outputs, 1 s in 294 steps of 1.7 µs).  Per seed:

1. **software**: the ideal model trained with the paper's schedule (Adam, lr
   1.5e-3 x 0.97 per epoch, batch 100, the paper's regularisers), tested on
   the test set;
2. **control** (the paper's "recurrent weights shuffled and frozen"): the
   recurrent weights of (1) permuted at random over all their entries (same
   values, no structure) and frozen; the input and output weights drawn anew
   and trained with the same schedule.

3. **loop** (with ``--preset``): the same network trained in the loop on the
   emulated chip (``--backend``, default the fast backend), chip instance
   ``--chip-seed`` of the preset's streaming variant
   (:func:`spikeloop.training.tasks.speech_chip`: the ADC buffer as a ring, the
   PPU streaming every one of the 294 membrane samples to the memory the host
   reads after the recording), the chip's noise seeded by the training seed.
   The chip is calibrated once and kept (``DIR/chip<seed>.npz``).

The conditions run one after the other, each for every seed (all software
models first, the trainings in the loop last); ``--conditions`` picks some
(the control needs the software network, trained first when missing).

Rows: :func:`speech_rows` (test accuracy mean ± std over the seeds, hidden
spikes per neuron and input, beside the paper's figures).

Files: ``DIR/seed<k>/<condition>.pt`` (the network) and ``.json`` (its
figures, reused when the settings are the same; other settings are refused),
``DIR/seed<k>/<condition>.checkpoint.pt`` (the training's state after every
epoch: an interrupted training continues from it when the command runs again),
``DIR/speech.json`` (the rows of this invocation's seeds and conditions).
Each training locks its seed's directory while it runs, so the seeds can run
as separate processes with the same ``--out`` (``--seeds 0``, ``--seeds 1``,
...), and the command with all of them then collects their finished runs; the
chip is calibrated once among them.  Every file is written atomically.
"""
from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spikeloop.base.config import PRESETS, ChipConfig
from spikeloop.base.files import (
    DirLock,
    LockError,
    atomic_open,
    atomic_write_text,
    prepare_output_dir,
    waiting_lock,
)
from spikeloop.base.settings import option
from spikeloop.data import Batches
from spikeloop.model.chip import Chip
from spikeloop.nn.chip_network import ChipNetwork
from spikeloop.nn.functional import SURROGATE_AT, LIFParameters
from spikeloop.nn.modules import SoftwareNetwork
from spikeloop.training.tasks import (
    LOOP_BACKENDS,
    PAPER_LR,
    PAPER_SPIKE_REG,
    PAPER_WEIGHT_REG,
    SPEECH_HIDDEN,
    SPEECH_N_STEPS,
    Task,
    TaskError,
    build_task,
    speech_chip,
)
from spikeloop.training.train import (
    PAPER_BATCH_SIZE,
    PAPER_LR_DECAY,
    READOUT_SCALE,
    TrainError,
    evaluate,
    load_torch_file,
    surrogate_at_option,
    with_predated,
)

#: the paper's figures (docs/speech.md; PNAS 119(4) e2109194119, Table 1)
PAPER = {"loop": "76.2 ± 1.3 %", "software": "71.2 %", "control": "64.3 ± 2.3 %"}
CONTROL_WHAT = ("recurrent weights of the trained software network shuffled and frozen, "
                "the rest trained again")
CONDITIONS = ("software", "control", "loop")


class SpeechExperimentError(ValueError):
    """The experiment cannot run as asked."""


@dataclass
class SpeechExperimentSettings:
    data_dir: str = option(required=True, help="directory with shd_train.h5 and shd_test.h5 "
                           "(spikeloop data speech --out DIR, or the real SHD)")
    out: str = option(required=True, help="output directory (networks, figures, rows)")
    seeds: tuple[int, ...] = option((0, 1, 2), help="training seeds (default 0 1 2)")
    epochs: int = option(30, help="epochs per training (the paper: 100)")
    batch_size: int = option(PAPER_BATCH_SIZE, help=f"default {PAPER_BATCH_SIZE}")
    train_samples: int | None = option(None, help="stratified training subset (default all)")
    test_samples: int | None = option(None, help="stratified test subset (default all)")
    threads: int = option(0, help="torch threads (0: torch's default)")
    preset: str | None = option(None, help="chip preset for the in-the-loop condition (full; "
                                "it runs on the preset's streaming variant); default: software "
                                "and control only")
    chip_seed: int = option(1, help="chip instance for the in-the-loop condition (default 1)")
    backend: str = option("fast", help="chip backend for the in-the-loop condition: "
                          + " or ".join(LOOP_BACKENDS))
    surrogate_at: str = surrogate_at_option("the in-the-loop condition")
    conditions: tuple[str, ...] = option(CONDITIONS, choices=CONDITIONS,
                                         help="the conditions to run (default: all; loop "
                                              "needs --preset; control trains the software "
                                              "network first when it is missing)")
    progress: bool = option(True, flag="--no-progress", help="no per-epoch lines")

    def check(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SpeechExperimentError(f"--seeds {list(self.seeds)}; allowed: distinct "
                                        "integers, at least one")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise SpeechExperimentError(f"--{name.replace('_', '-')} = "
                                            f"{getattr(self, name)}; allowed: an integer >= 1")
        if self.threads < 0:
            raise SpeechExperimentError(f"--threads = {self.threads}; allowed: 0 or more")
        if self.preset is not None and self.preset not in PRESETS:
            raise SpeechExperimentError(f"--preset {self.preset!r}; allowed: "
                                        f"{', '.join(sorted(PRESETS))}")
        if self.backend not in LOOP_BACKENDS:
            raise SpeechExperimentError(f"--backend {self.backend!r}; allowed: "
                                        f"{', '.join(LOOP_BACKENDS)}")
        if self.surrogate_at not in SURROGATE_AT:
            raise SpeechExperimentError(f"--surrogate-at {self.surrogate_at!r}; allowed: "
                                        f"{', '.join(SURROGATE_AT)}")
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise SpeechExperimentError(f"--conditions {list(self.conditions)}; allowed: "
                                        f"distinct names of {', '.join(CONDITIONS)}")
        if "loop" in self.conditions and self.preset is None and \
                self.conditions != CONDITIONS:
            raise SpeechExperimentError("--conditions loop needs --preset (the chip of the "
                                        f"in-the-loop condition); allowed presets: "
                                        f"{', '.join(sorted(PRESETS))}")
        if self.chip_seed < 0:
            raise SpeechExperimentError(f"--chip-seed = {self.chip_seed}; allowed: an "
                                        "integer >= 0")
        if not Path(self.data_dir).is_dir():
            raise SpeechExperimentError(f"--data-dir {self.data_dir} is not a directory")

    def key(self, condition: str = "software") -> dict:
        """What a trained network of ``condition`` depends on."""
        d = dataclasses.asdict(self)
        for k in ("out", "seeds", "threads", "progress", "conditions"):
            d.pop(k)
        if condition != "loop":
            for k in ("preset", "chip_seed", "backend", "surrogate_at"):
                d.pop(k)
        d["data_dir"] = str(Path(self.data_dir).resolve())
        return d


def network(task: Task, seed: int, chip: Chip | None = None, backend: str = "fast"):
    """The speech network of ``task``, initialised from ``seed``: ideal
    (software), or on ``chip`` in the loop (its noise seeded by ``seed`` too)."""
    return speech_network(task.n_in, task.n_hidden, task.n_out, task.dt_us, seed, chip,
                          backend)


def speech_network(n_in: int, n_hidden: int, n_out: int, dt_us: float, seed: int,
                   chip: Chip | None = None, backend: str = "fast"):
    """The paper's recurrent speech network of these sizes (:func:`network`)."""
    gen = torch.Generator().manual_seed(int(seed))
    kw = dict(recurrent=True, readout_scale=READOUT_SCALE, generator=gen,
              params=LIFParameters(dt_us=dt_us))
    if chip is None:
        return SoftwareNetwork(n_in, n_hidden, n_out, **kw)
    return ChipNetwork(chip, n_in, n_hidden, n_out, backend=backend, run_seed=int(seed), **kw)


def speech_loss(net, out, y: torch.Tensor) -> torch.Tensor:
    """The training loss of the speech experiment: NLL plus the paper's
    regularisation."""
    return F.nll_loss(out.log_probs, y) + net.regularization(
        out, spike_strength=PAPER_SPIKE_REG, weight_strength=PAPER_WEIGHT_REG)


def loop_chip(s: SpeechExperimentSettings, out: Path, log=print) -> Chip:
    """Chip instance ``s.chip_seed`` of the preset's streaming variant, calibrated
    once and kept in ``out``."""
    cfg = speech_chip(ChipConfig.preset(s.preset))
    path = out / f"chip{s.chip_seed}.npz"
    # processes running other seeds in the same directory calibrate it once
    with waiting_lock(out / f"chip{s.chip_seed}.lock"):
        if path.exists():
            try:
                return Chip.load_expected(path, cfg, s.chip_seed)
            except ValueError as e:
                raise SpeechExperimentError(str(e)) from None
        t0 = time.perf_counter()
        log(f"  calibrating chip {cfg.name}, chip seed {s.chip_seed} (measurement only)")
        chip = Chip.calibrated(cfg, s.chip_seed)
        chip.save(path)
        log(f"  calibrated in {time.perf_counter() - t0:.0f} s; wrote {path}")
        return chip


def shuffle_and_freeze(net: SoftwareNetwork, recurrent: torch.Tensor, seed: int) -> None:
    """``net``'s recurrent weights: the entries of ``recurrent`` in a random order
    (seeded), excluded from training."""
    gen = torch.Generator().manual_seed(int(seed) + 0x5EED)
    flat = recurrent.detach().reshape(-1)
    perm = torch.randperm(flat.numel(), generator=gen)
    with torch.no_grad():
        net.recurrent_synapse.weight.copy_(flat[perm].reshape(recurrent.shape))
    net.recurrent_synapse.weight.requires_grad_(False)


def _checkpoint_key(key: dict) -> dict:
    """What a checkpoint must share with the run that continues it: every setting
    but the number of epochs (the schedule of an epoch does not depend on it)."""
    return {k: v for k, v in key.items() if k != "epochs"}


def train(net, task: Task, s: SpeechExperimentSettings, seed: int,
          log=print, checkpoint: Path | None = None, key: dict | None = None) -> list[dict]:
    """The paper's schedule; returns the per-epoch history (train figures).

    With ``checkpoint``, the state after every epoch (network, optimiser,
    learning-rate schedule, history) is written there atomically, and a training
    that finds one made with the same ``key`` (all but the epochs) continues
    from it: the batches of an epoch depend only on the seed and the epoch, the
    chip's noise on the network's sample counter, so the continued training is
    the uninterrupted one bit for bit."""
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=PAPER_LR)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, PAPER_LR_DECAY)
    batches = Batches(task.train, s.batch_size, shuffle=True, seed=seed)
    history: list[dict] = []
    start = 0
    ck_key = _checkpoint_key(key or {})
    if checkpoint is not None and checkpoint.exists():
        try:
            ck = load_torch_file(checkpoint, "a checkpoint of spikeloop experiment speech",
                                 ("key", "epoch", "net", "opt", "sched", "history"))
        except TrainError as e:
            raise SpeechExperimentError(str(e)) from None
        if ck["key"] != ck_key:
            raise SpeechExperimentError(f"{checkpoint}: a checkpoint made with other settings; "
                                        "choose another --out (results are never overwritten)")
        if ck["epoch"] > s.epochs:
            raise SpeechExperimentError(f"{checkpoint}: holds {ck['epoch']} epochs, more than "
                                        f"--epochs {s.epochs}")
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        history, start = list(ck["history"]), int(ck["epoch"])
        log(f"    continuing after epoch {start} ({checkpoint})")
    for epoch in range(start, s.epochs):
        t0 = time.perf_counter()
        n = correct = 0
        loss_sum = spikes = 0.0
        for x, y in batches.epoch(epoch):
            raster, _ = task.encode(x)
            out = net(raster)
            loss = speech_loss(net, out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            net.after_step()
            n += len(y)
            correct += int((out.log_probs.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
            spikes += float(out.z_hidden.detach().sum())
        sched.step()
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_accuracy": correct / n,
               "train_spikes_per_neuron_input": spikes / (n * task.n_hidden),
               "wall_s": time.perf_counter() - t0}
        history.append(row)
        if s.progress:
            log(f"    epoch {epoch + 1}/{s.epochs}: loss {row['train_loss']:.4f} acc "
                f"{row['train_accuracy']:.4f} spikes/neuron/input "
                f"{row['train_spikes_per_neuron_input']:.3f} ({row['wall_s']:.1f} s)")
        if checkpoint is not None:
            _save({"key": ck_key, "epoch": epoch + 1,
                   "net": net.state_dict(), "opt": opt.state_dict(),
                   "sched": sched.state_dict(), "history": history}, checkpoint)
    return history


def _save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())


def run_condition(cond: str, seed: int, task: Task, s: SpeechExperimentSettings, out: Path,
                  log=print) -> dict:
    """One training (reused when made with the same settings), holding its seed's
    directory while it runs."""
    d = out / f"seed{seed}"
    d.mkdir(exist_ok=True)
    try:
        with DirLock(d, f"spikeloop experiment speech (seed {seed}, {cond})") as lock:
            if lock.note:
                log(f"  {lock.note}")
            return _run_condition(cond, seed, task, s, out, d, log)
    except LockError as e:
        raise SpeechExperimentError(str(e)) from None


def _run_condition(cond: str, seed: int, task: Task, s: SpeechExperimentSettings, out: Path,
                   d: Path, log=print) -> dict:
    res_path, net_path = d / f"{cond}.json", d / f"{cond}.pt"
    key = dict(s.key(cond), condition=cond, seed=seed)
    if res_path.exists():
        have = json.loads(res_path.read_text())
        made = have.get("key")
        if isinstance(made, dict):
            made = with_predated(made, key)
        if made != key:
            raise SpeechExperimentError(f"{res_path}: made with other settings; choose "
                                        "another --out (results are never overwritten)")
        log(f"  seed {seed} {cond}: reused ({have['test_accuracy']:.4f})")
        return have
    net = network(task, seed, loop_chip(s, out, log) if cond == "loop" else None, s.backend)
    if cond == "loop":
        net.surrogate_at = s.surrogate_at
    if cond == "control":
        base = torch.load(d / "software.pt", weights_only=True)
        shuffle_and_freeze(net, base["recurrent_synapse.weight"], seed)
    log(f"  seed {seed} {cond}: training {s.epochs} epochs on {len(task.train)} samples")
    history = train(net, task, s, seed, log, checkpoint=d / f"{cond}.checkpoint.pt", key=key)
    t0 = time.perf_counter()
    test = evaluate(net, task, task.test, s.batch_size,
                    {"spike_reg": PAPER_SPIKE_REG, "weight_reg": PAPER_WEIGHT_REG})
    wall = sum(h["wall_s"] for h in history) + time.perf_counter() - t0
    _save(net.state_dict(), net_path)
    res = {"key": key, "condition": cond, "seed": seed, "test_accuracy": test["accuracy"],
           "test_spikes_per_neuron_input": test["spikes_per_neuron_input"],
           **({"chip": test["chip"]} if "chip" in test else {}),
           "train_accuracy": history[-1]["train_accuracy"], "history": history,
           "wall_s": wall}
    atomic_write_text(res_path, json.dumps(res, indent=1) + "\n")
    log(f"  seed {seed} {cond}: test accuracy {test['accuracy']:.4f}, hidden spikes per "
        f"neuron and input {test['spikes_per_neuron_input']:.3f} ({wall:.0f} s)")
    return res


def _stat(values) -> dict | None:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return None
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "n": int(len(v)), "values": [float(x) for x in v]}


def speech_rows(results: dict[str, list[dict]], data: str) -> list[dict]:
    """The benchmark's rows (the fields of the paper table's rows): software and
    control accuracy (mean ± std over seeds), hidden spikes per neuron and input
    of the software network, the paper's figures beside them."""
    sw, ctl, loop = (results.get(c, []) for c in CONDITIONS)
    return [{
        "task": f"speech ({data})",
        "network": f"70-{SPEECH_HIDDEN}r-20, {SPEECH_N_STEPS} x 1.7 us",
        "loop": _stat(r["test_accuracy"] for r in loop),
        "software": _stat(r["test_accuracy"] for r in sw),
        "control": _stat(r["test_accuracy"] for r in ctl),
        "control_what": CONTROL_WHAT,
        "spikes_per_neuron_input": (float(np.mean([r["test_spikes_per_neuron_input"]
                                                   for r in sw])) if sw else None),
        "paper": dict(PAPER),
        "loop_spikes_per_neuron_input": (float(np.mean([r["test_spikes_per_neuron_input"]
                                                        for r in loop])) if loop else None),
        "notes": ([f"in the loop: on {loop[0]['key']['preset']}'s streaming variant (the ADC "
                   "buffer as a ring, every membrane sample streamed by the PPU), chip seed "
                   f"{loop[0]['key']['chip_seed']}, backend {loop[0]['key']['backend']}"]
                  if loop else ["in the loop: not run (spikeloop experiment speech --preset "
                                "full runs it)"]),
        "details": {"wall_s": {c: [r["wall_s"] for r in results.get(c, [])]
                               for c in CONDITIONS},
                    "seeds": [r["seed"] for r in sw]},
    }]


def run_speech(s: SpeechExperimentSettings, log=print) -> dict:
    s.check()
    if s.threads:
        torch.set_num_threads(s.threads)
    try:
        task = build_task("speech", data_dir=s.data_dir, train_samples=s.train_samples,
                          test_samples=s.test_samples,
                          cfg=None if s.preset is None else speech_chip(
                              ChipConfig.preset(s.preset)))
    except TaskError as e:
        raise SpeechExperimentError(str(e)) from None
    data = "real SHD" if "spikeloop_speech" not in _file_marker(s.data_dir) else \
        "spoken digits, espeak-ng + lauscher's cochlea"
    out = prepare_output_dir(s.out)      # each training locks its seed's directory
    conditions = run_conditions(s)
    log(f"speech: {len(task.train)} training, {len(task.test)} test recordings from "
        f"{s.data_dir} ({data}); seeds {list(s.seeds)}, conditions {', '.join(conditions)}, "
        f"{s.epochs} epochs, torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    results: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
    # condition by condition (every seed's software model first, the trainings in
    # the loop, the longest, last): the cheaper rows are there early
    for cond in conditions:
        for seed in s.seeds:
            results[cond].append(run_condition(cond, seed, task, s, out, log))
    rows = speech_rows(results, data)
    summary = {"settings": dataclasses.asdict(s), "rows": rows,
               "wall_s": time.perf_counter() - t0}
    atomic_write_text(out / "speech.json", json.dumps(summary, indent=1) + "\n")
    log(table(rows))
    return summary


def run_conditions(s: SpeechExperimentSettings) -> tuple[str, ...]:
    """The conditions a run trains, in order: those asked for (the loop only with
    a preset) and the software network the control is built from."""
    asked = set(s.conditions)
    if "control" in asked:
        asked.add("software")
    if s.preset is None:
        asked.discard("loop")
    return tuple(c for c in CONDITIONS if c in asked)


def _file_marker(data_dir) -> str:
    """The attribute names of the training file (marks spikeloop data speech's files)."""
    import h5py

    path = Path(data_dir) / "shd_train.h5"
    if not path.is_file():
        return ""
    try:
        with h5py.File(path, "r") as f:
            return " ".join(f.attrs.keys())
    except OSError:
        return ""


def _pct(st: dict | None) -> str:
    if st is None:
        return "-"
    return f"{100 * st['mean']:.1f} ± {100 * st['std']:.1f} % (n={st['n']})"


def table(rows: list[dict]) -> str:
    lines = ["| task | network | in the loop | software | control | hidden spikes / neuron "
             "/ input |", "|---|---|---|---|---|---|"]
    for r in rows:
        sp = r["spikes_per_neuron_input"]
        lines.append(f"| {r['task']} | {r['network']} | {_pct(r['loop'])} | "
                     f"{_pct(r['software'])} | {_pct(r['control'])} | "
                     f"{'-' if sp is None else f'{sp:.3f}'} |")
        p = r["paper"]
        lines.append(f"| paper (SHD) | 70-186r-20 | {p['loop']} | {p['software']} | "
                     f"{p['control']} | - |")
    return "\n".join(lines)


def run(s: SpeechExperimentSettings) -> int:
    run_speech(s)
    return 0
