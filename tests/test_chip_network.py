"""ChipNetwork (spikeloop/nn/chip_network.py): the forward pass measured on the emulated chip.

- what the network returns is what the chip measured (ADC codes normalised,
  spikes binned to the ADC grid), recomputed here independently from the raw
  Observables;
- the chip at its calibrated working point behaves like the ideal model (the
  weight scale 240 and the normalisation agree), and deviates from it by its
  mismatch;
- the gradient is the ideal model's along the measured trajectory;
- training in the loop lowers the loss; the noise is keyed by a sample counter in
  the state dict, so runs are deterministic and resumable;
- the paper's network is placed on merged neurons on FULL; cosim equals fast.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeloop import backends
from spikeloop.base.config import FULL, MINI
from spikeloop.base.protocol import run_bytes_bound
from spikeloop.data import latency_raster, latency_times_us
from spikeloop.model.chip import Chip
from spikeloop.nn import LoopNetwork, SoftwareNetwork
from spikeloop.nn.chip_network import ChipNetwork
from spikeloop.nn.placement import PlacementError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def chip():
    return Chip.calibrated(MINI, 1)


def batch(seed: int, b: int = 12, n_in: int = 5):
    x = torch.rand(b, n_in, generator=torch.Generator().manual_seed(seed))
    times = latency_times_us(x)
    return latency_raster(times, dt_us=1.7, n_steps=20), times


def make(chip, seed=0, **kw):
    return ChipNetwork(chip, 5, 8, 3, generator=torch.Generator().manual_seed(seed), **kw)


def test_forward_returns_the_measurement(chip):
    net = make(chip)
    with torch.no_grad():
        net.hidden_synapse.weight.mul_(4.0)       # make the hidden neurons fire
    raster, times = batch(1)
    out = net(raster, times)
    obs = net.last_observables
    pl = net.placement
    hid, o = pl.neurons["hidden"], pl.neurons["out"]
    base = net.baseline()
    codes = obs.adc[:20].astype(np.float64)
    np.testing.assert_allclose(out.v_hidden.detach().numpy(),
                               (codes[:, :, hid] - base[hid]) / 70.0, rtol=0, atol=1e-6)
    s_out = net.last_stats["output_scale"]
    np.testing.assert_allclose(out.v_out.detach().numpy(),
                               (codes[:, :, o] - base[o]) / 70.0 * 240.0 / s_out,
                               rtol=0, atol=1e-5)
    # spikes: sample k = the ADC sample whose codes are the first taken after the spike
    z = np.zeros((20, 12, 8))
    for s, step, _, n in obs.spikes:
        if n in hid:
            cycle_seen = (step + 1) * MINI.analog_step_cycles   # codes after the step
            k = int(np.ceil((cycle_seen + 1) / 212)) - 1           # sample in cycle 212k+211
            if k < 20:
                z[k, s, list(hid).index(n)] = 1
    assert z.sum() > 5
    np.testing.assert_array_equal(out.z_hidden.detach().numpy(), z)
    assert net.last_stats["hidden_spikes"] == int((obs.spikes[:, 3] < 8).sum())
    assert net.last_stats["cycles_per_sample"] == 530 * 8 + 2
    assert not (obs.spikes[:, 3] >= MINI.columns_per_half).any()   # outputs never fire


@pytest.mark.parametrize("recurrent", [False, True])
def test_forward_without_gradients_is_the_forward_with_them(chip, recurrent):
    """Without gradients the forward leaves out the model pass (it would return
    the measured values themselves): the same outputs, bit for bit, and the same
    next batch (the samples run, which key the noise, count the same)."""
    raster, times = batch(3)

    def net():      # (a recurrent hidden layer of 4 fits mini, with merged neurons)
        return ChipNetwork(chip, 5, 4 if recurrent else 8, 3, recurrent=recurrent,
                           generator=torch.Generator().manual_seed(2))

    a, b = net(), net()
    with torch.no_grad():
        a.hidden_synapse.weight.mul_(4.0)
        b.hidden_synapse.weight.mul_(4.0)
    for _ in range(2):
        with_grad = a(raster, times)
        with torch.no_grad():
            without = b(raster, times)
        assert with_grad.log_probs.requires_grad and not without.log_probs.requires_grad
        for x, y in zip(with_grad, without, strict=True):
            assert x.dtype == y.dtype and torch.equal(x.detach(), y)
    assert with_grad.z_hidden.sum() > 0 and int(a.samples_run) == int(b.samples_run) == 24


def test_chip_tracks_the_ideal_model_at_its_working_point(chip):
    """Same weights: the chip's normalised hidden traces follow the ideal model's
    within the chip's residual mismatch, noise and ADC resolution; an
    uncalibrated chip is visibly further off."""
    raster, times = batch(2, b=24)
    sw = SoftwareNetwork(5, 8, 3, generator=torch.Generator().manual_seed(0))
    net = make(chip)
    net.load_state_dict(sw.state_dict(), strict=False)
    with torch.no_grad():
        ideal = sw(raster).v_hidden
        meas = net(raster, times).v_hidden
    err = (meas - ideal).abs().mean().item()
    scale = ideal.abs().mean().item()
    assert scale > 0.05
    assert err < 0.25 * scale, (err, scale)
    raw = ChipNetwork(Chip(MINI, 1), 5, 8, 3)
    raw.load_state_dict(sw.state_dict(), strict=False)
    with torch.no_grad():
        err_raw = (raw(raster, times).v_hidden - ideal).abs().mean().item()
    assert err_raw > 1.5 * err, (err_raw, err)


def test_gradient_is_the_ideal_model_along_the_measurement(chip):
    net = make(chip, seed=3)
    raster, times = batch(3)
    labels = torch.tensor([0, 1, 2] * 4)
    out = net(raster, times)
    loss = F.nll_loss(out.log_probs, labels) + net.regularization(out)
    loss.backward()
    got = net.hidden_synapse.weight.grad.clone()
    # the same measured tensors through the ideal equations, by hand
    ref = LoopNetwork(5, 8, 3)
    ref.load_state_dict({k: v for k, v in net.state_dict().items()
                         if k in ref.state_dict()})
    hv, hz, ov = out.v_hidden.detach(), out.z_hidden.detach(), out.v_out.detach()
    o2 = ref.model_pass(raster, hidden_v=hv, hidden_z=hz, output_v=ov)
    (F.nll_loss(o2.log_probs, labels) + ref.regularization(o2)).backward()
    torch.testing.assert_close(got, ref.hidden_synapse.weight.grad, rtol=0, atol=0)
    assert got.abs().sum() > 0


def test_training_in_the_loop_lowers_the_loss(chip):
    torch.manual_seed(0)
    net = make(chip, seed=5)
    with torch.no_grad():
        net.hidden_synapse.weight.mul_(3.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    x = torch.rand(24, 5, generator=torch.Generator().manual_seed(7))
    times = latency_times_us(x)
    raster = latency_raster(times, dt_us=1.7, n_steps=20)
    labels = (x[:, 0] > x[:, 1]).long()                      # a learnable rule
    losses = []
    for _ in range(40):
        out = net(raster, times)
        loss = F.nll_loss(out.log_probs, labels)
        opt.zero_grad()
        (loss + net.regularization(out)).backward()
        opt.step()
        net.after_step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert net.last_stats["hidden_spikes"] > 0
    lim = 63 / 240
    assert net.hidden_synapse.weight.abs().max() <= lim


def test_deterministic_and_resumable(chip):
    raster, times = batch(4)
    a, b = make(chip, seed=1, run_seed=9), make(chip, seed=1, run_seed=9)
    oa1, oa2 = a(raster, times), a(raster, times)
    assert int(a.samples_run) == 24
    # the second batch had other noise
    assert not torch.equal(oa1.v_hidden, oa2.v_hidden)
    # a network restored from a's state after one batch continues identically
    b(raster, times)
    c = make(chip, seed=4, run_seed=0)
    c.load_state_dict(b.state_dict())
    assert int(c.run_seed) == 9 and int(c.samples_run) == 12
    torch.testing.assert_close(c(raster, times).v_hidden, oa2.v_hidden, rtol=0, atol=0)


def test_raster_only_inputs_play_at_bin_starts(chip):
    net = make(chip)
    raster = torch.zeros(20, 2, 5)
    raster[3, 0, 1] = 1
    raster[5, 1, 4] = 2
    ev = net.input_events(raster, None)
    t = ev.table
    assert t[:, 1].tolist() == [3 * 212, 5 * 212, 5 * 212]
    assert t[:, 0].tolist() == [0, 1, 1]
    lab = net.placement.input_labels
    assert t[:, 3].tolist() == [lab[1], lab[4], lab[4]]
    with pytest.raises(ValueError, match=r"raster must be \[T, B, 5\]"):
        net(torch.zeros(20, 2, 4))


def test_placement_choices():
    # MINI: 16 signed inputs only fit merged neurons; 5 fit without
    mini = Chip(MINI, 0)
    assert ChipNetwork(mini, 16, 4, 2).merged
    assert not ChipNetwork(mini, 5, 8, 3).merged
    with pytest.raises(PlacementError, match="merged neurons"):
        ChipNetwork(mini, 40, 4, 2)
    with pytest.raises(ValueError, match="'software'.*SoftwareNetwork"):
        ChipNetwork(mini, 5, 8, 3, backend="software")
    # FULL: the paper's 256 -> 246 -> 10 network, on merged neurons
    net = ChipNetwork(Chip(FULL, 0), 256, 246, 10)
    assert net.merged and net.placement.image.neuron_merge.all()


def same_measurements(nets, raster, times, scale: float, shift: float):
    """Run one batch through both ``nets`` (their hidden weights scaled by
    ``scale`` and shifted by ``shift`` first): the chip's Observables and the
    measured traces must be identical.  Returns the first's output and Observables."""
    with torch.no_grad():
        for n in nets:
            n.hidden_synapse.weight.mul_(scale).add_(shift)
        outs = [n(raster, times) for n in nets]
    first, other = (n.last_observables for n in nets)
    assert first.first_difference(other) is None, first.first_difference(other)
    for a, b in zip(outs[0], outs[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    return outs[0], first


@pytest.mark.cosim
def test_cosim_network_equals_fast(chip):
    """`spikeloop replay` in miniature: the same network and batch on the RTL
    co-simulation and on the fast backend give identical measurements."""
    raster, times = batch(6, b=3)
    nets = [make(chip, seed=2, backend=b, run_seed=4) for b in ("fast", "cosim")]
    out, _ = same_measurements(nets, raster, times, 3.0, 0.1)
    assert out.z_hidden.sum() > 0


def test_inference_spacing(chip):
    """The paper's inference mode: one sample per 11.8 µs of chip time; inputs
    after the window are counted, not played."""
    net = make(chip)
    net.sample_spacing_us = 11.8
    raster, times = batch(8)
    T = 6
    out = net(raster[:T], times)
    st = net.last_stats
    assert st["cycles_per_sample"] == 184 * 8 + 2 <= 11.8 * 125
    assert st["emulated_us_per_sample"] == pytest.approx(11.792)
    late = int((torch.isfinite(times) & (times * 125).round().ge(184 * 8)).sum())
    assert late > 0 and st["inputs_after_window"] == late
    assert out.v_hidden.shape == (T, 12, 8)
    net.sample_spacing_us = 5.0
    with pytest.raises(ValueError, match="sample_spacing_us = 5.0: 77 analog steps fit, 6 ADC "
                                         "samples of 212 cycles need 159"):
        net(raster[:T], times)


@pytest.mark.cuda
def test_paper_network_on_cuda_equals_cpu():
    """The paper's MNIST network on FULL (merged neurons), its chip run on the GPU:
    the same Observables and measurements as on the CPU."""
    full = Chip.calibrated(FULL, 0)
    x = torch.rand(6, 256, generator=torch.Generator().manual_seed(3))
    times = latency_times_us(x)
    raster = latency_raster(times, dt_us=1.7, n_steps=20)
    nets = [ChipNetwork(full, 256, 246, 10, generator=torch.Generator().manual_seed(1),
                        run_seed=2, **kw) for kw in ({}, {"device": "cuda"})]
    assert nets[0].merged
    # busy: the hidden neurons fire many times
    _, cpu = same_measurements(nets, raster, times, 3.0, 0.02)
    assert len(cpu.spikes) > 1000


def test_more_bins_than_the_adc_buffer_stream_through_the_ring(chip):
    """80 bins on mini (a buffer of 64): refused without the ADC ring; on the
    ring variant every membrane sample is streamed by the PPU, and the network
    measures exactly what a chip whose buffer holds all 80 samples measures."""
    x = torch.rand(16, 5, generator=torch.Generator().manual_seed(3))
    times = latency_times_us(x)
    raster = latency_raster(times, dt_us=1.7, n_steps=80)
    with pytest.raises(ValueError, match="adc_ring = true"):
        make(chip)(raster, times)
    outs = {}
    for cfg in (MINI.replace(name="mini-ring", adc_ring=True, ppu_out_vectors=128),
                MINI.replace(name="mini-deep", adc_buffer_depth=128)):
        net = make(Chip(cfg, 1))         # (uncalibrated: the comparison needs no working point)
        with torch.no_grad():
            net.hidden_synapse.weight.mul_(8.0)
        outs[cfg.name] = (net(raster, times), net.last_stats)
    (ring, ring_stats), (deep, deep_stats) = outs["mini-ring"], outs["mini-deep"]
    assert ring_stats["hidden_spikes"] == deep_stats["hidden_spikes"] > 5
    for a, b in ((ring.v_hidden, deep.v_hidden), (ring.v_out, deep.v_out),
                 (ring.z_hidden, deep.z_hidden)):
        assert a.shape[0] == 80
        assert torch.equal(a, b)


def test_a_batch_beyond_the_run_limit_runs_in_parts_with_the_same_results(chip, monkeypatch):
    """A batch whose worst-case results exceed $SPIKELOOP_MAX_RUN_BYTES runs as
    consecutive runs of fewer samples: the same measurement as one run."""
    raster, times = batch(4)
    whole = make(chip)
    with torch.no_grad():
        whole.hidden_synapse.weight.mul_(4.0)
    out_whole = whole(raster, times)
    n_steps = whole.last_observables.n_steps
    monkeypatch.setenv("SPIKELOOP_MAX_RUN_BYTES", str(5 * run_bytes_bound(MINI, 1, n_steps)))
    parts = make(chip)
    with torch.no_grad():
        parts.hidden_synapse.weight.mul_(4.0)
    parts._baseline = whole.baseline()
    calls = []
    real = backends.run
    monkeypatch.setattr(backends, "run", lambda *a, **k: calls.append(a[2].batch) or real(*a, **k))
    out_parts = parts(raster, times)
    assert calls == [5, 5, 2]
    assert whole.last_observables.first_difference(parts.last_observables) is None
    assert len(whole.last_observables.spikes) > 5
    for a, b in zip(out_whole, out_parts, strict=True):
        assert torch.equal(a, b)
