"""The stream program (spikeloop/ppu/programs.py ``STREAM``): the PPU reads
every ADC sample of a run as it is taken and streams the chosen chunks to the
output memory the host reads after the sample; with the ADC ring
(``ChipConfig.adc_ring``) a run may take far more samples than the buffer
holds.  Reference and fast backends agree on every run (the co-simulation's
side is in tests/test_adc_ring.py)."""
from __future__ import annotations

import numpy as np
import pytest

from spikeloop import backends
from spikeloop.backends import fast as fast_mod
from spikeloop.base.config import MINI
from spikeloop.base.events import InputEvents
from spikeloop.base.isa import chip_geometry
from spikeloop.base.protocol import live_cycles
from spikeloop.bench import main as bench_main
from spikeloop.model.chip import Chip
from spikeloop.ppu import programs as P
from spikeloop.verify.scenarios import SCENARIOS
from tests.test_ppu_backends import both as ref_and_fast

RING = MINI.replace(name="mini-ring", adc_ring=True, ppu_out_vectors=256)


def scenario(cfg, n_steps, period, batch=2):
    chip = Chip.calibrated(cfg, 1)
    sc = SCENARIOS["exc_inh"](cfg, np.random.default_rng(0))
    image = chip.configure(sc.image)
    image.adc_period = period
    events = InputEvents.from_lists(cfg, [sc.events.of_sample(0).tolist()] * batch)
    return chip, image, events, n_steps


def stream_job(cfg, n_samples, period, chunks=None, dmem=None):
    first, n = chunks or (0, chip_geometry(cfg).adc_chunks)
    return {"words": P.program("stream", cfg).words,
            "dmem": dmem if dmem is not None else P.stream_dmem(cfg, n_samples, first, n,
                                                                 adc_period=period),
            "when": "each_sample",
            "read_dmem": [P.STREAM_MISSED, P.STREAM_END_CYCLE]}


def both(chip, image, events, n_steps, job):
    """The fast backend's run of ``job``, checked equal to the reference's."""
    return ref_and_fast(chip, image, events, n_steps, job, run_seed=3)[1]


def samples_taken(cfg, period, n_steps):
    return live_cycles(cfg, n_steps) // period


def test_stream_without_the_ring_equals_the_adc_buffer():
    period = 24
    chip, image, events, n_steps = scenario(MINI, 40, period)
    n = min(samples_taken(MINI, period, n_steps), MINI.adc_buffer_depth)
    obs = both(chip, image, events, n_steps, stream_job(MINI, n, period))
    for b, res in enumerate(obs.ppu):
        assert res["status"] == 0b10 and res["out_drops"] == 0
        assert res["dmem"][P.STREAM_MISSED] == 0
        codes = P.stream_vectors_to_codes(MINI, res["out"], 0, 1)[:, :MINI.n_neurons]
        assert (codes == obs.adc[:n, b]).all()


def test_stream_dmem_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="adc_ring"):
        P.stream_dmem(MINI, MINI.adc_buffer_depth + 1, 0, 1, adc_period=100)
    with pytest.raises(ValueError, match="ppu_out_vectors"):
        P.stream_dmem(RING, 257, 0, 1, adc_period=100)
    with pytest.raises(ValueError, match="needs at least"):
        P.stream_dmem(RING, 10, 0, 1, adc_period=P.stream_cycles_per_sample(RING, 1) - 1)
    with pytest.raises(ValueError, match="chunks"):
        P.stream_dmem(RING, 10, 0, 2, adc_period=100)
    with pytest.raises(ValueError, match="saturates"):
        P.stream_dmem(RING.replace(counter_bits=4), 16, 0, 1, adc_period=100)


def test_stream_chunks_cover_the_neurons():
    g = chip_geometry(MINI.replace(ppu_vector_bits=128, n_neurons=64))
    cfg = MINI.replace(n_neurons=64, neurons_per_block=4)
    assert g.adc_lanes == 16
    assert P.stream_chunks(cfg, [17, 40]) == (1, 2)
    assert P.stream_chunks(cfg, [0]) == (0, 1)
    assert P.stream_chunks(cfg, []) == (0, 0)
    with pytest.raises(ValueError, match="0..63"):
        P.stream_chunks(cfg, [64])


def test_stream_on_the_ring_carries_every_sample_of_a_long_run():
    """200 samples through a ring of 64: the stream holds every one, exactly the
    codes a chip with a buffer deep enough for all of them keeps."""
    period = P.stream_cycles_per_sample(RING, 1)
    n_steps = 200 * period // RING.analog_step_cycles + 1
    chip, image, events, _ = scenario(RING, n_steps, period)
    n = samples_taken(RING, period, n_steps)
    assert n >= 200 > RING.adc_buffer_depth
    obs = both(chip, image, events, n_steps, stream_job(RING, n, period))
    deep_cfg = MINI.replace(name="mini-deep", adc_buffer_depth=256)
    deep_chip, deep_image, deep_events, _ = scenario(deep_cfg, n_steps, period)
    deep = backends.run(deep_chip, deep_image, deep_events, n_steps, backend="fast", run_seed=3)
    assert deep.adc.shape[0] == n
    for b, res in enumerate(obs.ppu):
        assert res["status"] == 0b10 and res["out_drops"] == 0
        assert res["dmem"][P.STREAM_MISSED] == 0
        codes = P.stream_vectors_to_codes(RING, res["out"], 0, 1)[:, :RING.n_neurons]
        assert codes.shape == (n, RING.n_neurons)
        assert (codes == deep.adc[:, b]).all()
        # what the host reads of the ring afterwards: its last 64 samples, in entry order
        entries = np.roll(codes[n - RING.adc_buffer_depth:], n % RING.adc_buffer_depth, axis=0)
        assert (obs.adc[:, b] == entries).all()
    assert (obs.adc_count == n).all() and (obs.adc_overflow == 0).all()


