"""A general spiking network as spikeloop runs it: populations and the links between them.

:class:`GraphSpec` is what a NIR graph becomes on import (:mod:`spikeloop.nir.convert`)
and what an export writes out; :mod:`spikeloop.nir.network` runs it in the ideal model
and in the loop on a chip.  Everything is in spikeloop's normalised units on its time
grid (one step = ``dt_us`` of chip time, the column ADC's sample spacing):

- a population is spiking (LIF with a synaptic current, a hidden layer) or a leaky
  integrator read out by its membrane (the readout);
- per neuron, ``alpha`` (the synaptic current's decay per step; 0: no synaptic
  current, the input jumps the membrane) and ``beta`` (the membrane's decay per step);
- spiking neurons: leak at 0, threshold at 1, ``reset`` the normalised potential a
  spike resets to (0: the leak);
- a link ``pre -> post`` carries ``weight [n_post, n_pre]`` (torch's orientation, as
  NIR's Linear/Affine): ``x_post[t] = W @ s_pre``, added to the synaptic current.

Populations are kept in topological order of the feed-forward links (from the
input); a link whose ``pre`` is not before its ``post`` (a recurrent link, or one
closing a loop) carries the spikes of the previous step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: the ``pre`` of links from the external inputs (the same name as the placement's)
INPUT = "input"


@dataclass
class Population:
    """One population: ``name`` (the NIR node's), ``size``, ``spiking``, and per
    neuron ``alpha``, ``beta``, ``reset`` (float64 ``[size]``; see the module
    docstring).  ``node_type``: the NIR type it came from (for reports)."""

    name: str
    size: int
    spiking: bool
    alpha: np.ndarray
    beta: np.ndarray
    reset: np.ndarray
    node_type: str = ""

    def __post_init__(self):
        for k in ("alpha", "beta", "reset"):
            v = np.broadcast_to(np.asarray(getattr(self, k), dtype=np.float64),
                                (self.size,)).copy()
            setattr(self, k, v)

    def tau_us(self, dt_us: float) -> tuple[np.ndarray, np.ndarray]:
        """(tau_syn, tau_mem) in µs of chip time: ``-dt / ln(decay)`` (tau_syn 0 where
        ``alpha`` is 0)."""
        with np.errstate(divide="ignore"):
            ts = np.where(self.alpha > 0, -dt_us / np.log(np.maximum(self.alpha, 1e-300)), 0.0)
            tm = -dt_us / np.log(self.beta)
        return ts, tm

    def to_dict(self) -> dict:
        return {"name": self.name, "size": int(self.size), "spiking": bool(self.spiking),
                "alpha": self.alpha.tolist(), "beta": self.beta.tolist(),
                "reset": self.reset.tolist(), "node_type": self.node_type}


@dataclass
class Link:
    """``pre`` (:data:`INPUT` or a population) -> population ``post``, ``weight``
    float32 ``[n_post, n_pre]``; ``node``: the NIR node it came from."""

    pre: str
    post: str
    weight: np.ndarray
    node: str = ""

    def to_dict(self) -> dict:
        return {"pre": self.pre, "post": self.post, "node": self.node,
                "weight": np.asarray(self.weight, dtype=np.float32).tolist()}


@dataclass
class GraphSpec:
    """A network: ``n_in`` inputs, populations (topological order), links, the time
    step ``dt_us`` (µs of chip time).  The readout populations are the
    non-spiking ones, in order; their sizes add up to the classes."""

    n_in: int
    populations: list[Population]
    links: list[Link]
    dt_us: float
    #: where it came from (a NIR file, a training run): for reports and network.pt
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        self.check()

    # -- structure ------------------------------------------------------------------
    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def order(self) -> dict[str, int]:
        """INPUT -> -1, population -> its index in :attr:`populations`."""
        return {INPUT: -1, **{p.name: k for k, p in enumerate(self.populations)}}

    def size(self, name: str) -> int:
        return self.n_in if name == INPUT else self.population(name).size

    def is_recurrent(self, link: Link) -> bool:
        """Whether ``link`` carries the previous step's spikes (its pre is not before
        its post)."""
        o = self.order
        return o[link.pre] >= o[link.post]

    @property
    def spiking(self) -> list[Population]:
        return [p for p in self.populations if p.spiking]

    @property
    def readout(self) -> list[Population]:
        return [p for p in self.populations if not p.spiking]

    @property
    def n_hidden(self) -> int:
        return sum(p.size for p in self.spiking)

    @property
    def n_out(self) -> int:
        return sum(p.size for p in self.readout)

    @property
    def recurrent(self) -> bool:
        return any(self.is_recurrent(k) for k in self.links)

    def check(self) -> None:
        """Refuse an inconsistent network (ValueError naming the population or link)."""
        if not isinstance(self.dt_us, int | float) or not self.dt_us > 0:
            raise ValueError(f"dt_us = {self.dt_us!r}; allowed: a number > 0")
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names) or INPUT in names:
            raise ValueError(f"population names must be unique and not {INPUT!r}: {names}")
        if not self.readout:
            raise ValueError("the network has no readout (a leaky-integrator population)")
        for p in self.populations:
            if p.size < 1:
                raise ValueError(f"population {p.name!r}: size {p.size}")
            if not (np.all(p.alpha >= 0) and np.all(p.alpha < 1)):
                raise ValueError(f"population {p.name!r}: synaptic decay per step must lie "
                                 f"in [0, 1), got {p.alpha.min():g}..{p.alpha.max():g}")
            if not (np.all(p.beta > 0) and np.all(p.beta < 1)):
                raise ValueError(f"population {p.name!r}: membrane decay per step must lie "
                                 f"in (0, 1), got {p.beta.min():g}..{p.beta.max():g}")
            if not np.all(np.isfinite(p.reset)) or np.any(p.reset >= 1):
                raise ValueError(f"population {p.name!r}: the reset must lie below the "
                                 "threshold (normalised: < 1)")
        o = self.order
        seen = set()
        for k in self.links:
            if k.pre not in o or k.post not in o or k.post == INPUT:
                raise ValueError(f"link {k.pre} -> {k.post}: unknown population")
            if (k.pre, k.post) in seen:
                raise ValueError(f"link {k.pre} -> {k.post} given twice")
            seen.add((k.pre, k.post))
            if k.pre != INPUT and not self.population(k.pre).spiking:
                raise ValueError(f"link {k.pre} -> {k.post}: {k.pre} is a readout (a leaky "
                                 "integrator emits no spikes)")
            want = (self.size(k.post), self.size(k.pre))
            if tuple(np.shape(k.weight)) != want:
                raise ValueError(f"link {k.pre} -> {k.post}: weight shape "
                                 f"{tuple(np.shape(k.weight))}, expected {want}")
        for p in self.populations:
            if not any(k.post == p.name for k in self.links):
                raise ValueError(f"population {p.name!r} has no incoming link")

    # -- files ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain lists and numbers (``torch.load(weights_only=True)`` reads them back)."""
        return {"n_in": int(self.n_in), "dt_us": float(self.dt_us),
                "populations": [p.to_dict() for p in self.populations],
                "links": [k.to_dict() for k in self.links], "source": dict(self.source)}

    @classmethod
    def from_dict(cls, d: dict) -> GraphSpec:
        pops = [Population(p["name"], int(p["size"]), bool(p["spiking"]),
                           np.asarray(p["alpha"]), np.asarray(p["beta"]),
                           np.asarray(p["reset"]), p.get("node_type", ""))
                for p in d["populations"]]
        links = [Link(k["pre"], k["post"], np.asarray(k["weight"], dtype=np.float32),
                      k.get("node", "")) for k in d["links"]]
        return cls(int(d["n_in"]), pops, links, float(d["dt_us"]), dict(d.get("source", {})))

    def describe(self) -> str:
        """One line per population and link."""
        lines = [f"{self.n_in} inputs, time step {self.dt_us:g} us"]
        for p in self.populations:
            ts, tm = p.tau_us(self.dt_us)
            kind = "spiking (LIF)" if p.spiking else "readout (leaky integrator)"
            lines.append(f"{p.name}: {p.size} neurons, {kind}, tau_syn "
                         f"{_span(ts)} us, tau_mem {_span(tm)} us"
                         + (f", reset {_span(p.reset)}" if p.spiking else "")
                         + (f" (from {p.node_type})" if p.node_type else ""))
        for k in self.links:
            lines.append(f"{k.pre} -> {k.post}: weights {list(np.shape(k.weight))}"
                         + (" (previous step's spikes)" if self.is_recurrent(k) else "")
                         + (f" (node {k.node})" if k.node else ""))
        return "\n".join(lines)


def _span(v: np.ndarray) -> str:
    lo, hi = float(np.min(v)), float(np.max(v))
    fmt = (lambda x: f"{x:.4g}") if all(math.isfinite(x) for x in (lo, hi)) else str
    return fmt(lo) if lo == hi else f"{fmt(lo)}..{fmt(hi)}"
