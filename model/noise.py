"""Temporal membrane noise: a deterministic function of (run seed, sample, step, neuron).

The noise of one neuron in one analog step of one sample never depends on what
else is in the batch: it is computed from a counter-based hash of the four
integers (splitmix64 mixing in int64 torch ops), turned into a standard normal
number by Box-Muller.  Box-Muller's logarithm and cosine are evaluated here by
fixed polynomials built from ``+ - * /`` and ``sqrt`` only (IEEE-754 correctly
rounded operations), in float64: so the numbers are bit-identical on every
device, for every batch size and position in the batch, and for every
vectorisation path of the element-wise kernels (torch's own ``log``/``cos`` may
pick different SIMD or scalar code for different tensor lengths or devices).
Two of torch's kernels are not such operations and are avoided (both seen on an
H200 machine, tests/test_noise_fast.py): on the CPU torch's ``sqrt`` goes
through MKL's vector math, which misrounds about 1 % of float64 square roots
(by one unit in the last place; which ones depends on the library build), so
the CPU takes numpy's ``sqrt`` (the processor's IEEE square root); and CUDA
kernels multiply by the rounded reciprocal of a Python-number divisor, so the
divisors are tensors.

Key layout: ``h = mix(mix(mix(mix(seed) ^ sample) ^ step) ^ neuron)``; the top 32
bits of ``h`` give ``u1`` in (0, 1], the low 32 bits ``u2`` in [0, 1);
``z = sqrt(-2 ln u1) * cos(pi * (2 u2 - 1))`` (a uniform angle over one full
period, so the sign flip relative to the textbook ``cos(2 pi u2)`` does not
change the distribution).

The simulation's float32 numbers, ``float32(z)``, are what the membranes see
(``membrane_noise*`` with float32 parameters).  ``membrane_noise_steps`` (many
steps per call) computes them on a faster path, :func:`standard_normal_f32_steps`:
libm approximations within a bound of the exact values (``_EPS_*``: 9e-13,
against 1e-15 measured and about 1e-14 estimated from the operations), and the
exact float64 path above for the few numbers whose float32 rounding the bound
leaves open; the bits are
those of ``standard_normal_steps(...).to(float32)`` (tests/test_noise_fast.py).
``membrane_noise`` (one step) keeps the exact path: the reference backend uses
it, so the equivalence tests compare the two paths as well.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def _s64(x: int) -> int:
    """An unsigned 64-bit constant as the signed int64 with the same bits."""
    x &= _MASK64
    return x - (1 << 64) if x >= (1 << 63) else x


_GOLDEN = _s64(0x9E3779B97F4A7C15)
_MUL1 = _s64(0xBF58476D1CE4E5B9)
_MUL2 = _s64(0x94D049BB133111EB)
_LO32 = 0xFFFFFFFF
_TWO_M32 = 2.0 ** -32
_LN2 = math.log(2.0)
_SQRT_HALF = math.sqrt(0.5)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 (Steele, Lea, Flood 2014) of int64 tensors, wrapping arithmetic.

    Bit-exact with the reference on unsigned 64-bit integers (see
    :func:`splitmix64_int`)."""
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _MUL1
    z = (z ^ _shr(z, 27)) * _MUL2
    return z ^ _shr(z, 31)


