"""cocotb test of the bare Ppu component (component="ppu") on its exported
Verilog, run inside the simulator by spikeloop.cosim.runner.run_tests
(tests/test_cosim_ppu_core.py).

The program comes assembled from the pytest side (tests/test_cosim_ppu_core.py
builds it from spikeloop/ppu/programs.py): a JSON file ``{"words": [...]}``
named by the environment variable :data:`ENV_PROGRAM`, as the chip's jobs
come to cosim/engine.py; without it the test is skipped.  The testbench loads
the program through the host port of the instruction memory and random data
through the data memory's, starts the core, plays the synapse memory
and the ADC buffer behind the ``syn`` and ``adc`` ports (Python models with one
cycle of read latency, model/ppu_sim.py), drives the ADC's sample count and random
backpressure on the output stream, records every stream transfer and neuron
reset, reads the data memory back through the host port after the halt, and
compares all of it, and the cycle count, with the reference simulator PpuSim.

Every random choice comes from ``random.Random(cocotb.RANDOM_SEED)``; the
test logs the seed.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from spikeloop.base.isa import PpuGeometry
from spikeloop.base.layouts import pack_array, unpack_array
from spikeloop.cosim.host import start_clock
from spikeloop.cosim.runner import cosim_context
from spikeloop.model.ppu_sim import AdcPortModel, Environment, PpuSim, RowPortModel, SynapseRows

#: environment variable holding the path of the program's JSON description,
#: ``{"words": [...]}`` (the assembled program); tests/test_cosim_ppu_core.py writes it
ENV_PROGRAM = "SPIKELOOP_COSIM_PPU_PROGRAM"

ADC_PERIOD = 150       # adc_count rises every ADC_PERIOD PPU cycles (the program waits)
TIME0 = 5000           # the chip time in the first PPU cycle


def _rng(name: str) -> random.Random:
    seed = cocotb.RANDOM_SEED
    cocotb.log.info("%s: random seed %d (COCOTB_RANDOM_SEED=%s)", name, seed,
                    os.environ.get("COCOTB_RANDOM_SEED", "?"))
    return random.Random(seed)


def _u(signal) -> int:
    """A port's value as an unsigned int (1-bit ports give a Logic)."""
    v = signal.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


def _program() -> list[int]:
    """The program words of the JSON file :data:`ENV_PROGRAM` names."""
    return [int(w) for w in json.loads(Path(os.environ[ENV_PROGRAM]).read_text())["words"]]


@cocotb.test(skip=ENV_PROGRAM not in os.environ)
async def test_program_against_reference(dut):
    rng = _rng("test_program_against_reference")
    cfg = cosim_context().cfg
    geom = PpuGeometry(cfg)
    C, sbits = cfg.columns_per_half, cfg.weight_bits + cfg.label_bits
    prog = _program()
    syn0 = [[[(rng.randrange(cfg.weight_max + 1), rng.randrange(1 << cfg.label_bits))
              for _ in range(C)] for _ in range(cfg.rows_per_half)] for _ in range(cfg.n_halves)]
    adc = [[rng.randrange(1 << cfg.adc_bits) for _ in range(cfg.n_neurons)]
           for _ in range(cfg.adc_buffer_depth)]
    dmem0 = [rng.getrandbits(32) for _ in range(2 * geom.vector_words)]
    ready = [int(rng.random() < 0.7) for _ in range(29)] + [1]

    env = Environment(ready=lambda k: bool(ready[k % len(ready)]),
                      adc_count=lambda k: min(cfg.adc_buffer_depth, k // ADC_PERIOD),
                      time=lambda k: TIME0 + k)
    ref = PpuSim(geom, env=env, syn=SynapseRows(cfg, syn0), adc=adc)
    ref.load(prog)
    ref.dmem[:len(dmem0)] = dmem0
    ref.start()
    trace = ref.run(200_000)
    assert ref.halted, "the reference did not halt"

    # -- reset, load ---------------------------------------------------------------
    for name in ("start", "stop", "host_imem_we", "host_dmem_we", "out__ready",
                 "syn__rdata", "adc__rdata", "adc_count", "time", "host_imem_addr",
                 "host_dmem_addr", "host_imem_wdata", "host_dmem_wdata"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    start_clock(dut, cfg)
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    for i in range(max(len(prog), len(dmem0))):
        dut.host_imem_we.value = int(i < len(prog))
        dut.host_imem_addr.value = min(i, len(prog) - 1)
        dut.host_imem_wdata.value = prog[min(i, len(prog) - 1)]
        dut.host_dmem_we.value = int(i < len(dmem0))
        dut.host_dmem_addr.value = min(i, len(dmem0) - 1)
        dut.host_dmem_wdata.value = dmem0[min(i, len(dmem0) - 1)]
        await RisingEdge(dut.clk)
    dut.host_imem_we.value = 0
    dut.host_dmem_we.value = 0
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0

    # -- run: the memories and the environment, cycle by cycle ------------------------
    rows = SynapseRows(cfg, syn0)
    rowport, adcport = RowPortModel(rows), AdcPortModel(cfg, adc)
    stream, resets = [], []
    k = 0
    while True:
        dut.out__ready.value = ready[k % len(ready)]
        dut.adc_count.value = env.adc_count(k)
        dut.time.value = TIME0 + k
        dut.syn__rdata.value = pack_array(
            [w | (lab << cfg.weight_bits) for w, lab in rowport.rdata], sbits)
        dut.adc__rdata.value = pack_array(adcport.rdata, cfg.adc_bits)
        await ReadOnly()
        if not dut.running.value:
            break
        if dut.out__valid.value and ready[k % len(ready)]:
            stream.append((k, _u(dut.out__payload)))
        mask = _u(dut.nreset)
        if mask:
            resets.append((k, mask))
        wdata = _u(dut.syn__wdata)
        rowport.tick(_u(dut.syn__half), _u(dut.syn__row),
                     int(dut.syn__re.value), _u(dut.syn__we),
                     [((s & cfg.weight_max), s >> cfg.weight_bits)
                      for s in unpack_array(wdata, sbits, C)])
        adcport.tick(_u(dut.adc__addr), int(dut.adc__re.value))
        await RisingEdge(dut.clk)
        k += 1
        assert k <= ref.cycle + 2, f"the RTL still runs after {k} cycles (reference {ref.cycle})"

    # -- compare ----------------------------------------------------------------------
    assert dut.halted.value == 1
    assert k == ref.cycle == _u(dut.cycles), \
        f"cycles: RTL {k} / {_u(dut.cycles)}, reference {ref.cycle}"
    assert _u(dut.pc) == ref.pc
    assert stream == ref.stream, (f"stream: {len(stream)} transfers, reference "
                                  f"{len(ref.stream)}; first RTL {stream[:1]}, "
                                  f"reference {ref.stream[:1]}")
    assert resets == ref.resets
    assert rows.rows == ref.syn.rows, "synapse rows differ"
    # the data memory through the host port (one cycle of read latency)
    n_words = 3 * geom.vector_words
    got = []
    await RisingEdge(dut.clk)                 # leave the read-only phase
    for i in range(n_words):
        dut.host_dmem_addr.value = i
        await RisingEdge(dut.clk)             # the read happens at this edge
        await ReadOnly()
        got.append(_u(dut.host_dmem_rdata))
        await RisingEdge(dut.clk)
    assert got == ref.dmem[:n_words], "data memory differs"
    cocotb.log.info("PPU program on %s: %d instructions in %d cycles, %d stream transfers, "
                    "%d resets", cfg.name, len(trace), ref.cycle, len(stream), len(resets))
