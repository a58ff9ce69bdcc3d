"""Placement: map a spiking network onto the chip and produce its ConfigImage.

    proj = [Projection(INPUT, "hidden", w_in),      # int weights, -63..63
            Projection("hidden", "out", w_out)]     # ("hidden", "hidden", w_rec): recurrent
    pl = place(FULL, proj)
    image = chip.configure(pl.image)                # analog settings := the chip's calibration
    events = pl.input_events([[(cycle, input_index), ...], ...])
    obs = backends.run(chip, image, events, n_steps)
    pl.decode_records(obs.records)                  # (sample, cycle, population, member)

The network
-----------
A list of :class:`Projection` ``(pre, post, weights)``: ``pre`` is :data:`INPUT`
(the external inputs) or a population name, ``post`` a population name,
``weights`` an integer matrix ``[n_pre, n_post]`` in ``-weight_max..weight_max``
(:func:`quantize` turns float weights into these with the paper's scales).
Populations are the ``post`` names; their sizes come from the weight shapes.
``A -> A`` is a recurrent projection.

What the image holds (the paper's "How the gradient is formed in the loop", 5.)
-----------------------------------------------------------------------------
- Signed weights: every source (an input, or a neuron with outgoing projections)
  drives one synapse driver pair per half it projects into: row ``2d`` is
  excitatory, row ``2d + 1`` inhibitory.  A weight ``w > 0`` is written as ``w``
  on the excitatory row, ``w < 0`` as ``|w|`` on the inhibitory row, in the
  column of the target neuron, with the synapse label = the source's address.
- Event labels (spikeloop/base/layouts.py): ``address`` (6 bits) | ``row_select`` (5) |
  ``upper`` (3 on FULL).  A source owns a *slot* ``(d, a)``: driver ``d``,
  address ``a``.  Its label is ``pack_event(a, d // B, d % B)``: the row select
  picks driver ``d`` among the ``D / B`` drivers listening to bus ``d % B``
  (every driver matches its own row select exactly: ``select = d // B``, full
  mask), the upper bits carry the bus ``d % B``, by which the crossbar routes:
  node (source, bus ``h*B + b``) has ``mask = bus bits``, ``target = b``.
  Slots are unique on the whole chip (not per half), so every label names one
  source and a source that projects into both halves uses driver ``d`` in both.
- Neurons: each population sits in one half, in consecutive columns (starting
  on block boundaries when the half has room for that), neurons outside every
  population are disabled.  Every neuron gets a unique label (sources: their
  slot; the others: a slot no source uses, never routed to a bus), so recorded
  events decode to (population, member).
- Crossbar: the block of every source neuron is routed to the buses of the
  halves its population projects into, the external links to the buses of the
  halves the inputs project into; blocks of recorded populations go to the host
  links (block ``k`` of the recorded ones -> link ``k % n_host_links``; mask 0:
  everything the block sends).  A block holding neurons of several populations
  sends all their events along the union of their routes; an event arriving on
  a half it does not project into matches a driver whose synapses carry other
  labels (or weight 0), so it adds no current, only bus traffic.

Sharing a driver pair (the strategy)
------------------------------------
Up to ``2**label_bits`` (64) sources may share one driver pair, told apart by
the synapse labels.  A synapse ``(row, column)`` holds ONE label, so two
sources sharing a pair may not both need the same row in the same column.
With ``reserve="weights"`` (default) a source needs the excitatory row in the
columns of its positive weights and the inhibitory row in those of its negative
ones: sources sharing a pair must connect to different neurons, or to the same
neuron with opposite signs.  With ``reserve="both"`` a source reserves both rows
of every connection its projection's ``mask`` allows (default: its nonzero
weights), so :meth:`Placement.set_weights` can later write any weights, signs
included, inside that mask (training in the loop).
Allocation is first-fit decreasing: sources sorted by synapses needed (most
first; ties: inputs, then populations in order, by index), each takes the
lowest driver pair (and lowest free address) whose rows are free in every half
it projects into.  A dense signed projection therefore needs one pair per
source (256 inputs fully connected to a half need 256 pairs; a half has 128:
refused), a sparse one packs up to 64 sources into a pair.  First-fit is not
optimal (packing is graph colouring); a refusal reports the pairs first-fit
needed.

Merged neurons (``merged=["hidden", ...]``, two-half chips)
---------------------------------------------------------
A merged population's member ``j`` is neuron circuit ``c`` of half 0 together
with circuit ``C + c`` of half 1 (``image.neuron_merge[c] = 1``; the analog
model in model/analog.py): one neuron fed by the synapse rows of both halves,
so it can have twice the signed inputs (the paper's 256 inputs need 256 driver
pairs; a half has 128).  Merged populations take the first columns of both
halves; source ``i`` of a projection into a merged population uses the rows of
half ``i % 2``.  ``neurons[pop]`` lists the top circuits (enabled, labelled,
spiking, read by the ADC); the bottom circuits stay disabled.

Halves: ``halves={"pop": h}`` fixes them; otherwise population ``k`` (in order
of first appearance as ``post``) goes to half ``k % n_halves`` first, then every
other assignment is tried in order; if none fits, the error of the first
assignment is raised.

Refusals (:class:`PlacementError`) say what does not fit and by how much: a
population larger than a half, a half's populations exceeding its columns, the
driver pairs of a half, the labels, a label layout that cannot address the
drivers or route to the buses, out-of-range weights.  A population is never split
across halves.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign, pack_event, unpack_event

#: the ``pre`` name of the external inputs
INPUT = "input"
#: the paper's scale of the hidden layer's weights
HIDDEN_SCALE = 240.0
#: the paper's upper bound of the output layer's adaptive scale
OUTPUT_SCALE_MAX = 250.0


class PlacementError(ValueError):
    """The network does not fit the chip (the message says what and by how much)."""


# -- weights -------------------------------------------------------------------

def _numpy(w) -> np.ndarray:
    if hasattr(w, "detach"):  # a torch tensor
        w = w.detach().cpu().numpy()
    return np.asarray(w)


def quantize(w_float, scale: float, weight_max: int = 63) -> np.ndarray:
    """Integer chip weights of float weights: ``clip(round(w * scale), -weight_max,
    weight_max)`` (round half to even, as ``torch.round``); the sign selects the
    row (excitatory / inhibitory), the magnitude is the 6-bit synapse weight.
    The paper uses ``scale = 240`` (:data:`HIDDEN_SCALE`) for the hidden layer
    and :func:`output_scale` for the output layer."""
    w = _numpy(w_float).astype(np.float64)
    return np.clip(np.rint(w * scale), -weight_max, weight_max).astype(np.int64)


def output_scale(w_float, weight_max: int = 63, cap: float = OUTPUT_SCALE_MAX) -> float:
    """The paper's adaptive output scale ``min(63 / max|W|, 250)`` (``cap`` when
    every weight is 0)."""
    m = float(np.abs(_numpy(w_float)).max(initial=0.0))
    return cap if m == 0.0 else min(weight_max / m, cap)


# -- the network ---------------------------------------------------------------

@dataclass
class Projection:
    """``pre`` (:data:`INPUT` or a population) -> population ``post`` with integer
    ``weights [n_pre, n_post]``; ``mask`` (bool, same shape): the connections that
    exist (used by ``reserve="both"``; default: the nonzero weights)."""

    pre: str
    post: str
    weights: np.ndarray
    mask: np.ndarray | None = None


@dataclass
class _Source:
    kind: str          # INPUT or a population name
    index: int         # member index
    # half -> (exc column bitset, inh column bitset)
    need: dict[int, tuple[int, int]] = field(default_factory=dict)
    slot: tuple[int, int] | None = None  # (driver, address)

    @property
    def n_synapses(self) -> int:
        return sum(bin(e).count("1") + bin(i).count("1") for e, i in self.need.values())


@dataclass
class Placement:
    """A placed network.  ``image`` has zero analog settings unless some were
    given: ``chip.configure(placement.image)`` writes a chip's calibration."""

    cfg: ChipConfig
    image: ConfigImage
    projections: list[Projection]
    #: population -> its half
    halves: dict[str, int]
    #: population -> neuron index (0..n_neurons-1) of each member
    neurons: dict[str, np.ndarray]
    #: event label of each external input (for InputEvents)
    input_labels: np.ndarray
    #: external link each input is played on
    input_links: np.ndarray
    #: population -> event label of each member's spikes
    neuron_labels: dict[str, np.ndarray]
    #: (INPUT or population, member) -> (driver, address) of every source
    slots: dict[tuple[str, int], tuple[int, int]]
    #: recorded population -> host links its blocks are routed to
    record_links: dict[str, list[int]]
    #: [H, R, C] owner of each synapse: ``projection << 32 | pre member``, -1: free
    owner: np.ndarray = field(repr=False, default=None)
    #: merged populations (their ``neurons`` are the top circuits, ``halves`` 0)
    merged: frozenset = frozenset()
    #: projection -> the synapses its weights land on (:meth:`_targets`), made once
    _target_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def source_half(self, post: str, pre_index: int) -> int:
        """The half whose synapses carry source ``pre_index``'s projection into ``post``."""
        return _source_half(self.halves, self.merged, post, pre_index)

    @property
    def n_inputs(self) -> int:
        return len(self.input_labels)

    def input_events(self, per_sample) -> InputEvents:
        """InputEvents of ``per_sample[s]`` = list of ``(cycle, input index)``."""
        return InputEvents.from_lists(self.cfg, [
            [(int(c), int(self.input_links[i]), int(self.input_labels[i])) for c, i in evs]
            for evs in per_sample])

    def label_map(self) -> dict[int, tuple[str, int]]:
        """event label -> (population or INPUT, member) of every placed label."""
        out = {int(lb): (INPUT, i) for i, lb in enumerate(self.input_labels)}
        for pop, labels in self.neuron_labels.items():
            out.update({int(lb): (pop, j) for j, lb in enumerate(labels)})
        return out

    def decode_records(self, records: np.ndarray) -> list[tuple[int, int, str, int]]:
        """Observables.records ``(sample, cycle, link, label)`` ->
        ``(sample, cycle, population, member)`` (unknown labels: ``("?", label)``)."""
        m = self.label_map()
        return [(int(s), int(c), *m.get(int(lb), ("?", int(lb))))
                for s, c, _, lb in np.asarray(records).reshape(-1, 4)]

    def spikes_of(self, spikes: np.ndarray, population: str) -> np.ndarray:
        """Observables.spikes rows of ``population``, neuron column replaced by
        the member index: ``(sample, step, cycle, member)``."""
        spikes = np.asarray(spikes).reshape(-1, 4)
        idx = np.full(self.cfg.n_neurons, -1)
        idx[self.neurons[population]] = np.arange(len(self.neurons[population]))
        rows = spikes[idx[spikes[:, 3]] >= 0].copy()
        rows[:, 3] = idx[rows[:, 3]]
        return rows

    def set_weights(self, projection: int, weights) -> None:
        """Rewrite the weights of ``projections[projection]`` in ``image`` (the
        labels stay).  Every nonzero weight must land on a synapse this
        projection owns: any weight of its mask with ``reserve="both"``, else
        only weights keeping the sign and connectivity they were placed with.
        A weight that does not fit is refused before anything is written."""
        proj = self.projections[projection]
        w = _check_weights(self.cfg, projection, proj, _numpy(weights))
        own_exc, own_inh, flat = self._targets(projection, w.shape[0])
        owns_all = all(pos is None for pos, _ in flat)      # every weight fits
        bad = None if owns_all else ((w > 0) & ~own_exc) | ((w < 0) & ~own_inh)
        if bad is not None and bad.any():
            i, j = (int(x) for x in np.argwhere(bad)[0])       # the first in row-major order
            v = int(w[i, j])
            raise PlacementError(
                f"projection {projection} ({proj.pre} -> {proj.post}): weight {v} at "
                f"[{i}, {j}] needs the {'inhibitory' if v < 0 else 'excitatory'} "
                "synapse, which this placement did not reserve for it (place with "
                "reserve='both' and a mask that includes it)")
        sw = self.image.synapse_weight
        flat_sw = sw.reshape(-1) if sw.flags.c_contiguous else None     # (a view)
        wf = w.reshape(-1)
        for (pos, at), sign in zip(flat, (1, -1), strict=True):
            v = np.maximum(sign * (wf if pos is None else wf[pos]), 0)
            if flat_sw is None:
                np.put(sw, at, v)
            else:
                flat_sw[at] = v

    def _targets(self, projection: int, n_pre: int) -> tuple:
        """Where :meth:`set_weights` writes projection ``projection``'s ``n_pre``
        sources: ``(the excitatory synapses it owns [n_pre, n_post], the
        inhibitory ones, flat)`` with ``flat`` the excitatory and the inhibitory
        synapses as ``(positions in the flattened weights (None: all of them, in
        order), flat indices into synapse_weight)``; a function of the placement
        alone, made once."""
        got = self._target_cache.get(projection)
        if got is not None and got[0].shape[0] == n_pre:
            return got
        proj = self.projections[projection]
        cols = self.neurons[proj.post] % self.cfg.columns_per_half           # [n_post]
        # per source: its half, its driver pair (-1: no slot) and its owner key
        h = np.array([self.source_half(proj.post, i) for i in range(n_pre)], dtype=np.int64)
        d = np.array([self.slots.get((proj.pre, i), (-1, 0))[0] for i in range(n_pre)],
                     dtype=np.int64)
        key = np.array([_owner_key(projection, i) for i in range(n_pre)], dtype=np.int64)
        hh, cc = h[:, None], cols[None, :]
        exc_r, inh_r = (2 * np.maximum(d, 0))[:, None], (2 * np.maximum(d, 0) + 1)[:, None]
        has = (d >= 0)[:, None]
        own_exc = has & (self.owner[hh, exc_r, cc] == key[:, None])           # [n_pre, n_post]
        own_inh = has & (self.owner[hh, inh_r, cc] == key[:, None])
        shape = self.image.synapse_weight.shape
        flat = []
        for own, rows in ((own_exc, exc_r), (own_inh, inh_r)):
            pos = np.flatnonzero(own)
            at = np.ravel_multi_index(tuple(np.broadcast_to(a, own.shape).reshape(-1)[pos]
                                            for a in (hh, rows, cc)), shape)
            flat.append((None if len(pos) == own.size else pos, at))
        got = self._target_cache[projection] = (own_exc, own_inh, tuple(flat))
        return got


