"""Shared harness for the amaranth.sim tests: RTL and reference driven with the
same stimulus, every output compared every cycle."""
from __future__ import annotations

import atexit
import os

from amaranth.hdl import Value
from amaranth.sim import Simulator

from spikeloop.verify import fcov

CLOCK_PERIOD_S = 8e-9  # 125 MHz


def simulate(dut, bench, *, name: str = "dut") -> None:
    """Run ``bench(ctx)`` (an async testbench) against ``dut`` on a 125 MHz clock.

    With SPIKELOOP_VCD=DIR in the environment, the waveform goes to DIR/name.vcd."""
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD_S)
    sim.add_testbench(bench)
    if fcov.enabled():
        _add_coverage_sampler(sim)
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


# -- functional coverage (spikeloop/verify/fcov.py) ---------------------------------
# With SPIKELOOP_FCOV=DIR every design simulated here is sampled every cycle (the
# values of its blocks' signals at the clock edge, i.e. those of the cycle that
# ends) and the process writes its coverage database into DIR when it exits.

_fcov_export_registered = False


def _design_signals(sim) -> tuple[dict, dict]:
    """(``"path.name"`` -> Signal, path -> elaboratable class name) of every fragment
    of the simulated design; path "" is the design simulated.  Reads the names
    amaranth.sim gives its signals (the same names as in the exported Verilog)."""
    signals, classes = {}, {}
    for frag, info in sim._design.fragments.items():
        path = ".".join(info.name[1:])
        origin = (frag.origins or (None,))[0]
        classes[path] = type(origin).__name__
        for sig, name in info.signal_names.items():
            signals[f"{path}.{name}" if path else name] = sig
    return signals, classes


def _add_coverage_sampler(sim) -> None:
    global _fcov_export_registered
    signals, classes = _design_signals(sim)
    probes = []
    for path, cls in classes.items():
        obj = None
        for frag, info in sim._design.fragments.items():
            if ".".join(info.name[1:]) == path:
                obj = (frag.origins or (None,))[0]
        cfg = getattr(obj, "cfg", None)
        # the block of the instance's class and chip variant (e.g. the ADC's ring)
        block = fcov.block_of_class(cls, cfg) if cfg is not None else None
        if block is None:
            continue
        pre = f"{path}." if path else ""
        names = fcov.BLOCKS[block].signals(cfg)
        probes.append((block, cfg, names, [signals[pre + n] for n in names], {}))
    if not probes:
        return
    flat = [sig for *_, sigs, _ in probes for sig in sigs]

    async def sampler(ctx):
        async for _clk, _rst, *values in ctx.tick().sample(*flat):
            k = 0
            for block, cfg, names, sigs, state in probes:
                fcov.sample(block, cfg, dict(zip(names, values[k:k + len(sigs)],
                                                 strict=True)), state)
                k += len(sigs)

    sim.add_process(sampler)
    if not _fcov_export_registered:
        _fcov_export_registered = True
        atexit.register(lambda: fcov.export(fcov.enabled(), "rtl"))
