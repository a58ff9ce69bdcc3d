"""The PPU beside the fast backend, compiled: one sample's PPU cycle by cycle in
one numba loop (:func:`advance`).

It computes what :class:`~spikeloop.model.digital.ppu.PpuRef` (the cycle-level
reference, stepped by the reference backend and the co-simulation's checks)
computes, cycle by cycle, for the chip's PPU inside the top level: every
instruction's effect in its last cycle, ``vadc``'s read of the ADC entry in its
first cycle (before that cycle's sample is written), ``out.ready`` always high.
The state lives in numpy arrays (:class:`CoreState`): registers as int64 holding
32-bit values, vector registers as bytes (lane ``i`` of width 8 is byte ``i``;
of width 16, bytes ``2i`` and ``2i + 1``, little-endian: the order of
:func:`~spikeloop.base.layouts.pack_array`), the data memory as int64 words, the
synapse rows as weight and label arrays, the ADC buffer as rows of codes with a
flag per entry saying whether its contents are known.

A speculated run (:class:`~spikeloop.backends.fast_ppu.FastPpu` with ``track``)
needs to know which registers, vector registers and data words the run read
before it wrote them: :func:`advance` logs, per element, the first read that
came before any write (``trk_*[0]``) and every write (``trk_*[1]``), for the
operands each instruction really uses.

tests/test_ppu_core.py compares it with PpuRef cycle by cycle on random programs
that use every instruction; the fast-vs-reference suites compare whole runs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import BY_MNEMONIC, N_REGS, N_VREGS, XMASK, chip_geometry, decode
from spikeloop.model import jit  # noqa: F401  (the compiled kernels' cache stamp)


def _code(mnemonic: str) -> int:
    """The instruction's number in the predecoded program: its opcode, or 64 +
    its function code for the vector ALU (undefined words: halt's)."""
    ins = BY_MNEMONIC[mnemonic]
    return 64 + ins.funct if ins.funct is not None else ins.opcode


HALT = _code("halt")
ADD, SUB, AND, OR, XOR = (_code(m) for m in ("add", "sub", "and", "or", "xor"))
SLL, SRL, SRA, SLT, SLTU, MUL = (_code(m) for m in ("sll", "srl", "sra", "slt", "sltu", "mul"))
ADDI, ANDI, ORI, XORI, SLTI, SLTIU = (_code(m) for m in ("addi", "andi", "ori", "xori", "slti",
                                                           "sltiu"))
SLLI, SRLI, SRAI, LUI, CSRR = (_code(m) for m in ("slli", "srli", "srai", "lui", "csrr"))
LW, SW = _code("lw"), _code("sw")
BEQ, BNE, BLT, BGE, BLTU, BGEU = (_code(m) for m in ("beq", "bne", "blt", "bge", "bltu", "bgeu"))
JAL, JALR = _code("jal"), _code("jalr")
VADD, VSUB, VADDS, VSUBS, VADDU, VSUBU = (_code(m) for m in ("vadd", "vsub", "vadds", "vsubs",
                                                             "vaddu", "vsubu"))
VMUL, VMULU, VAND, VOR, VXOR = (_code(m) for m in ("vmul", "vmulu", "vand", "vor", "vxor"))
VSLL, VSRL, VSRA = (_code(m) for m in ("vsll", "vsrl", "vsra"))
VMIN, VMAX, VMINU, VMAXU = (_code(m) for m in ("vmin", "vmax", "vminu", "vmaxu"))
VCMPEQ, VCMPGT, VCMPGTU, VSEL = (_code(m) for m in ("vcmpeq", "vcmpgt", "vcmpgtu", "vsel"))
VSPLAT, VGET, VSET = (_code(m) for m in ("vsplat", "vget", "vset"))
VLD, VST, VLW, VLL, VSW, VSL = (_code(m) for m in ("vld", "vst", "vlw", "vll", "vsw", "vsl"))
VADC, VOUT, VRST = _code("vadc"), _code("vout"), _code("vrst")
#: the vector ALU's codes
VALU_LO, VALU_HI = 64, 64 + 31

#: columns of a predecoded instruction (:func:`predecode`)
P_CODE, P_A, P_B, P_C, P_D, P_W, P_SH, P_IMM, P_SIMM, P_CYCLES = range(10)

#: the geometry vector (:func:`geometry`)
(G_IW, G_DW, G_VW, G_DV, G_VB, G_RCB, G_RB, G_HB, G_RC, G_ROWS, G_HALVES, G_COLS, G_WMAX,
 G_LMASK, G_ALB, G_AL, G_ACB, G_SB, G_AC, G_DEPTH, G_N, G_NCB, G_NC, G_S, G_L, G_STEPS,
 G_CAP, G_CMAX, G_ODEPTH, G_RING, G_WFROM, G_SIZE) = range(32)

#: the control vector: program counter, running, halted, the core's cycle count,
#: the phase of a two-cycle instruction, the chip cycle the next tick is in, the
#: ADC samples this run has taken, vectors in the output buffer, its drops, a
#: read of an ADC entry whose contents are not known, a synapse write, and an
#: error (code, two details, its cycle)
(C_PC, C_RUN, C_HALTED, C_SIMC, C_PHASE, C_CYCLE, C_TAKEN, C_OUTN, C_DROPS, C_STALE,
 C_WROTE, C_ERR, C_ERR_A, C_ERR_B, C_ERR_CYCLE, C_SIZE) = range(16)

#: error codes (``ctl[C_ERR]``)
ERR_SYNAPSE_WRITE = 1   # a synapse row store before the run's drain ended (half, row)
ERR_CODES_UNKNOWN = 2   # an ADC sample taken before its codes were given (sample)


@functools.lru_cache(maxsize=64)
def predecode(words: tuple[int, ...], imem_words: int) -> np.ndarray:
    """The instruction memory holding ``words`` from address 0 (the rest zero:
    halt), one row per word: code, the fields a b c d, lane width, sh, imm, the
    sign-extended imm, and the cycles it takes (shared: not to be written)."""
    prog = np.zeros((imem_words, P_CYCLES + 1), dtype=np.int64)
    prog[:, P_CODE], prog[:, P_W], prog[:, P_CYCLES] = HALT, 8, 1
    for i, word in enumerate(words):
        dec = decode(int(word) & XMASK)
        ins = dec.instr
        if ins is None:         # an undefined word executes as halt
            continue
        prog[i] = (_code(ins.mnemonic), dec.a, dec.b, dec.c, dec.d, dec.w, dec.sh, dec.imm,
                   dec.simm, ins.cycles)
    return prog


def geometry(cfg: ChipConfig, *, n_live: int, n_steps: int, drain: int,
             write_from: int, out_depth: int) -> np.ndarray:
    """The sizes :func:`advance` needs, as an int64 vector (``G_*``)."""
    g = chip_geometry(cfg)
    geo = np.zeros(G_SIZE, dtype=np.int64)
    cmax = (1 << cfg.counter_bits) - 1
    geo[[G_IW, G_DW, G_VW, G_DV, G_VB]] = (g.imem_words, g.dmem_words, g.vector_words,
                                           g.dmem_vectors, g.vector_bits // 8)
    geo[[G_RCB, G_RB, G_HB, G_RC, G_ROWS, G_HALVES, G_COLS]] = (
        g.row_chunk_bits, g.row_bits, g.half_bits, g.row_chunks, cfg.rows_per_half,
        cfg.n_halves, cfg.columns_per_half)
    geo[[G_WMAX, G_LMASK]] = cfg.weight_max, (1 << cfg.label_bits) - 1
    geo[[G_ALB, G_AL, G_ACB, G_SB, G_AC, G_DEPTH, G_N]] = (
        g.adc_lane_bits, g.adc_lanes, g.adc_chunk_bits, g.sample_bits, g.adc_chunks,
        cfg.adc_buffer_depth, cfg.n_neurons)
    geo[[G_NCB, G_NC]] = g.neuron_chunk_bits, g.neuron_chunks
    geo[[G_S, G_L, G_STEPS]] = cfg.analog_step_cycles, n_live, n_steps
    geo[[G_CAP, G_CMAX, G_ODEPTH, G_RING, G_WFROM]] = (
        cmax if cfg.adc_ring else cfg.adc_buffer_depth, cmax, out_depth, int(cfg.adc_ring),
        write_from)
    return geo


@dataclass
class CoreState:
    """One sample's PPU as :func:`advance` runs it (module docstring)."""

    ctl: np.ndarray         # int64 [C_SIZE]
    regs: np.ndarray        # int64 [16]
    vregs: np.ndarray       # uint8 [8, vector bytes]
    dmem: np.ndarray        # int64 [dmem words]
    syn_w: np.ndarray       # int64 [halves, rows, columns]
    syn_l: np.ndarray       # int64 [halves, rows, columns]
    adcbuf: np.ndarray      # int64 [depth, neurons]
    known: np.ndarray       # bool [depth]
    codes: np.ndarray       # int64 [samples, neurons]: this run's samples' codes (empty
    #                         until given: FastPpu.set_codes, set_all_codes)
    have: np.ndarray        # bool [samples]: given
    adc_cycles: np.ndarray  # int64 [samples]: the cycle that takes each
    outbuf: np.ndarray      # uint8 [output buffer vectors, vector bytes]
    holds: np.ndarray       # uint64 [steps, words + 1]: the neurons the resets of each
    #                         step hold, as bits (neuron j: bit j % 64 of word j // 64;
    #                         the last word: 1 when any); one row for a program
    #                         without vrst
    trk_r: np.ndarray       # bool [2, 16]: read before written, written
    trk_v: np.ndarray       # bool [2, 8]
    trk_d: np.ndarray       # bool [2, dmem words]
    snap: np.ndarray        # uint8 [vector bytes]: the vadc read of the first cycle
    tmp: np.ndarray         # uint8 [vector bytes]: scratch

    #: the arrays this state is row ``index`` of (:meth:`batch`)
    rows: dict | None = None
    index: int = 0

    @classmethod
    def new(cls, geo: np.ndarray, adc_cycles: np.ndarray, resets: bool = True) -> CoreState:
        """One sample's state, zero (every ADC entry known, synapses zero)."""
        return cls.batch(geo, adc_cycles, 1, resets)[0]

    @classmethod
    def batch(cls, geo: np.ndarray, adc_cycles: np.ndarray, count: int,
              resets: bool = True) -> list[CoreState]:
        """``count`` samples' states, each row ``i`` of one array per field (the
        whole-run kernel takes the arrays as they are), sharing one pair of
        synapse arrays (only a batch of one may write synapses: the fast
        backend runs a program that writes them sample by sample).  ``resets``
        False: the program holds no ``vrst`` (one row of holds)."""
        vb, dw, n = int(geo[G_VB]), int(geo[G_DW]), int(geo[G_N])
        depth, k = int(geo[G_DEPTH]), len(adc_cycles)
        shape = (int(geo[G_HALVES]), int(geo[G_ROWS]), int(geo[G_COLS]))
        rows = {
            "ctl": np.zeros((count, C_SIZE), np.int64),
            "regs": np.zeros((count, N_REGS), np.int64),
            "vregs": np.zeros((count, N_VREGS, vb), np.uint8),
            "dmem": np.zeros((count, dw), np.int64),
            "adcbuf": np.zeros((count, depth, n), np.int64),
            "known": np.ones((count, depth), np.bool_),
            "have": np.zeros((count, k), np.bool_),
            "outbuf": np.zeros((count, int(geo[G_ODEPTH]), vb), np.uint8),
            "holds": np.zeros((count, max(int(geo[G_STEPS]), 1) if resets else 1,
                               hold_words(n) + 1), np.uint64),
            "trk_r": np.zeros((count, 2, N_REGS), np.bool_),
            "trk_v": np.zeros((count, 2, N_VREGS), np.bool_),
            "trk_d": np.zeros((count, 2, dw), np.bool_),
            "snap": np.zeros((count, vb), np.uint8), "tmp": np.zeros((count, vb), np.uint8)}
        syn_w, syn_l = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        cycles = np.ascontiguousarray(adc_cycles, np.int64)
        no_codes = np.zeros((0, n), np.int64)
        return [cls(syn_w=syn_w, syn_l=syn_l, adc_cycles=cycles, codes=no_codes, rows=rows,
                    index=i, **{name: a[i] for name, a in rows.items()})
                for i in range(count)]

    def advance(self, until: int, prog: np.ndarray, geo: np.ndarray) -> int:
        """:func:`advance` on this state; its error code (0: none)."""
        return advance(until, prog, geo, self.ctl, self.regs, self.vregs, self.dmem,
                       self.syn_w, self.syn_l, self.adcbuf, self.known, self.codes, self.have,
                       self.adc_cycles, self.outbuf, self.holds, self.trk_r, self.trk_v,
                       self.trk_d, self.snap, self.tmp)


def resets(prog: np.ndarray) -> bool:
    """Whether the predecoded program holds a ``vrst`` (reached or not)."""
    return bool((prog[:, P_CODE] == VRST).any())


def hold_words(n: int) -> int:
    """The 64-bit words of one step's reset holds of ``n`` neurons."""
    return -(-n // 64)


def held(holds: np.ndarray, k: int, n: int) -> np.ndarray:
    """The neurons step ``k``'s resets hold: bool [n]."""
    bits = np.unpackbits(holds[k, :-1].view(np.uint8), bitorder="little")
    return bits[:n].astype(np.bool_)


# -- vectors as bytes ------------------------------------------------------------------
def vector_to_bytes(value: int, nbytes: int) -> np.ndarray:
    return np.frombuffer(int(value).to_bytes(nbytes, "little"), dtype=np.uint8).copy()


def bytes_to_vector(row: np.ndarray) -> int:
    return int.from_bytes(np.ascontiguousarray(row, dtype=np.uint8).tobytes(), "little")


def rows_to_vectors(rows: np.ndarray) -> list[int]:
    """:func:`bytes_to_vector` of every row of ``rows`` [k, bytes] (one copy of
    the bytes, not one per row)."""
    raw = np.ascontiguousarray(rows, dtype=np.uint8).tobytes()
    nb = rows.shape[1]
    return [int.from_bytes(raw[i:i + nb], "little") for i in range(0, len(raw), nb)]


# -- the compiled core ---------------------------------------------------------------
@numba.njit(cache=True, nogil=True, inline="always")
def _s32(x):
    return x - (1 << 32) if x >= (1 << 31) else x


@numba.njit(cache=True, nogil=True, inline="always")
def _sext(x, w):
    return x - (1 << w) if x >= (1 << (w - 1)) else x


@numba.njit(cache=True, nogil=True, inline="always")
def _lane(v, i, w):
    if w == 8:
        return np.int64(v[i])
    return np.int64(v[2 * i]) | (np.int64(v[2 * i + 1]) << 8)


@numba.njit(cache=True, nogil=True, inline="always")
def _set_lane(v, i, w, x):
    if w == 8:
        v[i] = x & 0xFF
    else:
        v[2 * i] = x & 0xFF
        v[2 * i + 1] = (x >> 8) & 0xFF


@numba.njit(cache=True, nogil=True, inline="always")
def _copy(dst, src):
    """``dst[:] = src`` element by element (a slice assignment may allocate a
    temporary; the whole-run kernel that calls :func:`advance` runs without
    numba's allocator)."""
    for i in range(len(dst)):
        dst[i] = src[i]


@numba.njit(cache=True, nogil=True, inline="always")
def _note_read(trk, k):
    """Element ``k`` is read: logged as read first unless this run wrote it."""
    if not trk[1, k]:
        trk[0, k] = True


@numba.njit(cache=True, nogil=True, inline="always")
def _read(mem, trk, k):
    """``mem[k]``, the read logged (:func:`_note_read`)."""
    _note_read(trk, k)
    return mem[k]


@numba.njit(cache=True, nogil=True, inline="always")
def _wreg(regs, trk_r, k, value):
    if k:
        regs[k] = value & XMASK
        trk_r[1, k] = True


@numba.njit(cache=True, nogil=True, inline="always")
def _valu_lane(code, a, b, c, w, sh):
    """One lane of a vector ALU operation (model/ppu_sim.py's ``valu_lane``)."""
    mask = (1 << w) - 1
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    sa, sb = _sext(a, w), _sext(b, w)
    if code == VADD:
        r = a + b
    elif code == VSUB:
        r = a - b
    elif code == VADDS:
        r = min(max(sa + sb, lo), hi)
    elif code == VSUBS:
        r = min(max(sa - sb, lo), hi)
    elif code == VADDU:
        r = min(a + b, mask)
    elif code == VSUBU:
        r = max(a - b, 0)
    elif code == VMUL:
        r = min(max((sa * sb) >> sh, lo), hi)
    elif code == VMULU:
        r = min((a * b) >> sh, mask)
    elif code == VAND:
        r = a & b
    elif code == VOR:
        r = a | b
    elif code == VXOR:
        r = a ^ b
    elif code == VSLL:
        r = a << sh
    elif code == VSRL:
        r = a >> sh
    elif code == VSRA:
        r = sa >> sh
    elif code == VMIN:
        r = min(sa, sb)
    elif code == VMAX:
        r = max(sa, sb)
    elif code == VMINU:
        r = min(a, b)
    elif code == VMAXU:
        r = max(a, b)
    elif code == VCMPEQ:
        r = mask if a == b else 0
    elif code == VCMPGT:
        r = mask if sa > sb else 0
    elif code == VCMPGTU:
        r = mask if a > b else 0
    else:       # VSEL
        r = a if c else b
    return r & mask


@numba.njit(cache=True, nogil=True, inline="always")
def _branch_taken(code, x, y):
    """Whether a conditional branch of ``code`` is taken (``x``: its register
    ``b``, ``y``: its register ``a``, as :func:`advance` reads them)."""
    if code == BEQ:
        return x == y
    if code == BNE:
        return x != y
    if code == BLT:
        return _s32(x) < _s32(y)
    if code == BGE:
        return _s32(x) >= _s32(y)
    if code == BLTU:
        return x < y
    return x >= y


@numba.njit(cache=True, nogil=True, inline="always")
def _skip_poll(pc, prog, geo, ctl, regs, trk_r, adc_cycles, taken, adc_count, until):
    """A poll loop, ``csrr rd, csr`` at ``pc`` and a branch back to it at ``pc +
    1`` (one cycle each): run its iterations that end before ``until`` and
    before the next ADC sample is taken, in one go, while the branch is taken.
    Within that span every iteration executes the same two instructions with
    the same registers but ``rd``, whose value is the status register's at the
    ``csrr``'s cycle (the ADC's sample count is constant there; the core's
    cycle count and the chip's time are the cycle's), so the state after them
    is :func:`advance`'s, cycle for cycle: ``rd`` holds the last value read, the
    same registers logged as read and written, the program counter back at
    ``pc``.  Returns the iterations run (0: not a poll loop, or it leaves it
    now; :func:`advance` then executes the ``csrr`` itself)."""
    iw_mask = geo[G_IW] - 1
    bpc = (pc + 1) & iw_mask
    code = prog[bpc, P_CODE]
    if (not BEQ <= code <= BGEU or ((bpc + prog[bpc, P_SIMM]) & iw_mask) != pc
            or prog[pc, P_CYCLES] != 1 or prog[bpc, P_CYCLES] != 1):
        return 0
    c, L = ctl[C_CYCLE], geo[G_L]
    bound = until
    if taken < len(adc_cycles) and adc_cycles[taken] < L:
        bound = min(bound, adc_cycles[taken] + 1)    # the cycle that takes the next sample
    rd, csr, ra, rb = prog[pc, P_A], prog[pc, P_IMM], prog[bpc, P_A], prog[bpc, P_B]
    start = ctl[C_SIMC]
    n = 0
    v = 0
    while c + 2 * n + 2 <= bound:
        cyc = c + 2 * n
        if csr == 0:
            w = start + 2 * n
        elif csr == 1:
            w = adc_count
        elif csr == 2:
            w = min(cyc, L) & XMASK
        else:
            w = 0
        w &= XMASK
        x = w if (rb == rd and rd != 0) else regs[rb]
        y = w if (ra == rd and ra != 0) else regs[ra]
        if not _branch_taken(code, x, y):
            break
        v = w
        n += 1
    if n:
        _wreg(regs, trk_r, rd, v)            # the last csrr, then the branch's reads
        _note_read(trk_r, rb)
        _note_read(trk_r, ra)
        ctl[C_SIMC] = start + 2 * n
        ctl[C_CYCLE] = c + 2 * n
    return n


@numba.njit(cache=True, nogil=True)
def take(n, geo, ctl, adcbuf, known, codes, have):
    """The run has taken ``n`` ADC samples (never fewer than before): each goes
    to its buffer entry (``i``, while ``i < depth``; on a ring ``i % depth``)."""
    depth, ring = geo[G_DEPTH], geo[G_RING]
    for i in range(ctl[C_TAKEN], n):
        if ring or i < depth:
            if not have[i]:
                ctl[C_ERR], ctl[C_ERR_A], ctl[C_ERR_CYCLE] = ERR_CODES_UNKNOWN, i, ctl[C_CYCLE]
                return False
            _copy(adcbuf[i % depth], codes[i])
            known[i % depth] = True
    if n > ctl[C_TAKEN]:
        ctl[C_TAKEN] = n
    return True


@numba.njit(cache=True, nogil=True)
def advance(until, prog, geo, ctl, regs, vregs, dmem, syn_w, syn_l, adcbuf, known, codes,
            have, adc_cycles, outbuf, holds, trk_r, trk_v, trk_d, snap, tmp):
    """Run the chip cycles ``ctl[C_CYCLE] .. until - 1`` of one sample's PPU
    (FastPpu.advance's loop, PpuRef.tick's cycle).  Returns 0, or the error code
    left in ``ctl`` (the cycle stays at the failing one)."""
    L, S, n_steps = geo[G_L], geo[G_S], geo[G_STEPS]
    iw_mask, dw, vw, dv, vb = geo[G_IW] - 1, geo[G_DW], geo[G_VW], geo[G_DV], geo[G_VB]
    N, cap, n_all = geo[G_N], geo[G_CAP], len(adc_cycles)
    while ctl[C_CYCLE] < until:
        c = ctl[C_CYCLE]
        if not ctl[C_RUN]:          # (the buffer still follows the run)
            n = np.searchsorted(adc_cycles, min(until, L))
            if not take(n, geo, ctl, adcbuf, known, codes, have):
                return ctl[C_ERR]
            ctl[C_CYCLE] = until
            return 0
        t = min(c, L)
        taken = ctl[C_TAKEN]        # the samples taken before cycle c (unsaturated)
        while taken < n_all and adc_cycles[taken] < t:
            taken += 1
        if taken != ctl[C_TAKEN]:
            if not take(taken, geo, ctl, adcbuf, known, codes, have):
                return ctl[C_ERR]
        adc_count = min(taken, cap)
        pc = ctl[C_PC]
        code, a, b = prog[pc, P_CODE], prog[pc, P_A], prog[pc, P_B]
        cc, d, simm = prog[pc, P_C], prog[pc, P_D], prog[pc, P_SIMM]
        if code == CSRR and ctl[C_PHASE] == 0 and _skip_poll(
                pc, prog, geo, ctl, regs, trk_r, adc_cycles, taken, adc_count, until):
            continue
        if prog[pc, P_CYCLES] == 2 and ctl[C_PHASE] == 0:
            # the first cycle of a two-cycle instruction: vadc reads its ADC entry now
            if code == VADC:
                ea = (_read(regs, trk_r, b) + simm) & XMASK
                acb = geo[G_ACB]
                chunk = ea & ((1 << acb) - 1)
                sample = (ea >> acb) & ((1 << geo[G_SB]) - 1)
                for i in range(len(snap)):
                    snap[i] = 0
                if chunk < geo[G_AC] and sample < geo[G_DEPTH]:
                    if not known[sample]:       # not known in a speculative batch
                        ctl[C_STALE] = 1
                    else:
                        nl, lb = geo[G_AL], geo[G_ALB]
                        for i in range(nl):
                            nrn = chunk * nl + i
                            if nrn < N:
                                _set_lane(snap, i, lb, adcbuf[sample, nrn])
            ctl[C_PHASE] = 1
            ctl[C_CYCLE] = c + 1
            continue
        start = ctl[C_SIMC]
        next_pc = (pc + 1) & iw_mask
        if code == HALT:
            ctl[C_RUN], ctl[C_HALTED] = 0, 1
            next_pc = pc
        elif code < 0x1A:           # the scalar ALU: rd <- f(rs1, rs2 or imm)
            x = _read(regs, trk_r, b) if code != LUI else 0
            y = _read(regs, trk_r, cc) if code < ADDI else 0
            imm = prog[pc, P_IMM]
            if code == ADD:
                r = x + y
            elif code == SUB:
                r = x - y
            elif code == AND:
                r = x & y
            elif code == OR:
                r = x | y
            elif code == XOR:
                r = x ^ y
            elif code == SLL:
                r = x << (y & 31)
            elif code == SRL:
                r = x >> (y & 31)
            elif code == SRA:
                r = _s32(x) >> (y & 31)
            elif code == SLT:
                r = 1 if _s32(x) < _s32(y) else 0
            elif code == SLTU:
                r = 1 if x < y else 0
            elif code == MUL:       # the low 32 bits, without overflowing int64
                r = x * (y & 0xFFFF) + (((x * (y >> 16)) & 0xFFFF) << 16)
            elif code == ADDI:
                r = x + simm
            elif code == ANDI:
                r = x & imm
            elif code == ORI:
                r = x | imm
            elif code == XORI:
                r = x ^ imm
            elif code == SLTI:
                r = 1 if _s32(x) < simm else 0
            elif code == SLTIU:
                r = 1 if x < (simm & XMASK) else 0
            elif code == SLLI:
                r = x << (imm & 31)
            elif code == SRLI:
                r = x >> (imm & 31)
            elif code == SRAI:
                r = _s32(x) >> (imm & 31)
            else:       # LUI
                r = imm << 16
            _wreg(regs, trk_r, a, r)
        elif code == CSRR:
            imm = prog[pc, P_IMM]
            r = start if imm == 0 else adc_count if imm == 1 else (t & XMASK) if imm == 2 else 0
            _wreg(regs, trk_r, a, r)
        elif code == LW:
            ea = (_read(regs, trk_r, b) + simm) & XMASK
            _wreg(regs, trk_r, a, _read(dmem, trk_d, ea % dw))
        elif code == SW:
            ea = (_read(regs, trk_r, b) + simm) & XMASK
            dmem[ea % dw] = _read(regs, trk_r, a)
            trk_d[1, ea % dw] = True
        elif BEQ <= code <= BGEU:
            x, y = _read(regs, trk_r, b), _read(regs, trk_r, a)
            if _branch_taken(code, x, y):
                next_pc = (pc + simm) & iw_mask
        elif code == JAL:
            _wreg(regs, trk_r, a, next_pc)
            next_pc = (pc + simm) & iw_mask
        elif code == JALR:
            target = ((_read(regs, trk_r, b) + simm) & XMASK) & iw_mask
            _wreg(regs, trk_r, a, next_pc)
            next_pc = target
        elif VALU_LO <= code <= VALU_HI:
            w = prog[pc, P_W]
            nl = vb * 8 // w
            lmask = (1 << w) - 1
            vd = a & 7
            if code == VSPLAT:
                x = _read(regs, trk_r, b) & lmask
                for i in range(nl):
                    _set_lane(vregs[vd], i, w, x)
                trk_v[1, vd] = True
            elif code == VGET:
                _note_read(trk_v, b & 7)
                i = _read(regs, trk_r, cc) & (nl - 1)
                _wreg(regs, trk_r, a, _lane(vregs[b & 7], i, w))
            elif code == VSET:
                _note_read(trk_v, b & 7)
                i = _read(regs, trk_r, cc) & (nl - 1)
                x = _read(regs, trk_r, d) & lmask
                _copy(tmp, vregs[b & 7])
                _set_lane(tmp, i, w, x)
                _copy(vregs[vd], tmp)
                trk_v[1, vd] = True
            else:
                sh = prog[pc, P_SH]
                va, vbb, vc = vregs[b & 7], vregs[cc & 7], vregs[d & 7]
                _note_read(trk_v, b & 7)
                if not (VSLL <= code <= VSRA):
                    _note_read(trk_v, cc & 7)
                if code == VSEL:
                    _note_read(trk_v, d & 7)
                for i in range(nl):
                    z = _lane(vc, i, w) if code == VSEL else 0
                    _set_lane(tmp, i, w, _valu_lane(code, _lane(va, i, w), _lane(vbb, i, w),
                                                    z, w, sh))
                _copy(vregs[vd], tmp)
                trk_v[1, vd] = True
        elif code == VLD:
            base = (((_read(regs, trk_r, b) + simm) & XMASK) % dv) * vw
            for k in range(vw):
                word = _read(dmem, trk_d, base + k)
                for j in range(4):
                    vregs[a & 7, 4 * k + j] = (word >> (8 * j)) & 0xFF
            trk_v[1, a & 7] = True
        elif code == VST:
            base = (((_read(regs, trk_r, b) + simm) & XMASK) % dv) * vw
            _note_read(trk_v, a & 7)
            for k in range(vw):
                word = 0
                for j in range(4):
                    word |= np.int64(vregs[a & 7, 4 * k + j]) << (8 * j)
                dmem[base + k] = word
                trk_d[1, base + k] = True
        elif VLW <= code <= VSL:
            ea = (_read(regs, trk_r, b) + simm) & XMASK
            rcb, rb = geo[G_RCB], geo[G_RB]
            chunk = ea & ((1 << rcb) - 1)
            row = (ea >> rcb) & ((1 << rb) - 1)
            half = (ea >> (rcb + rb)) & ((1 << geo[G_HB]) - 1)
            ok = chunk < geo[G_RC] and row < geo[G_ROWS] and half < geo[G_HALVES]
            C = geo[G_COLS]
            if code == VLW or code == VLL:
                syn = syn_w if code == VLW else syn_l
                for i in range(vb):
                    col = chunk * vb + i
                    vregs[a & 7, i] = syn[half, row, col] & 0xFF if ok and col < C else 0
                trk_v[1, a & 7] = True
            else:
                _note_read(trk_v, a & 7)
                if ok:
                    if c < geo[G_WFROM]:
                        ctl[C_ERR], ctl[C_ERR_A], ctl[C_ERR_B] = ERR_SYNAPSE_WRITE, half, row
                        ctl[C_ERR_CYCLE] = c
                        return ERR_SYNAPSE_WRITE
                    ctl[C_WROTE] = 1
                    for i in range(vb):
                        col = chunk * vb + i
                        if col < C:
                            if code == VSW:
                                syn_w[half, row, col] = vregs[a & 7, i] & geo[G_WMAX]
                            else:
                                syn_l[half, row, col] = vregs[a & 7, i] & geo[G_LMASK]
        elif code == VADC:
            _read(regs, trk_r, b)
            _copy(vregs[a & 7], snap)
            trk_v[1, a & 7] = True
        elif code == VOUT:
            _note_read(trk_v, a & 7)
            if ctl[C_OUTN] < outbuf.shape[0]:
                _copy(outbuf[ctl[C_OUTN]], vregs[a & 7])
                ctl[C_OUTN] += 1
            else:
                ctl[C_DROPS] = min(ctl[C_DROPS] + 1, geo[G_CMAX])
        elif code == VRST:
            ea = (_read(regs, trk_r, b) + simm) & XMASK
            _note_read(trk_v, a & 7)
            chunk = ea & ((1 << geo[G_NCB]) - 1)
            if chunk < geo[G_NC] and c < L and c // S < min(n_steps, holds.shape[0]):
                k = c // S
                for i in range(vb):
                    nrn = chunk * vb + i
                    if vregs[a & 7, i] != 0 and nrn < N:
                        holds[k, nrn >> 6] |= np.uint64(1) << np.uint64(nrn & 63)
                        holds[k, holds.shape[1] - 1] = 1
        ctl[C_PC] = next_pc
        ctl[C_SIMC] = start + prog[pc, P_CYCLES]
        ctl[C_PHASE] = 0
        ctl[C_CYCLE] = c + 1
    return 0
