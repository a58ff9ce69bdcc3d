"""The workloads of a sweep: each a function ``(cfg, params, seed, ctx) -> metrics``.

``area``
    cells, memory bits and a transistor estimate per component and in total
    (:mod:`spikeloop.explore.area`).
``routing``
    the digital event path under load: a random network on the variant (every
    external link routed to the buses of both halves, neurons routed back to the
    buses and to the host links, random driver selects, labels and weights),
    Poisson input streams at rising rates on the fast backend, one batch entry
    per rate and repeat.  Reports per rate the delivered fraction (crossbar node
    events taken / (taken + dropped at the crossbar + dropped at the arbiters)),
    drops per stage (arbiter, crossbar node) and bus events no driver matched;
    the highest rate carried without loss (input events the playback releases
    late are delayed, not lost: counted apart); the latency from a neuron's spike to
    its event in the host-link recorder (cycles, median and 99th percentile:
    arbiter, crossbar node and link); energy per sample and average power.
    ``cosim_check = true`` runs the first two samples on the co-simulation too
    (variants of at most 64 neurons) and fails the point unless its Observables
    equal the fast backend's.
``mnist``
    the paper's network (256-246-10, docs/paper.md) trained in software on MNIST
    (once per seed and settings, cached), deployed as is on a calibrated chip of
    the variant and tested in the paper's inference mode (a sample every 11.8
    µs): test accuracy, hidden spikes per neuron and input, chip time per image,
    frames/s, energy per image and average power.  ``retrain_epochs = N``
    retrains it in the loop on that chip (fast backend, N epochs, cached per
    variant) before the test.  A network that does not fit the variant is a row
    that says why.
``yinyang``
    the same with the Yin-Yang task (small enough for mini-sized variants).

Every metric name is ``<workload>.<metric>`` except the energy metrics every
workload shares (``energy_per_image_j``, ``power_w``, ``energy.*``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from spikeloop import backends
from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents
from spikeloop.base.files import waiting_lock
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign, pack_event
from spikeloop.base.protocol import live_cycles
from spikeloop.data.batching import Batches
from spikeloop.explore import area as explore_area
from spikeloop.explore.energy import EnergyTable, activity, add_counts, per_image_metrics
from spikeloop.model.chip import Chip
from spikeloop.nn.chip_network import INFERENCE_SPACING_US
from spikeloop.nn.placement import PlacementError
from spikeloop.training.tasks import build_task
from spikeloop.training.train import TrainSettings, load_network
from spikeloop.training.train import run as train_run


class DoesNotFit(Exception):
    """The workload's network cannot be placed on the variant (a row, not a failure)."""


@dataclasses.dataclass(frozen=True)
class Context:
    """What every point shares: the sweep's cache directory, the energy table,
    the data directory."""

    cache_dir: Path
    energy: EnergyTable
    #: the sweep's base preset (sizes the networks trained in software)
    base: ChipConfig
    data_dir: str | None = None
    #: the code version, part of every cached result's key
    code_version: str = ""


# ------------------------------------------------------------------ parameters
@dataclasses.dataclass(frozen=True)
class Param:
    default: object
    kind: str            # "int", "int?" (or none), "float", "bool", "floats"
    lo: float | None = None
    hi: float | None = None
    help: str = ""

    def check(self, name: str, v):
        def num(x, integer):
            ok = isinstance(x, int) if integer else isinstance(x, int | float)
            if not ok or isinstance(x, bool) or (isinstance(x, float) and not math.isfinite(x)):
                return False
            return (self.lo is None or x >= self.lo) and (self.hi is None or x <= self.hi)

        rng = (f" in {self.lo:g}..{self.hi:g}" if self.hi is not None
               else f" >= {self.lo:g}" if self.lo is not None else "")
        if self.kind == "int" and not num(v, True):
            raise ValueError(f"{name} = {v!r}; allowed: an integer{rng}")
        if self.kind == "float" and not num(v, False):
            raise ValueError(f"{name} = {v!r}; allowed: a number{rng}")
        if self.kind == "bool" and not isinstance(v, bool):
            raise ValueError(f"{name} = {v!r}; allowed: true or false")
        if self.kind == "floats" and (not isinstance(v, list) or not v
                                      or not all(num(x, False) for x in v)):
            raise ValueError(f"{name} = {v!r}; allowed: a non-empty list of numbers{rng}")
        if self.kind == "int?" and v is not None and not num(v, True):
            raise ValueError(f"{name} = {v!r}; allowed: an integer{rng}")
        return v


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    run: Callable
    params: dict

    def check(self, params: dict, base: ChipConfig) -> dict:
        """``params`` checked, with the defaults of those not given."""
        for k in params:
            if k not in self.params:
                raise ValueError(f"unknown parameter {k!r}; allowed: {', '.join(self.params)}")
        return {k: p.check(k, params.get(k, p.default)) for k, p in self.params.items()}


