"""A general network (:class:`~spikeloop.nir.spec.GraphSpec`) in the ideal model and in
the loop on a chip.

    net = GraphNetwork(spec)                                  # the ideal model
    net = GraphChipNetwork(spec, chip, backend="fast")        # forward pass on the chip
    out = net(raster, times_us)                               # a NetworkOutput
    loss = F.nll_loss(out.log_probs, labels) + net.regularization(out)

Both follow :class:`spikeloop.nn.LoopNetwork` (the paper's network), generalised to
any number of populations and links: every step ``t``, the populations in order,

    I' = alpha I + sum_links W s_pre          s_pre: this step's spikes of an earlier
                                              population or input, the previous step's
                                              for a recurrent link
    V' = beta V + I' - (1 - reset) z          (spiking; z: the previous step's spike)
    z' = Heaviside(V' - 1)                    (SuperSpike surrogate)
    V' = beta V + I'                          (readout)

and the readout is ``log_softmax(readout_scale * max_t V_out)``.  With ``alpha =
exp(-dt/tau_syn)``, ``beta = exp(-dt/tau_mem)`` and ``reset = 0`` this is exactly
:func:`spikeloop.nn.functional.lif_step`.

In the loop (:class:`GraphChipNetwork`): the network is placed once
(:func:`spikeloop.nn.placement.place`, every synapse of every link reserved so any
weight can be written later; on merged neurons when it does not fit otherwise), every
population's neurons get the chip's calibrated settings moved to the population's
time constants, reset and synaptic gain (:func:`chip_settings`), every pass writes
the quantised weights, runs the batch, and the measured membranes and spikes of every
population replace the model's through gradient injection, as in
:class:`spikeloop.nn.chip_network.ChipNetwork`, whose event, baseline and run helpers
it uses.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from spikeloop.model.adc import adc_lsb_v
from spikeloop.model.analog import (
    GAIN_EXC,
    GAIN_INH,
    RESET,
    TAU_MEM,
    TAU_SYN_EXC,
    TAU_SYN_INH,
    THRESHOLD,
    TransferRanges,
)
from spikeloop.model.calibration import CalibrationTargets
from spikeloop.model.chip import Chip
from spikeloop.nir.spec import GraphSpec, Population
from spikeloop.nn import functional as SF
from spikeloop.nn.chip_network import ChipNetwork, adc_period_cycles, measure_batch
from spikeloop.nn.modules import HIDDEN_SCALE, WEIGHT_MAX, NetworkOutput, check_raster
from spikeloop.nn.placement import INPUT, Placement, PlacementError, output_scale, place, quantize

__all__ = ["GraphNetwork", "GraphChipNetwork", "ChipMapping", "chip_settings",
           "population_scale", "gain_factor", "graph_kwargs", "make_graph_network",
           "GAIN_HEADROOM"]

#: a spiking population whose synaptic gain must grow by more than this factor over
#: the calibrated one (fast time constants) gets a larger weight scale instead (the
#: nominal gain range reaches 2.5x the calibrated gain; the rest is headroom for the
#: specimen's mismatch)
GAIN_HEADROOM = 2.0


def _charge(alpha: np.ndarray, beta: np.ndarray, tau_syn_us: np.ndarray,
            tau_mem_us: np.ndarray) -> np.ndarray:
    """What a unit of input must deposit on the chip, relative terms: the model's
    time integral of a PSP, ``1 / ((1 - alpha)(1 - beta))`` steps, over the chip's,
    ``tau_syn * tau_mem`` (per unit of synaptic gain)."""
    return 1.0 / ((1.0 - alpha) * (1.0 - beta) * tau_syn_us * tau_mem_us)


def _calibrated_point(dt_us: float) -> tuple[float, float, float]:
    """(tau_syn, tau_mem, charge) of the calibration's working point."""
    t = CalibrationTargets()
    a, b = math.exp(-dt_us / t.tau_syn_us), math.exp(-dt_us / t.tau_mem_us)
    return t.tau_syn_us, t.tau_mem_us, float(_charge(np.array(a), np.array(b),
                                                     np.array(t.tau_syn_us),
                                                     np.array(t.tau_mem_us)))


