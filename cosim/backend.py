"""Backend "cosim": the chip's RTL (rtl/top.py, component "top") in Verilator or
Icarus under cocotb, with the analog model in the loop (cosim/bridge.py).

    obs = run_cosim(chip, image, events, n_steps, run_seed=1)
    obs.stats        # build time, simulated cycles, wall time, cycles/s, run directory

Returns the same :class:`~spikeloop.base.events.Observables` as the reference backend
(spikeloop/backends/reference.py), ``backend="cosim"``.  The run protocol is the
one of spikeloop/base/protocol.py; the side inside the simulator is the engine,
cosim/engine.py, started by the cocotb tests of cosim/tests/test_chip_cocotb.py.

The job: this module writes it into the run directory and sets
:data:`ENV_JOB` to the path of its JSON description, which the engine reads
(relative paths start from the JSON file's folder)::

    {"chip": "chip.npz",          # Chip.save format (config, seed, calibration)
     "image": "image.npz",        # ConfigImage.save
     "events": "events.npz",      # InputEvents.save
     "n_steps": 30, "run_seed": 1, "sample_offset": 0,
     "output": "observables.npz", # Observables.save (backend "cosim")
     "stats": "stats.json",       # cycles, wall time, host accesses
     "membranes": false,          # write membranes.vcd/.csv into the run directory
     "write_zeros": true,         # false: write only the image's non-zero words
     "row_events": false,         # true: list every driver activation (Observables)
     "ppu": null}                 # optional: a PPU program (below)

``ppu`` (optional): ``{"words": [...], "dmem": [[index, word], ...], "when":
"before" | "each_sample", "read_dmem": [indices], "read_synapses": bool,
"max_cycles": N}`` (spikeloop/base/ppu_job.py; cosim/engine.py says when the
host starts it and what it reads back); what the host read back of each PPU
run goes to the stats file as ``"ppu"`` (one dict per run: ``status``,
``pc``, ``cycles``, ``out_count``, ``out_drops``, ``out`` as hex strings,
``dmem`` with string keys, ``synapses`` one list of words per half when read,
``holds``: the bridge's held steps [sample, step, mask] for ``each_sample``).
The jobs of :func:`run_ceiling` and :func:`run_readback` hold ``image``,
``n_steps``, ``stats`` and (ceiling only) ``events``.

Files: the build is cached by design hash (cosim/runner.py); each call gets a
run directory ``<build dir>/runs/<time>-<pid>-<n>/`` holding ``job/`` (the
chip, image, events and job description the simulation reads),
``observables.npz``, ``stats.json``, ``sim.log``, ``results.xml`` and, with
``waves`` (Verilator only, see :data:`BUILD_ARGS`), the digital waveform
``dump.fst`` plus ``membranes.vcd`` and ``membranes.csv``: the analog membrane
potentials per step in mV on the same time base (the top level has no port
that could carry them into the simulator's own waveform).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.image import ConfigImage
from spikeloop.base.ppu_job import PpuJob
from spikeloop.cosim import runner
from spikeloop.cosim.runner import CosimError
from spikeloop.model.chip import Chip

TEST_MODULE = "spikeloop.cosim.tests.test_chip_cocotb"
#: environment variable holding the path of the job's JSON description (the
#: engine, cosim/engine.py, imports it from here)
ENV_JOB = "SPIKELOOP_COSIM_JOB"

#: extra compile arguments per simulator.  Icarus: the Verilog that Amaranth's
#: yosys writes is Verilog-2005 and starts every ``always @*`` block at time 0
#: through a ``reg init = 0`` declaration (yosys PR 2273); cocotb compiles with
#: ``-g2012``, under which a declaration initializer makes no event, so blocks
#: whose inputs never change stay X forever (e.g. the synapse drivers of an
#: unused half: X weight sums).  A later ``-g2005`` wins over cocotb's flag.
#: cocotb's Icarus waveform module (``cocotb_iverilog_dump.v``) is SystemVerilog
#: (a ``string``), so waveforms on Icarus are refused until the Verilog is
#: exported with ``write_verilog -sv`` (``always_comb``, which runs at time 0).
#: Verilator: the control file that makes the synapse drivers' signals that the
#: row-activity monitor reads (cosim/monitor.py) reachable through the VPI, and a
#: macro holding a digest of its text (a build is keyed by its arguments: a new
#: text, a new build).
ROW_ACTIVITY_VLT = Path(__file__).with_name("row_activity.vlt")
_VLT_DIGEST = hashlib.sha256(ROW_ACTIVITY_VLT.read_bytes()).hexdigest()[:16]
BUILD_ARGS = {"verilator": (str(ROW_ACTIVITY_VLT), f"-DSPIKELOOP_ROW_ACTIVITY={_VLT_DIGEST}"),
              "icarus": ("-g2005",)}

#: with $SPIKELOOP_VERILATOR_COVERAGE set (to anything but 0), Verilator models
#: are built with line and toggle coverage (another build: the arguments are
#: part of its hash) and every run writes ``coverage.dat`` into its run directory
#: (spikeloop.verify.codecov merges them)
ENV_COVERAGE = "SPIKELOOP_VERILATOR_COVERAGE"
COVERAGE_ARGS = ("--coverage-line", "--coverage-toggle")


#: set (cosim/monitor.py's ENV_MONITOR), the functional-coverage monitor reads
#: internal signals of every block: Verilator models are then built with every
#: signal reachable through the VPI (runner.PUBLIC_ALL; another build, slower)
ENV_FCOV_MONITOR = "SPIKELOOP_FCOV_MONITOR"


def build_args(simulator: str) -> tuple[str, ...]:
    """:data:`BUILD_ARGS` of ``simulator``, plus the coverage options when asked
    for, plus every signal public while the functional-coverage monitor runs."""
    args = BUILD_ARGS[simulator]
    if simulator == "verilator" and os.environ.get(ENV_COVERAGE, "0") not in ("", "0"):
        args += COVERAGE_ARGS
    if simulator == "verilator" and os.environ.get(ENV_FCOV_MONITOR):
        args += (runner.PUBLIC_ALL,)
    return args

log = logging.getLogger("spikeloop.cosim")
_counter = itertools.count()


#: builds of this process: the Verilog of the imported rtl/ modules cannot change
#: within a process, so the export (~90 s for the full preset) and its hashing
#: are done once per (config, simulator, waves, build root)
_builds: dict = {}


def _build(cfg, simulator: str, waves, build_root,
           baseline: bool = False) -> tuple[runner.BuildInfo, float, bool]:
    """(build, seconds this call took, whether it reused a finished build);
    ``baseline``: runner.build's comparison build."""
    t0 = time.monotonic()
    root = str(build_root or runner.default_build_root())
    key = (cfg, simulator, runner._waves_format(waves), root, build_args(simulator), baseline)
    info = _builds.get(key)
    if info is not None and (info.build_dir / runner.STAMP).is_file():
        return info, time.monotonic() - t0, True
    info = runner.build(cfg, "top", simulator, waves, build_args=build_args(simulator),
                        build_root=build_root, baseline=baseline)
    _builds[key] = info
    return info, info.seconds, info.cached