def splitmix64_int(x: int) -> int:
    """Pure-Python reference of :func:`splitmix64` on one unsigned 64-bit value."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def noise_hash(seed: int, sample_idx: torch.Tensor, step: int, n_neurons: int) -> torch.Tensor:
    """64-bit hash per (sample, neuron) for one analog step: int64 ``[batch, n_neurons]``.

    ``sample_idx``: int64 ``[batch]``, the *global* index of each sample of the
    batch (the same sample gets the same noise whatever batch it is part of)."""
    return noise_hash_steps(seed, sample_idx, [step], n_neurons)[0]


def noise_hash_steps(seed: int, sample_idx: torch.Tensor, steps, n_neurons: int) -> torch.Tensor:
    """:func:`noise_hash` of several steps at once: int64 ``[len(steps), batch,
    n_neurons]`` (row ``t`` is ``noise_hash(seed, sample_idx, steps[t], n_neurons)``;
    the same int64 operations element by element)."""
    device = sample_idx.device
    h = splitmix64(torch.tensor([_s64(seed)], dtype=torch.int64, device=device))
    h = splitmix64(h ^ sample_idx.to(torch.int64).reshape(1, -1, 1))
    st = torch.tensor([_s64(int(k)) for k in steps], dtype=torch.int64, device=device)
    h = splitmix64(h ^ st.reshape(-1, 1, 1))
    neurons = torch.arange(n_neurons, dtype=torch.int64, device=device)
    return _splitmix64_(h ^ neurons)


def _splitmix64_(z: torch.Tensor) -> torch.Tensor:
    """:func:`splitmix64` overwriting ``z`` (the same operations, fewer temporaries)."""
    z += _GOLDEN
    z ^= _shr(z, 30)
    z *= _MUL1
    z ^= _shr(z, 27)
    z *= _MUL2
    z ^= _shr(z, 31)
    return z


def _log_unit(u: torch.Tensor) -> torch.Tensor:
    """ln(u) for float64 ``u`` in (0, 1], from exact frexp and an atanh series."""
    m, e = torch.frexp(u)  # u = m * 2**e, m in [0.5, 1)
    small = m < _SQRT_HALF
    m = torch.where(small, m * 2.0, m)  # m in [sqrt(1/2), sqrt(2))
    e -= small.to(e.dtype)
    s = m - 1.0
    s /= m.add_(1.0)  # |s| <= 0.1716
    s2 = s * s
    acc = torch.full_like(s, 1.0 / 23.0)
    for k in range(21, 0, -2):  # 2 * (s + s^3/3 + ... + s^23/23); error < 1e-17
        acc.mul_(s2).add_(1.0 / k)
    out = e.to(torch.float64)
    out *= _LN2
    s *= 2.0
    s *= acc
    return out.add_(s)


def _cos_pi(x: torch.Tensor) -> torch.Tensor:
    """cos(pi * x) for float64 ``x`` in [-1, 1] by its Taylor series (15 terms)."""
    t = x * math.pi
    t2 = t.mul_(t)
    acc = torch.full_like(t, 1.0)
    for k in range(28, 0, -2):  # Horner on 1 - t^2/2! + t^4/4! - ...; error < 1e-15
        # the divisor is a tensor on acc's device: torch's CUDA kernels turn division
        # by a Python number into a multiplication by its rounded reciprocal (other
        # bits); a tensor divisor is an IEEE-754 division on every device
        d = torch.tensor(float(k * (k - 1)), dtype=torch.float64, device=acc.device)
        acc.mul_(t2).div_(d).neg_().add_(1.0)   # 1.0 - acc*t2/k(k-1)
    return acc


def standard_normal(seed: int, sample_idx: torch.Tensor, step: int,
                    n_neurons: int) -> torch.Tensor:
    """Standard normal numbers, float64 ``[batch, n_neurons]``, deterministic per
    (seed, sample, step, neuron); see the module docstring."""
    return standard_normal_steps(seed, sample_idx, [step], n_neurons)[0]


def standard_normal_steps(seed: int, sample_idx: torch.Tensor, steps,
                          n_neurons: int) -> torch.Tensor:
    """:func:`standard_normal` of several steps at once, float64 ``[len(steps),
    batch, n_neurons]``: every number is computed by the same IEEE-754 operations
    in the same order as for one step (element-wise only; in-place where a
    temporary is not needed), so the bits are those of
    ``standard_normal(seed, sample_idx, steps[t], n_neurons)``."""
    return _normal_from_hash(noise_hash_steps(seed, sample_idx, steps, n_neurons))


def _sqrt_(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of float64 ``x``, in place, on every
    device: numpy's on the CPU (torch's CPU kernel goes through MKL's vector math,
    which misrounds about 1 % of them), torch's on an accelerator (CUDA's double
    ``sqrt`` is IEEE-754's)."""
    if x.device.type == "cpu":
        a = x.numpy()
        np.sqrt(a, out=a)
        return x
    return x.sqrt_()


def _normal_from_hash(h: torch.Tensor) -> torch.Tensor:
    """The standard normal number (float64) of each 64-bit hash in ``h`` (int64,
    overwritten): the definition of the noise, see the module docstring."""
    u1 = _shr(h, 32).add_(1).to(torch.float64).mul_(_TWO_M32)  # (0, 1]
    u2 = h.bitwise_and_(_LO32).to(torch.float64).mul_(_TWO_M32)  # [0, 1)
    del h
    r = _sqrt_(_log_unit(u1).mul_(-2.0))
    return r.mul_(_cos_pi(u2.mul_(2.0).sub_(1.0)))


# --------------------------------------------------------------------------
# the same numbers rounded to float32, computed faster
#: bounds (with a wide margin) on how far the fast approximations below may be from
#: the exact path's float64 values: |cos| absolute, ``sqrt(-2 ln u1)`` relative.
#: Measured on 4e7 random hashes: 1.0e-15 and 3.1e-16; the exact path's own
#: error (Taylor/atanh truncation < 1e-15, rounding of the Horner steps, ln 2 times
#: the exponent) and libm's (about 1 ulp) are below 1e-14; these are 2**-40 = 9e-13.
_EPS_COS = 2.0 ** -40
_EPS_R = 2.0 ** -40
#: rows of [batch * n_neurons] numbers processed together (about 64k numbers: the
#: temporaries stay in the CPU's cache)
_CHUNK = 1 << 16
_U64 = np.uint64


