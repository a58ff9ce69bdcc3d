"""The compiled PPU core (spikeloop/backends/ppu_core.py, inside FastPpu) against
the cycle-level reference PpuRef, cycle by cycle, on random programs that use
every instruction, on geometries with 8- and 16-bit ADC lanes, odd sizes and
the ADC ring; and its log of what a run read first, which the fast backend's
speculation relies on."""
from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeloop.backends import ppu_core as core
from spikeloop.backends.fast_ppu import FastPpu
from spikeloop.base.config import FULL, MINI
from spikeloop.base.isa import (
    BY_MNEMONIC,
    N_REGS,
    N_VREGS,
    XMASK,
    chip_geometry,
    out_buffer_vectors,
)
from spikeloop.base.layouts import unpack_array
from spikeloop.base.ppu_job import PpuJob
from spikeloop.model.digital.ppu import PpuRef
from spikeloop.ppu.asm import assemble
from tests.test_ppu_rtl import VARIANT, random_program

RING = MINI.replace(name="mini-ring", adc_ring=True, adc_buffer_depth=5, counter_bits=4)
CONFIGS = {"mini": MINI, "full": FULL, "variant": VARIANT, "ring": RING}


class _Buffer(list):
    """The ADC buffer as PpuRef reads it: an entry None is not known (a
    speculated run); reading it reads zeros and is noted."""

    def __init__(self, rows, n):
        super().__init__(rows)
        self.n, self.stale = n, False

    def __getitem__(self, j):
        row = super().__getitem__(j)
        if row is None:
            self.stale = True
            return [0] * self.n
        return row


class Reference:
    """PpuRef in the chip, cycle by cycle: the ADC sample taken in cycle ``k``
    is in the buffer from cycle ``k + 1``; the reset holds per analog step;
    the output buffer and its drops."""

    def __init__(self, cfg, job, synapses, stale, adc_cycles, codes, L, n_steps, state=None):
        self.cfg, self.L, self.n_steps = cfg, L, n_steps
        self.adc_cycles, self.codes = list(adc_cycles), codes
        self.buf = _Buffer(stale, cfg.n_neurons)
        self.ref = PpuRef(cfg, self.buf)
        w, lab = synapses
        self.ref.sim.syn.rows = [[list(zip(w[h, r].tolist(), lab[h, r].tolist(), strict=True))
                                  for r in range(cfg.rows_per_half)] for h in range(cfg.n_halves)]
        self.ref.load(job.words)
        if state is None:
            for i, x in job.dmem:
                self.ref.write_dmem(i, x)
        else:
            sim = self.ref.sim
            sim.regs, sim.vregs, sim.dmem = (list(x) for x in state)
        self.ref.tick(start=1)
        self.cycle, self.taken = 1, 0
        self.holds: dict[int, set] = {}
        self.out, self.drops = [], 0
        self.cap = (1 << cfg.counter_bits) - 1 if cfg.adc_ring else cfg.adc_buffer_depth
        self.depth = out_buffer_vectors(cfg)

    def tick(self):
        cfg, c = self.cfg, self.cycle
        t = min(c, self.L)
        while self.taken < len(self.adc_cycles) and self.adc_cycles[self.taken] < t:
            i = self.taken
            if cfg.adc_ring or i < cfg.adc_buffer_depth:
                list.__setitem__(self.buf, i % cfg.adc_buffer_depth, list(self.codes[i]))
            self.taken += 1
        po = self.ref.tick(adc_count=min(self.taken, self.cap), time=t)
        if po["nreset"] and c < self.L and c // cfg.analog_step_cycles < self.n_steps:
            self.holds.setdefault(c // cfg.analog_step_cycles, set()).update(
                i for i in range(cfg.n_neurons) if po["nreset"] >> i & 1)
        if po["out"] is not None:
            if len(self.out) < self.depth:
                self.out.append(po["out"])
            else:
                self.drops = min(self.drops + 1, (1 << cfg.counter_bits) - 1)
        self.cycle += 1


