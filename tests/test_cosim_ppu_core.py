"""The Ppu's exported Verilog under cocotb (cosim/tests/test_ppu_cocotb.py):
a program loaded through the host ports, its effects compared with PpuSim.
rtl/components.py lists the PPU ("ppu"), so the runner builds it like any
component.  The program is assembled here, from spikeloop/ppu/programs.py, and
handed to the cocotb module as a JSON file named by an environment variable."""
from __future__ import annotations

import json

import pytest

from spikeloop.base.config import MINI, ChipConfig
from spikeloop.cosim import runner
from spikeloop.ppu import programs as P
from spikeloop.ppu.asm import assemble

pytestmark = pytest.mark.cosim

MODULE = "spikeloop.cosim.tests.test_ppu_cocotb"
#: must equal spikeloop.cosim.tests.test_ppu_cocotb.ENV_PROGRAM (not imported
#: here: that module imports cocotb)
ENV_PROGRAM = "SPIKELOOP_COSIM_PPU_PROGRAM"

#: ADC samples that the trace program streams (the cocotb module's ADC takes one every
#: 150 PPU cycles: the program waits on adc_count)
N_REC = 3
#: the trace program reads its sample count from dmem[0], which the update (dmem vector 0,
#: random data) holds before: the program writes it after the update read it
SET_N = f"""
        addi r1, r0, {N_REC}
        sw r1, 0(r0)
"""
#: the cycle and time counters, a 16-bit product of the last ADC chunk and the
#: last row, and the registers of the parts before into dmem
TAIL = """
        csrr r11, cycle
        csrr r12, time
        vmul.h v4, v3, v2, 2
        vst v4, 2(r0)
        sw r2, 1(r0)
        sw r5, 2(r0)
        sw r11, 3(r0)
        sw r12, 4(r0)
        halt
"""


def program_source() -> str:
    """The docs example's weight update (every row read, updated, written and
    streamed; the neurons whose update is positive reset), then the trace program
    (trace recording: waits on adc_count for each of N_REC samples and streams
    their chunks), then :data:`TAIL`: every port of the core."""
    return P.compose(P.UPDATE_EXAMPLE, SET_N, P.TRACE, TAIL)


def write_program(cfg: ChipConfig, path) -> dict[str, str]:
    """The program assembled for ``cfg`` as ``{"words": [...]}`` at ``path``;
    returns the environment that names it for the cocotb module."""
    path.write_text(json.dumps({"words": assemble(program_source(), cfg).words}))
    return {ENV_PROGRAM: str(path)}


@pytest.mark.parametrize("simulator", [
    "icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_ppu_program_on_exported_verilog(simulator, tmp_path):
    info = runner.build(MINI, "ppu", simulator)
    print(f"{simulator}: {'reused' if info.cached else 'built'} {info.build_dir} "
          f"in {info.seconds:.1f} s")
    res = runner.run_tests(info, MODULE, extra_env=write_program(MINI, tmp_path / "program.json"))
    assert [t.name for t in res.ran] == ["test_program_against_reference"]
    assert res.passed and res.ran[0].sim_time_ns > 0
