"""A cocotb monitor of the co-simulated chip for functional coverage.

With ``SPIKELOOP_FCOV_MONITOR`` naming a JSON file ``{"signals": [...],
"config": {...}, "out": DIR}`` (written by spikeloop.verify.fcov, which knows
which signals its coverage model reads), :func:`start` samples those signals of
the DUT (paths below the top level, e.g. ``arbiter0.fifo.level``: the RTL's own
ports and named internal signals) in ``ReadOnly`` of every clock cycle, and
writes them to ``DIR/<pid>-<n>.fcov.jsonl``: a header line (signals, config),
then one line per run of cycles with the same values (``{"d": [[index, value],
...], "n": cycles}``: the values that changed, the cycles they held).  The
coverage model replays that file (``fcov.sample_traces``).  Without the
variable nothing is started and the co-simulation runs at its usual speed.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

ENV_MONITOR = "SPIKELOOP_FCOV_MONITOR"
_files = itertools.count()


def _handle(dut, path: str):
    h = dut
    for part in path.split("."):
        h = getattr(h, part)
    return h


def _int(handle) -> int:
    v = handle.value
    try:
        return int(v)
    except ValueError:        # X or Z bits (before reset): as 0, like amaranth.sim's reset
        return int(str(v).replace("x", "0").replace("X", "0").replace("z", "0")
                   .replace("Z", "0"), 2)


class Monitor:
    def __init__(self, dut, spec: dict):
        self.names = list(spec["signals"])
        missing = []
        self.handles = []
        for name in self.names:
            try:
                self.handles.append(_handle(dut, name))
            except AttributeError:
                missing.append(name)
        if missing:
            raise RuntimeError(f"functional-coverage monitor: the DUT has no signal "
                               f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        out = Path(spec["out"])
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f"{os.getpid()}-{next(_files)}.fcov.jsonl"
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.file = open(self.tmp, "w")        # noqa: SIM115 (closed in stop())
        self.file.write(json.dumps({"signals": self.names, "config": spec["config"]}) + "\n")
        self.clk = dut.clk
        self.task = None
        self.cycles = 0

    async def run(self) -> None:
        prev = [None] * len(self.handles)
        held = 0
        pending: list = []
        while True:
            await RisingEdge(self.clk)
            await ReadOnly()
            now = [_int(h) for h in self.handles]
            delta = [[i, x] for i, (x, p) in enumerate(zip(now, prev, strict=True)) if x != p]
            self.cycles += 1
            if delta or held == 0:
                if held:
                    self.file.write(json.dumps({"d": pending, "n": held}) + "\n")
                pending, held = delta, 1
                prev = now
            else:
                held += 1
            self._pending, self._held = pending, held

    def stop(self) -> Path:
        if self.task is not None:
            self.task.cancel()
        pending, held = getattr(self, "_pending", []), getattr(self, "_held", 0)
        if held:
            self.file.write(json.dumps({"d": pending, "n": held}) + "\n")
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path


def start(dut) -> Monitor | None:
    """Start the monitor when $SPIKELOOP_FCOV_MONITOR is set; else None."""
    spec_path = os.environ.get(ENV_MONITOR)
    if not spec_path:
        return None
    mon = Monitor(dut, json.loads(Path(spec_path).read_text()))
    mon.task = cocotb.start_soon(mon.run())
    return mon
