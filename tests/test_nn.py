"""Functional core and thin modules of the training front end (spikeloop.nn)."""
import math

import numpy as np
import pytest
import torch

from spikeloop.nn import (
    LI,
    LIF,
    LIFParameters,
    SoftwareNetwork,
    Synapse,
    inject,
    li_sequence,
    lif_sequence,
    max_over_time_log_softmax,
    spike_count_regularizer,
    superspike,
    weight_regularizer,
)

pytestmark = pytest.mark.unit

P = LIFParameters()


def test_parameters_defaults():
    assert P.dt_us == 1.7 and P.tau_syn_us == 6.0 and P.tau_mem_us == 6.0
    assert P.a == pytest.approx(math.exp(-1.7 / 6.0))
    assert P.b == pytest.approx(math.exp(-1.7 / 6.0))
    with pytest.raises(ValueError):
        LIFParameters(dt_us=0.0)


# -------------------------------------------------------------- surrogate
def test_superspike_forward_is_heaviside_at_threshold():
    x = torch.tensor([-1.0, -1e-6, 0.0, 1e-6, 2.0], dtype=torch.float64)
    assert superspike(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("beta", [50.0, 5.0])
def test_superspike_backward_matches_formula(beta):
    x = torch.linspace(-2, 2, 101, dtype=torch.float64, requires_grad=True)
    g = torch.randn(101, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    superspike(x, beta).backward(g)
    expected = g / (beta * x.detach().abs() + 1.0) ** 2
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-15)


def test_superspike_surrogate_is_derivative_of_fast_sigmoid():
    # The surrogate is the exact derivative of x / (beta |x| + 1): compare the
    # backward pass against finite differences of that function (away from 0).
    beta = 50.0
    x = torch.cat([torch.linspace(-1, -0.01, 20), torch.linspace(0.01, 1, 20)]).double()
    x.requires_grad_(True)
    superspike(x, beta).sum().backward()
    eps = 1e-7
    xd = x.detach()

    def fast_sigmoid(u):
        return u / (beta * u.abs() + 1.0)

    numeric = (fast_sigmoid(xd + eps) - fast_sigmoid(xd - eps)) / (2 * eps)
    torch.testing.assert_close(x.grad, numeric, rtol=1e-5, atol=1e-9)


# -------------------------------------------------------------- inject
def test_inject_forward_measured_backward_identity_to_model():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    measured = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    model = 2.0 * w
    y = inject(measured, model)
    assert torch.equal(y, measured.detach())
    (c * y**2).sum().backward()
    # dL/dy evaluated at the measured value, passed unchanged to the model value
    torch.testing.assert_close(w.grad, 2.0 * (2.0 * c * measured.detach()))
    assert measured.grad is None


def test_inject_shape_mismatch():
    with pytest.raises(ValueError):
        inject(torch.zeros(3), torch.zeros(4, requires_grad=True))


# -------------------------------------------------------------- dynamics
def _input(T=20, B=3, N=5, seed=2, scale=0.6):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N, generator=gen, dtype=torch.float64) * scale)


def test_lif_sequence_matches_hand_rolled_loop():
    x = _input()
    z, v = lif_sequence(x, P)
    a, b = math.exp(-1.7 / 6), math.exp(-1.7 / 6)
    i_ = torch.zeros_like(x[0])
    v_ = torch.zeros_like(x[0])
    z_ = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        i_ = a * i_ + x[t]
        v_ = b * v_ + i_ - z_          # reset: subtract 1 on the step after the spike
        z_ = (v_ >= 1.0).double()
        torch.testing.assert_close(v[t], v_, rtol=0, atol=1e-12)
        assert torch.equal(z[t], z_)
    assert 0 < z.sum() < z.numel()      # the test really exercises spikes and resets


