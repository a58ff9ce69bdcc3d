"""The cochlea model that made SHD, vectorised: basilar membrane, inner hair
cell, bushy cell (the stages and parameters of lauscher 1.0.1, Cramer et al.
2020, which made the Spiking Heidelberg Digits; docs/speech.md).

lauscher's ``Wave2Spike`` runs, per utterance::

    RMS normalisation to 0.3 -> Hann window over the whole track
    -> basilar membrane (Sieroka et al. 2006: hydrodynamic shallow-water model,
       one transfer function per channel, applied in the frequency domain)
    -> inner hair cell (Meddis 1986/1988 transmitter pools, per channel)
    -> bushy cell (40 converging auditory-nerve fibres, each a Bernoulli draw of
       the hair cell's release probability per sample with a 1 ms dead time,
       driving a leaky integrate-and-fire neuron with 0.5 ms synapses, 1 ms
       membrane and 1 ms refractory time)

with ``multiprocessing`` over channels and Python loops over samples (about
10 s per utterance at 70 channels on two cores).  Here the same stages:

- basilar membrane: lauscher's formula for all channels and frequencies at
  once (numpy broadcasting; the transfer functions are cached per track
  length), one batched inverse FFT.  Like lauscher, the response is the real
  part of the inverse FFT of the one-sided spectrum, so it has ``N // 2 + 1``
  samples at half the audio rate (11,025 Hz for espeak-ng's 22,050 Hz).
- hair cell: lauscher's recursion, compiled (numba), the same operations in
  the same order (equal to lauscher's output to rounding; tests check it).
- bushy cell: compiled.  The 40 fibres of a channel are exchangeable, so the
  number of them that fire in a sample is drawn at once as a binomial of the
  fibres not in their dead time (a fibre that fired at sample ``j`` ignores
  its draws while ``j' - j < 1 ms * rate``, as lauscher's ``_correct``), and
  their summed synaptic current decays as one: the same distribution as
  lauscher's 40 separate draws and currents, not the same random numbers.
  The integrate-and-fire neuron follows lauscher's ``_lif`` step by step
  (clipping at 1, the spike written one sample late, a 1 ms refractory count).

Only the channels asked for are computed: every channel of lauscher's
700-channel membrane (``linspace(0, 3.5, 700)`` along the membrane) is
independent of the others, so the paper's 70 channels (skip the first 70,
keep every 9th: :data:`PAPER_CHANNELS`) are exactly what the 700-channel model
gives on them, at a tenth of the work.
"""
from __future__ import annotations

import numba
import numpy as np

#: lauscher's channel count (SHD's units 0..699)
N_CHANNELS = 700
#: the paper's input channels: skip the first 70 of 700, keep every 9th (70 channels)
PAPER_CHANNELS = tuple(range(70, N_CHANNELS, 9))
#: lauscher's RMS level before the window
RMS_LEVEL = 0.3

# basilar membrane (lauscher.transformations.BasilarMembrane defaults)
BM_A, BM_ALPHA, BM_RHO, BM_C, BM_C0, BM_DE, BM_H, BM_M = (
    3500.0, 3.0, 1.0, 3.5, 10e8, 0.15, 0.1, 0.05)
# hair cell (lauscher.transformations.HairCell defaults)
HC_Y, HC_G, HC_L, HC_R, HC_X, HC_A, HC_B, HC_H, HC_M = (
    5.05, 2000.0, 2500.0, 6580.0, 66.3, 5.0, 300.0, 50000.0, 1.0)
# bushy cell (lauscher.transformations.BushyCell defaults)
BC_N_CONVERGENCE, BC_TAU_MEM, BC_TAU_SYN, BC_TAU_REFRAC, BC_WEIGHT = 40, 1e-3, 5e-4, 1e-3, 13e3


def channel_positions(channels) -> np.ndarray:
    """Positions along the membrane of lauscher's 700-channel model's ``channels``."""
    ch = np.asarray(channels, dtype=np.int64)
    if ch.ndim != 1 or len(ch) == 0 or ch.min() < 0 or ch.max() >= N_CHANNELS:
        raise ValueError(f"channels = {list(ch)[:5]}...; allowed: a non-empty list of "
                         f"0..{N_CHANNELS - 1}")
    return np.linspace(0, BM_C, N_CHANNELS)[ch]


def preprocess(wave: np.ndarray) -> np.ndarray:
    """lauscher's RMS normalisation (0.3) and Hann window over the whole track."""
    x = np.asarray(wave, dtype=np.float64).copy()
    rms = np.sqrt(np.mean(x ** 2))
    if not np.isfinite(rms) or rms == 0:
        raise ValueError("the waveform is silent (RMS 0) or not finite")
    x *= RMS_LEVEL / rms
    n = len(x)
    up, down = n // 2, n // 2          # lauscher's default ramps: half the track each
    x[:up] = np.hanning(up * 2)[:up] * x[:up]
    if down:
        x[-down:] = np.hanning(down * 2)[:down][::-1] * x[-down:]
    return x


