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
  the previous cycle.  ``adc_count`` (In): samples in the ADC buffer, read by
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

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
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
            "adc_count": In(cfg.adc_buffer_depth.bit_length()),
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
        cfg, g = self.cfg, self.geom
        V, C, N = g.vector_bits, cfg.columns_per_half, cfg.n_neurons
        pcb = g.pc_bits
        m.submodules.imem = self.imem
        m.submodules.dmem = self.dmem

        running, phase = self.running, Signal(name="phase")
        pc = self.pc

        # -- fetch and decode ----------------------------------------------------
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

        def any_of(*names):
            return Cat(*(is_[n] for n in names)).any()

        two_cycle = Signal(name="two_cycle")
        m.d.comb += two_cycle.eq(any_of(*(i.mnemonic for i in BY_MNEMONIC.values()
                                          if i.cycles == 2)))
        last = Signal(name="last")      # the instruction's effects happen in this cycle
        m.d.comb += last.eq(Mux(two_cycle, phase, Mux(is_["vout"], self.out.ready, 1)))
        fire = Signal(name="fire")
        m.d.comb += fire.eq(running & last)

        # -- register files --------------------------------------------------------
        R = Array(self.regs)
        VR = Array(self.vregs)
        ra, rb, rc, rd_ = (Signal(XLEN, name=f"reg_{n}") for n in "abcd")
        m.d.comb += [ra.eq(R[fa]), rb.eq(R[fb]), rc.eq(R[fc]), rd_.eq(R[fd])]
        VA, VB, VC, VD = (Signal(V, name=f"vreg_{n}") for n in "abcd")
        m.d.comb += [VA.eq(VR[fa[:3]]), VB.eq(VR[fb[:3]]), VC.eq(VR[fc[:3]]),
                     VD.eq(VR[fd[:3]])]
        ea = Signal(XLEN, name="ea")
        m.d.comb += ea.eq(rb + simm)

        # -- scalar ALU ----------------------------------------------------------------
        s_res = Signal(XLEN, name="s_res")
        s_we = Signal(name="s_we")
        sext_imm = Signal(XLEN, name="sext_imm")
        m.d.comb += sext_imm.eq(simm)
        pc1 = Signal(pcb, name="pc_plus_1")
        m.d.comb += pc1.eq(pc + 1)
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

        # -- data memory ------------------------------------------------------------------
        wb = (g.vector_words - 1).bit_length()         # word-in-vector bits
        vab = (g.dmem_vectors - 1).bit_length()        # vector address bits
        rpd = self.dmem.read_port()
        wpd = self.dmem.write_port(granularity=XLEN)
        lw_data = Signal(XLEN, name="lw_data")
        m.d.comb += lw_data.eq(rpd.data.word_select(ea[:wb], XLEN))
        scalar["lw"] = lw_data

        # -- vector ALU ------------------------------------------------------------------
        rc_idx = rc
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
        scalar["vget"] = vget
        valu = Signal(V, name="valu")
        m.d.comb += valu.eq(Mux(size, lane_results[16], lane_results[8]))

        with m.Switch(op):
            for mn, value in scalar.items():
                ins_ = BY_MNEMONIC[mn]
                if ins_.funct is None:
                    with m.Case(ins_.opcode):
                        m.d.comb += [s_res.eq(value), s_we.eq(1)]
        with m.If(is_["vget"]):
            m.d.comb += [s_res.eq(vget), s_we.eq(1)]

        # -- synapse rows ------------------------------------------------------------------
        L8 = g.lanes(8)
        kc, rbits, hb = g.row_chunk_bits, g.row_bits, g.half_bits
        chunk = ea[:kc]
        row = ea[kc:kc + rbits]
        half = ea[kc + rbits:kc + rbits + hb]
        row_ok = Signal(name="row_ok")
        m.d.comb += row_ok.eq((chunk < g.row_chunks) & (row < cfg.rows_per_half)
                              & (half < cfg.n_halves))
        row_op = Signal(name="row_op")
        m.d.comb += row_op.eq(any_of("vlw", "vll", "vsw", "vsl"))
        m.d.comb += [
            self.syn.half.eq(half),
            self.syn.row.eq(row),
            self.syn.re.eq(running & row_op & ~phase & row_ok),
        ]
        rdata = self.syn.rdata
        row_w = Signal(V, name="row_weights")
        row_l = Signal(V, name="row_labels")
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
        store_w, store_l = is_["vsw"], is_["vsl"]
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

        # -- ADC samples ----------------------------------------------------------------------
        la = g.adc_lane_bits
        nla = g.adc_lanes
        ka = g.adc_chunk_bits
        a_chunk = ea[:ka]
        sample = ea[ka:ka + g.sample_bits]
        adc_ok = Signal(name="adc_ok")
        m.d.comb += adc_ok.eq((a_chunk < g.adc_chunks) & (sample < cfg.adc_buffer_depth))
        m.d.comb += [
            self.adc.addr.eq(sample),
            self.adc.re.eq(running & is_["vadc"] & ~phase & adc_ok),
        ]
        adc_vec = Signal(V, name="adc_vector")
        with m.Switch(a_chunk):
            for k in range(g.adc_chunks):
                with m.Case(k):
                    m.d.comb += adc_vec.eq(Cat(*(
                        Cat(self.adc.rdata[k * nla + i], Const(0, la - cfg.adc_bits))
                        if k * nla + i < N else Const(0, la) for i in range(nla))))

        # -- neuron resets ----------------------------------------------------------------------
        kn = g.neuron_chunk_bits
        n_chunk = ea[:kn]
        with m.If(running & is_["vrst"]):
            for n in range(N):
                k, i = divmod(n, L8)
                m.d.comb += self.nreset[n].eq((n_chunk == k) & VA[i * 8:(i + 1) * 8].any())

        # -- output stream ------------------------------------------------------------------------
        m.d.comb += [
            self.out.valid.eq(running & is_["vout"]),
            self.out.payload.eq(VA),
        ]

        # -- vector register write -------------------------------------------------------------
        v_res = Signal(V, name="v_res")
        v_we = Signal(name="v_we")
        with m.If((op == OP_VALU) & defined & ~is_["vget"]):
            m.d.comb += [v_res.eq(valu), v_we.eq(1)]
        with m.If(is_["vld"]):
            m.d.comb += [v_res.eq(rpd.data), v_we.eq(1)]
        with m.If(is_["vlw"] | is_["vll"]):
            m.d.comb += [v_res.eq(Mux(row_ok, Mux(is_["vlw"], row_w, row_l), 0)), v_we.eq(1)]
        with m.If(is_["vadc"]):
            m.d.comb += [v_res.eq(Mux(adc_ok, adc_vec, 0)), v_we.eq(1)]

        with m.If(fire & v_we):
            for i, vr in enumerate(self.vregs):
                with m.If(fa[:3] == i):
                    m.d.sync += vr.eq(v_res)
        with m.If(fire & s_we):
            for i, r in enumerate(self.regs):
                if i:
                    with m.If(fa == i):
                        m.d.sync += r.eq(s_res)

        # -- next pc -------------------------------------------------------------------------------
        target = Signal(pcb, name="branch_target")
        m.d.comb += target.eq(pc + simm)
        eq_, lt, ltu = ra == rb, sb < ra.as_signed(), rb < ra
        taken = Signal(name="taken")
        m.d.comb += taken.eq(
            (is_["beq"] & eq_) | (is_["bne"] & ~eq_) | (is_["blt"] & lt) | (is_["bge"] & ~lt)
            | (is_["bltu"] & ltu) | (is_["bgeu"] & ~ltu) | is_["jal"])
        next_pc = Signal(pcb, name="next_pc")
        with m.If(~last | halting):
            m.d.comb += next_pc.eq(pc)
        with m.Elif(taken):
            m.d.comb += next_pc.eq(target)
        with m.Elif(is_["jalr"]):
            m.d.comb += next_pc.eq(ea[:pcb])
        with m.Else():
            m.d.comb += next_pc.eq(pc1)

        # -- memory ports: core while running, host otherwise -----------------------
        host_ok = Signal(name="host_ok")
        m.d.comb += host_ok.eq(~running & ~self.start)
        hw_i = Signal(name="host_imem_ok_q")
        hw_d = Signal(name="host_dmem_ok_q")
        hidx = Signal(max(1, wb), name="host_word_q")
        m.d.sync += [hw_i.eq(host_ok), hw_d.eq(host_ok)]
        if wb:
            m.d.sync += hidx.eq(self.host_dmem_addr[:wb])
        with m.If(running):
            m.d.comb += rpi.addr.eq(next_pc)
        with m.Elif(~self.start):
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
                m.d.comb += [wpd.data.eq(ra.replicate(g.vector_words)),
                             wpd.en.eq(Const(1, g.vector_words) << ea[:wb])]
            with m.If(is_["vst"]):
                m.d.comb += [wpd.data.eq(VA), wpd.en.eq((1 << g.vector_words) - 1)]
        with m.Else():
            m.d.comb += [
                rpd.addr.eq(self.host_dmem_addr[wb:]),
                wpd.addr.eq(self.host_dmem_addr[wb:]),
                wpd.data.eq(self.host_dmem_wdata.replicate(g.vector_words)),
            ]
            with m.If(host_ok & self.host_dmem_we):
                m.d.comb += wpd.en.eq(Const(1, g.vector_words) << self.host_dmem_addr[:wb])

        # -- control ---------------------------------------------------
        cmax = (1 << XLEN) - 1
        with m.If(~running):
            with m.If(self.start):
                m.d.sync += [running.eq(1), self.halted.eq(0), pc.eq(0), phase.eq(0),
                             self.cycles.eq(0)]
        with m.Else():
            m.d.sync += self.cycles.eq(Mux(self.cycles == cmax, cmax, self.cycles + 1))
            m.d.sync += pc.eq(next_pc)
            with m.If(last):
                m.d.sync += phase.eq(0)
                with m.If(halting):
                    m.d.sync += [running.eq(0), self.halted.eq(1)]
            with m.Elif(two_cycle):
                m.d.sync += phase.eq(1)
            with m.If(self.stop):
                m.d.sync += [running.eq(0), phase.eq(0)]
        return m