def _job(cfg, rng: random.Random, L: int = 100, n_samples: int = 8) -> PpuJob:
    """A random program (tests/test_ppu_rtl.py's, every instruction) on the chip's
    geometry, then rounds that wait for a time (below ``L``) or a sample count
    (at most ``n_samples``, saturated) and read, stream and reset; random data
    words."""
    g = chip_geometry(cfg)
    lines = random_program(rng, g, rng.randint(10, 40))[:-1]
    # (the random program has no jalr: one, to the next instruction or the one after)
    lines.append(f"jalr r{rng.randrange(1, 13)}, {len(lines) + rng.randint(1, 2)}(r0)")
    lines.append("addi r12, r12, 1")
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.5:
            lines += [f"addi r14, r0, {rng.randint(1, L - 1)}", "csrr r15, time"]
        else:
            top = min(n_samples, (1 << cfg.counter_bits) - 1 if cfg.adc_ring
                      else cfg.adc_buffer_depth)
            lines += [f"addi r14, r0, {rng.randint(0, top)}", "csrr r15, adc_count"]
        lines.append(f"bltu r15, r14, {len(lines) - 1}")
        v = f"v{rng.randrange(N_VREGS)}"
        ea = (rng.randrange(cfg.adc_buffer_depth) << g.adc_chunk_bits) | rng.randrange(g.adc_chunks)
        rst = rng.randrange(g.neuron_chunks)
        lines += [f"vadc {v}, {ea}(r0)", f"vout {v}", f"vrst {v}, {rst}(r0)",
                  "csrr r12, adc_count", f"sw r12, {rng.randrange(8)}(r0)"]
    lines.append("halt")
    dmem = [(i, rng.randrange(1 << 32)) for i in range(g.vector_words * N_VREGS + 13)]
    return PpuJob.of(cfg, {"words": assemble("\n".join(lines), cfg).words, "dmem": dmem,
                           "when": "each_sample", "read_dmem": [0, 1, 2, 3, 40],
                           "max_cycles": 3000})


def _setup(cfg, rng: random.Random, *, unknown: bool = False):
    H, R, C, n = cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half, cfg.n_neurons
    nrng = np.random.default_rng(rng.randrange(1 << 32))
    synapses = (nrng.integers(0, cfg.weight_max + 1, (H, R, C)),
                nrng.integers(0, 1 << cfg.label_bits, (H, R, C)))
    stale = [nrng.integers(0, 1 << cfg.adc_bits, n).tolist()
             for _ in range(cfg.adc_buffer_depth)]
    if unknown:
        for j in range(0, cfg.adc_buffer_depth, 2):
            stale[j] = None
    S = cfg.analog_step_cycles
    n_steps = rng.randint(4, 24)
    L = n_steps * S + rng.randint(1, 3)
    period = rng.randint(1, 9)
    adc_cycles = np.arange(period - 1, L, period)
    codes = nrng.integers(0, 1 << cfg.adc_bits, (len(adc_cycles), n))
    return synapses, stale, adc_cycles, codes, L, n_steps


def _compare(cfg, fast: FastPpu, ref: Reference, where: str):
    sim, ctl = ref.ref.sim, fast.core.ctl
    got = (int(ctl[core.C_PC]), bool(ctl[core.C_RUN]), bool(ctl[core.C_HALTED]),
           int(ctl[core.C_SIMC] + ctl[core.C_PHASE]))
    want = (sim.pc, sim.running, sim.halted, sim.cycle + ref.ref.phase)
    assert got == want, f"{where}: (pc, running, halted, cycles) {got} != {want}"
    regs, vregs, dmem = fast.state()
    assert list(regs) == list(sim.regs), f"{where}: registers"
    assert list(vregs) == list(sim.vregs), f"{where}: vector registers"
    assert list(dmem) == list(sim.dmem), f"{where}: data memory"