def run_cosim(chip: Chip, image: ConfigImage, events: InputEvents, n_steps: int, *,
              run_seed: int = 0, sample_offset: int = 0, simulator: str = "verilator",
              waves: bool | str | None = False, write_zeros: bool = False,
              build_root=None, ppu: dict | None = None,
              row_events: bool = False) -> Observables:
    """Run ``events`` on the co-simulated chip; see the module docstring.

    ``waves``: False (default), True/"fst" or "vcd" (cosim.runner.build; None
    follows $WAVES).  ``write_zeros``: write every word of the image through
    the host bus (HostBusDriver.write_image); by default only its non-zero
    words, since every register resets to 0 and every memory powers up at 0
    (a full preset's image is ~138k words, ~90 s of simulated host writes,
    mostly zero synapses).  Raises :class:`~spikeloop.cosim.runner.CosimError` (its
    message names the log) when the build or the simulation fails.  The result
    carries ``stats`` (a dict), also logged at INFO.

    ``ppu``: a PPU program to run with the job (spikeloop/base/ppu_job.py
    describes it); what the host read back of each PPU run is ``obs.ppu``,
    and ``stats["ppu"]`` holds the raw read-back with the analog bridge's held
    steps (sample, step, refractory mask) per run.

    ``row_events``: list every driver activation in ``Observables.row_events``
    (the row-activity monitor, cosim/monitor.py)."""
    cfg = chip.cfg
    if n_steps < 1:
        raise ValueError(f"n_steps = {n_steps}; allowed: >= 1")
    if image.cfg != cfg:
        raise ValueError(f"image is for preset {image.cfg.name!r}, chip is {cfg.name!r}")
    if events.cfg != cfg:
        raise ValueError(f"events are for preset {events.cfg.name!r}, chip is {cfg.name!r}")
    t0 = time.monotonic()
    if simulator not in BUILD_ARGS:
        raise ValueError(f"simulator={simulator!r}; allowed: {', '.join(BUILD_ARGS)}")
    if simulator == "icarus" and runner._waves_format(waves) is not None:
        raise CosimError(
            "waveforms on Icarus are not available: cocotb's dump module needs -g2012, under "
            "which the exported Verilog's always @* blocks do not start at time 0 (X on the "
            "sums of an unused half); use simulator='verilator' for waveforms")
    info, build_s, cached = _build(cfg, simulator, waves, build_root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = info.build_dir / "runs" / f"{stamp}-{os.getpid()}-chip{next(_counter)}"
    jdir = run_dir / "job"
    jdir.mkdir(parents=True, exist_ok=True)
    chip.save(jdir / "chip.npz")
    image.save(jdir / "image.npz")
    events.save(jdir / "events.npz")
    out, stats_file = run_dir / "observables.npz", run_dir / "stats.json"
    job = {"chip": "chip.npz", "image": "image.npz", "events": "events.npz",
           "n_steps": int(n_steps), "run_seed": int(run_seed),
           "sample_offset": int(sample_offset), "output": str(out), "stats": str(stats_file),
           "membranes": bool(info.waves), "write_zeros": bool(write_zeros),
           "row_events": bool(row_events)}
    ppu = PpuJob.of(cfg, ppu)
    if ppu is not None:
        job["ppu"] = ppu.as_dict()
    (jdir / "job.json").write_text(json.dumps(job, indent=2))
    t1 = time.monotonic()
    res = runner.run_tests(info, TEST_MODULE, testcase="test_run_job",
                           extra_env={ENV_JOB: str(jdir / "job.json")}, seed=int(run_seed),
                           run_dir=run_dir)
    run_s = time.monotonic() - t1
    if not out.is_file():
        raise CosimError(f"the cosim run passed but wrote no observables ({out}); "
                         f"log: {res.log}")
    obs = Observables.load(out)
    stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    stats.update({
        "build_s": build_s, "build_cached": cached, "build_dir": str(info.build_dir),
        "run_dir": str(run_dir), "log": str(res.log), "simulator_wall_s": run_s,
        "total_wall_s": time.monotonic() - t0,
        "waves": str(res.waves) if res.waves else None,
        "membranes": str(run_dir / "membranes.vcd") if info.waves else None,
    })
    obs.stats = stats
    if ppu is not None:
        obs.ppu = [_ppu_result(cfg, r, ppu) for r in stats["ppu"]]
    log.info("cosim %s %s: %d samples, %d cycles simulated (%d live) in %.2f s in the "
             "test, %.0f cycles/s; simulator process %.2f s; build %s %.1f s; %s",
             simulator, cfg.name, events.batch, stats.get("sim_cycles", 0),
             stats.get("live_cycles", 0), stats.get("test_wall_s", 0.0),
             stats.get("cycles_per_s") or 0.0, run_s,
             "cached" if cached else "built", build_s, run_dir)
    return obs


def _ppu_result(cfg, r: dict, job: PpuJob) -> dict:
    """The host's read-back of a PPU run (stats["ppu"] of the engine) as
    spikeloop/base/ppu_job.py's result dict."""
    res = {"status": r["status"], "pc": r["pc"], "cycles": r["cycles"],
           "out": [int(v, 16) for v in r["out"]], "out_drops": r["out_drops"],
           "dmem": {int(k): int(v) for k, v in r["dmem"].items()}}
    if job.read_synapses:
        res["weights"], res["labels"] = synapse_arrays(cfg, r["synapses"])
    return res


def synapse_arrays(cfg, words) -> tuple[np.ndarray, np.ndarray]:
    """(weights, labels) [halves, rows, columns] of the synapse words the host
    read back (one list per half, in address order)."""
    w = np.asarray(words, dtype=np.int64).reshape(cfg.n_halves, cfg.rows_per_half,
                                                  cfg.columns_per_half)
    return w & ((1 << cfg.weight_bits) - 1), (w >> cfg.weight_bits) & ((1 << cfg.label_bits) - 1)


def _run_job(cfg, image: ConfigImage, events: InputEvents | None, n_steps: int,
             testcase: str, simulator: str, build_root, baseline: bool = False) -> dict:
    """Run one of the job-driven cocotb tests that report only stats."""
    info, build_s, cached = _build(cfg, simulator, False, build_root, baseline)
    run_dir = info.build_dir / "runs" / (
        f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{testcase}{next(_counter)}")
    jdir = run_dir / "job"
    jdir.mkdir(parents=True, exist_ok=True)
    image.save(jdir / "image.npz")
    job = {"image": "image.npz", "n_steps": int(n_steps), "stats": str(run_dir / "stats.json")}
    if events is not None:
        events.save(jdir / "events.npz")
        job["events"] = "events.npz"
    (jdir / "job.json").write_text(json.dumps(job, indent=2))
    res = runner.run_tests(info, TEST_MODULE, testcase=testcase,
                           extra_env={ENV_JOB: str(jdir / "job.json")}, run_dir=run_dir)
    stats_file = run_dir / "stats.json"
    if not stats_file.is_file():
        raise CosimError(f"{testcase} wrote no stats ({stats_file}); log: {res.log}")
    stats = json.loads(stats_file.read_text())
    stats.update({"log": str(res.log), "build_s": build_s, "build_cached": cached,
                  "build_dir": str(info.build_dir)})
    return stats


def run_ceiling(chip: Chip, image: ConfigImage, events: InputEvents, n_steps: int, *,
                simulator: str = "verilator", build_root=None,
                baseline: bool = False) -> dict:
    """The same build, image, input events and running cycles as
    :func:`run_cosim`, without the analog bridge (no Python on any running
    cycle): the speed ceiling.  Returns its stats (``live_cycles_per_s``).
    ``baseline``: on the comparison build of runner.build (Verilator's and
    cocotb's defaults) instead."""
    return _run_job(chip.cfg, image, events, n_steps, "test_ceiling_job", simulator,
                    build_root, baseline)


def run_readback(image: ConfigImage, *, simulator: str = "verilator", build_root=None) -> dict:
    """Write every word of ``image`` through the top's host bus and read it back;
    raises CosimError (naming the log) on any difference."""
    return _run_job(image.cfg, image, None, 1, "test_readback_job", simulator, build_root)


def load_run(run_dir: str | os.PathLike) -> Observables:
    """The Observables of a finished run directory (with ``stats`` when present)."""
    run_dir = Path(run_dir)
    obs = Observables.load(run_dir / "observables.npz")
    stats_file = run_dir / "stats.json"
    obs.stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    return obs