# ------------------------------------------------------------------ area
def area_metrics(cfg: ChipConfig, ctx: Context) -> dict:
    """The variant's ``area.*`` metrics (docs/area.md; each component synthesized
    once per distinct netlist, in the user's area cache shared by every sweep)."""
    return explore_area.area_metrics(cfg)


def transistors(cfg: ChipConfig, ctx: Context) -> float:
    """The variant's transistor estimate (static power scales with it); not
    estimated when the energy table has no static power."""
    if ctx.energy.watts_per_transistor == 0:
        return 0.0
    return float(area_metrics(cfg, ctx)["area.transistors_total"])


def _area(cfg: ChipConfig, p: dict, seed: int, ctx: Context) -> dict:
    return area_metrics(cfg, ctx)


# ------------------------------------------------------------------ routing
def routing_image(cfg: ChipConfig, rng: np.random.Generator, p: dict) -> ConfigImage:
    """The routing workload's random network (see the module docstring)."""
    img = ConfigImage.empty(cfg)
    H, D, C = cfg.n_halves, cfg.drivers_per_half, cfg.columns_per_half
    n_labels = 1 << cfg.event_label_bits
    img.neuron_enable[:] = 1
    # unique labels: a recorded event names the neuron that sent it
    img.neuron_label[:] = rng.permutation(n_labels)[:cfg.n_neurons]
    ext = range(cfg.n_blocks, cfg.crossbar_inputs)
    for i in ext:                       # links onto the buses (mask 0: every event passes)
        img.xbar_enable[i, :cfg.n_buses] = rng.random(cfg.n_buses) < p["link_fanout"]
    blocks = slice(0, cfg.n_blocks)
    img.xbar_enable[blocks, :cfg.n_buses] = rng.random((cfg.n_blocks, cfg.n_buses)) \
        < p["recurrent_fanout"]
    img.xbar_enable[blocks, cfg.n_buses:] = 1           # every spike towards the host links
    sel_max = 1 << cfg.row_select_bits
    img.driver_select[:] = rng.integers(0, sel_max, size=(H, D))
    # a driver compares the two top row-select bits: about a quarter of the events match
    top = (sel_max - 1) & ~((1 << max(cfg.row_select_bits - 2, 0)) - 1)
    img.driver_mask[:] = top
    img.row_sign[:, 0::2] = RowSign.EXC
    img.row_sign[:, 1::2] = RowSign.INH
    rows = cfg.rows_per_half
    img.synapse_label[:] = rng.integers(0, _addresses(cfg), size=(H, rows, C))
    w = rng.integers(cfg.weight_max // 2, cfg.weight_max + 1, size=(H, rows, C))
    img.synapse_weight[:] = np.where(rng.random((H, rows, C)) < p["weight_density"], w, 0)
    img.adc_period = np.int64(cfg.analog_step_cycles)
    return img


def _addresses(cfg: ChipConfig) -> int:
    """Synapse addresses the routing workload uses: 4 (a quarter of an event's
    synapses respond), fewer when the labels are narrower."""
    return min(4, 1 << cfg.label_bits)


def routing_events(cfg: ChipConfig, rng: np.random.Generator, rates, repeats: int,
                   n_steps: int) -> InputEvents:
    """Poisson streams on every external link: sample ``r * repeats + k`` at
    ``rates[r]`` events per cycle per link, released in the first 80 % of the
    run and capped at the playback memory's depth."""
    window = int(0.8 * n_steps * cfg.analog_step_cycles)
    per_sample = []
    n_addr = _addresses(cfg)
    for rate in rates:
        for _ in range(repeats):
            evs = []
            for link in range(cfg.n_ext_inputs):
                cycles = np.nonzero(rng.random(window) < rate)[0]
                for c in cycles:
                    label = pack_event(cfg, int(rng.integers(0, n_addr)),
                                       int(rng.integers(0, 1 << cfg.row_select_bits)))
                    evs.append((int(c), link, label))
            evs.sort()
            per_sample.append(evs[:cfg.playback_depth])
    return InputEvents.from_lists(cfg, per_sample)


def spike_latencies(obs, cfg: ChipConfig, labels: np.ndarray) -> np.ndarray:
    """Cycles from each recorded event's spike (the latest spike of the neuron with
    that label at or before the record) to its record."""
    by_label = {int(lb): n for n, lb in enumerate(labels)}
    lat = []
    spikes = obs.spikes
    for s, cycle, _link, label in obs.records.tolist():
        n = by_label.get(int(label))
        if n is None:
            continue
        sel = spikes[(spikes[:, 0] == s) & (spikes[:, 3] == n) & (spikes[:, 2] <= cycle)]
        if len(sel):
            lat.append(cycle - int(sel[:, 2].max()))
    return np.array(lat, dtype=np.int64)


def _routing(cfg: ChipConfig, p: dict, seed: int, ctx: Context) -> dict:
    rng = np.random.default_rng([seed, 1])
    img = routing_image(cfg, rng, p)
    rates, reps, n_steps = p["rates"], p["repeats"], p["steps"]
    events = routing_events(cfg, rng, rates, reps, n_steps)
    chip = Chip(cfg, seed)
    image = chip.configure(img)
    obs = backends.run(chip, image, events, n_steps, backend="fast", run_seed=seed)
    out: dict = {}
    if p["cosim_check"]:
        out.update(_cosim_check(cfg, chip, image, events, n_steps, seed, obs))
    lossless = 0.0
    carried = True
    B = len(rates) * reps
    taken = obs.xbar_events.reshape(B, -1).sum(1)
    xdrop = obs.xbar_drops.reshape(B, -1).sum(1)
    adrop = obs.arbiter_drops.reshape(B, -1).sum(1)
    for r, rate in enumerate(rates):
        sl = slice(r * reps, (r + 1) * reps)
        t, x, a = int(taken[sl].sum()), int(xdrop[sl].sum()), int(adrop[sl].sum())
        delivered = t / (t + x + a) if t + x + a else 1.0
        out[f"routing.delivered@{rate:g}"] = delivered
        out[f"routing.xbar_drops@{rate:g}"] = x
        out[f"routing.arbiter_drops@{rate:g}"] = a
        if carried and x == 0 and a == 0:
            lossless = rate
        else:
            carried = False
    lat = spike_latencies(obs, cfg, image.neuron_label)
    counts = activity(obs, cfg, len(events.table))
    us = live_cycles(cfg, n_steps) / cfg.clock_mhz
    out.update({
        "routing.max_lossless_rate": lossless,
        "routing.delivered_fraction": float(taken.sum() / max(taken.sum() + xdrop.sum()
                                                               + adrop.sum(), 1)),
        "routing.xbar_drops": int(xdrop.sum()), "routing.arbiter_drops": int(adrop.sum()),
        "routing.driver_unmatched": int(obs.driver_unmatched.sum()),
        "routing.playback_late": int(obs.playback_late.sum()),
        "routing.input_events": int(len(events.table)), "routing.spikes": int(len(obs.spikes)),
        "routing.latency_p50_cycles": float(np.median(lat)) if len(lat) else float("nan"),
        "routing.latency_p99_cycles": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "routing.us_per_sample": us,
    })
    out.update(per_image_metrics(counts, B, us, transistors(cfg, ctx), ctx.energy))
    return out


def _cosim_check(cfg, chip, image, events, n_steps, seed, fast_obs) -> dict:
    if cfg.n_neurons > 64:
        raise ValueError(f"cosim_check: the co-simulation check is for mini-sized variants "
                         f"(at most 64 neurons; this one has {cfg.n_neurons})")
    two = InputEvents(cfg, 2, events.table[events.table[:, 0] < 2])
    co = backends.run(chip, image, two, n_steps, backend="cosim", run_seed=seed)
    fa = backends.run(chip, image, two, n_steps, backend="fast", run_seed=seed)
    diff = co.first_difference(fa)
    if diff is not None:
        raise RuntimeError(f"cosim_check: the co-simulation differs from the fast backend: {diff}")
    return {"routing.cosim_identical": 1}


# ------------------------------------------------------------------ networks
def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _trained_once(run_dir: Path, train: Callable[[], None]) -> Path:
    """``run_dir/network.pt``, made by ``train()`` once: a lock lets concurrent
    points share one run, and a run killed before it finished starts again."""
    done = run_dir / "network.pt"
    if done.is_file():
        return done
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with waiting_lock(run_dir.parent / f".{run_dir.name}.lock"):
        if not done.is_file():
            if run_dir.exists():
                shutil.rmtree(run_dir)
            train()
    return done


def software_network(task: str, p: dict, seed: int, ctx: Context) -> Path:
    """network.pt of ``task`` trained in software (once per settings, cached under
    the sweep's cache directory)."""
    preset = ctx.base.name if task == "yinyang" else None    # yinyang: sized for the base
    settings = {k: p[k] for k in ("epochs", "train_samples", "hidden") if k in p}
    key = _key(task, settings, preset, seed, ctx.code_version)
    run_dir = ctx.cache_dir / "networks" / f"{task}-seed{seed}-{key}"
    return _trained_once(run_dir, lambda: train_run(TrainSettings(
        task=task, out=str(run_dir), backend="software", seed=seed, epochs=p["epochs"],
        train_samples=p.get("train_samples"), test_samples=p.get("test_samples"),
        hidden=p.get("hidden"), data_dir=ctx.data_dir, progress=False, preset=preset)))


def retrained_network(task_name: str, cfg: ChipConfig, chip: Chip, net_path: Path, p: dict,
                      seed: int, ctx: Context) -> Path:
    """network.pt of the software-trained ``net_path`` retrained in the loop for
    ``retrain_epochs`` on chip ``seed`` of the variant ``cfg`` (the fast backend;
    once per variant and settings, cached under the sweep's cache directory)."""
    key = _key(task_name, cfg.to_dict(), {k: p[k] for k in sorted(p)}, seed, ctx.code_version)
    run_dir = ctx.cache_dir / "retrained" / f"{task_name}-seed{seed}-{key}"
    chip_file = run_dir.parent / f"{run_dir.name}.chip.npz"

    def train() -> None:
        chip.save(chip_file)
        train_run(TrainSettings(
            task=task_name, out=str(run_dir), backend="fast", preset=ctx.base.name,
            variant=cfg, chip_seed=seed, chip_file=str(chip_file),
            epochs=p["retrain_epochs"], init=str(net_path), train_samples=p.get("train_samples"),
            test_samples=p.get("test_samples"), hidden=p.get("hidden"), data_dir=ctx.data_dir,
            progress=False))

    return _trained_once(run_dir, train)


def deployed(task_name: str, cfg: ChipConfig, p: dict, seed: int, ctx: Context) -> dict:
    """A software-trained network deployed as is on a calibrated chip of ``cfg``,
    tested in inference mode; accuracy, spikes, chip time and energy."""
    net_path = software_network(task_name, p, seed, ctx)
    chip = Chip.calibrated(cfg, seed)
    try:
        net, _ = load_network(net_path, chip=chip, backend="fast")
    except PlacementError as e:
        raise DoesNotFit(str(e)) from None
    if p["retrain_epochs"]:
        net_path = retrained_network(task_name, cfg, chip, net_path, p, seed, ctx)
        net, _ = load_network(net_path, chip=chip, backend="fast")
    task = build_task(task_name, cfg=cfg, data_dir=ctx.data_dir, train_samples=1,
                      test_samples=p["test_samples"])
    n_bins = int(INFERENCE_SPACING_US // task.dt_us)
    n_bins = min(n_bins, int((INFERENCE_SPACING_US * cfg.clock_mhz - 2) // net.adc_period),
                 cfg.adc_buffer_depth)
    task = task.with_steps(n_bins)
    net.sample_spacing_us = INFERENCE_SPACING_US
    net.eval()
    counts: dict = {}
    correct = n = 0
    spikes = 0.0
    cycles = 0
    writes = len(net.placement.image.bus_writes())
    with torch.no_grad():
        for x, y in Batches(task.test, p["batch_size"], shuffle=False):
            raster, times = task.encode(x)
            out = net(raster, times_us=times)
            obs = net.last_observables
            add_counts(counts, activity(obs, cfg, net.last_input_events))
            correct += int((out.log_probs.argmax(1) == y).sum())
            spikes += float(out.z_hidden.sum())
            n += len(y)
            cycles += int(net.last_stats["cycles_per_sample"]) * len(y)
    counts["config_write"] = writes            # once, for the whole test set
    us_per_image = cycles / n / cfg.clock_mhz
    res = {f"{task_name}.accuracy": correct / n,
           f"{task_name}.spikes_per_neuron_input": spikes / (n * task.n_hidden),
           f"{task_name}.test_samples": n,
           "us_per_image": us_per_image, "frames_per_s": 1e6 / us_per_image,
           f"{task_name}.merged": bool(net.merged),
           f"{task_name}.retrain_epochs": int(p["retrain_epochs"])}
    res.update(per_image_metrics(counts, n, us_per_image, transistors(cfg, ctx), ctx.energy))
    return res


def _mnist(cfg, p, seed, ctx):
    return deployed("mnist", cfg, p, seed, ctx)


def _yinyang(cfg, p, seed, ctx):
    return deployed("yinyang", cfg, p, seed, ctx)


_NET_PARAMS = {
    "epochs": Param(3, "int", 1, 1000, "software training epochs"),
    "train_samples": Param(None, "int?", 1, None, "training subset (default: all)"),
    "test_samples": Param(1000, "int", 1, None, "test images deployed on the chip"),
    "batch_size": Param(100, "int", 1, 10_000, "test batch size"),
    "retrain_epochs": Param(0, "int", 0, 1000, "epochs of retraining in the loop on the "
                                               "variant before the test (0: deployed as is)"),
}

WORKLOADS = {
    "area": Workload("area", _area, {}),
    "routing": Workload("routing", _routing, {
        "rates": Param([0.005, 0.01, 0.02, 0.05, 0.1, 0.2], "floats", 0.0, 1.0,
                       "input events per cycle per external link"),
        "repeats": Param(2, "int", 1, 64, "samples per rate"),
        "steps": Param(40, "int", 2, 10_000, "analog steps per sample"),
        "link_fanout": Param(0.5, "float", 0.0, 1.0, "share of buses each link feeds"),
        "recurrent_fanout": Param(0.25, "float", 0.0, 1.0,
                                  "share of buses each arbiter block feeds"),
        "weight_density": Param(0.5, "float", 0.0, 1.0, "share of non-zero synapses"),
        "cosim_check": Param(False, "bool"),
    }),
    "mnist": Workload("mnist", _mnist, dict(_NET_PARAMS)),
    "yinyang": Workload("yinyang", _yinyang, {**_NET_PARAMS,
                                              "epochs": Param(20, "int", 1, 1000),
                                              "hidden": Param(None, "int?", 1, None)}),
}


def run_workload(name: str, cfg: ChipConfig, params: dict, seed: int, ctx: Context) -> dict:
    """The metrics of one point."""
    return WORKLOADS[name].run(cfg, params, seed, ctx)
