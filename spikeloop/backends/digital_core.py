"""The fast backend's digital side: every sample's event logic, cycle by cycle, compiled.

:func:`run_window` advances every sample of a batch through the cycles
``g0 .. g1-1`` of one analog-step window with the rules of the cycle-accurate
references (model/digital/: arbiters, playback, crossbar, synapse drivers,
recorder; their order inside a cycle is model/digital/top.py's), one sample at
a time, one cycle at a time, in numba-compiled loops on the host.  A cycle in
which a sample has nothing in flight (no pending neuron, no word in an arbiter
FIFO or in the crossbar, no playback release, no spike entering) changes
nothing, so it is skipped: the cost follows the events, not the clock.

What stays outside (spikeloop/backends/fast.py): the neuron back end's
refractory counters (closed form, torch, on the backend's device), the
playback's release cycles (closed form,
:func:`~spikeloop.backends.fast.playback_schedule`) and the ADC.  The driver
activations a window makes are returned as rows (sample, half, driver,
address); :func:`~spikeloop.model.synapses.accumulate` adds their synapses'
weights (times their gains, model/synapses.py) to the step's sums on the CPU
(on CUDA the device does, fast.py).

State (all numpy, one row per sample; see :class:`DigitalState`) and counters
are kept unsaturated; fast.py saturates them when the run ends.

Structure: :func:`run_window` takes its arrays in bundles (:class:`Window`: the
window's inputs; :class:`Config`: geometry and tables; :class:`State`;
:class:`Counters`; :class:`Cycle`: one sample-cycle's scratch) and runs, per
sample and busy cycle, the stages :func:`_arbiters`, :func:`_spikes_in`,
:func:`_playback`, :func:`_crossbar_grants`, :func:`_drivers`,
:func:`_recorder` and :func:`_crossbar_update`.  Two things keep that as fast
as one long loop:

- the stages are inlined into the loop by numba (``inline="always"``) and
  :func:`run_window` is compiled without numba's reference counting
  (``_nrt=False``): with it, every stage call per sample-cycle would count
  references to each array it is given (numba's pruning of those counts gives up
  on branchy loops, numba issue #2345), several times the cost of the rules;
  the window allocates nothing (the scratch comes from :class:`DigitalState`)
  and returns an int, and its caller holds the arrays for the call;
- the bundles cross into numba as plain tuples (the field order of their
  NamedTuple) and are named again inside: numba's dispatcher types a
  NamedTuple argument by its class and field names on every call, several µs
  per call and bundle, and :func:`run_window` is called once per analog step.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from spikeloop.backends.ppu_core import C_CYCLE, C_ERR
from spikeloop.backends.ppu_core import advance as ppu_advance
from spikeloop.base.config import ChipConfig
from spikeloop.model.adc import adc_code
from spikeloop.model.analog import lif_row
from spikeloop.model.jit import next_set  # (importing jit.py stamps the kernels' cache)
from spikeloop.model.noise import noise_row
from spikeloop.model.synapses import accumulate_first

_U64 = np.uint64
#: de Bruijn sequence and table: the index of the lowest set bit of a uint64
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _DEBRUIJN_INDEX[int(((1 << _i) * 0x03F79D71B4CB0A89) % (1 << 64)) >> 58] = _i
del _i


# -- the bundles of run_window's arguments ---------------------------------------

class Window(NamedTuple):
    """One window's inputs (see :func:`run_window`)."""

    g0: int                     #: first cycle
    g1: int                     #: end (exclusive)
    n_live: int                 #: running cycles (from it on, time stands at n_live)
    spike_b: np.ndarray         #: [k] sample of each spike leaving the neurons in g0 (sorted)
    spike_n: np.ndarray         #: [k] its neuron
    rel_ptr: np.ndarray         #: [B] each sample's next playback release (advanced here)
    rel_end: np.ndarray         #: [B] the end of its releases
    rel: np.ndarray             #: [k, 3] releases (cycle, crossbar input, label)


class Config(NamedTuple):
    """What a run reads and never writes: the geometry and the tables built from
    a ConfigImage."""

    K: int                      #: blocks (arbiters; crossbar inputs 0 .. K-1)
    P: int                      #: neurons per block
    W: int                      #: 64-bit words of a block's pending bits
    AF: int                     #: arbiter FIFO depth
    I: int                      #: crossbar inputs: the K blocks, then the external links
    O: int                      #: crossbar outputs: the NB buses, then the NL host links
    X: int                      #: crossbar node FIFO depth
    NB: int                     #: buses
    Bh: int                     #: buses per half
    NL: int                     #: host links
    LB: int                     #: label bits (the address) of an event
    addr_mask: int              #: ``(1 << LB) - 1``
    rs_mask: int                #: ``(1 << row_select_bits) - 1``
    RD: int                     #: record memory depth
    block_labels: np.ndarray    #: [K, P] event label of every neuron
    xb_mask: np.ndarray         #: [I, O] crossbar node masks
    xb_target: np.ndarray       #: [I, O] crossbar node targets
    match: np.ndarray           #: [NB * 2**rs, width] drivers matching (bus, row select)
    n_match: np.ndarray         #: [NB * 2**rs] how many


