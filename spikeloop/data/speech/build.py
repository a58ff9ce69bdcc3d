"""The spoken-digit data set: espeak-ng -> the cochlea -> SHD's HDF5 files
(``spikeloop data speech``), and the cochlea checked against lauscher
(``spikeloop data cochlea-check``); docs/speech.md.

Each split is one file in SHD's layout (``shd_train.h5``, ``shd_test.h5``:
``spikes/times`` seconds, ``spikes/units`` lauscher's channel 0..699,
``labels`` 0..19, ``extra/speaker``, ``extra/keys``, and the synthesis draws
of each utterance under ``extra/``), so :func:`spikeloop.data.shd.load_shd`
reads it as it reads SHD.  A file is written once (temp file, then renamed);
a later run with the same settings finds it and reuses it, a run with other
settings is refused (choose another ``--out``).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tqdm

from spikeloop.base.settings import option
from spikeloop.data.shd import FILES
from spikeloop.data.speech import synth
from spikeloop.data.speech.cochlea import PAPER_CHANNELS, Cochlea

#: the attribute of each file holding the settings that made it (its cache key)
CONFIG_ATTR = "spikeloop_speech"
#: format of that record; a change of the generator that changes its output bumps it
GENERATOR_VERSION = 1


def fibre_seed(seed: int, split: str, index: int) -> int:
    """The seed of utterance ``index``'s auditory-nerve fibre draws (cochlea)."""
    sid = synth.SPLITS[split][0]
    return int(np.random.SeedSequence([int(seed), sid, int(index), 2]).generate_state(1)[0])


def make_utterance(split: str, index: int, seed: int, cochlea: Cochlea):
    """(draws, duration in s, spike times in s (float32), units (uint16))."""
    u, x = synth.utterance_track(split, index, seed)
    t, units = cochlea(x, synth.SAMPLE_RATE, fibre_seed(seed, split, index))
    return u, len(x) / synth.SAMPLE_RATE, t.astype(np.float32), units.astype(np.uint16)


_WORKER: dict = {}


def _work(job):
    split, index, seed = job
    if "cochlea" not in _WORKER:
        _WORKER["cochlea"] = Cochlea()
    return make_utterance(split, index, seed, _WORKER["cochlea"])


def split_config(split: str, n: int, seed: int) -> dict:
    """What makes a split's file (its cache key)."""
    _, speakers = synth.SPLITS[split]
    return {"generator": "spikeloop data speech", "version": GENERATOR_VERSION,
            "split": split, "utterances": int(n), "seed": int(seed),
            "espeak_ng": synth.espeak_version(), "speakers": list(speakers),
            "voices": {k: list(v) for k, v in synth.VOICES.items()},
            "pitch": list(synth.PITCH), "rate_wpm": list(synth.RATE_WPM),
            "amplitude": list(synth.AMPLITUDE), "silence_s": list(synth.SILENCE_S),
            "snr_db": list(synth.SNR_DB), "pad_s": synth.PAD_S,
            "channels": list(PAPER_CHANNELS), "cochlea": "lauscher 1.0.1 stages, vectorised"}


def generate(split: str, n: int, seed: int, *, jobs: int = 1, progress: bool = True):
    """Utterances ``0 .. n-1`` of ``split``, in index order."""
    jobs_list = [(split, i, seed) for i in range(n)]
    bar = tqdm.tqdm(total=n, desc=f"speech {split}", unit="utt", disable=not progress,
                    mininterval=1.0)
    out = []
    try:
        if jobs <= 1:
            for j in jobs_list:
                out.append(_work(j))
                bar.update()
        else:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for r in pool.imap(_work, jobs_list, chunksize=8):
                    out.append(r)
                    bar.update()
    finally:
        bar.close()
    return out