def _splitmix64_np(z: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """:func:`splitmix64` on uint64 numpy arrays (wrapping; logical shifts), in place
    (``tmp``: a scratch array of ``z``'s shape, or None)."""
    if tmp is None:
        tmp = np.empty_like(z)
    z += _U64(0x9E3779B97F4A7C15)
    z ^= np.right_shift(z, _U64(30), out=tmp)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= np.right_shift(z, _U64(27), out=tmp)
    z *= _U64(0x94D049BB133111EB)
    z ^= np.right_shift(z, _U64(31), out=tmp)
    return z


def normal_f32_from_hash(h: np.ndarray) -> np.ndarray:
    """``_normal_from_hash(h).to(torch.float32)`` of uint64 hashes (numpy, any
    shape), bit for bit: see :func:`standard_normal_f32_steps`."""
    flat = np.ascontiguousarray(h).reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    bad = _Approx(len(flat)).run(flat, out)
    _exact_at(out, bad, flat[bad])
    return out.reshape(h.shape)


def _exact_at(out: np.ndarray, bad: np.ndarray, hashes: np.ndarray) -> None:
    """``out.flat[bad]`` = the exact path's float32 numbers of ``hashes`` (uint64)."""
    if len(bad):
        hb = torch.from_numpy(np.ascontiguousarray(hashes).view(np.int64))
        out.reshape(-1)[bad] = _normal_from_hash(hb).to(torch.float32).numpy()


class _Approx:
    """Scratch arrays for up to ``size`` numbers (new temporaries of this size on
    every operation cost more than the operations), and the approximate path."""

    def __init__(self, size: int):
        self.f1 = np.empty(size, dtype=np.float64)
        self.f2 = np.empty(size, dtype=np.float64)
        self.lo = np.empty(size, dtype=np.float32)
        self.ne = np.empty(size, dtype=bool)
        self.u = np.empty(size, dtype=np.uint64)
        self.tmp = np.empty(size, dtype=np.uint64)

    def run(self, h: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` (float32, ``h``'s length) = the numbers of the uint64 hashes
        ``h`` (flat), right except at the returned indices."""
        n = len(h)
        r, c = self.f1[:n], self.f2[:n]
        if _LITTLE:                             # the 32-bit halves of each hash
            hv = h.view(np.uint32)
            hi, lo = hv[1::2], hv[0::2]
        else:
            hi, lo = h >> _U64(32), h & _U64(0xFFFFFFFF)
        # u1 = (hi + 1) 2**-32 in (0, 1]; r = sqrt(-2 ln u1)
        np.add(hi, 1.0, out=r)
        r *= 2.0 ** -32
        np.log(r, out=r)
        r *= -2.0
        np.sqrt(r, out=r)
        # c = cos(pi (2 u2 - 1)) = cos(lo pi 2**-31 - pi), u2 = lo 2**-32 (the
        # argument rounded twice: within 1e-15, inside the bound)
        np.multiply(lo, math.pi * 2.0 ** -31, out=c)
        c -= math.pi
        ct = torch.from_numpy(c)
        torch.cos(ct, out=ct)
        z = c
        z *= r
        # an interval that holds the exact path's value (|z| <= r, so r (eps_cos +
        # eps_r) bounds r |c - c64| + |z| |r - r64| / r), and its ends' float32
        # roundings (each end rounded once, from float64)
        m = r
        m *= _EPS_COS + _EPS_R
        m += 2.0 ** -60
        lo32 = np.subtract(z, m, out=self.lo[:n])
        np.add(z, m, out=out)
        return np.flatnonzero(np.not_equal(lo32, out, out=self.ne[:n]))


_LITTLE = sys.byteorder == "little"


def standard_normal_f32_steps(seed: int, sample_idx: torch.Tensor, steps,
                              n_neurons: int, neurons=None) -> torch.Tensor:
    """``standard_normal_steps(seed, sample_idx, steps, n_neurons).to(torch.float32)``,
    bit for bit, about eight times faster ([len(steps), batch, n_neurons] float32 on
    ``sample_idx``'s device).  With ``neurons`` (indices) only those columns:
    ``[len(steps), batch, len(neurons)]``, the same numbers.

    The float32 rounding of a float64 ``z`` only depends on which float32 rounding
    cell ``z`` lies in.  Each number is first computed approximately (the same hash
    with numpy's uint64 arithmetic, then ``ln``, ``sqrt`` and ``cos`` of libm, which
    are within ``_EPS_*`` of the exact path's polynomials); where the whole interval
    ``z_approx -+ bound`` rounds to one float32, that float32 is the exact path's
    too (rounding is monotone).  The few numbers whose interval touches a rounding
    boundary (about 1 in 10**4, and every z near 0) are computed by the exact path
    itself (:func:`_normal_from_hash`)."""
    device = sample_idx.device
    steps = [int(k) for k in steps]
    if neurons is None:
        neurons = np.arange(int(n_neurons), dtype=np.uint64)
    else:
        neurons = np.asarray(neurons, dtype=np.int64)
        if neurons.size and not (neurons.min() >= 0 and neurons.max() < n_neurons):
            raise ValueError(f"neurons must be indices in [0, {n_neurons})")
        neurons = neurons.astype(np.uint64)
    T, B, n = len(steps), int(sample_idx.numel()), len(neurons)
    # per (step, sample): the hash before the neuron is mixed in (the exact path's ops)
    h = splitmix64(torch.tensor([_s64(seed)], dtype=torch.int64))
    h = splitmix64(h ^ sample_idx.to(device="cpu", dtype=torch.int64).reshape(1, -1))
    st = torch.tensor([_s64(k) for k in steps], dtype=torch.int64).reshape(-1, 1)
    rows = splitmix64(h ^ st).reshape(-1).numpy().view(np.uint64)          # [T * B]
    out = np.empty(T * B * n, dtype=np.float32)
    per = max(1, _CHUNK // max(n, 1))
    work = _Approx(min(T * B, per) * n)
    bad, bad_h = [], []
    for r0 in range(0, T * B, per):
        r1 = min(T * B, r0 + per)
        k = (r1 - r0) * n
        z = work.u[:k]
        np.bitwise_xor(rows[r0:r1, None], neurons, out=z.reshape(r1 - r0, n))
        _splitmix64_np(z, work.tmp[:k])
        b = work.run(z, out[r0 * n:r1 * n])
        if len(b):
            bad.append(b + r0 * n)
            bad_h.append(z[b])
    if bad:                                      # one exact pass for all of them
        _exact_at(out, np.concatenate(bad), np.concatenate(bad_h))
    return torch.from_numpy(out.reshape(T, B, n)).to(device)


def membrane_noise(noise_step_v: torch.Tensor | None, seed: int, sample_idx: torch.Tensor,
                   step: int) -> torch.Tensor | None:
    """Noise added to the membrane in one analog step, volts ``[batch, n_neurons]``.

    ``noise_step_v``: per-step standard deviation (``LIFParams.noise_step_v``), or
    ``None`` when the noise amplitude is zero: then ``None`` is returned and no
    random number is computed (``lif_step`` treats ``None`` as exactly zero)."""
    if noise_step_v is None:
        return None
    z = standard_normal(seed, sample_idx.to(noise_step_v.device), step,
                        noise_step_v.shape[-1])
    return z.to(noise_step_v.dtype) * noise_step_v


def membrane_noise_steps(noise_step_v: torch.Tensor | None, seed: int,
                         sample_idx: torch.Tensor, steps, neurons=None) -> torch.Tensor | None:
    """:func:`membrane_noise` of several steps at once, ``[len(steps), batch,
    n_neurons]`` (row ``t`` bit-identical to ``membrane_noise(..., steps[t])``).

    ``neurons`` (indices, or None: all): compute the noise of these neurons only;
    the others get exactly 0 (for neurons whose membrane is discarded, such as the
    bottom circuits of merged neurons: ``lif_step`` replaces it by the top's)."""
    if noise_step_v is None:
        return None
    n = noise_step_v.shape[-1]
    if noise_step_v.dtype == torch.float32 and noise_step_v.device.type == "cpu":
        # the same float32 numbers, faster (on an accelerator the exact path below
        # runs where the membranes are: element-wise + - * / sqrt, the same bits)
        z = standard_normal_f32_steps(seed, sample_idx.to(noise_step_v.device), steps, n,
                                      neurons)
        if neurons is None:
            return z.mul_(noise_step_v)
        nb = np.asarray(neurons, dtype=np.int64)
        out = torch.zeros((z.shape[0], z.shape[1], n), dtype=z.dtype, device=z.device)
        if len(nb) and np.array_equal(nb, np.arange(nb[0], nb[0] + len(nb))):
            cols = slice(int(nb[0]), int(nb[0]) + len(nb))     # a range: a strided copy
        else:
            cols = torch.as_tensor(nb, device=z.device)
        out[..., cols] = z.mul_(noise_step_v[..., cols])
        return out
    z = standard_normal_steps(seed, sample_idx.to(noise_step_v.device), steps, n)
    z = z.to(noise_step_v.dtype).mul_(noise_step_v)
    if neurons is not None:
        keep = torch.zeros(n, dtype=torch.bool, device=z.device)
        keep[torch.as_tensor(np.asarray(neurons, dtype=np.int64), device=z.device)] = True
        z[..., ~keep] = 0
    return z
