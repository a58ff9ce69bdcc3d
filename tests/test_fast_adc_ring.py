"""The ADC ring (``ChipConfig.adc_ring``) on the fast backend against the
reference backend: runs that take more samples than the buffer holds, so the
ring wraps, on mini variants (the mini depth of 64, a depth of 24 that is not a
power of two, 4-bit counters where ``n_samples`` saturates), on both of the
fast backend's code paths (the compiled whole run and the step-by-step windows)
and with PPU programs that read the ring during the run: the trace program, a
program that reads entries before and after the run wrote them (what the
sample before left, then this run's latest samples), random programs, and the
stream program that follows every sample of the run."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeloop import backends
from spikeloop.backends.fast import FastChip, adc_rows, adc_sample_steps, adc_schedule
from spikeloop.backends.fast_ppu import FastPpu
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents
from spikeloop.base.isa import N_VREGS, chip_geometry
from spikeloop.base.ppu_job import PpuJob
from spikeloop.base.protocol import live_cycles
from spikeloop.model.chip import Chip
from spikeloop.ppu import programs as P
from spikeloop.ppu.asm import assemble
from spikeloop.verify.scenarios import SCENARIOS
from tests.test_fast_equivalence import assert_same
from tests.test_ppu_rtl import random_program

RING = MINI.replace(name="mini-ring", adc_ring=True)
RING24 = MINI.replace(name="mini-ring24", adc_ring=True, adc_buffer_depth=24)
RING_C4 = MINI.replace(name="mini-ring-c4", adc_ring=True, counter_bits=4)
VARIANTS = {"ring": RING, "ring24": RING24, "ring_c4": RING_C4}


def case(cfg, *, period: int = 3, n_steps: int = 30, batch: int = 2, seed: int = 0):
    """The random scenario on ``cfg`` with an ADC sample every ``period``
    cycles: ``(chip, image, events, n_steps)``; batch ``batch`` (its two
    samples repeated)."""
    chip = Chip(cfg, 1)
    sc = SCENARIOS["random"](cfg, np.random.default_rng(seed))
    image = chip.configure(sc.image)
    image.adc_period = np.int64(period)
    events = InputEvents.from_lists(cfg, [sc.events.of_sample(b % sc.events.batch).tolist()
                                          for b in range(batch)])
    return chip, image, events, n_steps


def n_taken(cfg, image, n_steps: int) -> int:
    return len(adc_sample_steps(cfg, int(image.adc_period), live_cycles(cfg, n_steps), n_steps))


def fast_paths(chip, image, events, n_steps, **kw):
    """The fast backend's whole-run kernel and its step-by-step windows."""
    out = []
    for whole in (True, False):
        fc = FastChip(chip, image, threads=2)
        fc.whole_run = whole
        out.append(("whole run" if whole else "step by step", fc.run(events, n_steps, **kw)))
    return out


