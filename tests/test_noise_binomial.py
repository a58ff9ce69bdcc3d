"""The ``binomial`` membrane-noise generator (model/noise.py): its numbers on
every path, their statistics against Binomial(64, 1/2), the membrane noise it
makes beside Box-Muller's, every backend's equality with it, and the chip file
that keeps it."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from spikeloop.backends.fast import FastChip, run_fast
from spikeloop.backends.reference import run_reference
from spikeloop.base.config import MINI
from spikeloop.base.files import FileError
from spikeloop.model import noise as N
from spikeloop.model.analog import simulate
from spikeloop.model.chip import Chip
from tests.test_fast_equivalence import assert_same, random_case

pytestmark = pytest.mark.unit

#: numbers drawn for the statistics (keys: 8 samples x 512 steps x 256 neurons)
SAMPLES, STEPS, NEURONS = 8, 512, 256


def binomial_pmf(k: int) -> float:
    return math.comb(64, k) / 2.0 ** 64


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    """[steps, samples, neurons] float32 numbers of the binomial generator."""
    return N.standard_normal_f32_steps(4, torch.arange(SAMPLES), range(STEPS), NEURONS,
                                       model="binomial").numpy()


def test_numbers_are_the_popcount_on_every_path():
    """torch (the reference's and CUDA's path), the compiled steps and the
    compiled row all give ``(popcount(h) - 32) / 4`` of the same hash."""
    idx = torch.arange(5)
    steps = range(3, 40)
    h = N.noise_hash_steps(9, idx, steps, 70).numpy().view(np.uint64)
    want = np.array([(bin(int(x)).count("1") - 32) / 4 for x in h.reshape(-1)],
                    dtype=np.float32).reshape(h.shape)
    torch_path = N.standard_normal_steps(9, idx, steps, 70, "binomial")
    assert torch_path.dtype == torch.float64
    assert np.array_equal(torch_path.numpy(), want)
    assert np.array_equal(N.standard_normal_f32_steps(9, idx, steps, 70, model="binomial"),
                          want)
    sigma = np.full(70, 0.5, np.float32)
    out = np.zeros(70, np.float32)
    scratch = [np.zeros(70, t) for t in (np.uint64, np.float32, np.bool_)]
    fa, fb, ea = (np.zeros(70) for _ in range(3))
    key = N.sample_keys(np.uint64(9), np.arange(5, dtype=np.uint64))[2]
    row = np.arange(70, dtype=np.uint64)
    N.noise_row(key, np.uint64(7), row, np.arange(70), sigma, out, *scratch, fa, fb, ea,
                np.empty(0), 1)
    assert np.array_equal(out, want[7 - 3, 2] * np.float32(0.5))


def test_numbers_follow_binomial_64(draws):
    """Mean 0, variance 1, every value's frequency and the tails beyond 3
    within six standard errors of Binomial(64, 1/2)'s (standardised)."""
    z = draws.astype(np.float64).reshape(-1)
    n = z.size
    assert abs(z.mean()) < 6 / math.sqrt(n)
    # Var of the sample variance: (mu4 - 1) / n with mu4 = 3 - 1/32
    assert abs(z.var() - 1.0) < 6 * math.sqrt((2 - 1 / 32) / n)
    k = np.rint(z * 4 + 32).astype(np.int64)
    assert np.array_equal(k, z * 4 + 32) and k.min() >= 0 and k.max() <= 64
    counts = np.bincount(k, minlength=65)
    for v in range(65):
        p = binomial_pmf(v)
        if p * n >= 50:
            assert abs(counts[v] - p * n) < 6 * math.sqrt(n * p * (1 - p)), v
    p_tail = sum(binomial_pmf(v) for v in range(65) if abs(v - 32) >= 12)  # |z| >= 3
    got = np.mean(np.abs(z) >= 3)
    assert abs(got - p_tail) < 6 * math.sqrt(p_tail * (1 - p_tail) / n)
    assert 0.002 < p_tail < 0.004      # Gaussian: 0.0027


def test_numbers_are_uncorrelated(draws):
    """Neighbours in time (the same neuron and sample) and across neurons (the
    same step) are uncorrelated within six standard errors."""
    z = draws.astype(np.float64)
    for a, b in ((z[1:], z[:-1]), (z[..., 1:], z[..., :-1]), (z[:, 1:], z[:, :-1])):
        r = float(np.mean(a * b))
        assert abs(r) < 6 / math.sqrt(a.size), r


