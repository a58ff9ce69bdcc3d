"""The learning program (``LEARN`` of spikeloop/ppu/programs.py): homeostatic synaptic scaling
learned on chip, and its demonstration (spikeloop/ppu/learn.py).

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

import json
import re

import numpy as np
import pytest

from spikeloop import backends
from spikeloop.base.config import FULL, MINI
from spikeloop.base.isa import chip_geometry
from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
from spikeloop.model.ppu_sim import Environment, PpuSim, SynapseRows
from spikeloop.ppu import learn as L
from spikeloop.ppu import programs as P


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
    with pytest.raises(ValueError, match="adc_ring = true"):
        P.learn_dmem(MINI.replace(adc_ring=True), 40, [(0, 0)], 30)


# -- in the chip: the reference backend (PpuRef in ChipDigitalRef) --------------------

@pytest.fixture(scope="module")
def learn_setup():
    """The demonstration's chip (mini, chip seed 1, calibrated except the
    excitatory synaptic gains), image, plastic rows and the program's job."""
    s = L.LearnSettings(preset="mini", chip_seed=1, trials=10)
    cfg = s.check()
    chip, image, rows = L.chip_and_image(s, cfg)
    return s, cfg, chip, image, rows


def _job(cfg, s, rows, **kw):
    dmem = P.learn_dmem(cfg, s.n_steps, rows, s.target, gain=kw.get("gain", s.gain),
                        max_step=s.max_step)
    return {"words": P.program("learn", cfg).words, "dmem": dmem, "when": "each_sample",
            "read_dmem": [P.LEARN_SAMPLES, P.LEARN_END_CYCLE, P.LEARN_WRITE_CYCLE],
            "read_synapses": True}


def test_learning_in_the_chip_follows_the_rule_and_reduces_the_spread(learn_setup):
    """Ten trials on the reference backend: every trial's streamed responses
    and steps, and the weights read back after its halt, equal numpy's rule
    on that trial's ADC codes (Observables.adc) and the weights before; the
    spread of the responses falls to under a third; the cycle count is
    learn_cycles' (one wait for sample 0 at ADC period 8)."""
    s, cfg, chip, image, rows = learn_setup
    events = L.trial_events(cfg, s.inputs, s.trials)
    obs = backends.run(chip, image, events, s.n_steps, backend="reference", run_seed=s.run_seed,
                   ppu=_job(cfg, s, rows))
    assert len(obs.ppu) == s.trials
    w = image.synapse_weight
    spreads = []
    for t, res in enumerate(obs.ppu):
        assert res["status"] == 0b10 and res["out_drops"] == 0
        codes = obs.adc[:int(obs.adc_count[t]), t]
        r, d, want = P.learn_numpy(cfg, w, codes, rows, s.target, gain=s.gain,
                                   max_step=s.max_step)
        got_r, got_d = P.learn_decode(cfg, res["out"])
        assert (got_r == r).all() and (got_d == d).all(), f"trial {t}"
        assert (res["weights"] == want).all(), f"trial {t}"
        assert (res["labels"] == image.synapse_label).all()
        assert res["dmem"][P.LEARN_SAMPLES] == len(codes) == s.n_steps
        assert res["cycles"] == P.learn_cycles(cfg, len(codes), len(rows), wait_polls=1)
        spreads.append(np.abs(r - s.target).mean())
        w = want
    assert (w != image.synapse_weight).any()
    print(f"mean |r - target| per trial: {np.round(spreads, 2).tolist()}; PPU "
          f"{obs.ppu[0]['cycles']} cycles per trial")
    assert spreads[0] > 3 and spreads[-1] < spreads[0] / 3, spreads


def test_without_learning_the_spread_stays(learn_setup):
    """The control: gain 0 (the PPU measures, steps 0): the weights stay and
    the spread does not fall: the fall above is the rule's doing."""
    s, cfg, chip, image, rows = learn_setup
    events = L.trial_events(cfg, s.inputs, 4)
    obs = backends.run(chip, image, events, s.n_steps, backend="reference", run_seed=s.run_seed,
                   ppu=_job(cfg, s, rows, gain=0))
    mads = []
    for res in obs.ppu:
        r, d = P.learn_decode(cfg, res["out"])
        assert (d == 0).all() and (res["weights"] == image.synapse_weight).all()
        mads.append(np.abs(r - s.target).mean())
    assert min(mads) > 3, mads


