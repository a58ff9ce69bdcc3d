"""Ppu: the plasticity processor, a scalar core with a SIMD vector unit
(docs/ppu.md; the instruction set is the table of spikeloop/base/isa.py).

Sizes: ``V = ppu_vector_bits`` (lanes of 8 or 16 bit), ``C =
columns_per_half``, ``N = n_neurons``; ``imem_words`` and ``dmem_words``
(constructor parameters, powers of two; default 2048 + 2048 words = 16 KiB).

Signature:

- ``start`` (In): in a cycle where the core is not running, starts it at pc 0:
  the first instruction executes in the next cycle; ``cycles`` restarts at 0.
  Ignored while running.
- ``stop`` (In): while running, the core stops at the end of this cycle; an
  instruction in its last cycle completes, one that is not (the first cycle
  of a two-cycle instruction, a ``vout`` waiting for ``ready``) is abandoned
  without effect and ``pc`` stays on it.
- ``running``, ``halted`` (Out, registers): ``halted`` is set by a ``halt``
  (or an undefined instruction, which executes as ``halt``) and cleared by
  ``start``.  ``pc`` (Out): the instruction executing (or where the core
  stopped).  ``cycles`` (Out, 32 bits, saturating): cycles run since start.
- ``host_imem_addr/we/wdata/rdata``, ``host_dmem_addr/we/wdata/rdata``: the
  host's port to the instruction memory (32-bit words) and to the data memory
  (32-bit words; vector ``i`` is words ``i*V/32 .. i*V/32 + V/32 - 1``, word 0
  in the low bits).  Taken only while the core is not running and not being
  started (writes are ignored otherwise); ``rdata`` is the word addressed in
  the previous cycle, 0 when that cycle did not qualify.
- ``syn`` (Out, :func:`syn_port_signature`): the row port to the synapse
  memories: ``half``, ``row``, ``re``; ``rdata`` (In, ``ArrayLayout(
  synapse_layout, C)``) must show the row read in the previous cycle; ``we``
  (C bits, one per column) and ``wdata`` write the row at the clock edge.
- ``adc`` (Out, :func:`adc_port_signature`): ``addr`` (sample), ``re``;
  ``rdata`` (In, ``ArrayLayout(unsigned(adc_bits), N)``): the sample read in
  the previous cycle.  ``adc_count`` (In): samples in the ADC buffer (with
  ``cfg.adc_ring``: ``counter_bits`` wide, the samples taken), read by
  ``csrr rd, adc_count``.  ``time`` (In): the chip's cycle counter (``csrr rd, time``).
- ``nreset`` (Out, N bits): neurons to reset, high for the one cycle of a ``vrst``.
- ``out`` (Out, ``stream.Signature(unsigned(V))``): vectors to external
  memory; ``valid`` for the cycles of a ``vout``, which completes in the cycle
  where ``ready`` is high.

Micro-architecture: one instruction at a time, no pipeline hazards.  The
instruction memory is read synchronously with the address of the *next*
instruction computed in the current cycle (branches cost nothing); register
files are flip-flops read combinationally; every architectural effect of an
instruction happens in its last cycle.  Two-cycle instructions (``lw``,
``vld``, ``vlw``, ``vll``, ``vsw``, ``vsl``, ``vadc``) issue their read in
the first cycle and use the data in the second (``vsw``/``vsl`` write the row
back with the other field kept: read-modify-write).

``regs``, ``vregs``, ``imem`` and ``dmem`` are attributes for inspection in
simulation (not ports).
"""
from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import (
    BY_FUNCT,
    BY_MNEMONIC,
    BY_OPCODE,
    FIELDS,
    N_REGS,
    N_VREGS,
    OP_VALU,
    XLEN,
    PpuGeometry,
)
from spikeloop.rtl.layouts import synapse_layout
from spikeloop.rtl.synapse_memory import row_bits


def half_bits(cfg: ChipConfig) -> int:
    return max(1, (cfg.n_halves - 1).bit_length())


def syn_port_signature(cfg: ChipConfig) -> wiring.Signature:
    """The PPU's row port to the synapse memories (``Out`` = driven by the PPU)."""
    row = data.ArrayLayout(synapse_layout(cfg), cfg.columns_per_half)
    return wiring.Signature({
        "half": Out(half_bits(cfg)),
        "row": Out(row_bits(cfg)),
        "re": Out(1),
        "rdata": In(row),
        "we": Out(cfg.columns_per_half),
        "wdata": Out(row),
    })


