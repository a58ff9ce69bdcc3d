"""The plasticity processor (PPU): its instruction set, in one place, and its
instruction-level reference simulator.

Everything about the ISA lives here and nowhere else: the table :data:`ISA`
(mnemonic, format, opcode, function code, cycle count, semantics), the bit
fields of the 32-bit instruction word (:data:`FIELDS`), the geometry that maps
synapse rows, ADC samples and neurons onto vector lanes (:class:`PpuGeometry`),
encoding, decoding and disassembly.  rtl/ppu.py decodes with these constants,
spikeloop/ppu_asm.py assembles with them, docs/ppu.md shows the table that
:func:`isa_markdown` writes from them (a test keeps the two equal).

:class:`PpuSim` executes one instruction at a time with the cycle count of each
instruction, against Python models of the memories the core reaches through
its ports (synapse rows, ADC sample buffer) and of the environment (the
output stream's ``ready``, the ADC's sample count and the chip's cycle counter,
each a function of the PPU's cycle).  :class:`RowPortModel` and
:class:`AdcPortModel` are the same memories seen cycle by cycle through the
RTL's ports (one cycle of read latency), for testbenches.

Pure Python: no Amaranth import.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from spikeloop.config import ChipConfig

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
    the SRAM of one PPU in PAPER.md.  Both powers of two; ``dmem_words`` a
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
    default memories, 2048 + 2048 words (the 16 KiB SRAM of PAPER.md)."""
    return PpuGeometry(cfg)


def out_buffer_vectors(cfg: ChipConfig) -> int:
    """Vectors the top level's output buffer (the PPU's stream to external
    memory, read by the host) holds: the power of two that fits one vector per
    ADC chunk of every sample of a full ADC buffer (trace recording of a whole
    run), at least 16."""
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


def decode(word: int) -> Decoded:
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


def isa_markdown() -> str:
    """The encoding table of docs/ppu.md (generated; tests/test_ppu_model.py
    checks that the document holds exactly this)."""
    lines = ["| mnemonic | syntax | format | encoding | immediate | cycles | semantics |",
             "|---|---|---|---|---|---|---|"]
    for ins in ISA:
        imm = "-"
        if ins.imm:
            lo, hi, how = IMM_KINDS[ins.imm]
            imm = f"{lo}..{hi} ({how})"
        lines.append(f"| `{ins.mnemonic}` | `{ins.syntax()}` | {ins.fmt} | "
                     f"{ins.encoding_text()} | {imm} | {ins.cycle_text()} | "
                     f"{ins.semantics.replace('|', '/')} |")
    return "\n".join(lines)


def formats_markdown() -> str:
    lines = ["| format | operands -> fields |", "|---|---|"]
    for f in FORMATS.values():
        ops = ", ".join(f"{name} -> {fld}" for name, _, fld in f.operands) or "(none)"
        lines.append(f"| {f.name} | {ops} |")
    return "\n".join(lines)


def fields_markdown() -> str:
    lines = ["| field | bits |", "|---|---|"]
    for name, (lsb, width) in FIELDS.items():
        lines.append(f"| {name} | [{lsb + width - 1}:{lsb}] |")
    return "\n".join(lines)


# -- lane arithmetic (shared by the simulator and the tests) ----------------------

def unpack_lanes(value: int, w: int, n: int) -> list[int]:
    mask = (1 << w) - 1
    return [(value >> (i * w)) & mask for i in range(n)]


def pack_lanes(lanes, w: int) -> int:
    mask = (1 << w) - 1
    out = 0
    for i, v in enumerate(lanes):
        out |= (int(v) & mask) << (i * w)
    return out


def _sat_s(x: int, w: int) -> int:
    return max(-(1 << (w - 1)), min((1 << (w - 1)) - 1, x))


def _sat_u(x: int, w: int) -> int:
    return max(0, min((1 << w) - 1, x))


