"""NIR graphs to spikeloop networks and back (docs/nir.md).

    graph = read_graph("net.nir")                    # nir.read, refusals as NirError
    net = from_nir(graph, chip)                      # GraphChipNetwork on the chip
    net = from_nir(graph)                            # GraphNetwork: the ideal model
    print(net.report)                                # conversions, quantisation error
    nir.write("out.nir", to_nir(net))                # a GraphNetwork, or the paper's
                                                     # LoopNetwork (SoftwareNetwork, ChipNetwork)

Time: a NIR graph states continuous-time equations with time constants in seconds;
the tools that write and read NIR (snnTorch, norse, Sinabs, hxtorch) run them on a
time step ``dt`` of their own with Euler's rule (per step, a current decays by
``1 - dt/tau_syn``, a membrane by ``1 - dt/tau_mem``, a spike is a pulse of one step:
``w_in = tau_syn/dt`` and ``r = tau_mem/dt`` pass it on unscaled).  One step of the
graph becomes one step of spikeloop's grid (``dt_us`` = 1.7 µs of chip time, the
column ADC's sample spacing; 1.7 ms of biological time at the chip's 1000x speed-up),
with the same decay per step.  ``dt`` is the graph's ``metadata["dt"]`` when it
states one (spikeloop's exports do), else :data:`DEFAULT_DT_S` (snnTorch's
exporter's and importer's step), or what the caller gives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch

from spikeloop.model.chip import Chip
from spikeloop.nir.network import GraphChipNetwork, GraphNetwork, graph_kwargs
from spikeloop.nir.spec import INPUT, GraphSpec, Link, Population
from spikeloop.nn.functional import DT_US
from spikeloop.nn.modules import WEIGHT_MAX, LoopNetwork
from spikeloop.nn.placement import PlacementError

__all__ = ["NirError", "DEFAULT_DT_S", "SUPPORTED", "read_graph", "from_nir", "to_nir",
           "spec_from_nir", "spec_of", "quantisation_report", "is_nir_file", "init_kwargs"]

#: the time step (s) snnTorch's NIR exporter and importer assume; the default of a
#: graph that does not state its own
DEFAULT_DT_S = 1e-4
#: NIR node types spikeloop maps, and what each becomes
SUPPORTED = {
    "Input": "the external inputs (one Input node; its shape flattened)",
    "Output": "marks the readout: the populations feeding it are read out by their "
              "membrane",
    "CubaLIF": "a spiking population (or, feeding an Output, a readout)",
    "LIF": "a spiking population without synaptic current (or a readout)",
    "CubaLI": "a readout population (leaky integrator)",
    "LI": "a readout population without synaptic current",
    "Linear": "the weights of a projection",
    "Affine": "the weights of a projection; its bias must be zero",
    "Flatten": "passes its input on (the inputs are flat already)",
    "Delay": "passes its input on if every delay is zero",
    "NIRGraph": "a subgraph, inlined (snnTorch writes recurrent layers as one)",
}
_NEURONS = ("CubaLIF", "LIF", "CubaLI", "LI")
_WEIGHTS = ("Linear", "Affine")
_PASS = ("Flatten", "Delay", "_Port")


class NirError(ValueError):
    """A NIR graph or file spikeloop cannot map; the message names the node or file."""


# ----------------------------------------------------------------------- reading
def read_graph(path) -> nir.NIRGraph:
    """``nir.read(path)``, refusing a missing file, an HDF5 file that is no NIR graph,
    or an unreadable one, with the file's name."""
    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such file")
    try:
        graph = nir.read(path, type_check=False)   # the shapes: checked node by node below
    except OSError as e:
        raise NirError(f"{path}: not an HDF5 file ({e})") from None
    except KeyError as e:
        raise NirError(f"{path}: an HDF5 file but not a NIR graph (no {e} entry)") from None
    except (ValueError, AssertionError, TypeError) as e:
        raise NirError(f"{path}: not a valid NIR graph ({type(e).__name__}: "
                       f"{_one_line(e)})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NirError(f"{path}: holds a single {type(graph).__name__} node, not a NIR graph")
    return graph


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else repr(e)


# ----------------------------------------------------------------------- import
@dataclass
class _Flat:
    """A graph with its subgraphs inlined: node name -> node, edges."""

    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)


class _Port:
    """A subgraph's Input or Output, inlined: passes its input on."""

    def __init__(self, of: str):
        self.of = of


