"""The PPU's trace, inference and weight-update programs (spikeloop/ppu/programs.py)
on the co-simulated chip (Verilator, mini top, the analog model in the loop), each with its cycle
count, its effect checked against numpy or the reference backend.

- the weight-update program runs before the samples; the rows it wrote equal
  numpy's clip(w + u, 0, 63), and the run that uses them equals the reference
  backend run on the image with numpy's weights (the backends' contract);
- the trace program runs from the first cycle of every sample; its
  streamed vectors equal the ADC codes of the run (Observables.adc), and the
  run equals the reference backend's (a PPU that only reads changes nothing);
- the inference program resets every neuron at the paper's spacing
  (1475 cycles = 11.8 us): the analog side sees the hold for exactly the
  steps of the reset cycles.

Each of them also runs with the same job on the reference and fast backends
(spikeloop/base/ppu_job.py): the Observables, what the host read back of the
PPU (``Observables.ppu``) included, are identical.  So are those of random
programs that use every port, from every sample's first cycle (registers,
data and the ADC buffer carried from sample to sample) and writing rows
after the drain.

The cycle counts are printed (``-s``) and kept in each result."""
import time

import numpy as np
import pytest

from spikeloop import backends
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents
from spikeloop.base.isa import chip_geometry
from spikeloop.cosim.backend import run_cosim
from spikeloop.model.chip import Chip
from spikeloop.ppu import programs as P
from spikeloop.verify.scenarios import SCENARIOS

pytestmark = pytest.mark.cosim


@pytest.fixture(scope="module")
def chip():
    return Chip.calibrated(MINI, 1)


def test_weight_update_program_in_cosim(chip):
    from tests.test_ppu_backends import weight_update_case

    cfg = MINI
    sc, image, upd, M, job = weight_update_case(chip, cfg)
    t0 = time.monotonic()
    co = run_cosim(chip, image, sc.events, sc.n_steps, run_seed=2, ppu=job)
    res = co.stats["ppu"][0]
    want = P.weight_update_numpy(cfg, image.synapse_weight, 0, upd)
    got = np.array([[[w & cfg.weight_max for w in res["synapses"][h][r * cfg.columns_per_half:
                                                                    (r + 1) * cfg.columns_per_half]]
                     for r in range(cfg.rows_per_half)] for h in range(cfg.n_halves)])
    labels = np.array([[[w >> cfg.weight_bits for w in res["synapses"][h][
        r * cfg.columns_per_half:(r + 1) * cfg.columns_per_half]]
        for r in range(cfg.rows_per_half)] for h in range(cfg.n_halves)])
    assert (got == want).all()
    assert (labels == image.synapse_label).all(), "labels kept"
    assert (want != image.synapse_weight).any() and (want == cfg.weight_max).any()
    assert res["status"] == 0b10 and res["cycles"] == P.weight_update_cycles(cfg, M)
    print(f"weight update ({M} row chunks): {res['cycles']} cycles "
          f"({res['cycles'] / cfg.clock_mhz:.2f} us at {cfg.clock_mhz} MHz); "
          f"cosim call {time.monotonic() - t0:.1f} s")
    updated = image.copy()
    updated.synapse_weight = want
    ref = run_reference(chip, updated, sc.events, sc.n_steps, run_seed=2)
    assert co.replace(ppu=None).first_difference(ref) is None, co.first_difference(ref)
    same_on_every_backend(chip, image, sc.events, sc.n_steps, 2, job, co)


