"""Thin ``nn.Module`` wrappers over :mod:`spikeloop.nn.functional` (time-major ``[T, B, N]``).

The modules hold only weights and a :class:`~spikeloop.nn.functional.LIFParameters`;
all dynamics live in the pure functions.  This is the software-only mode (no
chip): the neuron layers accept the chip's measured traces as optional keyword
arguments so a hardware backend can inject them later without the network code
changing.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from spikeloop.nn import functional as SF
from spikeloop.nn.functional import DEFAULT_PARAMS, LIFParameters

__all__ = ["Synapse", "LIF", "LI", "LoopNetwork", "SoftwareNetwork", "NetworkOutput",
           "HIDDEN_SCALE", "WEIGHT_MAX"]


class Synapse(nn.Module):
    """Dense projection ``y[t] = x[t] @ W^T``, ``W`` of shape ``[n_out, n_in]``.

    Init (paper): normal with mean ``mean`` (1e-3 for the hidden layer, 0 for the
    output layer) and std ``0.7 * (1 - b) / sqrt(n_in)``, ``b`` the membrane decay
    per step of ``params``; drawn from ``generator`` when one is given.
    """

    def __init__(self, n_in: int, n_out: int, *, mean: float = 1e-3,
                 params: LIFParameters = DEFAULT_PARAMS,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1:
            raise ValueError(f"n_in = {n_in}, n_out = {n_out}; need >= 1")
        self.n_in, self.n_out = n_in, n_out
        std = 0.7 * (1.0 - params.b) / math.sqrt(n_in)
        w = torch.empty(n_out, n_in)
        with torch.no_grad():
            w.normal_(mean, std, generator=generator)
        self.weight = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight.t())

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}"


class LIF(nn.Module):
    """LIF layer: ``(z, v) = lif_sequence(x, params, measured_v=..., measured_z=...)``."""

    def __init__(self, size: int, params: LIFParameters = DEFAULT_PARAMS) -> None:
        super().__init__()
        self.size, self.params = size, params

    def forward(self, x: torch.Tensor, *, measured_v: torch.Tensor | None = None,
                measured_z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] != self.size:
            raise ValueError(f"LIF({self.size}) got input {tuple(x.shape)}")
        return SF.lif_sequence(x, self.params, measured_v=measured_v, measured_z=measured_z)

    def extra_repr(self) -> str:
        return f"size={self.size}, params={self.params}"


class LI(nn.Module):
    """Leaky-integrator layer (no spikes): ``v = li_sequence(x, params, measured_v=...)``."""

    def __init__(self, size: int, params: LIFParameters = DEFAULT_PARAMS) -> None:
        super().__init__()
        self.size, self.params = size, params

    def forward(self, x: torch.Tensor, *,
                measured_v: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-1] != self.size:
            raise ValueError(f"LI({self.size}) got input {tuple(x.shape)}")
        return SF.li_sequence(x, self.params, measured_v=measured_v)

    def extra_repr(self) -> str:
        return f"size={self.size}, params={self.params}"


class NetworkOutput(tuple):
    """``(log_probs [B, C], v_out [T, B, C], z_hidden [T, B, H], v_hidden [T, B, H])``."""

    __slots__ = ()

    def __new__(cls, log_probs, v_out, z_hidden, v_hidden):
        return super().__new__(cls, (log_probs, v_out, z_hidden, v_hidden))

    log_probs = property(lambda self: self[0])
    v_out = property(lambda self: self[1])
    z_hidden = property(lambda self: self[2])
    v_hidden = property(lambda self: self[3])


#: the paper's hidden weight scale: software weight x 240 -> 6-bit chip weight
HIDDEN_SCALE = 240.0
#: hidden (and recurrent) weights are clamped to +-63/240 after every step
WEIGHT_MAX = 63


def check_raster(raster: torch.Tensor, times_us: torch.Tensor | None, n_in: int) -> None:
    """A network's input: a ``[T, B, n_in]`` raster and ``[B, n_in]`` spike times or None."""
    if raster.dim() != 3 or raster.shape[-1] != n_in:
        raise ValueError(f"raster must be [T, B, {n_in}], got {tuple(raster.shape)}")
    if times_us is not None and tuple(times_us.shape) != (raster.shape[1], n_in):
        raise ValueError(f"times_us must be [B, n_in] = [{raster.shape[1]}, {n_in}], "
                         f"got {tuple(times_us.shape)}")