def valu_lane(mnemonic: str, a: int, b: int, c: int, w: int, sh: int) -> int:
    """One lane of a vector ALU operation (unsigned lanes in and out)."""
    mask = (1 << w) - 1
    sa, sb = sext(a, w), sext(b, w)
    ones = mask
    r = {
        "vadd": lambda: a + b,
        "vsub": lambda: a - b,
        "vadds": lambda: _sat_s(sa + sb, w),
        "vsubs": lambda: _sat_s(sa - sb, w),
        "vaddu": lambda: _sat_u(a + b, w),
        "vsubu": lambda: _sat_u(a - b, w),
        "vmul": lambda: _sat_s((sa * sb) >> sh, w),
        "vmulu": lambda: _sat_u((a * b) >> sh, w),
        "vand": lambda: a & b,
        "vor": lambda: a | b,
        "vxor": lambda: a ^ b,
        "vsll": lambda: a << sh,
        "vsrl": lambda: a >> sh,
        "vsra": lambda: sa >> sh,
        "vmin": lambda: min(sa, sb),
        "vmax": lambda: max(sa, sb),
        "vminu": lambda: min(a, b),
        "vmaxu": lambda: max(a, b),
        "vcmpeq": lambda: ones if a == b else 0,
        "vcmpgt": lambda: ones if sa > sb else 0,
        "vcmpgtu": lambda: ones if a > b else 0,
        "vsel": lambda: a if c else b,
    }[mnemonic]()
    return r & mask


# -- memories seen through the RTL's ports (for testbenches) ---------------------

class SynapseRows:
    """The synapse arrays as the PPU sees them: ``rows[half][row][col] = (weight,
    label)``."""

    def __init__(self, cfg: ChipConfig, init=None):
        self.cfg = cfg
        C, R = cfg.columns_per_half, cfg.rows_per_half
        self.rows = [[[(0, 0)] * C for _ in range(R)] for _ in range(cfg.n_halves)]
        if init is not None:
            for h in range(cfg.n_halves):
                for r in range(R):
                    self.rows[h][r] = [tuple(s) for s in init[h][r]]

    def copy(self) -> SynapseRows:
        return SynapseRows(self.cfg, self.rows)

    def weights(self, half: int, row: int) -> list[int]:
        return [w for w, _ in self.rows[half][row]]

    def labels(self, half: int, row: int) -> list[int]:
        return [lab for _, lab in self.rows[half][row]]


class RowPortModel:
    """The synapse memory behind the PPU's ``syn`` port, cycle by cycle:
    ``tick(half, row, re, we, wdata)`` returns ``rdata`` of this cycle (the row
    read in the previous cycle, as it was before a write in that cycle), then
    applies the write (``we``: a column mask, ``wdata``: (weight, label) per
    column)."""

    def __init__(self, rows: SynapseRows):
        self.mem = rows
        self.rdata = [(0, 0)] * rows.cfg.columns_per_half

    def tick(self, half: int, row: int, re: int, we: int, wdata) -> list[tuple[int, int]]:
        out = self.rdata
        cfg = self.mem.cfg
        ok = half < cfg.n_halves and row < cfg.rows_per_half
        if re:
            self.rdata = list(self.mem.rows[half][row]) if ok else [(0, 0)] * len(out)
        if we and ok:
            cur = list(self.mem.rows[half][row])
            for c in range(cfg.columns_per_half):
                if (we >> c) & 1:
                    cur[c] = tuple(wdata[c])
            self.mem.rows[half][row] = cur
        return out


class AdcPortModel:
    """The ADC sample buffer behind the PPU's ``adc`` port: ``samples[s][n]``
    codes; ``tick(addr, re)`` returns the codes read in the previous cycle."""

    def __init__(self, cfg: ChipConfig, samples):
        self.cfg = cfg
        self.samples = samples
        self.rdata = [0] * cfg.n_neurons

    def tick(self, addr: int, re: int) -> list[int]:
        out = self.rdata
        if re:
            self.rdata = (list(self.samples[addr]) if addr < len(self.samples)
                          else [0] * self.cfg.n_neurons)
        return out


# -- the instruction-level simulator ---------------------------------------------

class PpuError(RuntimeError):
    pass


#: the simulator gives up on a ``vout`` that waits longer than this for ``ready``
STALL_LIMIT = 1_000_000


@dataclass
class Retired:
    """One executed instruction: where, when, how long, and the state after it."""

    pc: int
    word: int
    start: int          # PPU cycle of its first cycle (cycles since start)
    cycles: int
    regs: list[int]
    vregs: list[int]
    completed: bool = True   # False: abandoned by a stop before its last cycle

    def text(self) -> str:
        return disassemble_word(self.word, self.pc)


