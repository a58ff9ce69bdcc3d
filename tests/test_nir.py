"""NIR import and export (spikeloop.nir, spikeloop nir import/export).

- round trip: the paper's network exported and imported again is the same placed
  image and gives the same Observables on the chip (and the same ideal model);
- a general graph (two hidden layers, a recurrent one, a skip connection) maps, runs
  in the loop on the fast backend and trains;
- bad graphs and files are refused in one line naming the node or the file, exit 2;
- snnTorch as the peer: its exporter's graph runs in spikeloop exactly as in
  snnTorch; spikeloop's graph read by snnTorch's importer predicts as spikeloop's
  ideal model, up to the reset rule's difference (docs/nir.md).
"""
from __future__ import annotations

import json
import math

import h5py
import nir
import numpy as np
import pytest
import torch

from spikeloop import MINI
from spikeloop.base.image import ConfigImage
from spikeloop.cli import main
from spikeloop.model.chip import Chip
from spikeloop.nir import GraphChipNetwork, NirError, from_nir, read_graph, to_nir
from spikeloop.nn import SoftwareNetwork
from spikeloop.nn.chip_network import ChipNetwork
from spikeloop.nn.placement import PlacementError
from spikeloop.training.train import TrainSettings, load_network, run

A = math.exp(-1.7 / 6.0)          # the paper's decay per step


@pytest.fixture(scope="module")
def chip():
    # nominal settings: the mapping and the emulation are the same code either way
    return Chip(MINI, 1)


def raster(seed: int, b: int = 6, n_in: int = 5, t: int = 20, p: float = 0.25):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n_in, generator=g) < p).float()


def paper_net(seed=0, n_in=5, n_hidden=8, n_out=3, recurrent=False):
    net = SoftwareNetwork(n_in, n_hidden, n_out, recurrent=recurrent,
                          generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        net.hidden_synapse.weight.mul_(6).clamp_(-63 / 240, 63 / 240)
    return net


def test_round_trip_same_image_observables_and_model(chip, tmp_path):
    sw = paper_net(n_hidden=4, recurrent=True)      # 5 + 4 sources: merged neurons on mini
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(sw))
    graph = read_graph(path)
    assert float(graph.metadata["dt"]) == 1e-4
    x = raster(1)
    ideal, back = sw(x), from_nir(graph)(x)
    assert float(ideal.z_hidden.detach().sum()) > 0
    for a, b in zip(ideal, back, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    orig = ChipNetwork(chip, 5, 4, 3, recurrent=True, backend="fast")
    orig.load_state_dict(sw.state_dict(), strict=False)
    imp = from_nir(graph, chip)
    out_a, out_b = orig(x), imp(x)
    ia, ib = orig.placement.image, imp.placement.image
    for f in ia.__dataclass_fields__:
        if f != "cfg":
            assert np.array_equal(getattr(ia, f), getattr(ib, f)), f
    assert orig.merged and imp.merged
    assert orig.last_observables.first_difference(imp.last_observables) is None
    for a, b in zip(out_a, out_b, strict=True):
        assert torch.equal(a, b)
    # the quantisation report: the hidden weights at the paper's scale 240
    q = imp.report["quantisation"][0]
    assert q["scale"] == 240 and q["max_error"] <= 0.5 / 240 + 1e-9


@pytest.mark.parametrize("surrogate_at", ["measured", "model", "model-pre-reset"])
def test_graph_model_pass_with_measured_traces_gives_the_paper_networks_gradient(surrogate_at):
    # the imported graph's gradient path along measured traces is the paper
    # network's, for every place the surrogate derivative may be taken
    sw = paper_net(n_hidden=4, recurrent=True)
    graph = from_nir(to_nir(sw))
    x = raster(2)
    ideal = sw(x)
    g = torch.Generator().manual_seed(8)
    hv = ideal.v_hidden.detach() + 0.3 * torch.randn(ideal.v_hidden.shape, generator=g)
    hz = (hv >= 1.0).to(hv.dtype)
    ov = ideal.v_out.detach() + 0.05 * torch.randn(ideal.v_out.shape, generator=g)
    assert hz.sum() > 0
    grads = []
    for net in (sw, graph):
        net.surrogate_at = surrogate_at
        net.zero_grad()
        if net is sw:
            out = sw.model_pass(x, hidden_v=hv, hidden_z=hz, output_v=ov)
        else:
            names = [p.name for p in graph.spec.populations]
            out = graph.model_pass(x, {names[0]: (hv, hz), names[1]: (ov, None)})
        (out.log_probs[:, 0].sum() + out.z_hidden.sum()).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a.reshape(-1), b.reshape(-1), rtol=1e-4, atol=1e-6)


