"""Analog neuron and synapse circuits: LIF with current-based exponential synapses.

Units: time in µs of hardware time, potentials in volts, synaptic currents in
V/µs (current divided by the membrane capacitance), synaptic gains in V/µs per
weight LSB.  Equations between two analog-step boundaries (see docs/analog.md)::

    tau_mem  dV/dt   = -(V - v_leak) + tau_mem * (I_exc - I_inh)
    tau_syn_exc dI_exc/dt = -I_exc,     tau_syn_inh dI_inh/dt = -I_inh

Analog step ``k`` covers ``[k*dt, (k+1)*dt)``, ``dt = cfg.analog_step_us``
(8 cycles / 125 MHz = 0.064 µs).  ``lif_step`` does, in this order:

1. the step's integer weight sums enter as jumps at the *start* of the step:
   ``I_exc += gain_exc * exc_sum``, ``I_inh += gain_inh * inh_sum``;
2. exact propagation of the linear dynamics over ``dt`` (closed-form
   propagators, ``tau_mem == tau_syn`` handled exactly);
3. temporal noise is added to the membrane (``noise``, volts; ``None`` = none);
4. the membrane is clipped to the rails ``[v_min_v, v_max_v]`` (0 .. 1.2 V);
5. held in reset (``reset_hold``, the digital refractory flag of this step):
   the membrane is clamped to ``v_reset`` for the whole step (no spike);
6. threshold check at the *end* of the step: ``spike = V >= v_thresh``;
7. a spiking neuron's membrane is set to ``v_reset`` (end of the step).

The synaptic currents keep integrating their inputs while a neuron is held.

Merged neurons (``merge``, the chip's membrane-connection switches; a two-half
chip only): when bit ``c`` is set, neuron circuit ``c`` (half 0, the *top*)
and circuit ``C + c`` (half 1, the *bottom*) form one neuron whose synapses
are the rows of both halves.  The bottom circuit's membrane capacitor and leak
are switched off: the merged membrane is the top circuit's (its leak, tau_mem,
threshold, reset, noise, refractory flag), and both circuits' synaptic
currents drive it, each with its own gain and tau_syn (the bottom's
propagators are computed with the top's tau_mem).  In step 2 the membrane
change of both currents is added to the top's membrane; the bottom circuit
never spikes and its membrane shows the merged one (its ADC channel reads the
same potential through its own channel offset and gain).
``lif_step`` itself only uses ``+ - *``, comparisons and ``where`` on tensors of
the batch (all exponentials are precomputed per neuron in float64), so it is
bit-identical for every batch size, batch order and vectorisation path; on the
CPU in float32 the same operations run as one compiled (numba) pass, with the
same bits (no fused multiply-add: numba does not contract without fastmath).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import numba
import numpy as np
import torch

from spikeloop.base.config import ChipConfig

from . import jit  # noqa: F401  (the compiled kernels' cache stamp: jit.py)
from .adc import ADCParams, adc_convert
from .mismatch import (
    SETTING_KINDS,
    ChipMismatch,
    MismatchConfig,
    draw_mismatch,
    synapse_gain_table,
)
from .noise import membrane_noise, noise_kind

SETTING_NAMES = ("leak", "reset", "threshold", "tau_mem", "tau_syn_exc", "tau_syn_inh",
                 "gain_exc", "gain_inh")
LEAK, RESET, THRESHOLD, TAU_MEM, TAU_SYN_EXC, TAU_SYN_INH, GAIN_EXC, GAIN_INH = range(8)

#: default stationary std of the free membrane's temporal noise (volts, ~0.3 ADC LSB)
DEFAULT_NOISE_SIGMA_V = 1.5e-3
#: the membrane cannot leave the supply rails
V_MIN_V = 0.0
V_MAX_V = 1.2


# --------------------------------------------------------------------------
# physical parameters
@dataclass(frozen=True)
class NeuronPhysical:
    """True physical parameters of neurons (float64 tensors ``[..., n_neurons]``)."""

    v_leak_v: torch.Tensor
    v_reset_v: torch.Tensor
    v_thresh_v: torch.Tensor
    tau_mem_us: torch.Tensor
    tau_syn_exc_us: torch.Tensor
    tau_syn_inh_us: torch.Tensor
    gain_exc_v_per_us: torch.Tensor
    gain_inh_v_per_us: torch.Tensor

    @classmethod
    def uniform(cls, n_neurons: int, **values: float) -> NeuronPhysical:
        """Identical neurons (defaults: the paper's operating point, gain 1e-3)."""
        d = dict(v_leak_v=0.375, v_reset_v=0.375, v_thresh_v=0.703125, tau_mem_us=6.0,
                 tau_syn_exc_us=6.0, tau_syn_inh_us=6.0, gain_exc_v_per_us=1e-3,
                 gain_inh_v_per_us=1e-3)
        unknown = set(values) - set(d)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}")
        d.update(values)
        return cls(**{k: torch.full((n_neurons,), float(v), dtype=torch.float64)
                      for k, v in d.items()})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------