# -- the rows the ring leaves ------------------------------------------------------
def test_adc_rows_are_the_entries_in_entry_order():
    assert adc_rows(MINI, 100).tolist() == list(range(64))          # no ring: the first 64
    assert adc_rows(RING, 40).tolist() == list(range(40))
    assert adc_rows(RING, 70).tolist() == [64, 65, 66, 67, 68, 69] + list(range(6, 64))
    assert adc_rows(RING24, 50).tolist() == [48, 49] + list(range(26, 48))
    assert adc_rows(RING_C4, 100).tolist() == list(range(64, 79))   # n_samples = 15
    assert adc_rows(RING_C4, 10).tolist() == list(range(10))
    for cfg in VARIANTS.values():
        S, cmax = cfg.adc_buffer_depth, (1 << cfg.counter_bits) - 1
        for n in range(0, 3 * S + 2):
            rows = adc_rows(cfg, n)
            assert len(rows) == min(n, S, cmax)
            for j, i in enumerate(rows):        # the latest sample i < n in entry j
                assert i % S == j and i < n <= i + S
    steps, taken = adc_schedule(RING, 3, 250, 30)
    assert taken == 83 and steps.tolist() == [min((3 * i + 2) // 8, 30)
                                              for i in adc_rows(RING, 83)]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ring_without_a_program_matches_the_reference(name):
    cfg = VARIANTS[name]
    chip, image, events, n_steps = case(cfg, period=2 if name == "ring24" else 3)
    n = n_taken(cfg, image, n_steps)
    assert n > cfg.adc_buffer_depth + 2, "the ring must wrap"
    ref = backends.run(chip, image, events, n_steps, backend="reference", run_seed=3)
    cmax = (1 << cfg.counter_bits) - 1
    assert ref.adc_count.tolist() == [min(n, cmax)] * events.batch
    assert ref.adc_overflow.tolist() == [0] * events.batch
    assert len(ref.adc) == min(n, cmax, cfg.adc_buffer_depth)
    for what, fast in fast_paths(chip, image, events, n_steps, run_seed=3):
        assert_same(ref, fast, f"{name}, {what}")


def test_ring_rows_are_the_latest_samples():
    """Independent of the reference: the ring's rows are the samples that a
    buffer deep enough for the whole run (no ring) holds at ``adc_rows``, and
    a run that does not fill the ring is the run without it."""
    for cfg in (RING, RING24, RING_C4):
        deep = cfg.replace(adc_ring=False, adc_buffer_depth=4096)
        for period, n_steps in ((3, 30), (7, 10)):
            runs = {}
            for c in (cfg, deep):
                chip, image, events, n = case(c, period=period, n_steps=n_steps)
                runs[c.adc_ring] = fast_paths(chip, image, events, n, run_seed=1)
            want = runs[False][0][1]
            taken = int(want.adc_count[0])
            cmax = (1 << cfg.counter_bits) - 1
            for what, got in runs[True]:
                assert got.adc_count.tolist() == [min(taken, cmax)] * 2, what
                assert (got.adc == want.adc[adc_rows(cfg, taken)]).all(), what
                assert got.replace(adc=want.adc, adc_count=want.adc_count) \
                          .first_difference(want) is None, what
            if taken <= cfg.adc_buffer_depth and taken <= cmax:
                plain = cfg.replace(adc_ring=False)
                chip, image, events, n = case(plain, period=period, n_steps=n_steps)
                base = fast_paths(chip, image, events, n, run_seed=1)[0][1]
                assert base.first_difference(runs[True][0][1]) is None


# -- PPU programs that read the ring -----------------------------------------------
def both(chip, image, events, n_steps, job, run_seed=0, device="cpu"):
    ref = backends.run(chip, image, events, n_steps, backend="reference", run_seed=run_seed,
                       ppu=job)
    fast = backends.run(chip, image, events, n_steps, backend="fast", run_seed=run_seed,
                        ppu=job, device=device)
    assert_same(ref, fast, "PPU job")
    return ref, fast


def test_trace_program_reads_the_ring():
    """TRACE reads entry ``k`` once sample ``k`` is taken; with a sample every
    two cycles it falls behind and reads the entries after the ring wrapped
    (later samples); every sample of the batch (speculated as one batch)."""
    chip, image, events, n_steps = case(RING, period=2, n_steps=26, batch=3)
    S = RING.adc_buffer_depth
    job = {"words": P.program("trace", RING).words, "dmem": P.trace_dmem(RING, S),
           "when": "each_sample", "read_dmem": [1]}
    ref, fast = both(chip, image, events, n_steps, job, run_seed=2)
    assert n_taken(RING, image, n_steps) > S + 20
    for b, res in enumerate(fast.ppu):
        codes = P.trace_vectors_to_codes(RING, res["out"])
        assert codes.shape == (S, RING.n_neurons) and res["status"] == 0b10
        assert not (codes == fast.adc[:, b]).all(), "the trace read no overwritten entry"


STALE_THEN_RING = """
        vadc v1, 0(r0)           # entry 0 before this run wrote it: the sample before's
        vout v1
        addi r2, r0, {last}
        slli r2, r2, ADC_CHUNK_BITS
        vadc v2, 0(r2)           # the last entry, also the sample before's
        vout v2
        addi r3, r0, {wait}
wait:
        csrr r4, adc_count
        bltu r4, r3, wait        # until the ring has wrapped
        sw r4, 7(r0)
        addi r5, r0, 0
read:
        slli r6, r5, ADC_CHUNK_BITS
        vadc v3, 0(r6)           # entries 0..3: this run's latest samples
        vout v3
        addi r5, r5, 1
        addi r7, r0, 4
        bne r5, r7, read
        halt
"""


@pytest.mark.parametrize("name", ["ring", "ring24"])
def test_stale_entries_then_the_wrapped_ring(name):
    """A sample's PPU reads the entries that the sample before left (in entry
    order, after its ring wrapped; the power-up zeros in the first sample),
    then this run's latest samples after its ring wrapped."""
    cfg = VARIANTS[name]
    S = cfg.adc_buffer_depth
    chip, image, events, n_steps = case(cfg, period=3, n_steps=30, batch=3)
    src = STALE_THEN_RING.format(last=S - 1, wait=S + 3)
    job = {"words": assemble(src, cfg).words, "when": "each_sample", "read_dmem": [7]}
    ref, fast = both(chip, image, events, n_steps, job, run_seed=5)
    first = fast.ppu[0]["out"]
    assert first[:2] == [0, 0]
    for b in (1, 2):
        out = P.trace_vectors_to_codes(cfg, fast.ppu[b]["out"])
        assert (out[0] == fast.adc[0, b - 1]).all() and (out[1] == fast.adc[S - 1, b - 1]).all()
        assert fast.ppu[b]["dmem"][7] >= S + 3


def test_stream_program_streams_every_sample(monkeypatch):
    """The stream program follows every sample of a run longer than the ring;
    the samples run as one batch (the vector each one leaves differs, but none
    reads it first)."""
    cfg = RING.replace(ppu_out_vectors=128)
    period = P.stream_cycles_per_sample(cfg, 1)
    chip, image, events, _ = case(cfg, period=period, batch=3)
    n_steps = (cfg.adc_buffer_depth + 6) * period // cfg.analog_step_cycles + 1
    n = n_taken(cfg, image, n_steps)
    assert n > cfg.adc_buffer_depth
    job = {"words": P.program("stream", cfg).words,
           "dmem": P.stream_dmem(cfg, n, 0, 1, adc_period=period), "when": "each_sample",
           "read_dmem": [P.STREAM_MISSED]}
    with batches_run(monkeypatch) as sizes:
        ref, fast = both(chip, image, events, n_steps, job, run_seed=4)
    assert sizes == [3]
    assert len({tuple(r["out"]) for r in fast.ppu}) == 3, "the samples streamed the same"
    deep = cfg.replace(adc_ring=False, adc_buffer_depth=4096)
    chip2, image2, events2, _ = case(deep, period=period, batch=3)
    every = backends.run(chip2, image2, events2, n_steps, backend="fast", run_seed=4)
    for b, res in enumerate(fast.ppu):
        assert res["dmem"][P.STREAM_MISSED] == 0
        codes = P.stream_vectors_to_codes(cfg, res["out"], 0, 1)[:, :cfg.n_neurons]
        assert (codes == every.adc[:n, b]).all()


# -- speculation: samples batched while what they read is what the one before left --
WAIT_FOR_A_SAMPLE = """
        addi r3, r0, 40
wait:
        csrr r1, adc_count
        bltu r1, r3, wait
"""


@contextlib.contextmanager
def batches_run(monkeypatch):
    """The batch sizes of the fast backend's runs inside the block."""
    sizes, orig = [], FastChip.run

    def counting(self, events, n_steps, **kw):
        sizes.append(events.batch)
        return orig(self, events, n_steps, **kw)

    monkeypatch.setattr(FastChip, "run", counting)
    try:
        yield sizes
    finally:
        monkeypatch.setattr(FastChip, "run", orig)


@pytest.mark.parametrize("src,batches", [
    # the last vector read differs from sample to sample, but no sample reads it first
    (WAIT_FOR_A_SAMPLE + "vadc v2, 30(r0)\nvout v2\nhalt", [4]),
    # each sample streams the vector the sample before read: kept only the first
    ("vout v2\n" + WAIT_FOR_A_SAMPLE + "vadc v2, 30(r0)\nhalt", [4, 1, 1, 1]),
    # entry 5 before this run wrote it: what the sample before left, not known in a batch
    ("vadc v2, 5(r0)\nvout v2\nhalt", [4, 1, 1, 1]),
    # a data word the sample before wrote, read first
    ("lw r2, 20(r0)\nsw r2, 21(r0)\n" + WAIT_FOR_A_SAMPLE
     + "vadc v2, 30(r0)\nvget.b r3, v2, r0\nsw r3, 20(r0)\nhalt", [4, 1, 1, 1]),
], ids=["vector_unread", "vector_read_first", "stale_entry", "data_word_read_first"])
def test_speculation_keeps_what_reads_the_same(monkeypatch, src, batches):
    chip, image, events, n_steps = case(RING, period=3, n_steps=26, batch=4)
    job = {"words": assemble(src, RING).words, "when": "each_sample", "read_dmem": [20, 21]}
    with batches_run(monkeypatch) as sizes:
        fast = backends.run(chip, image, events, n_steps, backend="fast", ppu=job)
    assert sizes == batches
    ref = backends.run(chip, image, events, n_steps, backend="reference", ppu=job)
    assert_same(ref, fast, "speculation")
    assert len({repr((r["out"], r["dmem"])) for r in fast.ppu}) > 1, "the samples read the same"


def test_a_speculated_run_logs_what_it_reads_first():
    """A speculated PPU run (FastPpu with ``track``) started from an assumed
    state: it depends on a state that differs where it read before writing,
    and leaves what it wrote plus the true start's other elements."""
    g = chip_geometry(RING)
    synapses = (np.zeros((RING.n_halves, RING.rows_per_half, RING.columns_per_half),
                         np.int64),) * 2
    assumed = ((0,) * 16, (0,) * N_VREGS, (0,) * g.dmem_words)

    def run(src):
        job = PpuJob.of(RING, {"words": assemble(src, RING).words, "when": "each_sample"})
        p = FastPpu(RING, job, synapses, state=assumed, track=True, n_live=10, n_steps=1)
        p.finish()
        return p

    start = ([0] * 16, [0] * N_VREGS, [0] * g.dmem_words)
    start[0][6], start[1][1], start[2][3] = 9, 5, 4
    start = tuple(tuple(x) for x in start)
    p = run("addi r5, r0, 7\nsw r5, 2(r0)\nlw r7, 2(r0)\nvsplat.b v2, r5\nhalt")
    assert not p.depends_on(start, assumed)
    regs, vregs, dmem = p.end_state(start)
    assert (regs[5], regs[6], regs[7], vregs[1], dmem[2], dmem[3]) == (7, 9, 7, 5, 7, 4)
    assert vregs[2] == p.state()[1][2] != 0
    for src in ("add r5, r6, r0\nhalt", "vout v1\nhalt", "lw r5, 3(r0)\nhalt",
                "vld v2, 0(r0)\nhalt"):
        assert run(src).depends_on(start, assumed), src
    assert not run("addi r6, r0, 1\nadd r5, r6, r0\nhalt").depends_on(start, assumed)


# -- random programs ---------------------------------------------------------------
def _random_job(cfg, seed: int, n: int, L: int) -> dict:
    """tests/test_ppu_rtl.py's random program on ``cfg``'s geometry without row
    stores (row loads instead), then rounds that wait for a time (below ``L``)
    or a sample count (at most ``n``, the samples the run takes, saturated) and
    read and stream random ring entries."""
    rng = random.Random(seed)
    g = chip_geometry(cfg)
    lines = random_program(rng, g, rng.randint(10, 30))[:-1]
    lines = [ln.replace("vsw ", "vlw ").replace("vsl ", "vll ") for ln in lines]
    top = min(n, (1 << cfg.counter_bits) - 1)
    for _ in range(rng.randint(2, 5)):
        if rng.random() < 0.5:
            lines += [f"addi r14, r0, {rng.randint(1, L - 1)}", "csrr r15, time"]
        else:
            lines += [f"addi r14, r0, {rng.randint(1, top)}", "csrr r15, adc_count"]
        lines.append(f"bltu r15, r14, {len(lines) - 1}")
        for _ in range(rng.randint(1, 3)):
            v = f"v{rng.randrange(N_VREGS)}"
            ea = (rng.randrange(cfg.adc_buffer_depth) << g.adc_chunk_bits) \
                | rng.randrange(g.adc_chunks)
            lines += [f"vadc {v}, {ea}(r0)", f"vout {v}"]
        lines += ["csrr r12, adc_count", f"sw r12, {rng.randrange(8)}(r0)"]
    lines.append("halt")
    dmem = [(i, rng.randrange(1 << 32)) for i in range(g.vector_words * N_VREGS + 13)]
    return {"words": assemble("\n".join(lines), cfg).words, "dmem": dmem,
            "when": "each_sample", "read_dmem": [0, 1, 2, 3, 4, 5, 6, 7, 40]}


def check_random(name: str, seed: int) -> None:
    print(f"variant {name}, seed {seed}")
    cfg = VARIANTS[name]
    rng = np.random.default_rng(seed)
    chip, image, events, n_steps = case(cfg, period=int(rng.integers(1, 4)),
                                        n_steps=int(rng.integers(26, 33)), batch=3,
                                        seed=seed % 5)
    job = _random_job(cfg, seed, n_taken(cfg, image, n_steps), live_cycles(cfg, n_steps))
    both(chip, image, events, n_steps, job, run_seed=seed % 7)


@pytest.mark.parametrize("name,seed", [(name, seed) for name in sorted(VARIANTS)
                                       for seed in (1, 2)])
def test_random_programs_on_the_ring(name, seed):
    check_random(name, seed)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(VARIANTS)), seed=st.integers(0, 2**32 - 1))