def general_graph():
    """input -> h1 -> h2 (recurrent) -> out, and a skip input -> out; h1 with other
    time constants, a reset below the leak, and an identity edge h1 -> h2 beside a
    Linear one (added up)."""
    rng = np.random.default_rng(0)
    dt = 1e-4

    def cuba(n, tau_syn, tau_mem, **kw):
        return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                           r=np.full(n, tau_mem / dt), v_leak=np.zeros(n),
                           v_threshold=np.ones(n), w_in=np.full(n, tau_syn / dt), **kw)

    nodes = {
        "in": nir.Input(input_type=np.array([5])),
        "w1": nir.Linear(weight=rng.normal(0.08, 0.05, (4, 5))),
        "h1": cuba(4, 3e-4, 5e-4, v_reset=np.full(4, -0.2)),
        "w2": nir.Affine(weight=rng.normal(0.05, 0.05, (4, 4)), bias=np.zeros(4)),
        "h2": cuba(4, dt / (1 - A), dt / (1 - A)),
        "rec": nir.Linear(weight=rng.normal(0, 0.05, (4, 4))),
        "flat": nir.Delay(delay=np.zeros(5)),          # zero delays: passes the input on
        "skip": nir.Linear(weight=rng.normal(0, 0.05, (3, 5))),
        "wo": nir.Linear(weight=rng.normal(0, 0.05, (3, 4))),
        "out": nir.CubaLI(tau_syn=np.full(3, dt / (1 - A)), tau_mem=np.full(3, dt / (1 - A)),
                          r=np.full(3, 1 / (1 - A)), v_leak=np.zeros(3),
                          w_in=np.full(3, 1 / (1 - A))),
        "o": nir.Output(output_type=np.array([3])),
    }
    edges = [("in", "w1"), ("w1", "h1"), ("h1", "w2"), ("w2", "h2"), ("h1", "h2"),
             ("h2", "rec"), ("rec", "h2"), ("in", "flat"), ("flat", "skip"), ("skip", "out"),
             ("h2", "wo"), ("wo", "out"), ("out", "o")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_general_graph_maps_runs_in_the_loop_and_trains(chip):
    net = from_nir(general_graph(), chip)
    spec = net.spec
    assert [p.name for p in spec.populations] == ["h1", "out", "h2"]     # breadth first
    assert net.placement.merged == {"out"}       # 5 inputs + 4 of h2: more than a half's 8
    links = {(lk.pre, lk.post): lk for lk in spec.links}
    assert set(links) == {("input", "h1"), ("h1", "h2"), ("h2", "h2"), ("input", "out"),
                          ("h2", "out")}
    assert spec.is_recurrent(links[("h2", "h2")]) and not spec.is_recurrent(links[("h1", "h2")])
    assert set(links[("h1", "h2")].node.split("+")) == {"w2", "h1->h2"}   # added up
    h1 = spec.population("h1")
    np.testing.assert_allclose(h1.alpha, 1 - 1 / 3) and np.testing.assert_allclose(h1.reset, -0.2)
    # h1's other time constants moved its settings away from the calibrated ones
    n = net.placement.neurons["h1"]
    assert not np.array_equal(net.placement.image.analog_settings[n], chip.settings[n])
    x = raster(2, b=4)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    y = torch.tensor([0, 1, 2, 0])
    for _ in range(3):
        out = net(x)
        loss = torch.nn.functional.nll_loss(out.log_probs, y) + net.regularization(out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        net.after_step()
        losses.append(float(loss.detach()))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.last_stats["samples"] == 4 and out.z_hidden.shape == (20, 4, 8)
    assert losses[-1] < losses[0]
    # the ideal model of the same graph runs too and agrees in shape
    assert from_nir(general_graph())(x).v_out.shape == (20, 4, 3)


def _write(path, nodes, edges):
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return path


def _lif(n):
    return nir.CubaLIF(tau_syn=np.full(n, 1e-3), tau_mem=np.full(n, 1e-3), r=np.full(n, 10.0),
                       v_leak=np.zeros(n), v_threshold=np.ones(n))


@pytest.mark.parametrize("case, message", [
    ("unknown", "node 'c': type Conv1d is not supported"),
    ("shape", "node 'w': weight [4, 3] (out, in), but 'input' has 5"),
    ("no_edge", "node 'w' (Linear) has no output edge to a neuron node"),
    ("bias", "node 'w' (Affine): a nonzero bias"),
    ("delay", "node 'd' (Delay): delays of"),
    ("dangling", "edge ('w', 'x'): node 'x' does not exist"),
])
def test_bad_graphs_are_refused_naming_the_node(tmp_path, case, message, capsys):
    n = {"input": nir.Input(input_type=np.array([5])), "h": _lif(4),
         "w": nir.Linear(weight=np.zeros((4, 5))), "out": nir.CubaLI(
             tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 1e-3), r=np.full(2, 10.0),
             v_leak=np.zeros(2)), "wo": nir.Linear(weight=np.zeros((2, 4))),
         "output": nir.Output(output_type=np.array([2]))}
    e = [("input", "w"), ("w", "h"), ("h", "wo"), ("wo", "out"), ("out", "output")]
    if case == "unknown":
        n["c"] = nir.Conv1d(input_shape=5, weight=np.zeros((1, 1, 1)), stride=1, padding=0,
                            dilation=1, groups=1, bias=np.zeros(1))
        e.append(("input", "c"))
    elif case == "shape":
        n["w"] = nir.Linear(weight=np.zeros((4, 3)))
    elif case == "no_edge":
        e.remove(("w", "h"))
    elif case == "bias":
        n["w"] = nir.Affine(weight=np.zeros((4, 5)), bias=np.ones(4))
    elif case == "delay":
        n["d"] = nir.Delay(delay=np.full(5, 1e-3))
        e = [("input", "d"), ("d", "w")] + e[1:]
    elif case == "dangling":
        e.append(("w", "x"))
    path = _write(tmp_path / "bad.nir", n, e)
    with pytest.raises(NirError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        from_nir(read_graph(path))
    assert main(["nir", "import", str(path), "--preset", "mini", "--chip-seed", "1",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err


def test_files_that_are_no_nir_graph_are_refused(tmp_path, capsys):
    h5 = tmp_path / "data.h5"
    with h5py.File(h5, "w") as f:
        f["x"] = np.arange(3)
    txt = tmp_path / "notes.nir"
    txt.write_text("hello")
    for path, what in ((h5, "an HDF5 file but not a NIR graph"), (txt, "not an HDF5 file"),
                       (tmp_path / "missing.nir", "no such file")):
        with pytest.raises(NirError, match=what):
            read_graph(path)
        assert main(["nir", "import", str(path), "--preset", "mini", "--chip-seed", "1",
                     "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and what in err


def test_too_large_a_population_names_it(chip):
    dt = 1e-4
    n = MINI.columns_per_half + 1
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])),
                            "w": nir.Linear(weight=np.zeros((n, 2))), "big": _lif(n),
                            "wo": nir.Linear(weight=np.zeros((2, n))),
                            "out": nir.CubaLI(tau_syn=np.full(2, dt * 4), tau_mem=np.full(
                                2, dt * 4), r=np.full(2, 4.0), v_leak=np.zeros(2)),
                            "output": nir.Output(output_type=np.array([2]))},
                     edges=[("input", "w"), ("w", "big"), ("big", "wo"), ("wo", "out"),
                            ("out", "output")])
    with pytest.raises(PlacementError, match="big: 9 neurons, a half has 8 columns"):
        from_nir(g, chip)


def test_cli_import_export_and_train_init(chip, tmp_path, capsys):
    sw = paper_net(seed=3)
    graph = tmp_path / "net.nir"
    nir.write(graph, to_nir(sw))
    chip_file = tmp_path / "chip.npz"
    chip.save(chip_file)
    out = tmp_path / "imp"
    args = ["nir", "import", str(graph), "--preset", "mini", "--chip-seed", "1", "--chip",
            str(chip_file), "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "quantisation input -> hidden: scale 240" in text
    assert main(args) == 2                              # never replaces a result
    assert "already holds" in capsys.readouterr().err
    net, _ = load_network(out / "network.pt", chip=Chip.load(out / "chip.npz"))
    assert isinstance(net, GraphChipNetwork)
    net.write_weights()
    saved = ConfigImage.load(out / "image.npz", MINI)
    assert np.array_equal(saved.synapse_weight, net.placement.image.synapse_weight)
    assert main(["nir", "export", str(out), "--out", str(tmp_path / "back.nir")]) == 0
    back = from_nir(read_graph(tmp_path / "back.nir"))
    x = raster(4)
    torch.testing.assert_close(back(x).v_out, sw(x).v_out, rtol=0, atol=1e-5)
    assert main(["nir", "export", str(out), "--out", str(tmp_path / "back.nir")]) == 2


def test_train_init_from_a_nir_graph(tmp_path):
    graph = tmp_path / "net.nir"
    nir.write(graph, to_nir(paper_net(n_hidden=6)))
    res = run(TrainSettings(task="yinyang", out=str(tmp_path / "run"), init=str(graph),
                            epochs=1, train_samples=60, test_samples=30, batch_size=30,
                            progress=False))
    assert res["network"]["n_hidden"] == 6 and res["epochs_done"] == 1


def test_dropout_on_a_general_graph_is_refused_in_one_line(tmp_path, capsys):
    """Hidden dropout acts on the paper network's hidden-to-output weights; a
    general graph has none, so the run is refused before it starts (exit 2)."""
    graph = tmp_path / "general.nir"
    nir.write(graph, general_graph())
    args = ["train", "yinyang", "--init", str(graph), "--epochs", "1", "--train-samples",
            "20", "--test-samples", "10", "--no-progress"]
    assert main(args + ["--dropout", "0.4", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--dropout 0.4" in err and "general graph" in err and len(err.splitlines()) == 1
    assert main(args + ["--out", str(tmp_path / "b")]) == 0           # without: it trains


# -- snnTorch, the peer ----------------------------------------------------------------

def test_snntorch_graph_runs_in_spikeloop_as_in_snntorch(chip):
    peers = pytest.importorskip("spikeloop.nir.peers")
    pytest.importorskip("snntorch")
    net = peers.snntorch_network(5, 8, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net[0].weight.mul_(6)
    graph = peers.export_snntorch(net, 5)
    x = raster(5, b=16)
    with torch.no_grad():
        v_snn, z_snn = peers.run_snntorch(net, x)
    out = from_nir(graph)(x)
    assert float(z_snn.sum()) > 10
    assert torch.equal(out.z_hidden, z_snn)
    torch.testing.assert_close(out.v_out, v_snn, rtol=0, atol=1e-5)
    deployed = from_nir(graph, chip)                      # deployed as is on the chip
    assert deployed(x).log_probs.shape == (16, 3)


def test_spikeloop_graph_read_by_snntorch_predicts_alike():
    peers = pytest.importorskip("spikeloop.nir.peers")
    pytest.importorskip("snntorch")
    sw = paper_net(seed=1)
    x = raster(6, b=64)
    module = peers.import_snntorch(to_nir(sw, readout="CubaLIF"))
    v_snn = peers.run_imported(module, x, "out")
    out = sw(x)
    # identical until a hidden neuron spikes (reset to zero at once vs the paper's
    # subtraction one step later); the predictions agree within the stated tolerance
    first = int(out.z_hidden.sum(dim=(1, 2)).nonzero()[0])
    torch.testing.assert_close(v_snn[:first + 1], out.v_out[:first + 1].detach(),
                               rtol=0, atol=1e-5)
    agree = np.mean(peers.predictions(v_snn) == peers.predictions(out.v_out.detach()))
    assert agree >= 0.9


@pytest.mark.slow
def test_snntorch_mnist_on_the_full_chip_and_back(tmp_path, capsys):
    """The paper's MNIST network trained in snnTorch, exported by snnTorch, deployed
    on FULL as is, then in the loop; and the reverse (`spikeloop nir interop`)."""
    pytest.importorskip("snntorch")
    assert main(["nir", "interop", "--out", str(tmp_path), "--train-samples", "2000",
                 "--test-samples", "500", "--snntorch-epochs", "3", "--loop-epochs", "1"]) == 0
    r = json.loads((tmp_path / "interop.json").read_text())
    assert r["imported_ideal_agreement_with_snntorch"] >= 0.998     # the same model
    assert r["snntorch_test_accuracy"] > 0.8
    assert r["deployed_as_is_test_accuracy"] > 0.5                  # chance: 0.1
    assert r["after_loop_test_accuracy"] >= r["own_loop_test_accuracy"] - 0.03
    assert r["reverse_prediction_agreement"] >= 0.9                 # the reset rule
