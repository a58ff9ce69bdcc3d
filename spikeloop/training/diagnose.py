"""Diagnose: where a network trained in the loop and its ideal model part ways.

    spikeloop diagnose DIR [--samples 400] [--batch 100] [--seed 0] [--dropout P]

``DIR`` is a ``spikeloop train --backend fast|cosim`` run directory
(``network.pt`` and its chip instance ``chip.npz``).  ``--samples`` training
samples of the run's task (a permutation keyed by ``--seed``) go through the
trained network on the emulated chip (fast backend, the run's chip, the noise
keys continuing the training's) and through the ideal model with the same
weights, batch by batch, as a training step sees them: with the run's hidden
dropout (one mask per batch, drawn from ``--seed``; ``--dropout`` sets another
rate), without its image rotations.  It prints the two side by side:

- hidden spikes per neuron and input, in all and per time bin, and the share
  of each one's spikes that fall in a bin where the other has one too;
- the classification loss and accuracy, and where the readout (the maximum
  over time of each output membrane) finds the classes: the share of wrong
  classes whose maximum is the first sample, and the mean maximum of the
  correct and of the wrong classes;
- the gradient of the training loss with respect to every weight, in the loop
  (the chip's values injected, the derivative taken where the run took it) and
  of the ideal model: the cosine between the two, and the component of each
  one's descent direction along the activity direction (the gradient of the
  ideal model's hidden spike count; both gradients are measured against the
  same one, on the weights the hidden spikes depend on): positive means a
  descent step makes the hidden layer more active.  The component is split
  into the classification loss's parts from the correct class and from the
  wrong classes and the regularisers' part (the three add up to the whole).

docs/training.md ("Diagnosing a loop") shows it on the paper's networks.
Writes ``DIR/diagnose.json`` (an earlier one stays: the next is
``diagnose-2.json``, ...).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from spikeloop.base.files import DirLock, atomic_write_text, unused_path
from spikeloop.base.settings import option
from spikeloop.nn.functional import SURROGATE_AT_WORDS
from spikeloop.training.tasks import build_task
from spikeloop.training.train import PREDATED, hidden_keep_mask, load_network, open_chip_run

#: the per-bin figures printed (the JSON holds every bin)
BINS_SHOWN = 6


class DiagnoseError(ValueError):
    """The diagnosis could not run (missing files, a software run, bad options)."""


@dataclass
class DiagnoseSettings:
    """What to diagnose; the fields are ``spikeloop diagnose``'s arguments."""

    run_dir: str = option(positional=True,
                          help="output directory of `spikeloop train --backend fast` (or cosim)")
    samples: int = option(400, help="training samples looked at (default 400)")
    batch: int = option(100, help="samples per batch, as in a training step (default 100)")
    seed: int = option(0, help="which training samples, and the dropout masks (default 0)")
    dropout: float | None = option(None, help="hidden dropout of the batches (0..0.9; "
                                              "default: the run's own)")
    data_dir: str | None = option(None, help="the task's data (default: the run's --data-dir)")

    def check(self) -> None:
        if self.samples < 1 or self.batch < 1:
            raise DiagnoseError(f"--samples {self.samples}, --batch {self.batch}; allowed: "
                                "integers >= 1")
        if self.dropout is not None and not 0.0 <= self.dropout <= 0.9:
            raise DiagnoseError(f"--dropout {self.dropout!r}; allowed: a number 0..0.9")


def _params(net) -> dict[str, torch.nn.Parameter]:
    return {k: p for k, p in net.named_parameters() if p.requires_grad}


def _grad(net, names: list[str], loss: torch.Tensor) -> torch.Tensor:
    """d loss / d (the weights ``names`` of ``net``), flattened in that order."""
    ps = _params(net)
    gs = torch.autograd.grad(loss, [ps[k] for k in names], allow_unused=True,
                             retain_graph=True)
    return torch.cat([(torch.zeros_like(ps[k]) if g is None else g).reshape(-1)
                      for k, g in zip(names, gs, strict=True)])


