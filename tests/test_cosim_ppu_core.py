"""The Ppu's exported Verilog under cocotb (cosim/tests/test_ppu_cocotb.py):
a program loaded through the host ports, its effects compared with PpuSim.
rtl/components.py lists the PPU ("ppu"), so the runner builds it like any
component."""
from __future__ import annotations

import pytest

from spikeloop.base.config import MINI
from spikeloop.cosim import runner

pytestmark = pytest.mark.cosim

MODULE = "spikeloop.cosim.tests.test_ppu_cocotb"


@pytest.mark.parametrize("simulator", [
    "icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_ppu_program_on_exported_verilog(simulator):
    info = runner.build(MINI, "ppu", simulator)
    print(f"{simulator}: {'reused' if info.cached else 'built'} {info.build_dir} "
          f"in {info.seconds:.1f} s")
    res = runner.run_tests(info, MODULE)
    assert [t.name for t in res.ran] == ["test_program_against_reference"]
    assert res.passed and res.ran[0].sim_time_ns > 0