class State(NamedTuple):
    """The digital blocks' state, one row per sample (:class:`DigitalState`'s
    arrays of the same names)."""

    # arbiters: pending bits, FIFO (ring buffer); per sample: pending neurons
    # and FIFO words in all blocks
    arb_pend: np.ndarray        #: [B, K, W] uint64
    arb_fifo: np.ndarray        #: [B, K, AF]
    arb_head: np.ndarray        #: [B, K]
    arb_len: np.ndarray         #: [B, K]
    arb_busy: np.ndarray        #: [B]
    # crossbar: node FIFOs (node i*O + o, ring buffers), words per output and
    # per sample, round-robin pointer, held grant
    xb_fifo: np.ndarray         #: [B, I * O, X]
    xb_head: np.ndarray         #: [B, I * O]
    xb_len: np.ndarray          #: [B, I * O]
    xb_out: np.ndarray          #: [B, O]
    xb_words: np.ndarray        #: [B]
    xb_last: np.ndarray         #: [B, O]
    xb_locked: np.ndarray       #: [B, O]
    xb_held: np.ndarray         #: [B, O]
    # synapse drivers: activations done of the head word's match list
    d_pos: np.ndarray           #: [B, NB]
    # recorder: round-robin pointer, memory (time, link, label), events stored
    rec_last: np.ndarray        #: [B]
    rec_mem: np.ndarray         #: [B, RD, 3]
    rec_count: np.ndarray       #: [B]


class Counters(NamedTuple):
    """The event counters, one row per sample (unsaturated), and the sample-cycles run."""

    arb_drops: np.ndarray       #: [B, K] spikes of a neuron still pending
    xb_events: np.ndarray       #: [B, I, O] words pushed into a node
    xb_drops: np.ndarray        #: [B, I, O] words a full node refused
    unmatched: np.ndarray       #: [B, NB] words no driver matched
    rec_drops: np.ndarray       #: [B] events the full record memory refused
    row_acts: np.ndarray        #: [B, H, D] activations per synapse driver
    row_ev: np.ndarray          #: [B, E, 4] activations (cycle, half, driver, label); E = 0: none
    row_n: np.ndarray           #: [B] activations kept in ``row_ev``
    busy: np.ndarray            #: [1] sample-cycles run (the others were skipped)


class Cycle(NamedTuple):
    """Scratch of one sample-cycle, passed from stage to stage.  Every entry a
    stage reads was written earlier in the same cycle, so one set serves a
    whole batch."""

    in_valid: np.ndarray        #: [I] a crossbar input has a word (arbiter, playback)
    in_label: np.ndarray        #: [I] its label
    grant: np.ndarray           #: [O] the input granted to each crossbar output (-1: none)
    ready: np.ndarray           #: [O] the granted word is taken (driver done, recorded)
    push_node: np.ndarray       #: [I * O] the nodes receiving a word this cycle
    push_label: np.ndarray      #: [I * O] the word


