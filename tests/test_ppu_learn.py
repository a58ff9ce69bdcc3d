"""Program 4 (spikeloop/ppu_programs.py LEARN): homeostatic synaptic scaling
learned on chip, and its demonstration (spikeloop/ppu_learn.py).

- the program on the instruction-level simulator (PpuSim) against numpy's rule
  (learn_numpy): the streamed responses and steps, every weight after the trial,
  labels kept, on both presets; no row write before the run's drain has
  passed; the cycle count equals learn_cycles;
- in the chip (reference backend, PpuRef inside ChipDigitalRef): every trial's
  weights equal numpy's rule applied to that trial's ADC codes, and the spread
  of the responses falls;
- the co-simulation (Verilator) of a few trials gives the reference backend's
  PPU results and weights.
"""
from __future__ import annotations

import numpy as np
import pytest

from spikeloop import ppu_programs as P
from spikeloop.backends import DRAIN_CYCLES, live_cycles
from spikeloop.config import FULL, MINI
from spikeloop.model.ppu import Environment, PpuSim, SynapseRows, chip_geometry


def _sim(cfg, codes, weights, labels, *, L, arrival=None):
    """A PpuSim whose ADC holds ``codes``; sample ``k`` appears at cycle
    ``arrival(k)`` (default: the ADC every 8 cycles from a start at time 0);
    ``time`` counts the cycles and stands at ``L``."""
    S = len(codes)
    arrival = arrival or (lambda k: 8 * k + 8)
    env = Environment(adc_count=lambda c: sum(1 for k in range(S) if arrival(k) <= c),
                      time=lambda c: min(c, L))
    syn = SynapseRows(cfg, [[list(zip(weights[h, r], labels[h, r], strict=True))
                             for r in range(cfg.rows_per_half)] for h in range(cfg.n_halves)])
    adc = [list(map(int, x)) for x in codes] + [[0] * cfg.n_neurons] * (
        cfg.adc_buffer_depth - S)
    sim = PpuSim(chip_geometry(cfg), env=env, syn=syn, adc=adc)
    sim.load(P.program("learn", cfg).words)
    return sim


def _weights(cfg, sim):
    w = [[sim.syn.weights(h, r) for r in range(cfg.rows_per_half)] for h in range(cfg.n_halves)]
    lab = [[sim.syn.labels(h, r) for r in range(cfg.rows_per_half)] for h in range(cfg.n_halves)]
    return np.array(w), np.array(lab)


@pytest.mark.parametrize("cfg,seed", [(MINI, 0), (MINI, 1), (MINI, 2), (FULL, 0)],
                         ids=["mini-0", "mini-1", "mini-2", "full-0"])
def test_learn_program_against_numpy(cfg, seed):
    rng = np.random.default_rng(seed)
    n_steps = 40
    L = live_cycles(cfg, n_steps)
    S = int(rng.integers(1, min(40, cfg.adc_buffer_depth) + 1))
    codes = rng.integers(40, 200, size=(S, cfg.n_neurons))
    shape = (cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half)
    W = rng.integers(0, cfg.weight_max + 1, size=shape)
    W[0, 0] = 0                      # saturation at both ends is exercised
    W[-1, -1] = cfg.weight_max
    lab = rng.integers(0, 1 << cfg.label_bits, size=shape)
    all_rows = [(h, r) for h in range(cfg.n_halves) for r in range(cfg.rows_per_half)]
    pick = rng.choice(len(all_rows), size=int(rng.integers(1, min(len(all_rows), 24))),
                      replace=False)
    rows = [all_rows[i] for i in pick] + [(0, 0), (cfg.n_halves - 1, cfg.rows_per_half - 1)]
    rows = list(dict.fromkeys(rows))
    target = rng.integers(0, 120, size=cfg.n_neurons)
    neurons = np.flatnonzero(rng.random(cfg.n_neurons) < 0.8)
    gain, dmax = int(rng.integers(1, 256)), int(rng.integers(1, 128))
    sim = _sim(cfg, codes, W, lab, L=L)
    for i, w in P.learn_dmem(cfg, n_steps, rows, target, gain=gain, max_step=dmax,
                             neurons=neurons):
        sim.dmem[i] = w
    sim.start()
    trace = sim.run(max_cycles=100_000)
    assert sim.halted
    r, d, want = P.learn_numpy(cfg, W, codes, rows, target, gain=gain, max_step=dmax,
                               neurons=neurons)
    got_r, got_d = P.learn_decode(cfg, [v for _, v in sim.stream])
    assert (got_r == r).all() and (got_d == d).all()
    got_w, got_lab = _weights(cfg, sim)
    assert (got_w == want).all()
    assert (got_lab == lab).all(), "labels kept"
    assert (want != W).any(), "the trial changed weights"
    assert sim.dmem[P.LEARN_SAMPLES] == S
    writes = [t.start for t in trace if t.text().startswith("vsw")]
    assert len(writes) == len(rows) * chip_geometry(cfg).row_chunks
    assert min(writes) >= L + DRAIN_CYCLES
    assert sim.dmem[P.LEARN_WRITE_CYCLE] >= sim.dmem[P.LEARN_END_CYCLE] + DRAIN_CYCLES


