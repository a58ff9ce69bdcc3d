"""The ``spikeloop`` command line.

    spikeloop rtl export  --preset {mini,full} --out DIR   Verilog of top and every component
    spikeloop rtl area    --preset P [--component C]      yosys cell counts as JSON
    spikeloop rtl lint    --preset P                      Verilator lint, waivers listed
    spikeloop rtl addrmap --preset P                      the host bus address map
    spikeloop config      --preset P                      the ChipConfig as JSON
    spikeloop calibrate   --preset P --chip-seed N --out FILE [--plot PNG] [--residual F]
    spikeloop scenario    NAME --preset P --out DIR         a scenario's image.npz, events.npz
    spikeloop run         --backend B --preset P --chip-seed N --image F --events F --steps K
                          --out FILE                        Observables of a run
    spikeloop ppu learn   --preset P --chip-seed N --trials T --backend B --out DIR
                                                    PPU program 4: on-chip homeostatic
                                                    scaling, its learning curve
    spikeloop train       {mnist,yinyang,shd} --backend {software,fast,cosim} [--preset P
                          --chip-seed N] --epochs E --out DIR [--resume]   train a network
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from spikeloop import backends
from spikeloop.base.config import PRESETS, ChipConfig, ConfigError


def _add_preset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), required=True,
                   help="chip design variant (see spikeloop/base/config.py)")


def _cmd_rtl_export(args) -> int:
    from spikeloop.rtl.export import export_verilog

    cfg = ChipConfig.preset(args.preset)
    t0 = time.perf_counter()
    files = export_verilog(cfg, Path(args.out))
    for name, path in files.items():
        print(f"{name:<18} {path}  ({path.stat().st_size} bytes)")
    print(f"exported {len(files)} components for preset {cfg.name} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_rtl_area(args) -> int:
    from spikeloop.rtl.export import area

    cfg = ChipConfig.preset(args.preset)
    names = [args.component] if args.component else None
    result = area(cfg, names, timeout_s=args.timeout)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def _cmd_rtl_lint(args) -> int:
    from spikeloop.rtl.export import LINT_WAIVERS, lint

    cfg = ChipConfig.preset(args.preset)
    findings = lint(cfg)
    print(f"verilator --lint-only -Wall, preset {cfg.name}; waived rules:")
    for rule, why in LINT_WAIVERS.items():
        print(f"  {rule}: {why}")
    bad = 0
    for name, lines in findings.items():
        print(f"{name:<18} {'clean' if not lines else f'{len(lines)} finding(s)'}")
        for ln in lines:
            print("   ", ln)
        bad += len(lines)
    return 1 if bad else 0


def _cmd_rtl_addrmap(args) -> int:
    from spikeloop.base.addrmap import AddressMap

    amap = AddressMap(ChipConfig.preset(args.preset))
    print(amap.table())
    print(f"address bits: {amap.addr_bits}")
    return 0


def _cmd_config(args) -> int:
    print(json.dumps(ChipConfig.preset(args.preset).to_dict(), indent=2, sort_keys=True))
    return 0


def _cmd_run(args) -> int:
    from spikeloop.backends import check_backend_device
    from spikeloop.base.events import InputEvents
    from spikeloop.base.image import ConfigImage
    from spikeloop.model.chip import Chip

    cfg = ChipConfig.preset(args.preset)
    if args.chip:
        chip = Chip.load(args.chip)
        if chip.cfg != cfg or chip.chip_seed != args.chip_seed:
            raise ValueError(f"{args.chip} holds chip {chip.chip_seed} of preset "
                             f"{chip.cfg.name!r}, not chip {args.chip_seed} of {cfg.name!r}")
    else:
        chip = Chip(cfg, args.chip_seed)
    image = ConfigImage.load(args.image, cfg)
    if args.chip:
        image = chip.configure(image)
    events = InputEvents.load(args.events, cfg)
    opts = {}
    if args.backend == "cosim":
        opts = {"simulator": args.simulator, "waves": args.waves}
    device = check_backend_device(args.backend, args.device)
    if args.backend == "fast":
        opts["device"] = device
    ppu = _ppu_job(args, cfg)
    if ppu is not None:
        opts["ppu"] = ppu
    print(f"run: backend {args.backend}"
          + (f" on {args.device}" if args.backend == "fast" else "")
          + f", preset {cfg.name}, chip seed {args.chip_seed}, "
          f"run seed {args.run_seed}, {events.batch} sample(s), {args.steps} steps"
          + (f"; PPU program {args.ppu} ({len(ppu['words'])} words, {ppu['when']})"
             if ppu else ""))
    t0 = time.perf_counter()
    obs = backends.run(chip, image, events, args.steps, backend=args.backend, run_seed=args.run_seed,
                   **opts)
    dt = time.perf_counter() - t0
    obs.save(args.out)
    cycles = int(obs.cycles.sum())
    print(f"{len(obs.spikes)} spikes, {len(obs.records)} recorded events, "
          f"{int(obs.xbar_drops.sum())} crossbar drops, {cycles} cycles "
          f"({cycles * cfg.clock_period_ns / 1000:.1f} us of chip time) in {dt:.2f} s; "
          f"wrote {args.out}")
    for i, r in enumerate(obs.ppu or []):
        status = {0: "stopped", 1: "running", 2: "halted"}.get(r["status"], r["status"])
        dmem = ", ".join(f"dmem[{k}] = {v}" for k, v in r["dmem"].items())
        print(f"PPU run {i}: {status} at pc {r['pc']} after {r['cycles']} cycles, "
              f"{len(r['out'])} vectors streamed ({r['out_drops']} dropped)"
              + (f"; {dmem}" if dmem else ""))
    return 0


def _ppu_job(args, cfg: ChipConfig) -> dict | None:
    """The ``--ppu*`` options as a PPU job (spikeloop/base/ppu_job.py), or None."""
    from pathlib import Path

    from spikeloop.ppu import programs as ppu_programs
    from spikeloop.ppu.asm import assemble

    extra = [o for o in ("ppu_dmem", "ppu_read_dmem", "ppu_read_synapses")
             if getattr(args, o)]
    if args.ppu is None:
        if extra:
            raise ValueError(f"--{extra[0].replace('_', '-')} needs --ppu (a program)")
        return None
    if args.ppu in ppu_programs.PROGRAMS:
        words = ppu_programs.program(args.ppu, cfg).words
    elif Path(args.ppu).is_file():
        words = assemble(Path(args.ppu).read_text(), cfg).words
    else:
        raise ValueError(f"--ppu {args.ppu!r}: neither an assembly file nor a program of "
                         f"spikeloop/ppu/programs.py ({', '.join(ppu_programs.PROGRAMS)})")
    dmem = []
    for item in args.ppu_dmem:
        index, _, word = item.partition("=")     # no "=": word "" does not parse
        try:
            dmem.append((int(index, 0), int(word, 0)))
        except ValueError:
            raise ValueError(f"--ppu-dmem {item!r}: allowed INDEX=WORD, e.g. 0=30 or "
                             "1=0xff") from None
    return {"words": words, "dmem": dmem, "when": args.ppu_when,
            "read_dmem": args.ppu_read_dmem, "read_synapses": args.ppu_read_synapses,
            "max_cycles": args.ppu_max_cycles}


def _cmd_scenario(args) -> int:
    import numpy as np

    from spikeloop.verify.scenarios import SCENARIOS

    cfg = ChipConfig.preset(args.preset)
    sc = SCENARIOS[args.name](cfg, np.random.default_rng(args.seed))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sc.image.save(out / "image.npz")
    sc.events.save(out / "events.npz")
    print(f"scenario {sc.name} (preset {cfg.name}, seed {args.seed}): {sc.what}")
    print(f"wrote {out / 'image.npz'} and {out / 'events.npz'} "
          f"({sc.events.batch} sample(s), {len(sc.events.table)} input events); "
          f"run it for --steps {sc.n_steps}")
    return 0


def _cmd_calibrate(args) -> int:
    from spikeloop.calibrate import calibrate_main

    print(f"calibrating preset {args.preset}, chip seed {args.chip_seed} (measurement only)")
    report = calibrate_main(args.preset, args.chip_seed, args.out, args.plot, args.residual)
    if args.residual is not None:
        print(f"then {100 * args.residual:g} % of the mismatch put back (--residual): every "
              "setting that fraction of the way back to its nominal value")
    print(f"{'parameter':<13}{'unit':>9}{'spread before':>15}{'after':>12}"
          f"{'after/before':>14}{'required':>10}  verdict")
    for name, p in report["params"].items():
        req = p["required_max_ratio"]
        verdict = "-" if p["ok"] is None else ("ok" if p["ok"] else "FAIL")
        print(f"{name:<13}{p['unit']:>9}{p['std_before']:>15.4g}{p['std_after']:>12.4g}"
              f"{p['ratio']:>14.3f}{'' if req is None else f'<= {req}':>10}  {verdict}")
    print(f"{report['calibration_seconds']:.1f} s; wrote {args.out}"
          + (f" and {args.plot}" if args.plot else ""))
    if args.residual is not None:
        # a what-if: the verdicts say whether the degraded chip would still meet
        # PAPER.md's requirements; that it does not is what was asked for
        print("(--residual: the verdicts compare the degraded chip with PAPER.md's "
              "requirements; the exit status does not depend on them)")
        return 0
    return 0 if report["all_ok"] else 1


def _cmd_train(args) -> int:
    from spikeloop.training.train import TrainSettings, run

    settings = TrainSettings(
        task=args.task, out=args.out, backend=args.backend, preset=args.preset,
        chip_seed=args.chip_seed, chip_file=args.chip, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, spike_reg=args.spike_reg,
        weight_reg=args.weight_reg,
        lr_decay=args.lr_decay, seed=args.seed, run_seed=args.run_seed, hidden=args.hidden,
        train_samples=args.train_samples, test_samples=args.test_samples,
        data_dir=args.data_dir, input_channels=args.input_channels,
        test_every=args.test_every, resume=args.resume, init=args.init,
        threads=args.threads, device=args.device, progress=not args.no_progress)
    try:
        run(settings)
    except KeyboardInterrupt:
        print(f"spikeloop train: interrupted; continue with the same arguments and --resume "
              f"(the last checkpoint is {Path(args.out) / 'checkpoint.pt'})", file=sys.stderr)
        return 130
    return 0


def _add_train(sub) -> None:
    from spikeloop.training import train as T
    from spikeloop.training.tasks import BACKENDS, TASKS

    p = sub.add_parser(
        "train", help="train a spiking network (software, or in the loop on a chip backend)",
        description="Surrogate-gradient training (PAPER.md): software model or in the loop "
                    "on an emulated chip instance. Writes checkpoint.pt every epoch, "
                    "network.pt, results.json, plots and train.log to --out.")
    p.add_argument("task", choices=TASKS, help="mnist (paper), yinyang, shd (needs --data-dir)")
    p.add_argument("--backend", choices=BACKENDS, required=True,
                   help="software: ideal model; fast/cosim: in the loop on the chip")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="chip design variant (chip backends; with software it only sizes "
                        "the network as on that chip)")
    p.add_argument("--chip-seed", type=int, help="which fabricated specimen (chip backends)")
    p.add_argument("--chip", help="calibrated chip file of that specimen (`spikeloop "
                                  "calibrate`); default: calibrate it at the start")
    p.add_argument("--epochs", type=int, default=T.PAPER_EPOCHS,
                   help=f"epochs to train in all (default {T.PAPER_EPOCHS}, the paper's)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--batch-size", type=int, default=T.PAPER_BATCH_SIZE,
                   help=f"default {T.PAPER_BATCH_SIZE}")
    p.add_argument("--lr", type=float,
                   help="Adam learning rate (default: the task's; the paper's 1.5e-3, "
                        "yinyang 5e-3)")
    p.add_argument("--lr-decay", type=float, default=T.PAPER_LR_DECAY,
                   help=f"learning rate factor per epoch (default {T.PAPER_LR_DECAY})")
    p.add_argument("--spike-reg", type=float,
                   help="strength of the mean squared hidden spike count (default: the "
                        "task's; the paper's 5e-4)")
    p.add_argument("--weight-reg", type=float,
                   help="strength of the mean squared hidden weight (default: the task's; "
                        "the paper's 0.1, yinyang 1e-3)")
    p.add_argument("--seed", type=int, default=0,
                   help="initial weights and order of the training samples (default 0)")
    p.add_argument("--run-seed", type=int, default=0,
                   help="chip backends: seed of the chip's temporal noise (default 0)")
    p.add_argument("--hidden", type=int,
                   help="hidden neurons (default per task: mnist 246, yinyang 120 or one "
                        "half's columns, shd 256 or what fits the chip)")
    p.add_argument("--train-samples", type=int,
                   help="train on a stratified subset of this size (default: all)")
    p.add_argument("--test-samples", type=int,
                   help="test on a stratified subset of this size (default: all)")
    p.add_argument("--data-dir", help="full MNIST IDX files, or the SHD HDF5 files")
    p.add_argument("--input-channels", type=int,
                   help="shd: sum neighbouring channels into this many inputs (default 700 "
                        "in software, what fits on a chip)")
    p.add_argument("--test-every", type=int, default=T.PAPER_TEST_EVERY,
                   help=f"test every this many epochs, and after the last (default "
                        f"{T.PAPER_TEST_EVERY}; 0: after the last only)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--init", help="start from the weights of this network.pt (e.g. retrain "
                                  "a network on another chip instance)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: small networks; more threads keep "
                        "subnormal numbers and are slower)")
    p.add_argument("--device", default="cpu",
                   help="fast: the torch device of the chip's emulation, cpu (default), cuda "
                        "or cuda:N (the same bits on either; the network's gradients stay on "
                        "the cpu); may change on --resume")
    p.add_argument("--no-progress", action="store_true", help="no per-batch progress line")
    p.set_defaults(func=_cmd_train)


def _cmd_experiment_mismatch(args) -> int:
    from spikeloop.experiments.mismatch import main_args

    return main_args(args)


def _cmd_replay(args) -> int:
    from spikeloop.training.replay import main_args

    return main_args(args)


def _cmd_ppu_learn(args) -> int:
    from spikeloop.ppu.learn import main_args

    return main_args(args)


def _add_ppu(sub) -> None:
    from spikeloop.ppu import learn as ppu_learn

    p = sub.add_parser("ppu", help="programs of the plasticity processor (PPU)")
    psub = p.add_subparsers(dest="ppu_command", required=True)
    p = psub.add_parser(
        "learn", help="program 4: homeostatic synaptic scaling learned on chip, no host",
        description=ppu_learn.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ppu_learn.add_arguments(p)
    p.set_defaults(func=_cmd_ppu_learn)


def _add_experiment_and_replay(sub) -> None:
    from spikeloop.experiments import mismatch as experiment
    from spikeloop.training import replay

    p = sub.add_parser("experiment", help="the paper's experiments on the emulation")
    esub = p.add_subparsers(dest="experiment", required=True)
    p = esub.add_parser(
        "mismatch", help="in the loop vs software deployed as is vs transfer between chips",
        description=experiment.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    experiment.add_arguments(p)
    p.set_defaults(func=_cmd_experiment_mismatch)
    p = sub.add_parser(
        "replay", help="a network trained on the fast backend, replayed on the co-simulation",
        description=replay.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    replay.add_arguments(p)
    p.set_defaults(func=_cmd_replay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeloop",
        description="Emulate an accelerated analog neuromorphic chip and train on it in the loop.")
    sub = parser.add_subparsers(dest="command", required=True)

    rtl = sub.add_parser("rtl", help="the chip's digital logic: export, area, lint")
    rsub = rtl.add_subparsers(dest="rtl_command", required=True)
    p = rsub.add_parser("export", help="Verilog of the top level and of every component")
    _add_preset(p)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_cmd_rtl_export)
    p = rsub.add_parser("area", help="cell counts per component (yosys synth; stat) as JSON")
    _add_preset(p)
    p.add_argument("--component", help="only this component")
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per yosys run")
    p.set_defaults(func=_cmd_rtl_area)
    p = rsub.add_parser("lint", help="Verilator lint of the exported Verilog")
    _add_preset(p)
    p.set_defaults(func=_cmd_rtl_lint)
    p = rsub.add_parser("addrmap", help="the host configuration bus's address map")
    _add_preset(p)
    p.set_defaults(func=_cmd_rtl_addrmap)

    p = sub.add_parser("config", help="print a preset's ChipConfig as JSON")
    _add_preset(p)
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("run", help="run input events on a chip instance, write Observables")
    p.add_argument("--backend", choices=["reference", "cosim", "fast"], required=True)
    _add_preset(p)
    p.add_argument("--chip-seed", type=int, required=True, help="which fabricated specimen")
    p.add_argument("--chip", help="chip file with its calibration (Chip.save or "
                                  "`spikeloop calibrate`); its settings replace the image's")
    p.add_argument("--image", required=True, help="ConfigImage .npz")
    p.add_argument("--events", required=True, help="InputEvents .npz")
    p.add_argument("--steps", type=int, required=True, help="analog steps per sample")
    p.add_argument("--run-seed", type=int, default=0, help="seed of the temporal noise")
    p.add_argument("--out", required=True, help="Observables .npz to write")
    p.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator")
    p.add_argument("--waves", action="store_true", help="cosim: write FST waveforms")
    p.add_argument("--device", default="cpu",
                   help="fast: the torch device, cpu (default), cuda or cuda:N (the same "
                        "Observables, bit for bit)")
    g = p.add_argument_group("PPU", "a plasticity-processor program run with the job "
                                    "(spikeloop/base/ppu_job.py); its read-back goes into "
                                    "the Observables (ppu)")
    g.add_argument("--ppu", help="an assembly file (docs/ppu.md) or a program of "
                                 "spikeloop/ppu/programs.py: trace, inference, weight_update, "
                                 "learn")
    g.add_argument("--ppu-when", choices=["each_sample", "before"], default="each_sample",
                   help="start it with every sample (default) or once before the samples")
    g.add_argument("--ppu-dmem", action="append", default=[], metavar="INDEX=WORD",
                   help="a data-memory word the host writes first (repeatable)")
    g.add_argument("--ppu-read-dmem", type=int, nargs="+", default=[], metavar="INDEX",
                   help="data-memory words read back after each PPU run")
    g.add_argument("--ppu-read-synapses", action="store_true",
                   help="read every synapse back after each PPU run")
    g.add_argument("--ppu-max-cycles", type=int, default=100_000,
                   help="cycles the host waits for the halt (default 100000)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("scenario", help="write a verification scenario's image and events")
    from spikeloop.verify.scenarios import SCENARIOS

    p.add_argument("name", choices=list(SCENARIOS), help="scenario (spikeloop/verify/scenarios.py)")
    _add_preset(p)
    p.add_argument("--seed", type=int, default=0, help="generator seed (random scenario)")
    p.add_argument("--out", required=True, help="directory for image.npz and events.npz")
    p.set_defaults(func=_cmd_scenario)

    p = sub.add_parser("calibrate", help="calibrate a chip instance by measurement")
    _add_preset(p)
    p.add_argument("--chip-seed", type=int, required=True, help="which fabricated specimen")
    p.add_argument("--out", required=True, help="calibration file to write (.npz)")
    p.add_argument("--plot", help="histogram of the spreads before/after (PNG)")
    p.add_argument("--residual", type=float, default=None, metavar="F",
                   help="what-if: leave fraction F (0..1) of the mismatch, every setting F of "
                        "the way from the calibrated back to the nominal value")
    p.set_defaults(func=_cmd_calibrate)

    _add_train(sub)
    _add_experiment_and_replay(sub)
    _add_ppu(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError) as e:
        print(f"spikeloop: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:        # a tool run failed (yosys, Verilator): says where its log is
        print(f"spikeloop: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
