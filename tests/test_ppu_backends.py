"""A PPU program run with a job on the reference and fast backends
(spikeloop/base/ppu_job.py): the same Observables, ``Observables.ppu``
included, for the programs of spikeloop/ppu/programs.py and for random
programs; what the fast backend refuses, it refuses with a message that says
where and what to do.  The cosim side of the same comparison is in
tests/test_cosim_ppu_programs.py (marker ``cosim``)."""
from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeloop import backends
from spikeloop.backends.fast_ppu import PpuEmulationError
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.isa import N_VREGS, chip_geometry
from spikeloop.base.ppu_job import PpuJob
from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
from spikeloop.model.chip import Chip
from spikeloop.ppu import programs as P
from spikeloop.ppu.asm import assemble
from spikeloop.verify.scenarios import SCENARIOS
from tests.test_ppu_rtl import random_program

CFG = MINI
SETTINGS = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def chip():
    return Chip.calibrated(CFG, 1)


def both(chip, image, events, n_steps, job, run_seed=0, device="cpu"):
    """The reference and fast runs of one job (fast on ``device``); asserts they
    are identical."""
    ref = backends.run(chip, image, events, n_steps, backend="reference", run_seed=run_seed,
                       ppu=job)
    fast = backends.run(chip, image, events, n_steps, backend="fast", run_seed=run_seed, ppu=job,
                    device=device)
    diff = ref.first_difference(fast)
    assert diff is None, diff
    return ref, fast


def exc_inh(chip, batch=2):
    sc = SCENARIOS["exc_inh"](CFG, np.random.default_rng(0))
    events = InputEvents.from_lists(CFG, [sc.events.of_sample(0).tolist()] * batch)
    return chip.configure(sc.image), events, sc.n_steps