def test_li_sequence_matches_hand_rolled_loop():
    x = _input(seed=3) - 0.3
    v = li_sequence(x, P)
    i_ = torch.zeros_like(x[0])
    v_ = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        i_ = P.a * i_ + x[t]
        v_ = P.b * v_ + i_
        torch.testing.assert_close(v[t], v_, rtol=0, atol=1e-12)


def _lif_grads(x, w, **measured):
    z, v = lif_sequence(x @ w, P, **measured)
    loss = (v**2).sum() + (z * torch.arange(z.shape[0], dtype=z.dtype)[:, None, None]).sum()
    (gw,) = torch.autograd.grad(loss, w)
    return z, v, gw


def test_injecting_own_traces_leaves_forward_and_gradients_unchanged():
    x = _input(N=4, scale=1.0)
    w = torch.rand(4, 6, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(4), requires_grad=True)
    z, v, g = _lif_grads(x, w)
    assert z.sum() > 0
    zi, vi, gi = _lif_grads(x, w, measured_v=v.detach(), measured_z=z.detach())
    assert torch.equal(zi, z)
    torch.testing.assert_close(vi, v, rtol=0, atol=1e-12)
    torch.testing.assert_close(gi, g, rtol=1e-10, atol=1e-12)
    # leaky integrator too
    vo = li_sequence(x @ w, P)
    (go,) = torch.autograd.grad(vo.amax(0).sum(), w)
    voi = li_sequence(x @ w, P, measured_v=vo.detach())
    (goi,) = torch.autograd.grad(voi.amax(0).sum(), w)
    torch.testing.assert_close(goi, go, rtol=1e-10, atol=1e-12)


def _adjoint_reference(x, mv, at=None):
    """Hand-written BPTT of ``sum v^2 + sum_t t * z[t]`` through the ideal LIF
    equations evaluated along the trajectory ``mv`` (the values the forward pass
    returned): V_model[t] = b V[t-1] + I[t] - z[t-1], z[t] = H(V[t] - 1) with
    surrogate s(at[t] - 1) (``at`` default ``mv``).  Returns dL/dx ``[T, B, N]``."""
    T = x.shape[0]
    s = 1.0 / (P.beta * ((mv if at is None else at) - 1.0).abs() + 1.0) ** 2
    g_v_next = torch.zeros_like(x[0])
    g_i_next = torch.zeros_like(x[0])
    g_x = torch.zeros_like(x)
    for t in reversed(range(T)):
        g_z = t - g_v_next                      # direct term, and the reset of step t+1
        g_v = 2 * mv[t] + P.b * g_v_next + s[t] * g_z
        g_i = g_v + P.a * g_i_next
        g_x[t] = g_i
        g_v_next, g_i_next = g_v, g_i
    return g_x


def _lif_grad_x(x, **measured):
    x = x.clone().requires_grad_(True)
    z, v = lif_sequence(x, P, **measured)
    loss = (v**2).sum() + (z * torch.arange(z.shape[0], dtype=z.dtype)[:, None, None]).sum()
    (g,) = torch.autograd.grad(loss, x)
    return z, v, g


def test_injection_gradient_is_bptt_along_measured_trajectory():
    x = _input(N=4, scale=1.0)
    z, v, g = _lif_grad_x(x)
    torch.testing.assert_close(g, _adjoint_reference(x, v.detach()), rtol=1e-10, atol=1e-10)
    gen = torch.Generator().manual_seed(6)
    mv = v.detach() + 0.3 * torch.randn(v.shape, dtype=v.dtype, generator=gen)
    mz = (mv >= 1.0).double()
    zi, vi, gi = _lif_grad_x(x, measured_v=mv, measured_z=mz)
    assert torch.equal(vi, mv) and torch.equal(zi, mz)
    assert not torch.allclose(gi, g)
    torch.testing.assert_close(gi, _adjoint_reference(x, mv), rtol=1e-10, atol=1e-10)
    # the next step really starts from the measured state: with measured
    # membrane only, spikes (and so resets) follow the measured membrane
    zv, _, _ = _lif_grad_x(x, measured_v=mv)
    assert torch.equal(zv, mz)