def _upstream(net, names: list[str], activity: torch.Tensor) -> torch.Tensor:
    """Which entries of a flattened gradient belong to the weights the hidden spikes
    depend on (a weight tensor whose entries all have zero activity gradient, such
    as the readout's, is left out)."""
    ps = _params(net)
    mask, i = torch.zeros(len(activity), dtype=torch.bool), 0
    for k in names:
        n = ps[k].numel()
        mask[i:i + n] = bool(activity[i:i + n].any())
        i += n
    return mask


def _measured_pass(net, raster: torch.Tensor, times_us):
    """The loop's training forward split in two: the chip's run (no gradient),
    then a callable doing the model pass with the measured values injected."""
    with torch.no_grad():
        m = net.measure(raster, times_us)
    if isinstance(m, dict):                     # a general graph (spikeloop.nir)
        return lambda: net.model_pass(raster, m)
    hidden_v, hidden_z, output_v = m
    return lambda: net.model_pass(raster, hidden_v=hidden_v, hidden_z=hidden_z,
                                  output_v=output_v)


def _loss_parts(net, out, y: torch.Tensor, hp: dict) -> dict[str, torch.Tensor]:
    """The training loss split three ways: the classification loss's part from the
    correct class, from the wrong classes (d NLL / d logit = p - onehot, with p
    held), and the regularisers; the three add up to the training loss's gradient."""
    logits = net.readout_scale * out.v_out.amax(dim=0)
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    d = (out.log_probs.detach().exp() - onehot) / len(y)
    return {"correct class": (d * onehot * logits).sum(),
            "wrong classes": (d * (1 - onehot) * logits).sum(),
            "regularisers": net.regularization(out, spike_strength=hp["spike_reg"],
                                               weight_strength=hp["weight_reg"])}


def _side(out, y: torch.Tensor) -> dict:
    """What one side (chip or ideal model) shows on a batch, summed over it."""
    z, v = out.z_hidden.detach(), out.v_out.detach()
    first = v.argmax(dim=0) == 0                            # [B, C]: maximum at sample 0
    wrong = torch.ones_like(first)
    wrong[torch.arange(len(y)), y] = False
    vmax = v.amax(dim=0)
    return {"spikes_per_bin": z.sum(dim=(1, 2)).tolist(), "neurons": z.shape[2],
            "nll_sum": float(F.nll_loss(out.log_probs.detach(), y, reduction="sum")),
            "correct": int((out.log_probs.argmax(dim=1) == y).sum()),
            "wrong_first": int((first & wrong).sum()), "wrong": int(wrong.sum()),
            "max_correct_sum": float(vmax[~wrong].sum()),
            "max_wrong_sum": float(vmax[wrong].sum())}