def _source_half(assignment, merged, post: str, pre_index: int) -> int:
    """A merged population takes its sources alternately on the rows of the top
    (even source index) and the bottom half (odd); others on their own half."""
    return pre_index % 2 if post in merged else assignment[post]


def _owner_key(projection: int, pre: int) -> int:
    """The owner of a synapse: (projection, pre member); the column names the post."""
    return (projection << 32) | pre


def _check_weights(cfg: ChipConfig, k: int, proj: Projection, w: np.ndarray) -> np.ndarray:
    if w.ndim != 2:
        raise PlacementError(f"projection {k} ({proj.pre} -> {proj.post}): weights must be "
                             f"a matrix [n_pre, n_post], got shape {w.shape}")
    if w.size and not np.issubdtype(w.dtype, np.integer):
        if not np.array_equal(w, np.rint(w)):
            raise PlacementError(f"projection {k} ({proj.pre} -> {proj.post}): weights must "
                                 "be integers (see quantize)")
    w = w.astype(np.int64)
    m = cfg.weight_max
    if w.size and np.abs(w).max() > m:
        bad = tuple(int(x) for x in np.argwhere(np.abs(w) > m)[0])
        raise PlacementError(f"projection {k} ({proj.pre} -> {proj.post}): weight "
                             f"{w[bad]} at {list(bad)} is out of range -{m}..{m} "
                             "(see quantize)")
    return w