def _against_reference(seed: int, name: str, stretches=(1,)) -> None:
    """A random job on the compiled core and on the reference: the core
    advanced in stretches of a length drawn from ``stretches`` (1: cycle by
    cycle), compared with the reference at the end of each, then the results."""
    cfg = CONFIGS[name]
    rng = random.Random(seed)
    print(f"{name}, seed {seed}")
    synapses, stale, adc_cycles, codes, L, n_steps = _setup(cfg, rng)
    job = _job(cfg, rng, L, len(adc_cycles))
    fast = FastPpu(cfg, job, synapses, stale_adc=stale, n_live=L, adc_cycles=adc_cycles,
                   n_steps=n_steps, drain=5, write_from=0)
    fast.set_all_codes(codes)
    ref = Reference(cfg, job, synapses, stale, adc_cycles, codes, L, n_steps)
    end = L + 5 + job.max_cycles
    while ref.cycle < end and (ref.ref.sim.running or ref.cycle <= L):
        stop = min(end, ref.cycle + (rng.choice(stretches) if len(stretches) > 1
                                     else stretches[0]))
        while ref.cycle < stop and (ref.ref.sim.running or ref.cycle <= L):
            ref.tick()
        fast.advance(ref.cycle)
        _compare(cfg, fast, ref, f"cycle {ref.cycle - 1}")
    res = fast.finish()
    assert res["out"] == ref.out and res["out_drops"] == ref.drops
    assert res["dmem"] == {i: ref.ref.sim.dmem[i] for i in job.read_dmem}
    holds = {k: set(np.flatnonzero(core.held(fast.core.holds, k, cfg.n_neurons)).tolist())
             for k in range(n_steps) if fast.core.holds[k, -1]}
    assert holds == ref.holds
    w, lab = fast.synapses
    rows = ref.ref.sim.syn.rows
    assert w.tolist() == [[[x for x, _ in r] for r in half] for half in rows]
    assert lab.tolist() == [[[y for _, y in r] for r in half] for half in rows]
    assert not fast.core.ctl[core.C_STALE]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(CONFIGS)))
def test_the_core_computes_what_the_reference_computes_cycle_by_cycle(seed, name):
    _against_reference(seed, name)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(CONFIGS)))
def test_the_core_advanced_many_cycles_at_once_computes_the_same(seed, name):
    """Advanced over many cycles in one call, the core runs a poll loop's
    iterations (``csrr`` of a status register and a branch back to it) in one
    go: at the end of every stretch it is where the reference is, cycle for
    cycle, including across ADC samples taken inside the stretch."""
    _against_reference(seed, name, stretches=(2, 3, 7, 40, 200))


@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("period", [5, 6, 9])
def test_poll_loops_run_to_the_halt_in_one_call(pad, period):
    """The poll loops of every status register and branch type
    (tests/test_ppu_backends.py's program), run to the halt in one call of the
    core: they leave the loops in the reference's cycles, a sample count loop
    the cycle after the sample it waits for is taken."""
    from tests.test_ppu_backends import POLLS

    cfg, L = MINI, 400
    n_steps = L // cfg.analog_step_cycles
    adc_cycles = np.arange(period - 1, L, period)
    codes = np.zeros((len(adc_cycles), cfg.n_neurons), np.int64)
    H, R, C = cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half
    synapses = (np.zeros((H, R, C), np.int64), np.zeros((H, R, C), np.int64))
    stale = [[0] * cfg.n_neurons for _ in range(cfg.adc_buffer_depth)]
    src = POLLS.replace("{PAD}", "        addi r0, r0, 0\n" * pad)
    job = PpuJob.of(cfg, {"words": assemble(src, cfg).words,
                          "dmem": [(0, 20), (1, 33), (2, 1)], "when": "each_sample",
                          "read_dmem": list(range(8, 19)), "max_cycles": 3000})
    fast = FastPpu(cfg, job, synapses, stale_adc=stale, n_live=L, adc_cycles=adc_cycles,
                   n_steps=n_steps, drain=5, write_from=0)
    fast.set_all_codes(codes)
    res = fast.finish()
    ref = Reference(cfg, job, synapses, stale, adc_cycles, codes, L, n_steps)
    while ref.ref.sim.running:
        ref.tick()
    assert res["dmem"] == {i: ref.ref.sim.dmem[i] for i in job.read_dmem}
    assert res["cycles"] == ref.ref.sim.cycle