def test_trace_program_streams_the_runs_adc_codes(chip):
    cfg = MINI
    sc = SCENARIOS["exc_inh"](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    events = InputEvents.from_lists(cfg, [sc.events.of_sample(0).tolist()] * 2)
    L = sc.n_steps * cfg.analog_step_cycles + 2
    n_rec = min(L // int(image.adc_period), cfg.adc_buffer_depth)
    prog = P.program("trace", cfg)
    job = {"words": prog.words, "dmem": P.trace_dmem(cfg, n_rec), "when": "each_sample",
           "read_dmem": [1]}
    co = run_cosim(chip, image, events, sc.n_steps, run_seed=3, ppu=job)
    for b, res in enumerate(co.stats["ppu"]):
        assert res["status"] == 0b10 and res["out_drops"] == 0
        assert res["out_count"] == n_rec * chip_geometry(cfg).adc_chunks
        codes = P.trace_vectors_to_codes(cfg, [int(v, 16) for v in res["out"]])
        assert int(co.adc_count[b]) == n_rec
        assert (codes == co.adc[:n_rec, b]).all(), f"batch entry {b}"
        assert res["dmem"]["1"] + 3 == res["cycles"], "csrr in cycle c, sw, halt in c + 2"
        print(f"trace (sample {b}): {n_rec} ADC samples streamed in "
              f"{res['cycles']} cycles")
    ref = run_reference(chip, image, events, sc.n_steps, run_seed=3)
    assert co.replace(ppu=None).first_difference(ref) is None, co.first_difference(ref)
    same_on_every_backend(chip, image, events, sc.n_steps, 3, job, co)


def test_inference_program_resets_at_the_papers_spacing(chip):
    cfg = MINI
    S = cfg.analog_step_cycles
    K, spacing = 3, P.INFERENCE_SPACING_CYCLES
    sc = SCENARIOS["exc_inh"](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    image.refractory[:] = 0           # refractory_active is then the PPU's reset hold alone
    base = sc.events.of_sample(0).tolist()
    evs = sorted((c + k * spacing, lk, lb) for k in range(K) for c, lk, lb in base)
    events = InputEvents.from_lists(cfg, [evs])
    n_steps = K * spacing // S + 1
    prog = P.program("inference", cfg)
    t0 = time.monotonic()
    job = {"words": prog.words, "dmem": P.inference_dmem(cfg, K, spacing),
           "when": "each_sample", "read_dmem": [P.RESET_LOG + k for k in range(1, K)]}
    co = run_cosim(chip, image, events, n_steps, run_seed=4, ppu=job)
    res = co.stats["ppu"][0]
    assert res["status"] == 0b10
    seen = [res["dmem"][str(P.RESET_LOG + k)] for k in range(1, K)]
    assert all(k * spacing <= t <= k * spacing + 1
               for k, t in zip(range(1, K), seen, strict=True)), seen
    chunks = chip_geometry(cfg).neuron_chunks
    expect = sorted({(t + 3 + j) // S for t in seen for j in range(chunks)})
    held = [step for _, step, mask in res["holds"]]
    assert held == expect, (held, expect)
    assert all(mask == (1 << cfg.n_neurons) - 1 for *_, mask in res["holds"])
    assert not [sp for sp in co.spikes if sp[1] in set(expect)], "a held neuron spiked"
    fps = cfg.clock_mhz * 1e6 / spacing
    print(f"inference: {K} samples {spacing} cycles = {spacing / cfg.clock_mhz:.1f} "
          f"us apart: {fps:.0f} emulated frames/s; resets at cycles "
          f"{[t + 3 for t in seen]} hold steps {held}; PPU ran {res['cycles']} cycles; "
          f"cosim call {time.monotonic() - t0:.1f} s")
    same_on_every_backend(chip, image, events, n_steps, 4, job, co)


def same_on_every_backend(chip, image, events, n_steps, run_seed, job, co):
    """The cosim's Observables, ``ppu`` included, equal the reference's and
    the fast backend's for the same job."""
    for backend in ("reference", "fast"):
        other = backends.run(chip, image, events, n_steps, backend=backend, run_seed=run_seed,
                             ppu=job)
        assert co.ppu is not None and len(co.ppu) == len(other.ppu)
        diff = co.first_difference(other)
        assert diff is None, f"cosim against {backend}: {diff}"


@pytest.mark.parametrize("seed", [3, 17])
def test_random_programs_every_sample_on_every_backend(chip, seed):
    """Random programs (tests/test_ppu_backends.py) from the first cycle of
    three samples, then one that writes rows after the drain of two samples:
    cosim, reference and fast identical."""
    from spikeloop.base.protocol import live_cycles
    from spikeloop.ppu.asm import assemble
    from tests.test_ppu_backends import _after_drain, _program, _run_case

    cfg = MINI
    image, events, n_steps = _run_case(seed)
    image = chip.configure(image)
    lines, dmem = _program(seed, writes=False)
    three = InputEvents.from_lists(cfg, [events.of_sample(b % events.batch).tolist()
                                         for b in range(3)])
    job = {"words": assemble("\n".join(lines), cfg).words, "dmem": dmem,
           "when": "each_sample", "read_dmem": [0, 5, 40], "read_synapses": True}
    co = run_cosim(chip, image, three, n_steps, run_seed=seed, ppu=job)
    same_on_every_backend(chip, image, three, n_steps, seed, job, co)
    import random
    lines = _after_drain(lines, live_cycles(cfg, n_steps), random.Random(seed))
    two = InputEvents.from_lists(cfg, [events.of_sample(0).tolist()] * 2)
    job = {"words": assemble("\n".join(lines), cfg).words, "dmem": dmem,
           "when": "each_sample", "read_synapses": True}
    co = run_cosim(chip, image, two, n_steps, run_seed=seed, ppu=job)
    assert not np.array_equal(co.ppu[0]["weights"], image.synapse_weight) or \
        not np.array_equal(co.ppu[0]["labels"], image.synapse_label), "the program wrote rows"
    same_on_every_backend(chip, image, two, n_steps, seed, job, co)