class LoopNetwork(nn.Module):
    """The paper's network and its gradient path, shared by the software and the
    chip networks: ``n_in -> n_hidden LIF -> n_out LI`` (optionally with
    hidden-to-hidden recurrence), readout ``log_softmax(readout_scale * max_t
    v_out)``.

    :meth:`model_pass` runs the ideal equations, along measured traces when a
    chip gives them (gradient injection).  Subclasses implement ``forward(raster,
    times_us=None)``: ``raster`` ``[T, B, n_in]`` the input spikes on the
    observation grid, ``times_us`` ``[B, n_in]`` their exact times (µs; ``inf``
    or NaN: no spike; only a chip uses them)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *,
                 params: LIFParameters = DEFAULT_PARAMS, readout_scale: float = 10.0,
                 generator: torch.Generator | None = None, recurrent: bool = False,
                 hidden_scale: float = HIDDEN_SCALE) -> None:
        super().__init__()
        self.params, self.readout_scale = params, readout_scale
        self.n_in, self.n_hidden, self.n_out = n_in, n_hidden, n_out
        self.recurrent = bool(recurrent)
        self.hidden_scale = float(hidden_scale)
        self.hidden_synapse = Synapse(n_in, n_hidden, mean=1e-3, params=params,
                                      generator=generator)
        self.recurrent_synapse = (Synapse(n_hidden, n_hidden, mean=0.0, params=params,
                                          generator=generator) if recurrent else None)
        self.hidden = LIF(n_hidden, params)
        self.output_synapse = Synapse(n_hidden, n_out, mean=0.0, params=params,
                                      generator=generator)
        self.output = LI(n_out, params)
        #: where a measured step's surrogate derivative is taken (``SF.SURROGATE_AT``):
        #: a training choice, not part of the network's state
        self.surrogate_at = "measured"
        #: hidden-layer dropout during training: ``[n_hidden]`` factors (0 for a dropped
        #: unit, ``1 / (1 - p)`` for a kept one) on the hidden-to-output weights; None: off
        self.hidden_keep: torch.Tensor | None = None

    def output_weight(self) -> torch.Tensor:
        """The hidden-to-output weights in use: with :attr:`hidden_keep` set, each
        hidden unit's column multiplied by its factor (a dropped unit reaches no output)."""
        w = self.output_synapse.weight
        return w if self.hidden_keep is None else w * self.hidden_keep[None, :]

    def check_input(self, raster: torch.Tensor, times_us: torch.Tensor | None = None) -> None:
        check_raster(raster, times_us, self.n_in)

    def model_pass(self, raster: torch.Tensor, *, hidden_v=None, hidden_z=None,
                   output_v=None) -> NetworkOutput:
        """The ideal network on ``raster``; with measured ``hidden_v``/``hidden_z``
        (``[T, B, n_hidden]``) and ``output_v`` (``[T, B, n_out]``) every step is
        recomputed from the measured previous state and replaced by the measured
        value (forward: the chip, backward: the ideal equations)."""
        w_rec = None if self.recurrent_synapse is None else self.recurrent_synapse.weight
        z_h, v_h = SF.lif_sequence(self.hidden_synapse(raster), self.params,
                                   measured_v=hidden_v, measured_z=hidden_z,
                                   recurrent_weight=w_rec, surrogate_at=self.surrogate_at)
        v_o = self.output(torch.matmul(z_h, self.output_weight().t()), measured_v=output_v)
        return NetworkOutput(SF.max_over_time_log_softmax(v_o, self.readout_scale), v_o, z_h, v_h)

    @torch.no_grad()
    def ideal_back_to_back(self, raster: torch.Tensor, per_run: int, *,
                           reset_currents: bool = False) -> torch.Tensor:
        """The ideal equations with the images of ``raster`` (``[T, N, n_in]``: each
        image's slot of ``T`` steps) presented back to back in runs of ``per_run``
        images, as the chip's inference mode presents them: at each boundary the
        membranes and spikes are reset (the PPU's neuron reset) and the synaptic
        currents carry over (``reset_currents=True``: cleared as well, which the
        chip's neuron reset does not do); each image's class is the output with the
        highest membrane within its slot. Returns the ``[N]`` predicted classes.
        With ``per_run=1`` every image runs alone."""
        if raster.dim() != 3 or raster.shape[2] != self.n_in:
            raise ValueError(f"raster must be [T, N, {self.n_in}], got {tuple(raster.shape)}")
        if per_run < 1:
            raise ValueError(f"per_run = {per_run}; need >= 1")
        T, n, _ = raster.shape
        n_runs = -(-n // per_run)
        pad = raster.new_zeros(T, n_runs * per_run - n, self.n_in)
        x = self.hidden_synapse(torch.cat([raster, pad], dim=1))
        x = x.reshape(T, n_runs, per_run, self.n_hidden)
        w_rec = None if self.recurrent_synapse is None else self.recurrent_synapse.weight
        w_out = self.output_weight().t()
        h = SF.LIFState.zeros_like(x[0, :, 0])
        o = SF.LIState.zeros_like(x.new_zeros(n_runs, self.n_out))
        pred = torch.empty(n_runs, per_run, dtype=torch.long)
        for j in range(per_run):
            zero_h, zero_o = torch.zeros_like(h.v), torch.zeros_like(o.v)
            h = SF.LIFState(zero_h if reset_currents else h.i, zero_h, zero_h)
            o = SF.LIState(zero_o if reset_currents else o.i, zero_o)
            v_max = torch.full_like(o.v, -math.inf)
            for t in range(T):
                h = SF.lif_step(x[t, :, j], h, self.params, recurrent_weight=w_rec)
                o = SF.li_step(torch.matmul(h.z, w_out), o, self.params)
                v_max = torch.maximum(v_max, o.v)
            pred[:, j] = v_max.argmax(dim=-1)
        return pred.reshape(-1)[:n]

    def regularization(self, out: NetworkOutput, *, spike_strength: float = 5e-4,
                       weight_strength: float = 0.1) -> torch.Tensor:
        """``5e-4 * mean (hidden spike count)^2 + 0.1 * mean(W_hidden^2)``."""
        return (SF.spike_count_regularizer(out.z_hidden, spike_strength)
                + SF.weight_regularizer(self.hidden_synapse.weight, weight_strength))

    @torch.no_grad()
    def after_step(self) -> None:
        """After every optimiser step: hidden (and recurrent) weights clamped to
        the chip's range ``+-63 / hidden_scale`` (the paper does this for every
        run, so a software-trained network is deployable as is)."""
        lim = WEIGHT_MAX / self.hidden_scale
        self.hidden_synapse.weight.clamp_(-lim, lim)
        if self.recurrent_synapse is not None:
            self.recurrent_synapse.weight.clamp_(-lim, lim)


class SoftwareNetwork(LoopNetwork):
    """The paper's MNIST network, software only: 256 -> 246 LIF -> 10 LI by
    default, the ideal equations, no chip (``times_us`` is accepted and unused).

    ``forward(raster [T, B, n_in])`` returns a :class:`NetworkOutput`."""

    def __init__(self, n_in: int = 256, n_hidden: int = 246, n_out: int = 10, **kw) -> None:
        super().__init__(n_in, n_hidden, n_out, **kw)

    def forward(self, raster: torch.Tensor, times_us: torch.Tensor | None = None
                ) -> NetworkOutput:
        self.check_input(raster, times_us)
        return self.model_pass(raster)
