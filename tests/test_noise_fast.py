"""The fast float32 path of the membrane noise (model/noise.py) against the exact
float64 definition: the same bits after rounding to float32, everywhere."""
import itertools
import math

import numba
import numpy as np
import pytest
import torch

from spikeloop.base.config import FULL, MINI
from spikeloop.model import noise as N
from spikeloop.model.analog import AnalogChipModel

pytestmark = pytest.mark.unit


def exact_f32(h: np.ndarray) -> np.ndarray:
    """The definition: the float64 number of each hash, rounded to float32."""
    t = torch.from_numpy(np.ascontiguousarray(h).view(np.int64).copy())
    return N._normal_from_hash(t).to(torch.float32).numpy()


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and bool((a.view(np.int32) == b.view(np.int32)).all())


def test_compiled_splitmix_matches_torch():
    """The fast path's hash (uint64, compiled) is the definition's (int64 torch)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2 ** 64 - 1, 10_000, dtype=np.uint64, endpoint=True)
    x[:4] = [0, 1, 2 ** 63, 2 ** 64 - 1]
    neurons = np.array([0, 1, 77, 2 ** 64 - 1], dtype=np.uint64)
    got = np.empty(len(x) * len(neurons), dtype=np.uint64)
    N._hash_rows(x, neurons, got)
    keys = (x[:, None] ^ neurons[None, :]).reshape(-1)
    want = N.splitmix64(torch.from_numpy(keys.view(np.int64).copy())).numpy().view(np.uint64)
    assert (got == want).all()


def test_random_hashes_round_like_the_exact_path():
    rng = np.random.default_rng(1)
    h = rng.integers(0, 2 ** 64 - 1, 2_000_000, dtype=np.uint64, endpoint=True)
    got = N.normal_f32_from_hash(h)
    assert same_bits(got, exact_f32(h))
    bad = N._approx_flagged(h, np.empty(len(h), dtype=np.float32))
    assert 0 < len(bad) < 1e-3 * len(h)        # the exact fallback is rare, and used


def test_compiled_definition_has_the_definitions_bits():
    """The definition compiled (the fast path's fallback) gives the torch
    definition's float64 bits, on random and on edge hashes."""
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2 ** 64 - 1, 200_000, dtype=np.uint64, endpoint=True)
    edge = np.array([(hi << 32) | lo for hi in (0, 1, 2 ** 32 - 1) for lo in
                     (0, 1, 2 ** 30, 2 ** 31, 3 * 2 ** 30, 2 ** 32 - 1)], dtype=np.uint64)
    h = np.concatenate([h, edge])
    want = N._normal_from_hash(torch.from_numpy(h.view(np.int64).copy())).numpy()
    assert (N._exact_many(h).view(np.int64) == want.view(np.int64)).all()


def test_edge_hashes():
    """u1 = 1 (z = 0), the smallest u1 (largest |z|), cos near its zeros (x = +-1/2),
    +-1 and the ends of the angle, and their neighbours."""
    his = [0, 1, 2, 2 ** 31, 2 ** 32 - 3, 2 ** 32 - 2, 2 ** 32 - 1]
    los = [0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1]
    for q in (2 ** 30, 3 * 2 ** 30):                # cos(pi x) = 0 at x = -1/2, +1/2
        los += [q + d for d in (-1000, -3, -2, -1, 0, 1, 2, 3, 1000)]
    h = np.array([(hi << 32) | lo for hi in his for lo in los], dtype=np.uint64)
    assert same_bits(N.normal_f32_from_hash(h), exact_f32(h))
    bad = N._approx_flagged(h, np.empty(len(h), dtype=np.float32))
    assert len(bad) > 0


@pytest.mark.parametrize("seed, samples, steps, n", [
    (0, list(range(64)), range(0, 12), 512),
    (12345, [7, 2 ** 40, 3], range(1000, 1100), 16),
    (2 ** 64 - 1, [10 ** 12, 0, 5], [0, 5, 2 ** 63 - 1, 2 ** 64 - 1], 512),
    (3, [1], [4], 1),
])
def test_standard_normal_f32_steps_is_the_exact_path_rounded(seed, samples, steps, n):
    idx = torch.tensor(samples, dtype=torch.int64)
    want = N.standard_normal_steps(seed, idx, steps, n).to(torch.float32)
    got = N.standard_normal_f32_steps(seed, idx, steps, n)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))


