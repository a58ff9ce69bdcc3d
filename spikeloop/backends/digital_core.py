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
address); :func:`accumulate` adds their synapse weights to the analog
boundaries' sums of the step on the CPU (on CUDA the device does, fast.py).

State (all numpy, one row per sample; see :class:`DigitalState`) and counters
are kept unsaturated; fast.py saturates them when the run ends.
"""
from __future__ import annotations

import numba
import numpy as np

from spikeloop.base.config import ChipConfig

_U64 = np.uint64
#: de Bruijn sequence and table: the index of the lowest set bit of a uint64
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _DEBRUIJN_INDEX[int(((1 << _i) * 0x03F79D71B4CB0A89) % (1 << 64)) >> 58] = _i
del _i


class DigitalState:
    """The run state of the digital blocks for ``B`` samples after the clear
    cycle, and the tables :func:`run_window` reads (built from a ConfigImage)."""

    def __init__(self, cfg: ChipConfig, B: int, *, block_labels, xb_mask, xb_target,
                 match, n_match):
        K, P = cfg.n_blocks, cfg.neurons_per_block
        I, O = cfg.crossbar_inputs, cfg.crossbar_outputs
        NB = cfg.n_buses
        self.words = -(-P // 64)
        # configuration (ints) and tables
        self.dims = np.array([
            K, P, self.words, cfg.arbiter_fifo_depth, I, O, cfg.crossbar_fifo_depth, NB,
            cfg.buses_per_half, cfg.n_host_links, cfg.label_bits, cfg.row_select_bits,
            cfg.record_depth], dtype=np.int64)
        self.block_labels = np.ascontiguousarray(block_labels, dtype=np.int64)   # [K, P]
        self.xb_mask = np.ascontiguousarray(xb_mask, dtype=np.int64)             # [I, O]
        self.xb_target = np.ascontiguousarray(xb_target, dtype=np.int64)         # [I, O]
        self.match = np.ascontiguousarray(match, dtype=np.int64)   # [NB * 2**rs, width]
        self.n_match = np.ascontiguousarray(n_match, dtype=np.int64)             # [NB * 2**rs]
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
        # recorder: round-robin pointer, memory (time, link, label), count, drops
        self.rec_last = np.full(B, cfg.n_host_links - 1, dtype=np.int64)
        self.rec_mem = np.zeros((B, cfg.record_depth, 3), dtype=np.int64)
        self.rec_count = np.zeros(B, dtype=np.int64)
        self.rec_drops = np.zeros(B, dtype=np.int64)
        #: sample-cycles run (the others were skipped: nothing in flight)
        self.busy = np.zeros(1, dtype=np.int64)

    def window(self, g0: int, g1: int, n_live: int, spike_b: np.ndarray, spike_n: np.ndarray,
               rel_ptr: np.ndarray, rel_end: np.ndarray, rel: np.ndarray,
               acts: np.ndarray) -> int:
        """:func:`run_window` on this state; returns the number of activation rows."""
        return run_window(g0, g1, n_live, self.dims, self.block_labels, self.xb_mask,
                          self.xb_target, self.match, self.n_match, spike_b, spike_n,
                          rel_ptr, rel_end, rel, self.arb_pend, self.arb_fifo, self.arb_head,
                          self.arb_len, self.arb_drops, self.arb_busy, self.xb_fifo,
                          self.xb_head, self.xb_len, self.xb_out, self.xb_words, self.xb_last,
                          self.xb_locked, self.xb_held, self.xb_events, self.xb_drops,
                          self.d_pos, self.unmatched, self.rec_last, self.rec_mem,
                          self.rec_count, self.rec_drops, self.busy, acts)


@numba.njit(cache=True, nogil=True)
def _lowest_bit(x):
    """Index of the lowest set bit of the nonzero uint64 ``x``."""
    iso = x & (_U64(0) - x)
    return _DEBRUIJN_INDEX[np.int64((iso * _DEBRUIJN) >> _U64(58))]


@numba.njit(cache=True, nogil=True)
def run_window(g0, g1, n_live, dims, block_labels, xb_mask, xb_target, match, n_match,
               spike_b, spike_n, rel_ptr, rel_end, rel, arb_pend, arb_fifo, arb_head,
               arb_len, arb_drops, arb_busy, xb_fifo, xb_head, xb_len, xb_out, xb_words,
               xb_last, xb_locked, xb_held, xb_events, xb_drops, d_pos, unmatched, rec_last,
               rec_mem, rec_count, rec_drops, busy, acts):
    """Cycles ``g0 .. g1-1`` of every sample (running cycles below ``n_live``,
    then stopped ones: time stands at ``n_live``, nothing is released).

    ``spike_b``, ``spike_n``: the spikes that leave the neuron back end in cycle
    ``g0`` (sample, neuron; sorted by sample).  ``rel`` [k, 3] (cycle, crossbar
    input, label): the playback releases, grouped by sample in cycle order;
    sample ``b``'s next one is ``rel[rel_ptr[b]]`` (up to ``rel_end[b]``).
    Writes the window's driver activations to ``acts`` rows (sample, half,
    driver, address) and returns their number."""
    K, P, W, AF, I, O, X, NB, Bh, NL, LB, RSB, RD = (
        dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8],
        dims[9], dims[10], dims[11], dims[12])
    B = arb_len.shape[0]
    addr_mask = (1 << LB) - 1
    rs_mask = (1 << RSB) - 1
    n_acts = 0
    n_busy = 0
    sp = 0
    in_valid = np.zeros(I, dtype=np.bool_)
    in_label = np.zeros(I, dtype=np.int64)
    grant = np.zeros(O, dtype=np.int64)
    ready = np.zeros(O, dtype=np.bool_)
    push_node = np.zeros(I * O, dtype=np.int64)
    push_label = np.zeros(I * O, dtype=np.int64)
    for b in range(B):
        # this sample's spikes of cycle g0, as bits per block
        s0 = sp
        while sp < len(spike_b) and spike_b[sp] == b:
            sp += 1
        has_spikes = sp > s0
        g = g0
        while g < g1:
            r = rel_ptr[b]
            release = r < rel_end[b] and rel[r, 0] == g
            first = g == g0 and has_spikes
            if not (first or release or arb_busy[b] or xb_words[b]):
                # nothing in flight: skip to the next release (or the window's end)
                g = g1
                if r < rel_end[b] and rel[r, 0] < g1:
                    g = rel[r, 0]
                continue
            n_busy += 1
            time = g if g < n_live else n_live
            # -- arbiters: outputs of the state, grant, spikes join, pops and pushes
            for k in range(K):
                valid = arb_len[b, k] > 0
                in_valid[k] = valid
                if valid:
                    in_label[k] = arb_fifo[b, k, arb_head[b, k]]
                # the grant: the lowest pending neuron, if the FIFO is not full
                gj = -1
                if arb_len[b, k] < AF:
                    for q in range(W):
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
                    arb_fifo[b, k, (arb_head[b, k] + arb_len[b, k]) % AF] = block_labels[k, gj]
                    arb_len[b, k] += 1
                    arb_busy[b] += 1
            if first:
                # a spike of a neuron still pending (and not granted now) is dropped
                for m in range(s0, sp):
                    nn = spike_n[m]
                    k = nn // P
                    j = nn % P
                    bit = _U64(1) << _U64(j % 64)
                    if arb_pend[b, k, j // 64] & bit:
                        arb_drops[b, k] += 1
                    else:
                        arb_pend[b, k, j // 64] |= bit
                        arb_busy[b] += 1
            # -- playback: one release per cycle at most
            for i in range(K, I):
                in_valid[i] = False
            if release:
                in_valid[rel[r, 1]] = True
                in_label[rel[r, 1]] = rel[r, 2]
                rel_ptr[b] = r + 1
            # -- crossbar outputs (state only): round robin, or the held grant
            for o in range(O):
                grant[o] = -1
                if xb_locked[b, o]:
                    grant[o] = xb_held[b, o]
                elif xb_out[b, o]:
                    for s in range(1, I + 1):
                        i = (xb_last[b, o] + s) % I
                        if xb_len[b, i * O + o]:
                            grant[o] = i
                            break
            # -- synapse drivers: one matching driver per bus and cycle, lowest first
            for o in range(NB):
                if grant[o] < 0:
                    continue
                node = grant[o] * O + o
                label = xb_fifo[b, node, xb_head[b, node]]
                entry = o * (rs_mask + 1) + ((label >> LB) & rs_mask)
                k = n_match[entry]
                if k == 0:
                    unmatched[b, o] += 1
                    ready[o] = True
                    continue
                pos = d_pos[b, o]
                acts[n_acts, 0] = b
                acts[n_acts, 1] = o // Bh
                acts[n_acts, 2] = match[entry, pos]
                acts[n_acts, 3] = label & addr_mask
                n_acts += 1
                if pos + 1 >= k:
                    d_pos[b, o] = 0
                    ready[o] = True
                else:
                    d_pos[b, o] = pos + 1
                    ready[o] = False
            # -- recorder: round robin over the host links, one event per cycle
            if O > NB:
                got = -1
                for s in range(1, NL + 1):
                    link = (rec_last[b] + s) % NL
                    ready[NB + link] = False
                    if got < 0 and grant[NB + link] >= 0:
                        got = link
                if got >= 0:
                    ready[NB + got] = True
                    rec_last[b] = got
                    node = grant[NB + got] * O + NB + got
                    if rec_count[b] < RD:
                        c = rec_count[b]
                        rec_mem[b, c, 0] = time
                        rec_mem[b, c, 1] = got
                        rec_mem[b, c, 2] = xb_fifo[b, node, xb_head[b, node]]
                        rec_count[b] = c + 1
                    else:
                        rec_drops[b] += 1
            # -- crossbar: pushes (full on the levels at the start of the cycle), pops
            n_push = 0
            for i in range(I):
                if not in_valid[i]:
                    continue
                label = in_label[i]
                for o in range(O):
                    if (label & xb_mask[i, o]) != xb_target[i, o]:
                        continue
                    node = i * O + o
                    if xb_len[b, node] == X:
                        xb_drops[b, i, o] += 1
                    else:
                        push_node[n_push] = node
                        push_label[n_push] = label
                        n_push += 1
                        xb_events[b, i, o] += 1
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
                    xb_last[b, o] = i
                    xb_locked[b, o] = 0
                else:
                    xb_locked[b, o] = 1
                    xb_held[b, o] = i
            for m in range(n_push):
                node = push_node[m]
                xb_fifo[b, node, (xb_head[b, node] + xb_len[b, node]) % X] = push_label[m]
                xb_len[b, node] += 1
                xb_out[b, node % O] += 1
                xb_words[b] += 1
            g += 1
    busy[0] += n_busy
    return n_acts


@numba.njit(cache=True, nogil=True)
def accumulate(acts, drivers_per_half, row_weight, row_label, row_sign, acc):
    """Add the synapse weights of ``acts`` rows (sample, half, driver, address)
    to ``acc`` [2 (exc, inh), B, halves, columns]: both rows of the driver, the
    synapses whose label is the address, by the row's sign (``row_sign``
    [halves * drivers, 2]: 0 exc, 1 inh, -1 off; ``row_weight``, ``row_label``
    [halves * drivers, 2, columns])."""
    C = acc.shape[3]
    for m in range(len(acts)):
        b, h, address = acts[m, 0], acts[m, 1], acts[m, 3]
        hd = h * drivers_per_half + acts[m, 2]
        for r in range(2):
            s = row_sign[hd, r]
            if s < 0:
                continue
            for c in range(C):
                if row_label[hd, r, c] == address:
                    acc[s, b, h, c] += row_weight[hd, r, c]


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