def test_stream_counts_the_samples_it_misses():
    """An ADC period shorter than the program's loop: the ring overwrites samples
    the PPU has not read; each is counted, none streamed in its place."""
    period = P.stream_cycles_per_sample(RING, 1) // 2
    n_steps = 150 * period // RING.analog_step_cycles
    chip, image, events, _ = scenario(RING, n_steps, period)
    n = samples_taken(RING, period, n_steps)
    dmem = [(P.STREAM_N, n), (P.STREAM_FIRST_CHUNK, 0), (P.STREAM_CHUNKS, 1)]
    obs = both(chip, image, events, n_steps, stream_job(RING, n, period, dmem=dmem))
    for res in obs.ppu:
        missed = res["dmem"][P.STREAM_MISSED]
        assert res["status"] == 0b10 and missed > 0
        assert len(res["out"]) + missed == n


@pytest.mark.parametrize("cfg, program", [(MINI, "trace"), (RING, "stream"),
                                          (RING, "trace"), (MINI, "inference")])
def test_the_ppu_in_the_compiled_run_equals_the_ppu_beside_the_windows(cfg, program,
                                                                      monkeypatch):
    """The fast backend runs each sample's PPU inside the run's compiled kernel;
    beside the step-by-step windows (``whole_run=False``) every result is the
    same, for programs that only read and for one whose resets hold neurons."""
    period = P.stream_cycles_per_sample(cfg, 1)
    n_steps = 90 * period // cfg.analog_step_cycles
    chip, image, events, _ = scenario(cfg, n_steps, period, batch=3)
    n = min(samples_taken(cfg, period, n_steps), cfg.adc_buffer_depth)
    if program == "stream":
        job = stream_job(cfg, samples_taken(cfg, period, n_steps), period)
    elif program == "trace":
        job = {"words": P.program("trace", cfg).words, "dmem": [(0, n)],
               "when": "each_sample", "read_dmem": [1]}
    else:
        job = {"words": P.program("inference", cfg).words, "when": "each_sample",
               "dmem": P.inference_dmem(cfg, 3, live_cycles(cfg, n_steps) // 3),
               "read_dmem": [P.RESET_LOG + 1, P.RESET_LOG + 2]}
    kernel = backends.run(chip, image, events, n_steps, backend="fast", run_seed=3, ppu=job)
    if program == "inference":      # the resets change the run
        plain = backends.run(chip, image, events, n_steps, backend="fast", run_seed=3)
        assert plain.first_difference(kernel.replace(ppu=None)) is not None

    def no_whole_run(*args, **kwargs):
        raise AssertionError("whole_run=False took the whole-run kernel")

    monkeypatch.setattr(fast_mod.FastChip, "_run_whole", no_whole_run)
    beside = fast_mod.run_fast(chip, image, events, n_steps, run_seed=3, ppu=job,
                               whole_run=False)
    assert len(kernel.ppu) == 3 and kernel.ppu[0]["status"] == 0b10
    diff = kernel.first_difference(beside)
    assert diff is None, diff


def test_stream_benchmark_runs_and_checks_its_paths(capsys):
    assert bench_main(["stream", "--batch", "1", "--samples", "40", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "machine: " in out and "identical Observables on all three: yes" in out
    assert bench_main(["stream", "--samples", "0"]) == 2


@pytest.mark.parametrize("adc_bits", [8, 10])
def test_stream_vectors_convert_lane_by_lane(adc_bits):
    """The stream's vectors to codes in one array (8- and 16-bit lanes) equal
    the packed arrays' own unpacking, vector by vector; bits above the lanes
    are ignored."""
    from spikeloop.base.layouts import unpack_array

    cfg = MINI.replace(adc_bits=adc_bits)
    g = chip_geometry(cfg)
    rng = np.random.default_rng(adc_bits)
    n_chunks = 2
    vectors = [int.from_bytes(rng.bytes(g.vector_bits // 8), "little")
               for _ in range(3 * n_chunks)]
    vectors[1] |= 1 << (g.adc_lanes * g.adc_lane_bits + 3)
    want = np.array([unpack_array(v, g.adc_lane_bits, g.adc_lanes) for v in vectors],
                    dtype=np.int64).reshape(3, n_chunks * g.adc_lanes)
    got = P.stream_vectors_to_codes(cfg, vectors, 0, n_chunks)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    with pytest.raises(ValueError, match="not a multiple of 2 chunks"):
        P.stream_vectors_to_codes(cfg, vectors[:-1], 0, n_chunks)