def _type(node) -> str:
    return "_Port" if isinstance(node, _Port) else type(node).__name__


def _flatten(graph: nir.NIRGraph, prefix: str = "") -> _Flat:
    flat = _Flat()
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub = _flatten(node, full + ".")
            # the subgraph's Input/Output nodes become ports; edges into the
            # subgraph go to its inputs, edges out of it leave from its outputs
            for n, v in sub.nodes.items():
                flat.nodes[n] = v
            flat.edges.extend(sub.edges)
            flat.nodes[full] = ("subgraph",
                                [full + "." + n for n, v in node.nodes.items()
                                 if isinstance(v, nir.Input)],
                                [full + "." + n for n, v in node.nodes.items()
                                 if isinstance(v, nir.Output)])
        elif prefix and isinstance(node, nir.Input | nir.Output):
            flat.nodes[full] = _Port(prefix[:-1])
        else:
            flat.nodes[full] = node
    for a, b in graph.edges:
        flat.edges.append((prefix + a, prefix + b))
    # rewire edges that touch a subgraph node to its ports
    subs = {n: v for n, v in flat.nodes.items() if isinstance(v, tuple)}
    if subs:
        edges = []
        for a, b in flat.edges:
            outs = subs[a][2] if a in subs else [a]
            ins = subs[b][1] if b in subs else [b]
            edges.extend((x, y) for x in outs for y in ins)
        flat.edges = edges
        for n in subs:
            del flat.nodes[n]
    return flat


def _size(node) -> int | None:
    if isinstance(node, nir.Input):
        return int(np.prod(node.input_type["input"]))
    if isinstance(node, nir.Output):
        return int(np.prod(node.output_type["output"]))
    if isinstance(node, nir.CubaLIF | nir.CubaLI):
        return int(np.size(node.tau_mem))
    if isinstance(node, nir.LIF | nir.LI):
        return int(np.size(node.tau))
    return None


def _arr(node, name: str, n: int, node_name: str) -> np.ndarray:
    v = np.asarray(getattr(node, name), dtype=np.float64)
    try:
        v = np.broadcast_to(v.reshape(-1) if v.size == n else v, (n,)).astype(np.float64)
    except ValueError:
        raise NirError(f"node {node_name!r} ({type(node).__name__}): {name} has shape "
                       f"{list(np.shape(v))}, the node has {n} neurons") from None
    if not np.all(np.isfinite(v)) and name not in ("v_threshold",):
        raise NirError(f"node {node_name!r} ({type(node).__name__}): {name} is not finite")
    return v


def _population(name: str, node, dt: float, readout: bool, dt_us: float
                ) -> tuple[Population, np.ndarray]:
    """The population of neuron node ``node`` and the factor its incoming weights
    take per neuron (``w_in dt/tau_syn * r dt/tau_mem / (v_th - v_leak)``)."""
    t = type(node).__name__
    n = _size(node)
    cuba = t in ("CubaLIF", "CubaLI")
    tau_mem = _arr(node, "tau_mem" if cuba else "tau", n, name)
    r = _arr(node, "r", n, name)
    v_leak = _arr(node, "v_leak", n, name)
    for what, tau in (("tau_mem" if cuba else "tau", tau_mem),):
        if np.any(tau <= dt):
            raise NirError(f"node {name!r} ({t}): {what} {float(tau.min()):g} s is not longer "
                           f"than the graph's time step dt = {dt:g} s (the membrane decay "
                           f"per step, 1 - dt/tau, must lie in (0, 1); give --dt)")
    beta = 1.0 - dt / tau_mem
    factor = r * dt / tau_mem
    if cuba:
        tau_syn = _arr(node, "tau_syn", n, name)
        if np.any(tau_syn < dt):
            raise NirError(f"node {name!r} ({t}): tau_syn {float(tau_syn.min()):g} s is "
                           f"shorter than the graph's time step dt = {dt:g} s")
        alpha = 1.0 - dt / tau_syn
        factor = factor * _arr(node, "w_in", n, name) * dt / tau_syn
    else:
        alpha = np.zeros(n)
    spiking = t in ("CubaLIF", "LIF") and not readout
    reset = np.zeros(n)
    if spiking:
        v_th = _arr(node, "v_threshold", n, name)
        if not np.all(np.isfinite(v_th)) or np.any(v_th <= v_leak):
            raise NirError(f"node {name!r} ({t}): v_threshold must be finite and above "
                           "v_leak")
        v_reset = _arr(node, "v_reset", n, name)
        reset = (v_reset - v_leak) / (v_th - v_leak)
        if np.any(reset >= 1):
            raise NirError(f"node {name!r} ({t}): v_reset at or above v_threshold")
        factor = factor / (v_th - v_leak)
    try:
        pop = Population(name, n, spiking, alpha, beta, reset, node_type=t)
    except ValueError as e:
        raise NirError(f"node {name!r} ({t}): {e}") from None
    return pop, factor


