"""Code-coverage closure on the co-simulated chip (mini top, Verilator): stimulus
for the parts of the RTL that the scenarios and the other co-simulation tests
leave unexecuted, each run checked against the other backends.

- ``flood``: every crossbar node enabled for every event, every neuron of both
  halves firing (threshold below leak), input events on both external links:
  every input of the crossbar reaches every output, every node queues and
  drops, the FIFOs wrap, half 1's neurons, arbiters, drivers and synapses
  work.  The run equals the fast backend's and the reference backend's.
- ``every region``: a random configuration image, its complement and the
  image again written and read back through the top (every configuration bit
  rises and falls), the PPU's program and the playback memory written and read
  back, every other region read (tests/cocotb_top_regions.py, in the simulator).
- ``every instruction``: one PPU program with every opcode, every vector-ALU
  function in both lane sizes, every register in every operand field, taken
  and untaken branches, ``jal`` and ``jalr``; then it stores every register.
  What the host reads back (data words, output vectors, pc, cycles) and the run
  equal the reference's and the fast backend's.

`make coverage` (spikeloop/verify/codecov.py) runs this file on its coverage
build; `make sim` runs it with the slow tier.  Each test is one or two
co-simulation runs of a few hundred cycles.
"""
from __future__ import annotations

import numpy as np
import pytest

from spikeloop import backends
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents
from spikeloop.base.image import ConfigImage
from spikeloop.base.isa import FORMATS, IMM_KINDS, ISA, N_REGS, N_VREGS, chip_geometry
from spikeloop.base.layouts import RowSign, pack_event
from spikeloop.cosim import runner
from spikeloop.cosim.backend import build_args, run_cosim
from spikeloop.model.analog import LEAK, THRESHOLD
from spikeloop.model.chip import Chip
from spikeloop.ppu.asm import assemble

pytestmark = [pytest.mark.cosim, pytest.mark.slow]


@pytest.fixture(scope="module")
def chip():
    return Chip.calibrated(MINI, 1)


def same_as_other_backends(chip, image, events, n_steps, co, *, run_seed, ppu=None):
    for backend in ("reference", "fast"):
        other = backends.run(chip, image, events, n_steps, backend=backend,
                             run_seed=run_seed, ppu=ppu)
        diff = co.first_difference(other)
        assert diff is None, f"cosim against {backend}: {diff}"


# -- every crossbar path, both halves ------------------------------------------------

