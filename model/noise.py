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
compiled (numba) loops that compute the same hash and ``sqrt(-2 ln u1)`` and
the cosine within bounds of the exact ones (``_EPS_R``, ``_EPS_COS``: 9e-13,
against 4e-15 measured), and the exact float64 path above for the few numbers
whose float32 rounding the bounds leave open; the bits are those of
``standard_normal_steps(...).to(float32)`` (tests/test_noise_fast.py).
``membrane_noise`` (one step) keeps the exact path: the reference backend uses
it, so the equivalence tests compare the two paths as well.

A second generator, ``binomial`` (the analog model's ``noise_model``; the
default is ``box-muller`` above), turns the same hash into
``z = (popcount(h) - 32) / 4``: the number of one bits of the 64-bit hash, a
Binomial(64, 1/2) count, standardised (mean 0 and variance 1 exactly; 65
values, a quarter apart, within +-8; excess kurtosis -1/32). Every value is a
float32 exactly, so every path computes it with integer operations and one
exact scaling, at a fraction of Box-Muller's cost.  Its per-step numbers
are not Gaussian, but the membrane sums many of them (an Ornstein-Uhlenbeck
process whose time constant spans about a hundred steps), so the membrane's
noise is close to Gaussian either way (docs/analog.md, "Temporal noise").
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

from .jit import next_set  # (importing jit.py stamps the compiled kernels' cache)

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


#: the membrane noise's generators (the analog model's ``noise_model``), in the
#: order of their numbers in the compiled kernels
NOISE_MODELS = ("box-muller", "binomial")


def noise_kind(model: str) -> int:
    """The number of generator ``model`` in :data:`NOISE_MODELS` (a ValueError
    naming the allowed ones otherwise)."""
    try:
        return NOISE_MODELS.index(model)
    except ValueError:
        raise ValueError(f"noise model {model!r}; allowed: {', '.join(NOISE_MODELS)}") \
            from None


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
                    n_neurons: int, model: str = "box-muller") -> torch.Tensor:
    """Standard normal numbers, float64 ``[batch, n_neurons]``, deterministic per
    (seed, sample, step, neuron) (``model``: the generator, :data:`NOISE_MODELS`);
    see the module docstring."""
    return standard_normal_steps(seed, sample_idx, [step], n_neurons, model)[0]


def standard_normal_steps(seed: int, sample_idx: torch.Tensor, steps,
                          n_neurons: int, model: str = "box-muller") -> torch.Tensor:
    """:func:`standard_normal` of several steps at once, float64 ``[len(steps),
    batch, n_neurons]``: every number is computed by the same IEEE-754 operations
    in the same order as for one step (element-wise only; in-place where a
    temporary is not needed), so the bits are those of
    ``standard_normal(seed, sample_idx, steps[t], n_neurons)``."""
    h = noise_hash_steps(seed, sample_idx, steps, n_neurons)
    if noise_kind(model) == 1:
        return _binomial_from_hash(h)
    return _normal_from_hash(h)


def _popcount(x: torch.Tensor) -> torch.Tensor:
    """The number of one bits of each int64 bit pattern (SWAR, wrapping int64
    operations; ``x`` is overwritten)."""
    x -= _shr(x, 1) & 0x5555555555555555
    x = (x & 0x3333333333333333) + (_shr(x, 2) & 0x3333333333333333)
    x = (x + _shr(x, 4)) & 0x0F0F0F0F0F0F0F0F
    return _shr(x * 0x0101010101010101, 56)