def write_h5(path: Path, results, config: dict, wall_s: float) -> None:
    """``results`` as one SHD-layout file at ``path`` (temp file, then renamed)."""
    import h5py

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            n = len(results)
            times = f.create_dataset("spikes/times", (n,),
                                     dtype=h5py.vlen_dtype(np.dtype("float32")))
            units = f.create_dataset("spikes/units", (n,),
                                     dtype=h5py.vlen_dtype(np.dtype("uint16")))
            for i, (_, _, t, u) in enumerate(results):
                times[i] = t
                units[i] = u
            us = [r[0] for r in results]
            f.create_dataset("labels", data=np.array([u.label for u in us], dtype=np.uint8))
            f.create_dataset("extra/speaker", data=np.array([u.speaker_id for u in us],
                                                            dtype=np.uint16))
            f.create_dataset("extra/keys", data=np.array(synth.KEYS, dtype=object),
                             dtype=h5py.string_dtype())
            f.create_dataset("extra/speaker_names",
                             data=np.array(list(synth.speaker_ids()), dtype=object),
                             dtype=h5py.string_dtype())
            for name, dt in (("pitch", np.int16), ("rate", np.int16), ("amplitude", np.int16),
                             ("silence_before_s", np.float32), ("silence_after_s", np.float32),
                             ("snr_db", np.float32)):
                f.create_dataset(f"extra/{name}", data=np.array([getattr(u, name) for u in us],
                                                                dtype=dt))
            f.create_dataset("extra/voice", data=np.array([u.voice for u in us], dtype=object),
                             dtype=h5py.string_dtype())
            f.create_dataset("extra/duration_s",
                             data=np.array([r[1] for r in results], dtype=np.float32))
            f.attrs[CONFIG_ATTR] = json.dumps(config, sort_keys=True)
            f.attrs["generation_wall_s"] = float(wall_s)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def existing_config(path: Path) -> dict | None:
    """The settings that made the file at ``path`` (None: not one of ours)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(CONFIG_ATTR)
    except OSError:
        return None
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def stored_wall_s(path: Path) -> float:
    """The generation time stored in a file (NaN: none)."""
    import h5py

    with h5py.File(path, "r") as f:
        return float(f.attrs.get("generation_wall_s", float("nan")))


@dataclass
class SpeechSettings:
    out: str = option(required=True, help="output directory: shd_train.h5 and shd_test.h5 "
                      "(SHD's layout; reused when already made with the same settings)")
    train: int = option(4000, help="training utterances (training speakers)")
    test: int = option(1000, help="test utterances (test speakers, disjoint)")
    seed: int = option(0, help="seed of every draw (utterance i of a split: "
                       "default_rng([seed, split, i]))")
    jobs: int = option(0, help="worker processes (0: one per core)")
    progress: bool = option(True, flag="--no-progress", help="no progress bar")


def _check(s: SpeechSettings) -> None:
    for name in ("train", "test"):
        v = getattr(s, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"--{name} = {v!r}; allowed: an integer >= 1")
    if not 0 <= s.seed < 2 ** 32:
        raise ValueError(f"--seed = {s.seed}; allowed: 0 .. 2**32 - 1")
    if s.jobs < 0:
        raise ValueError(f"--jobs = {s.jobs}; allowed: 0 (one per core) or more")
    out = Path(s.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")


def run(s: SpeechSettings) -> int:
    """Make (or find) both splits; print the seeds, the times and the counts."""
    _check(s)
    synth.espeak_binary()
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = s.jobs or os.cpu_count() or 1
    print(f"spoken digits: seed {s.seed} (utterance i of split train/test draws from "
          f"default_rng([{s.seed}, 0/1, i]); its fibres from SeedSequence([{s.seed}, "
          f"0/1, i, 2])); {synth.espeak_version()}")
    print(f"cochlea: lauscher's stages on the paper's {len(PAPER_CHANNELS)} channels "
          f"(of 700: skip 70, every 9th); {jobs} worker(s) on {cpu_model()} "
          f"({os.cpu_count()} cores)")
    for split, n in (("train", s.train), ("test", s.test)):
        path = out / FILES[split]
        config = split_config(split, n, s.seed)
        if path.exists():
            have = existing_config(path)
            if have != config:
                what = ("not made by spikeloop data speech" if have is None else
                        "made with other settings: " + ", ".join(
                            f"{k} {have.get(k)!r} (asked {config[k]!r})" for k in sorted(config)
                            if have.get(k) != config[k]))
                raise ValueError(f"--out {out}: {path.name} exists, {what}; choose another "
                                 "--out (files are never overwritten)")
            print(f"{split}: {path} already made with these settings (cached; made in "
                  f"{stored_wall_s(path):.1f} s)")
            continue
        t0 = time.monotonic()
        results = generate(split, n, s.seed, jobs=jobs, progress=s.progress)
        wall = time.monotonic() - t0
        write_h5(path, results, config, wall)
        spikes = np.array([len(r[2]) for r in results])
        dur = np.array([r[1] for r in results])
        print(f"{split}: {n} utterances in {wall:.1f} s ({n / wall:.1f} per s), "
              f"{len({r[0].speaker for r in results})} speakers, tracks "
              f"{dur.min():.1f}..{dur.max():.1f} s, spikes per utterance "
              f"{spikes.mean():.0f} (min {spikes.min()}, max {spikes.max()}) -> {path}")
    return 0