def _chip_taus(p: Population, dt_us: float, ranges: TransferRanges):
    """The chip's (tau_syn, tau_mem) in µs for ``p``: alpha 0 (no synaptic current)
    takes the fastest synapse the transfer curve has."""
    ts, tm = p.tau_us(dt_us)
    return np.where(p.alpha > 0, ts, ranges.tau_syn_lo_us), tm


def gain_factor(p: Population, dt_us: float) -> np.ndarray:
    """Per neuron: how much larger the synaptic gain must be than the calibrated one
    for a unit of model input to move the chip's membrane as the model's (1 at the
    calibration's working point, tau_syn = tau_mem = 6 µs)."""
    ranges = TransferRanges()
    ts, tm = _chip_taus(p, dt_us, ranges)
    return _charge(p.alpha, p.beta, ts, tm) / _calibrated_point(dt_us)[2]


def population_scale(spec: GraphSpec, p: Population) -> float:
    """Chip weight per unit of model weight into the spiking population ``p``: the
    paper's 240, larger when the gain factor exceeds :data:`GAIN_HEADROOM` (fast
    time constants).  Readouts take the adaptive output scale instead."""
    k = float(np.max(gain_factor(p, spec.dt_us)))
    return HIDDEN_SCALE * max(1.0, k / GAIN_HEADROOM)