def _binomial_from_hash(h: torch.Tensor) -> torch.Tensor:
    """The ``binomial`` generator's number of each hash (float64, exact):
    ``(popcount(h) - 32) / 4`` (``h`` is overwritten)."""
    return (_popcount(h) - 32).to(torch.float64) * 0.25


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
#: bounds (with a wide margin) on how far the fast path's values below may be from
#: the exact path's float64 values: |cos| absolute, ``sqrt(-2 ln u1)`` relative.
#: The fast path evaluates both by shorter series than the definition's, with
#: fused multiply-adds where the compiler finds them: its atanh series stops
#: after 9 terms (truncation below 1e-15 relative), its cosine is a Taylor
#: polynomial of 10 terms on a reduced range (truncation below 4e-15); measured
#: against the exact path on random hashes and a fine grid of angles, both stay
#: below 2**-46 (tests/test_noise_fast.py); the bounds are 2**-40 = 9e-13.
_EPS_COS = 2.0 ** -40
_EPS_R = 2.0 ** -40
_U64 = np.uint64
#: numbers per chunk of the fast path (its scratch arrays stay in the CPU's cache)
_CHUNK = 1 << 12
_MANT = np.uint64((1 << 52) - 1)
_HALF_EXP = np.uint64(1022 << 52)
#: the atanh series' terms as the exact path adds them (1/23, 1/21, ..., 1/1)
_INV = tuple(1.0 / k for k in range(23, 0, -2))
#: the fast path's: 1/17, ..., 1/1 (|s| <= 0.1716: the first term left out, s^18/19,
#: is below 1e-15 of the sum)
_INV_FAST = tuple(1.0 / k for k in range(17, 0, -2))
#: cos(t) = sum_k (-1)^k t^(2k) / (2k)!, k = 9..0 (Horner's order; for |t| <= pi/2
#: the first term left out is below 4e-15)
_COS = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(9, -1, -1))
#: compiled once (cached next to this file); "numpy" error model: no Python checks
#: in the loops (a division by zero would give inf; none occurs), so they vectorise
_JIT = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(inline="always", **_JIT)
def _mix(z):
    """:func:`splitmix64` of one uint64 (wrapping, logical shifts)."""
    z = z + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


@numba.njit(inline="always", **_JIT)
def _horner(coef, x):
    """``(..(coef[0] x + coef[1]) x + ..) x + coef[-1]``: one multiplication and
    one addition per term, in that order (no fused multiply-add, except where the
    calling function allows contraction: the fast path's approximation)."""
    p = coef[0]
    for q in range(1, len(coef)):
        p = p * x + coef[q]
    return p


@numba.njit(inline="always", **_JIT)
def _root_of(m, e, inv):
    """``sqrt(-2 ln u1)`` from ``frexp(u1) = (m, e)`` by the atanh series of
    coefficients ``inv``: with :data:`_INV`, the definition's operations
    (:func:`_log_unit`, then ``* -2`` and the IEEE square root), in its order."""
    small = m < _SQRT_HALF
    m = m * 2.0 if small else m
    e = e - 1.0 if small else e
    s = m - 1.0
    s = s / (m + 1.0)
    acc = _horner(inv, s * s)
    return math.sqrt((e * _LN2 + (s * 2.0) * acc) * -2.0)


@numba.njit(**_JIT)
def _hash_rows(rows, neurons, h):
    """``h[r * n + j] = mix(rows[r] ^ neurons[j])`` (the last mix of the key)."""
    n = len(neurons)
    for r in range(len(rows)):
        base = rows[r]
        for j in range(n):
            h[r * n + j] = _mix(base ^ neurons[j])


@numba.njit(inline="always", **_JIT)
def _cos_pi_fast(x):
    """cos(pi x), x in [-1, 1]: cos(pi |x|) = -cos(pi (1 - |x|)) brings the angle
    to [0, pi/2] (1 - |x| is exact there), then the Taylor polynomial."""
    y = abs(x)
    flip = y > 0.5
    y = 1.0 - y if flip else y
    t = y * math.pi
    p = _horner(_COS, t * t)
    return -p if flip else p


@numba.njit(**_JIT)
def _approx(h, out, flag, fa, fb, ea, r_out):
    """``out[i]`` = the float32 number of hash ``h[i]`` wherever ``flag[i]`` is
    False (see :func:`standard_normal_f32_steps`); ``fa``, ``fb``, ``ea``: scratch
    arrays of ``h``'s length; ``r_out``: ``sqrt(-2 ln u1)`` of each (or an empty
    array: not kept)."""
    _approx_body(h, out, flag, fa, fb, ea, r_out, len(h))


@numba.njit(fastmath={"contract"}, **_JIT)
def _approx_body(h, out, flag, fa, fb, ea, r_out, k):
    """:func:`_approx` on the first ``k`` entries.  Compiled on its own, with
    fused multiply-adds allowed (``contract``): it only approximates, within
    the bounds the check below relies on (a caller inlining it would impose its
    own flags)."""
    ua = fa.view(np.uint64)
    for i in range(k):
        z = h[i]
        fa[i] = np.float64(z >> _U64(32)) + 1.0              # u1 * 2**32, exact
        fb[i] = np.float64(z & _U64(0xFFFFFFFF))             # u2 * 2**32, exact
    # the exact path's frexp(u1) = (m, e), m in [0.5, 1), from the float's bits
    for i in range(k):
        b = ua[i]
        ea[i] = np.float64(np.int64(b >> _U64(52)) - 1054)
        ua[i] = (b & _MANT) | _HALF_EXP
    keep_r = len(r_out) == k
    for i in range(k):
        r = _root_of(fa[i], ea[i], _INV_FAST)
        if keep_r:
            r_out[i] = r
        z = r * _cos_pi_fast(fb[i] * _TWO_M32 * 2.0 - 1.0)
        # an interval that holds the exact path's value (|cos| <= 1, so r (eps_cos +
        # eps_r) bounds r |c - c64| + |z| |r - r64| / r), and its ends' float32
        # roundings (each end rounded once, from float64)
        w = r * (_EPS_COS + _EPS_R) + 2.0 ** -60
        lo = np.float32(z - w)
        hi = np.float32(z + w)
        out[i] = hi
        flag[i] = lo != hi


