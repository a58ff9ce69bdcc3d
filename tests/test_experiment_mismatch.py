"""``spikeloop experiment mismatch`` (spikeloop/experiments/mismatch.py) and ``spikeloop replay``.

The full experiment runs for an hour on FULL (docs/training.md); here a tiny version on
MINI checks the plumbing: every condition trained or evaluated, the files, the
reuse of finished runs, the claims' logic, the refusals.
"""
import dataclasses
import json

import pytest

from spikeloop.cli import main as cli_main
from spikeloop.experiments.mismatch import ExperimentError, MismatchSettings, _claims, run_mismatch
from spikeloop.training.train import (
    TrainSettings,
    setting_conflicts,
    train_or_reuse,
    with_predated,
)

pytestmark = pytest.mark.unit


def summary(ideal, loop, deployed, loop_std=0.002, spikes=0.3):
    row = {"accuracy_std": 0.0, "spikes_mean": spikes}
    return {"ideal": {**row, "accuracy_mean": ideal},
            "loop_a": {**row, "accuracy_mean": loop, "accuracy_std": loop_std},
            "deployed_a": {**row, "accuracy_mean": deployed}}


def test_claims():
    c = _claims(summary(0.95, 0.945, 0.80), 10)
    assert c["learned"]["holds"]
    assert c["loop_within_1pp_of_ideal"]["holds"]
    assert c["loop_within_1pp_of_ideal"]["gap_pp"] == pytest.approx(0.5)
    assert c["fewer_than_one_spike"]["holds"]
    assert c["deployed_visibly_worse"]["holds"]
    c = _claims(summary(0.95, 0.93, 0.935, loop_std=0.01, spikes=1.2), 10)
    assert not c["loop_within_1pp_of_ideal"]["holds"]
    assert not c["fewer_than_one_spike"]["holds"]
    assert not c["deployed_visibly_worse"]["holds"]
    # a network at chance teaches nothing
    assert not _claims(summary(0.34, 0.37, 0.32), 3)["learned"]["holds"]


def test_claims_per_residual_level():
    s = summary(0.95, 0.945, 0.94)
    row = {"accuracy_std": 0.004, "spikes_mean": 0.5}
    s.update({"deployed_r0.5": {**row, "accuracy_mean": 0.90},
              "loop_r0.5": {**row, "accuracy_mean": 0.93},
              "deployed_r0.75": {**row, "accuracy_mean": 0.70},
              "loop_r0.75": {**row, "accuracy_mean": 0.705, "accuracy_std": 0.01}})
    c = _claims(s, 10, (0.75, 0.5))
    assert c["loop_corrects_residual"]["0.5"]["gain_pp"] == pytest.approx(3.0)
    assert c["loop_corrects_residual"]["0.5"]["holds"]
    # 0.5 pp: less than 1 pp and than twice the seed spread
    assert not c["loop_corrects_residual"]["0.75"]["holds"]
    assert "loop_corrects_uncalibrated" not in c


def test_refusals(tmp_path):
    for kw, msg in (({"chip_a": 3, "chip_b": 3}, "two different chip instances"),
                    ({"seeds": ()}, "at least one training seed"),
                    ({"seeds": (1, 1)}, "repeats a seed"),
                    ({"task": "shd"}, "allowed: mnist, yinyang"),
                    ({"epochs": 0}, r"epochs = 0; allowed: an integer >= 1"),
                    ({"residuals": (0.0,)}, r"residuals: 0.0; allowed: fractions strictly "
                                            r"between 0 \(the calibrated chip\) and 1"),
                    ({"residuals": (1,)}, r"residuals: 1; allowed"),
                    ({"residuals": (0.5, 0.5)}, r"repeats a fraction")):
        with pytest.raises(ExperimentError, match=msg):
            run_mismatch(MismatchSettings(out=str(tmp_path), **kw))


def _tiny_experiment(out, capsys, *extra):
    """Runs the tiny experiment twice (the second call must reuse every finished
    run and give the same numbers); returns its experiment.json and table.md."""
    args = ["experiment", "mismatch", "--out", str(out), "--task", "yinyang", "--preset",
            "mini", "--seeds", "0", "--epochs", "1", "--retrain-epochs", "1",
            "--train-samples", "60", "--test-samples", "30", "--batch-size", "30",
            "--no-progress", *extra]
    assert cli_main(args) == 0
    res = json.loads((out / "experiment.json").read_text())
    row = res["per_seed"]["0"]
    assert row["inference_a"]["cycles_per_image"] == 184 * 8 + 2
    for key in ("ideal", "loop_a", "deployed_a", "a_on_b", "retrained_b"):
        assert 0.0 <= row[key]["accuracy"] <= 1.0
    for d in ("software", "loop-A", "retrain-B", "loop-A-uncalibrated"):
        r = json.loads((out / "seed0" / d / "results.json").read_text())
        assert r["epochs_done"] == 1
    retrain = (out / "seed0" / "retrain-B" / "train.log").read_text()
    assert "init: weights from" in retrain and "loop-A/network.pt" in retrain
    table = (out / "table.md").read_text()
    assert "| trained in software, deployed as is on chip A |" in table
    assert "\nClaims:\n" in table
    runs = len([d for d in (out / "seed0").iterdir() if (d / "results.json").exists()])
    # a second call reuses the finished runs and gives the same numbers
    capsys.readouterr()
    assert cli_main(args) == 0
    assert capsys.readouterr().out.count("finished earlier") == runs
    again = json.loads((out / "experiment.json").read_text())
    assert again["per_seed"] == res["per_seed"]
    return res, table