class GraphNetwork(nn.Module):
    """``spec`` in the ideal model; ``forward(raster [T, B, n_in], times_us=None)``
    returns a :class:`NetworkOutput` (``v_out``: the readouts in order,
    ``z_hidden``/``v_hidden``: the spiking populations in order)."""

    def __init__(self, spec: GraphSpec, *, readout_scale: float = 10.0,
                 beta: float = SF.SUPERSPIKE_BETA) -> None:
        super().__init__()
        self.spec, self.readout_scale, self.surrogate_beta = spec, float(readout_scale), beta
        #: where a measured step's surrogate derivative is taken (``SF.SURROGATE_AT``)
        self.surrogate_at = "measured"
        self.n_in, self.n_hidden, self.n_out = spec.n_in, spec.n_hidden, spec.n_out
        self.recurrent = spec.recurrent
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.as_tensor(np.asarray(k.weight, dtype=np.float32)).clone())
             for k in spec.links])
        for k, p in enumerate(spec.populations):
            for name in ("alpha", "beta", "reset"):
                self.register_buffer(f"{name}_{k}", torch.as_tensor(getattr(p, name)),
                                     persistent=False)
        #: per link: chip weight per model weight (spiking posts) or None (readouts)
        self.scales = [population_scale(spec, spec.population(k.post))
                       if spec.population(k.post).spiking else None for k in spec.links]

    def check_input(self, raster: torch.Tensor, times_us: torch.Tensor | None = None) -> None:
        check_raster(raster, times_us, self.n_in)

    def _consts(self, k: int, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(getattr(self, f"{n}_{k}").to(dtype) for n in ("alpha", "beta", "reset"))

    def model_pass(self, raster: torch.Tensor, measured: dict | None = None) -> NetworkOutput:
        """The ideal network on ``raster``; ``measured``: population -> ``(v, z)``
        (``[T, B, n]``, ``z`` None for readouts) measured on a chip, injected step
        by step (forward: measured, backward: the ideal equations)."""
        spec, T, B = self.spec, raster.shape[0], raster.shape[1]
        dtype = self.weights[0].dtype
        raster = raster.to(dtype)
        pops = spec.populations
        index = {p.name: k for k, p in enumerate(pops)}
        consts = [self._consts(k, dtype) for k in range(len(pops))]
        into = [[(j, lk) for j, lk in enumerate(spec.links) if lk.post == p.name] for p in pops]
        rec = [spec.is_recurrent(lk) for lk in spec.links]
        zero = [raster.new_zeros(B, p.size) for p in pops]
        i_s, v_s, z_s = list(zero), list(zero), list(zero)
        vs, zs = [[] for _ in pops], [[] for _ in pops]
        for t in range(T):
            z_prev = list(z_s)
            for k, p in enumerate(pops):
                x = zero[k]
                for j, lk in into[k]:
                    if lk.pre == INPUT:
                        s = raster[t]
                    else:
                        s = (z_prev if rec[j] else z_s)[index[lk.pre]]
                    x = x + torch.matmul(s, self.weights[j].t())
                a, b, r = consts[k]
                i = a * i_s[k] + x
                m = None if measured is None else measured.get(p.name)
                if p.spiking:
                    v = b * v_s[k] + i - (1.0 - r) * z_prev[k]
                    if m is not None and self.surrogate_at == "model-pre-reset":
                        # the chip's sample after a spike shows its reset (SF.lif_step)
                        v = v + (b * (1.0 - r) * z_prev[k]).detach()
                    v, z = SF.spike(v, 1.0, self.surrogate_beta,
                                    measured_v=None if m is None else m[0][t],
                                    measured_z=None if m is None or m[1] is None else m[1][t],
                                    surrogate_at=self.surrogate_at)
                    z_s[k] = z
                    zs[k].append(z)
                else:
                    v = b * v_s[k] + i
                    if m is not None:
                        v = SF.inject(m[0][t], v)
                i_s[k], v_s[k] = i, v
                vs[k].append(v)
        stack = [torch.stack(v) for v in vs]
        v_out = torch.cat([stack[k] for k, p in enumerate(pops) if not p.spiking], dim=-1)
        sp = [k for k, p in enumerate(pops) if p.spiking]
        empty = raster.new_zeros(T, B, 0)
        z_h = torch.cat([torch.stack(zs[k]) for k in sp], dim=-1) if sp else empty
        v_h = torch.cat([stack[k] for k in sp], dim=-1) if sp else empty
        return NetworkOutput(SF.max_over_time_log_softmax(v_out, self.readout_scale),
                             v_out, z_h, v_h)

    def forward(self, raster: torch.Tensor, times_us: torch.Tensor | None = None
                ) -> NetworkOutput:
        self.check_input(raster, times_us)
        return self.model_pass(raster)

    def hidden_weights(self) -> list[torch.Tensor]:
        """The weights of the feed-forward links into spiking populations (the
        paper's "hidden weights", which its weight regulariser and clamp act on)."""
        return [self.weights[j] for j, lk in enumerate(self.spec.links)
                if self.spec.population(lk.post).spiking and not self.spec.is_recurrent(lk)]

    def regularization(self, out: NetworkOutput, *, spike_strength: float = 5e-4,
                       weight_strength: float = 0.1) -> torch.Tensor:
        """The paper's: ``spike_strength * mean (spike count)^2`` over the spiking
        neurons, ``weight_strength * mean(W^2)`` over :meth:`hidden_weights`."""
        reg = SF.spike_count_regularizer(out.z_hidden, spike_strength)
        ws = self.hidden_weights()
        if ws:
            reg = reg + SF.weight_regularizer(torch.cat([w.reshape(-1) for w in ws]),
                                              weight_strength)
        return reg

    @torch.no_grad()
    def after_step(self) -> None:
        """Weights into spiking populations clamped to the chip's range
        ``+-63 / scale`` (the paper does this for every run)."""
        for w, s in zip(self.weights, self.scales, strict=True):
            if s is not None:
                w.clamp_(-WEIGHT_MAX / s, WEIGHT_MAX / s)

    def to_spec(self) -> GraphSpec:
        """The network with its present weights, as a :class:`GraphSpec`."""
        d = self.spec.to_dict()
        for lk, w in zip(d["links"], self.weights, strict=True):
            lk["weight"] = w.detach().cpu().numpy().astype(np.float32)
        return GraphSpec.from_dict(d)

    def extra_repr(self) -> str:
        return (f"n_in={self.n_in}, populations="
                f"{[(p.name, p.size, p.spiking) for p in self.spec.populations]}, "
                f"links={[(lk.pre, lk.post) for lk in self.spec.links]}")


class ChipMapping:
    """What :func:`chip_settings` worked out: the analog settings of the placed
    neurons, the weight scale of every population (spiking: fixed; readouts: None,
    adaptive per pass), the factor from measured to model units of every readout
    neuron, and notes for the report."""

    def __init__(self, settings: np.ndarray, trace_factor: dict[str, np.ndarray],
                 notes: list[str], summary: dict):
        self.settings, self.trace_factor, self.notes, self.summary = (
            settings, trace_factor, notes, summary)


def chip_settings(spec: GraphSpec, chip: Chip, placement: Placement) -> ChipMapping:
    """The analog settings of every placed neuron: the chip's calibrated settings,
    moved by the nominal transfer curves' slopes (docs/analog.md) to the
    population's time constants, reset and synaptic gain (see docs/nir.md):

    - tau_mem, tau_syn (exc and inh): ``s + round(smax * ln(tau / 6 µs) / ln(hi / lo))``
      (the curves are logarithmic); no synaptic current: the fastest setting, 0;
    - reset: ``s + round(reset * 70 codes * LSB / (1.2 V / smax))``;
    - synaptic gains: ``round(s * k)``, ``k`` the :func:`gain_factor` (over the weight
      scale's share, :func:`population_scale`); a neuron whose gain would pass the
      highest setting gets it (counted);
    - readouts: the highest threshold (they integrate without firing), as ChipNetwork.

    Raises ValueError naming the population when a setting leaves the range."""
    cfg = chip.cfg
    ranges = TransferRanges()
    smax = (1 << cfg.analog_setting_bits) - 1
    targets = CalibrationTargets()
    settings = np.asarray(chip.settings, dtype=np.int64).copy()
    C = cfg.columns_per_half
    notes: list[str] = []
    trace_factor: dict[str, np.ndarray] = {}
    clipped = 0
    summary: dict = {}

    def steps_tau(tau, lo, hi, ref):
        return np.rint(smax * np.log(tau / ref) / math.log(hi / lo)).astype(np.int64)

    for p in spec.populations:
        top = placement.neurons[p.name]
        circuits = [top] + ([top % C + C] if p.name in placement.merged else [])
        ts, tm = _chip_taus(p, spec.dt_us, ranges)
        k = gain_factor(p, spec.dt_us)
        scale = population_scale(spec, p) if p.spiking else None
        k_applied = k * (HIDDEN_SCALE / scale) if p.spiking else k.copy()
        d_mem = steps_tau(tm, ranges.tau_mem_lo_us, ranges.tau_mem_hi_us, targets.tau_mem_us)
        d_syn = steps_tau(ts, ranges.tau_syn_lo_us, ranges.tau_syn_hi_us, targets.tau_syn_us)
        volts_per_code = adc_lsb_v(cfg.adc_bits)
        code_scale = targets.threshold_lsb - targets.leak_lsb
        d_reset = np.rint(p.reset * code_scale * volts_per_code
                          * smax / (ranges.v_hi_v - ranges.v_lo_v)).astype(np.int64)
        for n in circuits:
            s = settings[n]
            new_mem = s[:, TAU_MEM] + d_mem
            _in_range(p, "tau_mem", new_mem, smax, tm, ranges.tau_mem_lo_us,
                      ranges.tau_mem_hi_us)
            if n is top:
                s[:, TAU_MEM] = new_mem
                if p.spiking:
                    new_reset = s[:, RESET] + d_reset
                    if np.any(new_reset < 0) or np.any(new_reset > smax):
                        raise ValueError(f"population {p.name!r}: reset "
                                         f"{float(p.reset.min()):g}..{float(p.reset.max()):g} "
                                         "(normalised) leaves the chip's reset range")
                    s[:, RESET] = new_reset
                else:
                    s[:, THRESHOLD] = smax
            for idx in (TAU_SYN_EXC, TAU_SYN_INH):
                new = np.where(p.alpha > 0, s[:, idx] + d_syn, 0)
                _in_range(p, "tau_syn", new, smax, ts, ranges.tau_syn_lo_us,
                          ranges.tau_syn_hi_us)
                s[:, idx] = new
            for idx in (GAIN_EXC, GAIN_INH):
                want = np.rint(s[:, idx] * k_applied).astype(np.int64)
                clipped += int(np.sum(want > smax))
                s[:, idx] = np.clip(want, 1, smax)
            settings[n] = s
        if not p.spiking:
            trace_factor[p.name] = k / k_applied
        summary[p.name] = {"tau_syn_us": [float(ts.min()), float(ts.max())],
                           "tau_mem_us": [float(tm.min()), float(tm.max())],
                           "gain_factor": [float(k.min()), float(k.max())],
                           "weight_scale": scale, "merged": p.name in placement.merged}
    if clipped:
        notes.append(f"{clipped} synaptic gain settings reached the highest setting "
                     f"({smax}): those neurons get less input than the model's")
    summary["gain_settings_at_limit"] = clipped
    return ChipMapping(settings, trace_factor, notes, summary)


def _in_range(p: Population, what: str, new: np.ndarray, smax: int, tau: np.ndarray,
              lo: float, hi: float) -> None:
    if np.any(new < 0) or np.any(new > smax):
        raise ValueError(f"population {p.name!r}: {what} {float(tau.min()):.4g}.."
                         f"{float(tau.max()):.4g} us on the chip leaves its range "
                         f"(about {lo:g}..{hi:g} us)")


class GraphChipNetwork(GraphNetwork):
    """:class:`GraphNetwork` with its forward pass measured on ``chip`` (``backend``
    ``"fast"`` or ``"cosim"``; ``run_seed``: the chip's noise; ``merged``: None
    chooses; ``backend_options`` go to the backend).  :attr:`mapping` and
    :attr:`placement` say how it sits on the chip."""

    # ChipNetwork's helpers read only chip, placement, adc_period, run_seed, backend,
    # backend_options, sample_spacing_us and _baseline: the same here
    analog_steps = ChipNetwork.analog_steps
    input_events = ChipNetwork.input_events
    baseline = ChipNetwork.baseline
    _run = ChipNetwork._run

    def __init__(self, spec: GraphSpec, chip: Chip, *, backend: str = "fast",
                 readout_scale: float = 10.0, run_seed: int = 0, merged: bool | None = None,
                 **backend_options) -> None:
        super().__init__(spec, readout_scale=readout_scale)
        if backend not in ("fast", "cosim"):
            raise ValueError(f"backend {backend!r}: a chip network runs on 'fast' or 'cosim'")
        self.chip, self.backend = chip, backend
        self.backend_options = dict(backend_options)
        cfg = chip.cfg
        self.adc_period = adc_period_cycles(cfg, spec.dt_us)
        self.placement = self._place(merged)
        self.mapping = chip_settings(spec, chip, self.placement)
        self.placement.image.analog_settings = self.mapping.settings.copy()
        targets = CalibrationTargets()
        self.code_scale = targets.threshold_lsb - targets.leak_lsb
        self.register_buffer("samples_run", torch.zeros((), dtype=torch.int64))
        self.register_buffer("run_seed", torch.tensor(int(run_seed), dtype=torch.int64))
        self.sample_spacing_us: float | None = None
        self.last_stats: dict = {}
        self.last_observables = None
        self._baseline: np.ndarray | None = None

    # -- placement -------------------------------------------------------------------
    def projections(self) -> list[tuple]:
        """The links as the placement's dense projections (every synapse reserved)."""
        out = []
        for lk in self.spec.links:
            shape = (self.spec.size(lk.pre), self.spec.size(lk.post))
            out.append((lk.pre, lk.post, np.zeros(shape, np.int64), np.ones(shape, bool)))
        return out

    def _place(self, merged: bool | None) -> Placement:
        cfg, spec = self.chip.cfg, self.spec
        kw = dict(reserve="both", record=[p.name for p in spec.spiking],
                  adc_period=self.adc_period)
        projs = self.projections()
        if merged is False or (merged is None and cfg.n_halves != 2):
            return place(cfg, projs, **kw)
        everything = [p.name for p in spec.populations]
        if merged:
            return place(cfg, projs, merged=everything, **kw)
        try:
            return place(cfg, projs, **kw)
        except PlacementError as unmerged:
            # every population merged (as ChipNetwork does: the same placement for the
            # paper's network), else only those whose sources need more driver pairs
            # than a half has
            crowded = [p.name for p in spec.populations
                       if sum(spec.size(lk.pre) for lk in spec.links if lk.post == p.name)
                       > cfg.drivers_per_half]
            tries = [m for m in (everything, crowded) if m]
            errors = []
            for m in dict.fromkeys(tuple(x) for x in tries):
                try:
                    return place(cfg, projs, merged=list(m), **kw)
                except PlacementError as e:
                    errors.append(f"merged {', '.join(m)}: {e}")
            raise PlacementError("; ".join([str(unmerged)] + errors)) from None

    @property
    def merged(self) -> bool:
        return bool(self.placement.merged)

    # -- weights ---------------------------------------------------------------------
    def chip_weights(self) -> tuple[list[np.ndarray], dict[str, float]]:
        """The integer weights of every link (``[n_pre, n_post]``) and the weight
        scale of every population (the readouts': adaptive, ``min(63 / max|W|, 250)``
        over all their incoming weights)."""
        scales: dict[str, float] = {}
        for p in self.spec.populations:
            js = [j for j, lk in enumerate(self.spec.links) if lk.post == p.name]
            if p.spiking:
                scales[p.name] = self.scales[js[0]]
            else:
                w = torch.cat([self.weights[j].detach().reshape(-1) for j in js])
                scales[p.name] = output_scale(w, WEIGHT_MAX)
        ints = [quantize(self.weights[j].t(), scales[lk.post], WEIGHT_MAX)
                for j, lk in enumerate(self.spec.links)]
        return ints, scales

    def write_weights(self) -> dict[str, float]:
        ints, scales = self.chip_weights()
        for j, w in enumerate(ints):
            self.placement.set_weights(j, w)
        return scales

    # -- a pass on the chip ----------------------------------------------------------
    def measure(self, raster: torch.Tensor, times_us: torch.Tensor | None = None) -> dict:
        """Run one batch on the chip: population -> ``(v, z)`` measured and
        normalised, time-major on the ADC grid (``z`` None for readouts)."""
        m = measure_batch(self, raster, times_us, self.write_weights)
        scales = m.prepared
        pl = self.placement
        dtype = self.weights[0].dtype
        out: dict = {}
        n_spikes = 0
        for p in self.spec.populations:
            v = m.norm(pl.neurons[p.name])
            if not p.spiking:
                v = v * (HIDDEN_SCALE / scales[p.name]) * self.mapping.trace_factor[p.name]
                out[p.name] = (torch.as_tensor(v, dtype=dtype), None)
                continue
            rows = pl.spikes_of(m.obs.spikes, p.name)
            n_spikes += len(rows)
            out[p.name] = (torch.as_tensor(v, dtype=dtype), m.spikes_on_grid(rows, p.size, dtype))
        readouts = [p.name for p in self.spec.readout]
        m.record(self, n_spikes=n_spikes, output_scale=scales[readouts[0]])
        return out

    def forward(self, raster: torch.Tensor, times_us: torch.Tensor | None = None
                ) -> NetworkOutput:
        return self.model_pass(raster, self.measure(raster, times_us))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", chip={self.chip.cfg.name}#{self.chip.chip_seed}, "
                f"backend={self.backend}, merged={self.merged}, adc_period={self.adc_period}")