@numba.njit(**_JIT)
def _exact_one(h):
    """The definition's float64 number of one hash (:func:`_normal_from_hash`): the
    same IEEE-754 operations in the same order, compiled (for the few numbers the
    fast path leaves open)."""
    m, e = math.frexp(np.float64((h >> _U64(32)) + _U64(1)) * _TWO_M32)
    r = _root_of(m, np.float64(e), _INV)
    x = np.float64(h & _U64(0xFFFFFFFF)) * _TWO_M32 * 2.0 - 1.0
    t = x * math.pi
    t2 = t * t
    c = 1.0
    for k in range(28, 0, -2):
        c = 1.0 - c * t2 / np.float64(k * (k - 1))
    return r * c


@numba.njit(inline="always", **_JIT)
def _binomial32(z):
    """The ``binomial`` generator's float32 number of hash ``z`` (uint64):
    ``(popcount(z) - 32) / 4``, exact (SWAR popcount, as :func:`_popcount`)."""
    z = z - ((z >> _U64(1)) & _U64(0x5555555555555555))
    z = (z & _U64(0x3333333333333333)) + ((z >> _U64(2)) & _U64(0x3333333333333333))
    z = (z + (z >> _U64(4))) & _U64(0x0F0F0F0F0F0F0F0F)
    count = np.int64((z * _U64(0x0101010101010101)) >> _U64(56))
    return np.float32(count - 32) * np.float32(0.25)


