"""spikeloop explore: specs refused before any point runs, points cached by their
whole variant, invalid variants and failed workers as rows, the pool and Ray
giving the same rows, the energy model, the report."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikeloop.backends import run
from spikeloop.base.config import MINI
from spikeloop.cli import main as cli_main
from spikeloop.explore import report, search, sweep
from spikeloop.explore.energy import (
    ACTIONS,
    EnergyTable,
    EnergyTableError,
    activity,
    derive_static,
    per_image_metrics,
)
from spikeloop.explore.spec import SpecError, load, make_variant
from spikeloop.explore.workloads import WORKLOADS, Context, run_workload
from spikeloop.model.chip import Chip
from spikeloop.verify.scenarios import SCENARIOS

pytestmark = pytest.mark.unit

#: an energy table without static power: the routing workload then needs no area
NO_STATIC = """[dynamic_pj]
host_event_in = 100.0
host_event_out = 100.0
arbiter_grant = 1.0
crossbar_write = 2.0
bus_event = 1.0
row_activation = 10.0
synapse_read = 0.1
neuron_spike = 5.0
adc_conversion = 5.0
ppu_cycle = 50.0
config_write = 20.0
[static]
watts_per_transistor = 0.0
"""

ROUTING_SPEC = """name = "tiny"
base = "mini"
seeds = [3]

[axes]
crossbar_fifo_depth = [1, 2]
neurons_per_block = [4, 3]        # 3 does not divide 16: an invalid variant

[workloads.routing]
rates = [0.02, 0.3]
repeats = 1
steps = 12
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- the spec ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expect", [
    ('base = "mini"\n[axes]\nfifo_depth = [1]\n[workloads.routing]\n',
     ":3: unknown ChipConfig field 'fifo_depth'"),
    ('base = "mini"\n[axes]\ncrossbar_fifo_depth = [0, 2]\n[workloads.routing]\n',
     ":3: ChipConfig.crossbar_fifo_depth = 0 is out of range; allowed: 1..256"),
    ('base = "mini"\n[axes]\ncrossbar_fifo_depth = [2]\n[workloads.speed]\n',
     ":4: unknown workload 'speed'; allowed: area, routing, mnist, yinyang"),
    ('base = "mini"\n[axes]\ncrossbar_fifo_depth = [2]\n[workloads.routing]\nrate = 3\n',
     ":5: workloads.routing: unknown parameter 'rate'"),
    ('base = "mini"\n[axes]\ncrossbar_fifo_depth = [2]\n[workloads.routing]\nsteps = -1\n',
     ":5: workloads.routing: steps = -1; allowed: an integer in 2..10000"),
    ('base = "huge"\n[axes]\ncrossbar_fifo_depth = [2]\n[workloads.area]\n',
     ":1: base = 'huge'; allowed: full, mini"),
    ('base = "mini"\n[workloads.area]\n', "give either [axes]"),
    ('base = "mini"\naxes = [\n', "not valid TOML"),
    ('base = "mini"\nseeds = [1, 1]\n[axes]\nbuses_per_half = [1]\n[workloads.area]\n',
     ":2: seeds = [1, 1] repeats a seed"),
])
def test_bad_specs_are_refused_naming_line_and_field(tmp_path, text, expect):
    p = write(tmp_path, "s.toml", text)
    with pytest.raises(SpecError) as e:
        load(p, WORKLOADS)
    assert str(e.value).startswith(str(p)) and expect in str(e.value), str(e.value)


