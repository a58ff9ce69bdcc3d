"""Merged neurons: one neuron made of circuit ``c`` of half 0 and circuit ``C + c``
of half 1 (``ConfigImage.neuron_merge``; model/analog.py, placement ``merged=``).

- the analog rule against closed forms: a merged neuron integrates the bottom
  half's synaptic current on the top circuit's membrane;
- the bottom circuit never spikes and shows the merged membrane;
- placement: the paper's 256 -> 246 -> 10 network fits the FULL preset only merged;
- every backend agrees on random merged images (reference vs fast here, cosim vs
  fast in the cosim tier), and an unmerged image is unaffected by the feature.
"""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeloop.backends.fast import run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import FULL, MINI
from spikeloop.base.image import ConfigImage
from spikeloop.model.analog import AnalogChipModel, LIFParams, lif_step, psp_closed_form
from spikeloop.model.chip import Chip
from spikeloop.nn.placement import INPUT, PlacementError, place
from tests.test_fast_equivalence import assert_same, describe_difference, random_case

C = MINI.columns_per_half


def _params(chip: AnalogChipModel, merge, noise=0.0):
    settings_ = chip.nominal_settings()
    return chip.physical(settings_), LIFParams.from_physical(
        chip.physical(settings_), chip.dt_us, noise_sigma_v=noise, dtype=torch.float64,
        merge=merge)


@pytest.mark.unit
def test_bottom_input_drives_the_top_membrane_exactly():
    """A weight sum into the BOTTOM circuit of merged column 2: the top membrane
    follows the closed-form PSP with the top's leak and tau_mem and the bottom's
    tau_syn and gain; the bottom shows the same membrane; the unmerged neighbour
    columns see nothing."""
    chip = AnalogChipModel(MINI, chip_seed=3)
    merge = np.zeros(C, dtype=np.int64)
    merge[2] = 1
    phys, p = _params(chip, merge)
    top, bottom = 2, C + 2
    state = p.initial_state(1)
    exc = torch.zeros(1, MINI.n_neurons, dtype=torch.int64)
    exc[0, bottom] = 40
    v_top, v_bot = [], []
    for k in range(60):
        state, spikes = lif_step(state, p, exc if k == 0 else None, None)
        assert not spikes.any()
        v_top.append(float(state.v_mem_v[0, top]))
        v_bot.append(float(state.v_mem_v[0, bottom]))
    t = p.dt_us * np.arange(1, 61)
    want = float(phys.v_leak_v[top]) + psp_closed_form(
        t, float(phys.tau_mem_us[top]), float(phys.tau_syn_exc_us[bottom]),
        40 * float(phys.gain_exc_v_per_us[bottom]))
    np.testing.assert_allclose(v_top, want, rtol=0, atol=1e-12)
    assert v_bot == v_top
    # the PSP is real (a few tens of mV) and leaves the other columns at rest
    assert max(v_top) - float(phys.v_leak_v[top]) > 0.02
    for n in (1, 3, C + 1, C + 3):
        assert float(state.v_mem_v[0, n]) == pytest.approx(float(phys.v_leak_v[n]), abs=1e-12)


@pytest.mark.unit
def test_merged_pair_sums_both_halves_and_only_the_top_spikes():
    chip = AnalogChipModel(MINI, chip_seed=1)
    merge = np.ones(C, dtype=np.int64)
    _, p = _params(chip, merge, noise=2e-3)
    _, p0 = _params(chip, None, noise=2e-3)
    state, state0 = p.initial_state(2), p0.initial_state(2)
    g = torch.Generator().manual_seed(0)
    spikes_seen = torch.zeros(2, MINI.n_neurons, dtype=torch.bool)
    for _ in range(200):
        exc = torch.randint(0, 40, (2, MINI.n_neurons), generator=g)
        noise = 2e-3 * torch.randn(2, MINI.n_neurons, generator=g, dtype=torch.float64)
        state, spikes = lif_step(state, p, exc, None, None, noise)
        state0, _ = lif_step(state0, p0, exc, None, None, noise)
        spikes_seen |= spikes
        assert torch.equal(state.v_mem_v[:, :C], state.v_mem_v[:, C:])
        assert not spikes[:, C:].any()
    assert spikes_seen[:, :C].any()
    # the synaptic currents are each circuit's own, merged or not
    assert torch.equal(state.i_exc_v_per_us, state0.i_exc_v_per_us)


