"""On-chip learning without the host: the PPU's learning program (homeostatic
synaptic scaling, ``LEARN`` of spikeloop/ppu/programs.py) corrects the chip's
mismatch.

    spikeloop ppu learn --preset mini --chip-seed 1 --trials 20 --backend reference --out DIR

The task: every neuron of the chip receives the same input pattern (``inputs``
external inputs, each firing once per trial at cycle ``16 + 4 i``, through
excitatory rows of equal weight in every column of both halves).  Because of
the device mismatch (synaptic gains, time constants, ADC gains) their membrane
responses differ.  The PPU, started by the host in every trial's clear cycle,
measures each neuron's response (peak minus first ADC sample of the trial),
compares it with ``target`` and, after the run's drain, steps the plastic
weights of that neuron's column towards it (``gain``, ``max_step``; saturating
at 0..WEIGHT_MAX).  The host only plays the trials' input events; it writes
the program and its parameters once, before the first trial.  The learning
curve is read from the PPU's own output buffer: per trial the responses it
measured and the steps it took.

``calibration``: ``except-gain`` (default): the chip's calibration for leak,
reset, threshold and time constants, but the excitatory synaptic gains left at
their nominal setting (about 20 % spread), so the rule does what the gain
calibration would; ``none``: every setting nominal (the uncalibrated chip: a
neuron whose threshold lies closer to its leak than ``target`` cannot reach it);
``full``: the calibrated chip (little left to learn).

Writes ``learning_curve.json`` (per trial: responses, steps, mean absolute
deviation from the target and standard deviation over the neurons, PPU cycles,
mean plastic weight per neuron; the seeds, backend, wall time) and
``learning_curve.png``.  As a check (not part of the learning) the host
compares every trial's weights, read back after the PPU's halt, with numpy's
rule (``learn_numpy``) applied to the ADC codes of that trial.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spikeloop import backends
from spikeloop.backends import CHIP_BACKENDS
from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents
from spikeloop.base.files import atomic_write_text, lock_output_dir
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign
from spikeloop.base.protocol import live_cycles
from spikeloop.base.settings import option
from spikeloop.model.analog import GAIN_EXC
from spikeloop.model.chip import Chip
from spikeloop.plots import figure
from spikeloop.ppu import programs as P
from spikeloop.verify.scenarios import base_image, input_event

CALIBRATIONS = ("except-gain", "none", "full")
#: cycle of the first input event of a trial, and the spacing of the inputs
FIRST_EVENT_CYCLE, EVENT_SPACING = 16, 4
FILES = {"curve": "learning_curve.json", "plot": "learning_curve.png"}


@dataclass
class LearnSettings:
    """The demonstration's settings; the fields are ``spikeloop ppu learn``'s arguments."""

    preset: str = option("mini", help="chip design variant, a preset: mini (default) or "
                                         "full")
    chip_seed: int = option(1, help="which fabricated specimen (default 1)")
    trials: int = option(20, help="trials (default 20)")
    backend: str = option("reference", choices=CHIP_BACKENDS,
                          help="the backend that runs the chip (default reference)")
    calibration: str = option("except-gain", choices=CALIBRATIONS,
                              help="the chip's calibration (default except-gain: calibrated "
                                   "except the excitatory synaptic gains)")
    inputs: int = option(4, help="inputs of the pattern, one event each (default 4)")
    weight: int = option(20, help="initial weight of every plastic synapse (default 20)")
    target: int = option(30, help="response target in ADC codes (default 30)")
    gain: int = option(8, help="step = (|error| * gain) >> 4, 0..255 (default 8)")
    max_step: int = option(8, help="largest step per trial, 0..127 (default 8)")
    n_steps: int = option(40, flag="--steps", help="analog steps per trial (default 40)")
    run_seed: int = option(0, help="seed of the temporal noise (default 0)")
    simulator: str = option("verilator", choices=("verilator", "icarus"),
                            help="cosim: the simulator (default verilator)")
    out: str | None = option(None, help="directory for learning_curve.json and "
                                        "learning_curve.png (default: write nothing)")

    def check(self) -> ChipConfig:
        """The preset's ChipConfig; raises ValueError naming a bad field."""
        cfg = ChipConfig.preset(self.preset)
        if self.backend not in CHIP_BACKENDS:
            raise ValueError(f"backend = {self.backend!r}; allowed: {', '.join(CHIP_BACKENDS)}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration = {self.calibration!r}; allowed: "
                             f"{', '.join(CALIBRATIONS)}")
        for name, lo in (("chip_seed", 0), ("trials", 1), ("run_seed", 0), ("n_steps", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} = {v!r}; allowed: an integer >= {lo}")
        k_max = max_inputs(cfg)
        if not isinstance(self.inputs, int) or not 1 <= self.inputs <= k_max:
            raise ValueError(f"inputs = {self.inputs!r}; allowed: 1..{k_max} (synapse drivers "
                             "per half, one excitatory row each)")
        if not isinstance(self.weight, int) or not 0 <= self.weight <= cfg.weight_max:
            raise ValueError(f"weight = {self.weight!r}; allowed: 0..{cfg.weight_max}")
        last = FIRST_EVENT_CYCLE + EVENT_SPACING * (self.inputs - 1)
        L = live_cycles(cfg, self.n_steps)
        if last >= L - 2 * cfg.analog_step_cycles:
            need = (last + 2 * cfg.analog_step_cycles) // cfg.analog_step_cycles
            raise ValueError(f"n_steps = {self.n_steps}: the last input event (cycle {last}) "
                             f"would not be seen; allowed: n_steps >= {need}")
        if self.simulator not in ("verilator", "icarus"):
            raise ValueError(f"simulator = {self.simulator!r}; allowed: verilator, icarus")
        # the program's own parameter checks (target, gain, max_step, config)
        P.learn_dmem(cfg, self.n_steps, [(0, 0)], self.target, gain=self.gain,
                     max_step=self.max_step)
        return cfg


def max_inputs(cfg: ChipConfig) -> int:
    return min(cfg.drivers_per_half, 1 << cfg.row_select_bits)


def learning_image(cfg: ChipConfig, inputs: int, weight: int
                   ) -> tuple[ConfigImage, list[tuple[int, int]]]:
    """The task's image (analog settings not yet set) and its plastic rows:
    input ``i`` arrives on external link 0 with row select ``i``, the crossbar
    sends it to bus ``i % B`` of both halves, driver ``i`` of each half takes it
    into row ``2i`` (excitatory, ``weight`` in every column) and ``2i + 1``
    (inhibitory, weight 0); every neuron enabled, the ADC every analog step."""
    img = base_image(cfg)             # half 0 routed, ADC every step
    B = cfg.buses_per_half
    mask = (1 << cfg.row_select_bits) - 1
    for h in range(cfg.n_halves):
        for b in range(B):
            node = (cfg.n_blocks, h * B + b)
            img.xbar_enable[node] = 1
            img.xbar_mask[node] = (B - 1) << cfg.label_bits
            img.xbar_target[node] = b << cfg.label_bits
        for i in range(max_inputs(cfg)):
            img.driver_select[h, i] = i
            img.driver_mask[h, i] = mask
            img.row_sign[h, 2 * i] = RowSign.EXC
            img.row_sign[h, 2 * i + 1] = RowSign.INH
    rows = []
    for h in range(cfg.n_halves):
        for i in range(inputs):
            img.synapse_weight[h, 2 * i, :] = weight
            img.synapse_label[h, 2 * i, :] = 0
            rows.append((h, 2 * i))
    return img, rows


def trial_events(cfg: ChipConfig, inputs: int, trials: int) -> InputEvents:
    """The same pattern in every trial: input ``i`` fires once at cycle 16 + 4 i."""
    ev = [(FIRST_EVENT_CYCLE + EVENT_SPACING * i, 0, input_event(cfg, i)) for i in range(inputs)]
    return InputEvents.from_lists(cfg, [ev] * trials)


def chip_and_image(s: LearnSettings, cfg: ChipConfig):
    """(chip, image with the analog settings of ``s.calibration``, plastic rows)."""
    img, rows = learning_image(cfg, s.inputs, s.weight)
    if s.calibration == "none":
        chip = Chip(cfg, s.chip_seed)
        return chip, chip.configure(img), rows
    chip = Chip.calibrated(cfg, s.chip_seed)
    image = chip.configure(img)
    if s.calibration == "except-gain":
        image.analog_settings[:, GAIN_EXC] = Chip(cfg, s.chip_seed).settings[:, GAIN_EXC]
    return chip, image, rows


def spread(response: np.ndarray, target: int) -> dict:
    """Mean absolute deviation from the target and standard deviation over neurons."""
    r = np.asarray(response, dtype=np.float64)
    return {"mad": float(np.abs(r - target).mean()), "std": float(r.std()),
            "mean": float(r.mean()), "min": int(r.min()), "max": int(r.max())}


def _mean_plastic_weight(cfg: ChipConfig, weights: np.ndarray, rows) -> np.ndarray:
    """[n_neurons] mean weight of each neuron's plastic synapses (NaN: none)."""
    C = cfg.columns_per_half
    out = np.full(cfg.n_neurons, np.nan)
    for h in range(cfg.n_halves):
        rr = [r for hh, r in rows if hh == h]
        if rr:
            out[h * C:(h + 1) * C] = np.asarray(weights)[h, rr].mean(axis=0)
    return out


def run(s: LearnSettings, log=print) -> dict:
    """Run the trials; returns the learning curve (what learning_curve.json holds)."""
    cfg = s.check()
    t0 = time.perf_counter()
    chip, image, rows = chip_and_image(s, cfg)
    setup_s = time.perf_counter() - t0
    events = trial_events(cfg, s.inputs, s.trials)
    prog = P.program("learn", cfg)
    dmem = P.learn_dmem(cfg, s.n_steps, rows, s.target, gain=s.gain, max_step=s.max_step)
    job = {"words": prog.words, "dmem": dmem, "when": "each_sample",
           "read_dmem": [P.LEARN_SAMPLES, P.LEARN_END_CYCLE, P.LEARN_WRITE_CYCLE],
           "read_synapses": True, "max_cycles": 100_000}
    opts = {"simulator": s.simulator} if s.backend == "cosim" else {}
    log(f"ppu learn: preset {cfg.name}, chip seed {s.chip_seed} (calibration {s.calibration}), "
        f"run seed {s.run_seed}, backend {s.backend}, {s.trials} trials of {s.n_steps} steps, "
        f"{cfg.n_neurons} neurons x {len(rows) // cfg.n_halves} plastic rows per half, "
        f"target {s.target}, gain {s.gain}/16, max step {s.max_step}")
    t1 = time.perf_counter()
    obs = backends.run(chip, image, events, s.n_steps, backend=s.backend, run_seed=s.run_seed,
                   ppu=job, **opts)
    wall = time.perf_counter() - t1
    if obs.ppu is None or len(obs.ppu) != s.trials:
        raise RuntimeError(f"backend {s.backend} returned {0 if obs.ppu is None else len(obs.ppu)}"
                           f" PPU results for {s.trials} trials")
    per_trial, mismatches = [], []
    w_before = image.synapse_weight
    for t, res in enumerate(obs.ppu):
        if res["status"] != 0b10:
            raise RuntimeError(f"trial {t}: the PPU did not halt (status {res['status']}, "
                               f"pc {res['pc']})")
        r, d = P.learn_decode(cfg, res["out"])
        codes = obs.adc[:int(obs.adc_count[t]), t]
        nr, nd, nw = P.learn_numpy(cfg, w_before, codes, rows, s.target, gain=s.gain,
                                   max_step=s.max_step)
        w_after = np.asarray(res["weights"])
        if not ((nr == r).all() and (nd == d).all() and (nw == w_after).all()):
            mismatches.append(t)
        per_trial.append({
            "trial": t, "response": r.tolist(), "step": d.tolist(), **spread(r, s.target),
            "ppu_cycles": int(res["cycles"]), "adc_samples": int(res["dmem"][P.LEARN_SAMPLES]),
            "end_cycle": int(res["dmem"][P.LEARN_END_CYCLE]),
            "write_cycle": int(res["dmem"][P.LEARN_WRITE_CYCLE]),
            "mean_weight": _mean_plastic_weight(cfg, w_after, rows).round(3).tolist(),
            "spikes": int((obs.spikes[:, 0] == t).sum()) if len(obs.spikes) else 0})
        w_before = w_after
    first, last = per_trial[0], per_trial[-1]
    result = {
        "settings": asdict(s), "preset": cfg.name, "program": "learn",
        "program_words": len(prog.words), "rows": [list(r) for r in rows],
        "live_cycles": live_cycles(cfg, s.n_steps),
        "seeds": {"chip_seed": s.chip_seed, "run_seed": s.run_seed},
        "backend": s.backend, "trials": per_trial,
        "first": {k: first[k] for k in ("mad", "std", "mean")},
        "last": {k: last[k] for k in ("mad", "std", "mean")},
        "ppu_cycles": [p["ppu_cycles"] for p in per_trial],
        "rule_check": {"trials_checked": s.trials, "mismatched_trials": mismatches},
        "wall_s": wall, "wall_s_per_trial": wall / s.trials, "setup_s": setup_s,
    }
    if s.backend == "cosim":
        st = obs.stats or {}
        result["cosim"] = {k: st.get(k) for k in ("simulator", "build_s", "build_cached",
                                                   "sim_cycles", "test_wall_s", "run_dir")}
    return result


def plot(result: dict, path) -> None:
    tr = result["trials"]
    t = [p["trial"] for p in tr]
    target = result["settings"]["target"]
    fig, (ax_r, ax_s, ax_w) = figure(14, 4.2, 1, 3)
    resp = np.array([p["response"] for p in tr])
    for n in range(resp.shape[1]):
        ax_r.plot(t, resp[:, n], "-", lw=0.9, alpha=0.7)
    ax_r.axhline(target, color="k", ls="--", lw=1, label=f"target {target}")
    ax_r.set(xlabel="trial", ylabel="peak - first ADC sample (codes)",
             title="each neuron's response, measured by the PPU")
    ax_r.legend()
    ax_s.plot(t, [p["mad"] for p in tr], "o-", label="mean |response - target|")
    ax_s.plot(t, [p["std"] for p in tr], "s--", label="std over neurons")
    ax_s.set(xlabel="trial", ylabel="ADC codes", title="spread (learning curve)")
    ax_s.set_ylim(bottom=0)
    ax_s.legend()
    w = np.array([p["mean_weight"] for p in tr])
    for n in range(w.shape[1]):
        ax_w.plot(t, w[:, n], "-", lw=0.9, alpha=0.7)
    ax_w.set(xlabel="trial", ylabel="mean plastic weight (after the trial)",
             title="each neuron's weights, written by the PPU")
    for ax in (ax_r, ax_s, ax_w):
        ax.grid(alpha=0.3)
    s = result["settings"]
    fig.suptitle(f"PPU learning program (homeostatic scaling): preset {result['preset']}, "
                 f"chip seed {s['chip_seed']} (calibration {s['calibration']}), "
                 f"run seed {s['run_seed']}, backend {result['backend']}")
    fig.savefig(path)


def write(result: dict, out) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in FILES.items()}
    atomic_write_text(paths["curve"], json.dumps(result, indent=1) + "\n")
    plot(result, paths["plot"])
    return paths


