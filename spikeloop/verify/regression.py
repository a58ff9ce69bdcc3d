"""The scenario regression of `make sim`: every verification scenario
(spikeloop.verify.scenarios.SCENARIOS) on the co-simulated RTL and on the reference
backend and the fast backend, compared observable by observable (the
scoreboard: ``Observables.first_difference``), plus each scenario's own expectations
(``Scenario.expect``).

    python -m spikeloop.verify.regression [--simulator verilator|icarus] [--preset mini]
                                         [--scenario NAME ...]

The chip is ``Chip.calibrated(cfg, chip_seed=1)``, each image
``chip.configure(scenario.image)``, the run seed 1 and the scenarios'
generator ``numpy.random.default_rng(0)`` (as in tests/test_reference_backend.py).
Prints a table (scenario | simulator | cycles | cycles/s | verdict; ``cycles``:
the live cycles of the run protocol, ``sim cycles``: every simulated clock
cycle including the host bus traffic, ``cycles/s``: sim cycles per second of
the simulation's wall time, ``run cycles/s``: live cycles per second of the
running phases, analog bridge included) and exits
non-zero when any scenario differs from the reference, misses an expectation
or fails to run.

With ``SPIKELOOP_FCOV=DIR`` the functional-coverage monitor records every
co-simulated cycle, and the coverage model's database of the run goes into
``DIR`` (spikeloop.verify.fcov).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeloop.backends.fast import run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import ChipConfig
from spikeloop.base.events import Observables
from spikeloop.base.image import ConfigImage
from spikeloop.base.settings import Command, option, tool_main
from spikeloop.cosim.backend import run_cosim, run_readback
from spikeloop.cosim.runner import CosimError
from spikeloop.model.chip import Chip
from spikeloop.verify import fcov
from spikeloop.verify.scenarios import SCENARIOS, Scenario

CHIP_SEED = 1
RUN_SEED = 1
SCENARIO_SEED = 0


@dataclass
class Row:
    scenario: str
    simulator: str
    cycles: int            # live cycles of all samples (Observables.cycles)
    sim_cycles: int        # clock cycles simulated, host bus traffic included
    cycles_per_s: float    # sim_cycles per second of wall time inside the simulation
    run_cycles_per_s: float  # live cycles per second of the running phases (bridge on)
    wall_s: float          # the whole cosim call (simulator start-up included)
    verdict: str

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


def offered_per_node(sc: Scenario) -> np.ndarray:
    """[I, O] input events offered to each crossbar node by the playback: an event
    of link ``l`` reaches every enabled node ``(n_blocks + l, o)`` whose mask and
    target it matches."""
    cfg, img = sc.image.cfg, sc.image
    off = np.zeros((cfg.crossbar_inputs, cfg.crossbar_outputs), dtype=np.int64)
    for _, _, link, label in sc.events.table.tolist():
        i = cfg.n_blocks + link
        for o in range(cfg.crossbar_outputs):
            if img.xbar_enable[i, o] and (label & img.xbar_mask[i, o]) == img.xbar_target[i, o]:
                off[i, o] += 1
    return off


def check_expect(sc: Scenario, obs: Observables) -> str | None:
    """None when ``obs`` shows what ``sc.expect`` asks, else what it misses."""
    for key, want in sc.expect.items():
        if key == "spikes":
            if len(obs.spikes) != want:
                return f"expect spikes == {want}: {len(obs.spikes)} spikes"
        elif key == "spikes_min":
            if len(obs.spikes) < want:
                return f"expect at least {want} spikes: {len(obs.spikes)}"
        elif key == "neuron_fires":
            if want not in obs.spikes[:, 3].tolist():
                return f"expect neuron {want} fires: it does not"
        elif key == "drops":
            drops = int(obs.xbar_drops.sum())
            if want and drops == 0:
                return "expect crossbar drops > 0: none"
            if not want and drops:
                return f"expect no crossbar drops: {drops}"
            # every event offered to an external-input node is taken or dropped
            ext = slice(sc.image.cfg.n_blocks, None)
            offered = offered_per_node(sc)[ext]
            got = (obs.xbar_events.sum(axis=0) + obs.xbar_drops.sum(axis=0))[ext]
            if not np.array_equal(got, offered):
                i, o = (int(x) for x in np.argwhere(got != offered)[0])
                return (f"expect events + drops == offered at node ({sc.image.cfg.n_blocks + i}, "
                        f"{o}): {got[i, o]} != {offered[i, o]}")
        else:
            return f"unknown expectation {key!r} = {want!r} (extend check_expect)"
    return None


def run_scenario(chip: Chip, name: str, simulator: str, *, waves=False) -> Row:
    cfg = chip.cfg
    sc = SCENARIOS[name](cfg, np.random.default_rng(SCENARIO_SEED))
    image = chip.configure(sc.image)
    t0 = time.monotonic()
    try:
        obs = run_cosim(chip, image, sc.events, sc.n_steps, run_seed=RUN_SEED,
                        simulator=simulator, waves=waves)
    except CosimError as e:
        return Row(name, simulator, 0, 0, 0.0, 0.0, time.monotonic() - t0,
                   f"ERROR: {str(e).splitlines()[0]}")
    wall = time.monotonic() - t0
    stats = getattr(obs, "stats", {})
    ref = run_reference(chip, image, sc.events, sc.n_steps, run_seed=RUN_SEED)
    fast = run_fast(chip, image, sc.events, sc.n_steps, run_seed=RUN_SEED)
    diff = obs.first_difference(ref)
    fast_diff = fast.first_difference(obs)
    if diff is not None:
        verdict = f"FAIL: {diff} (cosim != reference; run dir {stats.get('run_dir')})"
    elif fast_diff is not None:
        verdict = f"FAIL: {fast_diff} (fast != cosim)"
    else:
        miss = check_expect(sc, obs)
        verdict = "PASS" if miss is None else f"FAIL: {miss}"
    return Row(name, simulator, int(obs.cycles.sum()), int(stats.get("sim_cycles", 0)),
               float(stats.get("cycles_per_s") or 0.0),
               float(stats.get("live_cycles_per_s") or 0.0), wall, verdict)


def random_image(cfg: ChipConfig, seed: int = 0) -> ConfigImage:
    """Every setting of a ConfigImage drawn over its whole range."""
    return ConfigImage.random(cfg, np.random.default_rng(seed))


def run_readback_row(cfg: ChipConfig, simulator: str) -> Row:
    t0 = time.monotonic()
    try:
        st = run_readback(random_image(cfg), simulator=simulator)
        verdict = "PASS"
    except CosimError as e:
        st, verdict = {"words": 0}, f"FAIL: {str(e).splitlines()[0]}"
    wall = time.monotonic() - t0
    return Row("config_readback", simulator, 0, 2 * st["words"], 2 * st["words"] / wall, 0.0,
               wall, verdict)


def format_table(rows: list[Row]) -> str:
    head = ("scenario", "simulator", "cycles", "sim cycles", "cycles/s", "run cycles/s",
            "wall s", "verdict")
    body = [(r.scenario, r.simulator, str(r.cycles), str(r.sim_cycles),
             f"{r.cycles_per_s:.0f}", f"{r.run_cycles_per_s:.0f}", f"{r.wall_s:.1f}",
             r.verdict) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(out)


@dataclass
class RegressionSettings:
    simulator: str = option("verilator", choices=("verilator", "icarus"),
                            help="the simulator (default verilator)")
    preset: str = option("mini", help="chip design variant, a preset: mini (default) or full")
    scenario: tuple[str, ...] = option((), repeat=True, choices=sorted(SCENARIOS),
                                       metavar="NAME",
                                       help="run only this scenario (repeatable); default: all")
    waves: bool = option(False, help="FST waveforms and membranes.vcd in each run directory "
                                     "(Verilator; default: on when $WAVES=1)")


def regression(s: RegressionSettings) -> int:
    """Run the scenarios (and the configuration read-back) and print the table;
    exit status 1 when any of them failed."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = ChipConfig.preset(s.preset)
    names = list(s.scenario) or list(SCENARIOS)
    t0 = time.monotonic()
    print(f"regression: preset {cfg.name}, chip seed {CHIP_SEED} (calibrating), run seed "
          f"{RUN_SEED}, {len(names)} scenario(s) on {s.simulator}", flush=True)
    chip = Chip.calibrated(cfg, CHIP_SEED)
    fcov_dir = fcov.enabled()
    if fcov_dir:     # functional coverage: the co-simulation monitor records every cycle
        trace_dir = Path(fcov_dir) / "traces" / f"regression-{os.getpid()}"
        fcov.monitor_cosim(cfg, trace_dir)
    rows = []
    for name in names:
        row = run_scenario(chip, name, s.simulator, waves=True if s.waves else None)
        print(f"  {name}: {row.verdict}", flush=True)
        rows.append(row)
    if not s.scenario:
        row = run_readback_row(cfg, s.simulator)
        print(f"  config_readback (every word of a random image written and read back "
              f"through the host bus): {row.verdict}", flush=True)
        rows.append(row)
    print()
    print(format_table(rows))
    if fcov_dir:
        n = fcov.sample_traces(trace_dir)
        path = fcov.export(fcov_dir, "cosim")
        shutil.rmtree(trace_dir)
        print(f"functional coverage: {n} co-simulated cycles sampled into {path}")
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} scenarios passed on {s.simulator} "
          f"({cfg.name}) in {time.monotonic() - t0:.0f} s")
    return 1 if failed else 0


COMMAND = Command((), RegressionSettings, regression,
                  "the scenario regression on the co-simulated RTL", description=__doc__)


if __name__ == "__main__":
    sys.exit(tool_main("python -m spikeloop.verify.regression", COMMAND))