def test_every_instruction_is_in_the_random_programs():
    """The random programs of the test above reach every mnemonic."""
    seen = set()
    for seed in range(40):
        job = _job(MINI, random.Random(seed))
        prog = core.predecode(job.words, chip_geometry(MINI).imem_words)
        seen |= set(prog[:len(job.words), core.P_CODE].tolist())
    assert seen == {core._code(m) for m in BY_MNEMONIC}


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(sorted(CONFIGS)))
def test_what_a_run_reads_first_decides_it(seed, name):
    """The speculation's premise: a run from a state that agrees with another
    run's start on every element that run read before writing it (and reads
    no unknown ADC entry) computes the same: the same outputs, resets and
    result, the same values where it writes, and leaves the rest as it found
    it.  A run that reads an unknown ADC entry says so."""
    cfg = CONFIGS[name]
    rng = random.Random(seed)
    print(f"{name}, seed {seed}")
    synapses, stale, adc_cycles, codes, L, n_steps = _setup(cfg, rng, unknown=rng.random() < 0.3)
    job = _job(cfg, rng, L, len(adc_cycles))
    g = chip_geometry(cfg)
    nrng = np.random.default_rng(seed)

    def random_state():
        return (tuple([0] + nrng.integers(0, 1 << 32, N_REGS - 1).tolist()),
                tuple(int.from_bytes(nrng.bytes(g.vector_bits // 8), "little")
                      for _ in range(N_VREGS)),
                tuple(nrng.integers(0, 1 << 32, g.dmem_words).tolist()))

    def run(state):
        p = FastPpu(cfg, job, synapses, stale_adc=stale, n_live=L, adc_cycles=adc_cycles,
                    n_steps=n_steps, drain=5, state=state, track=True, write_from=0)
        p.set_all_codes(codes)
        return p, p.finish()

    a = random_state()
    p, res = run(a)
    if p.core.ctl[core.C_STALE]:
        return
    # b: a's values where the run read first, random elsewhere
    b = tuple(tuple(x[k] if trk[0, k] else y[k] for k in range(len(x)))
              for x, y, trk in zip(a, random_state(), p._tracks(), strict=True))
    b = ((0,) + b[0][1:], b[1], b[2])
    assert not p.depends_on(b, a)
    q, res_b = run(b)
    assert res_b == res
    assert np.array_equal(q.core.holds, p.core.holds)
    assert q.state() == p.end_state(b)
    assert p.state() == p.end_state(a)


def test_a_vadc_of_an_unknown_entry_is_noted():
    cfg = MINI
    job = PpuJob.of(cfg, {"words": assemble("vadc v1, 0(r0)\nhalt", cfg).words,
                          "when": "each_sample"})
    syn = (np.zeros((cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half), np.int64),) * 2
    stale = [None] + [[0] * cfg.n_neurons] * (cfg.adc_buffer_depth - 1)
    p = FastPpu(cfg, job, syn, stale_adc=stale, n_live=50, n_steps=4, track=True)
    p.finish()
    zero = ((0,) * N_REGS, (0,) * N_VREGS, (0,) * chip_geometry(cfg).dmem_words)
    assert p.depends_on(zero, zero)


def test_vectors_cross_as_little_endian_bytes():
    nb = FULL.ppu_vector_bits // 8
    v = random.Random(3).getrandbits(FULL.ppu_vector_bits)
    b = core.vector_to_bytes(v, nb)
    assert core.bytes_to_vector(b) == v
    assert b[:4].tolist() == unpack_array(v, 8, 4)
    assert core.bytes_to_vector(core.vector_to_bytes(XMASK, nb)) == XMASK


@pytest.mark.parametrize("src, err", [
    ("addi r1, r0, 1\nvsw v0, 0(r0)\nhalt", "writes synapse row 0 of half 0 in cycle 3"),
])
def test_a_write_during_the_run_is_refused(src, err):
    cfg = MINI
    job = PpuJob.of(cfg, {"words": assemble(src, cfg).words, "when": "each_sample"})
    syn = (np.zeros((cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half), np.int64),) * 2
    p = FastPpu(cfg, job, syn, n_live=50, n_steps=4, drain=5)
    with pytest.raises(ValueError, match=err):
        p.finish()
