"""``spikeloop experiment decalibration`` (spikeloop/experiments/decalibration.py).

The experiment runs for days on FULL; here a tiny version on MINI (in the slow
tier: two calibrations and three short trainings) checks the plumbing: the
levels, the files, the reuse of finished runs and measurements, the refusal of
another experiment's directory and of bad input.
"""
import json
import re

import pytest

from spikeloop.cli import main as cli_main
from spikeloop.experiments.decalibration import (
    DecalibrationSettings,
    ExperimentError,
    achieved_spreads,
    level_key,
    levels,
    run_decalibration,
)
from spikeloop.model.chip import Chip

pytestmark = pytest.mark.unit

TINY = ["--quick", "--seeds", "0", "--sigmas", "0", "0.5", "--groups", "all", "--epochs", "1",
        "--train-samples", "60", "--test-samples", "30", "--batch-size", "30", "--no-progress",
        "--no-plot", "--reps", "2"]


def test_levels_and_quick():
    ds = DecalibrationSettings(out="x", sigmas=(0.3, 0.0, 0.1), groups=("tau", "all"))
    assert levels(ds) == [("", 0.0), ("tau", 0.1), ("tau", 0.3), ("all", 0.1), ("all", 0.3)]
    assert level_key("", 0.0) == "calibrated" and level_key("tau", 0.1) == "tau-s0.1"
    q = DecalibrationSettings(out="x", quick=True, epochs=2).resolved()
    assert (q.task, q.preset, q.seeds, q.sigmas, q.epochs) == ("yinyang", "mini", (0, 1),
                                                               (0.0, 0.5), 2)
    assert DecalibrationSettings(out="x").resolved().preset == "full"


@pytest.mark.slow          # about 35 s of CPU (two calibrations, three short trainings)
def test_tiny_experiment_resumes_and_reuses(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "decalibration", "--out", str(out), *TINY]
    assert cli_main(args) == 0
    res = json.loads((out / "experiment.json").read_text())
    assert res["settings"]["task"] == "yinyang" and res["settings"]["preset"] == "mini"
    row = res["per_seed"]["0"]
    assert set(row) == {"software", "calibrated", "all-s0.5"}
    for key in ("calibrated", "all-s0.5"):
        for mode in ("loop", "transfer"):
            assert 0.0 <= row[key][mode]["train"] <= 1.0
            assert 0.0 <= row[key][mode]["test"] <= 1.0
        r = json.loads((out / "seed0" / key / "loop" / "results.json").read_text())
        assert r["epochs_done"] == 1 and r["args"]["chip_file"].endswith(
            "chip1-mini-calibrated.npz" if key == "calibrated" else
            "chip1-mini-all-s0.5-seed0.npz")
    # the decalibrated chip really is: its time constants spread by about 50 %
    s = res["summary"]
    assert s["calibrated"]["achieved"]["tau_mem"] < 0.05
    assert 0.25 < s["all-s0.5"]["achieved"]["tau_mem"] < 0.8
    chip = Chip.load(out / "chips" / "chip1-mini-all-s0.5-seed0.npz")
    assert achieved_spreads(chip) == s["all-s0.5"]["achieved"]
    assert set(chip.calibration.neuron_targets) == {"threshold_lsb", "tau_mem_us",
                                                    "tau_syn_exc_us", "tau_syn_inh_us"}
    table = (out / "table.md").read_text()
    assert "| all at once | 50 % |" in table and "| none (calibrated) | 0 % |" in table
    # a second call reuses every run, chip and measurement: the same numbers
    capsys.readouterr()
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished earlier") == 3 and "  calibrated chip 1" not in printed
    again = json.loads((out / "experiment.json").read_text())
    assert again["per_seed"] == res["per_seed"]
    # runs and measurements made before --surrogate-at existed (their settings
    # without it) ran with the derivative at the measured membrane: reused at that
    # setting; the other is refused
    for p in out.rglob("*.json"):
        d = json.loads(p.read_text())
        for k in ("shared", "key", "args"):
            if isinstance(d, dict) and isinstance(d.get(k), dict):
                d[k].pop("surrogate_at", None)
        p.write_text(json.dumps(d))
    assert cli_main(args) == 0
    assert capsys.readouterr().out.count("finished earlier") == 3
    assert json.loads((out / "experiment.json").read_text())["per_seed"] == res["per_seed"]
    assert cli_main(args + ["--surrogate-at", "model"]) == 2
    assert "surrogate_at: there 'measured', now 'model'" in capsys.readouterr().err
    # the chips have no driver or synapse mismatch unless asked; asked, it is another
    # experiment (refused here, nothing overwritten)
    assert chip.synapse_gains is None
    assert cli_main(args + ["--synapse-gain-sigma", "0.05"]) == 2
    assert "synapse_gain_sigma: there 0.0, now 0.05" in capsys.readouterr().err
    # another experiment's settings in the same directory: refused, nothing overwritten
    before = {p: p.read_bytes() for p in out.rglob("*.json")}
    with pytest.raises(ExperimentError, match=r"holds an experiment with other settings "
                                              r"\(batch_size: there 30, now 15\)"):
        run_decalibration(DecalibrationSettings(
            out=str(out), quick=True, seeds=(0,), sigmas=(0.0, 0.5), groups=("all",),
            epochs=1, train_samples=60, test_samples=30, batch_size=15, reps=2, progress=False,
            plot=False))
    assert {p: p.read_bytes() for p in out.rglob("*.json")} == before
    # a chip file calibrated to other targets than its name says: refused
    chips = out / "chips"
    a, b = chips / "chip1-mini-all-s0.5-seed0.npz", chips / "chip1-mini-calibrated.npz"
    b.write_bytes(a.read_bytes())
    with pytest.raises(ExperimentError, match="holds a chip calibrated to other targets"):
        run_decalibration(DecalibrationSettings(
            out=str(out), quick=True, seeds=(0,), sigmas=(0.0,), groups=("all",), epochs=1,
            train_samples=60, test_samples=30, batch_size=30, reps=2, progress=False,
            plot=False))


