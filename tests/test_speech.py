"""Spoken digits made here (spikeloop data speech): espeak-ng's synthesis, the
vectorised cochlea against lauscher's stages, SHD's HDF5 layout, refusals."""
import json

import numpy as np
import pytest

from spikeloop.cli import main
from spikeloop.data.shd import load_shd
from spikeloop.data.speech import build, cochlea, synth

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ synthesis
def test_draws_are_deterministic_and_speakers_of_the_splits_disjoint():
    a = [synth.draw("train", i, 7) for i in range(60)]
    assert a == [synth.draw("train", i, 7) for i in range(60)]
    assert a != [synth.draw("train", i, 8) for i in range(60)]
    assert [u.label for u in a] == [i % 20 for i in range(60)]
    test = [synth.draw("test", i, 7) for i in range(60)]
    assert {u.speaker for u in a} <= set(synth.TRAIN_SPEAKERS)
    assert {u.speaker for u in test} <= set(synth.TEST_SPEAKERS)
    assert not set(synth.TRAIN_SPEAKERS) & set(synth.TEST_SPEAKERS)
    assert not {u.speaker_id for u in a} & {u.speaker_id for u in test}
    for u in a + test:    # German words in German, English in an English accent
        assert u.voice in synth.VOICES[synth.WORDS[u.label][1]]
        assert synth.PITCH[0] <= u.pitch <= synth.PITCH[1]
        assert synth.SNR_DB[0] <= u.snr_db <= synth.SNR_DB[1]


def test_tracks_are_bit_identical_for_the_same_seed_and_hold_the_drawn_snr():
    u, x = synth.utterance_track("test", 3, 1)
    u2, x2 = synth.utterance_track("test", 3, 1)
    assert u == u2 and np.array_equal(x, x2)
    pad = round(synth.PAD_S * synth.SAMPLE_RATE)
    assert len(x) % pad == 0
    speech = synth.speak(u)
    before = round(u.silence_before_s * synth.SAMPLE_RATE)
    word = x[before:before + len(speech)]                 # the word where it was placed
    assert np.corrcoef(word, speech)[0, 1] > 0.8
    snr = 10 * np.log10(np.mean(speech ** 2) / np.mean(x[:before] ** 2))
    assert abs(snr - u.snr_db) < 3.0
    _, other = synth.utterance_track("test", 3, 2)
    assert len(other) != len(x) or not np.array_equal(other, x)