def flood_case(cfg, seed: int):
    """(image, events, n_steps): every neuron fires, every crossbar node takes
    every event, events arrive on every external link, half of the labels drawn
    over every label bit; synapses random (both halves, every row sign),
    refractory periods and drivers' masks varied."""
    rng = np.random.default_rng(seed)
    img = ConfigImage.empty(cfg)
    H, R, C, n = cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half, cfg.n_neurons
    L = 1 << cfg.event_label_bits

    def label(k: int) -> int:
        """Even k: few addresses and row selects (synapses and drivers match);
        odd k: any label (every label bit of the crossbar's words rises and falls)."""
        if k % 2:
            return int(rng.integers(L))
        return pack_event(cfg, int(rng.integers(3)), int(rng.integers(4)))

    img.neuron_enable[:] = 1
    img.neuron_label[:] = [label(j // 4) for j in range(n)]     # per block of four
    img.refractory[:] = rng.integers(0, 4, n)
    img.synapse_weight[:] = rng.integers(0, 64, (H, R, C))
    img.synapse_label[:] = rng.integers(0, 3, (H, R, C))
    img.row_sign[:] = rng.choice([RowSign.EXC, RowSign.INH], size=(H, R))
    img.driver_select[:] = rng.integers(0, 4, (H, cfg.drivers_per_half))
    img.driver_mask[:] = rng.choice([0, 3], size=(H, cfg.drivers_per_half))
    img.xbar_enable[:] = 1                     # mask 0, target 0: every event everywhere
    img.adc_period = np.int64(cfg.analog_step_cycles)
    n_steps = 40
    window = n_steps * cfg.analog_step_cycles
    per_sample = [[(int(c), link, label(k))
                   for link in range(cfg.n_ext_inputs)
                   for k, c in enumerate(sorted(rng.integers(0, window, 16)))]]
    return img, InputEvents.from_lists(cfg, per_sample), n_steps


def test_flood_every_crossbar_path_and_both_halves(chip):
    cfg = MINI
    img, events, n_steps = flood_case(cfg, 11)
    img = chip.configure(img)
    img.analog_settings[:, THRESHOLD] = np.maximum(img.analog_settings[:, LEAK] - 160, 0)
    co = run_cosim(chip, img, events, n_steps, run_seed=3)
    same_as_other_backends(chip, img, events, n_steps, co, run_seed=3)
    # what the stimulus is for: every neuron fires, every node queues at least
    # two events (its FIFO pointers wrap), the full FIFOs drop
    assert set(co.spikes[:, 3].tolist()) == set(range(cfg.n_neurons))
    assert (co.xbar_events.sum(axis=0) >= 2).all(), co.xbar_events.sum(axis=0)
    assert co.xbar_drops.sum() > 0


# -- every PPU instruction ----------------------------------------------------------

def every_instruction_program(cfg) -> tuple[list[str], list[tuple[int, int]], list[int]]:
    """(source lines, data words, data words to read back): registers loaded
    from data memory, then every instruction; operand registers rotate so that
    each field sees every register; at the end every register is stored."""
    g = chip_geometry(cfg)
    rng = np.random.default_rng(5)
    vw = g.vector_words
    lines = [f"vld v{i}, {i}(r0)" for i in range(N_VREGS)]
    lines += [f"lw r{i}, {vw * N_VREGS + i}(r0)" for i in range(1, N_REGS)]
    dmem = [(i, int(rng.integers(1 << 32))) for i in range(vw * N_VREGS + N_REGS)]
    k = 0

    def reg(field_offset: int) -> str:
        return f"r{(k * 7 + field_offset) % N_REGS}"

    def vreg(field_offset: int) -> str:
        return f"v{(k * 3 + field_offset) % N_VREGS}"

    def dest() -> str:                       # r1..r12: r13..r15 keep their loaded values
        return f"r{1 + k % 12}"

    def imms(kind: str) -> list[int]:
        lo, hi, _ = IMM_KINDS[kind]
        return sorted({lo, hi, 0, 1, min(hi, 3)})

    skip = {"halt", "beq", "bne", "blt", "bge", "bltu", "bgeu", "jal", "jalr",
            "vsw", "vsl", "vout", "vrst"}
    for ins in ISA:
        if ins.mnemonic in skip:
            continue
        f = FORMATS[ins.fmt].name
        reps = {"R": 3, "V3": 2, "V3S": 2, "V2S": 2, "V4": 8, "VX": 2, "VG": 2,
                "VP": 16}.get(f, 1)
        for rep in range(reps):
            sizes = [".b", ".h"] if ins.funct is not None else [""]
            for sfx in sizes:
                if f == "R":
                    lines.append(f"{ins.mnemonic} {dest()}, {reg(0)}, {reg(3)}")
                elif f == "I":
                    for imm in imms(ins.imm):
                        lines.append(f"{ins.mnemonic} {dest()}, {reg(0)}, {imm}")
                        k += 1
                elif ins.mnemonic == "csrr":
                    for csr in ("cycle", "adc_count", "time"):
                        lines.append(f"csrr {dest()}, {csr}")
                elif f == "U":
                    lines += [f"lui {dest()}, {imm}" for imm in imms(ins.imm)]
                elif f in ("L", "S", "VL", "VS"):
                    first = vreg(0) if f.startswith("V") else (dest() if f == "L" else reg(0))
                    lines.append(f"{ins.mnemonic} {first}, {rep + 1}(r0)")
                else:                        # vector ALU
                    ops = []
                    for j, (_name, kind, _fld) in enumerate(ins.format.operands):
                        ops.append({"v": vreg(j), "r": reg(j),
                                    "imm": str((k + j) % 16)}[kind])
                    if ins.mnemonic == "vget":
                        ops[0] = dest()
                    lines.append(f"{ins.mnemonic}{sfx} {', '.join(ops)}")
                k += 1
    # control flow: each branch taken and not taken, jal, jalr (over one line each)
    for mn in ("beq", "bne", "blt", "bge", "bltu", "bgeu"):
        for a, b in (("r0", "r0"), ("r13", "r14"), ("r14", "r13")):
            lines += [f"{mn} {a}, {b}, {len(lines) + 2}", "addi r1, r1, 1"]
    lines += [f"jal r2, {len(lines) + 2}", "addi r3, r3, 1"]
    lines += [f"jalr r4, {len(lines) + 2}(r0)", "addi r5, r5, 1"]
    lines += ["vout v1", "vrst v0, 0(r0)"]
    lines += [f"sub r{i}, r0, r{i}" for i in (13, 14, 15)]   # the loop registers too
    base = vw * N_VREGS + N_REGS
    lines += [f"sw r{i}, {base + i}(r0)" for i in range(1, N_REGS)]
    lines += [f"vst v{i}, {base // vw + 4 + i}(r0)" for i in range(N_VREGS)]
    lines.append("halt")
    read = list(range(base + 1, base + N_REGS)) + \
        list(range((base // vw + 4) * vw, (base // vw + 4 + N_VREGS) * vw))
    return lines, dmem, read


def test_every_ppu_instruction_in_the_top(chip):
    cfg = MINI
    lines, dmem, read = every_instruction_program(cfg)
    words = assemble("\n".join(lines), cfg).words
    sc_img = ConfigImage.empty(cfg)
    sc_img.neuron_enable[:] = 1
    image = chip.configure(sc_img)
    events = InputEvents.from_lists(cfg, [[(4, 0, pack_event(cfg, 0, 0))]])
    job = {"words": words, "dmem": dmem, "when": "before", "read_dmem": read}
    co = run_cosim(chip, image, events, 8, run_seed=1, ppu=job)
    assert co.ppu[0]["status"] == 2, co.ppu[0]         # halted
    assert len(co.ppu[0]["out"]) == 1
    same_as_other_backends(chip, image, events, 8, co, run_seed=1, ppu=job)


# -- every region of the address map through the top -----------------------------

def test_every_region_through_the_top():
    info = runner.build(MINI, "top", "verilator", False, build_args=build_args("verilator"))
    res = runner.run_tests(info, "tests.cocotb_top_regions",
                           extra_env={"SPIKELOOP_REGIONS_SEED": "7"}, seed=7)
    assert res.passed and len(res.ran) == 1, res.summary()