def adc_port_signature(cfg: ChipConfig) -> wiring.Signature:
    """The PPU's read port to the ADC sample buffer."""
    return wiring.Signature({
        "addr": Out(PpuGeometry(cfg).sample_bits),
        "re": Out(1),
        "rdata": In(data.ArrayLayout(unsigned(cfg.adc_bits), cfg.n_neurons)),
    })


def _f(ins, name):
    lsb, width = FIELDS[name]
    return ins[lsb:lsb + width]


def _sat_s(x, w):
    hi, lo = (1 << (w - 1)) - 1, -(1 << (w - 1))
    return Mux(x > hi, hi, Mux(x < lo, lo, x))[:w]


def _sat_u(x, w):
    hi = (1 << w) - 1
    if x.shape().signed:
        x = Mux(x < 0, 0, x)
    return Mux(x > hi, hi, x)[:w]


def _any_of(is_: dict, *names: str):
    """Whether the instruction is any of the mnemonics ``names``."""
    return Cat(*(is_[n] for n in names)).any()


class _Decode(NamedTuple):
    """The decoded instruction (:meth:`Ppu._fetch_decode`)."""

    op: Value
    fa: Value
    fb: Value
    fc: Value
    fd: Value
    size: Value
    funct: Value
    sh: Value
    imm: Value
    simm: Signal        # imm, sign-extended
    is_: dict           # mnemonic -> Signal is_<mnemonic>
    defined: Signal
    halting: Signal     # halt, or an undefined instruction
    two_cycle: Signal
    last: Signal        # the instruction's effects happen in this cycle
    fire: Signal        # running & last

    def any_of(self, *names: str):
        return _any_of(self.is_, *names)


class _Operands(NamedTuple):
    """The register operands (:meth:`Ppu._register_files`): scalar registers a..d,
    vector registers a..d and the effective address ``ea = reg_b + simm``."""

    ra: Signal
    rb: Signal
    rc: Signal
    rd: Signal
    va: Signal
    vb: Signal
    vc: Signal
    vd: Signal
    ea: Signal


