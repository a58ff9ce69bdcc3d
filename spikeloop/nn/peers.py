"""The paper's network in two software SNN libraries, for the benchmark against them.

``python -m spikeloop.bench peers`` times a training step and a forward pass of
the paper's MNIST network (``n_in -> n_hidden`` current-based LIF ``-> n_out``
leaky integrators, read by ``log_softmax(10 max_t v_out)``) in the loop on the
emulated chip, in spikeloop's ideal model, and in these peers:

- **snnTorch** (the optional extra ``peers``): ``snntorch.Synaptic`` neurons
  (current-based LIF; the readout without reset, so a leaky integrator);
- **norse** (the optional extra ``bench``): ``norse.torch.LIF`` (current-based)
  and ``norse.torch.LI`` over the whole sequence.

Both take the same inputs (``[T, B, n_in]`` rasters), the same weight
initialisation as :class:`~spikeloop.nn.modules.Synapse`, per-step decays of the
paper's 6 µs on steps of 1.7 µs, threshold 1, the same loss terms
(:meth:`regularization`) and the same clamp after a step (:meth:`after_step`).
Each network's input projection is one matrix product over all time steps,
the way the libraries' own examples make a fast feed-forward layer.
The libraries are imported when a network is built, not with this module.
"""
from __future__ import annotations

import importlib.util
import math

import torch
from torch import nn

from spikeloop.nn import functional as SF
from spikeloop.nn.functional import DT_US, TAU_US
from spikeloop.nn.modules import HIDDEN_SCALE, WEIGHT_MAX, NetworkOutput

__all__ = ["PEERS", "missing", "build_peer", "SnnTorchNetwork", "NorseNetwork"]

#: peer name -> (the module it needs, the extra that installs it)
PEERS = {"snntorch": ("snntorch", "peers"), "norse": ("norse", "bench")}


def missing(name: str) -> str | None:
    """Why peer ``name`` cannot run here (its library is not installed), or None."""
    module, extra = PEERS[name]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[{extra}]')"
    return None


def _init_linear(n_in: int, n_out: int, mean: float, b: float,
                 generator: torch.Generator | None) -> nn.Linear:
    """A bias-free projection drawn as spikeloop's :class:`Synapse` (mean ``mean``,
    std ``0.7 (1 - b) / sqrt(n_in)``)."""
    lin = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        lin.weight.normal_(mean, 0.7 * (1.0 - b) / math.sqrt(n_in), generator=generator)
    return lin


class _PeerNetwork(nn.Module):
    """What both peers share: the projections, the readout, the loss terms."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, dt_us: float = DT_US,
                 tau_us: float = TAU_US, readout_scale: float = 10.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.n_in, self.n_hidden, self.n_out = n_in, n_hidden, n_out
        self.decay = math.exp(-dt_us / tau_us)
        self.readout_scale = readout_scale
        self.hidden_synapse = _init_linear(n_in, n_hidden, 1e-3, self.decay, generator)
        self.output_synapse = _init_linear(n_hidden, n_out, 0.0, self.decay, generator)

    def layers(self, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_hidden [T, B, H], v_out [T, B, C])`` of the hidden input currents."""
        raise NotImplementedError

    def forward(self, raster: torch.Tensor, times_us: torch.Tensor | None = None
                ) -> NetworkOutput:
        z, v_out = self.layers(self.hidden_synapse(raster))
        return NetworkOutput(SF.max_over_time_log_softmax(v_out, self.readout_scale), v_out,
                             z, None)

    def regularization(self, out: NetworkOutput, *, spike_strength: float = 5e-4,
                       weight_strength: float = 0.1) -> torch.Tensor:
        """The paper's terms, as :meth:`LoopNetwork.regularization`."""
        return (SF.spike_count_regularizer(out.z_hidden, spike_strength)
                + SF.weight_regularizer(self.hidden_synapse.weight, weight_strength))

    @torch.no_grad()
    def after_step(self) -> None:
        lim = WEIGHT_MAX / HIDDEN_SCALE
        self.hidden_synapse.weight.clamp_(-lim, lim)


class SnnTorchNetwork(_PeerNetwork):
    """The network in snnTorch: ``Synaptic`` hidden neurons (reset by
    subtraction), a ``Synaptic`` readout without reset (a leaky integrator)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        import snntorch as snn  # the optional extra "peers"

        a = self.decay
        self.hidden = snn.Synaptic(alpha=a, beta=a, threshold=1.0)
        self.readout = snn.Synaptic(alpha=a, beta=a, threshold=1.0, reset_mechanism="none")

    def layers(self, cur):
        T, B = cur.shape[0], cur.shape[1]
        syn_h = mem_h = cur.new_zeros(B, self.n_hidden)
        syn_o = mem_o = cur.new_zeros(B, self.n_out)
        zs, vs = [], []
        for t in range(T):
            z, syn_h, mem_h = self.hidden(cur[t], syn_h, mem_h)
            _, syn_o, mem_o = self.readout(self.output_synapse(z), syn_o, mem_o)
            zs.append(z)
            vs.append(mem_o)
        return torch.stack(zs), torch.stack(vs)


class NorseNetwork(_PeerNetwork):
    """The network in norse: ``norse.torch.LIF`` (current-based, SuperSpike
    surrogate) and ``norse.torch.LI`` over the sequence; norse integrates by
    forward Euler, so its rates are chosen for the same per-step decay."""

    def __init__(self, *args, dt_us: float = DT_US, **kw) -> None:
        super().__init__(*args, dt_us=dt_us, **kw)
        import norse.torch as norse  # the optional extra "bench"

        dt = dt_us * 1e-3
        rate = torch.as_tensor((1.0 - self.decay) / dt)
        self.hidden = norse.LIF(norse.LIFParameters(
            tau_syn_inv=rate, tau_mem_inv=rate, v_leak=torch.as_tensor(0.0),
            v_th=torch.as_tensor(1.0), v_reset=torch.as_tensor(0.0), method="super",
            alpha=torch.as_tensor(SF.SUPERSPIKE_BETA)), dt=dt)
        self.readout = norse.LI(norse.LIParameters(tau_syn_inv=rate, tau_mem_inv=rate,
                                                   v_leak=torch.as_tensor(0.0)), dt=dt)

    def layers(self, cur):
        z, _ = self.hidden(cur)
        v_out, _ = self.readout(self.output_synapse(z))
        return z, v_out


def build_peer(name: str, n_in: int, n_hidden: int, n_out: int, *,
               generator: torch.Generator | None = None) -> _PeerNetwork:
    """Peer ``name`` ("snntorch" or "norse") with the paper's network."""
    cls = {"snntorch": SnnTorchNetwork, "norse": NorseNetwork}[name]
    return cls(n_in, n_hidden, n_out, generator=generator)
