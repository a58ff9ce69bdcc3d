"""snnTorch as a NIR peer (the optional extra ``peers``: ``pip install -e '.[peers]'``).

The paper's network in snnTorch (Linear without bias -> ``Synaptic`` hidden ->
Linear -> ``Synaptic`` readout without reset, read by its membrane), trained with
the paper's loss on spikeloop's encoded inputs, written with snnTorch's own NIR
exporter; and NIR graphs read back by snnTorch's own importer.  Used by the tests
and by ``spikeloop nir interop``.

snnTorch's ``Synaptic`` (default: reset by subtraction, delayed one step) computes
exactly spikeloop's ideal step (spikeloop.nn.functional); its NIR importer builds
neurons that reset to zero at once (NIR's reset to ``v_reset``), so a network read
back by snnTorch differs from spikeloop's ideal model after each hidden spike.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from spikeloop.data import Batches
from spikeloop.nn import functional as SF
from spikeloop.nn.functional import DT_US, TAU_US
from spikeloop.nn.modules import HIDDEN_SCALE, WEIGHT_MAX

__all__ = ["snntorch_network", "run_snntorch", "train_snntorch", "export_snntorch",
           "import_snntorch", "run_imported", "predictions", "READOUT"]

#: the readout's name in the network (a string: snnTorch's exporter names nodes
#: by their position in the Sequential)
READOUT = "3"


def _snn():
    import snntorch as snn  # the optional extra "peers"
    return snn


def snntorch_network(n_in: int, n_hidden: int, n_out: int, *, dt_us: float = DT_US,
                     tau_us: float = TAU_US, generator: torch.Generator | None = None):
    """``Sequential(Linear, Synaptic, Linear, Synaptic)``: decays per step
    ``exp(-dt/tau)`` (the paper's 6 µs on steps of 1.7 µs), threshold 1, the
    readout without reset; weights drawn as spikeloop's (mean 1e-3 hidden, 0
    output, std ``0.7 (1 - beta) / sqrt(n_in)``)."""
    snn = _snn()
    a = math.exp(-dt_us / tau_us)

    def layer(n, **kw):
        return snn.Synaptic(alpha=torch.full((n,), a), beta=torch.full((n,), a),
                            threshold=torch.ones(n), init_hidden=True, **kw)

    net = torch.nn.Sequential(torch.nn.Linear(n_in, n_hidden, bias=False), layer(n_hidden),
                              torch.nn.Linear(n_hidden, n_out, bias=False),
                              layer(n_out, output=True, reset_mechanism="none"))
    with torch.no_grad():
        for lin, n, mean in ((net[0], n_in, 1e-3), (net[2], n_hidden, 0.0)):
            lin.weight.normal_(mean, 0.7 * (1 - a) / math.sqrt(n), generator=generator)
    return net


def _reset(module) -> None:
    """Every snnTorch neuron of ``module`` back to rest."""
    snn = _snn()
    for m in module.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()


def run_snntorch(net, raster: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(v_out [T, B, C], z_hidden [T, B, H])`` of :func:`snntorch_network` on
    ``raster [T, B, n_in]``, from rest."""
    _reset(net)
    vs, zs = [], []
    for t in range(raster.shape[0]):
        z = net[1](net[0](raster[t]))
        _, _, mem = net[3](net[2](z))
        vs.append(mem)
        zs.append(z)
    return torch.stack(vs), torch.stack(zs)


def train_snntorch(net, task, *, epochs: int, lr: float, batch_size: int, seed: int,
                   log=print) -> list[float]:
    """The paper's training in snnTorch: Adam, loss = NLL of ``log_softmax(10 max_t
    v_out)`` + the paper's regularisers, hidden weights clamped to the chip's range
    after every step (as spikeloop does, so the network deploys as is).  Returns
    the training accuracy per epoch."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
    lim = WEIGHT_MAX / HIDDEN_SCALE
    accs = []
    batches = Batches(task.train, batch_size, shuffle=True, seed=seed)
    for e in range(epochs):
        correct = n = 0
        for x, y in batches.epoch(e):
            raster, _ = task.encode(x)
            v, z = run_snntorch(net, raster)
            logp = SF.max_over_time_log_softmax(v, 10.0)
            loss = (F.nll_loss(logp, y) + SF.spike_count_regularizer(z, task.spike_reg)
                    + SF.weight_regularizer(net[0].weight, task.weight_reg))
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                net[0].weight.clamp_(-lim, lim)
            correct += int((logp.argmax(1) == y).sum())
            n += len(y)
        sched.step()
        accs.append(correct / n)
        log(f"snnTorch epoch {e + 1}/{epochs}: train accuracy {correct / n:.4f}")
    return accs


def export_snntorch(net, n_in: int):
    """snnTorch's own NIR exporter on :func:`snntorch_network`."""
    from snntorch.export_nir import export_to_nir
    return export_to_nir(net, torch.zeros(n_in))


def import_snntorch(graph):
    """snnTorch's own NIR importer (a torch module of snnTorch neurons)."""
    from snntorch.import_nir import import_from_nir
    return import_from_nir(graph)


def run_imported(module, raster: torch.Tensor, readout: str) -> torch.Tensor:
    """The readout membranes ``[T, B, C]`` of a module made by :func:`import_snntorch`
    (its node ``readout`` a CubaLIF that never fires), from rest."""
    _reset(module)
    out = module.get_submodule(readout)
    vs = []
    with torch.no_grad():
        for t in range(raster.shape[0]):
            module(raster[t])
            vs.append(out.mem.clone())
    return torch.stack(vs)


def predictions(v_out: torch.Tensor) -> np.ndarray:
    """The class of every sample: the readout with the highest maximum over time."""
    return v_out.amax(dim=0).argmax(dim=-1).numpy()
