"""Analog neuron/synapse dynamics (model/analog.py) and temporal noise (model/noise.py)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from spikeloop.base.config import FULL, MINI
from spikeloop.model.analog import (
    AnalogChipModel,
    LIFParams,
    LIFState,
    NeuronPhysical,
    lif_rate_per_us,
    lif_step,
    psp_closed_form,
    psp_peak,
    simulate,
)
from spikeloop.model.noise import (
    membrane_noise,
    noise_hash,
    splitmix64,
    splitmix64_int,
    standard_normal,
)

pytestmark = pytest.mark.unit

DT = MINI.analog_step_us  # 0.064 µs
F64 = torch.float64


def _params(n=1, noise=0.0, dtype=F64, **values) -> LIFParams:
    return LIFParams.from_physical(NeuronPhysical.uniform(n, **values), DT,
                                   noise_sigma_v=noise, dtype=dtype)


def _trace(params, n_steps, exc=None, inh=None, hold=None, state=None, batch=1):
    r = simulate(params, n_steps, batch=batch, state=state, exc_sum=exc, inh_sum=inh,
                 reset_hold=hold, record_v=True)
    return r.v_mem_v[:, 0, 0].numpy(), r.spikes[:, 0, 0].numpy(), r


def _pulse(n_steps, w, at=0):
    x = torch.zeros(n_steps, 1, 1, dtype=torch.int64)
    x[at] = w
    return x


def test_dt_is_analog_step():
    assert DT == pytest.approx(8 / 125)
    assert FULL.analog_step_us == DT


@pytest.mark.parametrize("tau_mem,tau_syn", [(6.0, 2.0), (6.0, 6.0), (2.0, 6.0),
                                             (6.0, 6.0 * (1 + 1e-9)), (0.5, 30.0)])
def test_psp_matches_closed_form(tau_mem, tau_syn):
    """Single excitatory input at the start of step 0: the membrane at the end of
    step k (t = (k+1) dt after the jump) is the closed-form PSP, to float64 precision."""
    gain, w, n = 1e-3, 40, 2000
    p = _params(tau_mem_us=tau_mem, tau_syn_exc_us=tau_syn, v_thresh_v=1.19)
    v, s, _ = _trace(p, n, exc=_pulse(n, w))
    t = (np.arange(n) + 1) * DT
    want = 0.375 + psp_closed_form(t, tau_mem, tau_syn, gain * w)
    np.testing.assert_allclose(v, want, rtol=0, atol=1e-13)
    assert not s.any()
    if abs(tau_mem - tau_syn) > 0.1:  # the textbook form, where it is well conditioned
        text = (gain * w * tau_mem * tau_syn / (tau_mem - tau_syn)
                * (np.exp(-t / tau_mem) - np.exp(-t / tau_syn)))
        np.testing.assert_allclose(v - 0.375, text, rtol=0, atol=1e-13)
    elif tau_mem == tau_syn:
        np.testing.assert_allclose(v - 0.375, gain * w * t * np.exp(-t / tau_mem), rtol=0,
                                   atol=1e-13)
    else:  # nearly equal: within 1e-8 relative of the equal-tau PSP
        np.testing.assert_allclose(v - 0.375, gain * w * t * np.exp(-t / tau_mem), rtol=1e-8,
                                   atol=1e-13)


@pytest.mark.parametrize("tau_mem,tau_syn", [(6.0, 2.0), (6.0, 6.0), (10.0, 3.0)])
def test_psp_peak_time_and_height(tau_mem, tau_syn):
    jump = 0.1
    t_pk, h = psp_peak(tau_mem, tau_syn, jump)
    fine = np.linspace(0, 5 * t_pk, 200001)
    f = psp_closed_form(fine, tau_mem, tau_syn, jump)
    assert fine[f.argmax()] == pytest.approx(t_pk, abs=1e-4)
    assert f.max() == pytest.approx(h, rel=1e-12)
    if tau_mem == tau_syn:
        assert h == pytest.approx(jump * tau_mem / math.e, rel=1e-14)
    # the simulated trace peaks at the grid point next to t_pk with that height
    n = int(3 * t_pk / DT)
    v, _, _ = _trace(_params(tau_mem_us=tau_mem, tau_syn_exc_us=tau_syn, v_thresh_v=1.19),
                     n, exc=_pulse(n, round(jump / 1e-3)))
    k = int(v.argmax())
    assert abs((k + 1) * DT - t_pk) <= DT
    assert h - (v.max() - 0.375) < 1e-3 * h


def test_inhibitory_psp_mirrors_excitatory():
    n = 600
    p = _params(tau_mem_us=6.0, tau_syn_inh_us=2.5, v_leak_v=0.7)
    v, _, _ = _trace(p, n, inh=_pulse(n, 50))
    want = 0.7 - psp_closed_form((np.arange(n) + 1) * DT, 6.0, 2.5, 0.05)
    np.testing.assert_allclose(v, want, rtol=0, atol=1e-13)


def _first_crossing(f, lo, hi):
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return hi


@pytest.mark.parametrize("w", [170, 250, 600])
def test_spike_at_step_where_closed_form_crosses(w):
    thr, n = 0.60, 800
    p = _params(v_thresh_v=thr, tau_syn_exc_us=4.0)
    v, s, _ = _trace(p, n, exc=_pulse(n, w))
    t_pk, _ = psp_peak(6.0, 4.0, 1e-3 * w)
    t_c = _first_crossing(lambda t: 0.375 + psp_closed_form(t, 6.0, 4.0, 1e-3 * w) - thr,
                          0.0, t_pk)
    k = math.ceil(t_c / DT) - 1  # step k ends at (k+1)*dt
    assert np.flatnonzero(s)[0] == k
    assert v[k] == 0.375  # reset to v_reset at the end of the spiking step
    assert not s[:k].any()


def _const_current_state(p, i0):
    b = len(i0)
    v = p.v_reset_v.expand(b, 1).clone()
    i = torch.tensor(i0, dtype=F64).reshape(b, 1)
    return LIFState(v, i, torch.zeros_like(i))


@pytest.mark.parametrize("i0", [0.06, 0.09, 0.2])
def test_time_to_first_spike_constant_input(i0):
    """Constant current (tau_syn = inf) from v_reset = v_leak."""
    tau, thr = 6.0, 0.7
    p = _params(tau_syn_exc_us=math.inf, v_thresh_v=thr)
    n = 2000
    _, s, _ = _trace(p, n, state=_const_current_state(p, [i0]))
    t1 = -tau * math.log(1 - (thr - 0.375) / (tau * i0))
    frac = t1 / DT - math.floor(t1 / DT)
    assert 1e-6 < frac < 1 - 1e-6  # not on a step boundary
    assert np.flatnonzero(s)[0] == math.ceil(t1 / DT) - 1


def test_firing_rate_matches_analytic_lif():
    """f-I curve: constant currents, reset to v_reset, no refractory period."""
    tau, thr, reset, leak = 6.0, 0.7, 0.3, 0.375
    currents = [0.056, 0.07, 0.1, 0.15, 0.25, 0.5]
    p = _params(tau_syn_exc_us=math.inf, v_thresh_v=thr, v_reset_v=reset, v_leak_v=leak)
    n = 6000
    r = simulate(p, n, state=_const_current_state(p, currents))
    for b, i0 in enumerate(currents):
        v_inf = leak + tau * i0
        st = np.flatnonzero(r.spikes[:, b, 0].numpy())
        isi_steps = np.diff(st)
        exact = lif_rate_per_us(v_inf, reset, thr, tau, dt_us=DT)
        cont = lif_rate_per_us(v_inf, reset, thr, tau)
        assert (isi_steps == round(1 / exact / DT)).all()
        rate = (len(st) - 1) / ((st[-1] - st[0]) * DT)
        assert rate == pytest.approx(exact, rel=1e-12)
        # the step grid delays each spike by less than one step
        assert cont * (1 / (1 + cont * DT)) <= rate <= cont
    # below rheobase: silent
    r = simulate(p, 3000, state=_const_current_state(p, [0.05]))
    assert not r.spikes.any()


def test_reset_hold_clamps_membrane_and_keeps_synapses_running():
    n = 300
    p = _params(v_leak_v=0.2, v_reset_v=0.2, v_thresh_v=0.3)
    hold = torch.zeros(n, 1, 1, dtype=torch.bool)
    hold[:100] = True
    exc = _pulse(n, 200, at=10)
    v, s, r = _trace(p, n, exc=exc, hold=hold)
    assert (v[:100] == 0.2).all() and not s[:100].any()
    _, _, free = _trace(p, n, exc=exc)
    # synaptic current identical with and without hold
    assert torch.equal(r.state.i_exc_v_per_us, free.state.i_exc_v_per_us)
    # after release the membrane moves from v_reset and fires on the remaining current
    assert v[100] > 0.2 and s[100:].any()


def test_threshold_is_inclusive_and_rails_clip():
    p = _params(v_leak_v=0.5, v_thresh_v=0.5, v_reset_v=0.3)
    st, spk = lif_step(p.initial_state(1), p, None, None)
    assert spk.all() and st.v_mem_v.item() == 0.3
    p = _params(v_leak_v=0.1, tau_syn_inh_us=10.0)
    v, _, _ = _trace(p, 400, inh=_pulse(400, 2000))
    assert v.min() == 0.0
    p = _params(v_leak_v=1.1, v_thresh_v=2.0, tau_syn_exc_us=10.0)
    v, _, _ = _trace(p, 400, exc=_pulse(400, 2000))
    assert v.max() == 1.2


@pytest.mark.parametrize("merged", [False, True])
def test_lif_step_leaves_its_inputs_alone(merged):
    """lif_step works in place on tensors of its own only: the state, the sums,
    the holds and the noise passed in are not written (float sums too), on the
    compiled path and on the torch operations."""
    from spikeloop.model import analog as A

    chip = AnalogChipModel(MINI, 1)
    merge = np.arange(MINI.n_neurons // 2) % 2 == 0 if merged else None
    p = chip.lif_params(chip.nominal_settings(), noise_sigma_v=5e-3, merge=merge)
    g = torch.Generator().manual_seed(0)
    n = MINI.n_neurons
    state = p.initial_state(3)
    state = type(state)(*(x + torch.rand(3, n, generator=g) for x in state))
    for dtype in (torch.int32, torch.float32):
        ins = (torch.randint(0, 50, (3, n), generator=g).to(dtype),
               torch.randint(0, 50, (3, n), generator=g).to(dtype),
               torch.rand(3, n, generator=g) < 0.3, torch.rand(3, n, generator=g) * 0.01)
        before = [x.clone() for x in (*state, *ins)]
        for (exc, inh), step in itertools.product(((ins[0], ins[1]), (None, None)),
                                                  (A._lif_step_compiled, A._lif_step_torch)):
            out, _ = step(state, p, exc, inh, ins[2], ins[3])
            assert all(torch.equal(a, b) for a, b in zip(before, (*state, *ins), strict=True))
            assert not any(o.data_ptr() == x.data_ptr() for o in out for x in (*state, *ins))


@pytest.mark.parametrize("cfg, merged", [(MINI, False), (MINI, True), (FULL, False),
                                         (FULL, True)])
def test_compiled_step_has_the_torch_steps_bits(cfg, merged):
    """On the CPU in float32 lif_step runs one compiled pass (_lif_kernel); it
    gives the torch operations' bits (_lif_step_torch) with every input present
    or absent, integer or float sums, holds and noise, over many steps."""
    from spikeloop.model import analog as A

    chip = AnalogChipModel(cfg, 4)
    n = cfg.n_neurons
    merge = np.arange(n // 2) % 3 != 1 if merged else None
    p = chip.lif_params(chip.nominal_settings(), noise_sigma_v=5e-3, merge=merge)
    g = torch.Generator().manual_seed(1)
    B = 5
    s_c = s_t = p.initial_state(B)
    assert A._compiled_applies(p.initial_state(-(-A._COMPILED_MIN // n)), p, None)
    assert not A._compiled_applies(p.initial_state(1), p, None)
    fired = 0
    for t in range(80):
        def maybe(k, x, t=t):
            return x if t % k else None
        exc = maybe(5, torch.randint(0, 300, (B, n), generator=g, dtype=torch.int32)
                    * (torch.rand(B, n, generator=g) < 0.3))
        if exc is not None and t % 2:
            exc = exc.float()
        elif exc is not None and t % 3 == 0:
            exc = exc.long()                    # (the co-simulation's sums)
        inh = maybe(7, torch.randint(0, 200, (B, n), generator=g, dtype=torch.int32)
                    * (torch.rand(B, n, generator=g) < 0.2))
        hold = maybe(3, torch.rand(B, n, generator=g) < 0.1)
        noise = maybe(4, torch.randn(B, n, generator=g) * 0.01)
        s_c, sp_c = A._lif_step_compiled(s_c, p, exc, inh, hold, noise)
        s_t, sp_t = A._lif_step_torch(s_t, p, exc, inh, hold, noise)
        assert torch.equal(sp_c, sp_t), t
        for a, b in zip(s_c, s_t, strict=True):
            assert torch.equal(a.view(torch.int32), b.view(torch.int32)), t
        fired += int(sp_c.sum())
    assert fired > 0                            # the spike and reset path ran
    # the torch operations elsewhere: float64, parameters per batch row
    p64 = chip.lif_params(chip.nominal_settings(), dtype=torch.float64)
    assert not A._compiled_applies(p64.initial_state(2), p64, None)


def _random_inputs(n_steps, batch, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    exc = torch.randint(0, 200, (n_steps, batch, n), generator=g)
    exc = exc * (torch.rand(n_steps, batch, n, generator=g) < 0.2)
    inh = torch.randint(0, 200, (n_steps, batch, n), generator=g)
    inh = inh * (torch.rand(n_steps, batch, n, generator=g) < 0.1)
    hold = torch.rand(n_steps, batch, n, generator=g) < 0.05
    return exc, inh, hold


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_batch_size_and_order_independence(dtype):
    """Bit-identical per sample whatever the batch composition (noise on)."""
    chip = AnalogChipModel(FULL, 3)
    p = chip.lif_params(chip.nominal_settings(), dtype=dtype, noise_sigma_v=5e-3)
    n_steps, batch = 60, 5
    exc, inh, hold = _random_inputs(n_steps, batch, FULL.n_neurons)
    idx = torch.tensor([10, 11, 12, 13, 14])
    full = simulate(p, n_steps, batch=batch, exc_sum=exc, inh_sum=inh, reset_hold=hold,
                    noise_seed=7, sample_idx=idx, record_v=True)
    assert full.spikes.any()
    perm = torch.tensor([3, 0, 4])
    part = simulate(p, n_steps, batch=3, exc_sum=exc[:, perm], inh_sum=inh[:, perm],
                    reset_hold=hold[:, perm], noise_seed=7, sample_idx=idx[perm], record_v=True)
    assert torch.equal(part.v_mem_v, full.v_mem_v[:, perm])
    assert torch.equal(part.spikes, full.spikes[:, perm])
    one = simulate(p, n_steps, batch=1, exc_sum=exc[:, 2:3], inh_sum=inh[:, 2:3],
                   reset_hold=hold[:, 2:3], noise_seed=7, sample_idx=idx[2:3], record_v=True)
    assert torch.equal(one.v_mem_v[:, 0], full.v_mem_v[:, 2])
    # deterministic
    again = simulate(p, n_steps, batch=batch, exc_sum=exc, inh_sum=inh, reset_hold=hold,
                     noise_seed=7, sample_idx=idx, record_v=True)
    assert torch.equal(again.v_mem_v, full.v_mem_v)


def test_step_by_step_equals_simulate_and_params_shape():
    chip = AnalogChipModel(MINI, 1)
    p = chip.lif_params(chip.nominal_settings())
    assert p.dtype == torch.float32 and p.v_leak_v.shape == (16,)
    exc, inh, hold = _random_inputs(30, 2, 16, seed=1)
    idx = torch.tensor([0, 1])
    r = simulate(p, 30, batch=2, exc_sum=exc, inh_sum=inh, reset_hold=hold, sample_idx=idx)
    st = p.initial_state(2)
    for t in range(30):
        st, s = lif_step(st, p, exc[t], inh[t], hold[t],
                         membrane_noise(p.noise_step_v, 0, idx, t))
        assert torch.equal(s, r.spikes[t])
    assert torch.equal(st.v_mem_v, r.state.v_mem_v)


@pytest.mark.cuda
def test_cuda_matches_cpu_bit_for_bit():
    chip = AnalogChipModel(FULL, 2)
    exc, inh, hold = _random_inputs(100, 4, FULL.n_neurons)
    out = []
    for dev in ("cpu", "cuda"):
        p = chip.lif_params(chip.nominal_settings(), device=dev, noise_sigma_v=5e-3)
        r = simulate(p, 100, batch=4, exc_sum=exc.to(dev), inh_sum=inh.to(dev),
                     reset_hold=hold.to(dev), sample_idx=torch.arange(4, device=dev),
                     adc=chip.adc_params(device=dev), record_v=True)
        out.append(r)
    assert torch.equal(out[0].v_mem_v, out[1].v_mem_v.cpu())
    assert torch.equal(out[0].adc_codes, out[1].adc_codes.cpu())


# ---------------------------------------------------------------- noise
def test_splitmix64_matches_reference():
    xs = [0, 1, 2, 12345, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1, 0xDEADBEEFCAFEBABE]
    t = torch.tensor([x - 2**64 if x >= 2**63 else x for x in xs], dtype=torch.int64)
    got = [int(v) & (2**64 - 1) for v in splitmix64(t)]
    assert got == [splitmix64_int(x) for x in xs]


def test_noise_is_deterministic_and_independent_of_batch():
    a = standard_normal(5, torch.arange(10), 17, 64)
    b = standard_normal(5, torch.tensor([7, 3]), 17, 64)
    assert torch.equal(b[0], a[7]) and torch.equal(b[1], a[3])
    assert torch.equal(a, standard_normal(5, torch.arange(10), 17, 64))
    assert not torch.equal(a, standard_normal(6, torch.arange(10), 17, 64))
    assert not torch.equal(a, standard_normal(5, torch.arange(10), 18, 64))
    # neuron columns are not shifted copies of each other
    h = noise_hash(5, torch.arange(3), 0, 4)
    assert len(set(h.flatten().tolist())) == 12


def test_noise_statistics_and_box_muller_accuracy():
    z = standard_normal(1, torch.arange(400), 0, 512).flatten()
    assert abs(z.mean().item()) < 0.01
    assert z.std().item() == pytest.approx(1.0, abs=0.01)
    assert ((z > 1.96).double().mean().item()) == pytest.approx(0.025, abs=0.003)
    # the polynomial log/cos agree with libm's to ~1e-12
    h = noise_hash(1, torch.arange(50), 0, 512)
    u1 = (((h >> 32) & 0xFFFFFFFF) + 1).double() * 2.0**-32
    u2 = (h & 0xFFFFFFFF).double() * 2.0**-32
    ref = torch.sqrt(-2 * torch.log(u1)) * torch.cos(math.pi * (2 * u2 - 1))
    got = standard_normal(1, torch.arange(50), 0, 512)
    assert (got - ref).abs().max().item() < 1e-12


def test_noise_off_is_exactly_zero_and_amplitude():
    p0 = _params(n=4)
    assert p0.noise_step_v is None
    assert membrane_noise(p0.noise_step_v, 0, torch.arange(3), 0) is None
    # with noise: the free membrane's stationary std is noise_sigma_v
    sigma = 2e-3
    p = _params(n=256, noise=sigma, tau_mem_us=1.0, v_thresh_v=1.19)
    r = simulate(p, 400, batch=8, record_v=True)
    dev = r.v_mem_v[100:] - 0.375
    assert dev.std().item() == pytest.approx(sigma, rel=0.05)