def test_driver_and_synapse_mismatch_reach_every_chip(tmp_path):
    out = tmp_path / "exp"
    args = ["experiment", "decalibration", "--out", str(out), *TINY, "--sigmas", "0",
            "--driver-gain-sigma", "0.04", "--synapse-gain-sigma", "0.05"]
    assert cli_main(args) == 0
    chip = Chip.load(out / "chips" / "chip1-mini-calibrated.npz")
    mm = chip.analog.mismatch_config
    assert (mm.driver_gain_sigma, mm.synapse_gain_sigma) == (0.04, 0.05)
    assert chip.synapse_gains is not None
    r = json.loads((out / "seed0" / "calibrated" / "loop" / "results.json").read_text())
    assert r["args"]["chip_file"].endswith("chip1-mini-calibrated.npz")
    assert "gain spreads 4 % and 5 % (std)" in (out / "table.md").read_text()


@pytest.mark.parametrize("extra,msg", [
    (["--sigmas", "0", "1.5"], r"sigmas: 1.5; allowed: numbers in \[0, 1\]"),
    (["--sigmas", "0.1", "0.1"], "repeats a value"),
    (["--groups", "taus"], "groups: 'taus'; allowed: tau, threshold, all"),
    (["--seeds", "1", "1"], r"seeds = \[1, 1\]; allowed: different integers >= 0"),
    (["--epochs", "0"], r"epochs = 0; allowed: an integer >= 1"),
    (["--reps", "0"], r"reps = 0; allowed: an integer >= 1"),
    (["--readout-noise-lsb", "-1"], r"readout_noise_lsb = -1.0; allowed: a number >= 0"),
    (["--synapse-gain-sigma", "0.9"], r"synapse_gain_sigma = 0.9; allowed: a number from 0 "
                                      "to 0.5"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, msg):
    out = tmp_path / "exp"
    rc = cli_main(["experiment", "decalibration", "--out", str(out), "--quick", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(msg, lines[0]), lines[0]
    assert not out.exists() or not any(out.iterdir())