@pytest.mark.unit
def test_no_merge_bits_means_the_unmerged_model():
    chip = AnalogChipModel(MINI, chip_seed=2)
    _, a = _params(chip, np.zeros(C, dtype=np.int64))
    _, b = _params(chip, None)
    assert a.merge_top is None
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y), f.name
    with pytest.raises(ValueError, match="one bit per column"):
        _params(chip, np.zeros(C + 1, dtype=np.int64))


@pytest.mark.unit
def test_image_field_and_old_files(tmp_path):
    img = ConfigImage.empty(MINI)
    assert img.neuron_merge.shape == (C,)
    img.neuron_merge[3] = 1
    img.save(tmp_path / "a.npz")
    assert ConfigImage.load(tmp_path / "a.npz").neuron_merge[3] == 1
    # an image saved before the field existed loads with no pair merged
    with np.load(tmp_path / "a.npz") as z:
        old = {k: z[k] for k in z.files if k != "neuron_merge"}
    np.savez(tmp_path / "old.npz", **old)
    assert not ConfigImage.load(tmp_path / "old.npz").neuron_merge.any()
    one_half = MINI.replace(name="one-half", n_halves=1, n_neurons=8)
    assert ConfigImage.empty(one_half).neuron_merge.shape == (0,)
    bad = ConfigImage.empty(MINI)
    bad.neuron_merge = np.full(C, 2)
    with pytest.raises(ValueError, match=r"neuron_merge\[0\] = 2 is out of range; allowed: 0..1"):
        ConfigImage(MINI, **{f: getattr(bad, f) for f in bad.__dataclass_fields__ if f != "cfg"})


# -- placement ---------------------------------------------------------------------

@pytest.mark.unit
def test_paper_network_fits_full_only_merged():
    rng = np.random.default_rng(0)
    w1 = rng.integers(-63, 64, (256, 246))
    w2 = rng.integers(-63, 64, (246, 10))
    # dense: every synapse reserved (training rewrites any weight, sign included)
    layers = [(INPUT, "hidden", w1, np.ones(w1.shape, bool)),
              ("hidden", "out", w2, np.ones(w2.shape, bool))]
    with pytest.raises(PlacementError, match="need 256 synapse driver pairs, a half has 128"):
        place(FULL, layers, reserve="both")
    pl = place(FULL, layers, reserve="both", merged=["hidden", "out"])
    img = pl.image
    np.testing.assert_array_equal(pl.neurons["hidden"], np.arange(246))
    np.testing.assert_array_equal(pl.neurons["out"], np.arange(246, 256))
    assert img.neuron_merge.all() and img.neuron_enable[:256].all()
    assert not img.neuron_enable[256:].any()
    # each input's synapses lie in one half: even inputs on top, odd on the bottom
    for i in (0, 1, 254, 255):
        d, a = pl.slots[(INPUT, i)]
        h = i % 2
        rows = img.synapse_weight[h, 2 * d:2 * d + 2, :246]
        labels = img.synapse_label[h, 2 * d:2 * d + 2, :246]
        signed = np.where(w1[i] > 0, rows[0], -rows[1])
        np.testing.assert_array_equal(signed, w1[i])
        assert (labels == a).all()
    assert (img.row_sign != 0).all()        # every driver pair of both halves in use


@pytest.mark.unit
def test_merged_placement_refusals():
    w = np.ones((4, C + 1), dtype=np.int64)
    with pytest.raises(PlacementError, match=r"merged: hidden \(9\) = 9 merged neurons, each "
                                             r"takes a column of both halves and a half has "
                                             r"8 columns \(1 too many\)"):
        place(MINI, [(INPUT, "hidden", w)], merged=["hidden"])
    with pytest.raises(PlacementError, match="merged: 'nope' is not a population"):
        place(MINI, [(INPUT, "hidden", np.ones((4, 4), dtype=np.int64))], merged=["nope"])
    one_half = MINI.replace(name="one-half", n_halves=1, n_neurons=8)
    with pytest.raises(PlacementError, match="needs a chip with 2 halves"):
        place(one_half, [(INPUT, "hidden", np.ones((4, 4), dtype=np.int64))], merged=["hidden"])
    # a merged population leaves the remaining columns of both halves to the others
    with pytest.raises(PlacementError, match=r"half 1: hidden \(6, merged\) \+ out \(3\) = 9"):
        place(MINI, [(INPUT, "hidden", np.ones((4, 6), dtype=np.int64)),
                     ("hidden", "out", np.ones((6, 3), dtype=np.int64))],
              merged=["hidden"], halves={"out": 1})


