"""The plasticity processor's (PPU's) instruction set, in one place.

Everything about the ISA lives here and nowhere else: the table :data:`ISA`
(mnemonic, format, opcode, function code, cycle count, semantics), the bit
fields of the 32-bit instruction word (:data:`FIELDS`), the geometry that maps
synapse rows, ADC samples and neurons onto vector lanes (:class:`PpuGeometry`),
encoding, decoding and disassembly.  The core (rtl/ppu.py) decodes with these
constants, the references (:mod:`spikeloop.model.ppu_sim`,
:mod:`spikeloop.model.digital.ppu`) execute them, the assembler
(:mod:`spikeloop.ppu.asm`) assembles with them, and docs/ppu.md shows the
tables that :mod:`spikeloop.ppu.docs` writes from them (a test keeps the two
equal).

Pure Python: no Amaranth, no torch.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from spikeloop.base.config import ChipConfig

#: scalar registers r0..r15 (32 bit; r0 reads 0, writes to it are dropped)
N_REGS = 16
#: vector registers v0..v7 (``ppu_vector_bits`` each)
N_VREGS = 8
XLEN = 32
XMASK = (1 << XLEN) - 1

# -- the instruction word ----------------------------------------------------------

#: bit fields of the 32-bit instruction word: name -> (lsb, width).  Not every
#: format uses every field; unused fields are written 0 and ignored by the core.
FIELDS: dict[str, tuple[int, int]] = {
    "op": (26, 6),      # opcode
    "a": (22, 4),       # rd / vd, or the stored / compared / streamed source
    "b": (18, 4),       # rs1 / va
    "c": (14, 4),       # rs2 / vb
    "d": (10, 4),       # vc, or the value register of vset
    "size": (9, 1),     # vector lanes: 0 = 8-bit lanes, 1 = 16-bit lanes
    "funct": (4, 5),    # vector ALU function (opcode VALU)
    "sh": (0, 4),       # vector shift / product shift 0..15
    "imm": (0, 16),     # 16-bit immediate (formats I, U, L, S, B, J)
}


def field_get(word: int, name: str) -> int:
    lsb, width = FIELDS[name]
    return (word >> lsb) & ((1 << width) - 1)


def field_put(name: str, value: int) -> int:
    lsb, width = FIELDS[name]
    if not 0 <= value < (1 << width):
        raise ValueError(f"field {name} = {value} does not fit {width} bits")
    return value << lsb


def sext(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


#: operand kinds of the assembly syntax -> what the assembler accepts
OPERAND_KINDS = {
    "r": "a scalar register r0..r15",
    "v": "a vector register v0..v7",
    "imm": "an immediate",
    "mem": "an address imm(rs1)",
    "target": "a branch target (label or instruction address)",
}


@dataclass(frozen=True)
class Format:
    """The assembly syntax of a format and the fields each operand goes to."""

    name: str
    #: (operand name as written in the docs, kind, field); a ``mem`` operand
    #: fills ``imm`` and the register field given
    operands: tuple[tuple[str, str, str], ...]
    #: fields written from the operands (the rest of the word is 0)
    fields: tuple[str, ...]


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("N", (), ("op",)),
    Format("R", (("rd", "r", "a"), ("rs1", "r", "b"), ("rs2", "r", "c")), ("op", "a", "b", "c")),
    Format("I", (("rd", "r", "a"), ("rs1", "r", "b"), ("imm", "imm", "imm")),
           ("op", "a", "b", "imm")),
    Format("U", (("rd", "r", "a"), ("imm", "imm", "imm")), ("op", "a", "imm")),
    Format("L", (("rd", "r", "a"), ("imm(rs1)", "mem", "b")), ("op", "a", "b", "imm")),
    Format("S", (("rs2", "r", "a"), ("imm(rs1)", "mem", "b")), ("op", "a", "b", "imm")),
    Format("B", (("rs1", "r", "b"), ("rs2", "r", "a"), ("target", "target", "imm")),
           ("op", "a", "b", "imm")),
    Format("J", (("rd", "r", "a"), ("target", "target", "imm")), ("op", "a", "imm")),
    Format("VL", (("vd", "v", "a"), ("imm(rs1)", "mem", "b")), ("op", "a", "b", "imm")),
    Format("VS", (("vs", "v", "a"), ("imm(rs1)", "mem", "b")), ("op", "a", "b", "imm")),
    Format("VO", (("vs", "v", "a"),), ("op", "a")),
    # vector ALU (opcode VALU): size and funct always written
    Format("V3", (("vd", "v", "a"), ("va", "v", "b"), ("vb", "v", "c")),
           ("op", "a", "b", "c", "size", "funct")),
    Format("V3S", (("vd", "v", "a"), ("va", "v", "b"), ("vb", "v", "c"), ("sh", "imm", "sh")),
           ("op", "a", "b", "c", "size", "funct", "sh")),
    Format("V2S", (("vd", "v", "a"), ("va", "v", "b"), ("sh", "imm", "sh")),
           ("op", "a", "b", "size", "funct", "sh")),
    Format("V4", (("vd", "v", "a"), ("va", "v", "b"), ("vb", "v", "c"), ("vc", "v", "d")),
           ("op", "a", "b", "c", "d", "size", "funct")),
    Format("VX", (("vd", "v", "a"), ("rs1", "r", "b")), ("op", "a", "b", "size", "funct")),
    Format("VG", (("rd", "r", "a"), ("va", "v", "b"), ("rs2", "r", "c")),
           ("op", "a", "b", "c", "size", "funct")),
    Format("VP", (("vd", "v", "a"), ("va", "v", "b"), ("rs1", "r", "c"), ("rs2", "r", "d")),
           ("op", "a", "b", "c", "d", "size", "funct")),
)}

#: immediate kinds: name -> (lo, hi, how the core extends it)
IMM_KINDS: dict[str, tuple[int, int, str]] = {
    "s16": (-32768, 32767, "sign-extended"),
    "u16": (0, 65535, "zero-extended"),
    "sh5": (0, 31, "shift amount"),
    "sh4": (0, 15, "shift amount"),
    "csr": (0, 2, "status register number"),
}

#: status registers that ``csrr`` reads (the assembler knows these names)
CSRS = {"cycle": 0, "adc_count": 1, "time": 2}

OP_VALU = 0x30


@dataclass(frozen=True)
class Instr:
    mnemonic: str
    fmt: str
    opcode: int
    #: vector ALU function code (opcode VALU), else None
    funct: int | None
    #: cycles the instruction takes (``out.ready`` stalls come on top, see ``stalls``)
    cycles: int
    semantics: str
    #: immediate kind of the ``imm``/``sh`` operand, if any
    imm: str | None = None
    #: has a lane size (``.b`` / ``.h`` suffix)
    sized: bool = False
    #: waits for ``out.ready``: one extra cycle per cycle that ``ready`` is low
    stalls: bool = False

    @property
    def format(self) -> Format:
        return FORMATS[self.fmt]

    def syntax(self) -> str:
        ops = ", ".join(o[0] for o in self.format.operands)
        name = self.mnemonic + (".{b,h}" if self.sized else "")
        return f"{name} {ops}".strip()

    def cycle_text(self) -> str:
        return f"{self.cycles} + stall" if self.stalls else str(self.cycles)

    def encoding_text(self) -> str:
        parts = [f"op={self.opcode:#04x}"]
        if self.funct is not None:
            parts.append(f"funct={self.funct}")
        return " ".join(parts)


def _valu(mn, funct, fmt, sem, imm=None):
    return Instr(mn, fmt, OP_VALU, funct, 1, sem, imm=imm, sized=True)


#: The instruction set.  ``w`` is the lane width (8 or 16, from the ``.b`` /
#: ``.h`` suffix), lanes are unsigned ``a``, ``b`` or signed ``sa``, ``sb``;
#: ``sat_s``/``sat_u`` clamp to the lane's signed / unsigned range; ``ea`` is
#: ``rs1 + sext(imm)`` (32 bit).
ISA: tuple[Instr, ...] = (
    Instr("halt", "N", 0x00, None, 1,
          "stop: running <- 0, halted <- 1, pc stays on the halt (the all-zero word is halt)"),
    # scalar ALU
    Instr("add", "R", 0x01, None, 1, "rd <- rs1 + rs2"),
    Instr("sub", "R", 0x02, None, 1, "rd <- rs1 - rs2"),
    Instr("and", "R", 0x03, None, 1, "rd <- rs1 & rs2"),
    Instr("or", "R", 0x04, None, 1, "rd <- rs1 | rs2"),
    Instr("xor", "R", 0x05, None, 1, "rd <- rs1 ^ rs2"),
    Instr("sll", "R", 0x06, None, 1, "rd <- rs1 << (rs2 & 31)"),
    Instr("srl", "R", 0x07, None, 1, "rd <- rs1 >> (rs2 & 31), logical"),
    Instr("sra", "R", 0x08, None, 1, "rd <- rs1 >> (rs2 & 31), arithmetic"),
    Instr("slt", "R", 0x09, None, 1, "rd <- 1 if rs1 < rs2 (signed) else 0"),
    Instr("sltu", "R", 0x0A, None, 1, "rd <- 1 if rs1 < rs2 (unsigned) else 0"),
    Instr("mul", "R", 0x0B, None, 1, "rd <- low 32 bits of rs1 * rs2"),
    Instr("addi", "I", 0x10, None, 1, "rd <- rs1 + imm", imm="s16"),
    Instr("andi", "I", 0x11, None, 1, "rd <- rs1 & imm", imm="u16"),
    Instr("ori", "I", 0x12, None, 1, "rd <- rs1 | imm", imm="u16"),
    Instr("xori", "I", 0x13, None, 1, "rd <- rs1 ^ imm", imm="u16"),
    Instr("slti", "I", 0x14, None, 1, "rd <- 1 if rs1 < imm (signed) else 0", imm="s16"),
    Instr("sltiu", "I", 0x15, None, 1,
          "rd <- 1 if rs1 < sext(imm) (unsigned compare) else 0", imm="s16"),
    Instr("slli", "I", 0x16, None, 1, "rd <- rs1 << imm", imm="sh5"),
    Instr("srli", "I", 0x17, None, 1, "rd <- rs1 >> imm, logical", imm="sh5"),
    Instr("srai", "I", 0x18, None, 1, "rd <- rs1 >> imm, arithmetic", imm="sh5"),
    Instr("lui", "U", 0x19, None, 1, "rd <- imm << 16", imm="u16"),
    Instr("csrr", "U", 0x1A, None, 1,
          "rd <- status register imm: 0 cycle (cycles since start, this one's index), "
          "1 adc_count (ADC samples in the buffer), 2 time (chip cycle counter, low 32 bits)",
          imm="csr"),
    # scalar memory
    Instr("lw", "L", 0x20, None, 2, "rd <- dmem word ea (mod dmem_words)", imm="s16"),
    Instr("sw", "S", 0x21, None, 1, "dmem word ea (mod dmem_words) <- rs2", imm="s16"),
    # control flow; targets are instruction addresses, taken mod imem_words
    Instr("beq", "B", 0x28, None, 1, "if rs1 == rs2: pc <- target", imm="s16"),
    Instr("bne", "B", 0x29, None, 1, "if rs1 != rs2: pc <- target", imm="s16"),
    Instr("blt", "B", 0x2A, None, 1, "if rs1 < rs2 (signed): pc <- target", imm="s16"),
    Instr("bge", "B", 0x2B, None, 1, "if rs1 >= rs2 (signed): pc <- target", imm="s16"),
    Instr("bltu", "B", 0x2C, None, 1, "if rs1 < rs2 (unsigned): pc <- target", imm="s16"),
    Instr("bgeu", "B", 0x2D, None, 1, "if rs1 >= rs2 (unsigned): pc <- target", imm="s16"),
    Instr("jal", "J", 0x2E, None, 1, "rd <- pc + 1; pc <- target", imm="s16"),
    Instr("jalr", "L", 0x2F, None, 1, "rd <- pc + 1; pc <- ea (mod imem_words)", imm="s16"),
    # vector ALU: one cycle each
    _valu("vadd", 0, "V3", "lane <- (a + b) mod 2**w"),
    _valu("vsub", 1, "V3", "lane <- (a - b) mod 2**w"),
    _valu("vadds", 2, "V3", "lane <- sat_s(sa + sb)"),
    _valu("vsubs", 3, "V3", "lane <- sat_s(sa - sb)"),
    _valu("vaddu", 4, "V3", "lane <- sat_u(a + b)"),
    _valu("vsubu", 5, "V3", "lane <- sat_u(a - b) (floor 0)"),
    _valu("vmul", 6, "V3S", "lane <- sat_s((sa * sb) >> sh), arithmetic shift of the full product",
          imm="sh4"),
    _valu("vmulu", 7, "V3S", "lane <- sat_u((a * b) >> sh)", imm="sh4"),
    _valu("vand", 8, "V3", "lane <- a & b"),
    _valu("vor", 9, "V3", "lane <- a | b"),
    _valu("vxor", 10, "V3", "lane <- a ^ b"),
    _valu("vsll", 11, "V2S", "lane <- (a << sh) mod 2**w", imm="sh4"),
    _valu("vsrl", 12, "V2S", "lane <- a >> sh, logical", imm="sh4"),
    _valu("vsra", 13, "V2S", "lane <- sa >> sh, arithmetic", imm="sh4"),
    _valu("vmin", 14, "V3", "lane <- min(sa, sb)"),
    _valu("vmax", 15, "V3", "lane <- max(sa, sb)"),
    _valu("vminu", 16, "V3", "lane <- min(a, b)"),
    _valu("vmaxu", 17, "V3", "lane <- max(a, b)"),
    _valu("vcmpeq", 18, "V3", "lane <- all ones if a == b else 0"),
    _valu("vcmpgt", 19, "V3", "lane <- all ones if sa > sb else 0"),
    _valu("vcmpgtu", 20, "V3", "lane <- all ones if a > b else 0"),
    _valu("vsel", 21, "V4", "lane <- a if lane of vc != 0 else b"),
    _valu("vsplat", 22, "VX", "every lane <- rs1 mod 2**w"),
    _valu("vget", 23, "VG", "rd <- lane (rs2 mod lanes) of va, zero-extended"),
    _valu("vset", 24, "VP", "vd <- va with lane (rs1 mod lanes) <- rs2 mod 2**w"),
    # vector memory and the chip's ports
    Instr("vld", "VL", 0x31, None, 2, "vd <- dmem vector ea (mod dmem_vectors)", imm="s16"),
    Instr("vst", "VS", 0x32, None, 1, "dmem vector ea (mod dmem_vectors) <- vs", imm="s16"),
    Instr("vlw", "VL", 0x33, None, 2,
          "vd <- weights of row chunk ea, one column per 8-bit lane (0 beyond the row)",
          imm="s16"),
    Instr("vll", "VL", 0x34, None, 2,
          "vd <- labels of row chunk ea, one column per 8-bit lane (0 beyond the row)",
          imm="s16"),
    Instr("vsw", "VS", 0x35, None, 2,
          "weights of row chunk ea <- low weight_bits of the 8-bit lanes of vs; labels kept",
          imm="s16"),
    Instr("vsl", "VS", 0x36, None, 2,
          "labels of row chunk ea <- low label_bits of the 8-bit lanes of vs; weights kept",
          imm="s16"),
    Instr("vadc", "VL", 0x37, None, 2,
          "vd <- ADC codes of sample chunk ea, one neuron per ADC lane (0 beyond)", imm="s16"),
    Instr("vout", "VO", 0x38, None, 1,
          "stream vs to external memory (out.valid until out.ready)", stalls=True),
    Instr("vrst", "VS", 0x39, None, 1,
          "pulse nreset for neuron chunk ea: neuron k*lanes8 + i where 8-bit lane i of vs != 0",
          imm="s16"),
)

BY_MNEMONIC: dict[str, Instr] = {i.mnemonic: i for i in ISA}
BY_OPCODE: dict[int, Instr] = {i.opcode: i for i in ISA if i.funct is None}
BY_FUNCT: dict[int, Instr] = {i.funct: i for i in ISA if i.funct is not None}
assert len(BY_MNEMONIC) == len(ISA)
assert len(BY_OPCODE) + len(BY_FUNCT) == len(ISA)

#: the number of instructions each mnemonic needs in each category (docs)
CATEGORIES = {
    "scalar": [i.mnemonic for i in ISA if i.opcode < 0x20],
    "memory and control": [i.mnemonic for i in ISA if 0x20 <= i.opcode < 0x30],
    "vector ALU": [i.mnemonic for i in ISA if i.opcode == OP_VALU],
    "vector memory and ports": [i.mnemonic for i in ISA if i.opcode > OP_VALU],
}


# -- geometry: the chip seen from the PPU --------------------------------------

def _clog2(n: int) -> int:
    return max(0, (n - 1).bit_length())


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class PpuGeometry:
    """Sizes of the PPU and how the chip's rows, samples and neurons map to lanes.

    ``imem_words`` (instruction words) and ``dmem_words`` (32-bit data words)
    are parameters of the core; the defaults (2048 + 2048 words = 16 KiB) are
    the SRAM of one PPU (docs/paper.md, "The chip").  Both powers of two; ``dmem_words`` a
    multiple of the words per vector."""

    cfg: ChipConfig
    imem_words: int = 2048
    dmem_words: int = 2048

    def __post_init__(self):
        for name in ("imem_words", "dmem_words"):
            v = getattr(self, name)
            if not isinstance(v, int) or not _pow2(v) or not 4 <= v <= 1 << 16:
                raise ValueError(f"PPU {name} = {v!r} is not allowed; allowed: a power of "
                                 "two in 4..65536")
        if self.dmem_words % self.vector_words:
            raise ValueError(
                f"PPU dmem_words = {self.dmem_words} must be a multiple of the "
                f"{self.vector_words} words of one vector (ppu_vector_bits = {self.vector_bits})")

    # vector unit
    @property
    def vector_bits(self) -> int:
        return self.cfg.ppu_vector_bits

    def lanes(self, w: int) -> int:
        return self.vector_bits // w

    @property
    def vector_words(self) -> int:
        return self.vector_bits // XLEN

    @property
    def dmem_vectors(self) -> int:
        return self.dmem_words // self.vector_words

    @property
    def pc_bits(self) -> int:
        return _clog2(self.imem_words)

    # synapse rows: address = half | row | chunk (chunk in the low bits)
    @property
    def row_chunks(self) -> int:
        """Chunks of ``lanes(8)`` columns per synapse row."""
        return -(-self.cfg.columns_per_half // self.lanes(8))

    @property
    def row_chunk_bits(self) -> int:
        return _clog2(self.row_chunks)

    @property
    def row_bits(self) -> int:
        return _clog2(self.cfg.rows_per_half)

    @property
    def half_bits(self) -> int:
        return _clog2(self.cfg.n_halves)

    @property
    def row_addr_bits(self) -> int:
        return self.row_chunk_bits + self.row_bits + self.half_bits

    def row_address(self, half: int, row: int, chunk: int = 0) -> int:
        return chunk | (row << self.row_chunk_bits) | (
            half << (self.row_chunk_bits + self.row_bits))

    def split_row_address(self, ea: int) -> tuple[int, int, int, bool]:
        """(half, row, chunk, in_range) of a row address (low ``row_addr_bits`` bits)."""
        chunk = ea & ((1 << self.row_chunk_bits) - 1)
        row = (ea >> self.row_chunk_bits) & ((1 << self.row_bits) - 1)
        half = (ea >> (self.row_chunk_bits + self.row_bits)) & ((1 << self.half_bits) - 1)
        ok = (chunk < self.row_chunks and row < self.cfg.rows_per_half
              and half < self.cfg.n_halves)
        return half, row, chunk, ok

    # ADC samples: address = sample | chunk
    @property
    def adc_lane_bits(self) -> int:
        return 8 if self.cfg.adc_bits <= 8 else 16

    @property
    def adc_lanes(self) -> int:
        return self.lanes(self.adc_lane_bits)

    @property
    def adc_chunks(self) -> int:
        return -(-self.cfg.n_neurons // self.adc_lanes)

    @property
    def adc_chunk_bits(self) -> int:
        return _clog2(self.adc_chunks)

    @property
    def sample_bits(self) -> int:
        return max(1, _clog2(self.cfg.adc_buffer_depth))

    def split_adc_address(self, ea: int) -> tuple[int, int, bool]:
        chunk = ea & ((1 << self.adc_chunk_bits) - 1)
        sample = (ea >> self.adc_chunk_bits) & ((1 << self.sample_bits) - 1)
        return sample, chunk, chunk < self.adc_chunks and sample < self.cfg.adc_buffer_depth

    # neuron resets: address = chunk
    @property
    def neuron_chunks(self) -> int:
        return -(-self.cfg.n_neurons // self.lanes(8))

    @property
    def neuron_chunk_bits(self) -> int:
        return _clog2(self.neuron_chunks)

    def symbols(self) -> dict[str, int]:
        """Constants the assembler predefines for a program on this geometry."""
        c = self.cfg
        return {
            "ROWS": c.rows_per_half, "COLS": c.columns_per_half, "HALVES": c.n_halves,
            "NEURONS": c.n_neurons, "WEIGHT_MAX": c.weight_max,
            "LABEL_MAX": (1 << c.label_bits) - 1, "ADC_DEPTH": c.adc_buffer_depth,
            "LANES_B": self.lanes(8), "LANES_H": self.lanes(16),
            "ROW_CHUNKS": self.row_chunks, "ROW_CHUNK_BITS": self.row_chunk_bits,
            "ROW_BITS": self.row_bits, "ADC_CHUNKS": self.adc_chunks,
            "ADC_CHUNK_BITS": self.adc_chunk_bits, "NEURON_CHUNKS": self.neuron_chunks,
            "VECTOR_WORDS": self.vector_words, "DMEM_WORDS": self.dmem_words,
            "DMEM_VECTORS": self.dmem_vectors, "IMEM_WORDS": self.imem_words,
        }


def chip_geometry(cfg: ChipConfig) -> PpuGeometry:
    """The geometry of the PPU inside the chip's top level (rtl/top.py): the
    default memories, 2048 + 2048 words (the 16 KiB SRAM of docs/paper.md, "The chip")."""
    return PpuGeometry(cfg)


def out_buffer_vectors(cfg: ChipConfig) -> int:
    """Vectors the top level's output buffer (the PPU's stream to external
    memory, read by the host) holds: the power of two that fits one vector per
    ADC chunk of every sample of a full ADC buffer (trace recording of a whole
    run), at least 16; ``cfg.ppu_out_vectors`` where a variant sets it."""
    if cfg.ppu_out_vectors:
        return cfg.ppu_out_vectors
    g = chip_geometry(cfg)
    need = max(16, cfg.adc_buffer_depth * g.adc_chunks)
    return 1 << (need - 1).bit_length()


# -- encoding and decoding ------------------------------------------------------

def imm_range(kind: str) -> tuple[int, int]:
    lo, hi, _ = IMM_KINDS[kind]
    return lo, hi


def encode(mnemonic: str, size: int = 0, **operands: int) -> int:
    """The word of one instruction.  ``operands`` by field name (``a``, ``b``,
    ``c``, ``d``, ``imm``, ``sh``); the immediate as a signed or unsigned
    value within its kind's range."""
    ins = BY_MNEMONIC[mnemonic]
    word = field_put("op", ins.opcode)
    if ins.funct is not None:
        word |= field_put("funct", ins.funct) | field_put("size", size)
    for fld in ins.format.fields:
        if fld in ("op", "funct", "size"):
            continue
        value = operands.get(fld, 0)
        if fld in ("imm", "sh") and ins.imm is not None:
            lo, hi = imm_range(ins.imm)
            if not lo <= value <= hi:
                raise ValueError(f"{mnemonic}: immediate {value} out of range {lo}..{hi}")
            value &= (1 << FIELDS[fld][1]) - 1
        word |= field_put(fld, value)
    extra = set(operands) - set(ins.format.fields)
    if extra:
        raise ValueError(f"{mnemonic}: fields {sorted(extra)} are not part of format {ins.fmt}")
    return word