# -- placing -------------------------------------------------------------------

def place(cfg: ChipConfig, layers, *, halves: dict[str, int] | None = None,
          record: list[str] | None = None, reserve: str = "weights",
          refractory=0, refractory_prescale: int = 0, adc_period: int | None = None,
          analog_settings=None, merged=()) -> Placement:
    """Place the projections ``layers`` (:class:`Projection` or ``(pre, post,
    weights[, mask])`` tuples) on ``cfg``; see the module docstring.

    ``halves``: population -> half (default: searched); ``record``: populations
    routed to the host links (default: all); ``reserve``: ``"weights"`` or
    ``"both"`` (the sharing strategy); ``refractory`` (ticks: an int, or a dict
    population -> int), ``refractory_prescale``, ``adc_period`` (cycles; default:
    one sample per analog step) and ``analog_settings`` (``[n_neurons, 8]``;
    default zeros, see ``Chip.configure``) are written into the image as given.
    ``merged``: populations made of merged neurons (two-half chips; see the
    module docstring).  Raises :class:`PlacementError` when the network does not
    fit."""
    if reserve not in ("weights", "both"):
        raise ValueError(f"reserve={reserve!r}; allowed: 'weights', 'both'")
    projs = [p if isinstance(p, Projection) else Projection(*p) for p in layers]
    if not projs:
        raise PlacementError("no projections to place")
    weights = [_check_weights(cfg, k, p, _numpy(p.weights)) for k, p in enumerate(projs)]
    pops, sizes, n_inputs = _populations(projs, weights)
    record = list(pops) if record is None else list(record)
    for name in record:
        if name not in sizes:
            raise PlacementError(f"record: {name!r} is not a population "
                                 f"(populations: {', '.join(pops)})")
    _check_layout(cfg)
    C = cfg.columns_per_half
    merged = frozenset(merged)
    for name in sorted(merged - set(sizes)):
        raise PlacementError(f"merged: {name!r} is not a population "
                             f"(populations: {', '.join(pops)})")
    if merged and cfg.n_halves != 2:
        raise PlacementError(f"merged: merging neurons needs a chip with 2 halves, "
                             f"preset {cfg.name!r} has {cfg.n_halves}")
    n_merged = sum(sizes[p] for p in merged)
    if n_merged > C:
        parts = " + ".join(f"{p} ({sizes[p]})" for p in pops if p in merged)
        raise PlacementError(f"merged: {parts} = {n_merged} merged neurons, each takes a "
                             f"column of both halves and a half has {C} columns "
                             f"({n_merged - C} too many)")
    n_labels = n_inputs + sum(sizes.values())
    pool = cfg.drivers_per_half << cfg.label_bits
    if n_labels > pool:
        raise PlacementError(f"labels: {n_inputs} inputs + {n_labels - n_inputs} neurons need "
                             f"{n_labels} distinct event labels, the label layout gives "
                             f"{pool} ({n_labels - pool} too many)")
    for name in pops:
        if sizes[name] > C:
            raise PlacementError(f"{name}: {sizes[name]} neurons, a half has {C} columns "
                                 f"({sizes[name] - C} too many)")
    masks = []
    for k, (p, w) in enumerate(zip(projs, weights, strict=True)):
        m = w != 0 if p.mask is None else np.asarray(p.mask, dtype=bool)
        if m.shape != w.shape:
            raise PlacementError(f"projection {k} ({p.pre} -> {p.post}): mask has shape "
                                 f"{m.shape}, weights {w.shape}")
        if np.any((w != 0) & ~m):
            raise PlacementError(f"projection {k} ({p.pre} -> {p.post}): a nonzero weight "
                                 "lies outside its mask")
        masks.append(m)

    free_pops = [p for p in pops if p not in merged]
    if halves is not None:
        unknown = sorted(set(halves) - set(free_pops))
        missing = [p for p in free_pops if p not in halves]
        if unknown or missing:
            raise PlacementError(f"halves: unknown population(s) {unknown}, missing {missing}")
        bad = {p: h for p, h in halves.items() if not 0 <= h < cfg.n_halves}
        if bad:
            raise PlacementError(f"halves: {bad} out of range 0..{cfg.n_halves - 1}")
        candidates = [dict(halves)]
    else:
        H = cfg.n_halves
        first = {p: k % H for k, p in enumerate(free_pops)}
        candidates = [first] + [dict(zip(free_pops, a, strict=True))
                                for a in itertools.islice(
                                    itertools.product(range(H), repeat=len(free_pops)), 256)
                                if dict(zip(free_pops, a, strict=True)) != first]
    candidates = [{**a, **{p: 0 for p in merged}} for a in candidates]
    error = None
    for assignment in candidates:
        try:
            work = _Work(cfg, projs, weights, masks, pops, sizes, n_inputs, assignment,
                         reserve, merged)
            return _place(work, record, refractory, refractory_prescale, adc_period,
                          analog_settings)
        except PlacementError as e:
            error = error or e
    if len(candidates) > 1:
        raise PlacementError(f"{error} (halves {candidates[0]}; no other assignment of the "
                             "populations to halves fits either)")
    raise error


