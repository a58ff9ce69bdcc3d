"""The synapse drivers' activations in the Observables (``row_activations``,
``row_events``): every backend reports them alike, the energy model counts an
event that several drivers of its bus match once per driver, and the routing
workload measures the latency from a spike to the synapse from them."""
from collections import Counter

import numpy as np
import pytest

from spikeloop.backends.fast import run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign, pack_event
from spikeloop.explore.energy import EnergyTable, activity
from spikeloop.explore.workloads import (
    WORKLOADS,
    Context,
    routing_setup,
    run_workload,
    synapse_latencies,
)
from spikeloop.model.chip import Chip
from spikeloop.model.digital.arbiter import SpikeArbiterRef
from spikeloop.model.digital.playback import EventPlaybackRef
from spikeloop.model.digital.top import ChipDigitalRef

pytestmark = pytest.mark.unit


def multicast_image(cfg, mask: int) -> ConfigImage:
    """External link 0 routed to bus 0 of half 0 only; driver ``d`` compares the
    row select under ``mask`` with select ``d`` (mask 0: every driver matches
    every event; all bits: only the driver of its row select)."""
    img = ConfigImage.empty(cfg)
    img.xbar_enable[cfg.n_blocks, 0] = 1
    img.driver_select[:] = np.arange(cfg.drivers_per_half)
    img.driver_mask[:] = mask
    img.row_sign[:, 0::2] = RowSign.EXC
    img.row_sign[:, 1::2] = RowSign.INH
    img.adc_period = np.int64(cfg.analog_step_cycles)
    return img