def _bm_terms(omega, c):
    """lauscher's ``_s``, ``_r``, ``_xi``, ``_g`` and ``_p`` (broadcast over c, omega)."""
    from scipy import special

    a, alpha, rho, c0, h, m = BM_A, BM_ALPHA, BM_RHO, BM_C0, BM_H, BM_M
    r = BM_DE * np.sqrt(c0 * m)

    def xi(om, cc):
        s_c = c0 * np.exp(-alpha * cc) - a
        return s_c - m * om ** 2 - 1j * om * (r * np.exp(-alpha * cc / 2.))

    def g(om, cc):
        return om * np.sqrt(rho / (h * xi(om, cc)))

    def p(om, cc):
        G = 2. * g(om, 0.0) / alpha - 1 \
            / (alpha * (np.sqrt(h * 2. * (m * om ** 2 + a)))) \
            * (2. * 1j * np.sqrt(2.) * om
               * (np.log((-alpha * np.sqrt(-a + c0 - om * (m * om + 1j * r))
                          + 1j * alpha * (2. * a + om * (2. * m * om + 1j * r))
                          / (2. * np.sqrt(a + m * om ** 2)))
                         / (0.5 * alpha * np.exp(alpha * cc / 2.)
                            * (-2. * np.sqrt(-a + c0 * np.exp(-alpha * cc) - m * om ** 2
                                             - 1j * np.exp(-alpha * cc / 2.) * om * r)
                               + 1j * (2. * a + om * (2. * m * om
                                                      + 1j * np.exp(-alpha * cc / 2.) * r))
                               / np.sqrt(a + m * om ** 2))))))
        return np.sqrt(G / g(om, cc)) * special.hankel1(0, G)

    def z(om):
        f = om / (2. * np.pi)
        arg = 4. * np.pi * f / alpha * np.sqrt(2. / (h * c0))
        return np.sqrt(2. * c0 / h) * (1j * special.j0(arg) + special.y0(arg)) \
            / (special.j1(arg) - 1j * special.y1(arg))

    return xi, p, z


