"""Mutation testing of the RTL: would the tests catch a real bug?

Each mutant of :data:`MUTANTS` is one small change to the Amaranth design (a
comparison flipped, an off-by-one in a FIFO's full flag, a counter that wraps
instead of saturating, a priority order reversed, ...).  For each, the design
package is copied into a temporary directory, the one change is made there
(``rtl/`` itself is never touched), and the RTL tests run against the copy in
a fresh Python process whose ``spikeloop.rtl`` package points at it.  The
mutant is *killed* when a test fails (the first failing test is recorded),
*survived* when every test passes.  Tests run first on the mutated block's own
test file, then, for a mutant that survives them, on the rest of the default
RTL tier (top level and PPU included).  Hypothesis runs derandomized, so a
mutant's verdict is reproducible.

    python -m spikeloop.verify.mutate                     # every mutant
    python -m spikeloop.verify.mutate --mutant arb-fifo-full-early --mutant ...

The results go to ``build/mutate/results-<time>-<pid>.json`` (written
atomically, never over an earlier file), a table to stdout; the exit status is
1 when a mutant survived that is not explained in :data:`EQUIVALENT`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from spikeloop.base.settings import Command, option, tool_main
from spikeloop.rtl.export import ENV_EXPORT_CACHE
from spikeloop.verify.table import text_table

REPO = Path(__file__).resolve().parents[2]
RTL = REPO / "rtl"

#: the default RTL tier (pytest marker ``rtl``, without ``slow``): every block's
#: file, the top level, the PPU and the directed coverage closure
ALL_TESTS = ("tests/test_rtl_arbiter.py", "tests/test_rtl_crossbar.py",
             "tests/test_rtl_synapse_drivers.py", "tests/test_rtl_synapse_memory.py",
             "tests/test_rtl_neuron_backend.py", "tests/test_rtl_analog_boundary.py",
             "tests/test_rtl_playback.py", "tests/test_rtl_recorder.py",
             "tests/test_rtl_adc_control.py", "tests/test_rtl_hostbus.py",
             "tests/test_rtl_top.py", "tests/test_ppu_rtl.py", "tests/test_rtl_closure.py",
             "tests/test_rtl_coverage_hostbus.py", "tests/test_rtl_coverage_top.py")

#: the test file(s) of each RTL file (run first: they kill most mutants in seconds)
OWN_TESTS = {
    "arbiter.py": "tests/test_rtl_arbiter.py",
    "crossbar.py": "tests/test_rtl_crossbar.py",
    "common.py": "tests/test_rtl_crossbar.py",
    "synapse_drivers.py": "tests/test_rtl_synapse_drivers.py",
    "synapse_memory.py": "tests/test_rtl_synapse_memory.py",
    "neuron_backend.py": "tests/test_rtl_neuron_backend.py",
    "analog_boundary.py": "tests/test_rtl_analog_boundary.py",
    "playback.py": "tests/test_rtl_playback.py",
    "recorder.py": "tests/test_rtl_recorder.py",
    "adc_control.py": "tests/test_rtl_adc_control.py",
    "hostbus.py": ("tests/test_rtl_hostbus.py", "tests/test_rtl_coverage_hostbus.py"),
    "top.py": ("tests/test_rtl_top.py", "tests/test_rtl_coverage_top.py"),
    "ppu.py": "tests/test_ppu_rtl.py",
}


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str          # below rtl/
    old: str           # text replaced (must occur exactly once)
    new: str
    what: str


M = Mutant
MUTANTS: tuple[Mutant, ...] = (
    # arbiter
    M("arb-fifo-full-ignored", "arbiter.py", "granted.eq(Mux(fifo.w_rdy, lowest, 0))",
      "granted.eq(lowest)", "a grant into a full FIFO (its ready flag ignored)"),
    M("arb-priority-reversed", "arbiter.py", "lowest.eq(pending & (~pending + 1))",
      "lowest.eq(reduce(or_, [Mux(pending[j] & ~(pending >> (j + 1)).any(), 1 << j, 0) "
      "for j in range(p)]))",
      "highest index first instead of lowest"),
    M("arb-drops-wrap", "arbiter.py",
      "self.drops.eq(Mux(total > drops_max, drops_max, total))",
      "self.drops.eq(total[:cfg.counter_bits])", "drop counter wraps instead of saturating"),
    M("arb-drop-granted-counted", "arbiter.py", "dropped.eq(self.spikes & pending & ~granted)",
      "dropped.eq(self.spikes & pending)",
      "a spike of the neuron granted in this cycle counted as a drop"),
    M("arb-clear-keeps-pending", "arbiter.py",
      "m.d.sync += [pending.eq(0), self.drops.eq(0)]", "m.d.sync += [self.drops.eq(0)]",
      "clear leaves the pending spikes"),
    M("arb-payload-not-gated", "arbiter.py",
      "self.events.payload.eq(Mux(fifo.r_rdy, fifo.r_data, 0))",
      "self.events.payload.eq(fifo.r_data)", "payload not 0 while valid is low"),
    # crossbar
    M("xbar-full-one-early", "crossbar.py", "full.eq(level == depth)",
      "full.eq(level >= depth - 1)", "FIFO full flag one entry early"),
    M("xbar-mask-ignored", "crossbar.py",
      "& ((labels[i] & self.mask[n]) == self.target[n]))",
      "& (labels[i] == self.target[n]))", "the node's mask ignored"),
    M("xbar-enable-ignored", "crossbar.py", "take.eq(self.inputs[i].valid & self.enable[n]",
      "take.eq(self.inputs[i].valid", "the node's enable bit ignored"),
    M("xbar-events-wrap", "crossbar.py",
      "with m.If(push & (self.event_count[n] != cmax)):", "with m.If(push):",
      "event counter wraps instead of saturating"),
    M("xbar-drop-not-counted", "crossbar.py",
      "with m.If(take & full & (self.drop_count[n] != cmax)):",
      "with m.If(take & full & (self.drop_count[n] == cmax)):", "drops never counted"),
    M("xbar-hold-released", "crossbar.py", "            with m.If(locked):\n",
      "            with m.If(locked & 0):\n",
      "a grant that waits for ready is not held"),
    M("rr-no-rotation", "common.py", "m.d.comb += after[i].eq(last < i if i else 0)",
      "m.d.comb += after[i].eq(0)", "round robin degenerates to fixed priority"),
    # synapse drivers
    M("drv-mask-ignored", "synapse_drivers.py",
      "((row_select ^ self.select[d]) & self.mask[d]) == 0)",
      "(row_select ^ self.select[d]) == 0)", "row-select mask ignored"),
    M("drv-select-bit-ignored", "synapse_drivers.py",
      "((row_select ^ self.select[d]) & self.mask[d]) == 0)",
      "((row_select ^ self.select[d]) & self.mask[d] & ~1) == 0)",
      "the row select's lowest bit ignored"),
    M("drv-ready-early", "synapse_drivers.py", "bus.ready.eq(remaining == 0),",
      "bus.ready.eq(1),", "an event with several drivers released after its first row"),
    M("drv-unmatched-wrap", "synapse_drivers.py",
      "with m.If((pending == 0) & (match == 0) & (count != counter_max)):",
      "with m.If((pending == 0) & (match == 0)):", "unmatched counter wraps"),
    M("drv-sign-swapped", "synapse_drivers.py",
      "self.signs[2 * b].eq(self.row_sign[2 * d]),",
      "self.signs[2 * b].eq(self.row_sign[2 * d + 1]),", "even row takes the odd row's sign"),
    # synapse memory
    M("syn-label-ignored", "synapse_memory.py",
      "Mux(hit_row_sig & (syn.label == port.address), syn.weight, 0))",
      "Mux(hit_row_sig, syn.weight, 0))", "synapse label not compared"),
    M("syn-label-bit-ignored", "synapse_memory.py",
      "Mux(hit_row_sig & (syn.label == port.address), syn.weight, 0))",
      "Mux(hit_row_sig & (syn.label[1:] == port.address[1:]), syn.weight, 0))",
      "a label bit ignored"),
    M("syn-host-wins", "synapse_memory.py", "with m.If(ppu_writes):",
      "with m.If(ppu_writes & ~self.host_we):",
      "a host write wins over the PPU's row write"),
    # neuron back end
    M("nb-refractory-one-short", "neuron_backend.py",
      "m.d.sync += count.eq(self.refractory[i])",
      "m.d.sync += count.eq(self.refractory[i] - (self.refractory[i] != 0))",
      "refractory period one tick short"),
    M("nb-spike-while-refractory", "neuron_backend.py",
      "accepted.eq(self.spike_in[i] & self.enable[i] & ~active)",
      "accepted.eq(self.spike_in[i] & self.enable[i])", "spikes accepted while refractory"),
    M("nb-prescale-off-by-one", "neuron_backend.py",
      "tick_mask.eq((Const(1, w + 1) << self.prescale) - 1)",
      "tick_mask.eq((Const(1, w + 1) << (self.prescale + 1)) - 1)",
      "prescaler ticks half as often"),
    M("nb-clear-keeps-prescaler", "neuron_backend.py",
      "m.d.sync += prescale_count.eq(0)\n", "m.d.sync += prescale_count.eq(prescale_count)\n",
      "clear does not restart the prescaler"),
    # analog boundary
    M("ab-inh-as-exc", "analog_boundary.py",
      "is_inh[p].eq(sign == RowSign.INH.value)]", "is_inh[p].eq(0)]",
      "inhibitory rows never summed"),
    M("ab-step-one-long", "analog_boundary.py", "m.d.comb += last.eq(self.phase == n_steps - 1)",
      "m.d.comb += last.eq(self.phase >= n_steps)", "analog step one cycle long"),
    # playback
    M("pb-late-ge", "playback.py", "take & (self.time > head.time) & (self.late != cmax)",
      "take & (self.time >= head.time) & (self.late != cmax)", "on-time entries counted late"),
    M("pb-due-early", "playback.py", "due.eq(active & (self.time >= head.time)),",
      "due.eq(active & (self.time + 1 >= head.time)),", "entries released a cycle early"),
    M("pb-count-off-by-one", "playback.py", "active = ptr < n_play", "active = ptr <= n_play",
      "one entry more than count played"),
    # recorder
    M("rec-full-off-by-one", "recorder.py", "full = self.count == depth",
      "full = self.count == depth - 1", "record memory full one entry early"),
    M("rec-drops-wrap", "recorder.py", "with m.Elif(self.drops != cmax):", "with m.Else():",
      "record drops wrap"),
    M("rec-writes-in-clear", "recorder.py", "wr.en.eq(take & ~full & ~self.clear),",
      "wr.en.eq(take & ~full),", "an event written in a clear cycle"),
    # ADC control
    M("adc-phase-gt", "adc_control.py", "due.eq((self.period != 0) & (phase + 1 >= self.period)),",
      "due.eq((self.period != 0) & (phase + 1 > self.period)),", "sampling period one cycle long"),
    M("adc-overflow-wrap", "adc_control.py",
      "with m.If(self.sample & full & (self.overflow != overflow_max)):",
      "with m.If(self.sample & full):", "ADC overflow counter wraps"),
    M("adc-range-check", "adc_control.py", "in_range_q.eq(self.host_addr < depth * n)",
      "in_range_q.eq(1)", "out-of-range host reads not zeroed"),
    # host bus
    M("hb-addr-one-word-off", "hostbus.py",
      "m.d.comb += offset.eq(self.addr[:size_bits])",
      "m.d.comb += offset.eq(self.addr[:size_bits] + 1)", "registers decoded one word off"),
    M("hb-readonly-writable", "hostbus.py", """            if not r.writable:
                with m.If(in_range & self.we):
                    m.d.comb += bad.eq(1)""", """            if not r.writable:
                pass""", "writes to read-only regions not counted as bad"),
    M("hb-bad-access-wrap", "hostbus.py",
      "with m.If(bad & (self.bad_access != (1 << cfg.counter_bits) - 1)):",
      "with m.If(bad):", "bad-access counter wraps"),
    M("hb-range-check", "hostbus.py", "m.d.comb += in_range.eq(hit & (offset < r.count * r.words))",
      "m.d.comb += in_range.eq(hit)", "unmapped words of a region decoded as mapped"),
    # PPU
    M("ppu-sat-s-removed", "ppu.py",
      "    return Mux(x > hi, hi, Mux(x < lo, lo, x))[:w]", "    return x[:w]",
      "signed saturation removed"),
    M("ppu-sat-u-floor", "ppu.py", "        x = Mux(x < 0, 0, x)", "        x = x",
      "unsigned saturation has no floor at 0"),
    M("ppu-blt-unsigned", "ppu.py", "lt, ltu = ra == rb, rb.as_signed() < ra.as_signed(), rb < ra",
      "lt, ltu = ra == rb, rb < ra, rb < ra", "signed branch compares unsigned"),
    M("ppu-halt-ignored", "ppu.py",
      "                with m.If(d.halting):\n"
      "                    m.d.sync += [running.eq(0), self.halted.eq(1)]",
      "                with m.If(d.is_['halt']):\n"
      "                    m.d.sync += [running.eq(0), self.halted.eq(1)]",
      "an undefined instruction does not halt"),
    M("ppu-stop-ignored", "ppu.py",
      "            with m.If(self.stop):\n"
      "                m.d.sync += [running.eq(0), phase.eq(0)]",
      "            with m.If(self.stop & d.last):\n"
      "                m.d.sync += [running.eq(0), phase.eq(0)]",
      "stop waits for the instruction's last cycle"),
    M("ppu-cycles-wrap", "ppu.py", "cycles.eq(Mux(cycles == cmax, cmax, cycles + 1))",
      "cycles.eq(cycles + 1)", "cycle counter wraps"),
    M("ppu-r0-writable", "ppu.py",
      "                if i:\n                    with m.If(d.fa == i):",
      "                if True:\n                    with m.If(d.fa == i):", "r0 writable"),
    M("ppu-host-write-while-running", "ppu.py", "wpi.en.eq(host_ok & self.host_imem_we),",
      "wpi.en.eq(self.host_imem_we),", "host writes the instruction memory while running"),
    # top level
    M("top-merge-dropped", "top.py", "m.d.comb += self.neuron_merge.eq(hb.neuron_merge.as_value())",
      "m.d.comb += self.neuron_merge.eq(0)", "merge switches never set"),
)

#: survivors no test can kill, by name, with the reason
EQUIVALENT: dict[str, str] = {
    "ppu-cycles-wrap": "the PPU's 32-bit cycle counter saturates only after 2**32 - 1 "
                       "cycles (34 s of chip time at 125 MHz): no simulation reaches it, "
                       "so wrapping and saturating are indistinguishable in any test",
}


@dataclass
class Result:
    name: str
    file: str
    what: str
    verdict: str           # killed | survived | error
    killed_by: str
    tests_run: list[str]
    seconds: float


def bootstrap(copy: Path) -> str:
    """The Python a mutant's test process starts with: spikeloop.rtl from ``copy``;
    hypothesis derandomized and without shrinking (a verdict needs one failing
    example, not the smallest): the profile is loaded by ``--hypothesis-profile``,
    after the tests' conftest has loaded its own."""
    return (f"import sys, spikeloop.rtl as r; r.__path__[:] = [{str(copy)!r}]; "
            "import hypothesis as h; "
            "h.settings.register_profile('mutate', derandomize=True, deadline=None, "
            "phases=[h.Phase.explicit, h.Phase.reuse, h.Phase.generate]); "
            "import pytest; sys.exit(pytest.main(sys.argv[1:]))")