def test_surrogate_at_the_model_membrane():
    # surrogate_at="model": the forward pass is the measured one all the same;
    # the surrogate derivative is taken at V_model[t] = b V_meas[t-1] + I[t] -
    # z_meas[t-1] (the model's membrane from the measured previous state), not
    # at the measured membrane, which after a spike shows the reset
    x = _input(N=4, scale=1.0)
    _, v, g = _lif_grad_x(x)
    gen = torch.Generator().manual_seed(7)
    mv = v.detach() + 0.3 * torch.randn(v.shape, dtype=v.dtype, generator=gen)
    mz = (mv >= 1.0).double()
    i = prev_v = prev_z = torch.zeros_like(x[0])
    vm = []
    for t in range(x.shape[0]):
        i = P.a * i + x[t]
        vm.append(P.b * prev_v + i - prev_z)
        prev_v, prev_z = mv[t], mz[t]
    vm = torch.stack(vm)
    for measured in ({"measured_v": mv, "measured_z": mz}, {"measured_v": mv}):
        zi, vi, gi = _lif_grad_x(x, surrogate_at="model", **measured)
        assert torch.equal(vi, mv) and torch.equal(zi, mz)
        torch.testing.assert_close(gi, _adjoint_reference(x, mv, at=vm), rtol=1e-10, atol=1e-10)
        assert not torch.allclose(gi, _adjoint_reference(x, mv), rtol=1e-6, atol=1e-8)
    # model-pre-reset: the same, from the previous membrane with its reset undone,
    # V_model[t] = b (V_meas[t-1] + z_meas[t-1]) + I[t] - z_meas[t-1]
    i = prev_v = prev_z = torch.zeros_like(x[0])
    vp = []
    for t in range(x.shape[0]):
        i = P.a * i + x[t]
        vp.append(P.b * (prev_v + prev_z) + i - prev_z)
        prev_v, prev_z = mv[t], mz[t]
    vp = torch.stack(vp)
    assert (vp > vm).any()          # the reset of some step is undone
    zi, vi, gi = _lif_grad_x(x, surrogate_at="model-pre-reset", measured_v=mv, measured_z=mz)
    assert torch.equal(vi, mv) and torch.equal(zi, mz)
    torch.testing.assert_close(gi, _adjoint_reference(x, mv, at=vp), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(gi, _adjoint_reference(x, mv, at=vm), rtol=1e-6, atol=1e-8)
    # without measured traces the choice changes nothing
    for at in ("model", "model-pre-reset"):
        _, _, g_model = _lif_grad_x(x, surrogate_at=at)
        assert torch.equal(g_model, g)
    with pytest.raises(ValueError, match="surrogate_at"):
        _lif_grad_x(x, surrogate_at="chip")


def test_li_injection_gradient_independent_of_trajectory():
    # The leaky integrator is linear: its BPTT gradient does not depend on the
    # trajectory, so injecting any measured trace leaves it unchanged.
    x = _input(N=4).requires_grad_(True)
    vo = li_sequence(x, P)
    (go,) = torch.autograd.grad((vo * torch.arange(20.0, dtype=vo.dtype)[:, None, None]).sum(), x)
    voi = li_sequence(x, P, measured_v=vo.detach() + 0.5)
    assert torch.equal(voi, vo.detach() + 0.5)
    (goi,) = torch.autograd.grad((voi * torch.arange(20.0, dtype=vo.dtype)[:, None, None]).sum(), x)
    torch.testing.assert_close(goi, go, rtol=1e-10, atol=1e-12)


def test_sequence_shape_checks():
    x = torch.zeros(5, 2, 3)
    with pytest.raises(ValueError):
        lif_sequence(torch.zeros(2, 3), P)
    with pytest.raises(ValueError):
        lif_sequence(x, P, measured_v=torch.zeros(4, 2, 3))
    with pytest.raises(ValueError):
        li_sequence(x, P, measured_v=torch.zeros(5, 2, 4))
    with pytest.raises(ValueError):
        LIF(4)(x)
    with pytest.raises(ValueError):
        LI(4)(x)


# -------------------------------------------------------------- readout, regularisers
def test_readout_and_regularisers():
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(20, 4, 10, generator=gen)
    lp = max_over_time_log_softmax(v)
    torch.testing.assert_close(lp, torch.log_softmax(10 * v.max(0).values, -1))
    z = (torch.rand(20, 4, 6, generator=gen) > 0.8).float()
    counts = z.sum(0)
    torch.testing.assert_close(spike_count_regularizer(z), 5e-4 * (counts**2).mean())
    w = torch.randn(6, 5, generator=gen)
    torch.testing.assert_close(weight_regularizer(w), 0.1 * (w**2).mean())


# -------------------------------------------------------------- modules
def test_synapse_init_and_seeding():
    s1 = Synapse(256, 246, generator=torch.Generator().manual_seed(0))
    s2 = Synapse(256, 246, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1.weight, s2.weight)
    std = 0.7 * (1 - P.b) / 16.0
    assert s1.weight.shape == (246, 256)
    assert s1.weight.mean().item() == pytest.approx(1e-3, abs=4 * std / math.sqrt(246 * 256))
    assert s1.weight.std().item() == pytest.approx(std, rel=0.02)
    so = Synapse(246, 10, mean=0.0, generator=torch.Generator().manual_seed(0))
    assert abs(so.weight.mean().item()) < 4 * 0.7 * (1 - P.b) / math.sqrt(246) / math.sqrt(2460)
    x = torch.rand(3, 2, 256)
    torch.testing.assert_close(s1(x), x @ s1.weight.T)


def _two_class_latency_data(n=200, T=20, n_in=256, seed=0):
    """Synthetic latency code: each input spikes at most once; each class has
    its own 48 informative inputs that fire early, the rest fire at random times
    or (like dark pixels) never."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    t = torch.randint(0, T, (n, n_in), generator=gen)
    silent = torch.rand(n, n_in, generator=gen) < 0.5
    early = torch.randint(0, 4, (n, n_in), generator=gen)
    informative = torch.zeros(n, n_in, dtype=torch.bool)
    informative[y == 0, :48] = True
    informative[y == 1, 48:96] = True
    t = torch.where(informative, early, t)
    fire = informative | ~silent
    x = torch.zeros(T, n, n_in)
    b, i = torch.nonzero(fire, as_tuple=True)
    x[t[b, i], b, i] = 1.0
    return x, y


def test_software_network_trains_on_separable_latency_data():
    torch.manual_seed(0)
    x, y = _two_class_latency_data()
    assert x.sum(0).max() <= 1.0
    net = SoftwareNetwork(generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=1.5e-3)
    losses = []
    for _ in range(12):
        out = net(x)
        assert out.log_probs.shape == (200, 10) and out.v_out.shape == (20, 200, 10)
        assert out.z_hidden.shape == (20, 200, 246)
        loss = torch.nn.functional.nll_loss(out.log_probs, y) + net.regularization(out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = net(x)
    acc = (out.log_probs.argmax(1) == y).float().mean().item()
    assert losses[-1] < 0.5 * losses[0]
    assert acc > 0.9


def test_ideal_back_to_back_carries_the_synaptic_currents_over():
    """Back to back in the ideal equations: one image per run is the plain forward
    pass; clearing the currents at each boundary makes every image independent;
    keeping them (the chip's neuron reset) lets a strong image's late input decide
    the next image's class."""
    torch.manual_seed(0)
    net = SoftwareNetwork(6, 12, 3)
    raster = (torch.rand(6, 9, 6) < 0.4).float()
    with torch.no_grad():
        net.hidden_synapse.weight.mul_(40)
        net.output_synapse.weight.mul_(40)
        alone = net(raster).v_out.amax(dim=0).argmax(dim=-1)
    assert torch.equal(net.ideal_back_to_back(raster, 1), alone)
    assert torch.equal(net.ideal_back_to_back(raster, 4, reset_currents=True), alone)
    # input 0 drives hidden 0 drives output 0, input 1 drives hidden 1 drives output 1
    two = SoftwareNetwork(2, 2, 2)
    with torch.no_grad():
        two.hidden_synapse.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
        two.output_synapse.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.05]]))
    pair = torch.zeros(4, 2, 2)
    pair[:, 0, 0] = 1.0          # image 0: input 0 at every step, up to the boundary
    pair[0, 1, 1] = 1.0          # image 1: one spike on input 1
    assert two.ideal_back_to_back(pair, 1).tolist() == [0, 1]
    assert two.ideal_back_to_back(pair, 2, reset_currents=True).tolist() == [0, 1]
    assert two.ideal_back_to_back(pair, 2).tolist() == [0, 0]
    with pytest.raises(ValueError, match="per_run"):
        two.ideal_back_to_back(pair, 0)