@pytest.fixture(scope="module")
def mini_chip():
    return Chip.calibrated(MINI, 2)


@pytest.mark.unit
def test_sixteen_signed_inputs_on_mini_end_to_end(mini_chip):
    """MINI has 8 driver pairs per half: 16 dense signed inputs need merging.  An
    odd input (bottom rows) alone drives its merged neuron to spike, on the
    reference and the fast backend alike."""
    rng = np.random.default_rng(4)
    w = rng.integers(-10, 11, (16, 4))
    w[7] = [60, -60, 0, 0]                         # input 7: bottom half, excites neuron 0
    w[6] = [0, 0, 60, -60]                         # input 6: top half, excites neuron 2
    pl = place(MINI, [(INPUT, "hidden", w)], merged=["hidden"], reserve="both")
    image = mini_chip.configure(pl.image)
    per_sample = [[(4 + 3 * k, 7) for k in range(12)], [(4 + 3 * k, 6) for k in range(12)]]
    events = pl.input_events(per_sample)
    ref = run_reference(mini_chip, image, events, 40, run_seed=1)
    fast = run_fast(mini_chip, image, events, 40, run_seed=1)
    assert ref.first_difference(fast) is None, ref.first_difference(fast)
    hidden = pl.spikes_of(ref.spikes, "hidden")
    assert set(hidden[hidden[:, 0] == 0, 3]) == {0}
    assert set(hidden[hidden[:, 0] == 1, 3]) == {2}
    assert not (ref.spikes[:, 3] >= C).any()       # bottom circuits never spike
    # the bottom ADC channel reads the merged membrane (within its channel mismatch)
    assert abs(int(ref.adc[0, :, 0].max()) - int(ref.adc[0, :, C].max())) <= 6


# -- every backend agrees on random merged images --------------------------------------

def merged_case(seed: int, cfg=None):
    """``random_case(seed, cfg)`` with about 60 % of the columns merged."""
    chip, img, events, n_steps, offset = random_case(seed, cfg)
    rng = np.random.default_rng([seed, 1])
    img.neuron_merge[:] = rng.random(img.cfg.columns_per_half) < 0.6
    return chip, img, events, n_steps, offset


def check_merged_seed(seed: int) -> None:
    chip, img, events, n_steps, offset = merged_case(seed)
    kw = dict(run_seed=seed % 5, sample_offset=offset)
    ref = run_reference(chip, img, events, n_steps, **kw)
    fast = run_fast(chip, img, events, n_steps, **kw)
    assert_same(ref, fast, f"merged_case({seed})")


@pytest.mark.unit
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_merged_fast_equals_reference(seed):
    check_merged_seed(seed)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_merged_fast_equals_reference_long(seed):
    check_merged_seed(seed)


@pytest.mark.cosim
@pytest.mark.parametrize("seed", [11, 12])
def test_merged_cosim_equals_fast(seed):
    """The RTL holds the merge register the analog side uses (the cosim reads it
    back from the top's ``neuron_merge`` port): cosim == fast on merged images."""
    from spikeloop.cosim.backend import run_cosim
    from tests.test_cosim_chip import COSIM_VARIANTS

    cfg = COSIM_VARIANTS[seed % len(COSIM_VARIANTS)]
    chip, img, events, n_steps, offset = merged_case(seed, cfg)
    assert img.neuron_merge.any()
    kw = dict(run_seed=seed % 5, sample_offset=offset)
    fast = run_fast(chip, img, events, n_steps, **kw)
    cos = run_cosim(chip, img, events, n_steps, **kw)
    diff = describe_difference(fast, cos)
    assert diff is None, f"seed {seed} ({cfg.name}): first difference (fast != cosim): {diff}"