def test_learn_numpy_rule_by_hand():
    """The rule on numbers worked out by hand: r = peak - first sample;
    d = sign(T - r) * min((|T - r| * G) >> 4, D) on plastic neurons."""
    cfg = MINI
    codes = np.zeros((3, cfg.n_neurons), dtype=np.int64)
    codes[:, 0] = [80, 120, 100]      # r = 40, T = 30: e = -10, (10*8)>>4 = 5 -> -5
    codes[:, 1] = [80, 85, 90]        # r = 10: e = 20 -> 10, capped at D = 6
    codes[:, 2] = [80, 111, 90]       # r = 31: e = -1 -> (1*8)>>4 = 0: dead band
    codes[:, 3] = [90, 80, 70]        # falling: r = 0 -> e = 30 -> 6
    codes[:, 4] = [80, 110, 80]       # r = 30 exactly: 0; neuron 5: r = 0, not plastic
    W = np.full((2, cfg.rows_per_half, cfg.columns_per_half), 3)
    W[0, 0, 1] = 60
    r, d, w = P.learn_numpy(cfg, W, codes, [(0, 0), (0, 5)], 30, gain=8, max_step=6,
                            neurons=[0, 1, 2, 3, 4])
    assert list(r[:6]) == [40, 10, 31, 0, 30, 0]
    assert list(d[:6]) == [-5, 6, 0, 6, 0, 0]
    assert list(w[0, 0, :6]) == [0, 63, 3, 9, 3, 3]
    assert list(w[0, 5, :6]) == [0, 9, 3, 9, 3, 3]
    assert (w[0, 1] == 3).all() and (w[1] == 3).all(), "only the plastic rows change"


def _polls_and_spins(trace, labels):
    """(polls that found neither a new sample nor time >= L, drain checks that looped)."""
    n_poll = sum(1 for t in trace if t.pc == labels["poll"])
    n_samples = sum(1 for t in trace if t.pc == labels["sample"])
    n_drain = sum(1 for t in trace if t.pc == labels["drain"])
    return n_poll - n_samples - 1, n_drain - 1


@pytest.mark.parametrize("cfg", [MINI, FULL], ids=["mini", "full"])
def test_learn_cycles(cfg):
    """learn_cycles against the simulator: the ADC every 8 cycles (one wait for
    sample 0), and a run whose samples are all there at the start but whose
    time reaches L late (the program waits for time >= L, then the drain)."""
    rng = np.random.default_rng(3)
    labels = P.program("learn", cfg).labels
    shape = (cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half)
    W, lab = np.full(shape, 20), np.zeros(shape, dtype=np.int64)
    rows = [(0, 0), (cfg.n_halves - 1, 2), (0, 4)]
    S = min(40, cfg.adc_buffer_depth)
    codes = rng.integers(70, 110, size=(S, cfg.n_neurons))
    sim = _sim(cfg, codes, W, lab, L=live_cycles(cfg, 40))
    for i, w in P.learn_dmem(cfg, 40, rows, 30):
        sim.dmem[i] = w
    sim.start()
    trace = sim.run()
    assert _polls_and_spins(trace, labels) == (1, 0)
    assert sim.cycle == P.learn_cycles(cfg, S, len(rows), wait_polls=1)
    # all samples there from the start; time reaches L only at cycle ~5000; a
    # drain longer than the work after the measurement (the program spins)
    n_steps, drain = 624, 2000
    L = live_cycles(cfg, n_steps)
    sim = _sim(cfg, codes[:3], W, lab, L=L, arrival=lambda k: 0)
    for i, w in P.learn_dmem(cfg, n_steps, rows, 30, drain=drain):
        sim.dmem[i] = w
    sim.start()
    trace = sim.run()
    assert sim.halted
    end = sim.dmem[P.LEARN_END_CYCLE]
    assert L + 5 <= end <= L + 8, "time >= L read within one 4-cycle poll, csrr cycle 5 later"
    first = min(t.start for t in trace if t.text().startswith("vsw"))
    assert first >= end + drain and sim.dmem[P.LEARN_WRITE_CYCLE] >= end + drain
    polls, spins = _polls_and_spins(trace, labels)
    assert polls > 1000 and spins > 0
    assert sim.cycle == P.learn_cycles(cfg, 3, len(rows), wait_polls=polls, drain_spins=spins)