@dataclass
class Environment:
    """What the PPU reads from outside, as functions of its cycle index
    (cycles since start): ``out.ready``, the ADC's sample count, the chip time."""

    ready: Callable[[int], bool] = lambda cycle: True
    adc_count: Callable[[int], int] = lambda cycle: 0
    time: Callable[[int], int] = lambda cycle: cycle


@dataclass
class PpuSim:
    """Instruction-level reference of the PPU.

    State: ``pc``, ``regs`` (16 x 32 bit, ``regs[0]`` stays 0), ``vregs`` (8
    ints of ``ppu_vector_bits``), ``imem``, ``dmem`` (32-bit words), ``syn``
    (:class:`SynapseRows`), ``adc`` (samples x neurons codes), ``running``,
    ``halted``, ``cycle`` (cycles since the last start).  Effects visible
    outside: ``stream`` ((cycle, vector) per transfer), ``resets`` ((cycle,
    neuron mask) per ``vrst``), the synapse rows."""

    geom: PpuGeometry
    env: Environment = field(default_factory=Environment)
    syn: SynapseRows | None = None
    adc: list | None = None

    def __post_init__(self):
        g, cfg = self.geom, self.geom.cfg
        if self.syn is None:
            self.syn = SynapseRows(cfg)
        if self.adc is None:
            self.adc = [[0] * cfg.n_neurons for _ in range(cfg.adc_buffer_depth)]
        self.imem = [0] * g.imem_words
        self.dmem = [0] * g.dmem_words
        self.regs = [0] * N_REGS
        self.vregs = [0] * N_VREGS
        self.pc = 0
        self.running = False
        self.halted = False
        self.cycle = 0
        self.stream: list[tuple[int, int]] = []
        self.resets: list[tuple[int, int]] = []

    @classmethod
    def for_config(cls, cfg: ChipConfig, **kw) -> PpuSim:
        geo = {k: kw.pop(k) for k in ("imem_words", "dmem_words") if k in kw}
        return cls(PpuGeometry(cfg, **geo), **kw)

    # -- host side ----------------------------------------------------------------
    def load(self, words, base: int = 0) -> None:
        if base + len(words) > self.geom.imem_words:
            raise PpuError(f"program of {len(words)} words at {base} does not fit the "
                           f"{self.geom.imem_words}-word instruction memory")
        for i, w in enumerate(words):
            self.imem[base + i] = int(w) & XMASK

    def start(self) -> None:
        self.pc, self.cycle, self.running, self.halted = 0, 0, True, False

    # -- vectors ------------------------------------------------------------------
    def _lanes(self, v: int, w: int) -> list[int]:
        return unpack_lanes(v, w, self.geom.lanes(w))

    def vector_dmem(self, index: int) -> int:
        n = self.geom.vector_words
        return pack_lanes(self.dmem[index * n:(index + 1) * n], XLEN)

    # -- execution ----------------------------------------------------------------
    def step(self, stop_at: int | None = None) -> Retired:
        """Execute the instruction at ``pc``.  ``stop_at``: the host's stop
        arrives in that PPU cycle; the instruction completes if that cycle is its
        last, else it is abandoned; either way the core stops afterwards."""
        if not self.running:
            raise PpuError("the PPU is not running")
        pc, start = self.pc, self.cycle
        dec = decode(self.imem[pc])
        ins = dec.instr
        mn = ins.mnemonic if ins else "halt"
        cycles = ins.cycles if ins else 1
        abandoned = False
        if ins is not None and ins.stalls:
            t = start
            while not self.env.ready(t):
                if stop_at is not None and t >= stop_at:
                    abandoned = True
                    break
                t += 1
                if t - start > STALL_LIMIT:
                    raise PpuError(f"{mn} at pc {pc} waited more than {STALL_LIMIT} cycles "
                                   "for out.ready")
            cycles = t - start + 1
        last = start + cycles - 1
        if stop_at is not None and (abandoned or start <= stop_at < last):
            # abandoned: no effect, the pc stays on it
            self.cycle = stop_at + 1
            self.running = False
            return Retired(pc, dec.word, start, stop_at - start + 1, list(self.regs),
                           list(self.vregs), completed=False)
        self._execute(mn, dec, start, last)
        self.cycle = last + 1
        if stop_at is not None and stop_at == last:
            self.running = False
        return Retired(pc, dec.word, start, cycles, list(self.regs), list(self.vregs))

    def run(self, max_cycles: int = 100_000, stop_at: int | None = None) -> list[Retired]:
        """Run from the current state until halt, stop, or ``max_cycles`` cycles
        since start (the instruction that crosses the limit still completes)."""
        trace = []
        while self.running and self.cycle < max_cycles:
            trace.append(self.step(stop_at))
        return trace

    def _wreg(self, r: int, v: int) -> None:
        if r:
            self.regs[r] = v & XMASK

    def _execute(self, mn: str, dec: Decoded, start: int, last: int) -> None:
        g, cfg = self.geom, self.geom.cfg
        R = self.regs
        a, b, c = dec.a, dec.b, dec.c
        rs1, rs2 = R[b], R[c]
        simm = dec.simm
        ea = (R[b] + simm) & XMASK
        next_pc = (self.pc + 1) % g.imem_words

        def s32(x):
            return sext(x, 32)

        if mn == "halt":
            self.running, self.halted = False, True
            return
        scalar = {
            "add": lambda: rs1 + rs2, "sub": lambda: rs1 - rs2, "and": lambda: rs1 & rs2,
            "or": lambda: rs1 | rs2, "xor": lambda: rs1 ^ rs2,
            "sll": lambda: rs1 << (rs2 & 31), "srl": lambda: rs1 >> (rs2 & 31),
            "sra": lambda: s32(rs1) >> (rs2 & 31),
            "slt": lambda: int(s32(rs1) < s32(rs2)), "sltu": lambda: int(rs1 < rs2),
            "mul": lambda: rs1 * rs2,
            "addi": lambda: rs1 + simm, "andi": lambda: rs1 & dec.imm,
            "ori": lambda: rs1 | dec.imm, "xori": lambda: rs1 ^ dec.imm,
            "slti": lambda: int(s32(rs1) < simm), "sltiu": lambda: int(rs1 < (simm & XMASK)),
            "slli": lambda: rs1 << (dec.imm & 31), "srli": lambda: rs1 >> (dec.imm & 31),
            "srai": lambda: s32(rs1) >> (dec.imm & 31),
            "lui": lambda: dec.imm << 16,
        }
        if mn in scalar:
            self._wreg(a, scalar[mn]())
        elif mn == "csrr":
            val = {0: start, 1: self.env.adc_count(start), 2: self.env.time(start)}.get(dec.imm,
                                                                                           0)
            self._wreg(a, val)
        elif mn == "lw":
            self._wreg(a, self.dmem[ea % g.dmem_words])
        elif mn == "sw":
            self.dmem[ea % g.dmem_words] = R[a]
        elif mn in ("beq", "bne", "blt", "bge", "bltu", "bgeu"):
            x, y = R[b], R[a]
            taken = {"beq": x == y, "bne": x != y, "blt": s32(x) < s32(y),
                     "bge": s32(x) >= s32(y), "bltu": x < y, "bgeu": x >= y}[mn]
            if taken:
                next_pc = (self.pc + simm) % g.imem_words
        elif mn == "jal":
            self._wreg(a, next_pc)
            next_pc = (self.pc + simm) % g.imem_words
        elif mn == "jalr":
            target = ea % g.imem_words
            self._wreg(a, next_pc)
            next_pc = target
        elif dec.instr is not None and dec.instr.opcode == OP_VALU:
            self._valu(mn, dec)
        elif mn == "vld":
            self.vregs[a & 7] = self.vector_dmem(ea % g.dmem_vectors)
        elif mn == "vst":
            n = g.vector_words
            base = (ea % g.dmem_vectors) * n
            self.dmem[base:base + n] = unpack_lanes(self.vregs[a & 7], XLEN, n)
        elif mn in ("vlw", "vll"):
            half, row, chunk, ok = g.split_row_address(ea)
            lanes = [0] * g.lanes(8)
            if ok:
                syn = self.syn.rows[half][row]
                for i in range(g.lanes(8)):
                    col = chunk * g.lanes(8) + i
                    if col < cfg.columns_per_half:
                        lanes[i] = syn[col][0 if mn == "vlw" else 1]
            self.vregs[a & 7] = pack_lanes(lanes, 8)
        elif mn in ("vsw", "vsl"):
            half, row, chunk, ok = g.split_row_address(ea)
            if ok:
                lanes = self._lanes(self.vregs[a & 7], 8)
                syn = list(self.syn.rows[half][row])
                for i in range(g.lanes(8)):
                    col = chunk * g.lanes(8) + i
                    if col < cfg.columns_per_half:
                        w, lab = syn[col]
                        if mn == "vsw":
                            w = lanes[i] & cfg.weight_max
                        else:
                            lab = lanes[i] & ((1 << cfg.label_bits) - 1)
                        syn[col] = (w, lab)
                self.syn.rows[half][row] = syn
        elif mn == "vadc":
            sample, chunk, ok = g.split_adc_address(ea)
            n = g.adc_lanes
            lanes = [0] * n
            if ok:
                codes = self.adc[sample]
                for i in range(n):
                    nrn = chunk * n + i
                    if nrn < cfg.n_neurons:
                        lanes[i] = codes[nrn]
            self.vregs[a & 7] = pack_lanes(lanes, g.adc_lane_bits)
        elif mn == "vout":
            self.stream.append((last, self.vregs[a & 7]))
        elif mn == "vrst":
            chunk = ea & ((1 << g.neuron_chunk_bits) - 1)
            if chunk < g.neuron_chunks:
                lanes = self._lanes(self.vregs[a & 7], 8)
                mask = 0
                for i, v in enumerate(lanes):
                    nrn = chunk * g.lanes(8) + i
                    if v and nrn < cfg.n_neurons:
                        mask |= 1 << nrn
                if mask:
                    self.resets.append((start, mask))
        else:  # pragma: no cover - every mnemonic is handled above
            raise PpuError(f"no semantics for {mn}")
        self.pc = next_pc

    def _valu(self, mn: str, dec: Decoded) -> None:
        w = dec.w
        n = self.geom.lanes(w)
        V = self.vregs
        va = self._lanes(V[dec.b & 7], w)
        if mn == "vsplat":
            V[dec.a & 7] = pack_lanes([self.regs[dec.b]] * n, w)
        elif mn == "vget":
            self._wreg(dec.a, va[self.regs[dec.c] & (n - 1)])
        elif mn == "vset":
            lanes = list(va)
            lanes[self.regs[dec.c] & (n - 1)] = self.regs[dec.d]
            V[dec.a & 7] = pack_lanes(lanes, w)
        else:
            vb = self._lanes(V[dec.c & 7], w)
            vc = self._lanes(V[dec.d & 7], w)
            V[dec.a & 7] = pack_lanes(
                [valu_lane(mn, x, y, z, w, dec.sh) for x, y, z in zip(va, vb, vc, strict=True)],
                w)


def main(argv=None) -> int:
    """``python -m spikeloop.model.ppu --write-docs docs/ppu.md``: rewrite the
    generated tables of the ISA document between their markers."""
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(prog="python -m spikeloop.model.ppu")
    p.add_argument("--write-docs", metavar="PATH", required=True)
    args = p.parse_args(argv)
    path = Path(args.write_docs)
    path.write_text(render_docs(path.read_text()))
    print(f"wrote the ISA tables into {path}")
    return 0


#: generated sections of docs/ppu.md: marker name -> generator
DOC_SECTIONS = {"isa": isa_markdown, "formats": formats_markdown, "fields": fields_markdown}


def render_docs(text: str) -> str:
    """``text`` with every ``<!-- begin NAME -->...<!-- end NAME -->`` section
    replaced by the generated table."""
    for name, gen in DOC_SECTIONS.items():
        begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise ValueError(f"markers {begin} / {end} missing")
        text = text[:i + len(begin)] + "\n" + gen() + "\n" + text[j:]
    return text


if __name__ == "__main__":   # pragma: no cover
    raise SystemExit(main())
