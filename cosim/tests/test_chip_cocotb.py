"""cocotb tests of the whole chip (component "top") that run the jobs of
backend "cosim" (cosim/backend.py writes the job and sets
:data:`~spikeloop.cosim.engine.ENV_JOB` to the path of its JSON description);
the steps of a job are the functions of the engine, cosim/engine.py.

Without a job every test here is skipped: start them through
:func:`spikeloop.cosim.backend.run_cosim`, ``run_ceiling`` or ``run_readback``.
"""
from __future__ import annotations

import os

import cocotb

from spikeloop.base.image import ConfigImage
from spikeloop.cosim import engine, monitor
from spikeloop.cosim.bridge import AnalogBridge
from spikeloop.cosim.engine import ENV_JOB
from spikeloop.cosim.runner import cosim_context
from spikeloop.model.analog_loop import AnalogLoop
from spikeloop.model.chip import Chip

NO_JOB = ENV_JOB not in os.environ
#: set to "1" by the co-simulation's own test of the analog bridge's watchdog
WATCHDOG_ENV = "SPIKELOOP_COSIM_SELFTEST_WATCHDOG"


@cocotb.test(skip=NO_JOB)
async def test_run_job(dut):
    """The image, the PPU program, then per sample: playback, run with the
    analog bridge, stop, drain, read back; the Observables go to the job's
    output path, the stats to its stats path.  With $SPIKELOOP_FCOV_MONITOR the
    functional-coverage monitor samples the chip every cycle (cosim/monitor.py)."""
    mon = monitor.start(dut)
    try:
        await engine.run_job(dut)
    finally:
        if mon is not None:
            mon.stop()


@cocotb.test(skip=NO_JOB)
async def test_ceiling_job(dut):
    """The speed ceiling of a build: the job's image and input events, the same
    running cycles per sample, but no analog bridge (no Python on any cycle)."""
    await engine.run_ceiling_job(dut)


@cocotb.test(skip=NO_JOB)
async def test_readback_job(dut):
    """Every word of the job's image written through the host bus and read back."""
    mon = monitor.start(dut)
    try:
        await engine.run_readback_job(dut)
    finally:
        if mon is not None:
            mon.stop()


# (the test's own limit, far beyond the watchdog's window: without a working
# watchdog this test fails instead of running for ever)
@cocotb.test(skip=os.environ.get(WATCHDOG_ENV) != "1", timeout_time=100, timeout_unit="us")
async def test_bridge_watchdog(dut):
    """The analog bridge on a chip held in reset: its ``step_done`` stays low
    (the step phase runs whether or not the chip does, except in reset), and the
    bridge's watchdog fails the test (skipped unless asked for)."""
    cfg = cosim_context().cfg
    host = await engine.start(dut, cfg)
    dut.rst.value = 1
    await host.edge(2 * cfg.analog_step_cycles)
    assert str(dut.step_done.value) == "0"
    chip = Chip(cfg, 1)
    loop = AnalogLoop(chip, chip.configure(ConfigImage.empty(cfg)), [0], 1)
    bridge = AnalogBridge(dut, cfg)
    bridge.drive_codes(loop)
    await bridge.run(loop, 0, 3)
