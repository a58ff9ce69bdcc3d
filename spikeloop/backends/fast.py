"""Backend "fast": the whole chip as a batched emulator (CPU or CUDA).

It returns the same Observables as the reference backend (backends/reference.py)
bit for bit: the same digital rules for all samples of a batch at once, with the
analog side run by the shared ``AnalogLoop`` (torch, on ``device``).  The digital
side runs on the host in numpy, on the events only (a few words per cycle in a
whole batch), never on dense per-cycle state.  What makes it fast:

- **One window per analog step.**  Spikes enter only at analog step boundaries
  and the crossbar never stalls its inputs, so everything that enters the
  crossbar between two boundaries is known at the first one: the arbiters grant
  their pending neurons in ascending order at a fixed rate
  (:meth:`FastChip._arbiter_window`, on the pending neurons only), the playback
  releases follow from the event table alone (:func:`playback_schedule`).
- **Closed forms where words do not meet.**  A crossbar word that finds its
  output idle and alone is granted the next cycle and its whole service follows
  (drivers, synapse memories, boundary accumulators, recorder):
  :meth:`FastChip._window` computes those for all samples of a window at once.
  Only the words that meet others at an output (round robin, held grants, FIFO
  levels and drops, the recorder's links) go cycle by cycle
  (:meth:`FastChip._crossbar_cycle`), and only in cycles where such words are in
  flight.  The weights of all driver activations of a step are summed in one
  gather and ``index_add`` before the step (:meth:`FastChip._flush_activations`).
- **Other closed forms.**  The ADC sampling cycles, sample count and overflow
  follow from ``adc_period`` (:func:`adc_schedule`; the codes are taken from the
  analog state after the right step), the refractory counters from the prescaler
  ticks between two boundaries.  A driver serialising an event with ``k``
  matches only needs its position in that label's precomputed match list.
- **Noise ahead.**  The membrane noise of many steps (about 2**21 numbers) is
  computed per call: on the CPU on model/noise.py's float32 path (the exact
  float64 definition's numbers, rounded to float32, bit for bit), the next
  call's on a second thread while these steps run (``AnalogLoop.plan_steps``);
  on CUDA by the exact definition itself, on the GPU.

The order of evaluation inside one cycle is the reference's
(model/digital/top.py): neuron back end -> arbiters and playback -> crossbar
outputs (state only) -> drivers and recorder (their ``ready``) -> crossbar
pushes and pops -> synapse memories -> analog boundaries.
"""
from __future__ import annotations

import numpy as np
import torch

from spikeloop.backends import DRAIN_CYCLES, check_device, live_cycles
from spikeloop.backends.analog_loop import AnalogLoop
from spikeloop.backends.ppu import (
    FastPpu,
    PpuJob,
    StaleAdcRead,
    run_before,
    synapse_arrays,
)
from spikeloop.chip import Chip
from spikeloop.config import ChipConfig
from spikeloop.events import InputEvents, Observables
from spikeloop.image import ConfigImage
from spikeloop.rtl.layouts import RowSign


def run_fast(chip: Chip, image: ConfigImage, events: InputEvents, n_steps: int, *,
             run_seed: int = 0, sample_offset: int = 0, device="cpu",
             ppu=None) -> Observables:
    """Run a batch on the fast backend; the semantics are those of
    :func:`~spikeloop.backends.reference.run_reference` (see backends/__init__.py
    for the run protocol).  ``ppu``: a PPU program run with the job
    (spikeloop/backends/ppu.py, which says what the fast backend refuses)."""
    job = PpuJob.of(chip.cfg, ppu)
    if job is None:
        return FastChip(chip, image, device=device).run(events, n_steps, run_seed=run_seed,
                                                        sample_offset=sample_offset)
    if events.cfg != chip.cfg:
        raise ValueError(f"events are for preset {events.cfg.name!r}, not {chip.cfg.name!r}")
    cfg = chip.cfg
    rows = [[list(zip(image.synapse_weight[h, r].tolist(), image.synapse_label[h, r].tolist(),
                      strict=True)) for r in range(cfg.rows_per_half)]
            for h in range(cfg.n_halves)]
    if job.when == "before":
        res, rows = run_before(cfg, job, rows)
        obs = FastChip(chip, _with_rows(image, rows), device=device).run(
            events, n_steps, run_seed=run_seed, sample_offset=sample_offset)
        obs.ppu = [res]
        return obs
    # each_sample: the PPU of every sample beside the windows
    L = live_cycles(cfg, n_steps)
    period = int(image.adc_period)
    adc_cycles = np.arange(period - 1, L, period) if period else np.zeros(0, np.int64)
    n_stored = min(len(adc_cycles), cfg.adc_buffer_depth)
    # the ADC buffer before a sample: the power-up zeros before the first, then
    # what the sample before left (in a speculative batch, its stored samples are
    # not known when the next sample's PPU runs)
    stale = [[0] * cfg.n_neurons for _ in range(cfg.adc_buffer_depth)]
    unknown = [None] * n_stored + stale[n_stored:]
    state = None            # the PPU's registers and data: the job's at first
    parts, b, B = [], 0, events.batch
    # speculate until it fails once (a program whose state changes from sample to
    # sample would otherwise cost a batch per sample); then sample by sample
    speculate = not job.writes_synapses

    def run(first: int, count: int, ppus: list[FastPpu]) -> Observables:
        sub = InputEvents.from_lists(cfg, [events.of_sample(first + j).tolist()
                                           for j in range(count)])
        return FastChip(chip, image, device=device).run(
            sub, n_steps, run_seed=run_seed, sample_offset=sample_offset + first, ppus=ppus)

    def ppu_of(j: int, buffer) -> FastPpu:
        return FastPpu(cfg, job, rows, sample=j, stale_adc=buffer, n_live=L,
                       adc_cycles=adc_cycles, n_steps=n_steps, drain=DRAIN_CYCLES,
                       state=state)

    while b < B:
        if speculate and 0 < b < B - 1:
            # speculation: samples b.. each leave the state they start from
            ppus = [ppu_of(j, stale if j == b else unknown) for j in range(b, B)]
            try:
                obs = run(b, B - b, ppus)
            except StaleAdcRead:
                obs = None
            speculate = False
            if obs is not None:
                ends = [p.state() for p in ppus]
                keep = next((j + 1 for j in range(len(ppus) - 1) if ends[j] != state),
                            len(ppus))
                parts.append(obs.head(keep))
                state, stale = ends[keep - 1], ppus[keep - 1].buffer_after()
                b += keep
                speculate = keep == len(ppus)
                continue
        p = ppu_of(b, stale)
        parts.append(run(b, 1, [p]))
        state, stale = p.state(), p.buffer_after()
        if p.wrote:
            rows = p.rows
            image = _with_rows(image, rows)
        b += 1
    return Observables.concat(parts)