def test_random_programs_on_the_ring_long(name, seed):
    check_random(name, seed)


@pytest.mark.slow
def test_stream_on_a_full_ring():
    """The FULL preset with the ring (32 entries, 1024-bit vectors): the stream
    program over a run of 40 samples, reference and fast identical, without and
    with the program."""
    from spikeloop.base.config import FULL

    cfg = FULL.replace(name="full-ring", adc_ring=True)
    period = P.stream_cycles_per_sample(cfg, 2)
    chip = Chip(cfg, 1)
    sc = SCENARIOS["exc_inh"](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    image.adc_period = np.int64(period)
    events = InputEvents.from_lists(cfg, [sc.events.of_sample(0).tolist()] * 3)
    n_steps = 40 * period // cfg.analog_step_cycles
    n = n_taken(cfg, image, n_steps)
    assert n > cfg.adc_buffer_depth
    ref = backends.run(chip, image, events, n_steps, backend="reference", run_seed=2)
    for what, fast in fast_paths(chip, image, events, n_steps, run_seed=2):
        assert_same(ref, fast, f"full ring, {what}")
    job = {"words": P.program("stream", cfg).words,
           "dmem": P.stream_dmem(cfg, n, 1, 2, adc_period=period), "when": "each_sample",
           "read_dmem": [P.STREAM_MISSED]}
    _, fast = both(chip, image, events, n_steps, job, run_seed=2)
    for res in fast.ppu:
        assert res["dmem"][P.STREAM_MISSED] == 0 and len(res["out"]) == 2 * n


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ring_on_cuda(name):
    cfg = VARIANTS[name]
    chip, image, events, n_steps = case(cfg, period=2)
    ref = backends.run(chip, image, events, n_steps, backend="reference", run_seed=3)
    fast = backends.run(chip, image, events, n_steps, backend="fast", run_seed=3, device="cuda")
    assert_same(ref, fast, f"{name} on cuda")
    job = _random_job(cfg, 11, n_taken(cfg, image, n_steps), live_cycles(cfg, n_steps))
    both(chip, image, events, n_steps, job, run_seed=1, device="cuda")