@dataclass(frozen=True)
class Decoded:
    word: int
    instr: Instr | None     # None: an undefined opcode or function (executes as halt)
    a: int
    b: int
    c: int
    d: int
    size: int
    sh: int
    imm: int                # raw 16 bits

    @property
    def simm(self) -> int:
        return sext(self.imm, 16)

    @property
    def w(self) -> int:
        return 16 if self.size else 8


@functools.lru_cache(maxsize=1 << 16)
def decode(word: int) -> Decoded:
    """The fields of instruction ``word`` (kept: programs decode the same words
    again and again)."""
    word &= XMASK
    op = field_get(word, "op")
    ins = BY_FUNCT.get(field_get(word, "funct")) if op == OP_VALU else BY_OPCODE.get(op)
    return Decoded(word, ins, *(field_get(word, f) for f in ("a", "b", "c", "d", "size", "sh",
                                                               "imm")))


def _imm_value(ins: Instr, dec: Decoded) -> int:
    if ins.imm == "sh4":
        return dec.sh
    return dec.simm if IMM_KINDS[ins.imm][2] == "sign-extended" else dec.imm


def disassemble_word(word: int, pc: int = 0) -> str:
    """One instruction as the assembler reads it back (branch targets as absolute
    instruction addresses; vector register fields taken mod 8).  Undefined
    words come out as ``.word 0x...``."""
    dec = decode(word)
    ins = dec.instr
    if ins is None:
        return f".word {word:#010x}"
    name = ins.mnemonic + ((".h" if dec.size else ".b") if ins.sized else "")
    ops = []
    for _, kind, fld in ins.format.operands:
        if kind == "r":
            ops.append(f"r{getattr(dec, fld)}")
        elif kind == "v":
            ops.append(f"v{getattr(dec, fld) & (N_VREGS - 1)}")
        elif kind == "mem":
            ops.append(f"{dec.simm}(r{getattr(dec, fld)})")
        elif kind == "target":
            ops.append(str(pc + dec.simm))
        else:
            ops.append(str(_imm_value(ins, dec)))
    return f"{name} {', '.join(ops)}".strip()
