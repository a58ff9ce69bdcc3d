"""The PPU's instruction-level reference simulator.

:class:`PpuSim` executes one instruction at a time with the cycle count of each
instruction (the table of :mod:`spikeloop.base.isa`), against Python models of
the memories the core reaches through its ports (synapse rows, ADC sample
buffer) and of the environment (the output stream's ``ready``, the ADC's sample
count and the chip's cycle counter, each a function of the PPU's cycle).
:class:`RowPortModel` and :class:`AdcPortModel` are the same memories seen
cycle by cycle through the RTL's ports (one cycle of read latency), for
testbenches.  The cycle-level reference of the core inside the chip is
:class:`spikeloop.model.digital.ppu.PpuRef`, built on this simulator.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import (
    N_REGS,
    N_VREGS,
    OP_VALU,
    XLEN,
    XMASK,
    Decoded,
    PpuGeometry,
    decode,
    disassemble_word,
    sext,
)
from spikeloop.base.layouts import pack_array, unpack_array


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


def _s32(x: int) -> int:
    return sext(x, 32)


#: the scalar ALU: mnemonic -> f(rs1, rs2, decoded) (the result before the
#: register write's 32-bit mask)
_SCALAR = {
    "add": lambda x, y, d: x + y, "sub": lambda x, y, d: x - y, "and": lambda x, y, d: x & y,
    "or": lambda x, y, d: x | y, "xor": lambda x, y, d: x ^ y,
    "sll": lambda x, y, d: x << (y & 31), "srl": lambda x, y, d: x >> (y & 31),
    "sra": lambda x, y, d: _s32(x) >> (y & 31),
    "slt": lambda x, y, d: int(_s32(x) < _s32(y)), "sltu": lambda x, y, d: int(x < y),
    "mul": lambda x, y, d: x * y,
    "addi": lambda x, y, d: x + d.simm, "andi": lambda x, y, d: x & d.imm,
    "ori": lambda x, y, d: x | d.imm, "xori": lambda x, y, d: x ^ d.imm,
    "slti": lambda x, y, d: int(_s32(x) < d.simm),
    "sltiu": lambda x, y, d: int(x < (d.simm & XMASK)),
    "slli": lambda x, y, d: x << (d.imm & 31), "srli": lambda x, y, d: x >> (d.imm & 31),
    "srai": lambda x, y, d: _s32(x) >> (d.imm & 31),
    "lui": lambda x, y, d: d.imm << 16,
}


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
        return unpack_array(v, w, self.geom.lanes(w))

    def vector_dmem(self, index: int) -> int:
        n = self.geom.vector_words
        return pack_array(self.dmem[index * n:(index + 1) * n], XLEN, wrap=True)

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
        op = _SCALAR.get(mn)
        if op is not None:
            self._wreg(a, op(rs1, rs2, dec))
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
            self.dmem[base:base + n] = unpack_array(self.vregs[a & 7], XLEN, n)
        elif mn in ("vlw", "vll"):
            half, row, chunk, ok = g.split_row_address(ea)
            lanes = [0] * g.lanes(8)
            if ok:
                syn = self.syn.rows[half][row]
                for i in range(g.lanes(8)):
                    col = chunk * g.lanes(8) + i
                    if col < cfg.columns_per_half:
                        lanes[i] = syn[col][0 if mn == "vlw" else 1]
            self.vregs[a & 7] = pack_array(lanes, 8, wrap=True)
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
            self.vregs[a & 7] = pack_array(lanes, g.adc_lane_bits, wrap=True)
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
            V[dec.a & 7] = pack_array([self.regs[dec.b]] * n, w, wrap=True)
        elif mn == "vget":
            self._wreg(dec.a, va[self.regs[dec.c] & (n - 1)])
        elif mn == "vset":
            lanes = list(va)
            lanes[self.regs[dec.c] & (n - 1)] = self.regs[dec.d]
            V[dec.a & 7] = pack_array(lanes, w, wrap=True)
        else:
            vb = self._lanes(V[dec.c & 7], w)
            vc = self._lanes(V[dec.d & 7], w)
            V[dec.a & 7] = pack_array(
                [valu_lane(mn, x, y, z, w, dec.sh) for x, y, z in zip(va, vb, vc, strict=True)],
                w, wrap=True)
