"""The paper's experiment at its scale (spikeloop/experiments/paper.py) and what it runs:

- the hidden spikes of the gradient come from the recorder's events, as the
  chip's host sees them: identical to the analog side's spikes when nothing is
  lost, fewer (and counted) when the record memory overflows;
- inference mode as the chip runs it: images back to back in one run, the PPU's
  INFERENCE program resetting the neurons, the class read from the ADC samples
  the host reads back: the fast backend equals the reference backend, and the
  class is the maximum of each output's samples in its slot;
- the augmentation (rotations, hidden dropout) and the full MNIST files;
- ``spikeloop experiment paper`` on tiny settings: the table, reuse of finished
  runs on a rerun, one-line refusals of bad input.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeloop.base.config import MINI
from spikeloop.base.events import Observables
from spikeloop.cli import main as cli_main
from spikeloop.data import latency_raster, latency_times_us
from spikeloop.data.mnist import OUT_SIDE, load_idx_mnist, rotate
from spikeloop.experiments.paper import PaperError, PaperSettings, run_paper
from spikeloop.model.chip import Chip
from spikeloop.nn.chip_network import (
    INFERENCE_INPUT_OFFSET_CYCLES,
    ChipNetwork,
    back_to_back,
    images_per_run,
)

pytestmark = pytest.mark.unit

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def chip():
    """A mini chip with its nominal settings (what is tested here does not need
    its calibration; the tests stay short)."""
    return Chip(MINI, 1)


def batch(seed: int, b: int = 12, n_in: int = 5):
    x = torch.rand(b, n_in, generator=torch.Generator().manual_seed(seed))
    times = latency_times_us(x)
    return latency_raster(times, dt_us=1.7, n_steps=20), times


def make(chip, seed=0, gain=4.0, **kw):
    net = ChipNetwork(chip, 5, 8, 3, generator=torch.Generator().manual_seed(seed), **kw)
    with torch.no_grad():
        net.hidden_synapse.weight.mul_(gain)           # make the hidden neurons fire
    return net


# ------------------------------------------------------------------ recorded spikes
def test_recorded_spikes_are_the_analog_ones_when_nothing_is_lost(chip):
    raster, times = batch(1)
    outs = {}
    for src in ("recorded", "analog"):
        net = make(chip, gain=8.0, hidden_spikes=src)
        outs[src] = net(raster, times)
        st = net.last_stats
    assert st["recorded_hidden_spikes"] == st["hidden_spikes"] > 5
    assert st["lost_hidden_spikes"] == 0
    torch.testing.assert_close(outs["recorded"].z_hidden, outs["analog"].z_hidden, rtol=0, atol=0)
    torch.testing.assert_close(outs["recorded"].log_probs, outs["analog"].log_probs,
                               rtol=0, atol=0)


def test_a_full_record_memory_loses_spikes_for_the_gradient():
    """record_depth 1: the host sees at most one event per sample; the gradient's
    spikes are those, the lost ones counted."""
    cfg = MINI.replace(name="mini-rec1", record_depth=1)
    chip = Chip(cfg, 1)                                 # nominal settings: fires readily
    raster, times = batch(2)
    rec, ana = make(chip, gain=12.0), make(chip, gain=12.0, hidden_spikes="analog")
    z_rec, z_ana = rec(raster, times).z_hidden, ana(raster, times).z_hidden
    st = rec.last_stats
    obs = rec.last_observables
    assert st["hidden_spikes"] == ana.last_stats["hidden_spikes"]
    assert st["recorded_hidden_spikes"] == len(obs.records) <= 12
    assert st["lost_hidden_spikes"] == st["hidden_spikes"] - st["recorded_hidden_spikes"] > 0
    assert st["record_drops"] > 0
    assert z_rec.sum() < z_ana.sum()
    assert (z_rec <= z_ana).all()                       # the recorded ones are a subset


# ------------------------------------------------------------------ inference mode
def test_back_to_back_equals_reference_and_reads_the_adc(chip):
    net = make(chip, seed=3, gain=10.0)
    _, times = batch(4, b=5)
    K = 3
    fast = back_to_back(net, times, per_run=K, runs_per_call=2)
    ref = back_to_back(net, times, per_run=K, runs_per_call=2, backend="reference")
    assert fast.runs == ref.runs == 2 and fast.images == 5
    for a, b in zip(fast.observables, ref.observables, strict=True):
        for f in Observables.FIELDS:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
        assert a.ppu == b.ppu
    np.testing.assert_array_equal(fast.predictions, ref.predictions)
    np.testing.assert_array_equal(fast.recorded_hidden_spikes, ref.recorded_hidden_spikes)
    # one run, one PPU program: the resets of boundaries 1 and 2 logged near them
    obs = fast.observables[0]
    assert len(obs.ppu) == 2 and fast.reset_delay_max + 3 < INFERENCE_INPUT_OFFSET_CYCLES
    assert obs.cycles[0] >= K * 1475
    # the class: the output with the largest ADC sample (over its resting code) in its slot
    out = net.placement.neurons["out"]
    base = net.baseline()
    cyc = net.adc_period * np.arange(1, obs.adc.shape[0] + 1) - 1
    for j in range(K):
        m = (cyc >= j * 1475 + INFERENCE_INPUT_OFFSET_CYCLES) & (cyc < (j + 1) * 1475)
        assert m.sum() >= 6
        v = (obs.adc[m][:, 0, out] - base[out]).max(axis=0)
        assert fast.predictions[j] == int(np.argmax(v))
    assert (fast.samples_per_image >= 6).all()
    assert fast.recorded_hidden_spikes.sum() == fast.analog_hidden_spikes.sum() > 0


def test_back_to_back_does_not_depend_on_the_runs_per_call(chip):
    """The runs go to the backend in calls of ``runs_per_call``; each run's
    noise is keyed by its index, so one call or two give the same
    Observables run by run and the same classes."""
    net = make(chip, seed=3, gain=10.0)
    _, times = batch(4, b=7)
    one = back_to_back(net, times, per_run=2)
    two = back_to_back(net, times, per_run=2, runs_per_call=2)
    assert one.runs == two.runs == 4
    assert len(one.observables) == 1 and len(two.observables) == 2
    merged = Observables.concat(two.observables)
    for f in Observables.FIELDS:
        np.testing.assert_array_equal(getattr(one.observables[0], f), getattr(merged, f),
                                      err_msg=f)
    assert one.observables[0].ppu == merged.ppu
    for f in ("predictions", "recorded_hidden_spikes", "analog_hidden_spikes",
              "samples_per_image"):
        np.testing.assert_array_equal(getattr(one, f), getattr(two, f), err_msg=f)
    with pytest.raises(ValueError, match="runs_per_call = 0"):
        back_to_back(net, times, runs_per_call=0)


@pytest.mark.cosim
@pytest.mark.slow
def test_back_to_back_on_the_cosim_equals_fast(chip):
    """The same back-to-back run on the co-simulated RTL (Verilator, mini): the
    same Observables, the PPU's read-back included, and the same classes."""
    net = make(chip, seed=3, gain=10.0)
    _, times = batch(4, b=2)
    fast = back_to_back(net, times, per_run=2)
    co = back_to_back(net, times, per_run=2, backend="cosim")
    for f in Observables.FIELDS:
        np.testing.assert_array_equal(getattr(fast.observables[0], f),
                                      getattr(co.observables[0], f), err_msg=f)
    assert fast.observables[0].ppu == co.observables[0].ppu
    np.testing.assert_array_equal(fast.predictions, co.predictions)