def test_trace_program_streams_the_adc_codes(chip):
    image, events, n_steps = exc_inh(chip)
    L = live_cycles(CFG, n_steps)
    n_rec = min(L // int(image.adc_period), CFG.adc_buffer_depth)
    job = {"words": P.program("trace", CFG).words, "dmem": P.trace_dmem(CFG, n_rec),
           "when": "each_sample", "read_dmem": [1]}
    ref, fast = both(chip, image, events, n_steps, job, run_seed=3)
    assert len(fast.ppu) == events.batch
    for b, res in enumerate(fast.ppu):
        assert res["status"] == 0b10 and res["out_drops"] == 0
        codes = P.trace_vectors_to_codes(CFG, res["out"])
        assert codes.shape == (n_rec, CFG.n_neurons)
        assert (codes == fast.adc[:n_rec, b]).all()
        assert res["dmem"][1] + 3 == res["cycles"]
    # a program that only reads changes nothing of the run
    plain = backends.run(chip, image, events, n_steps, backend="fast", run_seed=3)
    assert plain.replace(ppu=fast.ppu).first_difference(fast) is None


def test_inference_program_holds_the_reset_steps(chip):
    image, _, _ = exc_inh(chip)
    image.refractory[:] = 0
    K, spacing, S = 3, P.INFERENCE_SPACING_CYCLES, CFG.analog_step_cycles
    sc = SCENARIOS["exc_inh"](CFG, np.random.default_rng(0))
    base = sc.events.of_sample(0).tolist()
    evs = sorted((c + k * spacing, lk, lb) for k in range(K) for c, lk, lb in base)
    events = InputEvents.from_lists(CFG, [evs, evs])
    n_steps = K * spacing // S + 1
    job = {"words": P.program("inference", CFG).words, "dmem": P.inference_dmem(CFG, K, spacing),
           "when": "each_sample", "read_dmem": [P.RESET_LOG + k for k in range(1, K)]}
    ref, fast = both(chip, image, events, n_steps, job, run_seed=4)
    seen = [fast.ppu[0]["dmem"][P.RESET_LOG + k] for k in range(1, K)]
    held = sorted({(t + 3 + j) // S for t in seen for j in range(chip_geometry(CFG).neuron_chunks)})
    assert len(held) == K - 1
    assert not [sp for sp in fast.spikes if sp[1] in set(held)], "a held neuron spiked"
    plain = backends.run(chip, image, events, n_steps, backend="fast", run_seed=4)
    assert plain.first_difference(fast.replace(ppu=None)) is not None, \
        "the resets changed nothing"


def weight_update_case(chip, cfg=CFG) -> tuple:
    """(scenario, image, updates, row chunks, job): the random scenario on ``chip``
    and a weight-update program run before its samples, one update per row chunk
    of both halves (the synapses read back)."""
    g = chip_geometry(cfg)
    sc = SCENARIOS["random"](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    M = cfg.n_halves * cfg.rows_per_half * g.row_chunks        # every row of both halves
    upd = np.random.default_rng(5).integers(-40, 41, size=(M, g.lanes(8)))
    job = {"words": P.program("weight_update", cfg).words,
           "dmem": P.weight_update_dmem(cfg, 0, upd), "when": "before", "read_synapses": True}
    return sc, image, upd, M, job


def test_weight_update_before_the_samples(chip):
    sc, image, upd, M, job = weight_update_case(chip)
    ref, fast = both(chip, image, sc.events, sc.n_steps, job, run_seed=2)
    (res,) = fast.ppu
    want = P.weight_update_numpy(CFG, image.synapse_weight, 0, upd)
    assert (res["weights"] == want).all() and (res["labels"] == image.synapse_label).all()
    assert res["cycles"] == P.weight_update_cycles(CFG, M)
    updated = image.copy()
    updated.synapse_weight = want
    plain = backends.run(chip, updated, sc.events, sc.n_steps, backend="fast", run_seed=2)
    assert plain.replace(ppu=fast.ppu).first_difference(fast) is None


# -- random programs -----------------------------------------------------------------
def _program(seed: int, *, writes: bool) -> tuple[list[str], list[tuple[int, int]]]:
    """tests/test_ppu_rtl.py's random program (every port), its row stores
    replaced by row loads when ``writes`` is False; and random data words."""
    rng = random.Random(seed)
    g = chip_geometry(CFG)
    lines = random_program(rng, g, rng.randint(10, 30))
    if not writes:
        lines = [ln.replace("vsw ", "vlw ").replace("vsl ", "vll ") for ln in lines]
    dmem = [(i, rng.randrange(1 << 32)) for i in range(g.vector_words * N_VREGS + 13)]
    return lines, dmem


def _run_case(seed: int):
    rng = np.random.default_rng(seed)
    sc = SCENARIOS["random"](CFG, rng)
    return sc.image, sc.events, sc.n_steps


def check_each_sample(chip, seed: int, device="cpu") -> None:
    print(f"seed {seed}")
    image, events, n_steps = _run_case(seed)
    lines, dmem = _program(seed, writes=False)
    three = InputEvents.from_lists(CFG, [events.of_sample(b % events.batch).tolist()
                                         for b in range(3)])
    job = {"words": assemble("\n".join(lines), CFG).words, "dmem": dmem,
           "when": "each_sample", "read_dmem": [0, 5, 40], "read_synapses": True}
    both(chip, chip.configure(image), three, n_steps, job, run_seed=seed % 7, device=device)


def check_before(chip, seed: int, device="cpu") -> None:
    print(f"seed {seed}")
    image, events, n_steps = _run_case(seed)
    lines, dmem = _program(seed, writes=True)
    job = {"words": assemble("\n".join(lines), CFG).words, "dmem": dmem, "when": "before",
           "read_dmem": [1, 2, 3], "read_synapses": True}
    both(chip, chip.configure(image), events, n_steps, job, device=device)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_random_program_each_sample(chip, seed):
    """A random program that does not write synapses, from the first cycle of
    each of three samples: resets, ADC reads (also of samples not yet taken:
    the buffer's power-up zeros, then what the sample before left), the
    stream, time, adc_count, registers and data carried from run to run."""
    check_each_sample(chip, seed)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_random_program_before(chip, seed):
    """A random program (row stores included) before the samples."""
    check_before(chip, seed)


@pytest.mark.cuda
@pytest.mark.parametrize("seed", range(8))
def test_random_programs_with_fast_on_cuda(chip, seed):
    """PPU jobs with the fast backend on CUDA (each sample, and before the
    samples): the reference's Observables."""
    check_each_sample(chip, seed, device="cuda")
    check_before(chip, seed, device="cuda")


def _after_drain(lines: list[str], L: int, rng: random.Random) -> list[str]:
    """``lines`` (without their halt), then wait until ``time >= L`` and
    DRAIN_CYCLES cycles more, then random row stores."""
    g = chip_geometry(CFG)
    body = lines[:-1]
    w1 = len(body) + 2
    w2 = w1 + 4
    body += [f"lui r14, {L >> 16}", f"ori r14, r14, {L & 0xFFFF}",
             "csrr r15, time", f"bltu r15, r14, {w1}",
             "csrr r14, cycle", f"addi r14, r14, {DRAIN_CYCLES}",
             "csrr r15, cycle", f"bltu r15, r14, {w2}"]
    for _ in range(rng.randint(1, 6)):
        body.append(f"{rng.choice(['vsw', 'vsl'])} v{rng.randrange(N_VREGS)}, "
                    f"{rng.randrange(1 << g.row_addr_bits)}(r0)")
    return body + ["halt"]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_program_writing_after_the_drain_runs_sample_by_sample(chip, seed):
    """A program that reads during the run and writes rows after its drain: the
    next sample uses the rows it left (the fast backend then runs the samples
    one after another, with the ADC buffer each one left)."""
    print(f"seed {seed}")
    image, events, n_steps = _run_case(seed)
    lines, dmem = _program(seed, writes=False)
    lines = _after_drain(lines, live_cycles(CFG, n_steps), random.Random(seed))
    two = InputEvents.from_lists(CFG, [events.of_sample(0).tolist()] * 2)
    job = {"words": assemble("\n".join(lines), CFG).words, "dmem": dmem,
           "when": "each_sample", "read_synapses": True}
    ref, fast = both(chip, chip.configure(image), two, n_steps, job)
    assert PpuJob.of(CFG, job).writes_synapses


def test_fast_refuses_a_write_during_the_run(chip):
    image, events, n_steps = exc_inh(chip, batch=1)
    words = assemble("addi r1, r0, 9\nvsw v0, 3(r0)\nhalt", CFG).words
    job = {"words": words, "when": "each_sample", "read_synapses": True}
    ref = backends.run(chip, image, events, n_steps, backend="reference", ppu=job)
    assert ref.ppu[0]["weights"][0, 3].sum() == 0 and ref.ppu[0]["status"] == 0b10
    with pytest.raises(PpuEmulationError, match=r"sample 0: .*row 3 of half 0 in cycle 3, "
                                                r"before the run's drain ends.*'reference'"):
        backends.run(chip, image, events, n_steps, backend="fast", ppu=job)


def test_stale_adc_samples_and_registers_carry_over(chip):
    """A sample's PPU run starts from what the run before left: ADC sample 0
    read in cycle 0 (not taken yet) shows the power-up zeros in the first
    sample and the first sample's codes in the second; the registers and the
    data memory carry over too (r1 counts the runs, dmem[9] logs them)."""
    image, events, n_steps = exc_inh(chip, batch=3)
    src = """vadc v1, 0(r0)
             vout v1
             addi r1, r1, 1
             sw r1, 9(r0)
             halt"""
    job = {"words": assemble(src, CFG).words, "when": "each_sample", "read_dmem": [9]}
    ref, fast = both(chip, image, events, n_steps, job)
    assert fast.ppu[0]["out"] == [0] and fast.ppu[1]["out"] != [0]
    assert fast.ppu[1]["out"] == fast.ppu[2]["out"]
    assert [r["dmem"][9] for r in fast.ppu] == [1, 2, 3]


def test_a_program_that_does_not_halt_is_an_error(chip):
    image, events, n_steps = exc_inh(chip, batch=1)
    job = {"words": assemble("loop: j loop", CFG).words, "when": "each_sample",
           "max_cycles": 50}
    for backend in ("reference", "fast"):
        with pytest.raises(RuntimeError, match=r"still runs 50 cycles after .*pc = 0"):
            backends.run(chip, image, events, n_steps, backend=backend, ppu=job)


@pytest.mark.parametrize("spec,match", [
    ({"words": [0], "when": "later"}, r"ppu.when = 'later'; allowed: before, each_sample"),
    ({"words": [0], "when": "before", "speed": 1}, r"unknown key\(s\) speed"),
    ({"when": "before"}, r"needs 'words'"),
    ({"words": [0] * 3000, "when": "before"}, r"3000 words; allowed: 1..2048"),
    ({"words": [0], "when": "before", "dmem": [(5000, 1)]}, r"ppu.dmem entry \(5000, 1\)"),
    ({"words": [0], "when": "before", "read_dmem": [-1]}, r"read_dmem: indices allowed"),
    ({"words": [0], "when": "before", "max_cycles": 0}, r"max_cycles = 0; allowed"),
    ({"words": [0], "when": "before", "read_synapses": "yes"}, r"read_synapses = 'yes'"),
    ("trace", r"ppu = str; allowed"),
])
def test_bad_jobs_are_refused(chip, spec, match):
    image, events, n_steps = exc_inh(chip, batch=1)
    for backend in ("reference", "fast"):
        with pytest.raises(ValueError, match=match):
            backends.run(chip, image, events, n_steps, backend=backend, ppu=spec)


def test_ppu_results_survive_save_load_and_concat(chip, tmp_path):
    image, events, n_steps = exc_inh(chip, batch=2)
    job = {"words": assemble("vout v0\nhalt", CFG).words, "when": "each_sample",
           "dmem": [(0, 7)], "read_dmem": [0], "read_synapses": True}
    obs = backends.run(chip, image, events, n_steps, backend="fast", ppu=job)
    obs.save(tmp_path / "o.npz")
    back = Observables.load(tmp_path / "o.npz")
    assert back.first_difference(obs) is None and back.ppu[1]["dmem"] == {0: 7}
    other = back.replace(ppu=[dict(r) for r in back.ppu])
    other.ppu[1]["weights"] = other.ppu[1]["weights"].copy()
    other.ppu[1]["weights"][0, 2, 1] += 1
    assert obs.first_difference(other) == (
        f"ppu[1].weights[0, 2, 1]: {obs.ppu[1]['weights'][0, 2, 1]} != "
        f"{other.ppu[1]['weights'][0, 2, 1]}")
    assert obs.replace(ppu=None).first_difference(obs) == "ppu: no program != 2 runs"
    singles = [backends.run(chip, image,
                            InputEvents.from_lists(CFG, [events.of_sample(b).tolist()]),
                            n_steps, backend="fast", sample_offset=b, ppu=job)
               for b in range(2)]
    assert Observables.concat(singles).first_difference(obs) is None


def test_the_ppu_starts_with_the_run(chip):
    """The host writes the start in the clear cycle: the pulse is high in
    running cycle 0, the first instruction executes in cycle 1 (docs/ppu.md),
    where ``time`` reads 1 and ``cycle`` 0."""
    image, events, n_steps = exc_inh(chip, batch=1)
    src = "csrr r1, time\ncsrr r2, cycle\nsw r1, 0(r0)\nsw r2, 1(r0)\nhalt"
    job = {"words": assemble(src, CFG).words, "when": "each_sample", "read_dmem": [0, 1]}
    ref, fast = both(chip, image, events, n_steps, job)
    assert fast.ppu[0]["dmem"] == {0: 1, 1: 1} and fast.ppu[0]["cycles"] == 5


# -- the longer tier (make sim) ----------------------------------------------------
LONG = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@LONG
@given(seed=st.integers(0, 2**32 - 1))
def test_random_program_each_sample_long(chip, seed):
    check_each_sample(chip, seed)


@pytest.mark.slow
@LONG
@given(seed=st.integers(0, 2**32 - 1))
def test_random_program_before_long(chip, seed):
    check_before(chip, seed)


@pytest.mark.slow
@LONG
@given(seed=st.integers(0, 2**32 - 1))
def test_program_writing_after_the_drain_long(chip, seed):
    test_program_writing_after_the_drain_runs_sample_by_sample.hypothesis.inner_test(chip, seed)


@pytest.mark.slow
def test_programs_on_full():
    """Programs 1 and 2 on the FULL preset (1024-bit vectors, 4 ADC chunks,
    2 neuron chunks): reference and fast identical."""
    from spikeloop.base.config import FULL

    chip = Chip.calibrated(FULL, 1)
    sc = SCENARIOS["exc_inh"](FULL, np.random.default_rng(0))
    image = chip.configure(sc.image)
    events = InputEvents.from_lists(FULL, [sc.events.of_sample(0).tolist()] * 2)
    L = live_cycles(FULL, sc.n_steps)
    n_rec = min(L // int(image.adc_period), FULL.adc_buffer_depth)
    job = {"words": P.program("trace", FULL).words, "dmem": P.trace_dmem(FULL, n_rec),
           "when": "each_sample", "read_dmem": [1]}
    ref, fast = both(chip, image, events, sc.n_steps, job, run_seed=3)
    assert (P.trace_vectors_to_codes(FULL, fast.ppu[1]["out"]) == fast.adc[:n_rec, 1]).all()
    K, spacing = 2, P.INFERENCE_SPACING_CYCLES
    n_steps = K * spacing // FULL.analog_step_cycles + 1
    job = {"words": P.program("inference", FULL).words,
           "dmem": P.inference_dmem(FULL, K, spacing), "when": "each_sample",
           "read_dmem": [P.RESET_LOG + 1]}
    both(chip, image, events, n_steps, job, run_seed=4)


def test_spikeloop_run_with_a_ppu_program(tmp_path, capsys):
    """``spikeloop run --ppu``: a named program or an assembly file, on two
    backends; the read-back is in the Observables file."""
    from spikeloop.cli import main

    assert main(["scenario", "exc_inh", "--preset", "mini", "--out", str(tmp_path)]) == 0
    (tmp_path / "t.s").write_text("csrr r1, time\nsw r1, 0(r0)\nvout v0\nhalt\n")
    base = ["run", "--preset", "mini", "--chip-seed", "1", "--image", str(tmp_path / "image.npz"),
            "--events", str(tmp_path / "events.npz"), "--steps", "40"]
    for backend in ("reference", "fast"):
        assert main(base + ["--backend", backend, "--out", str(tmp_path / f"{backend}.npz"),
                            "--ppu", "trace", "--ppu-dmem", "0=20", "--ppu-read-dmem", "1"]) == 0
    ref = Observables.load(tmp_path / "reference.npz")
    fast = Observables.load(tmp_path / "fast.npz")
    assert fast.first_difference(ref) is None and len(fast.ppu[0]["out"]) == 20
    assert "PPU run 0: halted at pc 17" in capsys.readouterr().out
    assert main(base + ["--backend", "fast", "--out", str(tmp_path / "s.npz"),
                        "--ppu", str(tmp_path / "t.s"), "--ppu-read-dmem", "0"]) == 0
    assert Observables.load(tmp_path / "s.npz").ppu[0]["dmem"] == {0: 1}
    for bad, msg in ((["--ppu", "trace", "--ppu-dmem", "0:3"], "allowed INDEX=WORD"),
                     (["--ppu-dmem", "0=3"], "--ppu-dmem needs --ppu"),
                     (["--ppu", "nope"], "neither an assembly file nor a program")):
        assert main(base + ["--backend", "fast", "--out", str(tmp_path / "x.npz")] + bad) == 2
        assert msg in capsys.readouterr().err


@pytest.mark.parametrize("src,batches", [
    # registers and data the same at every halt: one speculative batch holds
    ("addi r1, r0, 5\nsw r1, 9(r0)\nvout v0\nhalt", [5]),
    # a run counter: the speculation fails at its second sample, then one by one
    ("addi r1, r1, 1\nsw r1, 9(r0)\nhalt", [5, 1, 1, 1, 1]),
])
def test_fast_speculates_once(chip, monkeypatch, src, batches):
    import spikeloop.backends.fast as F

    image, events, n_steps = exc_inh(chip, batch=5)
    job = {"words": assemble(src, CFG).words, "when": "each_sample", "read_dmem": [9]}
    sizes, orig = [], F.FastChip.run

    def counting(self, events, n_steps, **kw):
        sizes.append(events.batch)
        return orig(self, events, n_steps, **kw)

    monkeypatch.setattr(F.FastChip, "run", counting)
    fast = backends.run(chip, image, events, n_steps, backend="fast", ppu=job)
    assert sizes == batches
    monkeypatch.setattr(F.FastChip, "run", orig)
    ref = backends.run(chip, image, events, n_steps, backend="reference", ppu=job)
    assert ref.first_difference(fast) is None, ref.first_difference(fast)


POLLS = """
# poll loops on every status register and branch type (the fast backend runs
# their iterations in one go): dmem[0] = time a, dmem[1] = cycle b, dmem[2] = samples c
        lw r1, 0(r0)
        lw r2, 1(r0)
        lw r3, 2(r0)
        addi r14, r2, 40
w0:
        csrr r6, time
        bltu r6, r1, w0          # until time >= a
        sw r6, 8(r0)
w2:
        csrr r8, cycle
        blt r8, r2, w2           # until cycle >= b (signed)
        sw r8, 10(r0)
        csrr r10, adc_count
        add r3, r3, r10
{PAD}
w1:
        csrr r7, adc_count
        bgeu r3, r7, w1          # until c + 1 more samples are taken
        csrr r1, cycle           # (the cycle each loop is left in)
        sw r1, 16(r0)
        sw r7, 9(r0)
        addi r11, r7, 1
w3:
        csrr r9, adc_count
        bne r9, r11, w3          # until the next one
        csrr r1, cycle
        sw r1, 17(r0)
        sw r9, 11(r0)
w4:
        csrr r12, adc_count
        beq r12, r11, w4         # and the one after
        csrr r1, cycle
        sw r1, 18(r0)
        sw r12, 12(r0)
w5:
        csrr r13, cycle
        bge r14, r13, w5         # while cycle <= b + 40 (signed)
w6:
        csrr r0, time
        beq r0, r0, end          # rd r0: a loop that is never one
end:
        csrr r15, cycle
        sw r13, 13(r0)
        sw r15, 14(r0)
        csrr r15, time
        sw r15, 15(r0)
        halt
"""


@pytest.mark.parametrize("a, b, c, pad", [(0, 0, 0, 0), (37, 120, 1, 1), (150, 333, 2, 0),
                                         (301, 64, 0, 1), (11, 3, 1, 2)])
def test_poll_loops_wait_cycle_for_cycle(chip, a, b, c, pad):
    """Programs that wait in a loop of a ``csrr`` and a branch back (the stream
    and inference programs do): the same cycles, registers and results on both
    backends, for every status register and branch type, with thresholds met at
    once, between ADC samples and on them (``pad`` instructions shift the loops'
    reads against the samples' cycles)."""
    image, events, _ = exc_inh(chip)
    n_steps = 80
    assert live_cycles(CFG, n_steps) > 301 + 200
    src = POLLS.replace("{PAD}", "        addi r0, r0, 0\n" * pad)
    job = {"words": assemble(src, CFG).words, "dmem": [(0, a), (1, b), (2, c)],
           "when": "each_sample", "read_dmem": list(range(8, 19))}
    ref, fast = both(chip, image, events, n_steps, job, run_seed=1)
    for res in fast.ppu:
        assert res["status"] == 0b10
        d = res["dmem"]
        assert d[8] >= a and d[10] >= b and d[13] > b + 40 and d[14] > d[13]
        assert d[11] == d[9] + 1 and d[12] == d[9] + 2 and d[16] < d[17] < d[18] < d[13]
