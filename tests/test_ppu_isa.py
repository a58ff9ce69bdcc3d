"""The PPU's instruction table, encodings, geometry and reference simulator
(spikeloop/base/isa.py, model/ppu_sim.py), and docs/ppu.md against the table."""
from __future__ import annotations

from pathlib import Path

import pytest

from spikeloop.base.config import FULL, MINI
from spikeloop.base.isa import BY_MNEMONIC, FIELDS, ISA, PpuGeometry, decode, encode
from spikeloop.base.layouts import pack_array, unpack_array
from spikeloop.model.ppu_sim import Environment, PpuSim, SynapseRows
from spikeloop.ppu.asm import assemble
from spikeloop.ppu.docs import render_docs

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ppu.md"


def test_docs_hold_the_generated_tables():
    text = DOCS.read_text()
    assert render_docs(text) == text, (
        "docs/ppu.md differs from the instruction table (spikeloop/base/isa.py): run "
        "`python -m spikeloop.ppu.docs --write-docs docs/ppu.md`")
    for ins in ISA:
        assert f"| `{ins.mnemonic}` | `{ins.syntax()}` |" in text


def test_table_is_consistent():
    for ins in ISA:
        assert ins.cycles in (1, 2)
        word = encode(ins.mnemonic)
        dec = decode(word)
        assert dec.instr is ins, ins.mnemonic
        assert set(ins.format.fields) <= set(FIELDS)
        assert (ins.imm is not None) == any(k == "imm" or k in ("mem", "target")
                                            for _, k, _ in ins.format.operands), ins.mnemonic
    assert decode(0).instr is BY_MNEMONIC["halt"]
    # each field inside the word, the fixed fields do not overlap
    used = 0
    for name in ("op", "a", "b", "c", "d", "size", "funct", "sh"):
        lsb, width = FIELDS[name]
        bits = ((1 << width) - 1) << lsb
        assert not used & bits, name
        used |= bits
    assert used == 0xFFFF_FFFF


def test_encode_checks_ranges():
    with pytest.raises(ValueError, match="immediate 70000 out of range -32768..32767"):
        encode("addi", a=1, imm=70000)
    with pytest.raises(ValueError, match="not part of format"):
        encode("add", a=1, imm=3)


def test_geometry_of_the_presets():
    g = PpuGeometry(MINI)
    assert (g.lanes(8), g.lanes(16), g.row_chunks, g.adc_chunks, g.neuron_chunks) == (
        16, 8, 1, 1, 1)
    g = PpuGeometry(FULL)
    assert (g.lanes(8), g.lanes(16), g.row_chunks, g.adc_chunks, g.neuron_chunks) == (
        128, 64, 2, 4, 4)
    assert g.row_address(1, 255, 1) == (1 << 9) | (255 << 1) | 1
    assert g.split_row_address(g.row_address(1, 255, 1)) == (1, 255, 1, True)
    assert g.dmem_vectors == 64 and g.vector_words == 32


@pytest.mark.parametrize("kw, msg", [
    ({"imem_words": 100}, r"PPU imem_words = 100 is not allowed; allowed: a power of two"),
    ({"dmem_words": 2}, r"PPU dmem_words = 2 is not allowed"),
    ({"dmem_words": 16}, r"dmem_words = 16 must be a multiple of the 32 words of one vector"),
])
def test_geometry_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PpuGeometry(FULL, **kw)


def run(src, cfg=MINI, env=None, syn=None, adc=None, dmem=None, **kw):
    sim = PpuSim(PpuGeometry(cfg), env=env or Environment(), syn=syn, adc=adc)
    sim.load(assemble(src, cfg).words)
    if dmem:
        sim.dmem[:len(dmem)] = dmem
    sim.start()
    trace = sim.run(**kw)
    return sim, trace


def vec(lanes, w=8):
    return pack_array(lanes, w, wrap=True)


def lanes_of(sim, v, w=8, n=None):
    return unpack_array(sim.vregs[v], w, n or sim.geom.lanes(w))


def _dmem_vectors(*vectors, words=4):
    out = []
    for v in vectors:
        out += unpack_array(v, 32, words)
    return out


