"""The vectorised cochlea against lauscher itself (``spikeloop data
cochlea-check``): the same tracks through lauscher's own stages (its
``RmsNormalizer(0.3)``, ``HanningWindow``, ``BasilarMembrane``, ``HairCell``,
``BushyCell``; its 700-channel membrane restricted to the channels compared,
which it computes channel by channel) and through :class:`Cochlea`.

- basilar membrane and hair cell: deterministic; the largest difference,
  relative to the largest value, is printed (0 or rounding);
- bushy cells: random (lauscher draws from numpy's global generator, seeded
  here with the utterance's fibre seed; the cochlea here draws binomials from
  its own), so they are compared in distribution: spikes per channel and per
  utterance, lauscher's against the mean and spread of ``repeats`` seeds of
  the vectorised cochlea, and the timing: mean spike time, first-spike
  latency per channel, inter-spike intervals.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from spikeloop.base.settings import option
from spikeloop.data.speech import synth
from spikeloop.data.speech.build import fibre_seed
from spikeloop.data.speech.cochlea import N_CHANNELS, PAPER_CHANNELS, Cochlea


def lauscher_stages(x: np.ndarray, sample_rate: int, channels, seeds):
    """lauscher's own chain on ``channels``: (membrane, probability, [spikes [C, T] per
    seed of ``seeds``: its bushy cells run once per seed], rate)."""
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.firing_probability import FiringProbability
    from lauscher.transformations import (
        BasilarMembrane,
        BushyCell,
        HairCell,
        HanningWindow,
        RmsNormalizer,
    )

    wave = MonoAudioWave(np.array(x, dtype=np.float64), sample_rate)
    wave = wave.transform(RmsNormalizer(0.3)).transform(HanningWindow())
    bm = BasilarMembrane(channels=N_CHANNELS)
    bm.ch = bm.ch[np.asarray(channels)]
    membrane = wave.transform(bm)
    prob = membrane.transform(HairCell())
    out = []
    for seed in seeds:
        np.random.seed(seed)
        st = FiringProbability(prob.channels, prob.sample_rate).transform(BushyCell())
        dense = np.zeros((len(channels), prob.num_samples), dtype=np.uint8)
        t_idx = np.rint(st.spike_times * prob.sample_rate).astype(np.int64)
        dense[st.spike_labels.astype(np.int64), t_idx] = 1
        out.append(dense)
    return membrane.channels, prob.channels, out, prob.sample_rate


def timing(spikes: np.ndarray, fs: float) -> dict:
    """Timing statistics of a spike matrix ``[C, T]``."""
    ch, t = np.nonzero(spikes)
    ts = t / fs
    first = [np.flatnonzero(row)[0] / fs for row in spikes if row.any()]
    isi = np.concatenate([np.diff(np.flatnonzero(row)) / fs for row in spikes]
                         ) if len(ts) else np.zeros(0)
    return {"spikes": int(len(ts)), "mean_t_s": float(ts.mean()) if len(ts) else float("nan"),
            "first_s": float(np.median(first)) if first else float("nan"),
            "isi_median_s": float(np.median(isi)) if len(isi) else float("nan"),
            "isi_cv": float(isi.std() / isi.mean()) if len(isi) > 1 else float("nan")}


def _stats(runs: list[np.ndarray], fs: float) -> tuple[dict, dict]:
    t = [timing(m, fs) for m in runs]
    return ({k: float(np.nanmean([x[k] for x in t])) for k in t[0]},
            {k: float(np.nanstd([x[k] for x in t])) for k in t[0]})


def compare(utterances: int = 2, *, seed: int = 0, split: str = "test", repeats: int = 4,
            channels=PAPER_CHANNELS, out=print) -> dict:
    """Compare on ``utterances`` tracks of ``split``, ``repeats`` fibre seeds each on
    both sides; print and return the figures."""
    channels = tuple(int(c) for c in channels)
    cochlea = Cochlea(channels)
    counts = {"lauscher": np.zeros((repeats, len(channels))),
              "vectorised": np.zeros((repeats, len(channels)))}
    rows = []
    worst_bm = worst_hc = 0.0
    t_l = t_m = 0.0
    for i in range(utterances):
        u, x = synth.utterance_track(split, i, seed)
        seeds = [fibre_seed(seed, split, i) + r for r in range(repeats)]
        t0 = time.monotonic()
        bm_l, hc_l, sp_l, fs = lauscher_stages(x, synth.SAMPLE_RATE, channels, seeds)
        t1 = time.monotonic()
        runs = [cochlea.stages(x, synth.SAMPLE_RATE, sd) for sd in seeds]
        t2 = time.monotonic()
        bm_m, hc_m, _, fs_m = runs[0]
        sp_m = [r[2] for r in runs]
        if fs != fs_m:
            raise RuntimeError(f"sample rates differ: lauscher {fs}, vectorised {fs_m}")
        t_l += (t1 - t0) / repeats
        t_m += (t2 - t1) / repeats
        d_bm = float(np.abs(bm_m - bm_l).max() / np.abs(bm_l).max())
        d_hc = float(np.abs(hc_m - hc_l).max() / np.abs(hc_l).max())
        worst_bm, worst_hc = max(worst_bm, d_bm), max(worst_hc, d_hc)
        for r in range(repeats):
            counts["lauscher"][r] += sp_l[r].sum(axis=1)
            counts["vectorised"][r] += sp_m[r].sum(axis=1)
        (ml, sl), (mm, sm) = _stats(sp_l, fs), _stats(sp_m, fs)
        rows.append({"utterance": i, "word": u.word, "speaker": u.speaker,
                     "lauscher": ml, "lauscher_sd": sl, "vectorised": mm, "vectorised_sd": sm})
        dur = len(x) / synth.SAMPLE_RATE
        out(f"utterance {i} ({u.word!r}, {u.voice}+{u.speaker}, {dur:.1f} s): membrane max "
            f"rel. diff {d_bm:.1e}, hair cell {d_hc:.1e}; per run: lauscher "
            f"{(t1 - t0) / repeats:.1f} s, vectorised {(t2 - t1) / repeats:.3f} s")
        out(f"    {'':13s} {'lauscher':>20s}   {'vectorised':>20s}   (mean +- sd of "
            f"{repeats} seeds)")
        for k in ml:
            out(f"    {k:13s} {ml[k]:11.4g} +- {sl[k]:<6.2g}   {mm[k]:11.4g} +- {sm[k]:<6.2g}")
    cl, cm = counts["lauscher"], counts["vectorised"]
    mean_l, mean_m = cl.mean(axis=0), cm.mean(axis=0)
    corr = (float(np.corrcoef(mean_l, mean_m)[0, 1]) if mean_l.std() and mean_m.std()
            else float("nan"))
    # per channel: the two means against their standard errors (Poisson-like floor)
    var = (np.maximum(cl.var(axis=0, ddof=1), mean_l) + np.maximum(cm.var(axis=0, ddof=1),
                                                                      mean_m)) / repeats
    z = (mean_l - mean_m) / np.sqrt(np.maximum(var, 1.0 / repeats))
    within = float(np.mean(np.abs(z) <= 2.0))
    tot_l, tot_m = cl.sum(axis=1), cm.sum(axis=1)
    ratio = float(tot_m.mean() / tot_l.mean()) if tot_l.mean() else float("nan")
    out(f"spikes over {utterances} utterance(s) x {len(channels)} channels: lauscher "
        f"{tot_l.mean():.1f} +- {tot_l.std():.1f}, vectorised {tot_m.mean():.1f} +- "
        f"{tot_m.std():.1f} (ratio {ratio:.3f}); per channel: correlation {corr:.3f}, "
        f"{100 * within:.0f} % of channels within 2 standard errors")
    out(f"time per utterance and run: lauscher {t_l / utterances:.1f} s, vectorised "
        f"{t_m / utterances:.3f} s ({t_l / max(t_m, 1e-9):.0f}x)")
    return {"membrane_rel_diff": worst_bm, "hair_cell_rel_diff": worst_hc,
            "counts_lauscher": cl, "counts_vectorised": cm, "correlation": corr,
            "within_2se": within, "z": z, "total_ratio": ratio, "rows": rows,
            "lauscher_s": t_l / utterances, "vectorised_s": t_m / utterances}


@dataclass
class CochleaCheckSettings:
    utterances: int = option(2, help="utterances compared (lauscher takes about 10 s each)")
    seed: int = option(0, help="data set seed (the utterances and fibre seeds of "
                       "spikeloop data speech)")
    split: str = option("test", choices=("train", "test"), help="whose utterances")
    repeats: int = option(4, help="fibre seeds per utterance, on both sides (lauscher's "
                          "bushy cells take about 10 s per seed at 70 channels)")


def run(s: CochleaCheckSettings) -> int:
    if s.utterances < 1:
        raise ValueError(f"--utterances = {s.utterances}; allowed: an integer >= 1")
    if s.repeats < 2:
        raise ValueError(f"--repeats = {s.repeats}; allowed: an integer >= 2")
    if not 0 <= s.seed < 2 ** 32:
        raise ValueError(f"--seed = {s.seed}; allowed: 0 .. 2**32 - 1")
    synth.espeak_binary()
    compare(s.utterances, seed=s.seed, split=s.split, repeats=s.repeats)
    return 0