# -- network files (network.pt, checkpoints) -----------------------------------------
def graph_kwargs(spec: GraphSpec, readout_scale: float = 10.0) -> dict:
    """The constructor arguments of a graph network as ``network_kwargs`` of a
    network file (plain lists; the sizes as the paper's network states them)."""
    return {"graph": spec.to_dict(), "n_in": spec.n_in, "n_hidden": spec.n_hidden,
            "n_out": spec.n_out, "recurrent": spec.recurrent,
            "readout_scale": float(readout_scale), "params": {"dt_us": float(spec.dt_us)}}


def make_graph_network(backend: str, kwargs: dict, *, chip: Chip | None = None,
                       run_seed: int = 0, device: str = "cpu") -> GraphNetwork:
    """The network of :func:`graph_kwargs` ``kwargs``: the ideal model (``software``)
    or in the loop on ``chip`` (``fast``, ``cosim``; ``device``: fast's torch device)."""
    spec = GraphSpec.from_dict(kwargs["graph"])
    rs = float(kwargs.get("readout_scale", 10.0))
    if backend == "software":
        return GraphNetwork(spec, readout_scale=rs)
    opts = {"device": device} if backend == "fast" and device != "cpu" else {}
    return GraphChipNetwork(spec, chip, backend=backend, readout_scale=rs, run_seed=run_seed,
                            **opts)