@pytest.mark.parametrize("op, a, b, sh, want", [
    ("vadds.b", 100, 100, 0, 127), ("vadds.b", -100 & 255, -100 & 255, 0, 128),
    ("vsubs.b", -100 & 255, 100, 0, 128), ("vaddu.b", 200, 100, 0, 255),
    ("vsubu.b", 3, 5, 0, 0), ("vadd.b", 200, 100, 0, 44), ("vsub.b", 3, 5, 0, 254),
    ("vmul.b", 100, 100, 0, 127), ("vmul.b", 100, 100, 7, 78), ("vmul.b", -100 & 255, 100, 7,
                                                               (-79) & 255),
    ("vmulu.b", 200, 200, 8, 156), ("vmulu.b", 200, 200, 7, 255),
    ("vsra.b", 0x80, 0, 3, 0xF0), ("vsrl.b", 0x80, 0, 3, 0x10), ("vsll.b", 0x81, 0, 1, 0x02),
    ("vmin.b", 0x80, 1, 0, 0x80), ("vminu.b", 0x80, 1, 0, 1), ("vmax.b", 0x80, 1, 0, 1),
    ("vcmpgt.b", 1, 0xFF, 0, 0xFF), ("vcmpgtu.b", 1, 0xFF, 0, 0), ("vcmpeq.b", 7, 7, 0, 0xFF),
    ("vadds.h", 30000, 30000, 0, 32767), ("vmul.h", 300, 300, 4, 5625),
])
def test_vector_lane_semantics(op, a, b, sh, want):
    w = 16 if op.endswith(".h") else 8
    n = MINI.ppu_vector_bits // w
    ops = f"v3, v1, v2, {sh}" if op.split(".")[0] in ("vmul", "vmulu") else (
        f"v3, v1, {sh}" if op.split(".")[0] in ("vsra", "vsrl", "vsll") else "v3, v1, v2")
    src = f"vld v1, 0(r0)\nvld v2, 1(r0)\n{op} {ops}\nhalt"
    sim, _ = run(src, dmem=_dmem_vectors(vec([a] * n, w), vec([b] * n, w)))
    assert lanes_of(sim, 3, w) == [want] * n


def test_select_splat_get_set():
    src = """
        li r1, 0x1234
        vsplat.h v1, r1
        addi r2, r0, 3
        addi r3, r0, 77
        vset.b v2, v0, r2, r3
        vsel.b v4, v1, v0, v2     # lane 3 of v2 != 0: v1's lane, else v0 (0)
        vget.b r5, v4, r2
        vget.h r6, v1, r2
        halt
    """
    sim, _ = run(src)
    assert lanes_of(sim, 1, 16) == [0x1234] * 8
    assert lanes_of(sim, 2) == [0, 0, 0, 77] + [0] * 12
    assert lanes_of(sim, 4) == [0, 0, 0, 0x12] + [0] * 12
    assert sim.regs[5] == 0x12 and sim.regs[6] == 0x1234


def test_scalar_semantics():
    src = """
        li r1, -7
        srai r2, r1, 1
        srli r3, r1, 28
        slti r4, r1, 0
        sltiu r5, r1, -1       # 0xfffffff9 < 0xffffffff
        li r6, 0x10000
        mul r7, r6, r6         # low 32 bits of 2**32
        lui r8, 0xffff
        andi r9, r8, 0xffff
        addi r10, r0, 1
        sll r11, r10, r1       # shift by -7 & 31 = 25
        sw r1, 5(r0)
        lw r12, -59(r10)       # 1 - 59 = -58 = 6 mod 64... word 5 + 2048: see below
        halt
    """
    sim, _ = run(src)
    assert sim.regs[2] == (-4) & 0xFFFF_FFFF
    assert sim.regs[3] == 0xF and sim.regs[4] == 1 and sim.regs[5] == 1
    assert sim.regs[7] == 0 and sim.regs[8] == 0xFFFF_0000 and sim.regs[9] == 0
    assert sim.regs[11] == 1 << 25
    assert sim.dmem[5] == (-7) & 0xFFFF_FFFF
    assert sim.regs[12] == sim.dmem[(1 - 59) % 2048]


def test_rows_on_the_full_preset():
    """Chunk 1 of a row holds columns 128..255; a weight store keeps the labels."""
    cfg = FULL
    g = PpuGeometry(cfg)
    syn = SynapseRows(cfg)
    syn.rows[1][7] = [(c % 64, (c * 7) % 64) for c in range(256)]
    src = f"""
        li r1, {g.row_address(1, 7, 1)}
        vlw v1, 0(r1)
        vll v2, 0(r1)
        addi r2, r0, 1
        vsplat.b v3, r2
        vaddu.b v1, v1, v3
        vsw v1, -1(r1)         # chunk 0: columns 0..127 get weights of 128..255, + 1
        halt
    """
    sim, trace = run(src, FULL, syn=syn)
    assert lanes_of(sim, 1) == [(c % 64) + 1 for c in range(128, 256)]
    assert lanes_of(sim, 2) == [(c * 7) % 64 for c in range(128, 256)]
    row = sim.syn.rows[1][7]
    assert [w for w, _ in row[:128]] == [((c % 64) + 1) & 63 for c in range(128, 256)]
    assert [w for w, _ in row[128:]] == [c % 64 for c in range(128, 256)]
    assert [lab for _, lab in row] == [(c * 7) % 64 for c in range(256)]
    assert [r.cycles for r in trace] == [1, 2, 2, 1, 1, 1, 2, 1]