def spec_from_nir(graph: nir.NIRGraph, *, dt: float | None = None, dt_us: float = DT_US
                  ) -> tuple[GraphSpec, list[str]]:
    """The :class:`GraphSpec` of ``graph`` and the notes of the conversion; raises
    :class:`NirError` naming the node that cannot be mapped."""
    notes: list[str] = []
    meta = dict(getattr(graph, "metadata", None) or {})
    if dt is None:
        if "dt" in meta:
            dt = float(np.asarray(meta["dt"]))
            notes.append(f"time step dt = {dt:g} s (stated by the graph)")
        else:
            dt = DEFAULT_DT_S
            notes.append(f"time step dt = {dt:g} s (the graph states none: snnTorch's "
                         "convention; --dt sets another)")
    else:
        notes.append(f"time step dt = {dt:g} s (given)")
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise NirError(f"dt = {dt!r}; allowed: a time step in seconds > 0")
    notes.append(f"one graph step of {dt:g} s -> one chip step of {dt_us:g} us: graph time "
                 f"runs {dt / (dt_us * 1e-6):.4g}x faster on the chip (1000x when dt = "
                 f"{dt_us * 1e-3:g} s, the chip's speed-up over biology)")
    flat = _flatten(graph)
    nodes, edges = flat.nodes, flat.edges
    for a, b in edges:
        for x in (a, b):
            if x not in nodes:
                raise NirError(f"edge ({a!r}, {b!r}): node {x!r} does not exist")
    for name, node in nodes.items():
        t = _type(node)
        if t not in (*SUPPORTED, "_Port"):
            raise NirError(f"node {name!r}: type {t} is not supported (supported: "
                           f"{', '.join(k for k in SUPPORTED if k != 'NIRGraph')})")
        if t == "Affine" and np.any(np.asarray(node.bias) != 0):
            raise NirError(f"node {name!r} (Affine): a nonzero bias is a constant current; "
                           "the chip's synapses carry only spikes")
        if t == "Delay" and np.any(np.asarray(node.delay) != 0):
            raise NirError(f"node {name!r} (Delay): delays of "
                           f"{float(np.max(node.delay)):g} s; the chip's event routing has no "
                           "programmable delay (only zero delays map)")
        if t in _WEIGHTS and np.asarray(node.weight).ndim != 2:
            raise NirError(f"node {name!r} ({t}): weight of shape "
                           f"{list(np.shape(node.weight))}; only a matrix [out, in] maps")
    inputs = [n for n, v in nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1:
        raise NirError(f"the graph has {len(inputs)} Input nodes ({', '.join(inputs) or '-'}); "
                       "spikeloop maps exactly one")
    if not outputs:
        raise NirError("the graph has no Output node (the readout)")
    preds = {n: [a for a, b in edges if b == n] for n in nodes}
    succs = {n: [b for a, b in edges if a == n] for n in nodes}

    def sources(n, path=()):
        """Input or neuron nodes reaching ``n`` through pass-through nodes."""
        out = []
        for p in preds[n]:
            t = _type(nodes[p])
            if p in path:
                raise NirError(f"node {p!r}: a loop of pass-through nodes")
            if t in _PASS:
                out.extend(sources(p, path + (p,)))
            else:
                out.append(p)
        return out

    readout = set()
    for o in outputs:
        src = sources(o)
        if not src:
            raise NirError(f"node {o!r} (Output) has no input edge")
        for s in src:
            if _type(nodes[s]) not in _NEURONS:
                raise NirError(f"node {o!r} (Output): fed by {s!r} ({_type(nodes[s])}); "
                               "an Output must read neuron nodes")
            readout.add(s)
    neurons = [n for n, v in nodes.items() if _type(v) in _NEURONS]
    for n in neurons:
        if n not in readout and _type(nodes[n]) in ("CubaLI", "LI"):
            raise NirError(f"node {n!r} ({_type(nodes[n])}): a leaky integrator emits no "
                           "spikes; it can only be read out (connect it to an Output)")
    # links: weight nodes between a source and neuron nodes; direct edges are identities
    raw: dict[tuple[str, str], list] = {}
    for n, v in nodes.items():
        t = _type(v)
        if t in _WEIGHTS:
            src = sources(n)
            if len(src) != 1:
                raise NirError(f"node {n!r} ({t}) needs exactly one input, has "
                               f"{len(src)} ({', '.join(src) or 'no input edge'})")
            pre = src[0]
            if _type(nodes[pre]) in _WEIGHTS:
                raise NirError(f"node {n!r} ({t}) follows weight node {pre!r}: a chain of "
                               "two weight nodes has no synapse on the chip")
            w = np.asarray(v.weight, dtype=np.float64)
            posts = _targets(n, nodes, succs)
            if not posts:
                raise NirError(f"node {n!r} ({t}) has no output edge to a neuron node")
            for post in posts:
                raw.setdefault((pre, post), []).append((n, w))
        elif t in _NEURONS or t == "Input":
            for post in _targets(n, nodes, succs, direct=True):
                m = _size(nodes[n])
                raw.setdefault((n, post), []).append((f"{n}->{post}", np.eye(m)))
    for n in neurons:
        if not any(post == n for _, post in raw):
            raise NirError(f"node {n!r} ({_type(nodes[n])}) has no input edge")
    for (pre, post), ws in raw.items():
        if pre in readout:
            raise NirError(f"node {pre!r} ({_type(nodes[pre])}) feeds an Output and also "
                           f"projects to {post!r}: a readout drives nothing")
        want = (_size(nodes[post]), _size(nodes[pre]))
        for wname, w in ws:
            if w.shape != want:
                raise NirError(f"node {wname!r}: weight [{w.shape[0]}, {w.shape[1]}] (out, "
                               f"in), but {pre!r} has {want[1]} and {post!r} {want[0]} "
                               "neurons")
    # populations in topological order (breadth first from the input)
    order: list[str] = []
    frontier = [inputs[0]]
    while frontier:
        nxt = []
        for a in frontier:
            for (pre, post) in raw:
                if pre == a and post not in order:
                    order.append(post)
                    nxt.append(post)
        frontier = nxt
    unreached = [n for n in neurons if n not in order]
    if unreached:
        raise NirError(f"node {unreached[0]!r} ({_type(nodes[unreached[0]])}) is not "
                       "reached from the Input node")
    pops, factors = {}, {}
    for n in order:
        pops[n], factors[n] = _population(n, nodes[n], dt, n in readout, dt_us)
        if n in readout and _type(nodes[n]) in ("CubaLIF", "LIF"):
            notes.append(f"{n} ({_type(nodes[n])}) feeds the Output: read out by its "
                         "membrane as a leaky integrator (the paper's readout); its "
                         "threshold and reset are not used")
    rank = {INPUT: -1, **{n: k for k, n in enumerate(order)}}
    links = []
    for post in order:
        into = sorted(((pre, ws) for (pre, p), ws in raw.items() if p == post),
                      key=lambda x: rank[INPUT if x[0] == inputs[0] else x[0]])
        for pre, ws in into:
            w = sum(x for _, x in ws) * factors[post][:, None]
            names = "+".join(x for x, _ in ws)
            if len(ws) > 1:
                notes.append(f"{pre} -> {post}: the weights of {names} added up")
            links.append(Link(INPUT if pre == inputs[0] else pre, post,
                              w.astype(np.float32), names))
    try:
        spec = GraphSpec(_size(nodes[inputs[0]]), [pops[n] for n in order], links, dt_us,
                         source={"dt_s": dt, "input": inputs[0], "outputs": outputs})
    except ValueError as e:
        raise NirError(str(e)) from None
    return spec, notes


def _targets(n: str, nodes: dict, succs: dict, direct: bool = False) -> list[str]:
    """Neuron nodes reached from ``n`` through pass-through nodes (``direct``:
    not through weight nodes either, which make their own links)."""
    out = []
    for s in succs[n]:
        t = _type(nodes[s])
        if t in _PASS:
            out.extend(_targets(s, nodes, succs, direct))
        elif t in _NEURONS:
            out.append(s)
    return out


def quantisation_report(net: GraphChipNetwork) -> list[dict]:
    """Per link: the chip's integer weights against the model's: scale, weights
    clipped at +-63, and the RMS and largest error in model units, relative to the
    RMS weight."""
    ints, scales = net.chip_weights()
    out = []
    for j, (lk, w_int) in enumerate(zip(net.spec.links, ints, strict=True)):
        w = net.weights[j].detach().double().numpy().T
        s = scales[lk.post]
        err = w_int / s - w
        rms_w = float(np.sqrt(np.mean(w ** 2))) or 1.0
        out.append({"link": f"{lk.pre} -> {lk.post}", "node": lk.node, "scale": s,
                    "clipped": int(np.sum(np.abs(np.rint(w * s)) > WEIGHT_MAX)),
                    "zero_after_rounding": int(np.sum((w != 0) & (w_int == 0))),
                    "rms_error": float(np.sqrt(np.mean(err ** 2))),
                    "max_error": float(np.max(np.abs(err), initial=0.0)),
                    "relative_rms_error": float(np.sqrt(np.mean(err ** 2))) / rms_w})
    return out


def from_nir(graph, chip: Chip | None = None, *, dt: float | None = None,
             backend: str = "fast", run_seed: int = 0, **backend_options):
    """Map ``graph`` (a ``nir.NIRGraph`` or a path) onto ``chip``: a
    :class:`GraphChipNetwork` (placed, its settings converted), or without a chip the
    :class:`GraphNetwork` of the ideal model.  ``net.report`` (a dict) holds the
    conversion's notes, the placement and the quantisation error.  Refusals:
    :class:`NirError` naming the node (or the file), or the placement's
    ``PlacementError`` naming the population (= the node) that does not fit."""
    if not isinstance(graph, nir.NIRGraph):
        graph = read_graph(graph)
    spec, notes = spec_from_nir(graph, dt=dt)
    report = {"notes": notes, "network": spec.describe().splitlines()}
    if chip is None:
        net = GraphNetwork(spec)
    else:
        try:
            net = GraphChipNetwork(spec, chip, backend=backend, run_seed=run_seed,
                                   **backend_options)
        except PlacementError as e:
            raise PlacementError(f"the graph does not fit preset {chip.cfg.name!r}: {e}") \
                from None
        except ValueError as e:
            raise NirError(str(e)) from None
        report["placement"] = {p: {"neurons": [int(net.placement.neurons[p][0]),
                                               int(net.placement.neurons[p][-1])],
                                   "half": "both (merged)" if p in net.placement.merged
                                   else int(net.placement.halves[p])}
                               for p in net.placement.neurons}
        report["chip_settings"] = net.mapping.summary
        report["notes"] += net.mapping.notes
        report["quantisation"] = quantisation_report(net)
    net.report = report
    return net


# ----------------------------------------------------------------------- export
def spec_of(net) -> GraphSpec:
    """The :class:`GraphSpec` of a network: a :class:`GraphNetwork` (its present
    weights) or the paper's :class:`~spikeloop.nn.LoopNetwork` (input -> "hidden"
    LIF, optionally recurrent -> "out" readout)."""
    if isinstance(net, GraphNetwork):
        return net.to_spec()
    if not isinstance(net, LoopNetwork):
        raise TypeError(f"cannot export a {type(net).__name__}")
    p = net.params

    def pop(name, size, spiking):
        return Population(name, size, spiking, p.a, p.b, 0.0,
                          node_type="CubaLIF" if spiking else "CubaLI")

    def w(syn):
        return syn.weight.detach().cpu().numpy().astype(np.float32)

    links = [Link(INPUT, "hidden", w(net.hidden_synapse), "hidden_synapse")]
    if net.recurrent_synapse is not None:
        links.append(Link("hidden", "hidden", w(net.recurrent_synapse), "recurrent_synapse"))
    links.append(Link("hidden", "out", w(net.output_synapse), "output_synapse"))
    return GraphSpec(net.n_in, [pop("hidden", net.n_hidden, True),
                                pop("out", net.n_out, False)], links, p.dt_us)


def to_nir(net, *, dt: float = DEFAULT_DT_S, readout: str = "CubaLI") -> nir.NIRGraph:
    """The NIR graph of ``net`` (see :func:`spec_of`) in the ideal model: spiking
    populations as CubaLIF (leak 0, threshold 1, reset as normalised), readouts as
    CubaLI (``readout="CubaLIF"``: a CubaLIF whose threshold is infinite, for
    importers without CubaLI, such as snnTorch 1.0), every link as a Linear node
    ``[out, in]`` in the model's real-valued scale.  Time constants are written for
    the step ``dt`` (s) with Euler's rule: ``tau = dt / (1 - decay per step)``,
    ``r = tau_mem / dt``, ``w_in = tau_syn / dt``; ``graph.metadata["dt"]`` states it."""
    if readout not in ("CubaLI", "CubaLIF"):
        raise ValueError(f"readout = {readout!r}; allowed: CubaLI, CubaLIF")
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt = {dt!r}; allowed: a time step in seconds > 0")
    spec = spec_of(net)
    nodes: dict = {"input": nir.Input(input_type=np.array([spec.n_in]))}
    edges = []
    for p in spec.populations:
        if np.any(p.alpha == 0):
            raise ValueError(f"population {p.name!r}: a neuron without synaptic current "
                             "(alpha 0) has no CubaLIF form")
        tau_syn = dt / (1.0 - p.alpha)
        tau_mem = dt / (1.0 - p.beta)
        common = dict(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt,
                      v_leak=np.zeros(p.size), w_in=tau_syn / dt)
        if p.spiking:
            nodes[p.name] = nir.CubaLIF(v_threshold=np.ones(p.size), v_reset=p.reset.copy(),
                                        **common)
        elif readout == "CubaLI":
            nodes[p.name] = nir.CubaLI(**common)
        else:
            nodes[p.name] = nir.CubaLIF(v_threshold=np.full(p.size, np.inf),
                                        v_reset=np.zeros(p.size), **common)
    names = set(nodes) | {"output"}
    for lk in spec.links:
        name = lk.node if lk.node and lk.node not in names else f"{lk.pre}_to_{lk.post}"
        names.add(name)
        nodes[name] = nir.Linear(weight=np.asarray(lk.weight, dtype=np.float32))
        edges += [(lk.pre, name), (name, lk.post)]
    outs = spec.readout
    if len(outs) == 1:
        nodes["output"] = nir.Output(output_type=np.array([outs[0].size]))
        edges.append((outs[0].name, "output"))
    else:
        for p in outs:
            nodes[f"output_{p.name}"] = nir.Output(output_type=np.array([p.size]))
            edges.append((p.name, f"output_{p.name}"))
    meta = {"dt": float(dt), "source": "spikeloop", "dt_us": float(spec.dt_us),
            "readout": "max over time of the readout membranes, log-softmax"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)



# ----------------------------------------------------------------------- files
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_nir_file(path) -> bool:
    """Whether ``path`` is an HDF5 file (a NIR graph, or refused as one), not a torch file."""
    with open(path, "rb") as f:
        return f.read(8) == _HDF5_SIGNATURE


def init_kwargs(path, *, n_in: int, n_out: int, dt_us: float, dt: float | None = None
                ) -> tuple[dict, str] | None:
    """The network that ``spikeloop train --init path`` starts from when it is a
    general one: ``(network_kwargs, "nir")`` for a NIR graph (its weights included),
    ``(network_kwargs, "network")`` for a network file of an imported network (its
    weights in its state dict); None for a network file of the paper's network.
    Refuses (NirError) a network whose inputs, classes or time step differ from the
    task's."""
    path = Path(path)
    if not path.is_file():
        raise NirError(f"--init {path}: no such file (a network.pt or a NIR graph)")
    if is_nir_file(path):
        spec, _ = spec_from_nir(read_graph(path), dt=dt, dt_us=dt_us)
        kwargs, kind = graph_kwargs(spec), "nir"
    else:
        try:
            meta = torch.load(path, weights_only=True, map_location="cpu")
        except Exception:  # noqa: BLE001 - whatever it holds, it is no network file of ours
            raise NirError(f"--init {path}: neither a NIR graph nor a readable network.pt "
                           "(corrupt, truncated or not a torch file)") from None
        kwargs = meta.get("network_kwargs", {}) if isinstance(meta, dict) else {}
        if "graph" not in kwargs:
            return None
        kind = "network"
    theirs = (kwargs["n_in"], kwargs["n_out"], float(kwargs["params"]["dt_us"]))
    if theirs != (n_in, n_out, float(dt_us)):
        raise NirError(f"--init {path}: its network has {theirs[0]} inputs, {theirs[1]} "
                       f"outputs and steps of {theirs[2]:g} us; the task has {n_in}, {n_out} "
                       f"and {dt_us:g} us")
    return kwargs, kind