# transfer curves: 10-bit setting -> physical value
@dataclass(frozen=True)
class TransferRanges:
    """Nominal (mismatch-free) transfer curves of the analog settings.

    Voltages linear ``v_lo_v .. v_hi_v``; time constants logarithmic (the
    feasible ranges of docs/paper.md, "Calibration"); gains linear ``0 .. gain_hi_v_per_us``."""

    v_lo_v: float = 0.0
    v_hi_v: float = 1.2
    tau_mem_lo_us: float = 0.5
    tau_mem_hi_us: float = 60.0
    tau_syn_lo_us: float = 0.3
    tau_syn_hi_us: float = 30.0
    gain_hi_v_per_us: float = 2.5e-3

    def bounds(self, index: int) -> tuple[float, float]:
        kind = SETTING_KINDS[index]
        if kind == "voltage":
            return self.v_lo_v, self.v_hi_v
        if kind == "gain":
            return 0.0, self.gain_hi_v_per_us
        if index == TAU_MEM:
            return self.tau_mem_lo_us, self.tau_mem_hi_us
        return self.tau_syn_lo_us, self.tau_syn_hi_us


#: physical values the *nominal* settings aim at (the paper's operating point)
NOMINAL_VALUES = (80 * 1.2 / 256, 80 * 1.2 / 256, 150 * 1.2 / 256, 6.0, 6.0, 6.0, 1e-3, 1e-3)


def transfer(index: int, settings: torch.Tensor, setting_bits: int, ranges: TransferRanges,
             offset=0.0, slope=0.0, nonlin=0.0) -> torch.Tensor:
    """Physical value of setting ``index`` (float64) for integer ``settings``.

    ``x = s / (2**bits - 1)``, ``shape = x*(1 + slope) + nonlin*4x(1-x)`` (strictly
    increasing for the clipped deviations of mismatch.py), then
    voltage: ``lo + (hi-lo)*shape + offset``; tau: ``lo * (hi/lo)**shape * exp(offset)``;
    gain: ``hi * shape * exp(offset)``."""
    x = settings.to(torch.float64) / float((1 << setting_bits) - 1)
    shape = x * (1.0 + slope) + nonlin * 4.0 * x * (1.0 - x)
    lo, hi = ranges.bounds(index)
    kind = SETTING_KINDS[index]
    if kind == "voltage":
        return lo + (hi - lo) * shape + offset
    if kind == "tau":
        return lo * torch.exp(math.log(hi / lo) * shape + offset)
    return hi * shape * torch.exp(torch.as_tensor(offset, dtype=torch.float64))


def nominal_settings(cfg: ChipConfig, ranges: TransferRanges | None = None,
                     values=NOMINAL_VALUES) -> torch.Tensor:
    """Settings ``[n_neurons, 8]`` (int64) that the *nominal* transfer curves map to
    ``values``: what an uncalibrated chip is run with."""
    ranges = ranges or TransferRanges()
    smax = (1 << cfg.analog_setting_bits) - 1
    row = []
    for i, v in enumerate(values):
        lo, hi = ranges.bounds(i)
        x = math.log(v / lo) / math.log(hi / lo) if SETTING_KINDS[i] == "tau" \
            else (v - lo) / (hi - lo)
        row.append(min(max(round(x * smax), 0), smax))
    return torch.tensor(row, dtype=torch.int64).expand(cfg.n_neurons, 8).clone()


# --------------------------------------------------------------------------
# step function
class LIFState(NamedTuple):
    """Dynamic state, tensors ``[batch, n_neurons]`` of the simulation dtype."""

    v_mem_v: torch.Tensor
    i_exc_v_per_us: torch.Tensor
    i_inh_v_per_us: torch.Tensor


def _exact_propagators(tau_mem_us: torch.Tensor, tau_syn_us: torch.Tensor, dt_us: float):
    """(decay_syn, k_us): ``I(dt) = decay_syn*I(0)``; the membrane response at ``dt``
    to a current ``I(0)`` decaying from t=0 is ``k_us * I(0)``, exactly::

        k = dt * exp(-dt/tau_m) * expm1(x) / x,   x = dt*(1/tau_m - 1/tau_s)

    (= tau_m tau_s/(tau_m - tau_s) (e^{-dt/tau_m} - e^{-dt/tau_s}); = dt e^{-dt/tau}
    when tau_m == tau_s; no cancellation when they are close)."""
    decay_mem = torch.exp(-dt_us / tau_mem_us)
    decay_syn = torch.exp(-dt_us / tau_syn_us)
    x = dt_us * (1.0 / tau_mem_us - 1.0 / tau_syn_us)
    zero = x == 0
    ratio = torch.where(zero, torch.ones_like(x), torch.expm1(x) / torch.where(zero, 1.0, x))
    return decay_syn, dt_us * decay_mem * ratio


