"""Backend "fast": the whole chip as a batched emulator (CPU or CUDA).

It returns the same Observables as the reference backend (backends/reference.py)
bit for bit: the same digital rules for all samples of a batch, with the analog
side run by the shared ``AnalogLoop`` (torch, on ``device``).  One window per
analog step: spikes enter only at analog step boundaries, so the analog step,
then the window's cycles of every sample, then the next step.  What makes it
fast:

- **On the CPU, one compiled call per sample and run.**  Each sample's whole run
  (:meth:`FastChip._run_whole`), every analog step (its weight sums, membrane
  noise, LIF update, ADC codes, refractory counters), every window of its
  digital side and every cycle of its PPU program (the compiled core of
  spikeloop/backends/ppu_core.py), is one compiled loop
  (:func:`spikeloop.backends.digital_core.run_samples`) built from the very
  functions the other paths use (model/analog.py's ``lif_row``,
  model/noise.py's ``noise_row``, the digital side's stages): no Python per
  analog step.  The samples share nothing, so the batch is split over
  ``threads`` threads (by default ``$SPIKELOOP_THREADS``, else every CPU the
  process may use), and the
  results are the same on any number of them.  On CUDA the steps below run
  from Python, step by step, with the same bits.

- **The digital side compiled, and only where something happens.**  The
  arbiters, the playback, the crossbar, the synapse drivers and the recorder
  run sample by sample, cycle by cycle, with the references' rules in
  numba-compiled loops on the host (:mod:`spikeloop.backends.digital_core`);
  a sample's cycle with nothing in flight changes nothing and is skipped, so
  the cost follows the events, not the clock.
- **Closed forms where the rule allows.**  The playback's release cycles
  (:func:`playback_schedule`), the ADC sampling cycles, sample count and
  overflow, and with the ADC ring (``ChipConfig.adc_ring``) which sample each
  buffer entry holds at the end (:func:`adc_schedule`; the codes are taken from
  the analog state after the right step, only for the samples the buffer keeps,
  or for every sample when a PPU program reads them), the refractory counters
  from the prescaler ticks between two boundaries (torch, on the device).
- **One sum per step.**  The weights of all driver activations of a window are
  added to the step's sums in one pass before the step (weight times gain
  with driver and synapse mismatch, model/synapses.py; on the CPU by
  ``model.synapses.accumulate``; on CUDA by one gather and ``index_add`` on the
  device: :meth:`FastChip._flush_activations`).
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

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from spikeloop.backends.devices import check_device
from spikeloop.backends.digital_core import (
    Analog,
    DigitalState,
    Run,
    Scratch,
    nonzero2,
    run_samples,
    spikes_from_bits,
)
from spikeloop.backends.fast_ppu import FastPpu, PpuBatch, fast_ppus, initial_state, run_before
from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.image import ConfigImage
from spikeloop.base.ppu_job import PpuJob
from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
from spikeloop.model.analog import _kernel_params
from spikeloop.model.analog_loop import AnalogLoop
from spikeloop.model.chip import Chip
from spikeloop.model.noise import noise_kind, sample_keys
from spikeloop.model.synapses import accumulate, row_tables


def run_fast(chip: Chip, image: ConfigImage, events: InputEvents, n_steps: int, *,
             run_seed: int = 0, sample_offset: int = 0, device="cpu",
             ppu=None, threads: int | None = None, row_events: bool = False,
             whole_run: bool = True) -> Observables:
    """Run a batch on the fast backend; the semantics are those of
    :func:`~spikeloop.backends.reference.run_reference` (see backends/__init__.py
    for the run protocol).  ``ppu``: a PPU program run with the job
    (spikeloop/base/ppu_job.py, which says what the fast backend refuses).
    ``threads``: the CPU threads that share the samples (None: ``$SPIKELOOP_THREADS``,
    else every CPU this process may use, :func:`usable_cpus`); the results do not
    depend on it.
    ``row_events``: list every driver activation in ``Observables.row_events``.
    ``whole_run``: False takes the step-by-step path where the whole-run kernel
    applies; the same bits, for comparisons and benchmarks
    (:attr:`FastChip.whole_run`)."""
    job = PpuJob.of(chip.cfg, ppu)

    def fast_chip(img: ConfigImage) -> FastChip:
        return FastChip(chip, img, device=device, threads=threads, whole_run=whole_run)

    if job is None:
        return fast_chip(image).run(
            events, n_steps, run_seed=run_seed, sample_offset=sample_offset,
            row_events=row_events)
    if events.cfg != chip.cfg:
        raise ValueError(f"events are for preset {events.cfg.name!r}, not {chip.cfg.name!r}")
    cfg = chip.cfg
    synapses = (np.asarray(image.synapse_weight), np.asarray(image.synapse_label))
    if job.when == "before":
        res, synapses = run_before(cfg, job, synapses)
        obs = fast_chip(_with_synapses(image, synapses)).run(
            events, n_steps, run_seed=run_seed, sample_offset=sample_offset,
            row_events=row_events)
        obs.ppu = [res]
        return obs
    # each_sample: the PPU of every sample beside the windows
    L = live_cycles(cfg, n_steps)
    period = int(image.adc_period)
    adc_cycles = np.arange(period - 1, L, period) if period else np.zeros(0, np.int64)
    # the entries a run writes: 0 .. n_stored-1 (with the ring too)
    n_stored = min(len(adc_cycles), cfg.adc_buffer_depth)
    # the ADC buffer before a sample: the power-up zeros before the first, then
    # what the sample before left, entry by entry (in a speculative batch, the
    # entries it wrote are not known when the next sample's PPU runs)
    stale = list(np.zeros((cfg.adc_buffer_depth, cfg.n_neurons), dtype=np.int64))
    unknown = [None] * n_stored + stale[n_stored:]
    state = initial_state(cfg, job)     # the PPU's registers and data: the job's at first
    parts, b, B = [], 0, events.batch
    # speculate until it fails once (a program whose state changes from sample to
    # sample would otherwise cost a batch per sample); then sample by sample
    speculate = not job.writes_synapses

    def run(first: int, count: int, ppus: list[FastPpu]) -> Observables:
        # samples first .. first+count-1, renumbered from 0 (the table is sorted
        # by sample first)
        sub = events
        if (first, count) != (0, events.batch):
            t = events.table
            lo, hi = np.searchsorted(t[:, 0], [first, first + count])
            sub = InputEvents(cfg, count, t[lo:hi] - np.array([first, 0, 0, 0]))
        return fast_chip(image).run(
            sub, n_steps, run_seed=run_seed, sample_offset=sample_offset + first, ppus=ppus,
            row_events=row_events)

    def ppus_of(first: int, count: int) -> list[FastPpu]:
        """The PPUs of samples ``first ..``: the first from the buffer the sample
        before left, the others speculated (the buffer's entries not known)."""
        return fast_ppus(cfg, job, synapses, list(range(first, first + count)),
                         [stale] + [unknown] * (count - 1), [False] + [True] * (count - 1),
                         n_live=L, adc_cycles=adc_cycles, n_steps=n_steps,
                         drain=DRAIN_CYCLES, state=state)

    while b < B:
        if speculate and b < B - 1:
            # speculation: samples b.. all start from the state sample b starts from
            # (after sample b, the buffer entries the sample before wrote are not
            # known); a sample is kept while what it read equals what the one before
            # left
            ppus = ppus_of(b, B - b)
            obs = run(b, B - b, ppus)
            speculate = False
            keep, start = 1, ppus[0].state()
            for p in ppus[1:]:
                if p.depends_on(start, state):
                    break
                start = p.end_state(start)
                keep += 1
            parts.append(obs if keep == len(ppus) else obs.head(keep))
            state, stale = start, ppus[keep - 1].buffer_after()
            b += keep
            speculate = keep == len(ppus)
            continue
        (p,) = ppus_of(b, 1)
        parts.append(run(b, 1, [p]))
        state, stale = p.state(), p.buffer_after()
        if p.wrote:
            synapses = p.synapses
            image = _with_synapses(image, synapses)
        b += 1
    return parts[0] if len(parts) == 1 else Observables.concat(parts)


def _with_synapses(image: ConfigImage, synapses) -> ConfigImage:
    """``image`` with the synapses ``(weights, labels)`` [halves, rows, columns]."""
    out = image.copy()
    out.synapse_weight, out.synapse_label = (np.asarray(a, dtype=np.int64).copy()
                                             for a in synapses)
    return out


def playback_schedule(cfg: ChipConfig, events: InputEvents, n_live: int, *,
                      by: str = "cycle"):
    """Release cycles of the playback: entry ``j`` of a sample (in release order)
    leaves in cycle ``max(time_j, release_{j-1} + 1)`` (one entry per cycle, never
    before its time), if that is a running cycle (``< n_live``).

    Returns ``(rows, late)``: ``rows`` [K, 4] int64 (cycle, sample, link, label)
    of the released entries, sorted by cycle (``by="sample"``: by sample, then
    cycle); ``late`` [batch] int64 (unsaturated): entries released after their
    time."""
    if by not in ("cycle", "sample"):
        raise ValueError(f"by = {by!r}; allowed: 'cycle', 'sample'")
    t = events.table
    if not len(t):
        return np.zeros((0, 4), dtype=np.int64), np.zeros(events.batch, dtype=np.int64)
    # all samples at once: the entries grouped by sample (table order within one:
    # InputEvents keeps its rows sorted), j = index within its sample; the running
    # maximum of time_j - j restarts at each sample because every sample's values
    # are lifted above all earlier ones
    s = t[:, 0]
    ev = t if (s[1:] >= s[:-1]).all() else t[np.argsort(s, kind="stable")]
    s = ev[:, 0]
    first = np.ones(len(ev), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    at = np.arange(len(ev), dtype=np.int64)
    j = at - np.maximum.accumulate(np.where(first, at, 0))
    v = ev[:, 1] - j
    lift = (np.cumsum(first) - 1) * (int(v.max()) - int(v.min()) + 1)
    release = j + np.maximum.accumulate(v + lift) - lift
    go = release < n_live
    late = np.bincount(s[go & (release > ev[:, 1])], minlength=events.batch).astype(np.int64)
    rows = np.stack([release[go], s[go], ev[go, 2], ev[go, 3]], axis=1)
    if by == "sample":      # (a sample's releases rise strictly: already in order)
        return rows, late
    return rows[np.argsort(rows[:, 0], kind="stable")], late


def playback_rows(cfg: ChipConfig, events: InputEvents, n_live: int):
    """The playback as the digital side's loops take it (:func:`playback_schedule`
    by sample): ``(ptr, end, rows, late)`` with ``rows`` [K, 3] int64 (cycle,
    crossbar input ``n_blocks + link``, label) and sample ``b``'s rows
    ``rows[ptr[b]:end[b]]`` in cycle order."""
    rel, late = playback_schedule(cfg, events, n_live, by="sample")
    samples = np.arange(events.batch)
    ptr = np.searchsorted(rel[:, 1], samples).astype(np.int64)
    end = np.searchsorted(rel[:, 1], samples, side="right").astype(np.int64)
    rows = np.ascontiguousarray(np.stack([rel[:, 0], cfg.n_blocks + rel[:, 2], rel[:, 3]], 1))
    return ptr, end, rows, late


def adc_sample_steps(cfg: ChipConfig, period: int, n_live: int, n_steps: int) -> np.ndarray:
    """Every ADC sample a run takes, in order: the phase counter samples in
    running cycles ``r = period-1, 2*period-1, ...``; the codes it sees in cycle
    ``r`` are those after analog step ``min(r // S, n_steps)`` (0: the initial
    membranes).  Returns each sample's step, int64."""
    if period == 0:
        return np.zeros(0, dtype=np.int64)
    cycles = np.arange(period - 1, n_live, period, dtype=np.int64)
    return np.minimum(cycles // cfg.analog_step_cycles, n_steps)


def adc_rows(cfg: ChipConfig, n_taken: int) -> np.ndarray:
    """The samples that the rows of ``Observables.adc`` hold after a run that
    took ``n_taken`` samples.  Without the ring: the first ``adc_buffer_depth``
    (the others overflowed).  With it (``cfg.adc_ring``): the buffer entries
    ``j = 0 .. m-1`` in entry order, ``m = min(n_samples, depth)`` with
    ``n_samples`` the saturated count; entry ``j`` holds the latest sample
    ``i < n_taken`` with ``i % depth == j``."""
    S = cfg.adc_buffer_depth
    if not cfg.adc_ring:
        return np.arange(min(n_taken, S), dtype=np.int64)
    j = np.arange(min(n_taken, (1 << cfg.counter_bits) - 1, S), dtype=np.int64)
    return j + (n_taken - 1 - j) // S * S


def adc_schedule(cfg: ChipConfig, period: int, n_live: int, n_steps: int):
    """ADC samples of one run (:func:`adc_sample_steps`, :func:`adc_rows`).

    Returns ``(steps, n_taken)``: for each row of ``Observables.adc`` the analog
    step whose codes it holds, and the number of samples taken (without the
    ring: stored + overflowed; with it: every sample, unsaturated)."""
    steps = adc_sample_steps(cfg, period, n_live, n_steps)
    return steps[adc_rows(cfg, len(steps))], len(steps)


class FastChip:
    """One ConfigImage loaded into tensors on ``device``; :meth:`run` runs batches."""

    def __init__(self, chip: Chip, image: ConfigImage, *, device="cpu",
                 threads: int | None = None, whole_run: bool = True):
        cfg = chip.cfg
        if image.cfg != cfg:
            raise ValueError(f"image is for preset {image.cfg.name!r}, not {cfg.name!r}")
        self.chip, self.image, self.cfg = chip, image, cfg
        self.device = dev = check_device(device)
        if threads is not None and threads < 1:
            raise ValueError(f"threads = {threads}; allowed: an integer >= 1 (or None)")
        #: CPU threads sharing the samples of a run (None: :func:`usable_cpus`; not
        #: torch's thread count, which training keeps at 1 for its own reasons)
        self.threads = threads
        #: on the CPU: each sample's whole run, its PPU included, in one compiled
        #: call (:func:`~spikeloop.backends.digital_core.run_samples`); False: step
        #: by step from Python (the path CUDA takes; the same bits)
        self.whole_run = dev.type == "cpu" and whole_run
        n = cfg.n_neurons
        D, Bh = cfg.drivers_per_half, cfg.buses_per_half
        P, K = cfg.neurons_per_block, cfg.n_blocks

        def t(x, dtype=torch.int64):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=dev)

        # neuron back end
        self.enable = t(image.neuron_enable, torch.bool)
        self.enable_np = np.asarray(image.neuron_enable) != 0
        self.refractory = t(image.refractory & ((1 << cfg.refractory_bits) - 1))
        #: no refractory period anywhere: the counters stay 0, nobody is held
        self.no_refractory = not bool(self.refractory.any())
        self.prescale = int(image.refractory_prescale)
        # the digital side's tables (spikeloop/backends/digital_core.py): the arbiters'
        # labels [K, P]; crossbar node routes [I, O]: input i takes label x at output
        # o when (x & mask) == target (a disabled node gets target -1, which no masked
        # label equals); per global bus and row select, the matching drivers in
        # priority order (lowest index first), padded, and how many there are
        self.tables = dict(
            block_labels=np.asarray(image.neuron_label & ((1 << cfg.event_label_bits) - 1),
                                    dtype=np.int64).reshape(K, P),
            xb_mask=np.asarray(image.xbar_mask, dtype=np.int64),
            xb_target=np.where(np.asarray(image.xbar_enable) != 0,
                               np.asarray(image.xbar_target, dtype=np.int64), -1))
        rs_n = 1 << cfg.row_select_bits
        per_bus = len(range(0, D, Bh))
        # bus b of half h carries the drivers b, b + Bh, ...: [Bh, per_bus] (k past the
        # last driver: none); a driver matches row select r when (r ^ select) & mask == 0
        drv = np.arange(Bh)[:, None] + Bh * np.arange(per_bus)[None, :]
        real = drv < D
        drv = np.minimum(drv, D - 1)
        sel = np.asarray(image.driver_select, dtype=np.int64)[:, drv][:, :, None, :]
        msk = np.asarray(image.driver_mask, dtype=np.int64)[:, drv][:, :, None, :]
        rs = np.arange(rs_n)[None, None, :, None]
        hit = (((rs ^ sel) & msk) == 0) & real[None, :, None, :]     # [H, Bh, rs, per_bus]
        n_match = hit.sum(axis=-1)
        # the matching drivers first, in priority order (a stable sort), the rest 0
        first = np.argsort(~hit, axis=-1, kind="stable")
        match = np.take_along_axis(np.broadcast_to(drv[None, :, None, :], hit.shape), first, -1)
        match = np.where(np.arange(per_bus) < n_match[..., None], match, 0)
        self.tables.update(match=match.reshape(cfg.n_buses * rs_n, per_bus),
                           n_match=n_match.reshape(-1))
        # synapse memory + row signs, per (half, driver) and row (two per driver):
        # what a matched synapse adds (its weight, times its gain with synapse
        # mismatch), labels [H*D, 2, C] and the sums the row feeds (0 exc, 1 inh,
        # -1 off): model/synapses.py
        self.row_weight, self.row_label, self.row_sign = row_tables(cfg, image,
                                                                    chip.synapse_gains)
        #: where the window's activations are summed into the step's sums: on the host
        #: (CPU: ``model.synapses.accumulate``) or on the device (torch, _device_tables)
        self.sum_on_host = dev.type == "cpu"
        self.row_w_addr = None
        if not self.sum_on_host:
            self._device_tables()
        self.n = n

    def _device_tables(self) -> None:
        """The synapse weights on the device, for summing there: per row
        ``row_w`` [H*D, 2, exc/inh, C] and ``row_label_t`` [H*D, 2, C]; and per
        (half*driver, address) the two rows' weights whose label is the address,
        exc/inh split, ``row_w_addr`` [H*D*2**label_bits, 2, C] (None when larger
        than 64 MiB: then per activation)."""
        cfg, dev = self.cfg, self.device
        H, D, C = cfg.n_halves, cfg.drivers_per_half, cfg.columns_per_half
        w = self.row_weight[:, :, None, :] * (self.row_sign[:, :, None, None]
                                               == np.arange(2)[None, None, :, None])
        self.row_w = torch.as_tensor(w, dtype=torch.int32, device=dev)
        self.row_label_t = torch.as_tensor(self.row_label, device=dev)
        A = 1 << cfg.label_bits
        self.row_w_addr = None
        if H * D * A * 2 * C * 4 <= (64 << 20):
            tab = torch.zeros((H * D, A, 2, C), dtype=torch.int32, device=dev)
            for a in range(A):
                hit = self.row_label_t == a                                  # [HD, 2, C]
                tab[:, a] = (self.row_w * hit[:, :, None, :]).sum(1, dtype=torch.int32)
            self.row_w_addr = tab.view(H * D * A, 2, C)

    # ------------------------------------------------------------------ run
    def run(self, events: InputEvents, n_steps: int, *, run_seed: int = 0,
            sample_offset: int = 0, ppus: list[FastPpu] | None = None,
            row_events: bool = False) -> Observables:
        """``ppus``: one PPU per sample, run beside the windows (spikeloop/base/ppu_job.py);
        ``row_events``: keep every driver activation (``Observables.row_events``)."""
        cfg, dev = self.cfg, self.device
        if n_steps < 1:
            raise ValueError(f"n_steps = {n_steps}; allowed: >= 1")
        if events.cfg != cfg:
            raise ValueError(f"events are for preset {events.cfg.name!r}, not {cfg.name!r}")
        if self.whole_run:
            return self._run_whole(events, n_steps, run_seed, sample_offset, row_events,
                                   ppus=ppus)
        B, n, S = events.batch, self.n, cfg.analog_step_cycles
        L = live_cycles(cfg, n_steps)
        end = L + DRAIN_CYCLES
        cmax = (1 << cfg.counter_bits) - 1
        self._init_state(B, end if row_events else 0)
        digital = self.digital

        # playback: release cycles in closed form, as crossbar inputs n_blocks + link,
        # grouped by sample in cycle order
        rel_ptr, rel_end, rel, late = playback_rows(cfg, events, L)
        no_spikes = np.zeros(0, dtype=np.int64)
        # ADC: which analog step each row of the Observables shows (the samples left
        # in the buffer)
        period = int(self.image.adc_period)
        adc_steps, adc_taken = adc_schedule(cfg, period, L, n_steps)
        adc = torch.zeros((len(adc_steps), B, n), dtype=torch.int64, device=dev)
        code_mask = (1 << cfg.adc_bits) - 1

        analog = AnalogLoop(self.chip, self.image, list(range(sample_offset, sample_offset + B)),
                            run_seed, device=dev)
        # the noise of many steps per call (model/noise.py's float32 path; one exact
        # pass for the few numbers near a rounding boundary per call)
        analog.plan_steps(n_steps, elements=1 << 21)

        adc_at = {int(k): torch.as_tensor(np.flatnonzero(adc_steps == k), device=dev)
                  for k in np.unique(adc_steps)}
        # the PPUs read every sample the buffer stores (with the ring: every sample
        # taken), each given its codes before the cycle that takes it
        ppu_at = {}
        # the samples whose codes the PPUs have been given (in sample order), and
        # the cycle every PPU has run to
        n_fed = n_feed = ppu_cycle = 0
        if ppus:
            fed = adc_sample_steps(cfg, period, L, n_steps)
            if not cfg.adc_ring:
                fed = fed[:cfg.adc_buffer_depth]
            ppu_at = {int(k): np.flatnonzero(fed == k).tolist() for k in np.unique(fed)}
            n_feed, ppu_cycles = len(fed), ppus[0].adc_cycles

        def take_codes(step: int) -> None:
            nonlocal n_fed
            hit, fed = adc_at.get(step), ppu_at.get(step)
            if hit is None and fed is None:
                return
            codes = analog.codes() & code_mask
            if hit is not None:
                adc[hit] = codes
            if fed is not None:
                for b, row in enumerate(codes.cpu().numpy()):
                    for i in fed:
                        ppus[b].set_codes(i, row)
                n_fed = fed[-1] + 1

        take_codes(0)
        spikes = []
        # one window per analog step: cycles [g0, g1) integrate into step w (the last
        # window, after the last step, runs to the end of the drain)
        for w in range(n_steps + 1):
            g0, g1 = w * S, ((w + 1) * S if w < n_steps else end)
            sb = sn = no_spikes
            if w:
                # cycle g0 = (k+1) S: the analog step k = w - 1, its spikes, the arbiters
                extra = None
                if ppus:        # every cycle of step w - 1, and its reset holds
                    if ppu_cycle < g0:
                        # and on, to the cycle that takes the first sample whose codes
                        # are not computed yet (the PPU depends on the chip only
                        # through them; its resets of later steps wait in its holds)
                        ppu_cycle = max(g0, min(L, int(ppu_cycles[n_fed])) if n_fed < n_feed
                                        else L)
                        for p in ppus:
                            p.advance(ppu_cycle)
                    held = [p.hold_of_step(w - 1, self.n, dev) for p in ppus]
                    if any(h is not None for h in held):
                        extra = torch.stack([self.no_hold[0] if h is None else h
                                             for h in held])
                fired = self._analog_step(analog, g0, extra)
                sp = (nonzero2(fired.numpy()) if dev.type == "cpu"
                      else fired.nonzero().cpu().numpy())
                spikes.append(sp)
                take_codes(w)
                if not self.no_refractory:
                    self._refractory_load(fired & self.enable, g0)
                en = self.enable_np[sp[:, 1]]
                sb, sn = sp[en, 0], sp[en, 1]
            self.n_acts = digital.window(g0, g1, L, sb, sn, rel_ptr, rel_end, rel, self.acts)

        steps = np.repeat(np.arange(len(spikes)), [len(x) for x in spikes])
        sp = (np.concatenate([np.concatenate(spikes), steps[:, None]], 1) if spikes
              else np.zeros((0, 3), np.int64))
        # (sample, neuron, step) -> (sample, step, neuron), sorted as the reference
        sp = sp[np.lexsort((sp[:, 1], sp[:, 2], sp[:, 0]))][:, [0, 2, 1]]
        obs = self._observables(events, n_steps, run_seed, L, sp, late, adc,
                                adc_taken, cmax)
        if ppus is not None:
            obs.ppu = [p.finish() for p in ppus]
        return obs

    def _run_whole(self, events: InputEvents, n_steps: int, run_seed: int,
                   sample_offset: int, row_events: bool = False,
                   ppus: list[FastPpu] | None = None) -> Observables:
        """:meth:`run` on the CPU: every sample's whole run in one compiled call
        (:func:`~spikeloop.backends.digital_core.run_samples`: no Python per analog
        step), the samples split over ``threads`` threads (each sample's numbers
        never depend on another's, so neither do the results on the split).
        ``ppus``: each sample's PPU, run inside the kernel through the cycles
        before each analog step (its resets hold that step's neurons), then to
        its halt after the run (:meth:`FastPpu.finish`)."""
        cfg = self.cfg
        B, n = events.batch, self.n
        L = live_cycles(cfg, n_steps)
        cmax = (1 << cfg.counter_bits) - 1
        digital = self.digital = DigitalState(
            cfg, B, **self.tables, event_cycles=L + DRAIN_CYCLES if row_events else 0)
        self.B = B
        rel_ptr, rel_end, rel, late = playback_rows(cfg, events, L)
        adc_steps, adc_taken = adc_schedule(cfg, int(self.image.adc_period), L, n_steps)
        if ppus is not None:
            # every sample a PPU may read (with the ring: every one taken), in
            # time order; the Observables' rows are among them
            period = int(self.image.adc_period)
            adc_steps = adc_sample_steps(cfg, period, L, n_steps)
            if not cfg.adc_ring:
                adc_steps = adc_steps[:cfg.adc_buffer_depth]
        # the kernel fills the rows in step order (the ring's entry order is a
        # rotation of it: put back after the run)
        adc_order = np.argsort(adc_steps, kind="stable")
        in_order = bool((adc_order == np.arange(len(adc_order))).all())
        adc = np.zeros((len(adc_steps), B, n), dtype=np.int64)
        params = self.chip.lif_params(self.image, dtype=torch.float32, device="cpu")
        adcp = self.chip.analog.adc_params(dtype=torch.float32, device="cpu")
        has_noise = params.noise_step_v is not None
        bottom = params.merge_bottom
        cols = (np.arange(n, dtype=np.int64) if bottom is None
                else np.flatnonzero(~bottom.numpy()).astype(np.int64))
        if has_noise:
            sigma = np.ascontiguousarray(params.noise_step_v.numpy().reshape(n),
                                         dtype=np.float32)
            samples = np.arange(sample_offset, sample_offset + B, dtype=np.int64)
            keys = sample_keys(np.uint64(int(run_seed) & ((1 << 64) - 1)),
                               samples.view(np.uint64))
        else:
            sigma, keys, cols = np.zeros(n, np.float32), np.zeros(B, np.uint64), cols[:0]
        words = -(-n // 64)
        bits = np.zeros((B, n_steps, words), dtype=np.uint64)
        run = Run(
            S=cfg.analog_step_cycles, n_steps=n_steps, n_live=L, end=L + DRAIN_CYCLES,
            rel_ptr=rel_ptr, rel_end=rel_end, rel=rel,
            adc_steps=adc_steps[adc_order].astype(np.int64),
            adc=adc, adc_scale=adcp.scale_per_v.numpy(), adc_offset=adcp.offset_half_lsb.numpy(),
            code_max=float(adcp.code_max), code_mask=(1 << cfg.adc_bits) - 1,
            has_refr=not self.no_refractory, q=1 << self.prescale,
            refractory=np.ascontiguousarray(self.refractory.numpy(), dtype=np.int64),
            enable=self.enable_np, D=cfg.drivers_per_half, row_weight=self.row_weight,
            row_label=self.row_label, row_sign=self.row_sign, has_noise=has_noise,
            noise_kind=noise_kind(params.noise_model), keys=keys,
            neurons=cols.astype(np.uint64), cols=cols, sigma=sigma, bits=bits)
        H, C = cfg.n_halves, cfg.columns_per_half
        v = np.broadcast_to(params.v_leak_v.numpy(), (B, n)).copy()
        acc = np.zeros((2, B, H, C), dtype=np.int32)
        analog = Analog(v=v, ie=np.zeros((B, n), np.float32), ii=np.zeros((B, n), np.float32),
                        acc=acc, acc_n=acc.reshape(2, B, n),
                        cnt=np.zeros((B, n), dtype=np.int64))
        lif = _kernel_params(params)
        longest = max(cfg.analog_step_cycles, live_cycles(cfg, 0) + DRAIN_CYCLES)
        m = len(cols)
        config, state, counters, _ = digital._bundles

        def scratch():
            return tuple(Scratch(
                acts=np.zeros((cfg.n_buses * longest, 4), dtype=np.int64),
                dv=np.zeros(n, np.float32), noise=np.zeros(n, np.float32),
                h=np.zeros(m, np.uint64), z=np.zeros(m, np.float32), flag=np.zeros(m, np.bool_),
                fa=np.zeros(m), fb=np.zeros(m), ea=np.zeros(m), no_r=np.zeros(0),
                fired=np.zeros(n, np.bool_), hold=np.zeros(n, np.bool_),
                spike_n=np.zeros(n, np.int64)))

        batch = PpuBatch(ppus, len(adc_steps))

        def part(b0: int, b1: int, busy: np.ndarray) -> None:
            cycle = digital.new_cycle()
            run_samples(b0, b1, tuple(run), lif, tuple(analog), config, state,
                        counters[:-1] + (busy,), cycle, scratch(), batch.bundle)

        workers = min(B, self.threads or usable_cpus())
        edges = np.linspace(0, B, workers + 1).round().astype(np.int64)
        busy = np.zeros((workers, 1), dtype=np.int64)
        if workers <= 1:
            part(0, B, busy[0])
        else:
            pool = sample_pool(workers)
            done = [pool.submit(part, int(edges[i]), int(edges[i + 1]), busy[i])
                    for i in range(workers)]
            for f in done:
                f.result()
        digital.busy[0] = int(busy.sum())
        sp = spikes_from_bits(bits)
        if ppus is not None:
            batch.put_back(adc)
            results = [p.finish() for p in ppus]    # (the cycles after the last step)
            rows = adc_rows(cfg, adc_taken)
            if len(rows) != len(adc) or (rows != np.arange(len(rows))).any():
                adc = adc[rows]
            obs = self._observables(events, n_steps, run_seed, L, sp, late,
                                    torch.from_numpy(adc), adc_taken, cmax)
            obs.ppu = results
            return obs
        if not in_order:
            rows = np.empty_like(adc)
            rows[adc_order] = adc
            adc = rows
        return self._observables(events, n_steps, run_seed, L, sp, late, torch.from_numpy(adc),
                                 adc_taken, cmax)

    # ------------------------------------------------------------ state
    def _init_state(self, B: int, event_cycles: int = 0) -> None:
        """The state after the clear cycle, for ``B`` samples (``event_cycles``:
        :class:`~spikeloop.backends.digital_core.DigitalState`'s)."""
        cfg, dev = self.cfg, self.device
        H, C = cfg.n_halves, cfg.columns_per_half
        self.B = B
        # neuron back end: counters as of the start of cycle ``cnt_cycle``
        self.cnt = torch.zeros((B, self.n), dtype=torch.int64, device=dev)
        self.cnt_cycle = 0
        self.no_hold = torch.zeros((B, self.n), dtype=torch.bool, device=dev)
        # arbiters, playback, crossbar, drivers, recorder: on the host
        self.digital = DigitalState(cfg, B, **self.tables, event_cycles=event_cycles)
        # analog boundaries: the accumulators of the present step [exc/inh, B, H, C];
        # the window's driver activations (``acts[:n_acts]``: sample, half, driver,
        # address) are added to them before the step (_flush_activations)
        self.acc = torch.zeros((2, B, H, C), dtype=torch.int32, device=dev)
        # at most one activation per bus, sample and cycle; the longest window is
        # the last (the stop cycles and the drain)
        longest = max(cfg.analog_step_cycles, live_cycles(cfg, 0) + DRAIN_CYCLES)
        self.acts = np.zeros((B * cfg.n_buses * longest, 4), dtype=np.int64)
        self.n_acts = 0

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
            hold = None
        else:
            dt = self._ticks(self.cnt_cycle, g)
            if dt:
                self.cnt = (self.cnt - dt).clamp_(min=0)
            self.cnt_cycle = g
            hold = self.cnt != 0
        if extra_hold is not None:
            hold = extra_hold if hold is None else hold | extra_hold
        self._flush_activations()
        acc = self.acc
        fired = analog.step(acc[0].view(self.B, self.n), acc[1].view(self.B, self.n), hold)
        acc.zero_()                     # (the step has read exc and inh)
        return fired

    def _refractory_load(self, spike_out: torch.Tensor, g: int) -> None:
        """Cycle ``g``'s counter update: accepted spikes load their refractory
        period, other nonzero counters count down on a prescaler tick."""
        dt = self._ticks(g, g + 1)
        cnt = (self.cnt - dt).clamp_(min=0) if dt else self.cnt
        self.cnt = torch.where(spike_out, self.refractory, cnt)
        self.cnt_cycle = g + 1

    def _flush_activations(self) -> None:
        """Add the weights of the last window's driver activations to ``acc``."""
        k = self.n_acts
        if not k:
            return
        cfg, acts = self.cfg, self.acts[:k]
        self.n_acts = 0
        if self.sum_on_host:
            accumulate(acts, cfg.drivers_per_half, self.row_weight, self.row_label,
                       self.row_sign, self.acc.numpy())
            return
        b, h, d, address = (np.ascontiguousarray(x) for x in acts.T)
        hd = h * cfg.drivers_per_half + d
        row = torch.from_numpy(b * cfg.n_halves + h).to(self.device)
        if self.row_w_addr is not None:
            w = self.row_w_addr.index_select(0, torch.from_numpy(
                (hd << cfg.label_bits) + address).to(self.device))             # [k, 2, C]
        else:
            hd, address = (torch.from_numpy(x).to(self.device) for x in (hd, address))
            hit = self.row_label_t[hd] == address[:, None, None]                # [k, 2, C]
            w = (self.row_w[hd] * hit[:, :, None, :]).sum(1, dtype=torch.int32)
        for s in range(2):
            self.acc[s].view(-1, cfg.columns_per_half).index_add_(0, row, w[:, s])

    # ------------------------------------------------------------ results
    def _observables(self, events, n_steps, run_seed, L, sp, late, adc, adc_taken,
                     cmax) -> Observables:
        """``sp``: the spikes (sample, step, neuron), sorted in that order; ``adc``
        the rows of :func:`adc_schedule`, ``adc_taken`` the samples taken."""
        cfg, B, dg = self.cfg, self.B, self.digital

        def sat(x):
            return np.minimum(np.asarray(x.cpu() if torch.is_tensor(x) else x), cmax)

        # (sample, step, neuron) -> (sample, step, cycle, neuron)
        S = cfg.analog_step_cycles
        spikes_out = np.stack([sp[:, 0], sp[:, 1], (sp[:, 1] + 1) * S, sp[:, 2]], 1)
        # the records of each sample in cycle order: (sample, time, link, label)
        have = np.arange(cfg.record_depth)[None, :] < dg.rec_count[:, None]
        rb, rj = np.nonzero(have)
        rec = np.concatenate([rb[:, None], dg.rec_mem[rb, rj]], 1)
        # the kept driver activations of each sample in cycle order (bus by bus
        # within a cycle: the order of the stages' loop)
        kept = np.arange(dg.row_ev.shape[1])[None, :] < dg.row_n[:, None]
        eb, ej = np.nonzero(kept)
        rows = np.concatenate([eb[:, None], dg.row_ev[eb, ej]], 1)
        n_adc = len(adc)
        if cfg.adc_ring:        # n_samples counts every sample; nothing overflows
            adc_count, adc_overflow = min(adc_taken, cmax), 0
        else:
            adc_count, adc_overflow = n_adc, min(max(adc_taken - n_adc, 0), cmax)
        return Observables(
            spikes=spikes_out.astype(np.int64).reshape(-1, 4),
            records=rec.astype(np.int64).reshape(-1, 4),
            adc=adc.cpu().numpy(),
            adc_count=np.full(B, adc_count, dtype=np.int64),
            xbar_events=sat(dg.xb_events).astype(np.int64),
            xbar_drops=sat(dg.xb_drops).astype(np.int64),
            arbiter_drops=sat(dg.arb_drops).astype(np.int64),
            driver_unmatched=sat(dg.unmatched).astype(np.int64),
            playback_late=sat(late).astype(np.int64),
            record_drops=sat(dg.rec_drops).astype(np.int64),
            adc_overflow=np.full(B, adc_overflow, dtype=np.int64),
            cycles=np.full(B, L, dtype=np.int64),
            row_activations=dg.row_acts.copy(),
            row_events=rows.astype(np.int64).reshape(-1, 5),
            n_steps=n_steps, run_seed=run_seed, backend="fast")


_POOL: ThreadPoolExecutor | None = None


def sample_pool(workers: int) -> ThreadPoolExecutor:
    """The threads that share a run's samples (:meth:`FastChip._run_whole`; its
    compiled calls release the GIL), at least ``workers`` of them."""
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max(workers, os.cpu_count() or 1),
                                   thread_name_prefix="spikeloop-fast")
    return _POOL


#: environment variable: the threads a run's samples are split over when a
#: caller does not say (a positive integer; unset: every CPU the process may use).
#: ``spikeloop explore`` sets it to 1 for its points, which run side by side.
THREADS_ENV = "SPIKELOOP_THREADS"


def usable_cpus() -> int:
    """The threads a run's samples are split over by default: ``$SPIKELOOP_THREADS``
    when set, else the CPUs this process may run on (its affinity; else the
    machine's count).  ValueError for a value that is not a positive integer."""
    env = os.environ.get(THREADS_ENV)
    if env is not None:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"environment variable {THREADS_ENV} = {env!r}; allowed: a "
                             "positive integer (or unset: every CPU the process may use)")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