def test_sequences_give_the_gradients_of_step_by_step_indexing_bit_for_bit():
    """lif_sequence / li_sequence take each step's input from one unbind (a
    backward linear in the steps, not quadratic); the gradients are those of
    indexing x[t] step by step, bit for bit (recurrent layer, measured traces)."""
    from spikeloop.nn.functional import LIFState, LIState, li_step, lif_step

    g = torch.Generator().manual_seed(5)
    T, B, n_in, n, n_out = 40, 6, 7, 9, 3
    raster = (torch.rand(T, B, n_in, generator=g) < 0.3).float()
    m_v = torch.rand(T, B, n, generator=g) * 1.5
    m_z = (m_v >= 1).float()
    weights = [torch.randn(n, n_in, generator=g), torch.randn(n, n, generator=g) * 0.3,
               torch.randn(n_out, n, generator=g)]
    p = LIFParameters()

    def run(sequences: bool):
        w_in, w_rec, w_out = (w.clone().requires_grad_(True) for w in weights)
        x = raster @ w_in.t()
        if sequences:
            z, _ = lif_sequence(x, measured_v=m_v, measured_z=m_z, recurrent_weight=w_rec,
                                surrogate_at="model")
            v_out = li_sequence(z @ w_out.t())
        else:
            s, zs = LIFState.zeros_like(x[0]), []
            for t in range(T):
                s = lif_step(x[t], s, p, measured_v=m_v[t], measured_z=m_z[t],
                             recurrent_weight=w_rec, surrogate_at="model")
                zs.append(s.z)
            z = torch.stack(zs)
            y = z @ w_out.t()
            o, vs = LIState.zeros_like(y[0]), []
            for t in range(T):
                o = li_step(y[t], o, p)
                vs.append(o.v)
            v_out = torch.stack(vs)
        (v_out.amax(dim=0).sum() + z.sum()).backward()
        return [w_in.grad, w_rec.grad, w_out.grad]

    a, b = run(True), run(False)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(x.abs().sum() > 0 for x in a)


def test_per_slot_counts_each_images_events():
    """back_to_back's count of events per image (slot ``j % K`` of run ``j // K``)
    equals counting image by image, with events before the run, beyond the last
    slot and in runs past the last image left out."""
    from spikeloop.nn.chip_network import _per_slot

    rng = np.random.default_rng(4)
    K, spacing, runs = 3, 50, 5
    run = rng.integers(0, runs, 400)
    cycle = rng.integers(-20, K * spacing + 40, 400)
    for n in (runs * K, runs * K - 2):
        want = [int(((run == j // K) & (cycle >= (j % K) * spacing)
                     & (cycle < (j % K + 1) * spacing)).sum()) for j in range(n)]
        assert _per_slot(run, cycle, K, spacing, n).tolist() == want