def demonstrate(s: LearnSettings) -> int:
    """``spikeloop ppu learn``: run, write the curve (with ``out``), print the
    summary; exit status 1 when a trial disagrees with the rule computed on the
    host."""
    s.check()
    lock = lock_output_dir(s.out, command="spikeloop ppu learn") if s.out else None
    try:
        if lock is not None and lock.note:
            print(lock.note)
        result = run(s)
        paths = write(result, s.out) if s.out else None
    finally:
        if lock is not None:
            lock.release()
    f, la = result["first"], result["last"]
    cyc = result["ppu_cycles"]
    cfg = ChipConfig.preset(s.preset)
    print(f"seeds: chip {s.chip_seed}, run {s.run_seed}")
    print(f"spread of the responses (ADC codes), trial 0 -> trial {s.trials - 1}: "
          f"mean |r - target| {f['mad']:.2f} -> {la['mad']:.2f}, "
          f"std {f['std']:.2f} -> {la['std']:.2f} (mean {f['mean']:.1f} -> {la['mean']:.1f}, "
          f"target {s.target})")
    print(f"PPU cycles per trial: {min(cyc)}..{max(cyc)} "
          f"({max(cyc) / cfg.clock_mhz:.2f} us at {cfg.clock_mhz} MHz; the run itself "
          f"{result['live_cycles']} cycles)")
    chk = result["rule_check"]
    print(f"rule check (host, numpy on each trial's ADC codes): "
          f"{'every trial agrees' if not chk['mismatched_trials'] else 'MISMATCH in trials '}"
          f"{chk['mismatched_trials'] or ''}")
    print(f"wall time {result['wall_s']:.2f} s ({result['wall_s_per_trial']:.3f} s per trial, "
          f"backend {s.backend})"
          + (f"; wrote {paths['curve']} and {paths['plot']}" if paths else ""))
    return 0 if not chk["mismatched_trials"] else 1
