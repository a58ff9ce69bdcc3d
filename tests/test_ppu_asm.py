"""The PPU assembler (spikeloop/ppu/asm.py): syntax, pseudo-instructions,
round trips through the disassembler, and every error message."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.isa import ISA, PpuGeometry, decode, encode
from spikeloop.ppu.asm import AsmError, assemble, disassemble
from tests.test_ppu_rtl import random_program

pytestmark = pytest.mark.unit


def words(src, cfg=MINI, **kw):
    return assemble(src, cfg, **kw).words


def test_syntax_labels_comments_constants():
    src = """
    # a comment line
    .equ N, 2 * ROWS          ; ROWS from the ChipConfig
    start:                     # a label on its own line
    top: addi r1, r0, N - 1   # two labels, one address
        beq r1, r0, end
        addi r1, r1, -1
        j top
    end: halt
    """
    p = assemble(src, MINI)
    assert p.labels == {"start": 0, "top": 0, "end": 4}
    assert p.words == [encode("addi", a=1, imm=31), encode("beq", b=1, a=0, imm=3),
                       encode("addi", a=1, b=1, imm=-1), encode("jal", imm=-3),
                       encode("halt")]
    assert p.lines == [5, 6, 7, 8, 9]
    assert "beq r1, r0, 4" in p.listing()


def test_expressions_and_numbers():
    assert words("addi r1, r0, 0x10 | 0b11\naddi r2, r0, -(1 << 4) + 3 * 2\n"
                 "addi r3, r0, ~0\nandi r4, r0, 100 // 7 % 5") == [
        encode("addi", a=1, imm=19), encode("addi", a=2, imm=-10),
        encode("addi", a=3, imm=-1), encode("andi", a=4, imm=4)]


def test_preset_symbols_make_one_source_for_both_presets():
    src = "addi r1, r0, HALVES*ROWS*ROW_CHUNKS\naddi r2, r0, ADC_CHUNKS"
    assert words(src, MINI) == [encode("addi", a=1, imm=32), encode("addi", a=2, imm=1)]
    assert words(src, FULL) == [encode("addi", a=1, imm=1024), encode("addi", a=2, imm=4)]
    assert PpuGeometry(FULL).symbols()["LANES_B"] == 128


def test_pseudo_instructions():
    assert words("nop") == [encode("addi")]
    assert words("mv r3, r4") == [encode("addi", a=3, b=4)]
    assert words("vmov v1, v2") == [encode("vor", a=1, b=2, c=2)]
    assert words("li r1, 5") == [encode("addi", a=1, imm=5)]
    assert words("li r1, -32768") == [encode("addi", a=1, imm=-32768)]
    assert words("li r1, 0x12345678") == [encode("lui", a=1, imm=0x1234),
                                          encode("ori", a=1, b=1, imm=0x5678)]
    assert words("li r1, -40000") == [encode("lui", a=1, imm=0xFFFF),
                                      encode("ori", a=1, b=1, imm=(-40000) & 0xFFFF)]
    # a label further down: always two words, so the addresses are known in pass 1
    p = assemble("li r1, end\nend: halt", MINI)
    assert p.words == [encode("lui", a=1), encode("ori", a=1, b=1, imm=2), 0]
    assert p.labels["end"] == 2


def test_lane_sizes_and_csr_names():
    assert decode(words("vadds v1, v2, v3")[0]).size == 0
    assert decode(words("vadds.b v1, v2, v3")[0]).size == 0
    assert decode(words("vadds.h v1, v2, v3")[0]).size == 1
    assert words("csrr r1, time\ncsrr r2, 1") == [encode("csrr", a=1, imm=2),
                                                  encode("csrr", a=2, imm=1)]


def test_every_instruction_round_trips():
    """One instance of every mnemonic (both lane sizes), through the
    disassembler and back."""
    lines = []
    for ins in ISA:
        ops = []
        for _name, kind, _ in ins.format.operands:
            ops.append({"r": "r7", "v": "v5", "mem": "-3(r9)", "target": "0"}.get(
                kind, {"u16": "65535", "csr": "2"}.get(ins.imm, "3")))
        for sfx in ([".b", ".h"] if ins.sized else [""]):
            lines.append(f"{ins.mnemonic}{sfx} {', '.join(ops)}")
    p = assemble("\n".join(lines), MINI)
    text = disassemble(p.words)
    assert assemble(text, MINI).words == p.words
    assert len({decode(w).instr.mnemonic for w in p.words}) == len(ISA)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_programs_round_trip(seed):
    rng = random.Random(seed)
    src = "\n".join(random_program(rng, PpuGeometry(MINI), 30))
    p = assemble(src, MINI)
    again = assemble(disassemble(p.words), MINI)
    assert again.words == p.words


def test_raw_words_round_trip():
    assert words(".word 0xfc000000\n.word -1") == [0xFC000000, 0xFFFF_FFFF]
    assert disassemble([0xFC000000]) == ".word 0xfc000000"


ERRORS = [
    ("vaddS v1, v2", "line 1: `vaddS v1, v2` : unknown mnemonic 'vaddS'; did you mean 'vadds'?"),
    ("nop\nnop\naddi r1, r2, 70000",
     "line 3: `addi r1, r2, 70000` : immediate 70000 out of range -32768..32767"),
    ("add r1, r2", "line 1: `add r1, r2` : add takes 3 operands (rd, rs1, rs2), got 2"),
    ("halt r1", "line 1: `halt r1` : halt takes 0 operands, got 1"),
    ("vout v1, v2", "line 1: `vout v1, v2` : vout takes 1 operand (vs), got 2"),
    ("add r1, r2, v3",
     "line 1: `add r1, r2, v3` : rs2: expected a scalar register r0..r15, got 'v3'"),
    ("vadd v8, v1, v2",
     "line 1: `vadd v8, v1, v2` : vd: expected a vector register v0..v7, got 'v8'"),
    ("add r16, r1, r2",
     "line 1: `add r16, r1, r2` : rd: expected a scalar register r0..r15, got 'r16'"),
    ("lw r1, 4[r2]",
     "line 1: `lw r1, 4[r2]` : imm(rs1): expected an address imm(rs1), got '4[r2]'"),
    ("lw r1, 40000(r2)", "line 1: `lw r1, 40000(r2)` : offset 40000 out of range -32768..32767"),
    ("andi r1, r2, -1", "line 1: `andi r1, r2, -1` : immediate -1 out of range 0..65535"),
    ("slli r1, r2, 32", "line 1: `slli r1, r2, 32` : immediate 32 out of range 0..31"),
    ("vmul v1, v2, v3, 16", "line 1: `vmul v1, v2, v3, 16` : shift 16 out of range 0..15"),
    ("csrr r1, clock", "line 1: `csrr r1, clock` : unknown symbol 'clock'; "
                       "status registers: cycle, adc_count, time"),
    ("csrr r1, 3", "line 1: `csrr r1, 3` : immediate 3 out of range 0..2"),
    ("beq r1, r2, lop\nloop: halt",
     "line 1: `beq r1, r2, lop` : unknown symbol 'lop'; did you mean 'loop'?"),
    ("beq r1, r2, 40000",
     "line 1: `beq r1, r2, 40000` : branch target 40000 is 40000 instructions away; "
     "allowed -32768..32767"),
    ("x: nop\nx: halt", "line 2: `x: halt` : label 'x' already defined on line 1"),
    ("ROWS: nop", "line 1: `ROWS: nop` : label 'ROWS' already defined (a predefined symbol)"),
    ("vadds.q v1, v2, v3", "line 1: `vadds.q v1, v2, v3` : unknown lane size '.q' in "
                           "'vadds.q'; allowed: .b (8-bit lanes), .h (16-bit lanes)"),
    ("add.h r1, r2, r3", "line 1: `add.h r1, r2, r3` : add takes no lane size suffix ('.h')"),
    (".equ N", "line 1: `.equ N` : .equ takes a name and a value: .equ NAME, expr"),
    (".equ N, 1\n.equ N, 2", "line 2: `.equ N, 2` : symbol 'N' already defined"),
    ("addi r1, r0, 1 +", "line 1: `addi r1, r0, 1 +` : cannot read '1 +' as a number or "
                         "expression"),
    ("addi r1, r0, 1 // 0", "line 1: `addi r1, r0, 1 // 0` : division by zero in '1 // 0'"),
    ("addi r1, r0, ROWZ", "line 1: `addi r1, r0, ROWZ` : unknown symbol 'ROWZ'; "
                          "did you mean 'ROWS'?"),
    ("li r1, 0x100000000",
     "line 1: `li r1, 0x100000000` : immediate 4294967296 out of range -2147483648..4294967295"),
    ("mv r1", "line 1: `mv r1` : mv takes 2 operands (rd, rs), got 1"),
    (".word 1, 2", "line 1: `.word 1, 2` : .word takes 1 operand (value), got 2"),
]


@pytest.mark.parametrize("src, message", ERRORS, ids=[e[0].splitlines()[-1] for e in ERRORS])
def test_error_messages(src, message):
    with pytest.raises(AsmError) as e:
        assemble(src, MINI)
    assert e.value.errors == [message]


def test_all_errors_at_once_in_line_order():
    with pytest.raises(AsmError) as e:
        assemble("addi r1, r0, 99999\nnop\nfoo r1\nadd r1, r2", MINI)
    assert [m.split(":")[0] for m in e.value.errors] == ["line 1", "line 3", "line 4"]
    assert str(e.value).count("\n") == 2


def test_program_too_large():
    with pytest.raises(AsmError, match=r"line 9: program of 9 words does not fit the "
                                       r"instruction memory of 8 words"):
        assemble("nop\n" * 8 + "halt", MINI, imem_words=8)


def test_program_is_assembled_once_and_handed_out_as_a_copy():
    from spikeloop.ppu.programs import program
    a = program("inference", MINI)
    a.words[0] ^= 1
    b = program("inference", MINI)
    assert b.words != a.words and b.words[0] == a.words[0] ^ 1
    with pytest.raises(ValueError, match="unknown PPU program 'nope'"):
        program("nope", MINI)