def test_demonstration_writes_the_curve(tmp_path):
    """`spikeloop ppu learn` on the reference backend: the curve falls, every
    trial passes the host's rule check, the files are written."""
    from spikeloop.cli import main

    rc = main(["ppu", "learn", "--preset", "mini", "--chip-seed", "2", "--trials", "8",
               "--backend", "reference", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "learning_curve.json").read_text())
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000
    assert res["seeds"] == {"chip_seed": 2, "run_seed": 0} and res["backend"] == "reference"
    assert res["rule_check"]["mismatched_trials"] == []
    assert len(res["trials"]) == 8 and len(res["ppu_cycles"]) == 8
    assert res["last"]["mad"] < res["first"]["mad"] / 2
    assert res["last"]["std"] < res["first"]["std"] / 2


@pytest.mark.parametrize("argv,match", [
    (["--backend", "slow"], "backend = 'slow'; allowed: reference, cosim, fast"),
    (["--calibration", "half"], "calibration = 'half'; allowed: except-gain, none, full"),
    (["--trials", "0"], "trials = 0; allowed: an integer >= 1"),
    (["--inputs", "9"], r"inputs = 9; allowed: 1\.\.8"),
    (["--weight", "64"], r"weight = 64; allowed: 0\.\.63"),
    (["--target", "300"], r"target range 300\.\.300 ADC codes; allowed: 0\.\.255"),
    (["--gain", "-1"], r"gain = -1; allowed: an integer 0\.\.255"),
    (["--max-step", "200"], r"max_step = 200; allowed: an integer 0\.\.127"),
    (["--steps", "3"], "n_steps = 3: the last input event"),
    (["--preset", "big"], "unknown preset 'big'"),
])
def test_demonstration_refuses_bad_arguments(argv, match, tmp_path, capsys):
    from spikeloop.cli import main

    base = {"--preset": "mini", "--chip-seed": "1", "--out": str(tmp_path / "x")}
    for k, v in zip(argv[::2], argv[1::2], strict=True):
        base[k] = v
    rc = main(["ppu", "learn", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(match, err), err
    assert not (tmp_path / "x").exists()


def test_fast_backend_learns_as_the_reference(learn_setup):
    """The fast backend (the PPU beside its windows, sample by sample since the
    program writes synapses) gives the reference backend's Observables: the
    same PPU results (streams, cycles, dmem words, weights after every trial),
    ADC codes and spikes."""
    s, cfg, chip, image, rows = learn_setup
    events = L.trial_events(cfg, s.inputs, 6)
    job = _job(cfg, s, rows)
    ref = backends.run(chip, image, events, s.n_steps, backend="reference", run_seed=5, ppu=job)
    fast = backends.run(chip, image, events, s.n_steps, backend="fast", run_seed=5, ppu=job)
    assert fast.first_difference(ref) is None, fast.first_difference(ref)
    assert (fast.ppu[-1]["weights"] != image.synapse_weight).any()


# -- the co-simulation ---------------------------------------------------------------

@pytest.mark.cosim
def test_cosim_learns_as_the_reference(learn_setup):
    """Three trials on the Verilator top (mini) with the analog model in the
    loop: the PPU results the host reads through the bus (streams, cycles, dmem
    words, every synapse after every trial) and the Observables equal the
    reference backend's.  The cycle count per trial is printed (``-s``)."""
    import time

    s, cfg, chip, image, rows = learn_setup
    events = L.trial_events(cfg, s.inputs, 3)
    job = _job(cfg, s, rows)
    t0 = time.perf_counter()
    co = backends.run(chip, image, events, s.n_steps, backend="cosim", run_seed=7, ppu=job)
    wall = time.perf_counter() - t0
    ref = backends.run(chip, image, events, s.n_steps, backend="reference", run_seed=7, ppu=job)
    assert co.first_difference(ref) is None, co.first_difference(ref)
    assert len(co.ppu) == 3 and all(r["status"] == 0b10 for r in co.ppu)
    assert (co.ppu[-1]["weights"] == ref.ppu[-1]["weights"]).all()
    assert (co.ppu[-1]["weights"] != image.synapse_weight).any(), "the trials changed weights"
    for t, res in enumerate(co.ppu):
        r, _ = P.learn_decode(cfg, res["out"])
        print(f"cosim trial {t}: PPU {res['cycles']} cycles, mean |r - target| "
              f"{np.abs(r - s.target).mean():.2f}")
    st = co.stats
    print(f"cosim: {wall:.1f} s for 3 trials (build {'cached' if st['build_cached'] else 'built'}"
          f" {st['build_s']:.1f} s, test {st['test_wall_s']:.1f} s)")