def _populations(projs, weights):
    pops: list[str] = []
    sizes: dict[str, int] = {}
    n_inputs = None
    for k, (p, w) in enumerate(zip(projs, weights, strict=True)):
        if p.post == INPUT:
            raise PlacementError(f"projection {k}: {INPUT!r} cannot be a post population")
        if p.post not in sizes:
            pops.append(p.post)
            sizes[p.post] = w.shape[1]
        elif sizes[p.post] != w.shape[1]:
            raise PlacementError(f"projection {k} ({p.pre} -> {p.post}): {w.shape[1]} "
                                 f"columns, but {p.post} has {sizes[p.post]} neurons")
    seen = set()
    for k, (p, w) in enumerate(zip(projs, weights, strict=True)):
        if (p.pre, p.post) in seen:
            raise PlacementError(f"projection {k}: a second projection {p.pre} -> {p.post} "
                                 "(merge their weights into one)")
        seen.add((p.pre, p.post))
        if p.pre == INPUT:
            if n_inputs is not None and n_inputs != w.shape[0]:
                raise PlacementError(f"projection {k}: {w.shape[0]} input rows, another "
                                     f"projection has {n_inputs}")
            n_inputs = w.shape[0]
        elif p.pre not in sizes:
            raise PlacementError(f"projection {k}: pre population {p.pre!r} is no projection's "
                                 "post (populations are defined by their incoming projections)")
        elif sizes[p.pre] != w.shape[0]:
            raise PlacementError(f"projection {k} ({p.pre} -> {p.post}): {w.shape[0]} rows, "
                                 f"but {p.pre} has {sizes[p.pre]} neurons")
    return pops, sizes, n_inputs or 0