def free_membranes(model: str) -> np.ndarray:
    """[steps, batch * neurons] membrane deviations from the leak of a mini
    chip's free neurons (no input, no spike), noise by ``model``."""
    chip = Chip(MINI, 2, noise_model=model)
    params = chip.analog.lif_params(chip.analog.nominal_settings())
    params = dataclasses.replace(params, v_thresh_v=params.v_thresh_v + 1.0)  # never fires
    out = simulate(params, 3000, batch=64, record_v=True, noise_seed=1)
    assert not out.spikes.any()
    v = out.v_mem_v[500:]                                               # stationary
    return (v - params.v_leak_v).reshape(v.shape[0], -1).double().numpy()


def test_membrane_noise_as_box_mullers():
    """What the membrane sees: with either generator its noise has the same
    standard deviation (within 5 %) and is as Gaussian (excess kurtosis within
    0.1 of 0): the membrane sums about a hundred steps' numbers."""
    bm, bi = free_membranes("box-muller"), free_membranes("binomial")
    s_bm, s_bi = bm.std(), bi.std()
    assert abs(s_bi / s_bm - 1) < 0.05, (s_bm, s_bi)
    for v in (bm, bi):
        x = v - v.mean()
        kurt = float(np.mean(x ** 4) / np.mean(x ** 2) ** 2 - 3)
        assert abs(kurt) < 0.1, kurt
    assert not np.array_equal(bm, bi)


@pytest.mark.parametrize("seed", range(4))
def test_every_backend_computes_the_same_binomial_noise(seed):
    """fast (whole run and step by step) == reference with the binomial
    generator, and the run differs from Box-Muller's."""
    chip, img, events, n_steps, offset = random_case(seed)
    chip.analog.noise_model = "binomial"
    kw = dict(run_seed=seed % 7, sample_offset=offset)
    ref = run_reference(chip, img, events, n_steps, **kw)
    assert_same(ref, run_fast(chip, img, events, n_steps, **kw), f"binomial {seed}")
    step = FastChip(chip, img)
    step.whole_run = False
    assert_same(ref, step.run(events, n_steps, **kw), f"binomial {seed}, step by step")
    chip.analog.noise_model = "box-muller"
    assert run_fast(chip, img, events, n_steps, **kw).first_difference(ref) is not None


def test_chip_file_keeps_the_generator(tmp_path):
    chip = Chip(MINI, 3, noise_model="binomial")
    chip.save(tmp_path / "chip.npz")
    assert Chip.load(tmp_path / "chip.npz").analog.noise_model == "binomial"
    Chip(MINI, 3).save(tmp_path / "default.npz")
    assert Chip.load(tmp_path / "default.npz").analog.noise_model == "box-muller"
    z = dict(np.load(tmp_path / "chip.npz"))
    z["analog_json"] = np.array(str(z["analog_json"]).replace('"binomial"', '"uniform"'))
    np.savez(tmp_path / "bad.npz", **z)
    with pytest.raises(FileError, match=r"bad\.npz: field analog_json: noise_model = "
                                        r"'uniform'; allowed: box-muller, binomial"):
        Chip.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="allowed: box-muller, binomial"):
        Chip(MINI, 3, noise_model="uniform")


def test_calibrate_command_writes_the_generator(tmp_path, capsys):
    """``spikeloop calibrate --noise-model binomial`` calibrates with it and keeps
    it in the chip file; another name is refused with the allowed ones."""
    from spikeloop.cli import main

    out = tmp_path / "chip.npz"
    assert main(["calibrate", "--preset", "mini", "--chip-seed", "1", "--out", str(out),
                 "--noise-model", "binomial"]) == 0
    assert "(binomial)" in capsys.readouterr().out
    chip = Chip.load(out)
    assert chip.analog.noise_model == "binomial"
    assert chip.calibration.report["measurement"]["noise_model"] == "binomial"
    assert main(["calibrate", "--preset", "mini", "--chip-seed", "1", "--out",
                 str(tmp_path / "x.npz"), "--noise-model", "gauss"]) == 2
    assert "box-muller" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.parametrize("seed", range(8))
def test_cuda_binomial_matches_reference(seed):
    """On CUDA (the analog side in torch on the GPU) the binomial noise's run
    equals the reference's."""
    chip, img, events, n_steps, offset = random_case(seed)
    chip.analog.noise_model = "binomial"
    kw = dict(run_seed=seed % 7, sample_offset=offset)
    ref = run_reference(chip, img, events, n_steps, **kw)
    assert_same(ref, run_fast(chip, img, events, n_steps, device="cuda", **kw),
                f"binomial {seed} on cuda")