@numba.njit(**_JIT)
def _noise_f32(seed, samples, steps, neurons, cols, sigma, out, kind):
    """``out[t, b, cols[j]]`` = the float32 number of (seed, ``samples[b]``,
    ``steps[t]``, ``neurons[j]``) (uint64 keys) by generator ``kind``
    (:func:`noise_kind`), times ``sigma[b or 0, cols[j]]`` in float32 when
    ``sigma`` is not empty: for Box-Muller the fast path, then the definition
    itself (:func:`_exact_one`) where it leaves the rounding open.  The other
    columns of ``out`` are left as they are.  One call, no Python objects: it
    runs beside the caller's thread without the GIL."""
    T, B, n = len(steps), len(samples), len(neurons)
    scale = sigma.shape[1] > 0
    per_sample = np.empty(B, dtype=np.uint64)
    hs = _mix(seed)
    for b in range(B):
        per_sample[b] = _mix(hs ^ samples[b])
    per = max(1, _CHUNK // max(n, 1))
    cap = per * n
    rows = np.empty(per, dtype=np.uint64)
    h = np.empty(cap, dtype=np.uint64)
    z = np.empty(cap, dtype=np.float32)
    flag = np.empty(cap, dtype=np.bool_)
    fa = np.empty(cap, dtype=np.float64)
    fb = np.empty(cap, dtype=np.float64)
    ea = np.empty(cap, dtype=np.float64)
    no_r = np.empty(0, dtype=np.float64)
    for r0 in range(0, T * B, per):
        r1 = min(T * B, r0 + per)
        k = (r1 - r0) * n
        for r in range(r0, r1):
            rows[r - r0] = _mix(per_sample[r % B] ^ steps[r // B])
        _hash_rows(rows[:r1 - r0], neurons, h)
        if kind == 1:
            for i in range(k):
                z[i] = _binomial32(h[i])
        else:
            _approx(h[:k], z[:k], flag[:k], fa[:k], fb[:k], ea[:k], no_r)
            i = next_set(flag, 0, k)
            while i < k:
                z[i] = np.float32(_exact_one(h[i]))
                i = next_set(flag, i + 1, k)
        for r in range(r0, r1):
            t, b = r // B, r % B
            sb = b if sigma.shape[0] > 1 else 0
            base = (r - r0) * n
            if scale:
                for j in range(n):
                    out[t, b, cols[j]] = z[base + j] * sigma[sb, cols[j]]
            else:
                for j in range(n):
                    out[t, b, cols[j]] = z[base + j]


@numba.njit(inline="always", **_JIT)
def sample_key(seed, sample):
    """The part of the key that one sample's numbers share, ``mix(mix(seed) ^
    sample)`` (uint64s): :func:`noise_row`'s ``key``."""
    return _mix(_mix(seed) ^ sample)


@numba.njit(inline="always", **_JIT)
def noise_row(key, step, neurons, cols, sigma, out, h, z, flag, fa, fb, ea, no_r, kind):
    """One sample's membrane noise of one step, as :func:`_noise_f32` computes it
    (the same operations, so the same bits): ``out[cols[j]] = float32(z) *
    sigma[cols[j]]`` for the number ``z`` of (``key`` = :func:`sample_key`,
    ``step``, ``neurons[j]``) (uint64s) by generator ``kind``
    (:func:`noise_kind`); the other entries of ``out`` are left as
    they are; ``cols`` sorted and distinct.  ``h``, ``z``, ``flag``, ``fa``, ``fb``,
    ``ea``: scratch of at least ``len(neurons)`` entries; ``no_r``: an empty
    float64 array.  Inlined into its caller (the fast backend's whole-run
    kernel), which allocates nothing."""
    n = len(neurons)
    row = _mix(key ^ step)
    if kind == 1:
        for j in range(n):
            z[j] = _binomial32(_mix(row ^ neurons[j]))
    else:
        for j in range(n):
            h[j] = _mix(row ^ neurons[j])
        _approx_body(h, z, flag, fa, fb, ea, no_r, n)
        i = next_set(flag, 0, n)            # the rare flagged numbers
        while i < n:
            z[i] = np.float32(_exact_one(h[i]))
            i = next_set(flag, i + 1, n)
    c0 = cols[0] if n else 0
    if n and cols[n - 1] - c0 == n - 1:     # (sorted, so a range: no scatter)
        dst = out[c0:c0 + n]
        sg = sigma[c0:c0 + n]
        for j in range(n):
            dst[j] = z[j] * sg[j]
    else:
        for j in range(n):
            out[cols[j]] = z[j] * sigma[cols[j]]


@numba.njit(**_JIT)
def sample_keys(seed, samples):
    """:func:`sample_key` of each of ``samples`` (uint64 [B]; ``seed`` a uint64)."""
    out = np.empty(len(samples), dtype=np.uint64)
    for b in range(len(samples)):
        out[b] = sample_key(seed, samples[b])
    return out


def normal_f32_from_hash(h: np.ndarray) -> np.ndarray:
    """``_normal_from_hash(h).to(torch.float32)`` of uint64 hashes (numpy, any
    shape), bit for bit: see :func:`standard_normal_f32_steps`."""
    flat = np.ascontiguousarray(h, dtype=np.uint64).reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    bad = _approx_flagged(flat, out)
    out[bad] = _exact_many(flat[bad]).astype(np.float32)
    return out.reshape(np.shape(h))


@numba.njit(**_JIT)
def _exact_many(h):
    """:func:`_exact_one` of each hash (float64)."""
    out = np.empty(len(h), dtype=np.float64)
    for i in range(len(h)):
        out[i] = _exact_one(h[i])
    return out


def _approx_flagged(h: np.ndarray, out: np.ndarray, r_out: np.ndarray | None = None
                    ) -> np.ndarray:
    """The fast path on hashes ``h`` (uint64, flat) into ``out`` (float32): the
    indices it leaves to the exact path (``r_out``: ``sqrt(-2 ln u1)`` of each)."""
    k = len(h)
    flag = np.empty(k, dtype=np.bool_)
    _approx(h, out, flag, np.empty(k), np.empty(k), np.empty(k),
            np.empty(0) if r_out is None else r_out)
    return np.flatnonzero(flag)


def _keys(seed: int, sample_idx: torch.Tensor, steps):
    """The noise keys as uint64 numpy: seed [], samples [B], steps [T]."""
    samples = np.ascontiguousarray(sample_idx.to(device="cpu", dtype=torch.int64).numpy()
                                   .reshape(-1)).view(np.uint64)
    st = np.array([int(k) & _MASK64 for k in steps], dtype=np.uint64)
    return np.uint64(int(seed) & _MASK64), samples, st


def _columns(n_neurons: int, neurons) -> np.ndarray:
    if neurons is None:
        return np.arange(int(n_neurons), dtype=np.int64)
    cols = np.asarray(neurons, dtype=np.int64).reshape(-1)
    if cols.size and not (cols.min() >= 0 and cols.max() < n_neurons):
        raise ValueError(f"neurons must be indices in [0, {n_neurons})")
    return np.ascontiguousarray(cols)


def standard_normal_f32_steps(seed: int, sample_idx: torch.Tensor, steps,
                              n_neurons: int, neurons=None,
                              model: str = "box-muller") -> torch.Tensor:
    """``standard_normal_steps(seed, sample_idx, steps, n_neurons).to(torch.float32)``,
    bit for bit, many times faster ([len(steps), batch, n_neurons] float32 on
    ``sample_idx``'s device).  With ``neurons`` (indices) only those columns:
    ``[len(steps), batch, len(neurons)]``, the same numbers.

    The float32 rounding of a float64 ``z`` only depends on which float32 rounding
    cell ``z`` lies in.  Each number is first computed by compiled loops
    (:func:`_approx`: the same hash, ``sqrt(-2 ln u1)`` within ``_EPS_R`` and the
    cosine within ``_EPS_COS`` of the exact path's); where the whole interval
    ``z_approx -+ bound`` rounds to one float32, that float32 is the exact path's
    too (rounding is monotone).  The few numbers whose interval touches a rounding
    boundary (about 3 in 10**4, and every z near 0) are computed by the definition
    itself, compiled (:func:`_exact_one`)."""
    cols = _columns(n_neurons, neurons)
    seed_u, samples, st = _keys(seed, sample_idx, steps)
    out = np.empty((len(st), len(samples), len(cols)), dtype=np.float32)
    _noise_f32(seed_u, samples, st, cols.astype(np.uint64), np.arange(len(cols)),
               np.empty((1, 0), dtype=np.float32), out, noise_kind(model))
    return torch.from_numpy(out).to(sample_idx.device)


def membrane_noise(noise_step_v: torch.Tensor | None, seed: int, sample_idx: torch.Tensor,
                   step: int, model: str = "box-muller") -> torch.Tensor | None:
    """Noise added to the membrane in one analog step, volts ``[batch, n_neurons]``.

    ``noise_step_v``: per-step standard deviation (``LIFParams.noise_step_v``), or
    ``None`` when the noise amplitude is zero: then ``None`` is returned and no
    random number is computed (``lif_step`` treats ``None`` as exactly zero).
    ``model``: the generator (``LIFParams.noise_model``, :data:`NOISE_MODELS`)."""
    if noise_step_v is None:
        return None
    z = standard_normal(seed, sample_idx.to(noise_step_v.device), step,
                        noise_step_v.shape[-1], model)
    return z.to(noise_step_v.dtype) * noise_step_v


def membrane_noise_steps(noise_step_v: torch.Tensor | None, seed: int,
                         sample_idx: torch.Tensor, steps, neurons=None,
                         model: str = "box-muller") -> torch.Tensor | None:
    """:func:`membrane_noise` of several steps at once, ``[len(steps), batch,
    n_neurons]`` (row ``t`` bit-identical to ``membrane_noise(..., steps[t])``).

    ``neurons`` (indices, or None: all): compute the noise of these neurons only;
    the others get exactly 0 (for neurons whose membrane is discarded, such as the
    bottom circuits of merged neurons: ``lif_step`` replaces it by the top's)."""
    if noise_step_v is None:
        return None
    n = noise_step_v.shape[-1]
    if noise_step_v.dtype == torch.float32 and noise_step_v.device.type == "cpu":
        # the same float32 numbers, faster, scaled in the same compiled call (on an
        # accelerator the exact path below runs where the membranes are: element-wise
        # + - * / sqrt, the same bits)
        cols = _columns(n, neurons)
        seed_u, samples, st = _keys(seed, sample_idx, steps)
        sigma = np.ascontiguousarray(noise_step_v.numpy().reshape(-1, n))
        if sigma.shape[0] not in (1, len(samples)):
            raise ValueError(f"noise_step_v has {sigma.shape[0]} rows for "
                             f"{len(samples)} samples")
        alloc = np.empty if neurons is None else np.zeros
        out = alloc((len(st), len(samples), n), dtype=np.float32)
        _noise_f32(seed_u, samples, st, cols.astype(np.uint64), cols, sigma, out,
                   noise_kind(model))
        return torch.from_numpy(out)
    z = standard_normal_steps(seed, sample_idx.to(noise_step_v.device), steps, n, model)
    z = z.to(noise_step_v.dtype).mul_(noise_step_v)
    if neurons is not None:
        keep = torch.zeros(n, dtype=torch.bool, device=z.device)
        keep[torch.as_tensor(np.asarray(neurons, dtype=np.int64), device=z.device)] = True
        z[..., ~keep] = 0
    return z