def test_images_per_run_is_what_the_adc_buffer_holds():
    assert images_per_run(MINI, 212) == 64 * 212 // 1475 == 9
    with pytest.raises(ValueError, match="ADC buffer"):
        images_per_run(MINI.replace(name="mini-adc2", adc_buffer_depth=2), 212)


# ------------------------------------------------------------------ augmentation, data
def test_rotation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 256, generator=g)
    torch.testing.assert_close(rotate(x, torch.zeros(3)), x, rtol=0, atol=1e-6)
    quarter = rotate(x, torch.full((3,), 90.0)).reshape(3, OUT_SIDE, OUT_SIDE)
    torch.testing.assert_close(quarter, torch.rot90(x.reshape(3, OUT_SIDE, OUT_SIDE), 1, (1, 2)),
                               rtol=0, atol=1e-5)


def test_dropout_silences_the_dropped_units(chip):
    net = make(chip)
    raster, times = batch(5)
    net.hidden_keep = torch.zeros(8)
    out = net.model_pass(raster)
    assert float(out.v_out.detach().abs().max()) == 0.0
    w = net.chip_weights()
    assert not w["out"].any()                           # on the chip: weights written as 0
    net.hidden_keep = None
    assert net.chip_weights()["out"].any()


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="the full MNIST files are not here")
def test_full_mnist_files():
    images, labels = load_idx_mnist(MNIST_DIR, "test")
    assert images.shape == (10_000, 28, 28) and np.bincount(labels)[1] == 1135