@pytest.mark.parametrize("cfg", [MINI, FULL])
def test_membrane_noise_steps_equals_one_step_at_a_time(cfg):
    """The float32 noise of many steps (fast path) is the noise of each step alone
    (the exact path), for both simulation dtypes."""
    chip = AnalogChipModel(cfg, 2)
    idx = torch.tensor([3, 0, 9])
    for dtype in (torch.float32, torch.float64):
        p = chip.lif_params(chip.nominal_settings(), dtype=dtype, noise_sigma_v=5e-3)
        many = N.membrane_noise_steps(p.noise_step_v, 11, idx, range(5, 25))
        assert many.dtype == dtype
        for t, k in enumerate(range(5, 25)):
            one = N.membrane_noise(p.noise_step_v, 11, idx, k)
            assert torch.equal(many[t], one), (dtype, k)


@pytest.mark.parametrize("cfg", [MINI, FULL])
def test_membrane_noise_steps_of_some_neurons(cfg):
    """With ``neurons``: those neurons' numbers, bit for bit, and exactly 0 for the
    others (both dtypes; per-neuron and per-batch-row parameters)."""
    chip = AnalogChipModel(cfg, 2)
    n = cfg.n_neurons
    idx = torch.tensor([3, 0, 9])
    for some, dtype in itertools.product(
            (np.array([0, 2, n - 1] + list(range(5, n // 2))),    # indices
             np.arange(3, n // 2)),                                # a range (a slice)
            (torch.float32, torch.float64)):
        rest = np.setdiff1d(np.arange(n), some)
        p = chip.lif_params(chip.nominal_settings(), dtype=dtype, noise_sigma_v=5e-3)
        for step_v in (p.noise_step_v, p.noise_step_v.expand(3, n).clone()):
            full = N.membrane_noise_steps(step_v, 11, idx, range(5, 9))
            part = N.membrane_noise_steps(step_v, 11, idx, range(5, 9), some)
            assert part.dtype == dtype and part.shape == full.shape
            assert torch.equal(part[..., some], full[..., some])
            assert not part[..., rest].any() and full[..., rest].any()
    with pytest.raises(ValueError, match=rf"neurons must be indices in \[0, {n}\)"):
        N.standard_normal_f32_steps(0, idx, [0], n, [n])


def test_error_bounds_hold_with_a_wide_margin():
    """The fast path's sqrt(-2 ln u1) and its cosine stay far inside the bounds
    the check relies on (on random hashes, the extreme u1, and everywhere on a
    fine grid of angles)."""
    rng = np.random.default_rng(2)
    h = rng.integers(0, 2 ** 64 - 1, 500_000, dtype=np.uint64, endpoint=True)
    his = np.array([0, 1, 2, 2 ** 31, 2 ** 32 - 3, 2 ** 32 - 2], dtype=np.uint64)
    h = np.concatenate([h, his << np.uint64(32)])        # u1 near 0; z = 0 excluded below
    t = torch.from_numpy(h.view(np.int64).copy())
    u1 = N._shr(t, 32).add(1).to(torch.float64).mul_(N._TWO_M32)
    r64 = N._sqrt_(N._log_unit(u1).mul_(-2.0)).numpy()
    r = np.empty(len(h))
    N._approx_flagged(h, np.empty(len(h), dtype=np.float32), r)
    assert (r64 > 0).all()
    assert np.abs(r / r64 - 1.0).max() < N._EPS_R / 64

    @numba.njit
    def cos_fast(x, out):
        for i in range(len(x)):
            out[i] = N._cos_pi_fast(x[i])

    lo = np.concatenate([h & np.uint64(0xFFFFFFFF),
                         np.arange(0, 2 ** 32, 997, dtype=np.uint64)])
    x = lo.astype(np.float64) * N._TWO_M32 * 2.0 - 1.0      # the definition's angle
    c = np.empty(len(x))
    cos_fast(x, c)
    c64 = N._cos_pi(torch.from_numpy(x.copy())).numpy()
    assert np.abs(c - c64).max() < N._EPS_COS / 64


def test_square_root_of_the_definition_is_correctly_rounded():
    """The exact path's sqrt is IEEE-754's on the CPU too (torch's CPU kernel,
    MKL's vector math, misrounds about 1 % of float64 roots: seen here)."""
    x = torch.rand(20_000, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x = x.mul_(30.0).add_(1e-3)
    want = torch.tensor([math.sqrt(v) for v in x.tolist()], dtype=torch.float64)
    assert torch.equal(N._sqrt_(x.clone()).view(torch.int64), want.view(torch.int64))


@pytest.mark.cuda
def test_exact_path_on_cuda_has_the_cpu_bits():
    """The definition computed on the GPU (where the fast backend's membranes are)
    gives the CPU's float64 bits: only + - * / sqrt, frexp and integer operations."""
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2 ** 64 - 1, 8_000_000, dtype=np.uint64, endpoint=True)
    h[:4] = [0, 1, 2 ** 63, 2 ** 64 - 1]
    t = torch.from_numpy(h.view(np.int64).copy())
    cpu = N._normal_from_hash(t.clone())
    gpu = N._normal_from_hash(t.to("cuda")).cpu()
    assert torch.equal(cpu.view(torch.int64), gpu.view(torch.int64))


@pytest.mark.cuda
@pytest.mark.parametrize("cfg", [MINI, FULL])
def test_membrane_noise_steps_on_cuda_equals_cpu(cfg):
    chip = AnalogChipModel(cfg, 1)
    n = cfg.n_neurons
    idx = torch.tensor([0, 5, 1 << 40, 77, 3])
    some = np.arange(0, n, 3)
    for neurons in (None, some):
        per_dev = []
        for dev in ("cpu", "cuda"):
            p = chip.lif_params(chip.nominal_settings(), device=dev, noise_sigma_v=5e-3)
            per_dev.append(N.membrane_noise_steps(p.noise_step_v, 9, idx.to(dev),
                                                  range(0, 40), neurons).cpu())
        assert per_dev[1].dtype == torch.float32
        assert torch.equal(per_dev[0].view(torch.int32), per_dev[1].view(torch.int32))


@pytest.mark.parametrize("merged", [False, True])
def test_noise_computed_ahead_on_a_second_thread_is_the_same(merged):
    """AnalogLoop's prefetch (the next steps' noise on the noise thread while
    these steps run) gives every step the bits of the noise computed in place."""
    from spikeloop.base.image import ConfigImage
    from spikeloop.model.analog_loop import AnalogLoop
    from spikeloop.model.chip import Chip

    chip = Chip(MINI, 2)
    image = chip.configure(ConfigImage.empty(MINI))
    if merged:
        image.neuron_merge[::2] = True
    loops = [AnalogLoop(chip, image, [3, 9, 1 << 33], 4) for _ in range(3)]
    n_steps = 50
    loops[1].plan_steps(n_steps, elements=MINI.n_neurons * 3 * 7,              # 7 steps a call
                        prefetch=False)
    loops[2].plan_steps(n_steps, elements=MINI.n_neurons * 3 * 7, prefetch=True)
    assert loops[2]._prefetch and not loops[1]._prefetch
    default = AnalogLoop(chip, image, [0], 4)
    default.plan_steps(n_steps, elements=MINI.n_neurons * 7)
    assert default._prefetch                         # on the CPU unless told otherwise
    g = torch.Generator().manual_seed(0)
    for _ in range(n_steps):
        exc = torch.randint(0, 40, (3, MINI.n_neurons), generator=g, dtype=torch.int32)
        inh = torch.randint(0, 40, (3, MINI.n_neurons), generator=g, dtype=torch.int32)
        hold = torch.rand(3, MINI.n_neurons, generator=g) < 0.1
        fired = [lp.step(exc, inh, hold) for lp in loops]
        for lp, f in zip(loops[1:], fired[1:], strict=True):
            assert torch.equal(f, fired[0])
            assert torch.equal(lp.state.v_mem_v.view(torch.int32),
                               loops[0].state.v_mem_v.view(torch.int32))
    assert loops[2]._next is None                    # nothing computed past the last step