@pytest.mark.parametrize("mask, per_event", [(0, MINI.drivers_per_half // MINI.buses_per_half),
                                             ((1 << MINI.row_select_bits) - 1, 1)])
def test_row_activations_count_every_driver_an_event_activates(mask, per_event):
    """An input event on a bus whose drivers all match it activates each of them
    (one a cycle); the energy model's row activations and synapse reads count
    each, on the reference and the fast backend alike."""
    cfg = MINI
    chip = Chip(cfg, 1)
    img = chip.configure(multicast_image(cfg, mask))
    k = 5
    events = InputEvents.from_lists(cfg, [[(10 * i, 0, pack_event(cfg, 1, 0))
                                           for i in range(k)]])
    ref = run_reference(chip, img, events, 10, row_events=True)
    fast = run_fast(chip, img, events, 10, row_events=True)
    assert ref.first_difference(fast) is None, ref.first_difference(fast)
    drivers = list(range(0, cfg.drivers_per_half, cfg.buses_per_half))[:per_event]
    assert ref.row_activations[0, 0, drivers].tolist() == [k] * per_event
    assert ref.row_activations.sum() == k * per_event
    counts = activity(fast, cfg, k)
    assert counts["bus_event"] == k
    assert counts["row_activation"] == k * per_event
    assert counts["synapse_read"] == k * per_event * cfg.columns_per_half
    # every activation listed: the drivers of one event in consecutive cycles
    ev = ref.row_events
    assert ev.shape == (k * per_event, 5)
    assert ev[:per_event, 3].tolist() == drivers
    assert np.diff(ev[:per_event, 1]).tolist() == [1] * (per_event - 1)
    # without the option no events are listed, the counts stay
    plain = run_fast(chip, img, events, 10)
    assert plain.row_events.shape == (0, 5)
    np.testing.assert_array_equal(plain.row_activations, fast.row_activations)


def test_row_events_survive_save_load_head_and_concat(tmp_path):
    cfg = MINI
    chip = Chip(cfg, 1)
    img = chip.configure(multicast_image(cfg, 0))
    events = InputEvents.from_lists(cfg, [[(3, 0, pack_event(cfg, 1, 0))],
                                          [(5, 0, pack_event(cfg, 2, 0))]])
    obs = run_fast(chip, img, events, 4, row_events=True)
    obs.save(tmp_path / "o.npz")
    back = Observables.load(tmp_path / "o.npz")
    assert back.first_difference(obs) is None
    one = obs.head(1)
    assert set(one.row_events[:, 0].tolist()) == {0} and one.row_activations.shape[0] == 1
    both = Observables.concat([obs.head(1), obs.head(1)])
    assert both.row_events[:, 0].tolist() == [0] * len(one.row_events) + [1] * len(
        one.row_events)


def test_latency_from_spike_and_release_to_the_synapse_on_mini():
    """The routing workload's network on mini: every driver activation is
    measured or counted as unmeasured (a loss on its path), none is earlier
    than the pipeline allows; the reference's Observables are the fast
    backend's."""
    cfg = MINI
    p = WORKLOADS["routing"].check({"rates": [0.3], "repeats": 2, "steps": 20,
                                    "weight_density": 0.5, "match_bits": 2}, cfg)
    chip, image, events = routing_setup(cfg, p, 1)
    obs = {b: (run_fast if b == "fast" else run_reference)(chip, image, events, p["steps"],
                                                           run_seed=1, row_events=True)
           for b in ("fast", "reference")}
    assert obs["fast"].first_difference(obs["reference"]) is None
    o = obs["fast"]
    lat = synapse_latencies(o, image, events, p["steps"])
    assert len(lat.link) > 0 and len(lat.spike) > 0
    assert len(lat.link) + len(lat.spike) + lat.link_unmatched + lat.spike_unmatched == len(
        o.row_events)
    assert lat.link.min() >= 1 and lat.spike.min() >= 1
    assert o.xbar_drops.sum() > 0 and lat.link_unmatched > 0
    # a neuron's spike: pending, its arbiter's FIFO, a crossbar node, the bus
    assert lat.spike.min() == 3


@pytest.mark.cosim
@pytest.mark.slow
def test_routing_workload_cosim_check_compares_every_activation(tmp_path):
    """The routing workload's co-simulation check on mini (Verilator): the
    co-simulated chip's Observables, every driver activation included (the
    row-activity monitor reads the DUT's drivers), equal the fast backend's."""
    table = EnergyTable.load()
    ctx = Context(cache_dir=tmp_path, energy=EnergyTable(table.dynamic_pj, 0.0), base=MINI)
    p = WORKLOADS["routing"].check({"rates": [0.1, 0.3], "repeats": 1, "steps": 20,
                                    "weight_density": 0.5, "match_bits": 2,
                                    "cosim_check": True}, MINI)
    m = run_workload("routing", MINI, p, 1, ctx)
    assert m["routing.cosim_identical"] == 1
    assert m["routing.row_activations"] > 0 and m["routing.latency_measured"] > 0


# -- the latency against the truth ---------------------------------------------------------
class _Born(int):
    """An event label that carries the cycle its event was born."""

    def __new__(cls, value, born):
        obj = int.__new__(cls, value)
        obj.born = born
        return obj


@pytest.fixture
def tagged_reference(monkeypatch):
    """The reference backend with every event tagged with its birth (the cycle its
    neuron's pending bit was set, or its playback release); returns the list the
    driver activations go to as (cycle, half, driver, label, birth)."""
    now, seen = [0], []
    cycle, arb_tick, pb_tick = ChipDigitalRef._cycle, SpikeArbiterRef.tick, EventPlaybackRef.tick
    count_rows = ChipDigitalRef._count_rows

    def _cycle(self, *a, **k):
        now[0] = self.cycle
        return cycle(self, *a, **k)

    def _arb(self, *, spikes=0, labels=None, events_ready=0, clear=0):
        since = self.__dict__.setdefault("since", {})
        before, n_before = self.pending, len(self.fifo)
        out = arb_tick(self, spikes=spikes, labels=labels, events_ready=events_ready,
                       clear=clear)
        if clear:
            since.clear()
            return out
        granted = 0
        if len(self.fifo) == n_before - int(n_before > 0 and events_ready) + 1:
            granted = before & -before            # the lowest pending neuron
            j = granted.bit_length() - 1
            self.fifo[-1] = _Born(self.fifo[-1], since[j])
        for j in range(self.p):
            if (spikes >> j) & 1 and (not (before >> j) & 1 or (granted >> j) & 1):
                since[j] = now[0]
        return out

    def _pb(self, **kw):
        out = pb_tick(self, **kw)
        out["links_payload"] = [_Born(x, now[0]) if v else x
                                for x, v in zip(out["links_payload"], out["links_valid"],
                                                strict=True)]
        return out

    def _rows(self, h, rows, payloads):
        for b, label in enumerate(payloads):
            if rows[2 * b].active:
                seen.append((self.cycle, h, rows[2 * b].row // 2, int(label), label.born))
        return count_rows(self, h, rows, payloads)

    monkeypatch.setattr(ChipDigitalRef, "_cycle", _cycle)
    monkeypatch.setattr(SpikeArbiterRef, "tick", _arb)
    monkeypatch.setattr(EventPlaybackRef, "tick", _pb)
    monkeypatch.setattr(ChipDigitalRef, "_count_rows", _rows)
    return seen


def _check_against_truth(seen, cfg, seed: int) -> tuple[int, int]:
    p = WORKLOADS["routing"].check({"rates": [0.2, 0.5], "repeats": 1, "steps": 20,
                                    "weight_density": 0.5, "match_bits": 1}, cfg)
    chip, image, events = routing_setup(cfg, p, seed)
    seen.clear()
    obs = run_reference(chip, image, events, p["steps"], run_seed=seed, row_events=True)
    truth = np.array(seen, dtype=np.int64).reshape(-1, 5)
    np.testing.assert_array_equal(truth[:, :4], obs.row_events[:, 1:])
    lat = synapse_latencies(obs, image, events, p["steps"])
    by_neuron = np.isin(truth[:, 3], np.asarray(image.neuron_label))
    for measured, sample, sel in ((lat.spike, lat.spike_sample, by_neuron),
                                  (lat.link, lat.link_sample, ~by_neuron)):
        true = Counter(zip(obs.row_events[sel, 0].tolist(),
                           (truth[sel, 0] - truth[sel, 4]).tolist(), strict=True))
        got = Counter(zip(sample.tolist(), measured.tolist(), strict=True))
        assert not got - true, f"seed {seed}: measured latencies the run never had: " \
                               f"{dict(got - true)}"
    return len(lat.spike) + len(lat.link), len(truth)


def test_latencies_are_the_true_ones(tagged_reference):
    """Every latency measured from the Observables is one the reference run had
    (its events tagged with their births), per sample; a run with losses."""
    measured, total = _check_against_truth(tagged_reference, MINI, 4)
    assert 0 < measured < total


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5, 15))
@pytest.mark.parametrize("depth", [1, 2])
def test_latencies_are_the_true_ones_long(tagged_reference, seed, depth):
    cfg = MINI.replace(name=f"mini-d{depth}", crossbar_fifo_depth=depth, playback_depth=128)
    _check_against_truth(tagged_reference, cfg, seed)