# ------------------------------------------------------------------ the cochlea
def test_membrane_and_hair_cell_equal_lauschers():
    from lauscher.transformations import BasilarMembrane, HairCell

    _, x = synth.utterance_track("train", 0, 0)
    x = x[: 3 * 2205]                                 # 0.3 s
    chans = (70, 385, 691)
    xp = cochlea.preprocess(x)
    ours, fs = cochlea.BasilarMembrane(chans)(xp, synth.SAMPLE_RATE)
    bm = BasilarMembrane(channels=700)
    nf = len(xp) // 2 + 1
    omega = 2 * np.pi * np.linspace(1, synth.SAMPLE_RATE // 2, nf)
    stim = np.fft.fft(xp)[:nf]
    ref = np.array([bm.process_single_channel(bm.ch[c], omega, stim) for c in chans])
    assert fs == synth.SAMPLE_RATE // 2
    assert np.allclose(ours, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    hc = HairCell()
    ref_p = np.array([hc._meddis(r, fs) for r in ref])
    assert np.allclose(cochlea.hair_cell(ours, fs), ref_p, rtol=1e-12, atol=1e-15)


def test_bushy_cells_are_seeded_and_silent_without_release():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.05, size=(4, 3000))
    a = cochlea.bushy_cell(p, 11025, 5)
    assert np.array_equal(a, cochlea.bushy_cell(p, 11025, 5))
    assert not np.array_equal(a, cochlea.bushy_cell(p, 11025, 6))
    assert a.sum() > 0
    assert cochlea.bushy_cell(np.zeros((2, 500)), 11025, 1).sum() == 0
    # a spike every 1 ms at most (the 1 ms refractory count): gaps of >= 12 samples
    for row in cochlea.bushy_cell(np.full((2, 3000), 0.5), 11025, 2):
        assert np.diff(np.flatnonzero(row)).min() >= 12


def test_channels_are_the_papers_and_refused_outside_lauschers():
    assert len(cochlea.PAPER_CHANNELS) == 70
    assert cochlea.PAPER_CHANNELS[0] == 70 and cochlea.PAPER_CHANNELS[-1] == 691
    assert set(np.diff(cochlea.PAPER_CHANNELS)) == {9}
    with pytest.raises(ValueError, match="allowed"):
        cochlea.Cochlea((700,))


# ------------------------------------------------------------------ the data set
@pytest.mark.slow          # espeak-ng and the cochlea on a small set
def test_data_set_in_shds_layout_cached_and_never_overwritten(tmp_path, capsys):
    out = tmp_path / "speech"
    args = ["data", "speech", "--out", str(out), "--train", "6", "--test", "4",
            "--jobs", "1", "--no-progress", "--seed", "3"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "seed 3" in text
    train, test = load_shd(out, "train"), load_shd(out, "test")
    assert len(train) == 6 and len(test) == 4
    assert train.labels.tolist() == list(range(6))
    for ds in (train, test):
        units = np.concatenate(ds.units)
        assert set(units.tolist()) <= set(cochlea.PAPER_CHANNELS)
        assert all(len(t) > 100 and np.all(np.diff(t) >= 0) for t in ds.times_s)
    import h5py

    with h5py.File(out / "shd_train.h5") as f, h5py.File(out / "shd_test.h5") as g:
        assert not set(f["extra/speaker"][:]) & set(g["extra/speaker"][:])
        assert json.loads(f.attrs[build.CONFIG_ATTR])["seed"] == 3
        assert f["extra/keys"][0].decode() == "english-zero"
        times0 = f["spikes/times"][0]
    # the same settings again: cached, nothing rewritten
    before = (out / "shd_train.h5").stat().st_mtime_ns
    assert main(args) == 0
    assert "cached" in capsys.readouterr().out
    assert (out / "shd_train.h5").stat().st_mtime_ns == before
    # other settings: refused in one line, the file untouched
    assert main(args[:-1] + ["4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shd_train.h5 exists" in err[0] and "seed 3" in err[0]
    with h5py.File(out / "shd_train.h5") as f:
        assert np.array_equal(f["spikes/times"][0], times0)


@pytest.mark.parametrize("args, says", [
    (["data", "speech", "--out", "{tmp}/a", "--train", "0"], "--train = 0"),
    (["data", "speech", "--out", "{tmp}/a", "--jobs", "-1"], "--jobs = -1"),
    (["data", "speech", "--out", "{tmp}/f", "--train", "2"], "not a directory"),
    (["data", "cochlea-check", "--utterances", "0"], "--utterances = 0"),
    (["data", "cochlea-check", "--repeats", "1"], "--repeats = 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, says):
    (tmp_path / "f").write_text("a file")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


# ------------------------------------------------------------------ against lauscher
@pytest.mark.slow
def test_spikes_match_lauschers_in_counts_and_timing():
    """lauscher's whole chain (its own classes) on one utterance and 14 of the
    paper's channels, 6 fibre seeds on both sides: the deterministic stages
    equal, the spike counts and timing within the seeds' spread."""
    from spikeloop.data.speech import check

    r = check.compare(1, channels=cochlea.PAPER_CHANNELS[::5], repeats=6, out=lambda _: None)
    assert r["membrane_rel_diff"] < 1e-12 and r["hair_cell_rel_diff"] < 1e-12
    assert 0.85 < r["total_ratio"] < 1.15
    assert r["correlation"] > 0.95
    assert r["within_2se"] >= 0.75
    lo, vec = r["rows"][0]["lauscher"], r["rows"][0]["vectorised"]
    assert abs(lo["mean_t_s"] - vec["mean_t_s"]) < 0.03
    assert abs(lo["isi_median_s"] - vec["isi_median_s"]) < 0.1 * lo["isi_median_s"]


@pytest.mark.slow
def test_bushy_cells_match_lauschers_in_distribution():
    """The same release probabilities through lauscher's BushyCell (40 fibres
    drawn one by one) and the binomial one here: mean spike counts per channel
    within 4 standard errors, over 20 and 200 seeds."""
    from lauscher.transformations import BushyCell

    _, x = synth.utterance_track("test", 0, 0)
    _, p, _, fs = cochlea.Cochlea(cochlea.PAPER_CHANNELS[20:60:8]).stages(x, 22050, 1)
    bc = BushyCell()
    np.random.seed(0)
    ref = np.array([[bc._lif(s, fs).sum() for s in
                     np.array([bc._sample(row, fs) for row in p])] for _ in range(20)])
    ours = np.array([cochlea.bushy_cell(p, fs, s).sum(axis=1) for s in range(200)])
    se = np.sqrt(ref.var(axis=0, ddof=1) / 20 + ours.var(axis=0, ddof=1) / 200)
    assert np.all(np.abs(ref.mean(axis=0) - ours.mean(axis=0)) <= 4 * np.maximum(se, 0.1))
    assert abs(ref.sum(axis=1).mean() / ours.sum(axis=1).mean() - 1) < 0.05


# ------------------------------------------------------------------ the paper's network
def test_speech_task_is_the_papers_network_and_time_scale(tmp_path):
    import torch

    from spikeloop import FULL
    from spikeloop.training.tasks import SPEECH_CHANNELS, TaskError, build_task, speech_chip
    from tests.test_tasks import write_shd_dir

    write_shd_dir(tmp_path)
    task = build_task("speech", data_dir=tmp_path)
    assert (task.n_in, task.n_hidden, task.n_out, task.recurrent) == (70, 186, 20, True)
    assert task.n_steps == 294 and abs(task.window_us - 500) < 1     # 1 s -> 0.5 ms
    assert SPEECH_CHANNELS == cochlea.PAPER_CHANNELS
    # a spike of channel 79 at 0.5 s: input 1, step floor(0.5 / (1 / 294)) = 147;
    # channels outside the selection (0, 78) and spikes after 1 s are not seen
    raw = torch.zeros(294, 1, 700)
    raw[147, 0, 79] = 2.0
    raw[10, 0, 78] = raw[10, 0, 0] = 1.0
    x, times = task.encode(raw)
    assert times is None and x.shape == (294, 1, 70)
    assert x.sum() == 1 and x[147, 0, 1] == 1
    assert task.train.max_time_s == 1.0
    assert 70 + 186 == FULL.n_halves * FULL.drivers_per_half
    with pytest.raises(TaskError, match="294 membrane samples exceed the ADC buffer's 32"):
        build_task("speech", data_dir=tmp_path, cfg=FULL)
    # the chip the task runs on streams every sample: full with the ADC ring and an
    # output memory for 294 samples x 4 ADC chunks
    stream = speech_chip(FULL)
    assert (stream.name, stream.adc_ring, stream.ppu_out_vectors) == ("full-stream", True, 2048)
    assert stream.replace(name="full") == FULL.replace(adc_ring=True, ppu_out_vectors=2048,
                                                       playback_depth=4096, record_depth=4096)
    assert speech_chip(stream) is stream
    assert build_task("speech", data_dir=tmp_path, cfg=stream).n_steps == 294
    with pytest.raises(TaskError, match="ppu_out_vectors >= 1176"):
        build_task("speech", data_dir=tmp_path, cfg=FULL.replace(adc_ring=True))
    with pytest.raises(TaskError, match="--data-dir"):
        build_task("speech")


@pytest.mark.slow          # short trainings of the speech network
def test_experiment_rows_and_control_shuffles_and_freezes(tmp_path, capsys):
    from spikeloop.experiments import speech as exp
    from tests.test_tasks import write_shd_dir

    (tmp_path / "d").mkdir()
    write_shd_dir(tmp_path / "d", n_train=8, n_test=4)
    args = ["experiment", "speech", "--data-dir", str(tmp_path / "d"), "--out",
            str(tmp_path / "o"), "--seeds", "0", "--epochs", "1", "--batch-size", "4"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "o" / "speech.json").read_text())
    (row,) = summary["rows"]
    assert row["loop"] is None and row["paper"]["software"] == "71.2 %"
    assert row["software"]["n"] == row["control"]["n"] == 1
    sw = torch_load(tmp_path / "o" / "seed0" / "software.pt")
    ctl = torch_load(tmp_path / "o" / "seed0" / "control.pt")
    a, b = sw["recurrent_synapse.weight"], ctl["recurrent_synapse.weight"]
    assert not np.array_equal(a, b) and np.array_equal(np.sort(a, None), np.sort(b, None))
    # again: every training reused; other settings: refused
    assert main(args) == 0
    assert capsys.readouterr().out.count("reused") == 2
    assert main(args[:-1] + ["5"]) == 2
    assert "made with other settings" in capsys.readouterr().err
    net = exp.network(exp.build_task("speech", data_dir=tmp_path / "d"), 0)
    exp.shuffle_and_freeze(net, net.recurrent_synapse.weight.detach().clone(), 0)
    assert not net.recurrent_synapse.weight.requires_grad


def test_an_interrupted_training_continues_from_its_checkpoint(tmp_path):
    """Stopped after an epoch, the command continues where it stopped and ends
    with the network of the uninterrupted training, bit for bit."""
    import torch

    from spikeloop.experiments import speech as exp
    from tests.test_tasks import write_shd_dir

    (tmp_path / "d").mkdir()
    write_shd_dir(tmp_path / "d", n_train=8, n_test=4)

    def settings(out, **kw):
        kw = {"seeds": (0,), "epochs": 3, "batch_size": 4, **kw}
        return exp.SpeechExperimentSettings(data_dir=str(tmp_path / "d"), out=str(tmp_path / out),
                                            **kw)

    exp.run_speech(settings("whole"), log=lambda _: None)

    class Stop(Exception):
        pass

    def stop_in_epoch_3(line):
        if "epoch 3/3" in line:
            raise Stop
    with pytest.raises(Stop):
        exp.run_speech(settings("cut"), log=stop_in_epoch_3)
    ck = tmp_path / "cut" / "seed0" / "software.checkpoint.pt"
    assert torch.load(ck, weights_only=True)["epoch"] == 2
    assert not (tmp_path / "cut" / "seed0" / "software.json").exists()
    lines = []
    exp.run_speech(settings("cut"), log=lines.append)
    assert f"    continuing after epoch 2 ({ck})" in lines
    for cond in ("software", "control"):
        a = torch_load(tmp_path / "whole" / "seed0" / f"{cond}.pt")
        b = torch_load(tmp_path / "cut" / "seed0" / f"{cond}.pt")
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        ra = json.loads((tmp_path / "whole" / "seed0" / f"{cond}.json").read_text())
        rb = json.loads((tmp_path / "cut" / "seed0" / f"{cond}.json").read_text())
        assert ra["test_accuracy"] == rb["test_accuracy"]
        assert [h["train_loss"] for h in ra["history"]] == [h["train_loss"] for h in rb["history"]]
    # a checkpoint of other settings, or one that is not a checkpoint: refused in one line
    (tmp_path / "cut" / "seed0" / "software.json").unlink()
    with pytest.raises(exp.SpeechExperimentError, match="made with other settings"):
        exp.run_speech(settings("cut", batch_size=2), log=lambda _: None)
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(exp.SpeechExperimentError, match="software.checkpoint.pt: not readable"):
        exp.run_speech(settings("cut"), log=lambda _: None)


def test_conditions_are_chosen_and_seeds_run_as_separate_processes(tmp_path, capsys):
    """--conditions control trains the software network it is built from first;
    a seed's directory in use by another process is refused in one line while
    the other seeds run; the loop without a chip is refused."""
    from spikeloop.base.files import LOCK_NAME, DirLock
    from tests.test_tasks import write_shd_dir

    (tmp_path / "d").mkdir()
    write_shd_dir(tmp_path / "d", n_train=8, n_test=4)
    args = ["experiment", "speech", "--data-dir", str(tmp_path / "d"), "--out",
            str(tmp_path / "o"), "--epochs", "1", "--batch-size", "4"]
    assert main(args + ["--seeds", "0", "--conditions", "control"]) == 0
    out = capsys.readouterr().out
    assert "conditions software, control" in out
    assert sorted(p.name for p in (tmp_path / "o" / "seed0").iterdir()) == [
        "control.checkpoint.pt", "control.json", "control.pt", "software.checkpoint.pt",
        "software.json", "software.pt"]
    with DirLock(tmp_path / "o" / "seed0", "another run"):
        assert main(args + ["--seeds", "0", "--conditions", "software"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "seed0 is in use by" in err[0] and "another run" in err[0]
        assert main(args + ["--seeds", "1", "--conditions", "software"]) == 0
    (row,) = json.loads((tmp_path / "o" / "speech.json").read_text())["rows"]
    assert row["software"]["n"] == 1 and row["control"] is None
    # all seeds together: the finished runs are collected; the lock a killed
    # process left is taken over and said
    (tmp_path / "o" / "seed1" / LOCK_NAME).write_text(json.dumps(
        {"pid": 1 << 30, "host": "elsewhere", "started": 0, "command": "a killed run"}) + "\n")
    assert main(args + ["--seeds", "0", "1", "--conditions", "software"]) == 0
    out = capsys.readouterr().out
    assert out.count("reused") == 2 and "took over the lock" in out and "a killed run" in out
    assert main(args + ["--seeds", "0", "--conditions", "loop"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--conditions loop needs --preset" in err[0]


@pytest.mark.slow          # the full chip's calibration and a short training in the loop
def test_experiment_trains_in_the_loop_on_the_streaming_chip(tmp_path, capsys):
    from tests.test_tasks import write_shd_dir

    (tmp_path / "d").mkdir()
    write_shd_dir(tmp_path / "d", n_train=8, n_test=4)
    args = ["experiment", "speech", "--data-dir", str(tmp_path / "d"), "--out",
            str(tmp_path / "o"), "--seeds", "0", "--epochs", "1", "--batch-size", "4",
            "--preset", "full", "--chip-seed", "1"]
    assert main(args) == 0
    (row,) = json.loads((tmp_path / "o" / "speech.json").read_text())["rows"]
    assert row["loop"]["n"] == 1 and 0 <= row["loop"]["mean"] <= 1
    assert "full's streaming variant" in row["notes"][0]
    res = json.loads((tmp_path / "o" / "seed0" / "loop.json").read_text())
    chip = res["chip"]
    # the test recordings ran on the chip: 294 membrane samples each, nothing lost
    assert res["key"]["preset"] == "full" and chip["samples"] == 4
    assert chip["adc_overflow"] == chip["record_drops"] == chip["xbar_drops"] == 0
    assert (tmp_path / "o" / "chip1.npz").is_file()
    # a loop result made before --surrogate-at existed ran with the derivative at
    # the measured membrane: reused at that setting, refused at the other
    assert res["key"]["surrogate_at"] == "measured"
    res["key"].pop("surrogate_at")
    (tmp_path / "o" / "seed0" / "loop.json").write_text(json.dumps(res))
    capsys.readouterr()
    assert main(args) == 0
    assert "seed 0 loop: reused" in capsys.readouterr().out
    assert main(args + ["--surrogate-at", "model"]) == 2
    assert "made with other settings" in capsys.readouterr().err
    # mini has 16 driver pairs: the paper's network is refused in one line
    capsys.readouterr()
    assert main(args[:-4] + ["--preset", "mini"]) == 2
    assert "sources of signed synapse driver pairs" in capsys.readouterr().err


def torch_load(path):
    import torch

    return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}


def test_the_training_benchmark_runs_the_speech_network_in_the_loop(capsys):
    """``python -m spikeloop.bench train --task speech``: the paper's speech network
    in the loop on full's streaming variant beside its ideal model."""
    from spikeloop.bench import main as bench_main

    assert bench_main(["train", "--task", "speech", "--batch", "2", "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "network 70 -> 186 recurrent -> 20" in out and "chip full-stream seed 1" in out
    assert "in the loop (fast, full-stream)" in out and "ms per sample" in out
    assert bench_main(["train", "--task", "speech", "--device", "cuda"]) == 2
    assert "--task speech runs the chip on the cpu" in capsys.readouterr().err