def _bus_bits(cfg: ChipConfig) -> int:
    return max(0, (cfg.buses_per_half - 1).bit_length())


def _check_layout(cfg: ChipConfig) -> None:
    D, B = cfg.drivers_per_half, cfg.buses_per_half
    per_bus = -(-D // B)
    if per_bus > 1 << cfg.row_select_bits:
        raise PlacementError(
            f"label layout: {per_bus} drivers listen to each bus, the row select has "
            f"{cfg.row_select_bits} bits ({1 << cfg.row_select_bits} values; "
            f"{per_bus - (1 << cfg.row_select_bits)} too many)")
    upper = cfg.event_label_bits - cfg.label_bits - cfg.row_select_bits
    if _bus_bits(cfg) > upper:
        raise PlacementError(
            f"label layout: routing to {B} buses needs {_bus_bits(cfg)} upper label bits, "
            f"the event label has {upper} ({_bus_bits(cfg) - upper} too few)")


def _slot_label(cfg: ChipConfig, d: int, a: int) -> int:
    B = cfg.buses_per_half
    return pack_event(cfg, a, d // B, d % B)


@dataclass
class _Work:
    """One placement attempt: the checked network, the half of every population
    (``assignment``), and what the steps of :func:`_place` work out, in order."""

    cfg: ChipConfig
    projs: list[Projection]
    weights: list[np.ndarray]
    masks: list[np.ndarray]
    pops: list[str]
    sizes: dict[str, int]
    n_inputs: int
    assignment: dict[str, int]
    reserve: str
    merged: frozenset
    #: sort rank of a source kind: the inputs, then the populations in order
    order: dict[str, int] = field(init=False)
    #: population -> neuron index of each member (:func:`_place_columns`)
    neurons: dict[str, np.ndarray] = field(init=False, repr=False)
    #: (INPUT or population, member) -> the source and the synapses it needs
    #: (:func:`_collect_sources`); its slot is set by :func:`_allocate_pairs`
    sources: dict[tuple[str, int], _Source] = field(init=False, repr=False)
    #: [h][d]: column bitsets of the excitatory / inhibitory rows of driver pair
    #: ``d`` taken in half ``h``; addresses taken per pair (:func:`_allocate_pairs`)
    used_exc: list[list[int]] = field(init=False, repr=False)
    used_inh: list[list[int]] = field(init=False, repr=False)
    n_addr: list[int] = field(init=False, repr=False)
    #: the sources' slots, the event labels of all inputs and neurons (:func:`_assign_labels`)
    slots: dict[tuple[str, int], tuple[int, int]] = field(init=False, repr=False)
    input_labels: np.ndarray = field(init=False, repr=False)
    neuron_labels: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self):
        self.order = {INPUT: 0, **{p: k + 1 for k, p in enumerate(self.pops)}}


def _place(work: _Work, record, refractory, refractory_prescale, adc_period,
           analog_settings) -> Placement:
    """Place the network of ``work`` with its populations in the halves of
    ``work.assignment`` (the other arguments: see :func:`place`), step by step;
    raises :class:`PlacementError` when it does not fit."""
    cfg = work.cfg
    _place_columns(work)
    _collect_sources(work)
    _allocate_pairs(work)
    _assign_labels(work)
    img, owner = _synapse_image(work)
    _neuron_image(work, img, refractory, refractory_prescale, adc_period, analog_settings)
    record_links = _route(work, img, record)
    img = ConfigImage(cfg, **{f: getattr(img, f) for f in img.__dataclass_fields__
                              if f != "cfg"})  # re-validate every field's range
    return Placement(
        cfg=cfg, image=img, projections=work.projs,
        halves={p: work.assignment[p] for p in work.pops}, neurons=work.neurons,
        input_labels=work.input_labels,
        input_links=np.arange(work.n_inputs, dtype=np.int64) % cfg.n_ext_inputs,
        neuron_labels=work.neuron_labels, slots=work.slots, record_links=record_links,
        owner=owner, merged=work.merged)


def _place_columns(work: _Work) -> None:
    """Step 1, the columns: the merged populations first (the same columns in
    both halves), then the populations of each half, consecutive, block-aligned
    when the half has room for that.  Sets ``work.neurons``; refuses a half
    whose populations exceed its columns."""
    cfg, pops, sizes, merged = work.cfg, work.pops, work.sizes, work.merged
    H, C, P = cfg.n_halves, cfg.columns_per_half, cfg.neurons_per_block
    start: dict[str, int] = {}
    first_merged = [p for p in pops if p in merged]
    for h in range(H):
        members = first_merged + [p for p in pops if work.assignment[p] == h and p not in merged]
        total = sum(sizes[p] for p in members)
        if total > C:
            parts = " + ".join(f"{p} ({sizes[p]}{', merged' if p in merged else ''})"
                               for p in members)
            raise PlacementError(f"half {h}: {parts} = {total} neurons, a half has {C} "
                                 f"columns ({total - C} too many)")
        aligned = sum(-(-sizes[p] // P) * P for p in members[:-1]) + (
            sizes[members[-1]] if members else 0)
        col = 0
        for p in members:
            if p in merged and h:
                col = start[p] + sizes[p]          # placed with half 0
                continue
            if aligned <= C:
                col = -(-col // P) * P
            start[p] = h * C + col
            col += sizes[p]
    work.neurons = {p: np.arange(start[p], start[p] + sizes[p]) for p in pops}


def _collect_sources(work: _Work) -> None:
    """Step 2, the sources (inputs and neurons with outgoing weights) and the
    synapses each needs per half: the columns of its excitatory and of its
    inhibitory row (by the weights' signs, or both rows of its mask with
    ``reserve="both"``).  Sets ``work.sources``."""
    C = work.cfg.columns_per_half
    sources: dict[tuple[str, int], _Source] = {}
    for p, w, m in zip(work.projs, work.weights, work.masks, strict=True):
        cols = work.neurons[p.post] % C
        for i in range(w.shape[0]):
            h = _source_half(work.assignment, work.merged, p.post, i)
            if work.reserve == "both":
                exc = inh = m[i]
            else:
                exc, inh = w[i] > 0, w[i] < 0
            if not (exc.any() or inh.any()):
                continue
            s = sources.setdefault((p.pre, i), _Source(p.pre, i))
            e0, i0 = s.need.get(h, (0, 0))
            s.need[h] = (e0 | _bits(cols[exc]), i0 | _bits(cols[inh]))
    # one source in two projections into one half (A -> B and A -> A, both in half h)
    # needs disjoint columns: B and A are different populations
    work.sources = sources


def _allocate_pairs(work: _Work) -> None:
    """Step 3, first-fit decreasing over driver pairs: the sources, most
    synapses first, each take the lowest pair (and its lowest free address)
    whose rows are free in every half they need (virtual pairs beyond the
    drivers count the need).  Sets the sources' slots and ``work.used_exc``,
    ``work.used_inh``, ``work.n_addr``; refuses a half that needs more pairs
    than it has."""
    cfg, order = work.cfg, work.order
    H, D, A = cfg.n_halves, cfg.drivers_per_half, 1 << cfg.label_bits
    used_exc: list[list[int]] = [[] for _ in range(H)]   # [h][d] column bitsets
    used_inh: list[list[int]] = [[] for _ in range(H)]
    n_addr: list[int] = []                               # addresses taken per pair
    for s in sorted(work.sources.values(),
                    key=lambda s: (-s.n_synapses, order[s.kind], s.index)):
        d = 0
        while True:
            if d == len(n_addr):
                n_addr.append(0)
                for h in range(H):
                    used_exc[h].append(0)
                    used_inh[h].append(0)
            if n_addr[d] < A and all(not (used_exc[h][d] & e or used_inh[h][d] & i)
                                     for h, (e, i) in s.need.items()):
                break
            d += 1
        s.slot = (d, n_addr[d])
        n_addr[d] += 1
        for h, (e, i) in s.need.items():
            used_exc[h][d] |= e
            used_inh[h][d] |= i
    for h in range(H):
        needed = max((d + 1 for d in range(len(n_addr)) if used_exc[h][d] | used_inh[h][d]),
                     default=0)
        if needed > D:
            into = [p for p in work.pops if work.assignment[p] == h or p in work.merged]
            srcs = sorted({pr.pre for pr in work.projs if pr.post in into}, key=order.get)
            raise PlacementError(
                f"half {h}: the sources ({', '.join(srcs)}) of {', '.join(into)} need "
                f"{needed} synapse driver pairs, a half has {D} ({needed - D} too many; "
                f"sources sharing a pair must use different synapses: other neurons, or "
                f"opposite signs with reserve='weights')")
    # pairs beyond D used by nothing can remain only if no half needed them
    work.used_exc, work.used_inh, work.n_addr = used_exc, used_inh, n_addr


def _assign_labels(work: _Work) -> None:
    """Step 4, the labels: the sources own their slots; the other neurons and
    the unconnected inputs take free slots (never routed to a bus where it
    would matter).  Sets ``work.slots``, ``work.input_labels`` and
    ``work.neuron_labels``."""
    cfg, sizes, n_addr = work.cfg, work.sizes, work.n_addr
    D, A = cfg.drivers_per_half, 1 << cfg.label_bits
    n_used_pairs = len(n_addr)
    free = ((d, a) for d in range(D) for a in range(A)
            if d >= n_used_pairs or a >= n_addr[d])
    members = ((INPUT, work.n_inputs), *((p, sizes[p]) for p in work.pops))
    slots: dict[tuple[str, int], tuple[int, int]] = {}
    for kind, n in members:
        for i in range(n):
            s = work.sources.get((kind, i))
            if s is not None:
                slots[(kind, i)] = s.slot
    label_slot = {}
    for kind, n in members:
        for i in range(n):
            label_slot[(kind, i)] = slots.get((kind, i)) or next(free)
    work.slots = slots
    work.input_labels = np.array([_slot_label(cfg, *label_slot[(INPUT, i)])
                                  for i in range(work.n_inputs)], dtype=np.int64)
    work.neuron_labels = {p: np.array([_slot_label(cfg, *label_slot[(p, j)])
                                       for j in range(sizes[p])], dtype=np.int64)
                          for p in work.pops}


def _synapse_image(work: _Work) -> tuple[ConfigImage, np.ndarray]:
    """Step 5, the synapse side of the image: every driver matches its own row
    select, the used pairs get their signs (row ``2d`` excitatory, ``2d + 1``
    inhibitory), every source's synapses its address, weight and owner.
    Returns the image and the owner array ``[H, R, C]``."""
    cfg, used_exc, used_inh = work.cfg, work.used_exc, work.used_inh
    H, C, D, B = cfg.n_halves, cfg.columns_per_half, cfg.drivers_per_half, cfg.buses_per_half
    img = ConfigImage.empty(cfg)
    img.driver_select[:] = np.arange(D) // B
    img.driver_mask[:] = (1 << cfg.row_select_bits) - 1
    owner = np.full((H, cfg.rows_per_half, C), -1, dtype=np.int64)
    for h in range(H):
        for d in range(min(D, len(work.n_addr))):
            if used_exc[h][d] | used_inh[h][d]:
                img.row_sign[h, 2 * d] = RowSign.EXC
                img.row_sign[h, 2 * d + 1] = RowSign.INH
    for k, (p, w, m) in enumerate(zip(work.projs, work.weights, work.masks, strict=True)):
        cols = work.neurons[p.post] % C
        for i in range(w.shape[0]):
            h = _source_half(work.assignment, work.merged, p.post, i)
            if (p.pre, i) not in work.sources:
                continue
            d, a = work.slots[(p.pre, i)]
            for j, c in enumerate(cols):
                v = int(w[i, j])
                key = _owner_key(k, i)
                rows = (2 * d, 2 * d + 1) if work.reserve == "both" and m[i, j] else (
                    (2 * d + (v < 0),) if v else ())
                for r in rows:
                    img.synapse_label[h, r, c] = a
                    owner[h, r, c] = key
                if v:
                    img.synapse_weight[h, 2 * d + (v < 0), c] = abs(v)
    return img, owner


def _neuron_image(work: _Work, img: ConfigImage, refractory, refractory_prescale,
                  adc_period, analog_settings) -> None:
    """Step 6, the neuron side of ``img``: the populations' neurons enabled and
    labelled (merged ones: the top circuits, marked merged), their refractory
    periods, the prescale, the ADC period and the analog settings as given."""
    cfg = work.cfg
    for p in work.pops:
        n = work.neurons[p]
        img.neuron_enable[n] = 1
        img.neuron_label[n] = work.neuron_labels[p]
        if p in work.merged:            # the bottom circuits stay disabled, never spike
            img.neuron_merge[n] = 1
        r = refractory.get(p, 0) if isinstance(refractory, dict) else refractory
        img.refractory[n] = r
    img.refractory_prescale = np.int64(refractory_prescale)
    img.adc_period = np.int64(cfg.analog_step_cycles if adc_period is None else adc_period)
    if analog_settings is not None:
        img.analog_settings = np.asarray(analog_settings, dtype=np.int64)


def _route(work: _Work, img: ConfigImage, record: list[str]) -> dict[str, list[int]]:
    """Step 7, the crossbar of ``img``: the blocks of every source population
    and the external links to the buses of the halves they project into; the
    blocks of the ``record`` populations to the host links (block ``k`` of
    them -> link ``k % n_host_links``, mask 0).  Returns the host links of each
    recorded population."""
    cfg, pops, neurons = work.cfg, work.pops, work.neurons
    P = cfg.neurons_per_block
    targets = {p: set().union(*(_post_halves(work, pr) for pr in work.projs if pr.pre == p))
               for p in pops}
    for p in pops:
        for blk in sorted({int(n) // P for n in neurons[p]}):
            for h in targets[p]:
                _route_to_half(cfg, img, blk, h)
    input_halves = set().union(*(_post_halves(work, pr) for pr in work.projs
                                 if pr.pre == INPUT))
    for link in range(cfg.n_ext_inputs):
        for h in input_halves:
            _route_to_half(cfg, img, cfg.n_blocks + link, h)
    record_links: dict[str, list[int]] = {p: [] for p in record}
    rec_blocks = sorted({int(n) // P for p in record for n in neurons[p]})
    for k, blk in enumerate(rec_blocks):
        link = k % cfg.n_host_links
        node = (blk, cfg.n_buses + link)
        img.xbar_enable[node], img.xbar_mask[node], img.xbar_target[node] = 1, 0, 0
        for p in record:
            if blk in {int(n) // P for n in neurons[p]} and link not in record_links[p]:
                record_links[p].append(link)
    return record_links


def _post_halves(work: _Work, pr: Projection) -> set[int]:
    """The halves whose synapses carry projection ``pr`` (all of them for a merged post)."""
    return set(range(work.cfg.n_halves)) if pr.post in work.merged else {work.assignment[pr.post]}


def _route_to_half(cfg: ChipConfig, img: ConfigImage, i: int, h: int) -> None:
    """Route crossbar input ``i`` to the buses of half ``h``: node ``(i, h*B + b)``
    passes the events whose bus bits (the label's upper bits) are ``b``."""
    ub = cfg.label_bits + cfg.row_select_bits
    bus_mask = ((1 << _bus_bits(cfg)) - 1) << ub
    for b in range(cfg.buses_per_half):
        o = h * cfg.buses_per_half + b
        img.xbar_enable[i, o] = 1
        img.xbar_mask[i, o] = bus_mask
        img.xbar_target[i, o] = b << ub


def _bits(cols) -> int:
    out = 0
    for c in np.asarray(cols).tolist():
        out |= 1 << c
    return out


def describe(pl: Placement) -> str:
    """A short human-readable summary of a placement."""
    cfg = pl.cfg
    lines = []
    for p, n in pl.neurons.items():
        where = ("merged: columns of both halves" if p in pl.merged
                 else f"half {pl.halves[p]}")
        lines.append(f"{p}: {len(n)} neurons, {where}, neurons {n[0]}..{n[-1]}"
                     f", recorded on links {pl.record_links.get(p, [])}")
    for h in range(cfg.n_halves):
        pairs = int((pl.image.row_sign[h, 0::2] != RowSign.OFF).sum())
        lines.append(f"half {h}: {pairs}/{cfg.drivers_per_half} driver pairs in use")
    if pl.n_inputs:
        a, rs, up = unpack_event(cfg, int(pl.input_labels[0]))
        lines.append(f"{pl.n_inputs} inputs; input 0: address {a}, row select {rs}, bus {up}")
    return "\n".join(lines)
