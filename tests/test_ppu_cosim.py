"""The Ppu's exported Verilog under cocotb (cosim/tests/test_ppu_cocotb.py):
a program loaded through the host ports, its effects compared with PpuSim.

rtl/components.py does not list the PPU yet (it is not part of the top
level); ``ppu_registered`` adds it to the catalogue for the runner during
these tests only."""
from __future__ import annotations

import pytest

from spikeloop.config import MINI
from spikeloop.cosim import runner
from spikeloop.rtl.components import COMPONENTS

pytestmark = pytest.mark.cosim

MODULE = "spikeloop.cosim.tests.test_ppu_cocotb"


@pytest.fixture
def ppu_registered():
    had = "ppu" in COMPONENTS
    COMPONENTS.setdefault("ppu", ("ppu", "Ppu"))
    yield
    if not had:
        del COMPONENTS["ppu"]


@pytest.mark.parametrize("simulator", [
    "icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_ppu_program_on_exported_verilog(ppu_registered, simulator):
    info = runner.build(MINI, "ppu", simulator)
    print(f"{simulator}: {'reused' if info.cached else 'built'} {info.build_dir} "
          f"in {info.seconds:.1f} s")
    res = runner.run_tests(info, MODULE)
    assert [t.name for t in res.ran] == ["test_program_against_reference"]
    assert res.passed and res.ran[0].sim_time_ns > 0