# ------------------------------------------------------------------ the command
def _paper(out, **kw) -> PaperSettings:
    return PaperSettings(out=str(out), task="yinyang", preset="mini", seeds=(0,), epochs=1,
                         train_samples=60, test_samples=12, energy=False, progress=False, **kw)


@pytest.mark.slow          # calibration and four short trainings
def test_paper_command_tiny_and_resume(tmp_path, chip):
    # the chip instance of the experiment's directory is used as it is (here the
    # nominal one, to keep the test short; the command calibrates one when none is there)
    chip.save(tmp_path / "chip-mini-1.npz")
    lines = []
    res = run_paper(_paper(tmp_path, dropout=0.2), log=lines.append)
    rows = res["rows"]
    assert [r["task"] for r in rows] == ["yinyang", "yinyang, dropout"]
    assert "speech: not run (--speech-data-dir not given)" in lines
    for r in rows:
        for k in ("loop", "software", "control"):
            assert 0.0 <= r[k]["mean"] <= 1.0 and r[k]["n"] == 1
        inf = r["details"]["per_seed"][0]["inference"]
        assert inf["images_per_run"] == 9 and inf["images"] == 12
        assert r["frames_per_s"] == pytest.approx(1e6 / inf["emulated_us_per_image"])
        assert 70e3 < r["frames_per_s"] < 1e6 / 11.8
        # the analysis of back to back: per place in the run, errors that name the
        # image before, the ideal equations alone and back to back
        assert len(inf["accuracy_by_slot"]) == 9
        assert 0 <= inf["later_errors_with_previous_label"] <= inf["later_errors"] <= 12 - 2
        ideal = inf["ideal_model"]
        assert set(ideal) == {"steps_per_image", "step_us", "separate", "back_to_back"}
        assert all(0.0 <= ideal[k] <= 1.0 for k in ("separate", "back_to_back"))
    assert "give the class of the image before" in (tmp_path / "table.md").read_text()
    table = (tmp_path / "table.md").read_text()
    assert "| yinyang | 5-8-3 (feed-forward) | here |" in table
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")}
    assert len(stamps) == 4
    again = []
    res2 = run_paper(_paper(tmp_path, dropout=0.2), log=again.append)
    assert sum(ln.endswith("reused") for ln in again) == 4 + 4     # 4 trainings, 4 evaluations
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("results.json")} == stamps
    assert [r["loop"] for r in res2["rows"]] == [r["loop"] for r in rows]
    assert json.loads((tmp_path / "paper.json").read_text())["rows"][0]["task"] == "yinyang"
    # one condition alone: its row, from the trainings and evaluations made above
    alone = []
    res3 = run_paper(_paper(tmp_path, dropout=0.2, conditions=("augmented",)),
                     log=alone.append)
    assert [r["task"] for r in res3["rows"]] == ["yinyang, dropout"]
    assert res3["rows"][0]["loop"] == rows[1]["loop"]
    assert sum(ln.endswith("reused") for ln in alone) == 2 + 2
    assert "| yinyang | 5-8-3" not in (tmp_path / "table.md").read_text()
    # --surrogate-at reaches the trainings in the loop (and only those)
    loop_args = json.loads((tmp_path / "yinyang" / "seed0" / "loop" / "results.json")
                           .read_text())["args"]
    assert loop_args["surrogate_at"] == "model-pre-reset"      # the command's default
    # without --threads the trainings run with the training's own default, recorded
    assert loop_args["threads"] == 1
    with pytest.raises(PaperError, match=r"loop holds a run with other settings \(surrogate_at: "
                                         r"there 'model-pre-reset', now 'model'\)"):
        run_paper(_paper(tmp_path, dropout=0.2, surrogate_at="model"), log=lambda _: None)