class Ppu(wiring.Component):
    """The plasticity processor; see the module docstring."""

    def __init__(self, cfg: ChipConfig, *, imem_words: int = 2048, dmem_words: int = 2048):
        self.cfg = cfg
        self.geom = g = PpuGeometry(cfg, imem_words=imem_words, dmem_words=dmem_words)
        V = g.vector_bits
        super().__init__({
            "start": In(1),
            "stop": In(1),
            "running": Out(1),
            "halted": Out(1),
            "pc": Out(g.pc_bits),
            "cycles": Out(XLEN),
            "host_imem_addr": In(g.pc_bits),
            "host_imem_we": In(1),
            "host_imem_wdata": In(XLEN),
            "host_imem_rdata": Out(XLEN),
            "host_dmem_addr": In((g.dmem_words - 1).bit_length()),
            "host_dmem_we": In(1),
            "host_dmem_wdata": In(XLEN),
            "host_dmem_rdata": Out(XLEN),
            "syn": Out(syn_port_signature(cfg)),
            "adc": Out(adc_port_signature(cfg)),
            "adc_count": In(cfg.counter_bits if cfg.adc_ring
                            else cfg.adc_buffer_depth.bit_length()),
            "time": In(cfg.timestamp_bits),
            "nreset": Out(cfg.n_neurons),
            "out": Out(stream.Signature(unsigned(V))),
        })
        # state, as attributes so that simulations can inspect it
        self.regs = [Signal(XLEN, name=f"r{i}") for i in range(N_REGS)]
        self.vregs = [Signal(V, name=f"v{i}") for i in range(N_VREGS)]
        self.imem = Memory(shape=unsigned(XLEN), depth=g.imem_words, init=[])
        self.dmem = Memory(shape=unsigned(V), depth=g.dmem_vectors, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.imem = self.imem
        m.submodules.dmem = self.dmem
        phase = Signal(name="phase")    # 1: the second cycle of a two-cycle instruction

        rpi, wpi, d = self._fetch_decode(m, phase)
        o = self._register_files(m, d)
        scalar, pc1 = self._scalar_alu(m, d, o)
        rpd, wpd, lw_data = self._data_memory(m, o)
        valu, vget = self._vector_alu(m, d, o)
        s_res, s_we = self._scalar_result(m, d, scalar | {"lw": lw_data}, vget)
        row_ok, row_w, row_l = self._synapse_rows(m, d, o, phase)
        adc_ok, adc_vec = self._adc_samples(m, d, o, phase)
        self._neuron_resets(m, d, o)
        self._output_stream(m, d, o)
        v_res, v_we = self._vector_result(m, d, valu, rpd.data, row_ok, row_w, row_l,
                                          adc_ok, adc_vec)
        self._register_write(m, d, v_res, v_we, s_res, s_we)
        next_pc = self._next_pc(m, d, o, pc1)
        self._memory_ports(m, d, o, next_pc, rpi, wpi, rpd, wpd)
        self._control(m, d, phase, next_pc)
        return m

    def _dmem_bits(self) -> tuple[int, int]:
        """(word-in-vector bits, vector address bits) of a data memory address."""
        g = self.geom
        return (g.vector_words - 1).bit_length(), (g.dmem_vectors - 1).bit_length()

    def _fetch_decode(self, m: Module, phase: Signal):
        """Fetch and decode, combinational: ``ins`` is the instruction memory's
        read data (the word addressed in the previous cycle, the then next pc:
        :meth:`_memory_ports`), split into its fields; the ``is_<mnemonic>``
        flags, ``defined``, ``halting`` (``halt`` or undefined), ``two_cycle``;
        ``last``: this cycle is the instruction's last (phase 1 of a two-cycle
        instruction, the ``ready`` cycle of a ``vout``, else its only cycle), and
        ``fire = running & last``.  Returns the instruction memory's read and
        write ports and the :class:`_Decode`."""
        rpi = self.imem.read_port()
        wpi = self.imem.write_port()
        ins = Signal(XLEN, name="ins")
        m.d.comb += ins.eq(rpi.data)
        op, fa, fb, fc, fd = (_f(ins, n) for n in ("op", "a", "b", "c", "d"))
        size, funct, sh, imm = (_f(ins, n) for n in ("size", "funct", "sh", "imm"))
        simm = Signal(signed(XLEN), name="simm")
        m.d.comb += simm.eq(imm.as_signed())

        is_ = {}
        for mn, ins_ in BY_MNEMONIC.items():
            sig = Signal(name=f"is_{mn}")
            if ins_.funct is None:
                m.d.comb += sig.eq(op == ins_.opcode)
            else:
                m.d.comb += sig.eq((op == OP_VALU) & (funct == ins_.funct))
            is_[mn] = sig
        defined = Signal(name="defined")
        m.d.comb += defined.eq(Cat(*(op == o for o in BY_OPCODE)).any()
                               | ((op == OP_VALU) & Cat(*(funct == f for f in BY_FUNCT)).any()))
        halting = Signal(name="halting")
        m.d.comb += halting.eq(is_["halt"] | ~defined)

        two_cycle = Signal(name="two_cycle")
        m.d.comb += two_cycle.eq(_any_of(is_, *(i.mnemonic for i in BY_MNEMONIC.values()
                                                if i.cycles == 2)))
        last = Signal(name="last")      # the instruction's effects happen in this cycle
        m.d.comb += last.eq(Mux(two_cycle, phase, Mux(is_["vout"], self.out.ready, 1)))
        fire = Signal(name="fire")
        m.d.comb += fire.eq(self.running & last)
        return rpi, wpi, _Decode(op, fa, fb, fc, fd, size, funct, sh, imm, simm, is_,
                                 defined, halting, two_cycle, last, fire)

    def _register_files(self, m: Module, d: _Decode) -> _Operands:
        """Register file reads, combinational (the registers are flip-flops): the
        scalar registers named by fields a..d (``reg_a`` .. ``reg_d``), the vector
        registers named by their low three bits (``vreg_a`` .. ``vreg_d``), and the
        effective address ``ea = reg_b + simm``.  The registers are written by
        :meth:`_register_write`."""
        V = self.geom.vector_bits
        R = Array(self.regs)
        VR = Array(self.vregs)
        ra, rb, rc, rd_ = (Signal(XLEN, name=f"reg_{n}") for n in "abcd")
        m.d.comb += [ra.eq(R[d.fa]), rb.eq(R[d.fb]), rc.eq(R[d.fc]), rd_.eq(R[d.fd])]
        VA, VB, VC, VD = (Signal(V, name=f"vreg_{n}") for n in "abcd")
        m.d.comb += [VA.eq(VR[d.fa[:3]]), VB.eq(VR[d.fb[:3]]), VC.eq(VR[d.fc[:3]]),
                     VD.eq(VR[d.fd[:3]])]
        ea = Signal(XLEN, name="ea")
        m.d.comb += ea.eq(rb + d.simm)
        return _Operands(ra, rb, rc, rd_, VA, VB, VC, VD, ea)

    def _scalar_alu(self, m: Module, d: _Decode, o: _Operands):
        """The scalar ALU, combinational: the result of every scalar instruction
        decoded by opcode (``jal``/``jalr``: the return address ``pc + 1``;
        ``csrr``: ``cycles``, ``adc_count`` or ``time`` by ``imm``).  Returns the
        results (mnemonic -> value; ``lw`` comes from :meth:`_data_memory`, ``vget``
        from :meth:`_vector_alu`) and ``pc_plus_1``."""
        imm, simm, rb, rc = d.imm, d.simm, o.rb, o.rc
        sext_imm = Signal(XLEN, name="sext_imm")
        m.d.comb += sext_imm.eq(simm)
        pc1 = Signal(self.geom.pc_bits, name="pc_plus_1")
        m.d.comb += pc1.eq(self.pc + 1)
        sb, sc = rb.as_signed(), rc.as_signed()
        scalar = {
            "add": rb + rc, "sub": rb - rc, "and": rb & rc, "or": rb | rc, "xor": rb ^ rc,
            "sll": rb << rc[:5], "srl": rb >> rc[:5], "sra": sb >> rc[:5],
            "slt": sb < sc, "sltu": rb < rc, "mul": rb * rc,
            "addi": rb + simm, "andi": rb & imm, "ori": rb | imm, "xori": rb ^ imm,
            "slti": sb < simm, "sltiu": rb < sext_imm, "slli": rb << imm[:5],
            "srli": rb >> imm[:5], "srai": sb >> imm[:5], "lui": Cat(Const(0, 16), imm),
            "jal": pc1, "jalr": pc1,
        }
        csr = Signal(XLEN, name="csr")
        with m.Switch(imm):
            with m.Case(0):
                m.d.comb += csr.eq(self.cycles)
            with m.Case(1):
                m.d.comb += csr.eq(self.adc_count)
            with m.Case(2):
                m.d.comb += csr.eq(self.time[:XLEN])
        scalar["csrr"] = csr
        return scalar, pc1

    def _data_memory(self, m: Module, o: _Operands):
        """The data memory's ports (addresses, data and enables are driven by
        :meth:`_memory_ports`) and ``lw_data``, combinational: word ``ea[:wb]`` of
        the vector read in the previous cycle (the first cycle of an ``lw``).
        Returns the read port, the write port (32-bit granularity) and
        ``lw_data``."""
        wb, _ = self._dmem_bits()
        rpd = self.dmem.read_port()
        wpd = self.dmem.write_port(granularity=XLEN)
        lw_data = Signal(XLEN, name="lw_data")
        m.d.comb += lw_data.eq(rpd.data.word_select(o.ea[:wb], XLEN))
        return rpd, wpd, lw_data

    def _vector_alu(self, m: Module, d: _Decode, o: _Operands):
        """The vector ALU, combinational: every lane operation of ``funct`` on
        ``vreg_b``, ``vreg_c`` (``vreg_d``: ``vsel``'s condition; ``reg_b``:
        ``vsplat``'s value; ``vset``: lane ``reg_c`` := ``reg_d``), once for 8-bit
        lanes (``valu8``) and once for 16-bit lanes (``valu16``); ``size`` picks
        one (``valu``).  ``vget``: lane ``reg_c`` of ``vreg_b``, zero-extended.
        Returns ``valu`` and ``vget``."""
        V = self.geom.vector_bits
        VB, VC, VD = o.vb, o.vc, o.vd
        rb, rd_, rc_idx = o.rb, o.rd, o.rc
        funct, sh, size = d.funct, d.sh, d.size
        lane_results = {}
        vget_res = {}
        for w in (8, 16):
            L = V // w
            ib = (L - 1).bit_length()
            res = {mn: [] for mn in ("vadd", "vsub", "vadds", "vsubs", "vaddu", "vsubu",
                                     "vmul", "vmulu", "vand", "vor", "vxor", "vsll", "vsrl",
                                     "vsra", "vmin", "vmax", "vminu", "vmaxu", "vcmpeq",
                                     "vcmpgt", "vcmpgtu", "vsel", "vsplat", "vset")}
            ones = (1 << w) - 1
            for i in range(L):
                a, b, c = (x[i * w:(i + 1) * w] for x in (VB, VC, VD))
                sa, sb_ = a.as_signed(), b.as_signed()
                res["vadd"].append((a + b)[:w])
                res["vsub"].append((a - b)[:w])
                res["vadds"].append(_sat_s(sa + sb_, w))
                res["vsubs"].append(_sat_s(sa - sb_, w))
                res["vaddu"].append(_sat_u(a + b, w))
                res["vsubu"].append(_sat_u(a - b, w))
                res["vmul"].append(_sat_s((sa * sb_) >> sh, w))
                res["vmulu"].append(_sat_u((a * b) >> sh, w))
                res["vand"].append(a & b)
                res["vor"].append(a | b)
                res["vxor"].append(a ^ b)
                res["vsll"].append((a << sh)[:w])
                res["vsrl"].append((a >> sh)[:w])
                res["vsra"].append((sa >> sh)[:w])
                res["vmin"].append(Mux(sa < sb_, a, b))
                res["vmax"].append(Mux(sa > sb_, a, b))
                res["vminu"].append(Mux(a < b, a, b))
                res["vmaxu"].append(Mux(a > b, a, b))
                res["vcmpeq"].append(Mux(a == b, ones, 0))
                res["vcmpgt"].append(Mux(sa > sb_, ones, 0))
                res["vcmpgtu"].append(Mux(a > b, ones, 0))
                res["vsel"].append(Mux(c.any(), a, b))
                res["vsplat"].append(rb[:w])
                res["vset"].append(Mux(rc_idx[:ib] == i, rd_[:w], a))
            out = Signal(V, name=f"valu{w}")
            with m.Switch(funct):
                for mn, lanes in res.items():
                    with m.Case(BY_MNEMONIC[mn].funct):
                        m.d.comb += out.eq(Cat(*lanes))
            lane_results[w] = out
            vget_res[w] = VB.word_select(rc_idx[:ib], w) if ib else VB[:w]
        vget = Signal(XLEN, name="vget")
        m.d.comb += vget.eq(Mux(size, vget_res[16], vget_res[8]))
        valu = Signal(V, name="valu")
        m.d.comb += valu.eq(Mux(size, lane_results[16], lane_results[8]))
        return valu, vget

    def _scalar_result(self, m: Module, d: _Decode, scalar: dict, vget: Signal):
        """The scalar result, combinational: ``s_res`` is the result in
        ``scalar`` of the instruction's opcode (or ``vget``), ``s_we`` whether the
        instruction writes scalar register ``a`` (done in its last cycle by
        :meth:`_register_write`).  Returns ``s_res`` and ``s_we``."""
        s_res = Signal(XLEN, name="s_res")
        s_we = Signal(name="s_we")
        with m.Switch(d.op):
            for mn, value in scalar.items():
                ins_ = BY_MNEMONIC[mn]
                if ins_.funct is None:
                    with m.Case(ins_.opcode):
                        m.d.comb += [s_res.eq(value), s_we.eq(1)]
        with m.If(d.is_["vget"]):
            m.d.comb += [s_res.eq(vget), s_we.eq(1)]
        return s_res, s_we

    def _synapse_rows(self, m: Module, d: _Decode, o: _Operands, phase: Signal):
        """The row port to the synapse memories (``vlw``, ``vll``, ``vsw``,
        ``vsl``; ``ea`` = chunk | row | half, low bits first): in the first cycle
        the row is read (``syn.re``, only if ``row_ok``: the address is in range);
        in the second, combinationally, ``row_weights``/``row_labels`` are the
        weights/labels of the chunk's columns as 8-bit lanes (zero-extended;
        columns past C read 0), and ``vsw``/``vsl`` write the chunk's columns at
        the clock edge, keeping the other field (read-modify-write).  Returns
        ``row_ok``, ``row_weights``, ``row_labels``."""
        cfg, g = self.cfg, self.geom
        C = cfg.columns_per_half
        running, ea, VA = self.running, o.ea, o.va
        L8 = g.lanes(8)
        kc, rbits, hb = g.row_chunk_bits, g.row_bits, g.half_bits
        chunk = ea[:kc]
        row = ea[kc:kc + rbits]
        half = ea[kc + rbits:kc + rbits + hb]
        row_ok = Signal(name="row_ok")
        m.d.comb += row_ok.eq((chunk < g.row_chunks) & (row < cfg.rows_per_half)
                              & (half < cfg.n_halves))
        row_op = Signal(name="row_op")
        m.d.comb += row_op.eq(d.any_of("vlw", "vll", "vsw", "vsl"))
        m.d.comb += [
            self.syn.half.eq(half),
            self.syn.row.eq(row),
            self.syn.re.eq(running & row_op & ~phase & row_ok),
        ]
        rdata = self.syn.rdata
        row_w = Signal(g.vector_bits, name="row_weights")
        row_l = Signal(g.vector_bits, name="row_labels")
        with m.Switch(chunk):
            for k in range(g.row_chunks):
                with m.Case(k):
                    cols = [k * L8 + i for i in range(L8)]
                    m.d.comb += [
                        row_w.eq(Cat(*((Cat(rdata[c].weight, Const(0, 8 - cfg.weight_bits))
                                        if c < C else Const(0, 8)) for c in cols))),
                        row_l.eq(Cat(*((Cat(rdata[c].label, Const(0, 8 - cfg.label_bits))
                                        if c < C else Const(0, 8)) for c in cols))),
                    ]
        store_w, store_l = d.is_["vsw"], d.is_["vsl"]
        with m.If(running & (store_w | store_l) & phase & row_ok):
            for c in range(C):
                k, i = divmod(c, L8)
                lane = VA[i * 8:(i + 1) * 8]
                m.d.comb += [
                    self.syn.we[c].eq(chunk == k),
                    self.syn.wdata[c].weight.eq(Mux(store_w, lane[:cfg.weight_bits],
                                                    rdata[c].weight)),
                    self.syn.wdata[c].label.eq(Mux(store_l, lane[:cfg.label_bits],
                                                   rdata[c].label)),
                ]
        return row_ok, row_w, row_l

    def _adc_samples(self, m: Module, d: _Decode, o: _Operands, phase: Signal):
        """The read port to the ADC sample buffer (``vadc``; ``ea`` = chunk |
        sample << ..): the sample is read in the first cycle (``adc.re``, only if
        ``adc_ok``: the address is in range); in the second, combinationally,
        ``adc_vector`` holds the chunk's neurons as lanes of ``adc_lane_bits``
        (zero-extended; neurons past N read 0).  Returns ``adc_ok`` and
        ``adc_vector``."""
        cfg, g = self.cfg, self.geom
        N, ea = cfg.n_neurons, o.ea
        la = g.adc_lane_bits
        nla = g.adc_lanes
        ka = g.adc_chunk_bits
        a_chunk = ea[:ka]
        sample = ea[ka:ka + g.sample_bits]
        adc_ok = Signal(name="adc_ok")
        m.d.comb += adc_ok.eq((a_chunk < g.adc_chunks) & (sample < cfg.adc_buffer_depth))
        m.d.comb += [
            self.adc.addr.eq(sample),
            self.adc.re.eq(self.running & d.is_["vadc"] & ~phase & adc_ok),
        ]
        adc_vec = Signal(g.vector_bits, name="adc_vector")
        with m.Switch(a_chunk):
            for k in range(g.adc_chunks):
                with m.Case(k):
                    m.d.comb += adc_vec.eq(Cat(*(
                        Cat(self.adc.rdata[k * nla + i], Const(0, la - cfg.adc_bits))
                        if k * nla + i < N else Const(0, la) for i in range(nla))))
        return adc_ok, adc_vec

    def _neuron_resets(self, m: Module, d: _Decode, o: _Operands) -> None:
        """``vrst``, combinational: ``nreset`` is high, for the instruction's one
        cycle, for each neuron of chunk ``ea`` whose 8-bit lane of ``vreg_a`` is
        non-zero."""
        g = self.geom
        L8 = g.lanes(8)
        n_chunk = o.ea[:g.neuron_chunk_bits]
        with m.If(self.running & d.is_["vrst"]):
            for n in range(self.cfg.n_neurons):
                k, i = divmod(n, L8)
                m.d.comb += self.nreset[n].eq((n_chunk == k) & o.va[i * 8:(i + 1) * 8].any())

    def _output_stream(self, m: Module, d: _Decode, o: _Operands) -> None:
        """``vout``, combinational: ``out.valid`` with ``vreg_a`` as payload in
        every cycle of the instruction (it completes when ``out.ready`` is high:
        ``last`` in :meth:`_fetch_decode`)."""
        m.d.comb += [
            self.out.valid.eq(self.running & d.is_["vout"]),
            self.out.payload.eq(o.va),
        ]

    def _vector_result(self, m: Module, d: _Decode, valu, vld_data, row_ok, row_w, row_l,
                       adc_ok, adc_vec):
        """The vector register write, combinational: ``v_res`` is the vector
        result (the vector ALU's ``valu``; ``vld``: the data memory's read data;
        ``vlw``/``vll``: the row's weights/labels; ``vadc``: the ADC vector; 0 for
        an address out of range), ``v_we`` whether the instruction writes vector
        register ``a`` (done in its last cycle by :meth:`_register_write`).
        Returns ``v_res`` and ``v_we``."""
        is_ = d.is_
        v_res = Signal(self.geom.vector_bits, name="v_res")
        v_we = Signal(name="v_we")
        with m.If((d.op == OP_VALU) & d.defined & ~is_["vget"]):
            m.d.comb += [v_res.eq(valu), v_we.eq(1)]
        with m.If(is_["vld"]):
            m.d.comb += [v_res.eq(vld_data), v_we.eq(1)]
        with m.If(is_["vlw"] | is_["vll"]):
            m.d.comb += [v_res.eq(Mux(row_ok, Mux(is_["vlw"], row_w, row_l), 0)), v_we.eq(1)]
        with m.If(is_["vadc"]):
            m.d.comb += [v_res.eq(Mux(adc_ok, adc_vec, 0)), v_we.eq(1)]
        return v_res, v_we

    def _register_write(self, m: Module, d: _Decode, v_res, v_we, s_res, s_we) -> None:
        """The register writes, at the clock edge that ends the instruction's last
        cycle (``fire``): vector register ``a[:3]`` := ``v_res`` if ``v_we``,
        scalar register ``a`` := ``s_res`` if ``s_we`` (``r0`` is never
        written)."""
        with m.If(d.fire & v_we):
            for i, vr in enumerate(self.vregs):
                with m.If(d.fa[:3] == i):
                    m.d.sync += vr.eq(v_res)
        with m.If(d.fire & s_we):
            for i, r in enumerate(self.regs):
                if i:
                    with m.If(d.fa == i):
                        m.d.sync += r.eq(s_res)

    def _next_pc(self, m: Module, d: _Decode, o: _Operands, pc1: Signal) -> Signal:
        """The next pc, combinational (the instruction memory reads it in this
        cycle: :meth:`_memory_ports`): ``pc`` while the instruction is not in its
        last cycle or halts; ``branch_target = pc + simm`` for a ``jal`` or a
        taken branch (``taken``); ``ea`` for ``jalr``; else ``pc + 1``.  Returns
        ``next_pc``."""
        pc, pcb, is_ = self.pc, self.geom.pc_bits, d.is_
        ra, rb = o.ra, o.rb
        target = Signal(pcb, name="branch_target")
        m.d.comb += target.eq(pc + d.simm)
        eq_, lt, ltu = ra == rb, rb.as_signed() < ra.as_signed(), rb < ra
        taken = Signal(name="taken")
        m.d.comb += taken.eq(
            (is_["beq"] & eq_) | (is_["bne"] & ~eq_) | (is_["blt"] & lt) | (is_["bge"] & ~lt)
            | (is_["bltu"] & ltu) | (is_["bgeu"] & ~ltu) | is_["jal"])
        next_pc = Signal(pcb, name="next_pc")
        with m.If(~d.last | d.halting):
            m.d.comb += next_pc.eq(pc)
        with m.Elif(taken):
            m.d.comb += next_pc.eq(target)
        with m.Elif(is_["jalr"]):
            m.d.comb += next_pc.eq(o.ea[:pcb])
        with m.Else():
            m.d.comb += next_pc.eq(pc1)
        return next_pc

    def _memory_ports(self, m: Module, d: _Decode, o: _Operands, next_pc: Signal,
                      rpi, wpi, rpd, wpd) -> None:
        """The memories' ports: the core's while running, the host's otherwise
        (``host_ok``: not running and not being started).  Instruction memory:
        read at ``next_pc`` while running, at ``host_imem_addr`` otherwise; host
        writes at the clock edge.  Data memory: while running, addressed by ``ea``
        (``lw``/``sw``: the word's vector ``ea[wb:]``, else vector ``ea``), ``sw``
        writes its word and ``vst`` the whole vector at the clock edge; otherwise
        the host's word.  The host's ``rdata`` is the word addressed in the
        previous cycle (registered ``host_*_ok_q``, ``host_word_q``), 0 when that
        cycle did not qualify."""
        running, start, g = self.running, self.start, self.geom
        wb, vab = self._dmem_bits()
        ea, is_ = o.ea, d.is_
        host_ok = Signal(name="host_ok")
        m.d.comb += host_ok.eq(~running & ~start)
        hw_i = Signal(name="host_imem_ok_q")
        hw_d = Signal(name="host_dmem_ok_q")
        hidx = Signal(max(1, wb), name="host_word_q")
        m.d.sync += [hw_i.eq(host_ok), hw_d.eq(host_ok)]
        if wb:
            m.d.sync += hidx.eq(self.host_dmem_addr[:wb])
        with m.If(running):
            m.d.comb += rpi.addr.eq(next_pc)
        with m.Elif(~start):
            m.d.comb += rpi.addr.eq(self.host_imem_addr)
        m.d.comb += [
            wpi.addr.eq(self.host_imem_addr),
            wpi.data.eq(self.host_imem_wdata),
            wpi.en.eq(host_ok & self.host_imem_we),
            self.host_imem_rdata.eq(Mux(hw_i, rpi.data, 0)),
            self.host_dmem_rdata.eq(Mux(hw_d, rpd.data.word_select(hidx[:wb], XLEN)
                                        if wb else rpd.data[:XLEN], 0)),
        ]
        with m.If(running):
            with m.If(is_["lw"] | is_["sw"]):
                m.d.comb += [rpd.addr.eq(ea[wb:wb + vab]), wpd.addr.eq(ea[wb:wb + vab])]
            with m.Else():
                m.d.comb += [rpd.addr.eq(ea[:vab]), wpd.addr.eq(ea[:vab])]
            with m.If(is_["sw"]):
                m.d.comb += [wpd.data.eq(o.ra.replicate(g.vector_words)),
                             wpd.en.eq(Const(1, g.vector_words) << ea[:wb])]
            with m.If(is_["vst"]):
                m.d.comb += [wpd.data.eq(o.va), wpd.en.eq((1 << g.vector_words) - 1)]
        with m.Else():
            m.d.comb += [
                rpd.addr.eq(self.host_dmem_addr[wb:]),
                wpd.addr.eq(self.host_dmem_addr[wb:]),
                wpd.data.eq(self.host_dmem_wdata.replicate(g.vector_words)),
            ]
            with m.If(host_ok & self.host_dmem_we):
                m.d.comb += wpd.en.eq(Const(1, g.vector_words) << self.host_dmem_addr[:wb])

    def _control(self, m: Module, d: _Decode, phase: Signal, next_pc: Signal) -> None:
        """The run state, at the clock edge: ``start`` (not running) starts at pc
        0 with ``halted``, ``phase`` and ``cycles`` cleared; while running, ``pc``
        := ``next_pc``, ``cycles`` counts (saturating), ``phase`` goes to 1 after
        the first cycle of a two-cycle instruction and to 0 after the last; a
        halting instruction's last cycle stops the core with ``halted`` set;
        ``stop`` stops it (``phase`` 0)."""
        running, pc, cycles = self.running, self.pc, self.cycles
        cmax = (1 << XLEN) - 1
        with m.If(~running):
            with m.If(self.start):
                m.d.sync += [running.eq(1), self.halted.eq(0), pc.eq(0), phase.eq(0),
                             cycles.eq(0)]
        with m.Else():
            m.d.sync += cycles.eq(Mux(cycles == cmax, cmax, cycles + 1))
            m.d.sync += pc.eq(next_pc)
            with m.If(d.last):
                m.d.sync += phase.eq(0)
                with m.If(d.halting):
                    m.d.sync += [running.eq(0), self.halted.eq(1)]
            with m.Elif(d.two_cycle):
                m.d.sync += phase.eq(1)
            with m.If(self.stop):
                m.d.sync += [running.eq(0), phase.eq(0)]