def diagnose(s: DiagnoseSettings, log=print) -> dict:
    """Run the diagnosis (module docstring); returns the report (also written to
    ``run_dir/diagnose.json``, or ``diagnose-2.json``, ... beside an earlier one)."""
    s.check()
    run_dir = Path(s.run_dir)
    meta, chip = open_chip_run(run_dir, "diagnose", DiagnoseError,
                               "compares a loop with its ideal model and ")
    st = meta["settings"]
    task = build_task(st["task"], cfg=chip.cfg, data_dir=s.data_dir or st.get("data_dir"),
                      hidden=st.get("hidden"), train_samples=st.get("train_samples"),
                      test_samples=1, input_channels=st.get("input_channels"))
    loop, _ = load_network(run_dir / "network.pt", chip=chip, backend="fast")
    ideal, _ = load_network(run_dir / "network.pt", backend="software")
    loop.surrogate_at = st.get("surrogate_at", PREDATED["surrogate_at"])
    if hasattr(loop, "hidden_spikes"):
        loop.hidden_spikes = st.get("hidden_spikes", loop.hidden_spikes)
    dropout = float(st.get("dropout", 0.0)) if s.dropout is None else float(s.dropout)
    if dropout and not hasattr(loop, "hidden_keep"):
        raise DiagnoseError(f"--dropout {dropout:g}: the network of {run_dir} is a general "
                            "graph; hidden dropout applies to a network of one hidden layer "
                            "and a readout; allowed for this network: 0")
    hp = {k: task_default if st.get(k) is None else st[k]
          for k, task_default in (("spike_reg", task.spike_reg), ("weight_reg", task.weight_reg))}
    names = sorted(_params(ideal))
    missing = [k for k in names if k not in _params(loop)]
    if missing:
        raise DiagnoseError(f"{run_dir}/network.pt: the loop's network lacks the ideal model's "
                            f"weights {', '.join(missing)}")

    gen = torch.Generator().manual_seed(s.seed)
    n = min(s.samples, len(task.train))
    order = torch.randperm(len(task.train), generator=gen)[:n]
    base = int(loop.samples_run)
    dtype = next(iter(_params(ideal).values())).dtype
    log(f"diagnose {run_dir}: task {st['task']}, preset {chip.cfg.name}, chip seed "
        f"{chip.chip_seed}; {n} training samples in batches of {s.batch} (seed {s.seed}), "
        f"hidden dropout {dropout:g}{' (as the run trained)' if s.dropout is None else ''}, "
        f"no rotations; chip noise: run seed {int(loop.run_seed)}, samples from {base}; "
        f"derivative at {SURROGATE_AT_WORDS[loop.surrogate_at]}")
    sides = {"loop": [], "ideal": []}
    grads: list[dict] = []
    t0 = time.perf_counter()
    for b0 in range(0, n, s.batch):
        idx = order[b0:b0 + s.batch]
        x, y = task.train.get_batch(idx.numpy()), task.train.labels[idx]
        with torch.no_grad():
            raster, times = task.encode(x)
        keep = None
        if dropout:
            keep = hidden_keep_mask(loop.n_hidden, dropout, gen, dtype)
            loop.hidden_keep = ideal.hidden_keep = keep
        try:
            loop_out = _measured_pass(loop, raster, times)()
            ideal_out = ideal(raster)
            activity = _grad(ideal, names, ideal_out.z_hidden.sum())
            upstream = _upstream(ideal, names, activity)     # the weights spikes depend on
            row, spikes = {}, {}
            for side, net, out in (("loop", loop, loop_out), ("ideal", ideal, ideal_out)):
                sides[side].append(_side(out, y))
                spikes[side] = out.z_hidden.detach() > 0
                parts = {k: _grad(net, names, v) for k, v in _loss_parts(net, out, y, hp).items()}
                total = sum(parts.values())
                norm = float(total[upstream].norm() * activity.norm())
                row[side] = {"total": total,
                             "activity": {k: (float(-(g @ activity)) / norm if norm else 0.0)
                                          for k, g in parts.items()}}
        finally:
            if keep is not None:
                loop.hidden_keep = ideal.hidden_keep = None
        both = int((spikes["loop"] & spikes["ideal"]).sum())
        for side in sides:
            sides[side][-1]["in_a_bin_with_the_other"] = both
        a, c = row["loop"].pop("total"), row["ideal"].pop("total")
        den = float(a.norm() * c.norm())
        grads.append({"cosine": float(a @ c) / den if den else 0.0,
                      "loop": row["loop"]["activity"], "ideal": row["ideal"]["activity"]})
    wall = time.perf_counter() - t0
    report = _report(s, run_dir, st, chip, n, dropout, base, int(loop.run_seed), sides, grads,
                     wall)
    _print(report, log)
    out = unused_path(run_dir / "diagnose.json")        # an earlier diagnosis stays
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    log(f"wrote {out} ({wall:.1f} s)")
    return report