def bm_transfer(n_samples: int, sample_rate: int, channels) -> np.ndarray:
    """``[len(channels), n_samples // 2 + 1]`` complex: lauscher's ``_v(x, c)`` on
    its frequency grid ``x = 2 pi linspace(1, sample_rate // 2, n_samples // 2 + 1)``."""
    nfreq = n_samples // 2 + 1
    omega = 2 * np.pi * np.linspace(1, sample_rate // 2, nfreq)
    c = channel_positions(channels)[:, None]
    xi, p, z = _bm_terms(omega[None, :], c)
    with np.errstate(all="ignore"):
        v = 2. * omega[None, :] / xi(omega[None, :], c) * p(omega[None, :], c) \
            * z(omega)[None, :] / p(omega, 0.0)[None, :]
    return v


class BasilarMembrane:
    """The membrane's velocity ``[channels, N // 2 + 1]`` at ``sample_rate // 2``;
    the transfer functions are kept per track length (tracks of a few lengths
    share them)."""

    def __init__(self, channels=PAPER_CHANNELS, cache_size: int = 32):
        self.channels = tuple(int(c) for c in channels)
        channel_positions(self.channels)
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self.cache_size = cache_size

    def transfer(self, n_samples: int, sample_rate: int) -> np.ndarray:
        key = (n_samples, sample_rate)
        v = self._cache.get(key)
        if v is None:
            v = bm_transfer(n_samples, sample_rate, self.channels)
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = v
        return v

    def __call__(self, x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        nfreq = len(x) // 2 + 1
        stim = np.fft.fft(x)[:nfreq]
        out = np.real(np.fft.ifft(self.transfer(len(x), sample_rate) * stim[None, :], axis=1))
        return out, sample_rate // 2


@numba.njit(cache=True)
def _hair_cell(bm, fs):
    y, g, l, r, x, a, b, h, m = HC_Y, HC_G, HC_L, HC_R, HC_X, HC_A, HC_B, HC_H, HC_M
    ymdt = y * m / fs
    xdt = x / fs
    ydt = y / fs
    rdt = r / fs
    gdt = g / fs
    hdt = h / fs
    lplusrdt = (l + r) / fs
    n_ch, n_t = bm.shape
    out = np.zeros((n_ch, n_t))
    for ch in range(n_ch):
        kt = g * a / (a + b)
        hair_c = m * y * kt / (l * kt + y * (l + r))
        hair_q = hair_c * (l + r) / kt
        hair_w = hair_c * r / x
        for j in range(n_t):
            v = bm[ch, j]
            if (v + a) > 0:
                kt = gdt * (v + a) / (v + a + b)
            else:
                kt = 0.0
            if hair_q < m:
                replenish = ymdt - ydt * hair_q
            else:
                replenish = 0.0
            eject = kt * hair_q
            reuptakeandloss = lplusrdt * hair_c
            reuptake = rdt * hair_c
            reprocess = xdt * hair_w
            hair_q = max(hair_q + replenish - eject + reprocess, 0.0)
            hair_c = max(hair_c + eject - reuptakeandloss, 0.0)
            hair_w = max(hair_w + reuptake - reprocess, 0.0)
            out[ch, j] = hair_c * hdt
    return out


def hair_cell(bm: np.ndarray, sample_rate: int) -> np.ndarray:
    """Release probability per sample ``[channels, T]`` (lauscher's ``HairCell``)."""
    return _hair_cell(np.ascontiguousarray(bm, dtype=np.float64), float(sample_rate))


@numba.njit(cache=True)
def _bushy_cell(prob, fs, seed, n_conv, tau_mem, tau_syn, tau_refrac, weight):
    np.random.seed(seed)
    n_ch, n_t = prob.shape
    refrac_samples = tau_refrac * fs
    # a fibre that fired at j ignores draws at j' with j' - j < refrac_samples
    dead = int(np.ceil(refrac_samples)) - 1
    ring = np.zeros(max(dead, 1), dtype=np.int64)
    dt = 1.0 / fs
    decay_mem = np.exp(-dt / tau_mem)
    decay_syn = np.exp(-dt / tau_syn)
    w = weight / n_conv
    spikes = np.zeros((n_ch, n_t), dtype=np.uint8)
    for ch in range(n_ch):
        ring[:] = 0
        busy = 0
        vm_prev = 0.0
        isyn = 0.0
        refrac = 0.0
        for step in range(n_t):
            # the fibres: binomial over those outside their dead time
            p = prob[ch, step]
            if p > 1.0:
                p = 1.0
            k = 0
            if p > 0.0 and n_conv - busy > 0:
                k = np.random.binomial(n_conv - busy, p)
            if dead > 0:
                slot = step % dead
                busy += k - ring[slot]
                ring[slot] = k
            # lauscher's _lif, one channel
            vm = 0.0
            if step > 0:
                if refrac <= 0:
                    if vm_prev < 1.0:
                        vm = vm_prev * decay_mem
                    else:
                        refrac = refrac_samples
                        vm = 0.0
                        spikes[ch, step - 1] = 1
                isyn = isyn * decay_syn
            isyn += k
            if refrac <= 0:
                vm += isyn * w * dt
            if vm > 1.0:
                vm = 1.0
            refrac -= 1
            vm_prev = vm
    return spikes


def bushy_cell(prob: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """Spikes ``[channels, T]`` (uint8) of the bushy cells (lauscher's ``BushyCell``)."""
    if not 0 <= int(seed) < 2 ** 32:
        raise ValueError(f"seed = {seed}; allowed: 0 .. 2**32 - 1")
    return _bushy_cell(np.ascontiguousarray(prob, dtype=np.float64), float(sample_rate),
                       int(seed), BC_N_CONVERGENCE, BC_TAU_MEM, BC_TAU_SYN, BC_TAU_REFRAC,
                       BC_WEIGHT)


class Cochlea:
    """Waveform -> spikes (times in s, units in lauscher's 0..699 numbering) of
    ``channels`` (default: the paper's 70)."""

    def __init__(self, channels=PAPER_CHANNELS):
        self.channels = np.asarray(tuple(int(c) for c in channels), dtype=np.int64)
        self.membrane = BasilarMembrane(self.channels)

    def stages(self, wave: np.ndarray, sample_rate: int, seed: int):
        """(membrane velocity, release probability, spike matrix, their sample rate)."""
        x = preprocess(wave)
        bm, fs = self.membrane(x, sample_rate)
        prob = hair_cell(bm, fs)
        return bm, prob, bushy_cell(prob, fs, seed), fs

    def __call__(self, wave: np.ndarray, sample_rate: int, seed: int):
        _, _, spikes, fs = self.stages(wave, sample_rate, seed)
        return dense_to_spikes(spikes, fs, self.channels)


def dense_to_spikes(spikes: np.ndarray, fs: int, channels) -> tuple[np.ndarray, np.ndarray]:
    """``[channels, T]`` 0/1 -> (times in s, sorted by time then channel; units),
    as lauscher's ``SpikeTrain.from_dense`` (time = sample index / rate)."""
    t_idx, ch_idx = np.nonzero(np.asarray(spikes).T)
    return t_idx / fs, np.asarray(channels, dtype=np.int64)[ch_idx]
