"""Commands over the chip's own API: a preset's configuration, calibrating a
chip instance, writing a verification scenario, and running input events on a
chip instance with any backend."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeloop import backends
from spikeloop.backends import CHIP_BACKENDS, check_backend_device
from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents
from spikeloop.base.files import (
    FileError,
    check_input_file,
    lock_output_dir,
    prepare_output_dir,
    prepare_output_file,
)
from spikeloop.base.image import ConfigImage
from spikeloop.base.ppu_job import WHEN
from spikeloop.base.protocol import check_run
from spikeloop.base.settings import option
from spikeloop.cli.rtl import PRESET_HELP
from spikeloop.model.chip import Chip, calibrate_to_file, check_residual
from spikeloop.model.mismatch import MismatchConfig
from spikeloop.model.noise import NOISE_MODELS
from spikeloop.ppu import programs
from spikeloop.ppu.asm import assemble
from spikeloop.training.train import gain_sigma_option
from spikeloop.verify.scenarios import SCENARIOS

SIMULATORS = ("verilator", "icarus")


@dataclass
class ConfigSettings:
    preset: str = option(required=True, help=PRESET_HELP)


def config(s: ConfigSettings) -> int:
    print(json.dumps(ChipConfig.preset(s.preset).to_dict(), indent=2, sort_keys=True))
    return 0


@dataclass
class CalibrateSettings:
    preset: str = option(required=True, help=PRESET_HELP)
    chip_seed: int = option(required=True, help="which fabricated specimen")
    out: str = option(required=True, help="calibration file to write (.npz)")
    plot: str | None = option(None, help="histogram of the spreads before/after (PNG)")
    residual: float | None = option(
        None, metavar="F", help="what-if: leave fraction F (0..1) of the mismatch, every "
        "setting F of the way from the calibrated back to the nominal value")
    force: bool = option(False, help="replace --out (and --plot) when they exist")
    reps: int = option(8, help="repetitions averaged per measurement (default 8)")
    readout_noise_lsb: float = option(
        0.0, metavar="LSB", help="temporal noise of the column ADC in every calibration "
        "reading, std in LSB (default 0: the membrane's own noise only)")
    noise_model: str = option(
        "box-muller", choices=NOISE_MODELS, help="the generator of the membranes' temporal "
        "noise, kept in the chip file: box-muller (the default, Gaussian numbers) or "
        "binomial (popcount of the same hash, standardised: cheaper; docs/analog.md)")
    driver_gain_sigma: float = gain_sigma_option("driver")
    synapse_gain_sigma: float = gain_sigma_option("synapse")


def calibrate(s: CalibrateSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    if s.chip_seed < 0:
        raise ValueError(f"chip_seed = {s.chip_seed}; allowed: an integer >= 0")
    if s.residual is not None:
        check_residual(s.residual)
    if s.reps < 1:
        raise ValueError(f"reps = {s.reps}; allowed: an integer >= 1")
    if not (s.readout_noise_lsb >= 0 and math.isfinite(s.readout_noise_lsb)):
        raise ValueError(f"readout_noise_lsb = {s.readout_noise_lsb}; allowed: a number >= 0")
    mismatch = MismatchConfig(driver_gain_sigma=s.driver_gain_sigma,
                              synapse_gain_sigma=s.synapse_gain_sigma)
    prepare_output_file(s.out, "--out", overwrite=s.force, example="chip.npz")
    if s.plot:
        prepare_output_file(s.plot, "--plot", overwrite=s.force, example="spreads.png")
    print(f"calibrating preset {s.preset}, chip seed {s.chip_seed} (measurement only)")
    report = calibrate_to_file(cfg, s.chip_seed, s.out, s.plot, s.residual, reps=s.reps,
                               readout_noise_lsb=s.readout_noise_lsb,
                               noise_model=s.noise_model, mismatch=mismatch)
    if s.residual is not None:
        print(f"then {100 * s.residual:g} % of the mismatch put back (--residual): every "
              "setting that fraction of the way back to its nominal value")
    print(f"{'parameter':<13}{'unit':>9}{'spread before':>15}{'after':>12}"
          f"{'after/before':>14}{'required':>10}  verdict")
    for name, p in report["params"].items():
        req = p["required_max_ratio"]
        verdict = "-" if p["ok"] is None else ("ok" if p["ok"] else "FAIL")
        print(f"{name:<13}{p['unit']:>9}{p['std_before']:>15.4g}{p['std_after']:>12.4g}"
              f"{p['ratio']:>14.3f}{'' if req is None else f'<= {req}':>10}  {verdict}")
    print_residual_sources(report)
    print(f"{report['calibration_seconds']:.1f} s; wrote {s.out}"
          + (f" and {s.plot}" if s.plot else ""))
    if s.residual is not None:
        # a what-if: the verdicts say whether the degraded chip would still meet the
        # acceptance limits; that it does not is what was asked for
        print("(--residual: the verdicts compare the degraded chip with the calibration's "
              "acceptance limits; the exit status does not depend on them)")
        return 0
    return 0 if report["all_ok"] else 1


def print_residual_sources(report: dict) -> None:
    """What the calibration leaves beside the table of spreads: the measurement's
    limits, the ADC channels against their acceptance limit, the PSP efficacy's
    spread, and what the model has no per-synapse or per-driver mismatch for."""
    m = report.get("measurement", {})
    adc = report["adc_channels"]
    print(f"measurements: {m.get('reps')} repetitions each, membrane noise "
          f"{1e3 * report['noise_sigma_v']:.2g} mV ({m.get('noise_model', 'box-muller')}), "
          f"ADC readout noise {m.get('readout_noise_lsb', 0):g} LSB")
    print(f"ADC channels (not calibrated): offset std {adc['offset_std_lsb']:.2f} LSB, max "
          f"|offset| {adc['offset_max_abs_lsb']:.2f} LSB, gain std {100 * adc['gain_std']:.2f} "
          f"%; within {adc['limit_lsb']:g} LSB: {100 * adc['within_limit_fraction']:.1f} % of "
          f"the channels (BrainScaleS-2's limit after its calibration: all)")
    after = report["usability_after"]
    print(f"PSP efficacy spread after calibration (std/mean over neurons): "
          f"{after['efficacy_cv']:.4f}; tonic neurons {100 * after['tonic_fraction']:.1f} %")
    g = report.get("synapse_gains", {"modelled": False})
    if g["modelled"]:
        print(f"synapse gains (not calibrated): drivers {100 * g['driver_gain_sigma']:g} %, "
              f"synapses {100 * g['synapse_gain_sigma']:g} % (std drawn); every synapse's "
              f"gain: std {100 * g['std']:.2f} %, {g['min']:.3f}..{g['max']:.3f}")
        print(f"synapse drivers, on the {g['full_weight_psp_lsb']:.1f} LSB PSP of a full "
              f"weight: std {g['driver_std_lsb']:.2f} LSB, max |deviation| "
              f"{g['driver_max_abs_lsb']:.2f} LSB; within {g['driver_limit_lsb']:g} LSB: "
              f"{100 * g['driver_within_limit_fraction']:.1f} % of the drivers "
              "(BrainScaleS-2's limit after its calibration: all)")
    else:
        print("synapse gains: ideal (--driver-gain-sigma, --synapse-gain-sigma; "
              "docs/analog.md)")


@dataclass
class ScenarioSettings:
    name: str = option(positional=True, choices=list(SCENARIOS),
                       help="scenario (spikeloop/verify/scenarios.py)")
    preset: str = option(required=True, help=PRESET_HELP)
    out: str = option(required=True, help="directory for image.npz and events.npz")
    seed: int = option(0, help="generator seed (random scenario)")
    force: bool = option(False, help="replace image.npz and events.npz when they exist")


def scenario(s: ScenarioSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    if s.seed < 0:
        raise ValueError(f"seed = {s.seed}; allowed: an integer >= 0")
    out = prepare_output_dir(s.out)
    for name in ("image.npz", "events.npz"):
        prepare_output_file(out / name, "--out", overwrite=s.force)
    sc = SCENARIOS[s.name](cfg, np.random.default_rng(s.seed))
    with lock_output_dir(out, command="spikeloop scenario") as lock:
        if lock.note:
            print(lock.note)
        sc.image.save(out / "image.npz")
        sc.events.save(out / "events.npz")
    print(f"scenario {sc.name} (preset {cfg.name}, seed {s.seed}): {sc.what}")
    print(f"wrote {out / 'image.npz'} and {out / 'events.npz'} "
          f"({sc.events.batch} sample(s), {len(sc.events.table)} input events); "
          f"run it for --steps {sc.n_steps}")
    return 0


@dataclass
class RunSettings:
    backend: str = option(required=True, choices=CHIP_BACKENDS, help="which backend runs it")
    preset: str = option(required=True, help=PRESET_HELP)
    chip_seed: int = option(required=True, help="which fabricated specimen")
    image: str = option(required=True, help="ConfigImage .npz")
    events: str = option(required=True, help="InputEvents .npz")
    steps: int = option(required=True, help="analog steps per sample (at most what the "
                        "32-bit cycle counter can count; refused when input events fall "
                        "after the run's last cycle)")
    out: str = option(required=True, help="Observables .npz to write (exactly this name)")
    force: bool = option(False, help="replace --out when it exists")
    chip: str | None = option(None, help="chip file with its calibration (Chip.save or "
                              "`spikeloop calibrate`); its settings replace the image's")
    run_seed: int = option(0, help="seed of the temporal noise")
    simulator: str = option("verilator", choices=SIMULATORS, help="cosim: the simulator")
    waves: bool = option(False, help="cosim: write FST waveforms")
    build_dir: str | None = option(None, help="cosim: where the simulator builds are cached "
                                   "(default $SPIKELOOP_COSIM_BUILD_ROOT, else build/cosim in "
                                   "a source checkout, else the user's cache directory)")
    device: str = option("cpu", help="fast: the torch device, cpu (default), cuda or cuda:N "
                         "(the same Observables, bit for bit)")
    ppu: str | None = option(None, help="a plasticity-processor program run with the job: an "
                             "assembly file (docs/ppu.md) or a program of "
                             f"spikeloop/ppu/programs.py ({', '.join(programs.PROGRAMS)}); "
                             "its read-back goes into the Observables")
    ppu_when: str = option("each_sample", choices=WHEN,
                           help="start the program with every sample (default) or once "
                                "before the samples")
    ppu_dmem: tuple[str, ...] = option((), repeat=True, metavar="INDEX=WORD",
                                       help="a data-memory word the host writes first "
                                            "(repeatable)")
    ppu_read_dmem: tuple[int, ...] = option((), metavar="INDEX",
                                            help="data-memory words read back after each "
                                                 "PPU run")
    ppu_read_synapses: bool = option(False, help="read every synapse back after each PPU run")
    ppu_max_cycles: int = option(100_000, help="cycles the host waits for the PPU's halt")


def ppu_job(s: RunSettings, cfg: ChipConfig) -> dict | None:
    """The ``--ppu*`` options as a PPU job (spikeloop/base/ppu_job.py), or None."""
    extra = [o for o in ("ppu_dmem", "ppu_read_dmem", "ppu_read_synapses") if getattr(s, o)]
    if s.ppu is None:
        if extra:
            raise ValueError(f"--{extra[0].replace('_', '-')} needs --ppu (a program)")
        return None
    if s.ppu in programs.PROGRAMS:
        words = programs.program(s.ppu, cfg).words
    elif Path(s.ppu).is_file():
        path = check_input_file(s.ppu, "a PPU assembly file")
        try:
            words = assemble(path.read_text(encoding="utf-8"), cfg).words
        except UnicodeDecodeError:
            raise FileError(f"--ppu {s.ppu}: not a text file (PPU assembly expected)") from None
        except ValueError as e:
            raise FileError(f"--ppu {s.ppu}: {e}") from None
    else:
        raise FileError(f"--ppu {s.ppu!r}: neither an assembly file nor a program of "
                         f"spikeloop/ppu/programs.py ({', '.join(programs.PROGRAMS)})")
    dmem = []
    for item in s.ppu_dmem:
        index, _, word = item.partition("=")     # no "=": word "" does not parse
        try:
            dmem.append((int(index, 0), int(word, 0)))
        except ValueError:
            raise ValueError(f"--ppu-dmem {item!r}: allowed INDEX=WORD, e.g. 0=30 or "
                             "1=0xff") from None
    return {"words": words, "dmem": dmem, "when": s.ppu_when,
            "read_dmem": list(s.ppu_read_dmem), "read_synapses": s.ppu_read_synapses,
            "max_cycles": s.ppu_max_cycles}


def run(s: RunSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    for name, lo in (("chip_seed", 0), ("run_seed", 0), ("steps", 1), ("ppu_max_cycles", 1)):
        if getattr(s, name) < lo:
            raise ValueError(f"{name} = {getattr(s, name)}; allowed: an integer >= {lo}")
    device = check_backend_device(s.backend, s.device)
    check_run(cfg, s.steps, 1, run_seed=s.run_seed)
    out = prepare_output_file(s.out, "--out", overwrite=s.force, example="observables.npz")
    if s.build_dir is not None:
        prepare_output_dir(s.build_dir, "--build-dir")
    if s.chip:
        chip = Chip.load_expected(s.chip, cfg, s.chip_seed)
    else:
        chip = Chip(cfg, s.chip_seed)
    image = ConfigImage.load(s.image, cfg)
    if s.chip:
        image = chip.configure(image)
    events = InputEvents.load(s.events, cfg)
    check_run(cfg, s.steps, events.batch, events.table[:, 1], run_seed=s.run_seed)
    opts = {}
    if s.backend == "cosim":
        opts = {"simulator": s.simulator, "waves": s.waves}
        if s.build_dir is not None:
            opts["build_root"] = s.build_dir
    if s.backend == "fast":
        opts["device"] = device
    job = ppu_job(s, cfg)
    if job is not None:
        opts["ppu"] = job
    print(f"run: backend {s.backend}" + (f" on {s.device}" if s.backend == "fast" else "")
          + f", preset {cfg.name}, chip seed {s.chip_seed}, run seed {s.run_seed}, "
          f"{events.batch} sample(s), {s.steps} steps"
          + (f"; PPU program {s.ppu} ({len(job['words'])} words, {job['when']})"
             if job else ""))
    if not s.chip:
        print(f"note: no --chip: the image's own analog settings run on chip {s.chip_seed} as "
              "they are, no calibration applied (spikeloop calibrate makes a chip file)")
    t0 = time.perf_counter()
    obs = backends.run(chip, image, events, s.steps, backend=s.backend, run_seed=s.run_seed,
                       **opts)
    dt = time.perf_counter() - t0
    obs.save(out)
    cycles = int(obs.cycles.sum())
    print(f"{len(obs.spikes)} spikes, {len(obs.records)} recorded events, "
          f"{int(obs.xbar_drops.sum())} crossbar drops, {cycles} cycles "
          f"({cycles * cfg.clock_period_ns / 1000:.1f} us of chip time) in {dt:.2f} s; "
          f"wrote {s.out}")
    for i, r in enumerate(obs.ppu or []):
        status = {0: "stopped", 1: "running", 2: "halted"}.get(r["status"], r["status"])
        dmem = ", ".join(f"dmem[{k}] = {v}" for k, v in r["dmem"].items())
        print(f"PPU run {i}: {status} at pc {r['pc']} after {r['cycles']} cycles, "
              f"{len(r['out'])} vectors streamed ({r['out_drops']} dropped)"
              + (f"; {dmem}" if dmem else ""))
    return 0