def test_cli_refuses_a_bad_spec_in_one_line(tmp_path, capsys):
    p = write(tmp_path, "s.toml", 'base = "mini"\n[axes]\nfifo = [1]\n[workloads.routing]\n')
    assert cli_main(["explore", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s.toml:3: unknown ChipConfig field 'fifo'" in err[0]
    assert not (tmp_path / "o" / "points").exists()       # nothing ran


def test_grid_holds_the_base_and_each_distinct_variant_once(tmp_path):
    sp = load(write(tmp_path, "s.toml", ROUTING_SPEC), WORKLOADS)
    labels = [v.label for v in sp.variants]
    # crossbar_fifo_depth = 2 and neurons_per_block = 4 are mini's own values: the base
    assert labels == ["base", "crossbar_fifo_depth=1", "crossbar_fifo_depth=1,neurons_per_block=3",
                      "neurons_per_block=3"]
    assert sp.variants[3].cfg is None and "must divide" in sp.variants[3].error
    assert sp.space() == {"crossbar_fifo_depth": [1, 2], "neurons_per_block": [3, 4]}


def test_point_keys_cover_the_whole_variant(tmp_path):
    """Two variants of one preset never share a key (nor a calibration, nor a cache)."""
    sp = load(write(tmp_path, "s.toml", ROUTING_SPEC), WORKLOADS)
    pts = sweep.points(sp, "v1")
    assert len({p.key for p in pts}) == len(pts)
    assert {p.key for p in pts}.isdisjoint({p.key for p in sweep.points(sp, "v2")})


# -- the sweep -----------------------------------------------------------------------------
def _sweep(tmp_path, spec_text, **kw):
    sp = load(write(tmp_path, "s.toml", spec_text), WORKLOADS)
    table = write(tmp_path, "energy.toml", NO_STATIC)
    return sweep.Sweep(sp, tmp_path / "out", energy_table=str(table), progress=False, **kw)


def _stable(rows):
    """A row without what may differ between runs (wall time, log path); a NaN
    metric (a latency of a run in which nothing arrived) as the text ``nan``, so
    that two rows with NaN in the same places compare equal."""
    def same(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else v
    return [{k: same(v) for k, v in r.items() if k not in ("wall_s", "log")} for r in rows]


def test_sweep_rows_cache_and_rerun(tmp_path, monkeypatch):
    sw = _sweep(tmp_path, ROUTING_SPEC, workers=2)
    rows = sw.run()
    by = {r["variant"]: r for r in rows}
    assert [r["status"] for r in rows].count("ok") == 2
    assert by["neurons_per_block=3"]["status"] == sweep.INVALID
    assert "must divide" in by["neurons_per_block=3"]["reason"]
    base, tight = by["base"], by["crossbar_fifo_depth=1"]
    assert base["cfg.crossbar_fifo_depth"] == 2 and tight["cfg.crossbar_fifo_depth"] == 1
    # the tighter FIFO drops at least as much of the same stimulus
    assert tight["routing.xbar_drops"] >= base["routing.xbar_drops"]
    assert 0 < base["routing.delivered_fraction"] <= 1
    for r in (base, tight):
        assert r["energy_per_image_j"] > 0 and r["energy.static_per_image_j"] == 0
        assert Path(r["log"]).is_file()
    # a rerun computes nothing, and gives the same rows
    calls = []
    monkeypatch.setattr(sweep, "run_job", lambda job: calls.append(job))
    again = _sweep(tmp_path, ROUTING_SPEC, workers=1).run()
    assert calls == [] and again == rows
    res = report.write_report(tmp_path / "out")
    assert res["rows"] == 4 and (tmp_path / "out" / "results.parquet").is_file()
    assert "crossbar_fifo_depth=1" in (tmp_path / "out" / "report.md").read_text()


def test_a_failing_point_is_a_row_with_its_log_and_the_sweep_goes_on(tmp_path):
    spec = ('base = "mini"\nseeds = [1]\n[axes]\ncrossbar_fifo_depth = [2]\n'
            '[workloads.routing]\nrates = [0.02]\nrepeats = 1\nsteps = 8\n'
            '[workloads.yinyang]\nepochs = 1\ntest_samples = 10\n')
    sw = _sweep(tmp_path, spec, workers=2, data_dir=str(tmp_path / "nowhere"))
    # yinyang is generated in code and ignores data_dir; a missing MNIST would not
    sw.spec.workloads["yinyang"]["train_samples"] = -5      # the worker's training refuses it
    rows = sw.run()
    failed = [r for r in rows if r["status"] == sweep.FAILED]
    assert {r["workload"] for r in failed} == {"yinyang"}
    assert all("train_samples" in Path(r["log"]).read_text() for r in failed)
    assert all(r["status"] == "ok" for r in rows if r["workload"] == "routing")
    assert len(list((tmp_path / "out" / "failed").glob("*.json"))) == len(failed)


def test_unreachable_ray_address_is_a_clear_error(tmp_path):
    pytest.importorskip("ray")
    sw = _sweep(tmp_path, ROUTING_SPEC, ray_address="127.0.0.1:9")
    with pytest.raises(sweep.SweepError, match="cannot reach a Ray cluster"):
        sw.run()


@pytest.mark.slow
def test_ray_and_pool_give_identical_rows(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pool = _sweep(tmp_path / "a", ROUTING_SPEC, workers=2).run()
    ray_rows = _sweep(tmp_path / "b", ROUTING_SPEC, workers=2, ray_address="local").run()
    assert _stable(pool) == _stable(ray_rows)


# -- energy --------------------------------------------------------------------------------
def test_activity_counts_are_the_same_on_every_backend():
    chip = Chip(MINI, 2)
    sc = SCENARIOS["recurrence"](MINI, np.random.default_rng(0))
    img = chip.configure(sc.image)
    counts = [activity(run(chip, img, sc.events, sc.n_steps, backend=b, run_seed=1), MINI,
                       len(sc.events.table)) for b in ("reference", "fast")]
    assert counts[0] == counts[1] and set(counts[0]) == set(ACTIONS)
    assert counts[0]["neuron_spike"] > 0 and counts[0]["crossbar_write"] > 0


def test_energy_table_and_derivation(tmp_path):
    table = EnergyTable.load()
    assert set(table.dynamic_pj) == set(ACTIONS) and table.watts_per_transistor > 0
    bad = write(tmp_path, "e.toml", NO_STATIC.replace("bus_event = 1.0", "bus_evnt = 1.0"))
    with pytest.raises(EnergyTableError, match="dynamic_pj.bus_evnt: unknown action"):
        EnergyTable.load(bad)
    w = derive_static(0.4e-6, 1e9)
    m = per_image_metrics({}, 1, 11.8, 1e9, EnergyTable(table.dynamic_pj, w))
    assert m["energy_per_image_j"] == pytest.approx(2.0e-6)
    assert m["power_w"] == pytest.approx(2.0e-6 / 11.8e-6)


def test_pareto_front():
    pts = np.array([[1, 0.9], [2, 0.95], [2, 0.8], [3, 0.95], [np.nan, 1.0]])
    assert report.pareto(pts, ("min", "max")).tolist() == [True, True, False, False, False]


def test_objectives_are_checked():
    assert search.parse_objectives("energy_per_image_j:min,mnist.accuracy:max") == [
        ("energy_per_image_j", "min"), ("mnist.accuracy", "max")]
    with pytest.raises(ValueError, match="METRIC:min or METRIC:max"):
        search.parse_objectives("energy:least")


def test_report_of_a_directory_without_a_sweep(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spikeloop.cli", "explore", "report",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a sweep directory" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_search_runs_trials_through_the_sweep(tmp_path):
    pytest.importorskip("optuna")
    sw = _sweep(tmp_path, ROUTING_SPEC, workers=2)
    hist = search.search(sw, 4, [("routing.energy_per_image_j", "min"),
                                 ("routing.delivered_fraction", "max")], seed=0)
    assert len(hist) == 4
    # the invalid variant (neurons_per_block = 3) is a failed trial, the others have values
    for changes, values in hist:
        assert (values is None) == (changes["neurons_per_block"] == 3)
    again = search.search(sw, 4, [("routing.energy_per_image_j", "min"),
                                  ("routing.delivered_fraction", "max")], seed=0)
    assert again == hist          # seeded sampler, cached points: the same trials


@pytest.mark.slow
def test_a_constraint_on_area_excludes_variants_before_they_run(tmp_path):
    spec = ROUTING_SPEC.replace("[workloads.routing]", "[workloads.area]\n[workloads.routing]")
    spec += '[[constraints]]\nmetric = "area.cells_total"\nmax = 1\n'
    sp = load(write(tmp_path, "s.toml", spec), WORKLOADS)
    rows = sweep.Sweep(sp, tmp_path / "out", progress=False, workers=2).run()
    routing = [r for r in rows if r["workload"] == "routing" and r["status"] != sweep.INVALID]
    assert routing and all(r["status"] == sweep.EXCLUDED for r in routing)
    assert all("area.cells_total" in r["reason"] and "above 1" in r["reason"] for r in routing)


def test_report_keeps_each_workloads_energy_apart():
    """Per variant, an MNIST image's energy and a routing sample's are two metrics,
    not averaged together; the variant's fields and the workload's own metrics keep
    their names; missing values are left out."""
    rows = pd.DataFrame([
        {"variant": "base", "workload": "mnist", "seed": 1, "status": "ok", "wall_s": 3.0,
         "cfg.crossbar_fifo_depth": 4, "mnist.accuracy": 0.9, "mnist.merged": True,
         "energy_per_image_j": 2.4e-6, "routing.xbar_drops": float("nan")},
        {"variant": "base", "workload": "routing", "seed": 1, "status": "ok", "wall_s": 1.0,
         "cfg.crossbar_fifo_depth": 4, "routing.xbar_drops": 10, "energy_per_image_j": 6e-7,
         "mnist.accuracy": float("nan")},
        {"variant": "base", "workload": "routing", "seed": 2, "status": "ok", "wall_s": 1.0,
         "cfg.crossbar_fifo_depth": 4, "routing.xbar_drops": 20, "energy_per_image_j": 8e-7,
         "mnist.accuracy": float("nan")},
    ])
    v = report.per_variant(rows)
    assert v.loc["base", "mnist.energy_per_image_j"] == pytest.approx(2.4e-6)
    assert v.loc["base", "routing.energy_per_image_j"] == pytest.approx(7e-7)
    assert v.loc["base", "routing.xbar_drops"] == 15 and v.loc["base", "mnist.accuracy"] == 0.9
    assert v.loc["base", "cfg.crossbar_fifo_depth"] == 4
    assert "energy_per_image_j" not in v.columns and "seed" not in v.columns
    assert not any(c.startswith(("mnist.routing.", "routing.mnist.")) for c in v.columns)
    assert search._value(rows.to_dict("records"), "routing.energy_per_image_j") == \
        pytest.approx(7e-7)


@pytest.mark.slow          # a calibration, a software training and one in the loop: minutes
def test_retrain_epochs_retrains_in_the_loop_on_the_variant(tmp_path):
    """retrain_epochs: the software network retrained on the variant's own chip
    (a variant of mini, not the preset: the chip file holds that variant), once,
    then reused; 0 deploys it as is."""
    cfg = make_variant(MINI, {"crossbar_fifo_depth": 4}).cfg
    ctx = Context(tmp_path / "cache", EnergyTable.load(), MINI, code_version="t")
    p = {"epochs": 1, "train_samples": 40, "test_samples": 20, "batch_size": 20}
    as_is = run_workload("yinyang", cfg, {**p, "retrain_epochs": 0}, 1, ctx)
    again = run_workload("yinyang", cfg, {**p, "retrain_epochs": 1}, 1, ctx)
    assert as_is["yinyang.retrain_epochs"] == 0 and again["yinyang.retrain_epochs"] == 1
    runs = [d for d in (tmp_path / "cache" / "retrained").iterdir() if d.is_dir()]
    assert len(runs) == 1 and (runs[0] / "network.pt").is_file()
    res = json.loads((runs[0] / "results.json").read_text())
    assert res["backend"] == "fast" and res["chip_seed"] == 1
    mtime = (runs[0] / "network.pt").stat().st_mtime_ns
    assert run_workload("yinyang", cfg, {**p, "retrain_epochs": 1}, 1, ctx) == again
    assert (runs[0] / "network.pt").stat().st_mtime_ns == mtime      # reused, not retrained