def test_tiny_experiment_end_to_end(tmp_path, capsys):
    res, _ = _tiny_experiment(tmp_path / "exp", capsys)
    assert set(res["per_seed"]["0"]) >= {"ideal", "loop_a", "deployed_a", "a_on_b",
                                         "retrained_b", "inference_a", "deployed_uncal",
                                         "loop_uncal"}
    assert [lv["residual"] for lv in res["residual_levels"]] == [0.0, 1.0]
    # without --threads each training runs with the training's own default, recorded
    args = json.loads((tmp_path / "exp" / "seed0" / "loop-A" / "results.json").read_text())
    assert args["args"]["threads"] == 1


@pytest.mark.slow
def test_tiny_experiment_with_a_residual_level(tmp_path, capsys):
    out = tmp_path / "exp"
    res, table = _tiny_experiment(out, capsys, "--residuals", "0.5")
    assert set(res["per_seed"]["0"]) >= {"deployed_r0.5", "loop_r0.5", "a_on_b_r0.5",
                                         "retrained_b_r0.5"}
    for d in ("loop-A-residual0.5", "retrain-B-residual0.5"):
        assert json.loads((out / "seed0" / d / "results.json").read_text())["epochs_done"] == 1
    # the residual level's chip: chip A's specimen, half of its mismatch left
    half = json.loads((out / "seed0" / "loop-A-residual0.5" / "results.json").read_text())
    assert half["args"]["chip_file"].endswith("chip1-mini-residual0.5.npz")
    half_b = json.loads((out / "seed0" / "retrain-B-residual0.5" / "results.json").read_text())
    assert half_b["args"]["chip_file"].endswith("chip2-mini-residual0.5.npz")
    assert half_b["args"]["init"].endswith("loop-A-residual0.5/network.pt")
    assert [lv["residual"] for lv in res["residual_levels"]] == [0.0, 0.5, 1.0]
    eff = [lv["efficacy_cv"] for lv in res["residual_levels"]]
    assert eff == sorted(eff)
    assert "| 50 % |" in table and "on chip A with 50 % of its mismatch left" in table


def test_a_finished_run_with_other_settings_is_not_reused(tmp_path):
    out = tmp_path / "exp"
    base = ["experiment", "mismatch", "--out", str(out), "--task", "yinyang", "--preset",
            "mini", "--seeds", "0", "--epochs", "1", "--retrain-epochs", "1",
            "--train-samples", "30", "--test-samples", "30", "--batch-size", "30",
            "--no-progress", "--no-uncalibrated"]
    assert cli_main(base) == 0
    r = json.loads((out / "seed0" / "retrain-B" / "results.json").read_text())
    loop = json.loads((out / "seed0" / "loop-A" / "results.json").read_text())
    hp = loop["hyperparameters"]
    assert r["args"]["lr"] == pytest.approx(hp["lr"] * hp["lr_decay"])   # after 1 epoch
    with pytest.raises(ExperimentError, match=r"holds a run with other settings \(batch_size: "
                                              r"there 30, now 15\)"):
        run_mismatch(MismatchSettings(out=str(out), task="yinyang", preset="mini", seeds=(0,),
                                      epochs=1, retrain_epochs=1, train_samples=30,
                                      test_samples=30, batch_size=15, progress=False,
                                      uncalibrated=False))


def test_a_run_made_before_a_setting_existed_counts_as_its_default(tmp_path):
    """The experiments reuse a finished run whose saved arguments predate a
    setting when that setting is now at its default, and refuse it otherwise."""
    now = TrainSettings(task="yinyang", out=str(tmp_path), epochs=1)
    saved = {k: v for k, v in now.to_dict().items() if k != "dropout"}
    assert setting_conflicts(saved, now) == []
    assert setting_conflicts(saved, dataclasses.replace(now, dropout=0.4)) == [
        "dropout: there 0.0, now 0.4"]
    assert setting_conflicts({**saved, "seed": 5}, now) == ["seed: there 5, now 0"]
    # a setting whose value before it existed is recorded counts as that value,
    # whatever the default is now
    older = {k: v for k, v in now.to_dict().items() if k != "surrogate_at"}
    fast = dataclasses.replace(now, backend="fast", preset="mini", chip_seed=1)
    older_fast = {**older, "backend": "fast", "preset": "mini", "chip_seed": 1}
    assert setting_conflicts(older_fast, dataclasses.replace(fast, surrogate_at="measured")) == []
    assert setting_conflicts(older_fast, dataclasses.replace(fast, surrogate_at="model")) == [
        "surrogate_at: there 'measured', now 'model'"]
    assert with_predated({"seed": 1}, {"seed": 1, "surrogate_at": "model"}) == {
        "seed": 1, "surrogate_at": "measured"}
    assert with_predated({"seed": 1}, {"seed": 1}) == {"seed": 1}
    (tmp_path / "results.json").write_text(json.dumps(
        {"args": {**saved, "seed": 5}, "epochs_done": 1, "final_test_accuracy": 0.5}))
    with pytest.raises(ExperimentError, match=r"holds a run with other settings \(seed: "
                                              r"there 5, now 0\)"):
        train_or_reuse(now, print, ExperimentError)
    (tmp_path / "results.json").write_text(json.dumps(
        {"args": saved, "epochs_done": 1, "final_test_accuracy": 0.5}))
    logged = []
    assert train_or_reuse(now, logged.append)["final_test_accuracy"] == 0.5
    assert "finished earlier (test accuracy 0.5000), reused" in logged[0]
