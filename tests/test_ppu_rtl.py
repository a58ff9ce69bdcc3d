"""Ppu (rtl/ppu.py) against the instruction-level reference PpuSim (model/ppu_sim.py).

Programs (random instruction sequences with valid operands, forward branches
and bounded loops; raw random words; directed programs) run on the RTL in
amaranth.sim, with Python models of the synapse memory and the ADC buffer behind
its ports, random backpressure on the output stream and, optionally, a host
stop in a random cycle; the same program runs on PpuSim.  Compared: the pc of
every cycle, the registers and vector registers after every instruction, the
data memory, the synapse rows, the stream transfers (cycle and vector), the
neuron resets (cycle and mask), the cycle count and the halted/running state.
A failure names the first instruction (pc, cycle, disassembly) and register
that differ."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.base.config import FULL, MINI
from spikeloop.base.isa import BY_MNEMONIC, N_VREGS, PpuGeometry
from spikeloop.base.layouts import unpack_array
from spikeloop.model.ppu_sim import AdcPortModel, Environment, PpuSim, RowPortModel, SynapseRows
from spikeloop.ppu import programs as P
from spikeloop.ppu.asm import assemble
from spikeloop.rtl.ppu import Ppu
from tests.simutil import get, put, simulate

pytestmark = pytest.mark.rtl

#: small memories keep the simulations quick; the defaults are tested for export
IMEM, DMEM = 128, 64
DOCS = Path(__file__).resolve().parents[1] / "docs" / "ppu.md"
LONG_IMEM = 512


@dataclass
class Scenario:
    """Everything a run needs besides the program."""

    syn: list            # [half][row][col] (weight, label)
    adc: list            # [sample][neuron] codes
    dmem: list[int]      # initial data memory words
    ready: list[int]     # out.ready per PPU cycle (cyclic)
    adc_rate: int        # adc_count = min(depth, cycle // adc_rate)
    stop_at: int | None  # host stop in this PPU cycle
    max_cycles: int


def random_scenario(cfg, rng: random.Random, *, dmem_words=DMEM, max_cycles=400,
                    backpressure=True, stop=False) -> Scenario:
    syn = [[[(rng.randrange(cfg.weight_max + 1), rng.randrange(1 << cfg.label_bits))
             for _ in range(cfg.columns_per_half)] for _ in range(cfg.rows_per_half)]
           for _ in range(cfg.n_halves)]
    adc = [[rng.randrange(1 << cfg.adc_bits) for _ in range(cfg.n_neurons)]
           for _ in range(cfg.adc_buffer_depth)]
    dmem = [rng.getrandbits(32) for _ in range(dmem_words)]
    ready = [int(rng.random() < 0.6) if backpressure else 1 for _ in range(37)]
    ready[-1] = 1
    return Scenario(syn, adc, dmem, ready, rng.randrange(1, 8),
                    rng.randrange(max_cycles // 2) if stop else None, max_cycles)


def environment(cfg, sc: Scenario, t0: int) -> Environment:
    """The scenario as PpuSim sees it; ``t0``: the RTL cycle of the first instruction."""
    return Environment(
        ready=lambda k: bool(sc.ready[k % len(sc.ready)]),
        adc_count=lambda k: min(cfg.adc_buffer_depth, k // sc.adc_rate),
        time=lambda k: (t0 + k) & 0xFFFF_FFFF)


def reference(cfg, words, sc: Scenario, t0: int, **geo):
    sim = PpuSim(PpuGeometry(cfg, **geo), env=environment(cfg, sc, t0),
                 syn=SynapseRows(cfg, sc.syn), adc=[list(s) for s in sc.adc])
    sim.load(words)
    sim.dmem[:] = list(sc.dmem)
    sim.start()
    trace = sim.run(sc.max_cycles, stop_at=sc.stop_at)
    return sim, trace


def _describe(trace, i) -> str:
    r = trace[i]
    return f"instruction #{i} at pc {r.pc} (`{r.text()}`, first cycle {r.start})"


def run_and_compare(cfg, words, sc: Scenario, *, imem_words=IMEM, dmem_words=DMEM):
    """Run ``words`` on the RTL and on PpuSim; assert they agree.  Returns
    (reference simulator, trace, RTL cycle count)."""
    geo = dict(imem_words=imem_words, dmem_words=dmem_words)
    dut = Ppu(cfg, **geo)
    n_load = max(len(words), len(sc.dmem))
    t0 = n_load + 1                # start in cycle n_load, first instruction in n_load + 1
    sim, trace = reference(cfg, words, sc, t0, **geo)
    starts = {r.start: i for i, r in enumerate(trace)}
    rows = SynapseRows(cfg, sc.syn)
    rowport = RowPortModel(rows)
    adcport = AdcPortModel(cfg, sc.adc)
    got = {"stream": [], "resets": [], "cycles": None}
    C = cfg.columns_per_half
    sbits = cfg.weight_bits + cfg.label_bits

    def pack_row(row):
        word = 0
        for c, (w, lab) in enumerate(row):
            word |= (w | (lab << cfg.weight_bits)) << (c * sbits)
        return word

    def unpack_row(word):
        out = []
        for c in range(C):
            s = (word >> (c * sbits)) & ((1 << sbits) - 1)
            out.append((s & cfg.weight_max, s >> cfg.weight_bits))
        return out

    async def bench(ctx):
        # host loads the program and the data memory, one word per cycle each
        for i in range(n_load):
            if i < len(words):
                put(ctx, dut.host_imem_addr, i)
                put(ctx, dut.host_imem_wdata, words[i])
                put(ctx, dut.host_imem_we, 1)
            else:
                put(ctx, dut.host_imem_we, 0)
            if i < len(sc.dmem):
                put(ctx, dut.host_dmem_addr, i)
                put(ctx, dut.host_dmem_wdata, sc.dmem[i])
                put(ctx, dut.host_dmem_we, 1)
            else:
                put(ctx, dut.host_dmem_we, 0)
            await ctx.tick()
        put(ctx, dut.host_imem_we, 0)
        put(ctx, dut.host_dmem_we, 0)
        put(ctx, dut.start, 1)
        await ctx.tick()
        put(ctx, dut.start, 0)
        limit = sim.cycle + 3
        for k in range(limit):
            put(ctx, dut.time, (t0 + k) & ((1 << cfg.timestamp_bits) - 1))
            put(ctx, dut.adc_count, min(cfg.adc_buffer_depth, k // sc.adc_rate))
            put(ctx, dut.out.ready, sc.ready[k % len(sc.ready)])
            put(ctx, dut.stop, int(k == sc.stop_at))
            put(ctx, dut.syn.rdata, pack_row(rowport.rdata))
            put(ctx, dut.adc.rdata, sum(v << (i * cfg.adc_bits)
                                        for i, v in enumerate(adcport.rdata)))
            running = get(ctx, dut.running)
            if k == sim.cycle and sim.running:   # the reference hit max_cycles: compare here
                assert running, f"cycle {k}: the RTL stopped, the reference still runs"
                break
            if k < sim.cycle:
                assert running, f"cycle {k}: the RTL stopped running; reference runs " \
                                f"{_describe(trace, max(i for s, i in starts.items() if s <= k))}"
            if k in starts:
                i = starts[k]
                pc = get(ctx, dut.pc)
                assert pc == trace[i].pc, (
                    f"cycle {k}: RTL pc {pc} != reference pc {trace[i].pc}; "
                    f"expected {_describe(trace, i)}"
                    + (f"; the previous was {_describe(trace, i - 1)}" if i else ""))
                if i:
                    _compare_state(ctx, dut, trace, i - 1)
            if not running:
                break
            # ports of this cycle
            if get(ctx, dut.out.valid) and sc.ready[k % len(sc.ready)]:
                got["stream"].append((k, get(ctx, dut.out.payload)))
            mask = get(ctx, dut.nreset)
            if mask:
                got["resets"].append((k, mask))
            rowport.tick(get(ctx, dut.syn.half), get(ctx, dut.syn.row), get(ctx, dut.syn.re),
                         get(ctx, dut.syn.we), unpack_row(get(ctx, dut.syn.wdata)))
            adcport.tick(get(ctx, dut.adc.addr), get(ctx, dut.adc.re))
            await ctx.tick()
        else:
            raise AssertionError(f"the RTL still runs after {limit} cycles; the reference "
                                 f"stopped after {sim.cycle}")
        # stopped: final state
        assert k == sim.cycle, f"RTL ran {k} cycles, reference {sim.cycle}"
        got["cycles"] = get(ctx, dut.cycles)
        if trace:
            _compare_state(ctx, dut, trace, len(trace) - 1)
        assert get(ctx, dut.running) == int(sim.running), "running differs"
        assert get(ctx, dut.halted) == int(sim.halted), "halted differs"
        assert get(ctx, dut.pc) == sim.pc, f"final pc: RTL {get(ctx, dut.pc)} != {sim.pc}"
        for v in range(dut.geom.dmem_vectors):
            vec = ctx.get(dut.dmem.data[v])
            words_ = unpack_array(vec, 32, dut.geom.vector_words)
            ref = sim.dmem[v * dut.geom.vector_words:(v + 1) * dut.geom.vector_words]
            assert words_ == ref, f"dmem vector {v}: RTL {words_} != reference {ref}"

    simulate(dut, bench, name="ppu")
    assert got["cycles"] == sim.cycle
    assert got["stream"] == sim.stream, _first_diff("stream transfer (cycle, vector)",
                                                    got["stream"], sim.stream)
    assert got["resets"] == sim.resets, _first_diff("neuron reset (cycle, mask)",
                                                    got["resets"], sim.resets)
    for h in range(cfg.n_halves):
        for r in range(cfg.rows_per_half):
            assert rows.rows[h][r] == sim.syn.rows[h][r], \
                f"synapse row {r} of half {h}: RTL {rows.rows[h][r]} != {sim.syn.rows[h][r]}"
    return sim, trace


def _first_diff(what, got, exp) -> str:
    for i, (g, e) in enumerate(zip(got, exp, strict=False)):
        if g != e:
            return f"{what} #{i}: RTL {g} != reference {e}"
    return f"{what}: RTL has {len(got)}, reference {len(exp)}"


def _compare_state(ctx, dut, trace, i):
    r = trace[i]
    for n in range(1, 16):
        v = get(ctx, dut.regs[n])
        assert v == r.regs[n], (f"after {_describe(trace, i)}: r{n}: RTL {v:#x} != "
                                f"reference {r.regs[n]:#x}")
    for n in range(N_VREGS):
        v = get(ctx, dut.vregs[n])
        assert v == r.vregs[n], (f"after {_describe(trace, i)}: v{n}: RTL {v:#x} != "
                                 f"reference {r.vregs[n]:#x}")


# -- random programs --------------------------------------------------------------

SCALAR_R = [i.mnemonic for i in BY_MNEMONIC.values() if i.fmt == "R"]
SCALAR_I = [i.mnemonic for i in BY_MNEMONIC.values() if i.fmt == "I"]
VALU = [i for i in BY_MNEMONIC.values() if i.funct is not None]
BRANCHES = ["beq", "bne", "blt", "bge", "bltu", "bgeu"]


def random_instruction(rng: random.Random, g: PpuGeometry) -> str:
    """One random instruction with valid operands (no control flow); destination
    scalar registers r0..r12 (r13, r14 count loops)."""
    def r():
        return f"r{rng.randrange(16)}"

    def rd():
        return f"r{rng.randrange(13)}"

    def v():
        return f"v{rng.randrange(N_VREGS)}"

    def off(span):
        return rng.choice([rng.randrange(-4, span), rng.randrange(-32768, 32768)])

    kind = rng.choices(["R", "I", "mem", "csr", "valu", "vmem", "row", "adc", "out", "rst"],
                       [4, 4, 2, 1, 8, 2, 3, 1, 1, 1])[0]
    if kind == "R":
        return f"{rng.choice(SCALAR_R)} {rd()}, {r()}, {r()}"
    if kind == "I":
        mn = rng.choice(SCALAR_I + ["lui"])
        ins = BY_MNEMONIC[mn]
        lo, hi = {"s16": (-32768, 32767), "u16": (0, 65535), "sh5": (0, 31)}[ins.imm]
        imm = rng.choice([rng.randint(lo, hi), rng.randint(max(lo, -3), min(hi, 3))])
        return f"lui {rd()}, {imm}" if mn == "lui" else f"{mn} {rd()}, {r()}, {imm}"
    if kind == "mem":
        return rng.choice([f"lw {rd()}, {off(g.dmem_words)}({r()})",
                           f"sw {r()}, {off(g.dmem_words)}({r()})"])
    if kind == "csr":
        return f"csrr {rd()}, {rng.choice(['cycle', 'adc_count', 'time'])}"
    if kind == "valu":
        ins = rng.choice(VALU)
        sfx = rng.choice([".b", ".h"])
        ops = []
        for _name, k, _fld in ins.format.operands:
            ops.append({"v": v(), "r": r(), "imm": str(rng.randrange(16))}[k])
        if ins.mnemonic == "vget":
            ops[0] = rd()
        return f"{ins.mnemonic}{sfx} {', '.join(ops)}"
    if kind == "vmem":
        return f"{rng.choice(['vld', 'vst'])} {v()}, {off(g.dmem_vectors)}({r()})"
    if kind == "row":
        return f"{rng.choice(['vlw', 'vll', 'vsw', 'vsl'])} {v()}, " \
               f"{off(1 << g.row_addr_bits)}({rng.choice(['r0', r()])})"
    if kind == "adc":
        return f"vadc {v()}, {off(g.cfg.adc_buffer_depth * g.adc_chunks)}(" \
               f"{rng.choice(['r0', r()])})"
    if kind == "out":
        return f"vout {v()}"
    return f"vrst {v()}, {off(g.neuron_chunks + 1)}({rng.choice(['r0', r()])})"


def random_program(rng: random.Random, g: PpuGeometry, n: int) -> list[str]:
    """A prologue that loads every register from the (random) data memory, then
    ``n`` blocks: single instructions, forward branches and jumps over the next
    1..3 lines, and loops of 1..3 iterations (counter r13)."""
    lines = [f"vld v{i}, {i}(r0)" for i in range(N_VREGS)]
    lines += [f"lw r{i}, {g.vector_words * N_VREGS + i}(r0)" for i in range(1, 13)]
    for _ in range(n):
        kind = rng.choices(["ins", "branch", "loop"], [8, 1, 1])[0]
        if kind == "ins":
            lines.append(random_instruction(rng, g))
        elif kind == "branch":
            mn = rng.choice(BRANCHES + ["jal"])
            skip = rng.randint(1, 3)
            target = len(lines) + 1 + skip
            if mn == "jal":
                lines.append(f"jal r{rng.randrange(13)}, {target}")
            else:
                lines.append(f"{mn} r{rng.randrange(16)}, r{rng.randrange(16)}, {target}")
            lines += [random_instruction(rng, g) for _ in range(skip)]
        else:
            body_at = len(lines) + 1
            lines.append(f"addi r13, r0, {rng.randint(1, 3)}")
            lines += [random_instruction(rng, g) for _ in range(rng.randint(1, 3))]
            lines += ["addi r13, r13, -1", f"bne r13, r0, {body_at}"]
    return lines + ["halt"]


def check_program(cfg, source: str, sc: Scenario, **geo):
    words = assemble(source, cfg, imem_words=geo.get("imem_words", IMEM)).words
    return run_and_compare(cfg, words, sc, **geo)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), stop=st.booleans())
def test_random_programs_mini(seed, stop):
    rng = random.Random(seed)
    g = PpuGeometry(MINI, imem_words=IMEM, dmem_words=DMEM)
    src = "\n".join(random_program(rng, g, rng.randint(8, 24)))
    check_program(MINI, src, random_scenario(MINI, rng, stop=stop))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), stop=st.booleans())
def test_random_programs_mini_long(seed, stop):
    # up to 20 + 60 * 6 + 1 words: a larger instruction memory than the quick tier's
    rng = random.Random(seed)
    g = PpuGeometry(MINI, imem_words=LONG_IMEM, dmem_words=DMEM)
    src = "\n".join(random_program(rng, g, rng.randint(20, 60)))
    check_program(MINI, src, random_scenario(MINI, rng, stop=stop, max_cycles=800),
                  imem_words=LONG_IMEM, dmem_words=DMEM)


VARIANT = MINI.replace(n_neurons=80, rows_per_half=6, weight_bits=4, label_bits=5, adc_bits=10,
                       n_halves=2, neurons_per_block=4, adc_buffer_depth=5, ppu_vector_bits=128)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_programs_odd_geometry(seed):
    """Columns not a multiple of the lanes, rows and samples not powers of two,
    ADC codes in 16-bit lanes."""
    rng = random.Random(seed)
    g = PpuGeometry(VARIANT, imem_words=IMEM, dmem_words=DMEM)
    assert (g.row_chunks, g.row_chunk_bits, g.adc_lane_bits, g.adc_chunks) == (3, 2, 16, 10)
    src = "\n".join(random_program(rng, g, rng.randint(10, 24)))
    check_program(VARIANT, src, random_scenario(VARIANT, rng))


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_words_mini(seed):
    """Arbitrary 32-bit words (undefined opcodes halt, reserved bits ignored,
    any branch): the two agree up to a cycle limit."""
    rng = random.Random(seed)
    defined = list(BY_MNEMONIC.values())
    words = []
    for _ in range(IMEM):
        w = rng.getrandbits(32)
        if rng.random() < 0.97:   # mostly defined instructions, so that something runs
            ins = rng.choice(defined)
            w = (w & 0x03FF_FFFF) | (ins.opcode << 26)
            if ins.funct is not None:
                w = (w & ~(0x1F << 4)) | (ins.funct << 4)
        words.append(w)
    run_and_compare(MINI, words, random_scenario(MINI, rng, max_cycles=150))


# -- directed ----------------------------------------------------------------------

def _scenario(cfg, seed=1, **kw):
    return random_scenario(cfg, random.Random(seed), **kw)


def test_weight_update_program_mini():
    """The example of docs/ppu.md (spikeloop/ppu/programs.py UPDATE_EXAMPLE): add
    an update vector from the data memory to every row, saturating to
    0..WEIGHT_MAX; stream each updated row; reset the neurons whose lane of the
    update is positive."""
    src = P.UPDATE_EXAMPLE
    docs = DOCS.read_text().split("## Example: weight update")[1].split("```")[1]
    assert assemble(docs, MINI).words == assemble(src, MINI).words, \
        "docs/ppu.md's example differs from programs.UPDATE_EXAMPLE"
    sc = _scenario(MINI)
    sim, trace = check_program(MINI, src, sc)
    n_rows = MINI.n_halves * MINI.rows_per_half
    assert len(sim.stream) == n_rows
    upd = [v - 256 if v > 127 else v for v in unpack_array(sim.vector_dmem(0), 8, 16)]
    for h in range(MINI.n_halves):
        for r in range(MINI.rows_per_half):
            want = [min(MINI.weight_max, max(0, w + upd[c]))
                    for c, (w, _) in enumerate(sc.syn[h][r])]
            assert sim.syn.weights(h, r) == want
            assert sim.syn.labels(h, r) == [lab for _, lab in sc.syn[h][r]]
    print(f"weight update, mini: {sim.cycle} cycles for {n_rows} rows")


def test_composed_programs():
    """programs.compose: parts that define the same labels, a part's last halt
    dropped, a halt before its end a jump to the next part; the last part halts."""
    early = """
        beq r0, r0, out
        addi r1, r0, 1
    out: halt
        addi r6, r0, 2
        halt
    """
    src = P.compose(P.UPDATE_EXAMPLE, early, P.UPDATE_EXAMPLE, "addi r7, r0, 3\nhalt")
    sc = _scenario(MINI, max_cycles=4000)
    sim, _ = check_program(MINI, src, sc)
    assert sim.halted and len(sim.stream) == 2 * MINI.n_halves * MINI.rows_per_half
    assert (sim.regs[1], sim.regs[6], sim.regs[7]) == (0, 0, 3)
    upd = [v - 256 if v > 127 else v for v in unpack_array(sim.vector_dmem(0), 8, 16)]
    for h in range(MINI.n_halves):
        for r in range(MINI.rows_per_half):
            want = [min(MINI.weight_max, max(0, min(MINI.weight_max, max(0, w + upd[c]))
                                               + upd[c]))
                    for c, (w, _) in enumerate(sc.syn[h][r])]
            assert sim.syn.weights(h, r) == want, (h, r)


def test_stop_abandons_a_stalled_vout():
    sc = _scenario(MINI)
    sc.ready = [0] * 20 + [1]
    sc.stop_at = 4
    sim, trace = check_program(MINI, "addi r1, r0, 5\nvout v0\nhalt", sc)
    assert not trace[-1].completed and sim.pc == 1 and not sim.halted and sim.stream == []


def test_call_and_return():
    src = """
        addi r1, r0, 3
        jal r15, sub
        addi r2, r1, 100
        halt
    sub: addi r1, r1, 1
        jalr r0, 0(r15)
    """
    sim, _ = check_program(MINI, src, _scenario(MINI))
    assert sim.regs[1] == 4 and sim.regs[2] == 104 and sim.regs[15] == 2


def test_host_ports_read_back_and_ignore_writes_while_running():
    cfg = MINI
    dut = Ppu(cfg, imem_words=IMEM, dmem_words=DMEM)
    prog = assemble("loop: addi r1, r1, 1\nj loop", cfg).words

    async def bench(ctx):
        for i, w in enumerate(prog):
            put(ctx, dut.host_imem_addr, i)
            put(ctx, dut.host_imem_wdata, w)
            put(ctx, dut.host_imem_we, 1)
            put(ctx, dut.host_dmem_addr, 5 + i)
            put(ctx, dut.host_dmem_wdata, 0xA0 + i)
            put(ctx, dut.host_dmem_we, 1)
            await ctx.tick()
        put(ctx, dut.host_imem_we, 0)
        put(ctx, dut.host_dmem_we, 0)
        for i, w in enumerate(prog):            # read back: data the cycle after the address
            put(ctx, dut.host_imem_addr, i)
            put(ctx, dut.host_dmem_addr, 5 + i)
            await ctx.tick()
            assert get(ctx, dut.host_imem_rdata) == w
            assert get(ctx, dut.host_dmem_rdata) == 0xA0 + i
        put(ctx, dut.start, 1)
        await ctx.tick()
        put(ctx, dut.start, 0)
        put(ctx, dut.host_dmem_addr, 5)
        put(ctx, dut.host_dmem_wdata, 0xDEAD)
        put(ctx, dut.host_dmem_we, 1)           # ignored: the core runs
        put(ctx, dut.host_imem_addr, 0)
        put(ctx, dut.host_imem_wdata, 0)
        put(ctx, dut.host_imem_we, 1)           # ignored too
        await ctx.tick()
        assert get(ctx, dut.running) == 1
        assert get(ctx, dut.host_dmem_rdata) == 0, "host reads are 0 while running"
        put(ctx, dut.host_dmem_we, 0)
        put(ctx, dut.host_imem_we, 0)
        await ctx.tick().repeat(8)
        put(ctx, dut.stop, 1)
        await ctx.tick()
        put(ctx, dut.stop, 0)
        assert get(ctx, dut.running) == 0 and get(ctx, dut.halted) == 0
        assert get(ctx, dut.cycles) == 10
        assert get(ctx, dut.regs[1]) == 5      # 10 cycles: addi, j, addi, j, ...
        await ctx.tick()
        assert get(ctx, dut.host_dmem_rdata) == 0xA0, "the write while running was ignored"
        assert get(ctx, dut.host_imem_rdata) == prog[0]
        put(ctx, dut.start, 1)                  # restart: pc 0, cycles 0
        await ctx.tick()
        put(ctx, dut.start, 0)
        assert get(ctx, dut.running) == 1 and get(ctx, dut.pc) == 0
        assert get(ctx, dut.cycles) == 0

    simulate(dut, bench, name="ppu_host")


def test_full_preset_short_program():
    """The full preset's geometry: two chunks per row, four ADC chunks of 128
    lanes, four neuron chunks; a short program over both halves."""
    cfg = FULL
    g = PpuGeometry(cfg, imem_words=64, dmem_words=64)
    assert (g.lanes(8), g.row_chunks, g.adc_chunks, g.neuron_chunks) == (128, 2, 4, 4)
    src = f"""
        li r1, {g.row_address(1, 200, 1)}
        vlw v1, 0(r1)
        vll v2, -1(r1)
        vadc v3, {3 + (7 << g.adc_chunk_bits)}(r0)
        vadd.b v4, v1, v2
        vsw v4, -1(r1)
        vsl v1, 0(r1)
        vrst v3, 3(r0)
        vout v4
        vmul.h v5, v3, v4, 3
        halt
    """
    t = time.monotonic()
    sim, trace = check_program(cfg, src, _scenario(cfg, max_cycles=100),
                               imem_words=64, dmem_words=64)
    mask = sim.resets[0][1]
    assert mask >> 384 and not mask & ((1 << 384) - 1), "chunk 3: neurons 384..511 only"
    print(f"full preset: {sim.cycle} cycles in {time.monotonic() - t:.1f} s")


# -- Verilog: port names and Verilator lint --------------------------------------

def _lint(cfg):
    """Verilator -Wall over the exported Verilog with rtl/export.py's waivers;
    returns (Verilog text, findings)."""
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    from amaranth.back import verilog

    from spikeloop.rtl.export import LINT_WAIVERS
    from spikeloop.rtl.tools import ensure_verilator_on_path

    exe = ensure_verilator_on_path()
    text = verilog.convert(Ppu(cfg), name="spikeloop_ppu", emit_src=False,
                           strip_internal_attrs=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "ppu.v").write_text(text)
        (d / "waivers.vlt").write_text("`verilator_config\n" + "".join(
            f"lint_off -rule {rule}\n" for rule in LINT_WAIVERS))
        proc = subprocess.run([exe, "--lint-only", "-Wall", "--top-module", "spikeloop_ppu",
                               str(d / "waivers.vlt"), str(d / "ppu.v")],
                              capture_output=True, text=True)
    findings = [ln for ln in proc.stderr.splitlines() if ln.startswith("%")]
    if proc.returncode and not findings:
        findings = [proc.stderr[-2000:]]
    header = re.search(r"^module spikeloop_ppu\((.*?)\);", text, re.S | re.M).group(1)
    return {p.strip() for p in header.split(",")}, findings


EXPECTED_PORTS = {
    "clk", "rst", "start", "stop", "running", "halted", "pc", "cycles",
    "host_imem_addr", "host_imem_we", "host_imem_wdata", "host_imem_rdata",
    "host_dmem_addr", "host_dmem_we", "host_dmem_wdata", "host_dmem_rdata",
    "syn__half", "syn__row", "syn__re", "syn__rdata", "syn__we", "syn__wdata",
    "adc__addr", "adc__re", "adc__rdata", "adc_count", "time", "nreset",
    "out__valid", "out__ready", "out__payload"}


def test_verilog_ports_and_lint_mini():
    ports, findings = _lint(MINI)
    assert {p.strip("\\ ") for p in ports} == EXPECTED_PORTS
    assert findings == []


@pytest.mark.slow
def test_verilog_ports_and_lint_full():
    ports, findings = _lint(FULL)
    assert {p.strip("\\ ") for p in ports} == EXPECTED_PORTS
    assert findings == []
