"""Placement (spikeloop/nn/placement.py): networks -> ConfigImage.

The images are checked against an independent reading of the routing rules of
docs/rtl.md (crossbar node forwards when ``(label & mask) == target``, driver
``d`` listens to bus ``d % B`` and matches ``((row_select ^ select) & mask) ==
0``, a synapse fires when its label equals the event address, the row sign
gives the current's sign): every source's events must produce exactly its
signed weights on the neurons of the post population and nothing elsewhere.
Then tiny networks run end to end on the MINI preset (reference and fast
backends, identical Observables).
"""
import numpy as np
import pytest
import torch

from spikeloop import backends
from spikeloop.base.config import FULL, MINI
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign, unpack_event
from spikeloop.model.chip import Chip
from spikeloop.nn.placement import (
    INPUT,
    Placement,
    PlacementError,
    Projection,
    output_scale,
    place,
    quantize,
)

pytestmark = pytest.mark.unit

SIGN = {RowSign.OFF: 0, RowSign.EXC: 1, RowSign.INH: -1}


# -- an independent model of where an event's current goes ---------------------

def delivered(img: ConfigImage, xbar_input: int, label: int) -> np.ndarray:
    """Signed weight sum every neuron receives from one event entering the
    crossbar at ``xbar_input`` (per docs/rtl.md)."""
    cfg = img.cfg
    B, D, C = cfg.buses_per_half, cfg.drivers_per_half, cfg.columns_per_half
    addr, rs, _ = unpack_event(cfg, label)
    out = np.zeros(cfg.n_neurons, dtype=np.int64)
    sign = np.vectorize(lambda s: SIGN[RowSign(int(s))])(img.row_sign)
    for o in range(cfg.n_buses):
        if not (img.xbar_enable[xbar_input, o]
                and (label & img.xbar_mask[xbar_input, o]) == img.xbar_target[xbar_input, o]):
            continue
        h, b = divmod(o, B)
        for d in range(b, D, B):
            if ((rs ^ img.driver_select[h, d]) & img.driver_mask[h, d]) == 0:
                for r in (2 * d, 2 * d + 1):
                    hit = img.synapse_label[h, r] == addr
                    out[h * C:(h + 1) * C] += sign[h, r] * img.synapse_weight[h, r] * hit
    return out


def recorded_links(img: ConfigImage, xbar_input: int, label: int) -> list[int]:
    cfg = img.cfg
    return [o - cfg.n_buses for o in range(cfg.n_buses, cfg.crossbar_outputs)
            if img.xbar_enable[xbar_input, o]
            and (label & img.xbar_mask[xbar_input, o]) == img.xbar_target[xbar_input, o]]