class DigitalState:
    """The run state of the digital blocks for ``B`` samples after the clear
    cycle, and the tables :func:`run_window` reads (built from a ConfigImage)."""

    def __init__(self, cfg: ChipConfig, B: int, *, block_labels, xb_mask, xb_target,
                 match, n_match, event_cycles: int = 0):
        """``event_cycles``: the cycles of a sample's run (running and drain)
        when every driver activation is to be kept (``row_ev``), else 0."""
        K, P = cfg.n_blocks, cfg.neurons_per_block
        I, O = cfg.crossbar_inputs, cfg.crossbar_outputs
        NB = cfg.n_buses
        self.words = -(-P // 64)
        # configuration (ints) and tables
        self.block_labels = np.ascontiguousarray(block_labels, dtype=np.int64)   # [K, P]
        self.xb_mask = np.ascontiguousarray(xb_mask, dtype=np.int64)             # [I, O]
        self.xb_target = np.ascontiguousarray(xb_target, dtype=np.int64)         # [I, O]
        self.match = np.ascontiguousarray(match, dtype=np.int64)   # [NB * 2**rs, width]
        self.n_match = np.ascontiguousarray(n_match, dtype=np.int64)             # [NB * 2**rs]
        self.config = Config(
            K=K, P=P, W=self.words, AF=cfg.arbiter_fifo_depth, I=I, O=O,
            X=cfg.crossbar_fifo_depth, NB=NB, Bh=cfg.buses_per_half, NL=cfg.n_host_links,
            LB=cfg.label_bits, addr_mask=(1 << cfg.label_bits) - 1,
            rs_mask=(1 << cfg.row_select_bits) - 1, RD=cfg.record_depth,
            block_labels=self.block_labels, xb_mask=self.xb_mask, xb_target=self.xb_target,
            match=self.match, n_match=self.n_match)
        # arbiters: pending bits, FIFO (ring buffer), drops; per sample: pending
        # neurons and FIFO words in all blocks
        self.arb_pend = np.zeros((B, K, self.words), dtype=np.uint64)
        self.arb_fifo = np.zeros((B, K, cfg.arbiter_fifo_depth), dtype=np.int64)
        self.arb_head = np.zeros((B, K), dtype=np.int64)
        self.arb_len = np.zeros((B, K), dtype=np.int64)
        self.arb_drops = np.zeros((B, K), dtype=np.int64)
        self.arb_busy = np.zeros(B, dtype=np.int64)
        # crossbar: node FIFOs (node i*O + o, ring buffers), words per output and
        # per sample, round-robin pointer, held grant; counters per (input, output)
        X = cfg.crossbar_fifo_depth
        self.xb_fifo = np.zeros((B, I * O, X), dtype=np.int64)
        self.xb_head = np.zeros((B, I * O), dtype=np.int64)
        self.xb_len = np.zeros((B, I * O), dtype=np.int64)
        self.xb_out = np.zeros((B, O), dtype=np.int64)
        self.xb_words = np.zeros(B, dtype=np.int64)
        self.xb_last = np.full((B, O), I - 1, dtype=np.int64)
        self.xb_locked = np.zeros((B, O), dtype=np.int64)
        self.xb_held = np.zeros((B, O), dtype=np.int64)
        self.xb_events = np.zeros((B, I, O), dtype=np.int64)
        self.xb_drops = np.zeros((B, I, O), dtype=np.int64)
        # synapse drivers: activations done of the head word's match list
        self.d_pos = np.zeros((B, NB), dtype=np.int64)
        self.unmatched = np.zeros((B, NB), dtype=np.int64)
        self.row_acts = np.zeros((B, cfg.n_halves, cfg.drivers_per_half), dtype=np.int64)
        # at most one activation per bus and cycle
        self.row_ev = np.zeros((B, NB * event_cycles, 4), dtype=np.int64)
        self.row_n = np.zeros(B, dtype=np.int64)
        # recorder: round-robin pointer, memory (time, link, label), count, drops
        self.rec_last = np.full(B, cfg.n_host_links - 1, dtype=np.int64)
        self.rec_mem = np.zeros((B, cfg.record_depth, 3), dtype=np.int64)
        self.rec_count = np.zeros(B, dtype=np.int64)
        self.rec_drops = np.zeros(B, dtype=np.int64)
        #: sample-cycles run (the others were skipped: nothing in flight)
        self.busy = np.zeros(1, dtype=np.int64)
        # run_window's bundles of these arrays, as plain tuples (see the module
        # docstring), and its scratch
        state = State(*(getattr(self, f) for f in State._fields))
        counters = Counters(*(getattr(self, f) for f in Counters._fields))
        self._bundles = tuple(tuple(x) for x in (self.config, state, counters,
                                                 self.new_cycle()))

    def new_cycle(self) -> tuple:
        """A :class:`Cycle` scratch (as a tuple): one per thread that runs samples."""
        I, O = self.config.I, self.config.O
        return tuple(Cycle(np.zeros(I, dtype=np.bool_), np.zeros(I, dtype=np.int64),
                           np.zeros(O, dtype=np.int64), np.zeros(O, dtype=np.bool_),
                           np.zeros(I * O, dtype=np.int64), np.zeros(I * O, dtype=np.int64)))

    def window(self, g0: int, g1: int, n_live: int, spike_b: np.ndarray, spike_n: np.ndarray,
               rel_ptr: np.ndarray, rel_end: np.ndarray, rel: np.ndarray,
               acts: np.ndarray) -> int:
        """:func:`run_window` on this state; returns the number of activation rows."""
        return run_window((g0, g1, n_live, spike_b, spike_n, rel_ptr, rel_end, rel),
                          *self._bundles, acts)


# -- the window: samples, cycles, stages ------------------------------------------

@numba.njit(cache=True, nogil=True, _nrt=False)
def run_window(win, cf, st, cnt, cy, acts):
    """Cycles ``g0 .. g1-1`` of every sample (running cycles below ``n_live``,
    then stopped ones: time stands at ``n_live``, nothing is released).

    The arguments are the bundles :class:`Window` ``win``, :class:`Config`
    ``cf``, :class:`State` ``st``, :class:`Counters` ``cnt`` and :class:`Cycle`
    ``cy``, each as a tuple in its fields' order (a NamedTuple works too), and
    ``acts``.  ``spike_b``, ``spike_n``: the spikes that leave the neuron back
    end in cycle ``g0`` (sample, neuron; sorted by sample).  ``rel`` [k, 3]
    (cycle, crossbar input, label): the playback releases, grouped by sample in
    cycle order; sample ``b``'s next one is ``rel[rel_ptr[b]]`` (up to
    ``rel_end[b]``).  Writes the window's driver activations to ``acts`` rows
    (sample, half, driver, address) and returns their number."""
    win, cf, st, cnt, cy = Window(*win), Config(*cf), State(*st), Counters(*cnt), Cycle(*cy)
    spike_b = win.spike_b
    B = st.arb_len.shape[0]
    n_acts = 0
    n_busy = 0
    sp = 0
    for b in range(B):
        # this sample's spikes of cycle g0: spike_n[s0:sp]
        s0 = sp
        while sp < len(spike_b) and spike_b[sp] == b:
            sp += 1
        n_acts, busy = _window_sample(b, win.g0, win.g1, win.n_live, win.spike_n, s0, sp,
                                      win.rel_ptr, win.rel_end, win.rel, cf, st, cnt, cy,
                                      acts, n_acts)
        n_busy += busy
    cnt.busy[0] += n_busy
    return n_acts


@numba.njit(cache=True, nogil=True, inline="always")
def _window_sample(b, g0, g1, n_live, spike_n, s0, s1, rel_ptr, rel_end, rel, cf, st, cnt, cy,
                   acts, n_acts):
    """Cycles ``g0 .. g1-1`` of sample ``b`` (see :func:`run_window`; its spikes
    of cycle ``g0`` are ``spike_n[s0:s1]``); its activations go to ``acts`` from
    row ``n_acts`` on.  Returns ``(n_acts, sample-cycles run)``."""
    has_spikes = s1 > s0
    n_busy = 0
    g = g0
    while g < g1:
        r = rel_ptr[b]
        release = r < rel_end[b] and rel[r, 0] == g
        first = g == g0 and has_spikes
        if not (first or release or st.arb_busy[b] or st.xb_words[b]):
            # nothing in flight: skip to the next release (or the window's end)
            g = g1
            if r < rel_end[b] and rel[r, 0] < g1:
                g = rel[r, 0]
            continue
        n_busy += 1
        time = g if g < n_live else n_live
        # the stages in model/digital/top.py's order
        _arbiters(b, cf, st, cy)
        if first:
            _spikes_in(b, cf, st, cnt, spike_n, s0, s1)
        _playback(b, cf, cy, rel, rel_ptr, r, release)
        _crossbar_grants(b, cf, st, cy)
        n_acts = _drivers(b, g, cf, st, cnt, cy, acts, n_acts)
        if cf.O > cf.NB:
            _recorder(b, cf, st, cnt, cy, time)
        _crossbar_update(b, cf, st, cnt, cy)
        g += 1
    return n_acts, n_busy


@numba.njit(cache=True, nogil=True)
def _lowest_bit(x):
    """Index of the lowest set bit of the nonzero uint64 ``x``."""
    iso = x & (_U64(0) - x)
    return _DEBRUIJN_INDEX[np.int64((iso * _DEBRUIJN) >> _U64(58))]


@numba.njit(cache=True, nogil=True, inline="always")
def _arbiters(b, cf, st, cy):
    """Arbiters of sample ``b``: outputs of the state (FIFO heads -> crossbar
    inputs ``0 .. K-1``), the grant (the lowest pending neuron, if the FIFO is not
    full), the pops (the crossbar is always ready) and pushes."""
    AF = cf.AF
    arb_pend, arb_fifo, arb_head, arb_len, arb_busy = (
        st.arb_pend, st.arb_fifo, st.arb_head, st.arb_len, st.arb_busy)
    in_valid, in_label = cy.in_valid, cy.in_label
    for k in range(cf.K):
        valid = arb_len[b, k] > 0
        in_valid[k] = valid
        if valid:
            in_label[k] = arb_fifo[b, k, arb_head[b, k]]
        # the grant: the lowest pending neuron, if the FIFO is not full
        gj = -1
        if arb_len[b, k] < AF:
            for q in range(cf.W):
                x = arb_pend[b, k, q]
                if x != _U64(0):
                    gj = q * 64 + _lowest_bit(x)
                    arb_pend[b, k, q] = x & (x - _U64(1))
                    arb_busy[b] -= 1
                    break
        if valid:                       # the crossbar is always ready
            arb_head[b, k] = (arb_head[b, k] + 1) % AF
            arb_len[b, k] -= 1
            arb_busy[b] -= 1
        if gj >= 0:
            arb_fifo[b, k, (arb_head[b, k] + arb_len[b, k]) % AF] = cf.block_labels[k, gj]
            arb_len[b, k] += 1
            arb_busy[b] += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _spikes_in(b, cf, st, cnt, spike_n, s0, s1):
    """The spikes ``spike_n[s0:s1]`` of sample ``b`` join the pending bits; a
    spike of a neuron still pending (and not granted now) is dropped."""
    P = cf.P
    arb_pend = st.arb_pend
    for m in range(s0, s1):
        nn = spike_n[m]
        k = nn // P
        j = nn % P
        bit = _U64(1) << _U64(j % 64)
        if arb_pend[b, k, j // 64] & bit:
            cnt.arb_drops[b, k] += 1
        else:
            arb_pend[b, k, j // 64] |= bit
            st.arb_busy[b] += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _playback(b, cf, cy, rel, rel_ptr, r, release):
    """Playback of sample ``b``: one release per cycle at most (``rel[r]`` when
    ``release``), on the crossbar inputs ``K .. I-1``."""
    in_valid = cy.in_valid
    for i in range(cf.K, cf.I):
        in_valid[i] = False
    if release:
        in_valid[rel[r, 1]] = True
        cy.in_label[rel[r, 1]] = rel[r, 2]
        rel_ptr[b] = r + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _crossbar_grants(b, cf, st, cy):
    """Crossbar outputs of sample ``b`` (state only): each output's grant, round
    robin over the inputs with a word for it, or the held grant."""
    I, O = cf.I, cf.O
    xb_len, xb_last = st.xb_len, st.xb_last
    grant = cy.grant
    for o in range(O):
        grant[o] = -1
        if st.xb_locked[b, o]:
            grant[o] = st.xb_held[b, o]
        elif st.xb_out[b, o]:
            for s in range(1, I + 1):
                i = (xb_last[b, o] + s) % I
                if xb_len[b, i * O + o]:
                    grant[o] = i
                    break


@numba.njit(cache=True, nogil=True, inline="always")
def _drivers(b, g, cf, st, cnt, cy, acts, n_acts):
    """Synapse drivers of sample ``b`` in cycle ``g``: one matching driver per
    bus and cycle, lowest first; its activation goes to ``acts[n_acts]``, is
    counted in ``row_acts`` and, when kept, listed in ``row_ev``.  Returns the
    new ``n_acts``."""
    O, LB, rs_mask = cf.O, cf.LB, cf.rs_mask
    xb_fifo, xb_head, d_pos = st.xb_fifo, st.xb_head, st.d_pos
    grant, ready = cy.grant, cy.ready
    for o in range(cf.NB):
        if grant[o] < 0:
            continue
        node = grant[o] * O + o
        label = xb_fifo[b, node, xb_head[b, node]]
        entry = o * (rs_mask + 1) + ((label >> LB) & rs_mask)
        k = cf.n_match[entry]
        if k == 0:
            cnt.unmatched[b, o] += 1
            ready[o] = True
            continue
        pos = d_pos[b, o]
        h = o // cf.Bh
        d = cf.match[entry, pos]
        acts[n_acts, 0] = b
        acts[n_acts, 1] = h
        acts[n_acts, 2] = d
        acts[n_acts, 3] = label & cf.addr_mask
        n_acts += 1
        cnt.row_acts[b, h, d] += 1
        if cnt.row_ev.shape[1]:
            e = cnt.row_n[b]
            cnt.row_ev[b, e, 0] = g
            cnt.row_ev[b, e, 1] = h
            cnt.row_ev[b, e, 2] = d
            cnt.row_ev[b, e, 3] = label
            cnt.row_n[b] = e + 1
        if pos + 1 >= k:
            d_pos[b, o] = 0
            ready[o] = True
        else:
            d_pos[b, o] = pos + 1
            ready[o] = False
    return n_acts


@numba.njit(cache=True, nogil=True, inline="always")
def _recorder(b, cf, st, cnt, cy, time):
    """Recorder of sample ``b`` (crossbar outputs ``NB ..``: the host links):
    round robin over the links, one event per cycle, stored with ``time``."""
    NB, NL = cf.NB, cf.NL
    grant, ready = cy.grant, cy.ready
    rec_last, rec_count = st.rec_last, st.rec_count
    got = -1
    for s in range(1, NL + 1):
        link = (rec_last[b] + s) % NL
        ready[NB + link] = False
        if got < 0 and grant[NB + link] >= 0:
            got = link
    if got >= 0:
        ready[NB + got] = True
        rec_last[b] = got
        node = grant[NB + got] * cf.O + NB + got
        if rec_count[b] < cf.RD:
            c = rec_count[b]
            rec_mem = st.rec_mem
            rec_mem[b, c, 0] = time
            rec_mem[b, c, 1] = got
            rec_mem[b, c, 2] = st.xb_fifo[b, node, st.xb_head[b, node]]
            rec_count[b] = c + 1
        else:
            cnt.rec_drops[b] += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _crossbar_update(b, cf, st, cnt, cy):
    """Crossbar of sample ``b``: the inputs' pushes (a node is full on its level
    at the start of the cycle), the granted outputs' pops (or the grant held
    when the word was not taken), then the pushes land."""
    I, O, X = cf.I, cf.O, cf.X
    xb_fifo, xb_head, xb_len, xb_out, xb_words = (
        st.xb_fifo, st.xb_head, st.xb_len, st.xb_out, st.xb_words)
    in_valid, in_label, grant, ready = cy.in_valid, cy.in_label, cy.grant, cy.ready
    push_node, push_label = cy.push_node, cy.push_label
    n_push = 0
    for i in range(I):
        if not in_valid[i]:
            continue
        label = in_label[i]
        for o in range(O):
            if (label & cf.xb_mask[i, o]) != cf.xb_target[i, o]:
                continue
            node = i * O + o
            if xb_len[b, node] == X:
                cnt.xb_drops[b, i, o] += 1
            else:
                push_node[n_push] = node
                push_label[n_push] = label
                n_push += 1
                cnt.xb_events[b, i, o] += 1
    for o in range(O):
        i = grant[o]
        if i < 0:
            continue
        if ready[o]:
            node = i * O + o
            xb_head[b, node] = (xb_head[b, node] + 1) % X
            xb_len[b, node] -= 1
            xb_out[b, o] -= 1
            xb_words[b] -= 1
            st.xb_last[b, o] = i
            st.xb_locked[b, o] = 0
        else:
            st.xb_locked[b, o] = 1
            st.xb_held[b, o] = i
    for m in range(n_push):
        node = push_node[m]
        xb_fifo[b, node, (xb_head[b, node] + xb_len[b, node]) % X] = push_label[m]
        xb_len[b, node] += 1
        xb_out[b, node % O] += 1
        xb_words[b] += 1


@numba.njit(cache=True, nogil=True)
def nonzero2(mask):
    """``torch.nonzero`` of a 2-d bool array: [k, 2] int64 (row, column), row-major."""
    k = 0
    for b in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            k += mask[b, j]
    out = np.empty((k, 2), dtype=np.int64)
    q = 0
    for b in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if mask[b, j]:
                out[q, 0] = b
                out[q, 1] = j
                q += 1
    return out


# -- the whole run of a batch's samples: analog steps and windows, compiled ----------

class Run(NamedTuple):
    """What :func:`run_samples` reads of one run (and the outputs it fills)."""

    S: int                      #: cycles per analog step
    n_steps: int                #: analog steps
    n_live: int                 #: running cycles
    end: int                    #: the last window's end (running cycles + drain)
    rel_ptr: np.ndarray         #: [B] playback: each sample's next release (advanced here)
    rel_end: np.ndarray         #: [B] the end of its releases
    rel: np.ndarray             #: [k, 3] releases (cycle, crossbar input, label)
    adc_steps: np.ndarray       #: [J] the analog step each stored ADC sample shows (sorted)
    adc: np.ndarray             #: [J, B, n] int64: the codes (written here)
    adc_scale: np.ndarray       #: [n] float32 codes per volt
    adc_offset: np.ndarray      #: [n] float32 offset plus the rounding's 0.5
    code_max: float             #: the highest code
    code_mask: int              #: ``(1 << adc_bits) - 1``
    has_refr: bool              #: some neuron has a refractory period
    q: int                      #: cycles per prescaler tick (``2**prescale``)
    refractory: np.ndarray      #: [n] int64 each neuron's period (ticks)
    enable: np.ndarray          #: [n] bool the neuron's spikes go to its arbiter
    D: int                      #: synapse drivers per half
    row_weight: np.ndarray      #: [H * D, 2, C] int32
    row_label: np.ndarray       #: [H * D, 2, C]
    row_sign: np.ndarray        #: [H * D, 2] 0 exc, 1 inh, -1 off
    has_noise: bool             #: the membrane noise is on
    noise_kind: int             #: its generator (noise.noise_kind)
    keys: np.ndarray            #: [B] uint64 each sample's noise key (noise.sample_key)
    neurons: np.ndarray         #: [m] uint64 the neurons whose noise is computed
    cols: np.ndarray            #: [m] int64 the same, as indices
    sigma: np.ndarray           #: [n] float32 per-step noise std
    bits: np.ndarray            #: [B, n_steps, words] uint64: the spikes (written here)


class Analog(NamedTuple):
    """The analog side's state, one row per sample (updated in place)."""

    v: np.ndarray               #: [B, n] float32 membranes
    ie: np.ndarray              #: [B, n] float32 excitatory currents
    ii: np.ndarray              #: [B, n] float32 inhibitory currents
    acc: np.ndarray             #: [2, B, H, C] int32 the step's weight sums (exc, inh)
    acc_n: np.ndarray           #: the same memory as [2, B, n]
    cnt: np.ndarray             #: [B, n] int64 refractory counters


class Ppus(NamedTuple):
    """Every sample's PPU beside :func:`run_samples` (spikeloop/backends/ppu_core.py's
    state, one row per sample; ``on`` False: no program, the arrays unused)."""

    on: bool
    prog: np.ndarray            #: the predecoded program (ppu_core.predecode)
    geo: np.ndarray             #: its geometry (ppu_core.geometry)
    ctl: np.ndarray             #: [B, C_SIZE]
    regs: np.ndarray            #: [B, 16]
    vregs: np.ndarray           #: [B, 8, vector bytes]
    dmem: np.ndarray            #: [B, dmem words]
    syn_w: np.ndarray           #: [halves, rows, columns] (shared: nothing writes in a run)
    syn_l: np.ndarray           #: [halves, rows, columns]
    adcbuf: np.ndarray          #: [B, depth, n]
    known: np.ndarray           #: [B, depth]
    have: np.ndarray            #: [B, J] the run's ADC samples computed so far
    adc_cycles: np.ndarray      #: [J] the cycle that takes each
    outbuf: np.ndarray          #: [B, vectors, vector bytes]
    holds: np.ndarray           #: [B, steps, words + 1] uint64 (ppu_core.CoreState.holds)
    trk_r: np.ndarray           #: [B, 2, 16]
    trk_v: np.ndarray           #: [B, 2, 8]
    trk_d: np.ndarray           #: [B, 2, dmem words]
    snap: np.ndarray            #: [B, vector bytes]
    tmp: np.ndarray             #: [B, vector bytes]


class Scratch(NamedTuple):
    """One thread's scratch (nothing is allocated inside :func:`run_samples`)."""

    acts: np.ndarray            #: [rows, 4] one window's driver activations of a sample
    dv: np.ndarray              #: [n] float32 (lif_row)
    noise: np.ndarray           #: [n] float32 zeros, then each step's noise
    h: np.ndarray               #: [m] uint64 (noise_row)
    z: np.ndarray               #: [m] float32
    flag: np.ndarray            #: [m] bool
    fa: np.ndarray              #: [m] float64
    fb: np.ndarray              #: [m] float64
    ea: np.ndarray              #: [m] float64
    no_r: np.ndarray            #: [0] float64
    fired: np.ndarray           #: [n] bool
    hold: np.ndarray            #: [n] bool
    spike_n: np.ndarray         #: [n] int64 the enabled neurons that fired


@numba.njit(cache=True, nogil=True, _nrt=False, error_model="numpy")
def run_samples(b0, b1, run, lif, an, cf, st, cnt, cy, sc, pp):
    """Samples ``b0 .. b1-1`` of a run from the clear cycle to the end of the
    drain, each sample alone: per analog step the step's weight sums (the
    window before it), its membrane noise (model/noise.py's ``noise_row``), the
    LIF update (model/analog.py's ``lif_row``), the ADC codes it shows, the
    refractory counters, then the window's cycles of the digital side
    (:func:`_window_sample`).  The same operations in the same order as the
    step-by-step path of spikeloop/backends/fast.py (and the reference), so
    the same bits; the samples share nothing, so threads may run disjoint
    ranges at once (each with its own ``cy``, ``sc`` and ``cnt.busy``).

    ``run``: :class:`Run`; ``lif``: the LIF constants (model/analog.py's
    ``_kernel_params``); ``an``: :class:`Analog`; ``cf``, ``st``, ``cnt``,
    ``cy``: as :func:`run_window`'s; ``sc``: :class:`Scratch`; ``pp``:
    :class:`Ppus`, each sample's PPU run through the cycles before each analog
    step (its resets hold the step's neurons), given the codes of each ADC
    sample once computed (bundles as tuples).  A PPU that fails
    (``ppu_core.advance``'s error) stops there with its error in ``ctl``.

    numba's cache (``cache=True``) keys this kernel by this file alone, while
    its machine code holds ``lif_row`` and ``noise_row`` from model/: after a
    change there, ``make clean`` drops the stale cache (tests/test_fast_whole_run.py
    compares this kernel with the step-by-step path, whose cache follows model/);
    so does its copy of ppu_core's ``advance``."""
    run, an, cf, st, cnt, cy, sc, pp = (Run(*run), Analog(*an), Config(*cf), State(*st),
                                        Counters(*cnt), Cycle(*cy), Scratch(*sc), Ppus(*pp))
    (leak, reset, thresh, decay_mem, decay_exc, decay_inh, k_exc, k_inh, gain_exc, gain_inh,
     v_min, v_max, merged, mbits) = lif
    S, n_steps, q = run.S, run.n_steps, run.q
    n = an.v.shape[1]
    J = len(run.adc_steps)
    fired, hold, spike_n = sc.fired, sc.hold, sc.spike_n
    has_hold = run.has_refr
    if pp.on:           # (the PPU's resets hold too)
        has_hold = True
    n_busy = 0
    for b in range(b0, b1):
        v, ie, ii, cnt_b = an.v[b], an.ie[b], an.ii[b], an.cnt[b]
        exc, inh = an.acc_n[0, b], an.acc_n[1, b]
        cnt_cycle = 0
        j_adc = _codes(0, b, v, run, 0, J)
        if pp.on:
            for j in range(j_adc):
                pp.have[b, j] = True
        n_acts = 0
        for w in range(n_steps + 1):
            g0 = w * S
            g1 = (w + 1) * S if w < n_steps else run.end
            n_spk = 0
            if w:
                k = w - 1
                if run.has_refr:
                    # (branch-free loops the compiler vectorises: a counter is
                    # never negative, so max(c - 0, 0) = c)
                    dt = _ticks(cnt_cycle, g0, q)
                    for j in range(n):
                        c = max(cnt_b[j] - dt, 0)
                        cnt_b[j] = c
                        hold[j] = c != 0
                    cnt_cycle = g0
                elif pp.on:
                    for j in range(n):
                        hold[j] = False
                if pp.on:       # the PPU's cycles before the step, and its resets
                    if pp.ctl[b, C_ERR] == 0 and pp.ctl[b, C_CYCLE] < g0:
                        # and on, through every cycle before the one that takes the
                        # first sample not yet computed (the PPU depends on the chip
                        # only through the samples; its resets of later steps wait in
                        # ``holds``): a program waiting for samples is advanced once a
                        # sample, not once a step
                        until = run.n_live
                        if j_adc < len(pp.adc_cycles):
                            until = min(until, pp.adc_cycles[j_adc])
                        ppu_advance(max(g0, until), pp.prog, pp.geo, pp.ctl[b], pp.regs[b],
                                    pp.vregs[b], pp.dmem[b], pp.syn_w, pp.syn_l, pp.adcbuf[b],
                                    pp.known[b],
                                    run.adc[:, b], pp.have[b], pp.adc_cycles, pp.outbuf[b],
                                    pp.holds[b], pp.trk_r[b], pp.trk_v[b], pp.trk_d[b],
                                    pp.snap[b], pp.tmp[b])
                    if k < pp.holds.shape[1] and pp.holds[b, k, pp.holds.shape[2] - 1]:
                        for j in range(n):
                            if (pp.holds[b, k, j >> 6] >> _U64(j & 63)) & _U64(1):
                                hold[j] = True
                accumulate_first(sc.acts, n_acts, run.D, run.row_weight, run.row_label,
                            run.row_sign, an.acc)
                if run.has_noise:
                    noise_row(run.keys[b], _U64(k), run.neurons, run.cols, run.sigma, sc.noise,
                              sc.h, sc.z, sc.flag, sc.fa, sc.fb, sc.ea, sc.no_r, run.noise_kind)
                lif_row(v, ie, ii, exc, inh, True, True, hold, has_hold, sc.noise,
                        run.has_noise, leak, reset, thresh, decay_mem, decay_exc, decay_inh,
                        k_exc, k_inh, gain_exc, gain_inh, v_min, v_max, merged, mbits,
                        fired, sc.dv)
                for j in range(n):
                    exc[j] = 0
                    inh[j] = 0
                bits = run.bits[b, k]
                # every spike of the step into its bit; the enabled ones also
                # leave for the window's arbiters
                j = next_set(fired, 0, n)
                while j < n:
                    bits[j >> 6] |= _U64(1) << _U64(j & 63)
                    if run.enable[j]:
                        spike_n[n_spk] = j
                        n_spk += 1
                    j = next_set(fired, j + 1, n)
                j_prev = j_adc
                j_adc = _codes(w, b, v, run, j_adc, J)
                if pp.on:
                    for j in range(j_prev, j_adc):
                        pp.have[b, j] = True
                if run.has_refr:
                    dt = _ticks(g0, g0 + 1, q)
                    for j in range(n):
                        c = max(cnt_b[j] - dt, 0)
                        r = run.refractory[j]
                        cnt_b[j] = r if (fired[j] & run.enable[j]) else c
                    cnt_cycle = g0 + 1
            n_acts, busy = _window_sample(b, g0, g1, run.n_live, spike_n, 0, n_spk,
                                          run.rel_ptr, run.rel_end, run.rel, cf, st, cnt, cy,
                                          sc.acts, 0)
            n_busy += busy
    cnt.busy[0] += n_busy
    return 0


@numba.njit(cache=True, nogil=True, inline="always")
def _ticks(lo, hi, q):
    """Prescaler ticks in cycles ``lo .. hi-1`` (FastChip._ticks)."""
    return -(-hi // q) - (-(-lo // q))


@numba.njit(cache=True, nogil=True, inline="always")
def _codes(w, b, v, run, j, J):
    """The ADC samples that show the membranes after step ``w``: stored sample
    ``j`` on, while ``adc_steps[j] == w`` (model/adc.py's conversion: ``floor(v
    * scale + offset)`` in float32, clamped to the codes, as int64, masked).
    Returns the next stored sample."""
    if j >= J or run.adc_steps[j] != w:
        return j
    row = run.adc[j, b]
    for i in range(len(v)):
        row[i] = adc_code(v[i], run.adc_scale[i], run.adc_offset[i], run.code_max) & run.code_mask
    j += 1
    while j < J and run.adc_steps[j] == w:
        dst = run.adc[j, b]
        for i in range(len(v)):
            dst[i] = row[i]
        j += 1
    return j


@numba.njit(cache=True, nogil=True)
def spikes_from_bits(bits):
    """The spikes of :func:`run_samples`' bits [B, n_steps, words]: [k, 3] int64
    (sample, step, neuron) in that order."""
    B, T, W = bits.shape
    k = 0
    for b in range(B):
        for t in range(T):
            for q in range(W):
                x = bits[b, t, q]
                while x:
                    x &= x - _U64(1)
                    k += 1
    out = np.empty((k, 3), dtype=np.int64)
    m = 0
    for b in range(B):
        for t in range(T):
            for q in range(W):
                x = bits[b, t, q]
                while x:
                    out[m, 0] = b
                    out[m, 1] = t
                    out[m, 2] = q * 64 + _lowest_bit(x)
                    x &= x - _U64(1)
                    m += 1
    return out