def test_out_of_range_rows_read_zero_and_are_not_written():
    cfg = MINI.replace(rows_per_half=6, neurons_per_block=4)
    syn = SynapseRows(cfg)
    syn.rows[0][5] = [(9, 9)] * 8
    g = PpuGeometry(cfg)
    src = f"""
        vlw v1, {g.row_address(0, 5)}(r0)
        vlw v2, {g.row_address(0, 6)}(r0)
        vsw v1, {g.row_address(0, 7)}(r0)
        halt
    """
    sim, _ = run(src, cfg, syn=syn)
    assert lanes_of(sim, 1) == [9] * 8 + [0] * 8 and lanes_of(sim, 2) == [0] * 16
    assert sim.syn.rows[0][5] == [(9, 9)] * 8


def test_adc_chunks_and_resets_on_full():
    cfg = FULL
    adc = [[(s + n) % 256 for n in range(512)] for s in range(cfg.adc_buffer_depth)]
    g = PpuGeometry(cfg)
    src = f"""
        vadc v1, {(5 << g.adc_chunk_bits) | 2}(r0)    # sample 5, neurons 256..383
        vrst v1, 2(r0)
        halt
    """
    sim, _ = run(src, cfg, adc=adc)
    codes = [(5 + n) % 256 for n in range(256, 384)]
    assert lanes_of(sim, 1) == codes
    assert sim.resets == [(2, sum(1 << (256 + i) for i, c in enumerate(codes) if c))]


def test_adc_in_16_bit_lanes():
    cfg = MINI.replace(adc_bits=10)
    adc = [[1000 - n for n in range(16)] for _ in range(cfg.adc_buffer_depth)]
    sim, _ = run("vadc v1, 3(r0)\nvadc v2, 4(r0)\nhalt", cfg, adc=adc)
    g = sim.geom
    assert g.adc_lane_bits == 16 and g.adc_chunks == 2
    assert lanes_of(sim, 1, 16) == [1000 - n for n in range(8, 16)]   # sample 1, chunk 1
    assert lanes_of(sim, 2, 16) == [1000 - n for n in range(8)]       # sample 2, chunk 0


def test_vout_stalls_on_ready():
    ready = [0, 0, 1, 0, 1]
    env = Environment(ready=lambda k: bool(ready[k]) if k < len(ready) else True)
    sim, trace = run("vout v0\nvout v0\nvout v0\nhalt", env=env)
    assert [r.cycles for r in trace] == [3, 2, 1, 1]
    assert [c for c, _ in sim.stream] == [2, 4, 5]


def test_csr_and_undefined_halts():
    env = Environment(adc_count=lambda k: 10 + k, time=lambda k: 1000 + k)
    sim, trace = run("addi r1, r0, 1\ncsrr r2, cycle\ncsrr r3, adc_count\ncsrr r4, time\n"
                     ".word 0xfc000000\naddi r5, r0, 1", env=env)
    assert sim.regs[2:5] == [1, 12, 1003]
    assert sim.halted and sim.pc == 4 and sim.regs[5] == 0


def test_stop_semantics():
    src = "loop: lw r1, 0(r0)\naddi r2, r2, 1\nj loop"
    sim, trace = run(src, stop_at=0)            # first cycle of the two-cycle lw
    assert not trace[-1].completed and sim.pc == 0 and sim.cycle == 1 and not sim.halted
    sim, trace = run(src, stop_at=2)            # the addi (cycle 2) completes
    assert trace[-1].completed and sim.pc == 2 and sim.regs[2] == 1 and sim.cycle == 3


@pytest.mark.parametrize("cfg, cycles", [(MINI, 330), (FULL, 10250)])
def test_weight_update_example_cycles(cfg, cycles):
    """The example of docs/ppu.md: 7 + 10 per row chunk + 3 cycles."""
    src = DOCS.read_text().split("## Example: weight update")[1].split("```")[1]
    sim, _ = run(src, cfg, max_cycles=10**6)
    g = sim.geom
    chunks = cfg.n_halves * cfg.rows_per_half * g.row_chunks
    assert sim.halted and sim.cycle == cycles == 7 + 10 * chunks + 3
    assert len(sim.stream) == chunks
