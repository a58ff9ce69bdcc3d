"""The workloads of a sweep: each a function ``(cfg, params, seed, ctx) -> metrics``.

``area``
    cells, memory bits and a transistor estimate per component and in total
    (:mod:`spikeloop.explore.area`).
``routing``
    the digital event path under load: a random network on the variant (every
    external link routed to some buses of both halves, each block's neurons to
    some buses and to one host link; each driver compares the top
    ``match_bits`` of an event's row select, so an event activates a few
    drivers of its bus, one a cycle; sparse random weights; the neurons that
    fire without any input, by mismatch and noise, disabled), Poisson input
    streams at rising rates on the fast backend, one batch entry per rate and
    repeat.  Reports per rate the delivered fraction on the path to the
    synapses (events the crossbar nodes towards the buses took / (taken +
    dropped there + dropped at the arbiters)), drops per stage (arbiter,
    crossbar node towards a bus; towards a host link apart) and bus events no
    driver matched; the highest rate carried without loss on the path to the
    synapses (input events the playback releases late are delayed, not lost:
    counted apart); the latency from a neuron's spike to the synapse (to each
    activation of a synapse driver its event makes: arbiter, crossbar node,
    bus, driver; cycles, median and 99th percentile, :func:`synapse_latencies`),
    the same from an input event's release, and from a spike to its event in
    the host-link recorder; the driver activations; energy per sample and
    average power.  ``cosim_check = true`` runs the first two samples on the
    co-simulation too (variants of at most 64 neurons) and fails the point
    unless its Observables equal the fast backend's.
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
from spikeloop.backends.fast import playback_schedule
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
    """The routing workload's random network (see the module docstring).  Its
    parts are drawn from streams of their own (labels, routes, drivers,
    synapses), so variants that differ in one part's shape (e.g. the buses)
    share the others."""
    img = ConfigImage.empty(cfg)
    H, D, C = cfg.n_halves, cfg.drivers_per_half, cfg.columns_per_half
    r_label, r_route, r_driver, r_syn = rng.spawn(4)
    img.neuron_enable[:] = 1
    # unique labels, apart from the links' (whose upper field is the link): an
    # event on a bus or in the recorder names the neuron or link that sent it
    img.neuron_label[:] = r_label.permutation(_neuron_labels(cfg))[:cfg.n_neurons]
    ext = range(cfg.n_blocks, cfg.crossbar_inputs)
    for i in ext:                       # links onto the buses (mask 0: every event passes)
        img.xbar_enable[i, :cfg.n_buses] = r_route.random(cfg.n_buses) < p["link_fanout"]
    blocks = slice(0, cfg.n_blocks)
    img.xbar_enable[blocks, :cfg.n_buses] = r_route.random((cfg.n_blocks, cfg.n_buses)) \
        < p["recurrent_fanout"]
    for k in range(cfg.n_blocks):                        # each block's spikes to one host link
        img.xbar_enable[k, cfg.n_buses + k % cfg.n_host_links] = 1
    sel_max = 1 << cfg.row_select_bits
    img.driver_select[:] = r_driver.integers(0, sel_max, size=(H, D))
    # a driver compares the top ``match_bits`` row-select bits: 2**-match_bits of
    # the events match it (multicast within a bus: the rest of its bus's drivers)
    m = min(p["match_bits"], cfg.row_select_bits)
    top = (sel_max - 1) & ~((1 << (cfg.row_select_bits - m)) - 1)
    img.driver_mask[:] = top
    img.row_sign[:, 0::2] = RowSign.EXC
    img.row_sign[:, 1::2] = RowSign.INH
    rows = cfg.rows_per_half
    img.synapse_label[:] = r_syn.integers(0, _addresses(cfg), size=(H, rows, C))
    w = r_syn.integers(cfg.weight_max // 2, cfg.weight_max + 1, size=(H, rows, C))
    img.synapse_weight[:] = np.where(r_syn.random((H, rows, C)) < p["weight_density"], w, 0)
    img.adc_period = np.int64(cfg.analog_step_cycles)
    return img


def _neuron_labels(cfg: ChipConfig) -> np.ndarray:
    """The labels the routing workload's neurons draw from: every label whose
    upper field names no external link (the links' events carry their link
    there), or every label when that leaves too few."""
    labels = np.arange(1 << cfg.event_label_bits)
    own = labels[(labels >> (cfg.label_bits + cfg.row_select_bits)) >= cfg.n_ext_inputs]
    return own if len(own) >= cfg.n_neurons else labels


def _link_upper(cfg: ChipConfig, link: int) -> int:
    """The upper field of link ``link``'s events (0 when the labels have none
    or too few values)."""
    upper_bits = cfg.event_label_bits - cfg.label_bits - cfg.row_select_bits
    return link if cfg.n_ext_inputs <= (1 << upper_bits) else 0


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
                                       int(rng.integers(0, 1 << cfg.row_select_bits)),
                                       _link_upper(cfg, link))
                    evs.append((int(c), link, label))
            evs.sort()
            per_sample.append(evs[:cfg.playback_depth])
    return InputEvents.from_lists(cfg, per_sample)


def host_latencies(obs, cfg: ChipConfig, labels: np.ndarray) -> np.ndarray:
    """Cycles from each recorded event's spike (the latest spike of the neuron with
    that label at or before the record) to its record in the host-link recorder
    (a lower bound when the neuron spiked again before its event was recorded)."""
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


@dataclasses.dataclass(frozen=True)
class SynapseLatencies:
    """Cycles from the source of each driver activation to the activation (see
    :func:`synapse_latencies`), with the sample of each; the activations whose
    source could not be told for certain are counted, not measured."""

    spike: np.ndarray           #: [k] a neuron's spike -> its event activates a driver
    spike_sample: np.ndarray    #: [k]
    spike_unmatched: int        #: activations by neurons' events left unmeasured
    link: np.ndarray            #: [m] an input event's release -> it activates a driver
    link_sample: np.ndarray     #: [m]
    link_unmatched: int         #: activations by the links' events left unmeasured


def synapse_latencies(obs, image: ConfigImage, events: InputEvents,
                      n_steps: int) -> SynapseLatencies:
    """The latency from a spike to the synapse: from each neuron's spike (its
    cycle in ``obs.spikes``: the cycle it entered the logic) and from each input
    event's release by the playback to every activation of a synapse driver
    its event makes (``obs.row_events``: run with ``row_events=True``).

    For networks whose labels name their source (:func:`routing_image`: unique
    neuron labels, apart from the links', whose upper field is the link): the
    activations of one bus event are consecutive cycles of one bus with one
    label and rising drivers.  A source's events reach a bus in the order it
    sent them (the arbiter's FIFO, one crossbar node's FIFO, the bus), so the
    k-th bus event from a source on a bus is the k-th of its spikes (releases)
    whose label the crossbar node passes to that bus and some driver there
    matches, unless one was lost on the way.  A crossbar node that dropped
    events in a sample could do so only from the first cycle it could have
    been full (:func:`_node_full_from`): its bus events from that cycle on are
    left unmeasured and counted, and so are a neuron's events in a sample
    whose arbiter in its block dropped spikes."""
    cfg = image.cfg
    ev = obs.row_events
    Bh, P, NB, N = cfg.buses_per_half, cfg.neurons_per_block, cfg.n_buses, cfg.n_neurons
    empty = np.zeros(0, np.int64)
    if not len(ev):
        return SynapseLatencies(empty, empty, 0, empty, empty, 0)
    labels = np.asarray(image.neuron_label, dtype=np.int64)
    # the bus events: consecutive activations of one bus by one label, rising drivers
    bus = ev[:, 2] * Bh + ev[:, 3] % Bh
    order = np.lexsort((ev[:, 1], bus, ev[:, 0]))
    ev, bus = ev[order], bus[order]
    s, cyc, drv, lab = ev[:, 0], ev[:, 1], ev[:, 3], ev[:, 4]
    same = np.zeros(len(ev), dtype=bool)
    same[1:] = ((s[1:] == s[:-1]) & (bus[1:] == bus[:-1]) & (lab[1:] == lab[:-1])
                & (cyc[1:] == cyc[:-1] + 1) & (drv[1:] > drv[:-1]))
    eid = np.cumsum(~same) - 1                  # the bus event of each activation
    first = np.flatnonzero(~same)
    es, eb, el, ec = s[first], bus[first], lab[first], cyc[first]
    # each bus event's source: a neuron (its label), else a link (upper field)
    n_src = N + cfg.n_ext_inputs
    neuron_of = np.full(1 << cfg.event_label_bits, -1, dtype=np.int64)
    neuron_of[labels] = np.arange(N)
    upper = np.minimum(el >> (cfg.label_bits + cfg.row_select_bits), cfg.n_ext_inputs - 1)
    esrc = np.where(neuron_of[el] >= 0, neuron_of[el], N + upper)
    # the sources' spikes and releases, each on every bus it reaches: the crossbar
    # node of its source passes its label there, and a driver there matches it
    rel, _ = playback_schedule(cfg, events, live_cycles(cfg, n_steps))
    sp = obs.spikes[np.asarray(image.neuron_enable, dtype=bool)[obs.spikes[:, 3]]]
    src_s = np.concatenate([sp[:, 0], rel[:, 1]])
    src = np.concatenate([sp[:, 3], N + rel[:, 2]])
    src_c = np.concatenate([sp[:, 2], rel[:, 0]])
    src_l = np.concatenate([labels[sp[:, 3]], rel[:, 3]])
    inp = np.where(src < N, src // P, cfg.n_blocks + src - N)           # crossbar input
    enable = np.asarray(image.xbar_enable, dtype=bool)[:, :NB]
    mask = np.asarray(image.xbar_mask, dtype=np.int64)[:, :NB]
    target = np.asarray(image.xbar_target, dtype=np.int64)[:, :NB]
    rs = (src_l >> cfg.label_bits) & ((1 << cfg.row_select_bits) - 1)
    d = np.arange(cfg.drivers_per_half)
    hit = (((np.arange(1 << cfg.row_select_bits)[:, None, None] ^ image.driver_select[None])
            & image.driver_mask[None]) == 0)                                # [rs, H, D]
    driven = np.zeros((1 << cfg.row_select_bits, NB), dtype=bool)
    for o in range(NB):
        driven[:, o] = hit[:, o // Bh, d % Bh == o % Bh].any(1)
    reach = (enable[inp] & ((src_l[:, None] & mask[inp]) == target[inp])
             & driven[rs])                                                  # [k, NB]
    k, o = np.nonzero(reach)
    M = int(max(src_c.max(initial=0), ec.max(initial=0))) + 2 + len(src_c)

    def ranked(key, cycle):
        """Each entry's rank in cycle order among those with the same key."""
        order = np.lexsort((cycle, key))
        r = np.empty(len(key), np.int64)
        sk = key[order]
        r[order] = np.arange(len(sk)) - np.searchsorted(sk, sk)
        return r

    skey = (src_s[k] * n_src + src[k]) * NB + o
    src_key = skey * M + ranked(skey, src_c[k])
    born_of = src_c[k]
    so = np.argsort(src_key)
    src_key, born_of = src_key[so], born_of[so]
    ekey = (es * n_src + esrc) * NB + eb
    want = ekey * M + ranked(ekey, ec)
    at = np.minimum(np.searchsorted(src_key, want), max(len(src_key) - 1, 0))
    found = (len(src_key) > 0) & (src_key[at] == want) if len(src_key) else \
        np.zeros(len(want), dtype=bool)
    born = np.where(found, born_of[at] if len(born_of) else 0, 0)
    ein = np.where(esrc < N, esrc // P, cfg.n_blocks + esrc - N)
    # a crossbar node that dropped events in a sample: its bus events are
    # measured up to the first cycle it could have been full
    last = np.empty(len(first), np.int64)
    last[:-1] = cyc[first[1:] - 1]
    last[-1] = cyc[-1]
    full_from = _node_full_from(obs, cfg, es, ein, eb, last, src_s[k], inp[k], o, src_c[k])
    lost = ((ec >= full_from)
            | ((esrc < N) & (obs.arbiter_drops[es, np.minimum(ein, cfg.n_blocks - 1)] > 0)))
    # links whose events cannot carry their link in the upper field: not told apart
    told = (esrc < N) | (cfg.n_ext_inputs <= 1
                         or _link_upper(cfg, cfg.n_ext_inputs - 1) == cfg.n_ext_inputs - 1)
    ok = found & ~lost & (born <= ec) & told
    lat = cyc - born[eid]
    good = ok[eid]
    is_n = (esrc < N)[eid]
    return SynapseLatencies(
        spike=lat[good & is_n], spike_sample=s[good & is_n],
        spike_unmatched=int((~good & is_n).sum()),
        link=lat[good & ~is_n], link_sample=s[good & ~is_n],
        link_unmatched=int((~good & ~is_n).sum()))


def _node_full_from(obs, cfg: ChipConfig, es, ein, eb, pop, b_s, b_in, b_out,
                    b_cycle) -> np.ndarray:
    """Per bus event (sample ``es``, crossbar input ``ein``, bus ``eb``): the
    first cycle from which its crossbar node may have been full, so may have
    dropped an event; a node without drops in that sample never (a cycle past
    every other).  A node's FIFO holds at the start of cycle t at most the
    events born (spike, release) before t less those popped before t (a bus
    event leaves its node in the cycle of its last activation, ``pop``), and a
    push is dropped only when it holds ``crossbar_fifo_depth``.  ``b_*``: the
    births (sample, crossbar input, bus, cycle)."""
    never = np.iinfo(np.int64).max
    out = np.full(len(es), never, dtype=np.int64)
    X = cfg.crossbar_fifo_depth
    for s_, i_, o_ in zip(*np.nonzero(obs.xbar_drops[:, :, :cfg.n_buses]), strict=True):
        mine = (es == s_) & (ein == i_) & (eb == o_)
        births = np.sort(b_cycle[(b_s == s_) & (b_in == i_) & (b_out == o_)])
        pops = np.sort(pop[mine])
        # just after each birth: births so far less pops so far (both before the next cycle)
        held = np.arange(1, len(births) + 1) - np.searchsorted(pops, births, side="right")
        full = births[held >= X] + 1
        out[mine] = int(full[0]) if len(full) else never
    return out


def _percentile(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def routing_setup(cfg: ChipConfig, p: dict, seed: int):
    """(chip, image, events) of the routing workload: chip ``seed`` of the
    variant (uncalibrated), :func:`routing_image` with the neurons that fire
    without any input disabled (the mismatch puts some thresholds below their
    leak, others sit so close to it that the membrane noise alone fires them:
    the same load at every rate; a run of the same samples without input, whose
    noise is the loaded run's, finds them), :func:`routing_events`."""
    r_image, r_events = np.random.default_rng([seed, 1]).spawn(2)
    img = routing_image(cfg, r_image, p)
    events = routing_events(cfg, r_events, p["rates"], p["repeats"], p["steps"])
    chip = Chip(cfg, seed)
    image = chip.configure(img)
    silent = backends.run(chip, image, InputEvents.from_lists(cfg, [[]] * events.batch),
                          p["steps"], backend="fast", run_seed=seed)
    image.neuron_enable[np.unique(silent.spikes[:, 3])] = 0
    return chip, image, events


def _routing(cfg: ChipConfig, p: dict, seed: int, ctx: Context) -> dict:
    rates, reps, n_steps = p["rates"], p["repeats"], p["steps"]
    chip, image, events = routing_setup(cfg, p, seed)
    obs = backends.run(chip, image, events, n_steps, backend="fast", run_seed=seed,
                       row_events=True)
    L = live_cycles(cfg, n_steps)
    lat = synapse_latencies(obs, image, events, n_steps)
    out: dict = {}
    if p["cosim_check"]:
        out.update(_cosim_check(cfg, chip, image, events, n_steps, seed, obs))
    lossless = 0.0
    carried = True
    B, NB = len(rates) * reps, cfg.n_buses
    # the path to the synapses: the arbiters, the crossbar nodes towards the buses
    taken = obs.xbar_events[:, :, :NB].reshape(B, -1).sum(1)
    xdrop = obs.xbar_drops[:, :, :NB].reshape(B, -1).sum(1)
    adrop = obs.arbiter_drops.reshape(B, -1).sum(1)
    hdrop = obs.xbar_drops[:, :, NB:].reshape(B, -1).sum(1)
    for r, rate in enumerate(rates):
        sl = slice(r * reps, (r + 1) * reps)
        t, x, a = int(taken[sl].sum()), int(xdrop[sl].sum()), int(adrop[sl].sum())
        delivered = t / (t + x + a) if t + x + a else 1.0
        out[f"routing.delivered@{rate:g}"] = delivered
        out[f"routing.xbar_drops@{rate:g}"] = x
        out[f"routing.arbiter_drops@{rate:g}"] = a
        out[f"routing.host_link_drops@{rate:g}"] = int(hdrop[sl].sum())
        mine = (lat.spike_sample >= r * reps) & (lat.spike_sample < (r + 1) * reps)
        out[f"routing.latency_p99_cycles@{rate:g}"] = _percentile(lat.spike[mine], 99)
        mine = (lat.link_sample >= r * reps) & (lat.link_sample < (r + 1) * reps)
        out[f"routing.input_latency_p99_cycles@{rate:g}"] = _percentile(lat.link[mine], 99)
        if carried and x == 0 and a == 0:
            lossless = rate
        else:
            carried = False
    host = host_latencies(obs, cfg, image.neuron_label)
    counts = activity(obs, cfg, len(events.table))
    us = L / cfg.clock_mhz
    out.update({
        "routing.max_lossless_rate": lossless,
        "routing.delivered_fraction": float(taken.sum() / max(taken.sum() + xdrop.sum()
                                                               + adrop.sum(), 1)),
        "routing.xbar_drops": int(xdrop.sum()), "routing.arbiter_drops": int(adrop.sum()),
        "routing.host_link_drops": int(hdrop.sum()),
        "routing.driver_unmatched": int(obs.driver_unmatched.sum()),
        "routing.playback_late": int(obs.playback_late.sum()),
        "routing.input_events": int(len(events.table)),
        "routing.spikes": int(image.neuron_enable[obs.spikes[:, 3]].sum()),
        "routing.silenced_neurons": int((image.neuron_enable == 0).sum()),
        "routing.row_activations": int(obs.row_activations.sum()),
        "routing.latency_p50_cycles": _percentile(lat.spike, 50),
        "routing.latency_p99_cycles": _percentile(lat.spike, 99),
        "routing.latency_measured": len(lat.spike),
        "routing.latency_unmeasured": lat.spike_unmatched,
        "routing.input_latency_p50_cycles": _percentile(lat.link, 50),
        "routing.input_latency_p99_cycles": _percentile(lat.link, 99),
        "routing.input_latency_unmeasured": lat.link_unmatched,
        "routing.host_latency_p50_cycles": _percentile(host, 50),
        "routing.host_latency_p99_cycles": _percentile(host, 99),
        "routing.us_per_sample": us,
    })
    out.update(per_image_metrics(counts, B, us, transistors(cfg, ctx), ctx.energy))
    return out


def _cosim_check(cfg, chip, image, events, n_steps, seed, fast_obs) -> dict:
    if cfg.n_neurons > 64:
        raise ValueError(f"cosim_check: the co-simulation check is for mini-sized variants "
                         f"(at most 64 neurons; this one has {cfg.n_neurons})")
    two = InputEvents(cfg, 2, events.table[events.table[:, 0] < 2])
    co = backends.run(chip, image, two, n_steps, backend="cosim", run_seed=seed,
                      row_events=True)
    fa = backends.run(chip, image, two, n_steps, backend="fast", run_seed=seed,
                      row_events=True)
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
        "weight_density": Param(0.02, "float", 0.0, 1.0, "share of non-zero synapses"),
        "match_bits": Param(4, "int", 0, 16, "top row-select bits a driver compares "
                                             "(an event matches 2**-match_bits of the "
                                             "drivers of its bus)"),
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