def _report(s, run_dir, st, chip, n, dropout, base, run_seed, sides, grads, wall) -> dict:
    def summary(rows: list[dict]) -> dict:
        per_bin = [sum(r["spikes_per_bin"][t] for r in rows) / (n * rows[0]["neurons"])
                   for t in range(len(rows[0]["spikes_per_bin"]))]
        tot = {k: sum(r[k] for r in rows) for k in rows[0]
               if k not in ("spikes_per_bin", "neurons")}
        total = sum(sum(r["spikes_per_bin"]) for r in rows)
        return {"spikes_per_neuron_input": sum(per_bin), "spikes_per_bin": per_bin,
                "share_in_a_bin_with_the_other": (tot["in_a_bin_with_the_other"] / total
                                                  if total else 0.0),
                "nll": tot["nll_sum"] / n, "accuracy": tot["correct"] / n,
                "wrong_classes_max_at_first_sample": tot["wrong_first"] / tot["wrong"],
                "mean_max_correct_class": tot["max_correct_sum"] / n,   # one per sample
                "mean_max_wrong_classes": tot["max_wrong_sum"] / tot["wrong"]}

    def mean(key, side=None, part=None) -> float:
        vals = [g[key] if side is None else g[side][part] for g in grads]
        return sum(vals) / len(vals)

    parts = list(grads[0]["loop"])
    return {
        "run_dir": str(run_dir), "task": st["task"], "preset": chip.cfg.name,
        "chip_seed": chip.chip_seed, "samples": n, "batch": s.batch, "seed": s.seed,
        "dropout": dropout, "run_seed": run_seed, "samples_from": base,
        "surrogate_at": st.get("surrogate_at", PREDATED["surrogate_at"]),
        "loop": summary(sides["loop"]), "ideal": summary(sides["ideal"]),
        "gradient": {
            "cosine_loop_ideal": mean("cosine"),
            "cosine_per_batch": [g["cosine"] for g in grads],
            "activity_component": {side: {p: mean(None, side, p) for p in parts}
                                   | {"total": sum(mean(None, side, p) for p in parts)}
                                   for side in ("loop", "ideal")},
            "activity_total_per_batch": {side: [sum(g[side].values()) for g in grads]
                                         for side in ("loop", "ideal")}},
        "wall_s": wall}


def _print(r: dict, log) -> None:
    lo, ide, g = r["loop"], r["ideal"], r["gradient"]
    w = 44

    def line(what, a, b):
        log(f"  {what:<{w}} {a:>16} {b:>16}")

    k = min(BINS_SHOWN, len(lo["spikes_per_bin"]))
    log(f"  {'':<{w}} {'in the loop':>16} {'ideal model':>16}")
    line("hidden spikes per neuron and input", f"{lo['spikes_per_neuron_input']:.3f}",
         f"{ide['spikes_per_neuron_input']:.3f}")
    for t in range(k):
        line(f"  in time bin {t}", f"{lo['spikes_per_bin'][t]:.3f}",
             f"{ide['spikes_per_bin'][t]:.3f}")
    if len(lo["spikes_per_bin"]) > k:
        line(f"  in bins {k}..{len(lo['spikes_per_bin']) - 1}",
             f"{sum(lo['spikes_per_bin'][k:]):.3f}", f"{sum(ide['spikes_per_bin'][k:]):.3f}")
    line("  share in a bin where the other has one too",
         f"{100 * lo['share_in_a_bin_with_the_other']:.1f} %",
         f"{100 * ide['share_in_a_bin_with_the_other']:.1f} %")
    line("classification loss (NLL)", f"{lo['nll']:.4f}", f"{ide['nll']:.4f}")
    line("accuracy", f"{100 * lo['accuracy']:.2f} %", f"{100 * ide['accuracy']:.2f} %")
    line("wrong classes with their maximum at sample 0",
         f"{100 * lo['wrong_classes_max_at_first_sample']:.1f} %",
         f"{100 * ide['wrong_classes_max_at_first_sample']:.1f} %")
    line("mean maximum, correct class", f"{lo['mean_max_correct_class']:.3f}",
         f"{ide['mean_max_correct_class']:.3f}")
    line("mean maximum, wrong classes", f"{lo['mean_max_wrong_classes']:.3f}",
         f"{ide['mean_max_wrong_classes']:.3f}")
    cos = g["cosine_per_batch"]
    log(f"  gradient of the training loss, loop vs ideal model: cosine {g['cosine_loop_ideal']:.3f}"
        f" (batches {min(cos):.3f}..{max(cos):.3f})")
    log("  descent direction along the activity direction (cosine; > 0: more hidden spikes):")
    ac = g["activity_component"]
    for p in ac["loop"]:
        line(f"  {p}", f"{ac['loop'][p]:+.4f}", f"{ac['ideal'][p]:+.4f}")


def run(s: DiagnoseSettings) -> int:
    """``spikeloop diagnose``; the run directory is locked meanwhile."""
    if not Path(s.run_dir).is_dir():
        raise DiagnoseError(f"{s.run_dir}: no such directory (diagnose takes the output "
                            "directory of `spikeloop train --backend fast`)")
    with DirLock(s.run_dir, "spikeloop diagnose") as lock:
        if lock.note:
            print(lock.note)
        diagnose(s)
    return 0