@dataclass(frozen=True)
class LIFParams:
    """Per-neuron constants of ``lif_step`` (tensors ``[n_neurons]`` or
    ``[batch, n_neurons]`` of the simulation dtype/device), all precomputed in
    float64 on the CPU and then cast, so the same on every device."""

    dt_us: float
    v_leak_v: torch.Tensor
    v_reset_v: torch.Tensor
    v_thresh_v: torch.Tensor
    #: exp(-dt/tau_mem)
    decay_mem: torch.Tensor
    #: exp(-dt/tau_syn_exc), exp(-dt/tau_syn_inh)
    decay_syn_exc: torch.Tensor
    decay_syn_inh: torch.Tensor
    #: membrane change over one step per unit synaptic current at the step start (µs)
    k_exc_us: torch.Tensor
    k_inh_us: torch.Tensor
    gain_exc_v_per_us: torch.Tensor
    gain_inh_v_per_us: torch.Tensor
    #: per-step std of the membrane noise (V), None = noise off
    noise_step_v: torch.Tensor | None = None
    v_min_v: float = V_MIN_V
    v_max_v: float = V_MAX_V
    #: merged pairs (None: none merged): ``merge_top`` / ``merge_bottom`` bool [n],
    #: the top / bottom circuit of a merged pair; ``merge_partner`` int64 [n], a
    #: top circuit's bottom partner (else the neuron itself); ``merge_follow``
    #: int64 [n], a bottom circuit's top partner (else itself)
    merge_top: torch.Tensor | None = None
    merge_partner: torch.Tensor | None = None
    merge_follow: torch.Tensor | None = None
    merge_bottom: torch.Tensor | None = None
    #: the noise's generator (model/noise.py ``NOISE_MODELS``)
    noise_model: str = "box-muller"

    @property
    def dtype(self) -> torch.dtype:
        return self.v_leak_v.dtype

    @property
    def device(self) -> torch.device:
        return self.v_leak_v.device

    @property
    def n_neurons(self) -> int:
        return self.v_leak_v.shape[-1]

    @classmethod
    def from_physical(cls, phys: NeuronPhysical, dt_us: float, *, noise_sigma_v: float = 0.0,
                      dtype: torch.dtype = torch.float32, device="cpu",
                      v_min_v: float = V_MIN_V, v_max_v: float = V_MAX_V,
                      merge=None, noise_model: str = "box-muller",
                      weight_shift: int = 0) -> LIFParams:
        """``noise_sigma_v``: stationary std of the free membrane's noise (an
        Ornstein-Uhlenbeck process sampled exactly per step: per-step std
        ``noise_sigma_v * sqrt(1 - exp(-2 dt/tau_mem))``); 0 switches noise off.
        ``merge``: the merge bits ``[n_neurons // 2]`` of a two-half chip (see
        the module docstring), None or all zero: no neuron merged.
        ``noise_model``: the noise's generator (model/noise.py ``NOISE_MODELS``).
        ``weight_shift``: the synapse sums come in units of ``2**-weight_shift``
        weight LSB (the synapses' fixed-point gains, model/mismatch.py
        :func:`~spikeloop.model.mismatch.synapse_gain_table`): the gains are
        divided by ``2**weight_shift``, exactly (a power of two), so a sum
        ``2**weight_shift`` times as large gives the same bits."""
        noise_kind(noise_model)
        p = {k: v.to(torch.float64).cpu() for k, v in phys.as_dict().items()}
        if weight_shift:
            for k in ("gain_exc_v_per_us", "gain_inh_v_per_us"):
                p[k] = torch.ldexp(p[k], torch.tensor(-int(weight_shift)))
        n = p["tau_mem_us"].shape[-1]
        merged = None
        if merge is not None:
            mb = torch.as_tensor(np.asarray(merge), dtype=torch.bool).reshape(-1)
            if n % 2 or mb.numel() != n // 2:
                raise ValueError(f"merge must hold one bit per column of a two-half chip "
                                 f"({n // 2} for {n} neurons), got {mb.numel()}")
            if bool(mb.any()):
                merged = mb
        tau_mem_of_syn = p["tau_mem_us"]
        if merged is not None:
            if p["tau_mem_us"].dim() != 1:
                raise ValueError("merged neurons need per-neuron parameters [n_neurons]")
            # the bottom circuit's currents drive the top's membrane
            top_tau = torch.cat([p["tau_mem_us"][: n // 2]] * 2)
            tau_mem_of_syn = torch.where(torch.cat([torch.zeros_like(merged), merged]),
                                         top_tau, p["tau_mem_us"])
        decay_mem = torch.exp(-dt_us / p["tau_mem_us"])
        dse, ke = _exact_propagators(tau_mem_of_syn, p["tau_syn_exc_us"], dt_us)
        dsi, ki = _exact_propagators(tau_mem_of_syn, p["tau_syn_inh_us"], dt_us)
        noise = None
        if noise_sigma_v:
            noise = noise_sigma_v * torch.sqrt(-torch.expm1(-2.0 * dt_us / p["tau_mem_us"]))

        def c(t):
            return None if t is None else t.to(dtype=dtype, device=device)

        top = partner = follow = bottom = None
        if merged is not None:
            half = n // 2
            idx = torch.arange(n)
            top = torch.cat([merged, torch.zeros_like(merged)])
            bottom = torch.cat([torch.zeros_like(merged), merged])
            partner = torch.where(top, (idx + half) % n, idx).to(device)
            follow = torch.where(bottom, (idx + half) % n, idx).to(device)
            top, bottom = top.to(device), bottom.to(device)
        return cls(float(dt_us), c(p["v_leak_v"]), c(p["v_reset_v"]), c(p["v_thresh_v"]),
                   c(decay_mem), c(dse), c(dsi), c(ke), c(ki), c(p["gain_exc_v_per_us"]),
                   c(p["gain_inh_v_per_us"]), c(noise), float(v_min_v), float(v_max_v),
                   top, partner, follow, bottom, noise_model)

    def initial_state(self, batch: int) -> LIFState:
        """Resting state: membrane at ``v_leak``, no synaptic current."""
        shape = (batch, self.n_neurons)
        v = self.v_leak_v.expand(shape).clone()
        z = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return LIFState(v, z, z.clone())


def lif_step(state: LIFState, params: LIFParams, exc_sum: torch.Tensor | None,
             inh_sum: torch.Tensor | None, reset_hold: torch.Tensor | None = None,
             noise: torch.Tensor | None = None) -> tuple[LIFState, torch.Tensor]:
    """Advance all neurons by one analog step (see the module docstring for the order).

    ``exc_sum``, ``inh_sum``: integer sums of the matched weights per neuron
    column in this step, ``[batch, n_neurons]`` (None = 0); ``reset_hold``: bool
    ``[batch, n_neurons]`` (None = no neuron held); ``noise``: volts added to the
    membrane (``noise.membrane_noise``; None = none).  Returns the new state and
    the bool spikes ``[batch, n_neurons]`` of this step.

    On the CPU in float32 with per-neuron parameters and at least 4096 neurons x
    samples (the fast backend's batches) the step is one compiled pass over the
    neurons (:func:`_lif_kernel`); elsewhere (CUDA, float64, per-row parameters,
    gradients, small batches) torch operations (:func:`_lif_step_torch`).  Both
    do the same IEEE-754 operations in the same order, so the bits are the same
    (tests/test_model_analog.py)."""
    if _compiled_applies(state, params, exc_sum, inh_sum, reset_hold, noise):
        return _lif_step_compiled(state, params, exc_sum, inh_sum, reset_hold, noise)
    return _lif_step_torch(state, params, exc_sum, inh_sum, reset_hold, noise)


#: the compiled step from this many neurons x samples on (below, the torch
#: operations are as fast, and a process that never reaches it never loads the
#: compiled code: about 0.3 s once, e.g. in each co-simulation)
_COMPILED_MIN = 4096


def _compiled_applies(state, params, *inputs) -> bool:
    if (params.device.type != "cpu" or params.dtype != torch.float32
            or params.v_leak_v.dim() != 1 or state.v_mem_v.numel() < _COMPILED_MIN):
        return False
    tensors = [*state, *(x for x in inputs if x is not None)]
    return all(x.device.type == "cpu" and not x.requires_grad and x.dim() == 2
               for x in tensors) and not params.v_leak_v.requires_grad


_NONE_F32 = np.zeros((1, 1), dtype=np.float32)
_NONE_B = np.zeros((1, 1), dtype=np.bool_)


def _kernel_params(params: LIFParams) -> tuple:
    """``params`` as the kernel's numpy arrays (made once per LIFParams)."""
    cached = params.__dict__.get("_kernel_params")
    if cached is None:
        p = params
        if p.merge_top is None:
            merge = (False, _NONE_B[0])
        else:
            # merged pairs are the two circuits of a column (from_physical): the
            # kernel takes the column's merge bit and the offset of the second half
            half = p.n_neurons // 2
            top = p.merge_top.numpy()
            assert (p.merge_partner.numpy() == np.arange(p.n_neurons) + half * top).all()
            merge = (True, np.ascontiguousarray(top[:half]))
        cached = (p.v_leak_v.numpy(), p.v_reset_v.numpy(), p.v_thresh_v.numpy(),
                  p.decay_mem.numpy(), p.decay_syn_exc.numpy(), p.decay_syn_inh.numpy(),
                  p.k_exc_us.numpy(), p.k_inh_us.numpy(), p.gain_exc_v_per_us.numpy(),
                  p.gain_inh_v_per_us.numpy(), np.float32(p.v_min_v), np.float32(p.v_max_v),
                  *merge)
        object.__setattr__(params, "_kernel_params", cached)     # (a frozen dataclass)
    return cached


def _as_np(x: torch.Tensor | None, shape, none: np.ndarray, dtypes) -> np.ndarray:
    """``x`` as a C-contiguous numpy array of ``shape`` (its own memory when it is
    one already), of one of ``dtypes`` (else converted to the first)."""
    if x is None:
        return none
    a = x.detach().numpy()
    if a.shape != shape or not a.flags.c_contiguous:
        a = np.ascontiguousarray(np.broadcast_to(a, shape))
    return a if a.dtype in dtypes else a.astype(dtypes[0])


_F32 = (np.dtype(np.float32),)
_SUMS = (np.dtype(np.float32), np.dtype(np.int32))
_BOOL = (np.dtype(np.bool_),)


def _lif_step_compiled(state: LIFState, params: LIFParams, exc_sum, inh_sum, reset_hold,
                       noise) -> tuple[LIFState, torch.Tensor]:
    """:func:`lif_step` by :func:`_lif_kernel` (CPU, float32, parameters [n])."""
    shape = tuple(state.v_mem_v.shape)
    out = torch.empty((3, *shape), dtype=torch.float32)
    spikes = torch.empty(shape, dtype=torch.bool)
    o = out.numpy()
    _lif_kernel(*(_as_np(x, shape, _NONE_F32, _F32) for x in state),
                _as_np(exc_sum, shape, _NONE_F32, _SUMS), _as_np(inh_sum, shape, _NONE_F32, _SUMS),
                exc_sum is not None, inh_sum is not None,
                _as_np(reset_hold, shape, _NONE_B, _BOOL), reset_hold is not None,
                _as_np(noise, shape, _NONE_F32, _F32), noise is not None,
                *_kernel_params(params), o[0], o[1], o[2], spikes.numpy())
    return LIFState(out[0], out[1], out[2]), spikes


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lif_kernel(v, ie, ii, exc, inh, has_exc, has_inh, hold, has_hold, noise, has_noise,
                leak, reset, thresh, decay_mem, decay_exc, decay_inh, k_exc, k_inh, gain_exc,
                gain_inh, v_min, v_max, merged, mbits, out_v, out_ie, out_ii, out_spikes):
    """:func:`_lif_step_torch`'s operations, element by element, in its order (all
    float32: the sums are converted to float32 first, as ``.to(dtype)``), one row
    at a time (:func:`lif_row`, on copies of the state's rows in the outputs)."""
    B, n = v.shape
    dv = np.empty(n, dtype=np.float32)
    for b in range(B):
        # (the rows picked before the call: numba refuses conditional arguments there)
        be = b if has_exc else 0
        bi = b if has_inh else 0
        bh = b if has_hold else 0
        bn = b if has_noise else 0
        ov, oe, oi = out_v[b], out_ie[b], out_ii[b]
        ov[:] = v[b]
        oe[:] = ie[b]
        oi[:] = ii[b]
        lif_row(ov, oe, oi, exc[be], inh[bi], has_exc, has_inh, hold[bh], has_hold,
                noise[bn], has_noise, leak, reset, thresh, decay_mem, decay_exc, decay_inh,
                k_exc, k_inh, gain_exc, gain_inh, v_min, v_max, merged, mbits,
                out_spikes[b], dv)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def lif_row(v, ie, ii, exc, inh, has_exc, has_inh, hold, has_hold, noise, has_noise,
            leak, reset, thresh, decay_mem, decay_exc, decay_inh, k_exc, k_inh, gain_exc,
            gain_inh, v_min, v_max, merged, mbits, os, dv):
    """One sample's step on its state's rows ``v``, ``ie``, ``ii`` (1-d, ``n``
    neurons, updated in place; ``os``: the spikes; ``dv``: float32 scratch [n]).

    Written for the compiler's vectoriser: short loops, each over a few arrays
    (it checks at run time that an array written does not overlap one read, and
    gives up beyond a few such pairs), each element's value read before it is
    written in the same loop (a state row is never both a separate input and an
    output, which would overlap and fall back to scalar code), and no branch
    inside (``min``/``max`` as numba computes them, ``select(v_min > x, v_min,
    x)``; the flags combined with ``&``/``|``; every load unconditional).  The
    operations and their order are :func:`_lif_step_torch`'s.  Merged pairs
    (``merged``): the circuits ``j`` and ``j + n/2`` of a column whose bit
    ``mbits[j]`` is set (``merge_top`` / ``merge_bottom``); the second copies the
    first's final membrane in the last loops.  Called by every compiled caller
    (the fast backend's whole-run kernel too), so there is one definition."""
    n = len(v)
    if has_exc:
        for j in range(n):
            ie[j] = np.float32(exc[j]) * gain_exc[j] + ie[j]
    if has_inh:
        for j in range(n):
            ii[j] = np.float32(inh[j]) * gain_inh[j] + ii[j]
    if merged:
        h = n // 2
        for j in range(n):
            dv[j] = ie[j] * k_exc[j] - ii[j] * k_inh[j]
        for j in range(n):
            v[j] = (v[j] - leak[j]) * decay_mem[j] + leak[j]
        for j in range(h):
            d = dv[j]
            e = dv[j + h]
            v[j] = v[j] + (d + e if mbits[j] else d)
        for j in range(h, n):
            v[j] = v[j] + dv[j]
    else:
        for j in range(n):
            v[j] = (v[j] - leak[j]) * decay_mem[j] + leak[j]
        for j in range(n):
            v[j] = (v[j] + ie[j] * k_exc[j]) - ii[j] * k_inh[j]
    for j in range(n):
        ie[j] = ie[j] * decay_exc[j]
    for j in range(n):
        ii[j] = ii[j] * decay_inh[j]
    if has_noise:
        for j in range(n):
            v[j] = v[j] + noise[j]
    for j in range(n):
        x = v[j]
        x = v_min if v_min > x else x
        v[j] = v_max if v_max < x else x
    if has_hold:
        for j in range(n):
            x = v[j]
            r = reset[j]
            h = hold[j]
            s = (x >= thresh[j]) & (not h)
            v[j] = r if (h | s) else x
            os[j] = s
    else:
        for j in range(n):
            x = v[j]
            r = reset[j]
            s = x >= thresh[j]
            v[j] = r if s else x
            os[j] = s
    if merged:
        h = n // 2
        for j in range(h):
            m = mbits[j]
            x = v[j]
            y = v[j + h]
            v[j + h] = x if m else y
            os[j + h] = os[j + h] & (not m)


def _lif_step_torch(state: LIFState, params: LIFParams, exc_sum: torch.Tensor | None,
                    inh_sum: torch.Tensor | None, reset_hold: torch.Tensor | None = None,
                    noise: torch.Tensor | None = None) -> tuple[LIFState, torch.Tensor]:
    """:func:`lif_step` in torch operations (any device, dtype and parameter shape)."""
    # the state passed in is never written: every in-place operation below is on a
    # tensor made here (each is the same IEEE-754 operation as its out-of-place
    # form: ``a + b == b + a`` and ``a * b == b * a`` bit for bit)
    i_exc, i_inh = state.i_exc_v_per_us, state.i_inh_v_per_us
    if exc_sum is not None:
        i_exc = torch.mul(exc_sum.to(params.dtype), params.gain_exc_v_per_us).add_(i_exc)
    if inh_sum is not None:
        i_inh = torch.mul(inh_sum.to(params.dtype), params.gain_inh_v_per_us).add_(i_inh)
    v = torch.sub(state.v_mem_v, params.v_leak_v).mul_(params.decay_mem).add_(params.v_leak_v)
    exc = torch.mul(i_exc, params.k_exc_us)
    inh = torch.mul(i_inh, params.k_inh_us)
    if params.merge_top is None:
        v.add_(exc).sub_(inh)                       # (v + k_exc i_exc) - k_inh i_inh
    else:
        # merged pairs: the top membrane also takes the bottom circuit's currents
        dv = exc.sub_(inh)
        v.add_(torch.where(params.merge_top, dv + dv[..., params.merge_partner], dv))
    i_exc = (i_exc.mul_(params.decay_syn_exc) if exc_sum is not None
             else torch.mul(i_exc, params.decay_syn_exc))
    i_inh = (i_inh.mul_(params.decay_syn_inh) if inh_sum is not None
             else torch.mul(i_inh, params.decay_syn_inh))
    if noise is not None:
        v.add_(noise)
    v.clamp_(params.v_min_v, params.v_max_v)
    spikes = torch.ge(v, params.v_thresh_v)
    if reset_hold is not None:
        v = torch.where(reset_hold, params.v_reset_v, v)
        spikes &= ~reset_hold
    v = torch.where(spikes, params.v_reset_v, v)
    if params.merge_top is not None:
        # a bottom circuit shows the merged membrane and never spikes
        v = v[..., params.merge_follow]
        spikes &= ~params.merge_bottom
    return LIFState(v, i_exc, i_inh), spikes


class SimResult(NamedTuple):
    state: LIFState
    #: bool [steps, batch, n]
    spikes: torch.Tensor
    #: int64 ADC codes at each step end [steps, batch, n], or None
    adc_codes: torch.Tensor | None
    #: membrane at each step end [steps, batch, n], or None
    v_mem_v: torch.Tensor | None


def _at(x: torch.Tensor | None, t: int):
    return None if x is None else x[t]


def simulate(params: LIFParams, n_steps: int, *, batch: int | None = None,
             state: LIFState | None = None, exc_sum: torch.Tensor | None = None,
             inh_sum: torch.Tensor | None = None, reset_hold: torch.Tensor | None = None,
             adc: ADCParams | None = None, noise_seed: int = 0,
             sample_idx: torch.Tensor | None = None, step0: int = 0,
             record_v: bool = False) -> SimResult:
    """Run ``n_steps`` analog steps (a plain loop over :func:`lif_step`).

    Inputs are time-major ``[n_steps, batch, n_neurons]`` (or broadcastable to it).
    ``sample_idx``: global sample index of each batch row (int64 ``[batch]``,
    default ``arange(batch)``), with ``noise_seed`` and the global step
    ``step0 + t`` the key of the noise.  ADC codes sample the membrane at the end
    of each step (after the reset)."""
    if state is None:
        if batch is None:
            raise ValueError("give batch or state")
        state = params.initial_state(batch)
    batch = state.v_mem_v.shape[0]
    if sample_idx is None:
        sample_idx = torch.arange(batch, dtype=torch.int64)
    shape = (batch, params.n_neurons)

    def prep(x):
        return None if x is None else torch.broadcast_to(
            torch.as_tensor(x, device=params.device), (n_steps, *shape))

    exc_sum, inh_sum, reset_hold = prep(exc_sum), prep(inh_sum), prep(reset_hold)
    spikes, codes, vs = [], [], []
    for t in range(n_steps):
        noise = membrane_noise(params.noise_step_v, noise_seed, sample_idx, step0 + t,
                               params.noise_model)
        state, s = lif_step(state, params, _at(exc_sum, t), _at(inh_sum, t),
                            _at(reset_hold, t), noise)
        spikes.append(s)
        if adc is not None:
            codes.append(adc_convert(state.v_mem_v, adc))
        if record_v:
            vs.append(state.v_mem_v)
    return SimResult(state, torch.stack(spikes),
                     torch.stack(codes) if adc is not None else None,
                     torch.stack(vs) if record_v else None)


# --------------------------------------------------------------------------
# one chip specimen
class AnalogChipModel:
    """The analog half of one chip specimen: config + chip seed (its mismatch).

    ``physical(settings)`` maps integer settings ``[..., n_neurons, 8]`` through
    each neuron's own mismatched transfer curves to the TRUE physical parameters.
    That truth is hidden from calibration (which sees the chip only through
    ``calibration.ChipProbe``); evaluation and the emulator backends use it."""

    def __init__(self, cfg: ChipConfig, chip_seed: int, mismatch: MismatchConfig | None = None,
                 *, noise_sigma_v: float = DEFAULT_NOISE_SIGMA_V,
                 ranges: TransferRanges | None = None, noise_model: str = "box-muller"):
        self.cfg = cfg
        self.chip_seed = int(chip_seed)
        self.mismatch_config = mismatch or MismatchConfig()
        self.noise_sigma_v = float(noise_sigma_v)
        noise_kind(noise_model)
        #: the temporal noise's generator (model/noise.py ``NOISE_MODELS``)
        self.noise_model = noise_model
        self.ranges = ranges or TransferRanges()
        self._mm: ChipMismatch = draw_mismatch(cfg, self.chip_seed, self.mismatch_config)
        self._dev = {k: torch.from_numpy(np.ascontiguousarray(getattr(self._mm, k).T))
                     for k in ("offset", "slope", "nonlin")}  # [n, 8] float64
        #: every synapse's fixed-point gain (int32 [halves, rows, columns], units of
        #: ``2**-WEIGHT_GAIN_BITS``), None: no synapse or driver mismatch
        self.synapse_gains = synapse_gain_table(cfg, self.chip_seed, self.mismatch_config)

    @property
    def n_neurons(self) -> int:
        return self.cfg.n_neurons

    @property
    def dt_us(self) -> float:
        return self.cfg.analog_step_us

    @property
    def mismatch(self) -> ChipMismatch:
        """The drawn deviations (hidden truth; for evaluation and tests only)."""
        return self._mm

    def check_settings(self, settings) -> torch.Tensor:
        s = torch.as_tensor(settings)
        if s.dtype.is_floating_point or s.dtype == torch.bool:
            raise TypeError("analog settings must be an integer tensor")
        if s.shape[-2:] != (self.n_neurons, 8):
            raise ValueError(f"settings must have shape [..., {self.n_neurons}, 8], "
                             f"got {tuple(s.shape)}")
        smax = (1 << self.cfg.analog_setting_bits) - 1
        if s.numel() and (int(s.min()) < 0 or int(s.max()) > smax):
            raise ValueError(f"analog settings must lie in 0..{smax}")
        return s.to(torch.int64).cpu()

    def physical(self, settings) -> NeuronPhysical:
        """True physical parameters (float64, ``[..., n_neurons]``) under ``settings``."""
        s = self.check_settings(settings)
        bits = self.cfg.analog_setting_bits
        vals = [transfer(i, s[..., i], bits, self.ranges, self._dev["offset"][:, i],
                         self._dev["slope"][:, i], self._dev["nonlin"][:, i])
                for i in range(8)]
        return NeuronPhysical(*vals)

    def nominal_settings(self) -> torch.Tensor:
        return nominal_settings(self.cfg, self.ranges)

    def lif_params(self, settings, *, dtype: torch.dtype = torch.float32, device="cpu",
                   noise_sigma_v: float | None = None, merge=None,
                   weight_shift: int = 0) -> LIFParams:
        """``merge``: the image's ``neuron_merge`` bits (None: no neuron merged);
        ``weight_shift``: :meth:`LIFParams.from_physical`'s."""
        sigma = self.noise_sigma_v if noise_sigma_v is None else noise_sigma_v
        return LIFParams.from_physical(self.physical(settings), self.dt_us,
                                       noise_sigma_v=sigma, dtype=dtype, device=device,
                                       merge=merge, noise_model=self.noise_model,
                                       weight_shift=weight_shift)

    def adc_params(self, *, dtype: torch.dtype = torch.float32, device="cpu") -> ADCParams:
        return ADCParams.build(self._mm.adc_gain_dev, self._mm.adc_offset_lsb,
                               self.cfg.adc_bits, dtype=dtype, device=device)


# --------------------------------------------------------------------------
# closed forms (references for tests and calibration targets)
def psp_closed_form(t_us, tau_mem_us: float, tau_syn_us: float, jump_v_per_us: float):
    """Membrane deviation from rest at time ``t_us`` after a synaptic current jump
    (float64 numpy): ``J tau_m tau_s/(tau_m - tau_s) (e^{-t/tau_m} - e^{-t/tau_s})``,
    evaluated as ``J t e^{-t/tau_m} expm1(x)/x``, ``x = t (1/tau_m - 1/tau_s)``,
    which stays accurate when the time constants are (nearly) equal."""
    t = np.asarray(t_us, dtype=np.float64)
    x = t * (1.0 / tau_mem_us - 1.0 / tau_syn_us)
    safe = np.where(x == 0, 1.0, x)
    ratio = np.where(x == 0, 1.0, np.expm1(safe) / safe)
    return jump_v_per_us * t * np.exp(-t / tau_mem_us) * ratio


def psp_peak(tau_mem_us: float, tau_syn_us: float, jump_v_per_us: float) -> tuple[float, float]:
    """(peak time µs, peak height V) of :func:`psp_closed_form`."""
    if tau_mem_us == tau_syn_us:
        t = tau_mem_us
    else:
        t = (math.log(tau_syn_us / tau_mem_us) * tau_mem_us * tau_syn_us
             / (tau_syn_us - tau_mem_us))
    return t, float(psp_closed_form(t, tau_mem_us, tau_syn_us, jump_v_per_us))


def lif_rate_per_us(v_inf_v: float, v_reset_v: float, v_thresh_v: float, tau_mem_us: float,
                dt_us: float | None = None) -> float:
    """Analytic firing rate (spikes per µs of hardware time) of a LIF
    neuron whose membrane relaxes to ``v_inf`` (constant drive), reset to
    ``v_reset``, no refractory period.  With ``dt_us`` the interval is rounded up
    to whole analog steps (threshold checked at step ends)."""
    if v_inf_v <= v_thresh_v:
        return 0.0
    isi = tau_mem_us * math.log((v_inf_v - v_reset_v) / (v_inf_v - v_thresh_v))
    if dt_us is not None:
        isi = math.ceil(isi / dt_us) * dt_us
    return 1.0 / isi