def check_delivery(pl: Placement) -> None:
    """Every input and every neuron of ``pl`` delivers exactly its weights."""
    cfg, img = pl.cfg, pl.image
    expect = {}
    for p in pl.projections:
        n_pre = np.asarray(p.weights).shape[0]
        for i in range(n_pre):
            e = expect.setdefault((p.pre, i), np.zeros(cfg.n_neurons, dtype=np.int64))
            e[pl.neurons[p.post]] += np.asarray(p.weights)[i]
    for i in range(pl.n_inputs):
        got = delivered(img, cfg.n_blocks + int(pl.input_links[i]), int(pl.input_labels[i]))
        want = expect.get((INPUT, i), np.zeros(cfg.n_neurons, dtype=np.int64))
        np.testing.assert_array_equal(got, want, err_msg=f"input {i}")
    for pop, idx in pl.neurons.items():
        for j, n in enumerate(idx):
            label = int(img.neuron_label[n])
            assert label == pl.neuron_labels[pop][j]
            got = delivered(img, int(n) // cfg.neurons_per_block, label)
            want = expect.get((pop, j), np.zeros(cfg.n_neurons, dtype=np.int64))
            np.testing.assert_array_equal(got, want, err_msg=f"{pop}[{j}] (neuron {n})")
    labels = list(pl.input_labels) + [lb for v in pl.neuron_labels.values() for lb in v]
    assert len(set(labels)) == len(labels), "event labels must be unique"
    enabled = np.zeros(cfg.n_neurons, dtype=bool)
    for idx in pl.neurons.values():
        enabled[idx] = True
    np.testing.assert_array_equal(img.neuron_enable.astype(bool), enabled)


def paired_weights(rng, n_pre: int, n_post: int) -> np.ndarray:
    """Dense signed weights (no zero) whose sources ``i`` and ``i + n_pre // 2``
    have opposite signs on every neuron: two sources per driver pair suffice."""
    half = n_pre // 2
    w = np.zeros((n_pre, n_post), dtype=np.int64)
    s = rng.choice([-1, 1], size=(half, n_post))
    w[:half] = s * rng.integers(1, 64, (half, n_post))
    w[half:2 * half] = -s * rng.integers(1, 64, (half, n_post))
    return w


# -- weights -----------------------------------------------------------------------

def test_quantize_rounds_and_clamps():
    w = np.array([[0.1, -0.1, 1.0, -1.0], [0.5 / 240, 1.5 / 240, -0.26, 0.0]])
    np.testing.assert_array_equal(quantize(w, 240), [[24, -24, 63, -63], [0, 2, -62, 0]])
    assert quantize(torch.tensor([[0.3, -0.3]]), 240).tolist() == [[63, -63]]
    assert quantize(w, 240).dtype == np.int64
    assert output_scale(np.array([0.5, -0.9])) == pytest.approx(70.0)
    assert output_scale(np.array([0.01])) == 250.0
    assert output_scale(np.zeros(3)) == 250.0


# -- the paper's MNIST network on FULL ------------------------------------------------

def test_mnist_network_fits_full():
    rng = np.random.default_rng(0)
    w1, w2 = paired_weights(rng, 256, 246), paired_weights(rng, 246, 10)
    pl = place(FULL, [Projection(INPUT, "hidden", w1), Projection("hidden", "out", w2)],
               adc_period=212)
    img = pl.image
    assert pl.halves == {"hidden": 0, "out": 1}
    np.testing.assert_array_equal(pl.neurons["hidden"], np.arange(246))
    np.testing.assert_array_equal(pl.neurons["out"], 256 + np.arange(10))
    assert int(img.adc_period) == 212
    # every input shares its driver pair with exactly its sign-complementary partner
    pair = {i: pl.slots[(INPUT, i)][0] for i in range(256)}
    assert sorted(set(pair.values())) == list(range(128))
    assert all(pair[i] == pair[i + 128] for i in range(128))
    assert (img.row_sign[0, 0::2] == RowSign.EXC).all()
    assert (img.row_sign[0, 1::2] == RowSign.INH).all()
    check_delivery(pl)
    # the image survives a round trip and re-validation
    ConfigImage(FULL, **{f: getattr(img, f) for f in img.__dataclass_fields__ if f != "cfg"})
    # hidden and output spikes reach the host links
    for pop in ("hidden", "out"):
        for n, lb in zip(pl.neurons[pop], pl.neuron_labels[pop], strict=True):
            assert recorded_links(img, int(n) // FULL.neurons_per_block, int(lb))


def test_dense_random_mnist_is_refused():
    rng = np.random.default_rng(1)
    w1 = rng.integers(1, 64, (256, 246)) * rng.choice([-1, 1], (256, 246))
    with pytest.raises(PlacementError) as e:
        place(FULL, [(INPUT, "hidden", w1), ("hidden", "out", paired_weights(rng, 246, 10))])
    assert str(e.value) == (
        "half 0: the sources (input) of hidden need 256 synapse driver pairs, a half has 128 "
        "(128 too many; sources sharing a pair must use different synapses: other neurons, "
        "or opposite signs with reserve='weights') (halves {'hidden': 0, 'out': 1}; no other "
        "assignment of the populations to halves fits either)")


# -- refusals ------------------------------------------------------------------------

def test_population_larger_than_a_half_is_refused():
    w1 = np.ones((16, 300), dtype=np.int64)
    with pytest.raises(PlacementError, match=r"^hidden: 300 neurons, a half has 256 columns "
                                             r"\(44 too many\)$"):
        place(FULL, [(INPUT, "hidden", w1), ("hidden", "out", np.ones((300, 10), int))])


def test_half_overflow_is_refused():
    w = np.ones((2, 5), dtype=np.int64)
    with pytest.raises(PlacementError) as e:
        place(MINI, [(INPUT, "a", w), (INPUT, "b", w)], halves={"a": 0, "b": 0})
    assert str(e.value) == ("half 0: a (5) + b (5) = 10 neurons, a half has 8 columns "
                            "(2 too many)")


def test_label_exhaustion_is_refused():
    w = np.zeros((600, 3), dtype=np.int64)   # unconnected inputs still need a label each
    w[0, 0] = 1
    with pytest.raises(PlacementError) as e:
        place(MINI, [(INPUT, "h", w)])
    assert str(e.value) == ("labels: 600 inputs + 3 neurons need 603 distinct event labels, "
                            "the label layout gives 512 (91 too many)")


def test_label_layouts_that_cannot_route_are_refused():
    cfg = MINI.replace(row_select_bits=1, event_label_bits=8)
    with pytest.raises(PlacementError) as e:
        place(cfg, [(INPUT, "h", np.ones((2, 2), int))])
    assert str(e.value) == ("label layout: 4 drivers listen to each bus, the row select has "
                            "1 bits (2 values; 2 too many)")
    cfg = MINI.replace(event_label_bits=11)
    with pytest.raises(PlacementError) as e:
        place(cfg, [(INPUT, "h", np.ones((2, 2), int))])
    assert str(e.value) == ("label layout: routing to 2 buses needs 1 upper label bits, "
                            "the event label has 0 (1 too few)")


def test_bad_networks_are_refused():
    with pytest.raises(PlacementError, match=r"weight 64 at \[0, 1\] is out of range -63..63"):
        place(MINI, [(INPUT, "h", np.array([[0, 64]]))])
    with pytest.raises(PlacementError, match="must be integers"):
        place(MINI, [(INPUT, "h", np.array([[0.5, 1.0]]))])
    with pytest.raises(PlacementError, match="2 rows, but h has 3 neurons"):
        place(MINI, [(INPUT, "h", np.ones((1, 3), int)), ("h", "o", np.ones((2, 1), int))])
    with pytest.raises(PlacementError, match="'x' is no projection's post"):
        place(MINI, [("x", "h", np.ones((1, 3), int))])


# -- signs, sharing and the sharing limits ---------------------------------------------

def test_signed_weights_land_on_their_rows():
    w = np.array([[5, -7, 0], [0, 0, 0], [-63, 63, 1], [2, 0, 0]])
    pl = place(MINI, [(INPUT, "h", w)])
    img = pl.image
    for i in (0, 2, 3):
        d, a = pl.slots[(INPUT, i)]
        assert img.row_sign[0, 2 * d] == RowSign.EXC
        assert img.row_sign[0, 2 * d + 1] == RowSign.INH
        for j, c in enumerate(pl.neurons["h"]):
            exc, inh = (0, 2 * d), (0, 2 * d + 1)
            if w[i, j] > 0:
                assert img.synapse_weight[exc + (c,)] == w[i, j]
                assert img.synapse_label[exc + (c,)] == a
            if w[i, j] < 0:
                assert img.synapse_weight[inh + (c,)] == -w[i, j]
                assert img.synapse_label[inh + (c,)] == a
    assert (INPUT, 1) not in pl.slots           # no synapse: no driver
    # inputs 0 and 2 have opposite signs wherever both connect: they share a pair;
    # input 3 is excitatory on neuron 0 like input 0: it needs another pair
    assert pl.slots[(INPUT, 0)][0] == pl.slots[(INPUT, 2)][0] != pl.slots[(INPUT, 3)][0]
    check_delivery(pl)


def test_sharing_rules():
    # different neurons, or the same neuron with opposite signs: one driver pair
    w = np.array([[3, 0, 0], [0, 3, 0], [-3, 0, 0], [0, 0, 0]])
    w[3, 0] = 2                                  # same neuron, same sign as input 0
    pl = place(MINI, [(INPUT, "h", w)])
    d = {i: pl.slots[(INPUT, i)][0] for i in range(4)}
    assert d[0] == d[1] == d[2] and d[3] != d[0]
    check_delivery(pl)
    # reserve="both": a connection takes both rows, opposite signs no longer share
    pl = place(MINI, [(INPUT, "h", w)], reserve="both")
    d = {i: pl.slots[(INPUT, i)][0] for i in range(4)}
    assert d[0] == d[1] and len({d[0], d[2], d[3]}) == 3
    check_delivery(pl)
    # 64 sources per pair (6-bit addresses): the 65th takes the next pair
    w = np.eye(65, 256, dtype=np.int64)
    w[64, 64] = 0
    w[64, 200] = 1
    pl = place(FULL, [(INPUT, "h", w)])
    assert [pl.slots[(INPUT, i)] for i in (0, 63, 64)] == [(0, 0), (0, 63), (1, 0)]


def test_set_weights_within_the_reservation():
    w = np.array([[5, 0], [-5, 0]])
    pl = place(MINI, [(INPUT, "h", w)], reserve="both", refractory=3)
    assert (pl.image.refractory[pl.neurons["h"]] == 3).all()
    pl.set_weights(0, np.array([[-9, 0], [9, 0]]))     # signs flip: both rows are reserved
    pl.projections[0].weights = np.array([[-9, 0], [9, 0]])
    check_delivery(pl)
    with pytest.raises(PlacementError, match=r"weight 4 at \[0, 1\] needs the excitatory"):
        pl.set_weights(0, np.array([[0, 4], [0, 0]]))  # outside the mask
    pl = place(MINI, [(INPUT, "h", w)])                # reserve="weights": input 0 and 1
    with pytest.raises(PlacementError, match="did not reserve"):
        pl.set_weights(0, np.array([[-5, 0], [5, 0]]))  # share the pair by opposite signs


def test_halves_are_searched():
    # k % 2 puts a and c into half 0 (3 + 6 > 8 columns); a and b share half 0 instead
    pl = place(MINI, [(INPUT, "a", np.ones((2, 3), int)), ("a", "b", np.ones((3, 2), int)),
                      (INPUT, "c", np.ones((2, 6), int))])
    assert pl.halves["c"] != pl.halves["a"] == pl.halves["b"]
    check_delivery(pl)


def test_recurrent_population_delivers_its_weights():
    rng = np.random.default_rng(3)
    w_in = rng.integers(-63, 64, (4, 5))
    w_rec = rng.integers(-63, 64, (5, 5)) * (rng.random((5, 5)) < 0.5)
    w_out = rng.integers(-63, 64, (5, 3))
    pl = place(MINI, [(INPUT, "rec", w_in), ("rec", "rec", w_rec), ("rec", "out", w_out)])
    assert pl.halves == {"rec": 0, "out": 1}
    check_delivery(pl)


# -- end to end on MINI ---------------------------------------------------------------

W_IN = np.array([[0, 63, 0],      # input 0 -> hidden 1
                 [63, 0, 0],      # input 1 -> hidden 0 (shares a driver pair with 0 and 3)
                 [0, 0, 63],      # input 2 -> hidden 2
                 [0, -63, 0]])    # input 3 inhibits hidden 1 (opposite sign: shares too)
W_OUT = np.array([[0, 0], [63, -63], [0, 0]])   # hidden 1 excites out 0, inhibits out 1


@pytest.fixture(scope="module")
def mini():
    chip = Chip.calibrated(MINI, 1)
    pl = place(MINI, [(INPUT, "hidden", W_IN), ("hidden", "out", W_OUT)])
    return chip, pl, chip.configure(pl.image)


def run_both(chip, image, events, n_steps):
    ref = backends.run(chip, image, events, n_steps, backend="reference")
    fast = backends.run(chip, image, events, n_steps, backend="fast")
    assert ref.first_difference(fast) is None, ref.first_difference(fast)
    return ref


def test_mini_placement_shares_pairs(mini):
    _, pl, _ = mini
    assert len({pl.slots[(INPUT, i)][0] for i in (0, 1, 3)}) == 1
    check_delivery(pl)


@pytest.mark.parametrize("inp,target", [(0, 1), (1, 0), (2, 2)])
def test_end_to_end_input_drives_its_neuron(mini, inp, target):
    chip, pl, image = mini
    events = pl.input_events([[(4 + 2 * k, inp) for k in range(16)]])
    obs = run_both(chip, image, events, 60)
    hidden = pl.spikes_of(obs.spikes, "hidden")
    assert len(hidden) >= 2 and set(hidden[:, 3]) == {target}
    recs = pl.decode_records(obs.records)
    hidden_recs = [r for r in recs if r[2] == "hidden"]
    assert [r[3] for r in hidden_recs] == [target] * len(hidden)
    label = pl.neuron_labels["hidden"][target]
    assert set(obs.records[:, 3]) >= {label}
    assert set(obs.records[obs.records[:, 3] == label, 2]) <= set(pl.record_links["hidden"])
    assert obs.driver_unmatched.sum() == 0 and obs.xbar_drops.sum() == 0
    out = pl.neurons["out"]
    if target == 1:   # hidden 1's spikes cross the crossbar into half 1
        v = obs.adc[:, 0, out]
        assert v[:, 0].max() > 120                      # out 0 excited (fires)
        assert v[:, 1].min() < 60                       # out 1 inhibited
        assert ("out", 0) in {(r[2], r[3]) for r in recs}
    else:             # no hidden -> out weight: the outputs stay at rest
        assert obs.adc[:, 0, out].max() <= obs.adc[0, 0, out].max() + 1
        assert not len(pl.spikes_of(obs.spikes, "out"))


def test_end_to_end_inhibition_shares_the_pair(mini):
    chip, pl, image = mini
    alone = pl.input_events([[(4 + 2 * k, 0) for k in range(16)]])
    both = pl.input_events([[(4 + 2 * k, 0) for k in range(16)]
                            + [(5 + 2 * k, 3) for k in range(16)]])
    n_alone = len(pl.spikes_of(run_both(chip, image, alone, 60).spikes, "hidden"))
    obs = run_both(chip, image, both, 60)
    assert n_alone >= 2 and len(pl.spikes_of(obs.spikes, "hidden")) == 0
    v = obs.adc[:, 0, pl.neurons["hidden"]]
    assert v[:, 0].max() <= v[0, 0] + 1 and v[:, 2].max() <= v[0, 2] + 1   # others untouched


def test_end_to_end_recurrent(mini):
    chip, _, _ = mini
    w_in = np.array([[63, 0, 0]])
    w_rec = np.array([[0, 63, 0], [0, 0, 0], [0, 0, 0]])   # r0 -> r1 through the crossbar
    pl = place(MINI, [(INPUT, "r", w_in), ("r", "r", w_rec)])
    image = chip.configure(pl.image)
    obs = run_both(chip, image, pl.input_events([[(4 + 2 * k, 0) for k in range(16)]]), 60)
    s = pl.spikes_of(obs.spikes, "r")
    assert set(s[:, 3]) >= {0}
    v = obs.adc[:, 0, pl.neurons["r"]]
    assert v[:, 1].max() > v[0, 1] + 10             # r1 receives r0's spikes
    assert v[:, 2].max() <= v[0, 2] + 1             # r2 does not


def test_populations_sharing_a_block():
    # 3 + 5 neurons fill the 8 columns of half 0 only when packed: a and b share block 0
    rng = np.random.default_rng(4)
    proj = [(INPUT, "a", rng.integers(-63, 64, (3, 3))), ("a", "b", rng.integers(-63, 64, (3, 5))),
            ("b", "c", rng.integers(-63, 64, (5, 2)))]
    pl = place(MINI, proj, halves={"a": 0, "b": 0, "c": 1})
    np.testing.assert_array_equal(pl.neurons["b"], np.arange(3, 8))
    check_delivery(pl)   # b's routes to half 1 carry a's events too: they add no current