def _with_rows(image: ConfigImage, rows) -> ConfigImage:
    """``image`` with the synapses ``rows[half][row][col] = (weight, label)``."""
    out = image.copy()
    out.synapse_weight, out.synapse_label = synapse_arrays(rows)
    return out


def playback_schedule(cfg: ChipConfig, events: InputEvents, n_live: int):
    """Release cycles of the playback: entry ``j`` of a sample (in release order)
    leaves in cycle ``max(time_j, release_{j-1} + 1)`` (one entry per cycle, never
    before its time), if that is a running cycle (``< n_live``).

    Returns ``(rows, late)``: ``rows`` [K, 4] int64 (cycle, sample, link, label)
    of the released entries, sorted by cycle; ``late`` [batch] int64 (unsaturated):
    entries released after their time."""
    t = events.table
    late = np.zeros(events.batch, dtype=np.int64)
    if not len(t):
        return np.zeros((0, 4), dtype=np.int64), late
    # all samples at once: the entries grouped by sample (table order within one),
    # j = index within its sample; the running maximum of time_j - j restarts at
    # each sample because every sample's values are lifted above all earlier ones
    ev = t[np.argsort(t[:, 0], kind="stable")]
    s = ev[:, 0]
    first = np.ones(len(ev), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    at = np.arange(len(ev), dtype=np.int64)
    j = at - np.maximum.accumulate(np.where(first, at, 0))
    v = ev[:, 1] - j
    lift = (np.cumsum(first) - 1) * (int(v.max()) - int(v.min()) + 1)
    release = j + np.maximum.accumulate(v + lift) - lift
    go = release < n_live
    np.add.at(late, s[go], release[go] > ev[go, 1])
    rows = np.stack([release[go], s[go], ev[go, 2], ev[go, 3]], axis=1)
    return rows[np.argsort(rows[:, 0], kind="stable")], late


def adc_schedule(cfg: ChipConfig, period: int, n_live: int, n_steps: int):
    """ADC samples of one run: the phase counter samples in running cycles
    ``r = period-1, 2*period-1, ...``; the codes it sees in cycle ``r`` are those
    after analog step ``min(r // S, n_steps)`` (0: the initial membranes).

    Returns ``(steps, n_taken)``: for each stored sample the analog step whose
    codes it holds, and the number of samples taken (stored + overflowed)."""
    if period == 0:
        return np.zeros(0, dtype=np.int64), 0
    cycles = np.arange(period - 1, n_live, period, dtype=np.int64)
    stored = cycles[:cfg.adc_buffer_depth]
    return np.minimum(stored // cfg.analog_step_cycles, n_steps), len(cycles)


_NO_CYCLES, _NO_ROWS = np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.int64)


class _Inputs:
    """The crossbar words of a window left to the cycle-by-cycle crossbar, in
    cycle order: ``rows`` [k, 4] (sample, crossbar input, output, label),
    ``cycles`` [k] (numpy, ascending)."""

    def __init__(self, cycles: np.ndarray, rows: np.ndarray):
        self.cycles, start = np.unique(cycles, return_index=True)
        self.start = np.append(start, len(cycles))
        self.rows = rows
        self.p = 0

    @classmethod
    def none(cls) -> _Inputs:
        """No words (one shared instance: taking from it changes nothing)."""
        return _NO_INPUTS

    def next_cycle(self) -> int | float:
        return int(self.cycles[self.p]) if self.p < len(self.cycles) else float("inf")

    def take(self, g: int):
        """The rows of cycle ``g`` (None if none); cycles are taken in order."""
        if self.p < len(self.cycles) and self.cycles[self.p] == g:
            rows = self.rows[self.start[self.p]:self.start[self.p + 1]]
            self.p += 1
            return rows
        return None


_NO_INPUTS = _Inputs(_NO_CYCLES, np.zeros((0, 4), dtype=np.int64))


class FastChip:
    """One ConfigImage loaded into tensors on ``device``; :meth:`run` runs batches."""

    def __init__(self, chip: Chip, image: ConfigImage, *, device="cpu"):
        cfg = chip.cfg
        if image.cfg != cfg:
            raise ValueError(f"image is for preset {image.cfg.name!r}, not {cfg.name!r}")
        self.chip, self.image, self.cfg = chip, image, cfg
        self.device = dev = check_device(device)
        H, C, n = cfg.n_halves, cfg.columns_per_half, cfg.n_neurons
        D, Bh = cfg.drivers_per_half, cfg.buses_per_half
        P, K = cfg.neurons_per_block, cfg.n_blocks

        def t(x, dtype=torch.int64):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=dev)

        # neuron back end and arbiters
        self.enable = t(image.neuron_enable, torch.bool)
        self.enable_np = np.asarray(image.neuron_enable) != 0
        self.refractory = t(image.refractory & ((1 << cfg.refractory_bits) - 1))
        #: no refractory period anywhere: the counters stay 0, nobody is held
        self.no_refractory = not bool(self.refractory.any())
        self.prescale = int(image.refractory_prescale)
        self.block_labels = np.asarray(image.neuron_label & ((1 << cfg.event_label_bits) - 1),
                                       dtype=np.int64).reshape(K, P)
        # synapse drivers: per global bus and row select, the matching drivers in
        # priority order (lowest index first), padded; and how many there are
        rs_n = 1 << cfg.row_select_bits
        per_bus = len(range(0, D, Bh))
        match = np.zeros((cfg.n_buses, rs_n, per_bus), dtype=np.int64)
        n_match = np.zeros((cfg.n_buses, rs_n), dtype=np.int64)
        rs = np.arange(rs_n)
        for h in range(H):
            for b in range(Bh):
                drivers = np.arange(b, D, Bh)
                hit = ((rs[:, None] ^ image.driver_select[h, drivers][None, :])
                       & image.driver_mask[h, drivers][None, :]) == 0     # [rs, drivers]
                for r in range(rs_n):
                    m = drivers[hit[r]]
                    match[h * Bh + b, r, :len(m)] = m
                    n_match[h * Bh + b, r] = len(m)
        self.match_np = match.reshape(-1)
        self.n_match_np = n_match.reshape(-1)
        self.match_width = per_bus
        # synapse memory + row signs: per (half, driver) the two rows' weights split
        # into [row, exc/inh, column], and the two rows' labels [row, column]
        w = image.synapse_weight.reshape(H, D, 2, C)
        sign = image.row_sign.reshape(H, D, 2, 1)
        w_sign = np.stack([w * (sign == RowSign.EXC), w * (sign == RowSign.INH)], axis=3)
        self.row_w = t(w_sign.reshape(H * D, 2, 2, C), torch.int32)
        self.row_label = t(image.synapse_label.reshape(H * D, 2, C))
        # crossbar node routes: input i takes label x when (x & mask) == target; a
        # disabled node gets target -1, which no masked label equals
        self.xb_mask_np = np.asarray(image.xbar_mask, dtype=np.int64)
        self.xb_target_np = np.where(np.asarray(image.xbar_enable) != 0,
                                     np.asarray(image.xbar_target, dtype=np.int64), -1)
        # synapse memory behind each (half*driver, address): the two rows' weights
        # whose label is the address, summed (exc/inh split) [H*D*2**label_bits, 2, C];
        # None when too large (then computed per activation)
        A = 1 << cfg.label_bits
        self.row_w_addr = None
        if H * D * A * 2 * C * 4 <= (64 << 20):
            tab = torch.zeros((H * D, A, 2, C), dtype=torch.int32, device=dev)
            for a in range(A):
                hit = self.row_label == a                                  # [HD, 2, C]
                tab[:, a] = (self.row_w * hit[:, :, None, :]).sum(1, dtype=torch.int32)
            self.row_w_addr = tab.view(H * D * A, 2, C)
        self.n = n

    # ------------------------------------------------------------------ run
    def run(self, events: InputEvents, n_steps: int, *, run_seed: int = 0,
            sample_offset: int = 0, ppus: list[FastPpu] | None = None) -> Observables:
        """``ppus``: one PPU per sample, run beside the windows (spikeloop/backends/ppu.py)."""
        cfg, dev = self.cfg, self.device
        if n_steps < 1:
            raise ValueError(f"n_steps = {n_steps}; allowed: >= 1")
        if events.cfg != cfg:
            raise ValueError(f"events are for preset {events.cfg.name!r}, not {cfg.name!r}")
        B, n, S, K = events.batch, self.n, cfg.analog_step_cycles, cfg.n_blocks
        L = live_cycles(cfg, n_steps)
        end = L + DRAIN_CYCLES
        cmax = (1 << cfg.counter_bits) - 1
        self._init_state(B)

        # playback: release cycles in closed form, as crossbar inputs K + link
        rel, late = playback_schedule(cfg, events, L)
        p_cyc, p_rows = rel[:, 0], np.stack([rel[:, 1], K + rel[:, 2], rel[:, 3]], 1)
        p_at = np.searchsorted(p_cyc, [w * S for w in range(n_steps + 1)] + [end])
        # the arbiters' outputs not yet taken: (cycles, rows)
        a_cyc, a_rows = np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
        # ADC: which analog step each stored sample shows
        adc_steps, adc_taken = adc_schedule(cfg, int(self.image.adc_period), L, n_steps)
        adc = torch.zeros((len(adc_steps), B, n), dtype=torch.int64, device=dev)
        code_mask = (1 << cfg.adc_bits) - 1

        analog = AnalogLoop(self.chip, self.image, list(range(sample_offset, sample_offset + B)),
                            run_seed, device=dev)
        # the noise of many steps per call (model/noise.py's float32 path; one exact
        # pass for the few numbers near a rounding boundary per call)
        analog.plan_steps(n_steps, elements=1 << 21)

        adc_at = {int(k): torch.as_tensor(np.flatnonzero(adc_steps == k), device=dev)
                  for k in np.unique(adc_steps)}

        def take_codes(step: int) -> None:
            hit = adc_at.get(step)
            if hit is not None:
                adc[hit] = analog.codes() & code_mask
                if ppus:
                    rows = adc[hit].cpu().numpy()
                    for j, row in zip(hit.tolist(), rows, strict=True):
                        for b, p in enumerate(ppus):
                            p.set_codes(j, row[b])

        take_codes(0)
        spikes = []
        # one window per analog step: cycles [g0, g1) integrate into step w (the last
        # window, after the last step, runs to the end of the drain)
        for w in range(n_steps + 1):
            g0, g1 = w * S, ((w + 1) * S if w < n_steps else end)
            if w:
                # cycle g0 = (k+1) S: the analog step k = w - 1, its spikes, the arbiters
                extra = None
                if ppus:        # every cycle of step w - 1, and its reset holds
                    for p in ppus:
                        p.advance(g0)
                    held = [p.hold_of_step(w - 1, self.n, dev) for p in ppus]
                    if any(h is not None for h in held):
                        extra = torch.stack([self.no_hold[0] if h is None else h
                                             for h in held])
                fired = self._analog_step(analog, g0, extra)
                sp = fired.nonzero().cpu().numpy()
                sb, sn = sp[:, 0], sp[:, 1]
                spikes.append(sp)
                take_codes(w)
                if not self.no_refractory:
                    self._refractory_load(fired & self.enable, g0)
                en = self.enable_np[sn]
                c, r = self._arbiter_window(g0, g1, sb[en], sn[en])
                if len(c):             # after the old window's last slot (cycle g0)
                    a_cyc, a_rows = np.concatenate([a_cyc, c]), np.concatenate([a_rows, r])
            # this window's crossbar inputs: arbiter outputs and playback releases
            j = np.searchsorted(a_cyc, g1)
            cyc = np.concatenate([a_cyc[:j], p_cyc[p_at[w]:p_at[w + 1]]])
            rows = np.concatenate([a_rows[:j], p_rows[p_at[w]:p_at[w + 1]]])
            a_cyc, a_rows = a_cyc[j:], a_rows[j:]
            hard = self._window(g0, g1, L, cyc, rows)
            # the words the closed form leaves to the cycle-by-cycle crossbar
            g = g0
            while g < g1:
                r = hard.take(g)
                if self.x_any or r is not None:
                    self._crossbar_cycle(g, min(g, L), r)
                    self.stats["cycles"] += 1
                g = g + 1 if self.x_any else min(g1, hard.next_cycle())

        obs = self._observables(events, n_steps, run_seed, L, spikes, late, adc,
                                adc_taken, cmax)
        if ppus is not None:
            obs.ppu = [p.finish() for p in ppus]
        return obs

    # ------------------------------------------------------------ state
    def _init_state(self, B: int) -> None:
        """The state after the clear cycle, for ``B`` samples."""
        cfg, dev = self.cfg, self.device
        K = cfg.n_blocks
        I, O = cfg.crossbar_inputs, cfg.crossbar_outputs
        H, C = cfg.n_halves, cfg.columns_per_half

        def z(*shape, dtype=torch.int64):
            return torch.zeros(shape, dtype=dtype, device=dev)

        self.B = B
        # neuron back end: counters as of the start of cycle ``cnt_cycle``
        self.cnt = z(B, self.n)
        self.cnt_cycle = 0
        self.no_hold = z(B, self.n, dtype=torch.bool)
        # arbiters (numpy): the pending neurons at the start of the present window
        # as sorted codes (b*K + block)*P + index; per (b, block) whether the window's
        # last cycle put a word into the FIFO (it is full then, depth 1)
        self.pend = np.zeros(0, dtype=np.int64)
        self.arb_last = np.zeros(B * K, dtype=bool)
        self.arb_drops = np.zeros(B * K, dtype=np.int64)
        # crossbar (numpy, on the host): the words in the node FIFOs as one list of
        # rows (sample, output, input, label, push order, node); the FIFO of node
        # (b, o, i) = its rows in push order (``node`` = (b*O + o)*I + i).  Per
        # output ("server" b*O + o) the round-robin pointer and the held grant.
        self.x_ev = np.zeros((0, 6), dtype=np.int64)
        self.x_seq = 0
        self.x_any = False
        self.x_last = np.full(B * O, I - 1, dtype=np.int64)
        self.x_locked = np.zeros(B * O, dtype=bool)
        self.x_held = np.zeros(B * O, dtype=np.int64)
        # words of the closed form (_window) still in service after its window:
        # columns (cycle, sample, input, output, label)
        self.carry = np.zeros((0, 5), dtype=np.int64)
        # crossbar counters, summed at the end: the (b*I + i)*O + o of each word
        # routed to a node, and of each one dropped there (FIFO full)
        self.x_log = []
        self.x_drop_log = []
        # synapse drivers: activations done of the head event's match list
        self.d_pos = np.zeros(B * cfg.n_buses, dtype=np.int64)
        self.unmatched = np.zeros(B * cfg.n_buses, dtype=np.int64)
        # analog boundaries: the accumulators of the present step [B, H, exc/inh, C];
        # the driver activations since the last step, (sample, half, driver,
        # address) rows, are added to them before the step (_flush_activations)
        self.acc = z(B, H, 2, C, dtype=torch.int32)
        self.acts = []
        # recorder
        self.rec_last = np.full(B, cfg.n_host_links - 1, dtype=np.int64)
        self.rec_count = np.zeros(B, dtype=np.int64)
        self.rec_drops = np.zeros(B, dtype=np.int64)
        self.records = []
        #: how the crossbar words went (closed form or cycle by cycle), carried
        #: words handed over (in service or not yet granted), cycles run one by one
        self.stats = dict.fromkeys(("closed_form", "cycle_by_cycle", "handed_over",
                                    "handed_over_in_service", "cycles"), 0)

    # ------------------------------------------------- neuron back end
    def _ticks(self, lo: int, hi: int) -> int:
        """Prescaler ticks in cycles ``lo .. hi-1`` (cycle ``g`` ticks when ``g``
        is a multiple of ``2**prescale``; the prescale counter starts at 0 in
        running cycle 0 and its wrap is a multiple of ``2**prescale``)."""
        q = 1 << self.prescale
        return -(-hi // q) - (-(-lo // q))

    def _analog_step(self, analog: AnalogLoop, g: int,
                     extra_hold: torch.Tensor | None = None) -> torch.Tensor:
        """The analog step whose sums are valid in cycle ``g``: the accumulated
        weights and the refractory flags at the start of ``g`` (ORed with
        ``extra_hold``, the PPU's reset hold, when given)."""
        if self.no_refractory:
            hold = self.no_hold
        else:
            dt = self._ticks(self.cnt_cycle, g)
            if dt:
                self.cnt = (self.cnt - dt).clamp_(min=0)
            self.cnt_cycle = g
            hold = self.cnt != 0
        if extra_hold is not None:
            hold = hold | extra_hold
        self._flush_activations()
        acc = self.acc
        exc = acc[:, :, 0].reshape(self.B, self.n)
        inh = acc[:, :, 1].reshape(self.B, self.n)
        fired = analog.step(exc, inh, hold)
        acc.zero_()                     # (the step has read exc and inh)
        return fired

    def _refractory_load(self, spike_out: torch.Tensor, g: int) -> None:
        """Cycle ``g``'s counter update: accepted spikes load their refractory
        period, other nonzero counters count down on a prescaler tick."""
        dt = self._ticks(g, g + 1)
        cnt = (self.cnt - dt).clamp_(min=0) if dt else self.cnt
        self.cnt = torch.where(spike_out, self.refractory, cnt)
        self.cnt_cycle = g + 1

    # ------------------------------------------------------------ arbiters
    def _arbiter_window(self, g: int, g_next: int, sb: np.ndarray,
                        sn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The arbiters (model/digital/arbiter.py) from spike cycle ``g`` up to the
        next one, ``g_next``, in closed form; ``sb``, ``sn``: sample and neuron of
        each spike of cycle ``g`` that leaves (enabled neurons).

        In cycle ``g`` the lowest pending neuron is granted (if the FIFO can take
        a word), then the spikes join the pending bits (a spike of a neuron still
        pending and not granted is dropped).  No spike enters before ``g_next``, so
        from ``g + 1`` on the pending neurons are granted in ascending order, one a
        cycle (FIFO depth >= 2: the FIFO, popped every cycle, is never full) or one
        every other cycle (depth 1: a cycle after a grant finds the FIFO full).  A
        word granted in cycle ``c`` is the block's crossbar input in cycle ``c + 1``.
        Returns the crossbar inputs of cycles ``g+1 .. g_next``: (cycles, rows
        (sample, block, label)), in cycle order.  Only the pending
        neurons are touched (sorted codes, one group per sample and block)."""
        cfg = self.cfg
        K, P = cfg.n_blocks, cfg.neurons_per_block
        pend = self.pend
        if not len(pend) and not len(sb):
            self.arb_last[:] = False
            return _NO_CYCLES, _NO_ROWS
        W = g_next - g
        # cycle g: the lowest pending neuron of each group is granted (slot 0)
        gid = pend // P
        first = np.ones(len(pend), dtype=bool)
        first[1:] = gid[1:] != gid[:-1]
        if cfg.arbiter_fifo_depth == 1:
            first &= ~self.arb_last[gid]
        has = np.zeros(len(self.arb_last), dtype=bool)
        has[gid[first]] = True
        granted = pend[first]
        rest = pend[~first]
        # the spikes join; a spike of a neuron still pending is dropped
        code = (sb * K + sn // P) * P + sn % P
        dropped = np.isin(code, rest)
        if dropped.any():
            np.add.at(self.arb_drops, code[dropped] // P, 1)
        pend = np.union1d(rest, code)
        # slot w of the window: the crossbar input in cycle g + 1 + w
        gid = pend // P
        start = np.ones(len(pend), dtype=bool)
        start[1:] = gid[1:] != gid[:-1]
        at = np.arange(len(pend))
        rank = at - np.maximum.accumulate(np.where(start, at, 0))
        if cfg.arbiter_fifo_depth == 1:
            slot = 1 + has[gid] + 2 * rank
        else:
            slot = 1 + rank
        go = slot < W
        self.pend = pend[~go]
        out_code = np.concatenate([granted, pend[go]])
        out_slot = np.concatenate([np.zeros(len(granted), dtype=np.int64), slot[go]])
        out_gid = out_code // P
        self.arb_last = np.zeros(len(self.arb_last), dtype=bool)
        self.arb_last[out_gid[out_slot == W - 1]] = True
        order = np.argsort(out_slot, kind="stable")
        out_code, out_slot, out_gid = out_code[order], out_slot[order], out_gid[order]
        blk = out_gid % K
        return g + 1 + out_slot, np.stack([out_gid // K, blk,
                                           self.block_labels[blk, out_code % P]], 1)

    # ------------------------------------------------------------ one window
    def _window(self, g0: int, g1: int, L: int, cyc: np.ndarray, rows: np.ndarray) -> _Inputs:
        """The crossbar words entering in cycles ``g0 .. g1-1`` (``cyc``, ``rows``:
        cycle, and (sample, crossbar input, label)), in closed form wherever no
        two words meet; returns the others, routed, for :meth:`_crossbar_cycle`.

        A word pushed in cycle ``a`` into a node of output ``o`` is alone there if
        every earlier word of ``o`` has left by the end of cycle ``a`` (and did not
        fill its node FIFO at ``a``), and no other word enters ``o`` in cycle ``a``:
        then ``o`` grants it in cycle ``a + 1`` (round robin over one non-empty
        node), and its service is fixed: a bus drives its ``k`` matching drivers in
        cycles ``a+1 .. a+k`` and pops in cycle ``a + max(k, 1)`` (``k = 0``: counted
        unmatched in ``a + 1``); a host link is recorded in ``a + 1`` (all links of
        a sample share the recorder, so they count as one output here).  Words
        that arrive later do not change it.  Per output, in order of arrival, the
        words from the first one that meets another on (with the run of words
        before it that each arrived no later than its predecessor left), and every
        word of an output that still has such words in flight, go cycle by cycle.
        The effects of a word in cycles ``>= g1`` wait for the next window
        (``self.carry``): if a word of that window meets it, it is handed to the
        cycle-by-cycle state as it is at the start of ``g1``."""
        cfg = self.cfg
        B, I, O, X, NB = (self.B, cfg.crossbar_inputs, cfg.crossbar_outputs,
                          cfg.crossbar_fifo_depth, cfg.n_buses)
        # route: one word per (input word, output whose node takes it)
        if len(rows):
            i = rows[:, 1]
            take = (rows[:, 2:3] & self.xb_mask_np[i]) == self.xb_target_np[i]   # [k, O]
            r, o = np.nonzero(take)
            new = np.stack([cyc[r], rows[r, 0], i[r], o, rows[r, 2]], 1)
        else:
            new = np.zeros((0, 5), dtype=np.int64)
        n_old = len(self.carry)
        w = np.concatenate([self.carry, new]) if n_old else new
        if not len(w):
            return _Inputs.none()
        is_new = np.arange(len(w)) >= n_old
        bus = w[:, 3] < NB
        key = np.where(bus, w[:, 1] * O + w[:, 3], B * O + w[:, 1])
        order = np.lexsort((w[:, 0], key))
        w, is_new, bus, key = w[order], is_new[order], bus[order], key[order]
        a, b, i, o, label = w.T
        node = (b * O + o) * I + i
        rs = (label >> cfg.label_bits) & ((1 << cfg.row_select_bits) - 1)
        entry = np.where(bus, o, 0) * (1 << cfg.row_select_bits) + rs
        k = np.where(bus, self.n_match_np[entry], 1)
        p = a + np.maximum(k, 1)                    # the cycle it leaves, if alone
        # meetings, per output in order of arrival
        same = key[1:] == key[:-1]
        meet = np.zeros(len(w), dtype=bool)
        meet[1:] = same & ((a[1:] < p[:-1])
                           | ((a[1:] == p[:-1]) & (node[1:] == node[:-1]) & (X == 1)))
        # runs of words each arriving before or in the cycle its predecessor leaves:
        # a run with a meeting goes cycle by cycle as a whole (its first word's node
        # may still hold the word before it in its arrival cycle)
        first = np.ones(len(w), dtype=bool)
        first[1:] = ~same
        if meet.any():
            run = np.cumsum(first | np.concatenate([[True], a[1:] > p[:-1]])) - 1
            met = np.zeros(run[-1] + 1, dtype=bool)
            met[run[meet]] = True
            f = met[run]
        else:
            f = meet
        if len(self.x_ev):                          # outputs with words in flight
            ev = self.x_ev
            busy = np.where(ev[:, 1] < NB, ev[:, 0] * O + ev[:, 1], B * O + ev[:, 0])
            f |= np.isin(key, busy)
        if f.any():
            cs = np.cumsum(f)
            starts = np.flatnonzero(first)
            hard = (cs - (cs[starts] - f[starts])[np.cumsum(first) - 1]) > 0
        else:
            hard = f
        easy = ~hard
        # carried words met by this window's: into the cycle-by-cycle state at g0
        cv = np.flatnonzero(hard & ~is_new) if n_old else _NO_CYCLES
        if len(cv):
            seq = np.arange(self.x_seq, self.x_seq + len(cv))
            self.x_seq += len(cv)
            word = np.stack([b[cv], o[cv], i[cv], label[cv], seq, node[cv]], 1)
            self.x_ev = np.concatenate([self.x_ev, word]) if len(self.x_ev) else word
            self.x_any = True
            srv = b[cv] * O + o[cv]
            lk = a[cv] + 1 <= g0 - 1                 # granted before g0: in service
            self.stats["handed_over"] += len(cv)
            self.stats["handed_over_in_service"] += int(lk.sum())
            self.x_locked[srv] = lk
            self.x_held[srv[lk]] = i[cv][lk]
            lb = lk & bus[cv]
            self.d_pos[(b[cv] * NB + o[cv])[lb]] = (g0 - 1 - a[cv])[lb]
        # drivers: activations in cycles [g0, g1) of the words alone
        eb = np.flatnonzero(easy & bus & (k > 0))
        if len(eb):
            lo = np.maximum(0, g0 - a[eb] - 1)
            cnt = np.maximum(np.minimum(k[eb], g1 - a[eb] - 1) - lo, 0)
            tot = int(cnt.sum())
            if tot:
                rep = np.repeat(np.arange(len(eb)), cnt)
                pos = lo[rep] + np.arange(tot) - (np.cumsum(cnt) - cnt)[rep]
                rr = eb[rep]
                d = self.match_np[entry[rr] * self.match_width + pos]
                self.acts.append(np.stack([b[rr], o[rr] // cfg.buses_per_half, d,
                                           label[rr] & ((1 << cfg.label_bits) - 1)], 1))
        um = np.flatnonzero(easy & bus & (k == 0) & (a + 1 >= g0) & (a + 1 < g1))
        if len(um):
            np.add.at(self.unmatched, b[um] * NB + o[um], 1)
        # the words alone that leave in [g0, g1): round-robin pointers, recorder
        out = np.flatnonzero(easy & (p >= g0) & (p < g1))
        if len(out):
            srv = (b * O + o)[out][::-1]
            u, last = np.unique(srv, return_index=True)
            self.x_last[u] = i[out[::-1][last]]
            lr = out[~bus[out]]
            if len(lr):
                lb = b[lr]
                start = np.ones(len(lr), dtype=bool)
                start[1:] = lb[1:] != lb[:-1]
                at = np.arange(len(lr))
                rank = at - np.maximum.accumulate(np.where(start, at, 0))
                store = rank < cfg.record_depth - self.rec_count[lb]
                np.add.at(self.rec_count, lb[store], 1)
                np.add.at(self.rec_drops, lb[~store], 1)
                endg = np.ones(len(lr), dtype=bool)
                endg[:-1] = start[1:]
                self.rec_last[lb[endg]] = o[lr][endg] - NB
                st = lr[store]
                if len(st):
                    self.records.append(np.stack([b[st], p[st], np.minimum(p[st], L),
                                                  o[st] - NB, label[st]], 1))
        ne = np.flatnonzero(easy & is_new)
        self.stats["closed_form"] += len(ne)
        if len(ne):
            self.x_log.append((b[ne] * I + i[ne]) * O + o[ne])
        self.carry = w[easy & (p >= g1)]
        hn = np.flatnonzero(hard & is_new)
        self.stats["cycle_by_cycle"] += len(hn)
        if not len(hn):
            return _Inputs.none()
        hn = hn[np.argsort(a[hn], kind="stable")]
        return _Inputs(a[hn], np.stack([b[hn], i[hn], o[hn], label[hn]], 1))

    # ------------------------------------------------------------ one cycle
    def _crossbar_cycle(self, g: int, time: int, inputs) -> None:
        """The crossbar (model/digital/crossbar.py) with the drivers, synapse
        memories, boundaries and recorder behind it, in cycle ``g`` (``time``:
        the cycle counter, frozen after the run).  ``inputs``: numpy [k, 4]
        (sample, crossbar input, output, label): this cycle's input words routed to
        the outputs whose nodes take them (those left by :meth:`_window`), or None.

        Only the words in flight are touched (a few per cycle in a whole batch):
        every output with a word in some node FIFO (or a held grant) picks the head
        of the first non-empty node after its last grant (round robin), or its held
        node; the drivers and the recorder say which outputs are ready; those pop."""
        cfg = self.cfg
        I, O, X, NB = (cfg.crossbar_inputs, cfg.crossbar_outputs, cfg.crossbar_fifo_depth,
                       cfg.n_buses)
        ev = self.x_ev
        # -- pushes: full is decided on the levels at the start of the cycle (before
        # this cycle's pops); a node takes at most one input word per cycle
        new = None
        if inputs is not None:
            b, i, oo, label = inputs.T
            node = (b * O + oo) * I + i
            if len(ev):
                push = (ev[:, 5][None, :] == node[:, None]).sum(1) < X
            else:
                push = np.ones(len(b), dtype=bool)
            self.x_log.append((b * I + i) * O + oo)
            if not push.all():
                self.x_drop_log.append(((b * I + i) * O + oo)[~push])
            n_new = int(push.sum())
            if n_new:
                seq = np.arange(self.x_seq, self.x_seq + n_new)
                self.x_seq += n_new
                new = np.stack([b[push], oo[push], i[push], label[push], seq, node[push]], 1)
        # -- outputs (state only), on the words of the start of the cycle
        if len(ev):
            srv = ev[:, 0] * O + ev[:, 1]
            key = (ev[:, 2] - self.x_last[srv] - 1) % I
            lk = self.x_locked[srv]
            if lk.any():        # a held grant: its node's head, nothing else
                key = np.where(lk, np.where(ev[:, 2] == self.x_held[srv], -1, I), key)
            order = np.lexsort((ev[:, 4], key, srv))
            s_srv = srv[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = s_srv[1:] != s_srv[:-1]
            sel = order[first]                      # the granted word of each busy output
            sb, so, si, sl = ev[sel, 0], ev[sel, 1], ev[sel, 2], ev[sel, 3]
            ready = np.empty(len(sel), dtype=bool)
            bus = so < NB
            if bus.any():
                ready[bus] = self._drivers(sb[bus], so[bus], sl[bus])
            if not bus.all():
                link = ~bus
                ready[link] = self._recorder(g, time, sb[link], so[link] - NB, sl[link])
            srv = srv[sel]
            self.x_last[srv[ready]] = si[ready]
            self.x_locked[srv] = ~ready
            self.x_held[srv[~ready]] = si[~ready]
            if ready.any():
                keep = np.ones(len(ev), dtype=bool)
                keep[sel[ready]] = False
                ev = ev[keep]
        if new is not None:
            ev = np.concatenate([ev, new]) if len(ev) else new
        self.x_ev = ev
        self.x_any = len(ev) > 0

    def _drivers(self, b: np.ndarray, bus: np.ndarray, label: np.ndarray) -> np.ndarray:
        """Synapse drivers (model/digital/synapse_drivers.py) of the buses with a
        valid word (sample ``b``, bus, label; one row per bus), with the synapse
        memories and analog boundaries behind them: one matching driver per bus and
        cycle, lowest first; ``ready`` in the cycle of the last.  The activations go
        to ``self.acts``.  Returns ``ready`` per row."""
        cfg = self.cfg
        address = label & ((1 << cfg.label_bits) - 1)
        rs = (label >> cfg.label_bits) & ((1 << cfg.row_select_bits) - 1)
        entry = bus * (1 << cfg.row_select_bits) + rs
        k = self.n_match_np[entry]
        active = k > 0
        di = b * cfg.n_buses + bus                 # one row per (sample, bus): unique
        self.unmatched[di[~active]] += 1
        pos = np.where(active, self.d_pos[di], 0)
        nxt = pos + 1
        done = nxt >= k
        self.d_pos[di] = np.where(active & ~done, nxt, 0)
        if active.any():
            d = self.match_np[entry[active] * self.match_width + pos[active]]
            self.acts.append(np.stack([b[active], bus[active] // cfg.buses_per_half, d,
                                       address[active]], 1))
        return ~active | done

    def _flush_activations(self) -> None:
        """Add the weights of the driver activations since the last step to ``acc``."""
        if not self.acts:
            return
        cfg = self.cfg
        b, h, d, address = np.concatenate(self.acts).T
        self.acts = []
        hd = h * cfg.drivers_per_half + d
        row = torch.from_numpy(b * cfg.n_halves + h).to(self.device)
        if self.row_w_addr is not None:
            w = self.row_w_addr.index_select(0, torch.from_numpy(
                (hd << cfg.label_bits) + address).to(self.device))             # [k, 2, C]
        else:
            hd, address = (torch.from_numpy(x).to(self.device) for x in (hd, address))
            hit = self.row_label[hd] == address[:, None, None]                  # [k, 2, C]
            w = (self.row_w[hd] * hit[:, :, None, :]).sum(1, dtype=torch.int32)
        self.acc.view(-1, 2, cfg.columns_per_half).index_add_(0, row, w)

    def _recorder(self, g: int, time: int, b: np.ndarray, link: np.ndarray,
                  label: np.ndarray) -> np.ndarray:
        """Recorder (model/digital/recorder.py): round robin over the host links,
        one event per cycle and sample, then drops.  Rows: the links with a valid
        word (sample ``b``, link, label).  Returns ``ready`` per row."""
        cfg = self.cfg
        L_ = cfg.n_host_links
        key = (link - self.rec_last[b] - 1) % L_
        order = np.lexsort((key, b))
        sb = b[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sb[1:] != sb[:-1]
        got = order[first]                          # the granted row of each sample
        gb = b[got]
        self.rec_last[gb] = link[got]
        store = self.rec_count[gb] < cfg.record_depth
        self.rec_drops[gb[~store]] += 1
        self.rec_count[gb[store]] += 1
        if store.any():
            st = got[store]
            self.records.append(np.stack([b[st], np.full(len(st), g), np.full(len(st), time),
                                          link[st], label[st]], 1))
        ready = np.zeros(len(b), dtype=bool)
        ready[got] = True
        return ready

    # ------------------------------------------------------------ results
    def _observables(self, events, n_steps, run_seed, L, spikes, late, adc, adc_taken,
                     cmax) -> Observables:
        cfg, B = self.cfg, self.B

        def sat(x):
            return np.minimum(np.asarray(x.cpu() if torch.is_tensor(x) else x), cmax)

        steps = np.repeat(np.arange(len(spikes)), [len(x) for x in spikes])
        sp = (np.concatenate([np.concatenate(spikes), steps[:, None]], 1) if spikes
              else np.zeros((0, 3), np.int64))
        # (sample, neuron, step) -> (sample, step, cycle, neuron), sorted as the reference
        sp = sp[np.lexsort((sp[:, 1], sp[:, 2], sp[:, 0]))]
        S = cfg.analog_step_cycles
        spikes_out = np.stack([sp[:, 0], sp[:, 2], (sp[:, 2] + 1) * S, sp[:, 1]], 1)
        rec = np.concatenate(self.records) if self.records else np.zeros((0, 5), np.int64)
        rec = rec[np.lexsort((rec[:, 1], rec[:, 0]))]
        n_adc = len(adc)
        I, O = cfg.crossbar_inputs, cfg.crossbar_outputs
        size = B * I * O
        taken = (np.bincount(np.concatenate(self.x_log), minlength=size) if self.x_log
                 else np.zeros(size, dtype=np.int64))
        x_drops = (np.bincount(np.concatenate(self.x_drop_log), minlength=size)
                   if self.x_drop_log else np.zeros(size, dtype=np.int64))
        x_events = (taken - x_drops).reshape(B, I, O)
        x_drops = x_drops.reshape(B, I, O)
        return Observables(
            spikes=spikes_out.astype(np.int64).reshape(-1, 4),
            records=rec[:, [0, 2, 3, 4]].astype(np.int64).reshape(-1, 4),
            adc=adc.cpu().numpy(),
            adc_count=np.full(B, n_adc, dtype=np.int64),
            xbar_events=sat(x_events).astype(np.int64),
            xbar_drops=sat(x_drops).astype(np.int64),
            arbiter_drops=sat(self.arb_drops.reshape(B, -1)).astype(np.int64),
            driver_unmatched=sat(self.unmatched.reshape(B, -1)).astype(np.int64),
            playback_late=sat(late).astype(np.int64),
            record_drops=sat(self.rec_drops).astype(np.int64),
            adc_overflow=np.full(B, min(max(adc_taken - n_adc, 0), cmax), dtype=np.int64),
            cycles=np.full(B, L, dtype=np.int64),
            n_steps=n_steps, run_seed=run_seed, backend="fast")