@pytest.mark.slow          # the full chip's calibration and short speech trainings
def test_paper_command_joins_the_speech_rows(tmp_path):
    """The speech benchmark's rows in the paper's table: spikeloop experiment
    speech run in DIR/speech with the table's seeds, preset and chip; reused."""
    from spikeloop.experiments.paper import BENCHMARKS
    from tests.test_tasks import write_shd_dir

    (tmp_path / "d").mkdir()
    write_shd_dir(tmp_path / "d", n_train=8, n_test=4)
    s = PaperSettings(out=str(tmp_path / "o"), preset="full", seeds=(0,), speech_epochs=1,
                      speech_data_dir=str(tmp_path / "d"), energy=False, progress=False)
    speech_only = [b for b in BENCHMARKS if b.name == "speech"]
    lines = []
    (row,) = run_paper(s, log=lines.append, benchmarks=speech_only)["rows"]
    assert row["task"].startswith("speech") and row["network"].startswith("70-186r-20")
    for k in ("loop", "software", "control"):
        assert row[k]["n"] == 1 and 0 <= row[k]["mean"] <= 1
    assert row["paper"]["loop"] == "76.2 ± 1.3 % (SHD)"
    loop = json.loads((tmp_path / "o" / "speech" / "seed0" / "loop.json").read_text())
    assert loop["key"]["preset"] == "full" and loop["key"]["epochs"] == 1
    assert list(row["loop"]["values"]) == [loop["test_accuracy"]]
    assert row["spikes_per_neuron_input"] == loop["test_spikes_per_neuron_input"]
    table = (tmp_path / "o" / "table.md").read_text()
    assert f"| {row['task']} | 70-186r-20" in table and "| 76.2 ± 1.3 % (SHD) |" in table
    again = []
    run_paper(s, log=again.append, benchmarks=speech_only)
    assert sum(ln.endswith(")") and "reused" in ln for ln in again) == 3


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1", "1"], "seeds = [1, 1] repeats a seed"),
    (["--epochs", "0"], "epochs = 0; allowed: an integer >= 1"),
    (["--data-dir", "/nonexistent/mnist"], "--data-dir /nonexistent/mnist is not a directory"),
    (["--dropout", "1.5"], "dropout = 1.5; allowed: 0..0.9"),
    (["--preset", "huge"], "preset = 'huge'; allowed: full, mini"),
    (["--speech-data-dir", "/nonexistent/shd"], "--speech-data-dir /nonexistent/shd is not a "
                                                "directory"),
    (["--speech-epochs", "0"], "speech_epochs = 0; allowed: an integer >= 1"),
    (["--conditions", "augmented", "--no-augmentation"],
     "--no-augmentation with --conditions augmented leaves nothing to run"),
    (["--conditions", "plain", "plain"], "conditions = ['plain', 'plain']; allowed: one or "
                                         "both of plain, augmented, each once"),
    (["--speech-data-dir", str(Path(__file__).parent)],
     f"--speech-data-dir {Path(__file__).parent}: shd_train.h5 (or shd_train.h5.gz) not found"),
])
def test_paper_command_refuses_bad_input(tmp_path, capsys, args, message):
    rc = cli_main(["experiment", "paper", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_paper_command_refusal_is_one_line_from_the_shell(tmp_path):
    res = subprocess.run([sys.executable, "-m", "spikeloop.cli", "experiment", "paper",
                          "--out", str(tmp_path / "x"), "--seeds", "-1"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "spikeloop: error: seeds: -1; allowed: integers >= 0"]


@pytest.mark.slow
def test_paper_command_on_full_with_energy(tmp_path):
    """The paper's MNIST network on FULL (tiny subset), energy and power from the
    energy model of spikeloop explore: the whole command as a user runs it."""
    out = tmp_path / "paper"
    rc = cli_main(["experiment", "paper", "--out", str(out), "--quick", "--train-samples",
                   "200", "--test-samples", "40", "--no-augmentation", "--no-progress"])
    assert rc == 0
    row = json.loads((out / "paper.json").read_text())["rows"][0]
    assert row["task"] == "MNIST" and row["network"].startswith("256-246-10")
    inf = row["details"]["per_seed"]["0"]["inference"]          # paper.json: keys are text
    assert inf["images_per_run"] == 4 and inf["images"] == 40
    assert 80e3 < row["frames_per_s"] < 1e6 / 11.8
    e = inf["energy"]
    assert e["energy_per_image_j"] == pytest.approx(row["energy_per_image_j"])
    assert e["energy_per_image_j"] > e["energy.dynamic_per_image_j"] > 0
    assert e["power_w"] == pytest.approx(e["energy_per_image_j"] / (inf["emulated_us_per_image"]
                                                                     * 1e-6))
    assert "| MNIST | 256-246-10 (feed-forward) | here |" in (out / "table.md").read_text()