def test_learn_without_samples_writes_nothing():
    cfg = MINI
    shape = (cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half)
    W = np.full(shape, 7)
    sim = _sim(cfg, np.zeros((0, cfg.n_neurons)), W, np.zeros(shape, dtype=np.int64), L=100)
    for i, w in P.learn_dmem(cfg, 12, [(0, 0)], 30):
        sim.dmem[i] = w
    sim.start()
    sim.run()
    assert sim.halted and sim.stream == [] and sim.dmem[P.LEARN_SAMPLES] == 0
    assert (_weights(cfg, sim)[0] == W).all()
    with pytest.raises(ValueError, match="streamed vectors"):
        P.learn_decode(cfg, [])


def test_learn_layout_fits_and_matches_the_source():
    """learn_layout is what the source's .equ lines compute: the targets written
    there are the ones the program compares with (a neuron whose target equals
    its response gets no step, the others do)."""
    for cfg in (MINI, FULL):
        g = chip_geometry(cfg)
        lay = P.learn_layout(cfg)
        assert lay["end"] * g.vector_words <= g.dmem_words
        assert lay["target"] * g.vector_words >= P.LEARN_ROW_LIST + cfg.n_halves * \
            cfg.rows_per_half
    cfg = MINI
    codes = np.array([[80] * cfg.n_neurons, list(range(90, 90 + cfg.n_neurons))])
    target = np.arange(10, 10 + cfg.n_neurons)
    target[::2] += 3
    shape = (cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half)
    sim = _sim(cfg, codes, np.full(shape, 20), np.zeros(shape, dtype=np.int64), L=30)
    for i, w in P.learn_dmem(cfg, 3, [(0, 1)], target, gain=16, max_step=5):
        sim.dmem[i] = w
    sim.start()
    sim.run()
    _, d = P.learn_decode(cfg, [v for _, v in sim.stream])
    assert list(d) == [3 if n % 2 == 0 else 0 for n in range(cfg.n_neurons)]


@pytest.mark.parametrize("kwargs,match", [
    ({"rows": [(2, 0)]}, r"half 0\.\.1"),
    ({"rows": [(0, 16)]}, r"row 0\.\.15"),
    ({"rows": [(0, 1), (0, 1)]}, "listed twice"),
    ({"rows": [3]}, r"\(half, row\) pairs"),
    ({"target": 256}, r"allowed: 0\.\.255"),
    ({"target": [1, 2]}, "one per neuron"),
    ({"gain": 256}, r"gain = 256; allowed: an integer 0\.\.255"),
    ({"max_step": 128}, r"max_step = 128; allowed: an integer 0\.\.127"),
    ({"drain": 10}, "drain = 10 cycles; allowed: 64"),
    ({"n_steps": 0}, "n_steps = 0"),
    ({"neurons": [16]}, r"neuron 16; allowed: 0\.\.15"),
])
def test_learn_dmem_refuses_bad_parameters(kwargs, match):
    args = {"n_steps": 40, "rows": [(0, 0)], "target": 30}
    args.update(kwargs)
    n_steps, rows, target = args.pop("n_steps"), args.pop("rows"), args.pop("target")
    with pytest.raises(ValueError, match=match):
        P.learn_dmem(MINI, n_steps, rows, target, **args)


def test_learn_refuses_configs_it_cannot_serve():
    with pytest.raises(ValueError, match="adc_bits = 10"):
        P.learn_dmem(MINI.replace(adc_bits=10), 40, [(0, 0)], 30)
    with pytest.raises(ValueError, match="columns_per_half = 3"):
        P.learn_dmem(MINI.replace(n_neurons=6, neurons_per_block=2), 40, [(0, 0)], 30)