def _run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, str]:
    """(verdict, first failing test) of ``tests`` against the mutated package."""
    env = dict(os.environ, CI="true", PYTHONDONTWRITEBYTECODE="1")
    env.pop("SPIKELOOP_FCOV", None)
    # the mutant's exports apart from the Verilog cache of the unmutated design
    env[ENV_EXPORT_CACHE] = str(copy.parent / "verilog-cache")
    cmd = [sys.executable, "-c", bootstrap(copy), "-q", "-x", "-rf", "-p", "no:cacheprovider",
           "-o", "addopts=", "-m", "not slow", "--hypothesis-profile=mutate", *tests]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed", "timeout (the mutant hangs the simulation)"
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return "survived", ""
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
    if proc.returncode == 1 and m:
        return "killed", m.group(1)
    if m:
        return "killed", m.group(1)
    return "error", out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}"


def apply(mutant: Mutant, dest: Path) -> Path:
    """Copy rtl/ into ``dest`` and make the mutant's change there."""
    copy = dest / "rtl"
    shutil.copytree(RTL, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / mutant.file
    text = path.read_text()
    n = text.count(mutant.old)
    if n != 1:
        raise ValueError(f"mutant {mutant.name}: its text occurs {n} times in rtl/{mutant.file}"
                         " (must be exactly once)")
    path.write_text(text.replace(mutant.old, mutant.new))
    return copy


class Control:
    """The unmutated copy must pass the tests a mutant is judged by, or no verdict
    means anything: each set of test files is run once on it, when first needed."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.passed: set[tuple[str, ...]] = set()

    def check(self, tests: list[str]) -> None:
        key = tuple(sorted(tests))
        if key in self.passed:
            return
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="mutant-control-") as tmp:
            copy = Path(tmp) / "rtl"
            shutil.copytree(RTL, copy, ignore=shutil.ignore_patterns("__pycache__"))
            verdict, by = _run_tests(copy, list(tests), self.timeout)
        if verdict != "survived":
            raise RuntimeError(f"the unmutated design fails the RTL tests ({by}): "
                               "fix that first")
        print(f"  control (no mutation): {len(tests)} test file(s) pass "
              f"({time.monotonic() - t0:.0f} s)", flush=True)
        self.passed.add(key)


def run_mutant(mutant: Mutant, timeout: float, control: Control) -> Result:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        copy = apply(mutant, Path(tmp))
        own = OWN_TESTS[mutant.file]
        own = [own] if isinstance(own, str) else list(own)
        stages = [own, [t for t in ALL_TESTS if t not in own]]
        ran: list[str] = []
        verdict, by = "survived", ""
        for tests in stages:
            control.check(tests)
            ran += tests
            verdict, by = _run_tests(copy, tests, timeout)
            if verdict != "survived":
                break
    return Result(mutant.name, mutant.file, mutant.what, verdict, by, ran,
                  round(time.monotonic() - t0, 1))


def check_catalogue() -> None:
    """Every mutant's text occurs exactly once in the current rtl/."""
    names = set()
    for mt in MUTANTS:
        if mt.name in names:
            raise ValueError(f"mutant {mt.name} twice in the catalogue")
        names.add(mt.name)
        n = (RTL / mt.file).read_text().count(mt.old)
        if n != 1:
            raise ValueError(f"mutant {mt.name}: its text occurs {n} times in rtl/{mt.file}")


def format_table(results: list[Result]) -> str:
    rows = [("mutant", "file", "verdict", "killed by", "s")]
    rows += [(r.name, r.file, r.verdict, r.killed_by or EQUIVALENT.get(r.name, "-"),
              f"{r.seconds:.0f}") for r in results]
    return text_table(rows)


@dataclass
class MutateSettings:
    mutant: tuple[str, ...] = option((), repeat=True, metavar="NAME",
                                     help="run only this mutant (repeatable); default: all")
    timeout: float = option(900.0, help="seconds one test run of a mutant may take "
                                        "(a mutant that hangs the simulation is killed)")
    out: str = option("build/mutate", help="directory of the results files")
    list: bool = option(False, help="list the catalogue and exit")


def mutate(s: MutateSettings) -> int:
    check_catalogue()
    by_name = {mt.name: mt for mt in MUTANTS}
    for n in s.mutant:
        if n not in by_name:
            raise ValueError(f"--mutant {n}: not in the catalogue; `--list` lists them")
    if s.list:
        for mt in MUTANTS:
            print(f"{mt.name:30s} rtl/{mt.file:20s} {mt.what}")
        return 0
    chosen = [by_name[n] for n in s.mutant] or list(MUTANTS)
    print(f"mutation run: {len(chosen)} of {len(MUTANTS)} mutants; tests derandomized "
          f"(hypothesis, no shrinking); python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
          flush=True)
    t0 = time.monotonic()
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"results-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    print(f"results (after each mutant): {path}", flush=True)
    control = Control(s.timeout)
    results = []
    for mt in chosen:
        r = run_mutant(mt, s.timeout, control)
        print(f"  {mt.name}: {r.verdict}{' by ' + r.killed_by if r.killed_by else ''} "
              f"({r.seconds:.0f} s)", flush=True)
        results.append(r)
        _write(path, results, len(chosen), time.monotonic() - t0)
    wall = time.monotonic() - t0
    killed = sum(r.verdict == "killed" for r in results)
    equivalent = [r for r in results if r.verdict == "survived" and r.name in EQUIVALENT]
    survived = [r for r in results if r.verdict == "survived" and r.name not in EQUIVALENT]
    errors = [r for r in results if r.verdict == "error"]
    score = 100.0 * killed / max(1, len(results) - len(equivalent))
    print()
    print(format_table(results))
    print(f"\nmutation score: {killed} of {len(results) - len(equivalent)} non-equivalent "
          f"mutants killed ({score:.1f} %); {len(equivalent)} equivalent, {len(survived)} "
          f"survived, {len(errors)} errors; {wall:.0f} s")
    _write(path, results, len(chosen), wall)
    print(f"results: {path}")
    return 1 if survived or errors else 0


def _write(path: Path, results: list[Result], chosen: int, wall: float) -> None:
    """The results so far (atomically; the file of this run only)."""
    killed = sum(r.verdict == "killed" for r in results)
    judged = len([r for r in results if r.name not in EQUIVALENT or r.verdict == "killed"])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({
        "complete": len(results) == chosen, "mutants_chosen": chosen,
        "mutants_run": len(results), "killed": killed,
        "score_percent": round(100.0 * killed / max(1, judged), 2),
        "equivalent": EQUIVALENT, "wall_s": round(wall, 1),
        "results": [asdict(r) for r in results]}, indent=2))
    os.replace(tmp, path)


COMMAND = Command((), MutateSettings, mutate, "mutation testing of the RTL",
                  description=__doc__)


if __name__ == "__main__":
    sys.exit(tool_main("python -m spikeloop.verify.mutate", COMMAND))
