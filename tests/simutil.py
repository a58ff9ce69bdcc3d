"""Shared harness for the amaranth.sim tests: RTL and reference driven with the
same stimulus, every output compared every cycle."""
from __future__ import annotations

import os

from amaranth.hdl import Value
from amaranth.sim import Simulator

CLOCK_PERIOD_S = 8e-9  # 125 MHz


def simulate(dut, bench, *, name: str = "dut") -> None:
    """Run ``bench(ctx)`` (an async testbench) against ``dut`` on a 125 MHz clock.

    With SPIKELOOP_VCD=DIR in the environment, the waveform goes to DIR/name.vcd."""
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD_S)
    sim.add_testbench(bench)
    vcd_dir = os.environ.get("SPIKELOOP_VCD")
    if vcd_dir:
        os.makedirs(vcd_dir, exist_ok=True)
        with sim.write_vcd(os.path.join(vcd_dir, f"{name}.vcd")):
            sim.run()
    else:
        sim.run()


def get(ctx, port) -> int:
    """A port (plain signal, struct or array view) as one packed integer."""
    return ctx.get(Value.cast(port))


def put(ctx, port, value: int) -> None:
    """Drive a port (plain signal, struct or array view) from a packed integer."""
    ctx.set(Value.cast(port), value)


def mismatch(cycle: int, name: str, rtl, ref) -> str:
    return f"cycle {cycle}: output {name}: RTL {rtl!r} != reference {ref!r}"
