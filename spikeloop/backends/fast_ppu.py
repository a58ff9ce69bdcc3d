"""The PPU beside the fast backend: every sample's PPU cycle by cycle.

The fast backend runs the PPU cycle by cycle beside its windows
(:class:`FastPpu`: the compiled core of :mod:`spikeloop.backends.ppu_core`, which
computes what the cycle-level reference
:class:`~spikeloop.model.digital.ppu.PpuRef` computes): before the analog step
``k`` it runs every sample's PPU through the last cycle of that step, so the
step sees the reset holds of its cycles (docs/ppu.md) and the PPU sees exactly
the ADC samples taken before each of its cycles.  On the CPU the same core
runs inside each sample's compiled run (spikeloop/backends/digital_core.py's
``run_samples``, through :class:`PpuBatch`), cycle for cycle as beside the
windows.

On the chip a sample's PPU run starts from what the run before left: its
registers, vector registers and data memory (a start clears only ``pc``,
``cycles`` and ``halted``), the synapses it wrote and the ADC buffer's entries
that this run has not yet overwritten.  The fast backend keeps that exactly:
it runs the samples of a batch as one batch *speculating* that each starts
from the state the first one starts from.  Every speculated run logs
which registers, vector registers and data words it read before writing them
(the core's ``trk_*`` flags); sample ``j`` is kept when none of those differs between
the state it assumed and the state sample ``j - 1`` really left (so programs
whose state at the halt depends on the data, like the stream and trace
programs' last vector read, still speculate), and when it read no ADC entry
that the sample before wrote in the batch (not known then).  The fast backend
keeps the samples up to the first that is not kept and runs the rest one by
one (so a program that carries data from sample to sample costs one wasted
batch, not one per sample).  A program that writes synapses runs sample by
sample.  One thing it does not emulate and refuses with
:class:`PpuEmulationError` (naming the sample, the cycle and what to do
instead): a synapse write before the sample's drain has ended (the fast
backend's weights are fixed during a run).
"""
from __future__ import annotations

import numpy as np
import torch

from spikeloop.backends import ppu_core as core
from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import N_REGS, N_VREGS, XMASK, chip_geometry, out_buffer_vectors
from spikeloop.base.ppu_job import PpuJob


class PpuEmulationError(ValueError):
    """A PPU program does something the fast backend does not emulate."""


class FastPpu:
    """One sample's PPU beside the fast backend, cycle by cycle (the compiled
    core, :mod:`spikeloop.backends.ppu_core`)."""

    def __init__(self, cfg: ChipConfig, job: PpuJob, synapses, *, sample: int = 0,
                 stale_adc=None, n_live: int = 0, adc_cycles=(), n_steps: int = 0,
                 drain: int = 0, state: tuple | None = None, track: bool = False,
                 write_from: int | None = None, core_state: core.CoreState | None = None,
                 decoded: tuple | None = None, state_rows: tuple | None = None,
                 stale_rows: tuple | None = None):
        """``synapses``: (weights, labels) [halves, rows, columns] before the run;
        ``stale_adc``: the ADC buffer's entries before the run (None: the
        power-up zeros; an entry None: not known, in a speculative batch);
        ``state``: the registers, vector registers and data memory the run
        starts from (None: the job's); ``track``: a speculated run, whose reads
        are checked (:meth:`depends_on`, :meth:`end_state`); ``write_from``: the
        first cycle a synapse write may come in (None: the end of the drain);
        ``core_state``: a zero state to run in (a row of :func:`fast_ppus`'
        arrays, ``synapses`` None: already there), else a new one; ``decoded``:
        (geometry, predecoded program) of these arguments, where the caller has
        them (:func:`fast_ppus`: once for all its PPUs); ``state_rows``: ``state``
        as the core's arrays (:func:`_state_rows`), likewise; ``stale_rows``:
        ``stale_adc`` as :func:`_stale_rows` gives it, likewise."""
        self.cfg, self.job, self.sample = cfg, job, sample
        self.n_live, self.n_steps, self.drain = n_live, n_steps, drain
        self.track = track
        self.adc_cycles = np.asarray(adc_cycles, dtype=np.int64)
        self.geo, self.prog = decoded or _decoded(cfg, job, n_live, n_steps, drain, write_from)
        s = self.core = core_state or core.CoreState.new(self.geo, self.adc_cycles,
                                                          core.resets(self.prog))
        if synapses is not None:
            s.syn_w[...], s.syn_l[...] = synapses
        if stale_adc is not None:
            unknown, given, rows = (stale_rows if stale_rows is not None
                                    else _stale_rows(stale_adc))
            s.known[unknown] = False
            if len(given):
                s.adcbuf[given] = rows
        # what the PPU's run before left, else the job's (:func:`initial_state`)
        if state_rows is None:
            state_rows = _state_rows(initial_state(cfg, job) if state is None else state,
                                     s.vregs.shape[1])
        s.regs[:], s.vregs[:], s.dmem[:] = state_rows
        # the start pulse in cycle 0 of the run: the first instruction in cycle 1
        s.ctl[core.C_RUN], s.ctl[core.C_CYCLE] = 1, 1
        self._unfinished: Exception | None = None

    @property
    def cycle(self) -> int:
        """The chip cycle the next tick of this PPU is in."""
        return int(self.core.ctl[core.C_CYCLE])

    @property
    def wrote(self) -> bool:
        """Whether the program wrote a synapse row."""
        return bool(self.core.ctl[core.C_WROTE])

    @property
    def synapses(self) -> tuple[np.ndarray, np.ndarray]:
        """The synapses now: (weights, labels) [halves, rows, columns] (copies)."""
        return self.core.syn_w.copy(), self.core.syn_l.copy()

    def state(self) -> tuple:
        """The core's state that outlives a run: registers, vector registers and
        data memory (a start clears only ``pc``, ``cycles`` and ``halted``)."""
        s = self.core
        return (tuple(s.regs.tolist()), tuple(core.bytes_to_vector(v) for v in s.vregs),
                tuple(s.dmem.tolist()))

    def _tracks(self):
        s = self.core
        return s.trk_r, s.trk_v, s.trk_d

    def depends_on(self, start: tuple, assumed: tuple) -> bool:
        """Whether this speculated run, started from ``assumed``, read something
        before writing it that differs in ``start`` (the state the run before
        really left), or an ADC entry not known in the batch."""
        if self.core.ctl[core.C_STALE]:
            return True
        for trk, a, b in zip(self._tracks(), start, assumed, strict=True):
            if any(a[k] != b[k] for k in np.flatnonzero(trk[0]).tolist()):
                return True
        return False

    def end_state(self, start: tuple) -> tuple:
        """The state this speculated run leaves when it starts from ``start``
        (and :meth:`depends_on` is False): what it wrote, else ``start``'s.
        Raises the error of a run that did not halt."""
        if self._unfinished is not None:
            raise self._unfinished
        s, out = self.core, []
        values = (lambda k: int(s.regs[k]), lambda k: core.bytes_to_vector(s.vregs[k]),
                  lambda k: int(s.dmem[k]))
        for trk, s0, value in zip(self._tracks(), start, values, strict=True):
            written = np.flatnonzero(trk[1]).tolist()
            if written:
                part = list(s0)
                for k in written:
                    part[k] = value(k)
                s0 = tuple(part)
            out.append(s0)
        return tuple(out)

    def buffer_after(self) -> list:
        """What the ADC buffer holds after the run, entry by entry: the samples
        this run left there, and what the run before left in the others (None:
        not known)."""
        s = self.core
        if not core.take(len(self.adc_cycles), self.geo, s.ctl, s.adcbuf, s.known, s.codes,
                          s.have):
            self._check(int(s.ctl[core.C_ERR]))
        return [row if ok else None for row, ok in zip(s.adcbuf.copy(), s.known.tolist(),
                                                          strict=True)]

    def set_codes(self, i: int, codes) -> None:
        """The codes of ADC sample ``i`` of this run, known before the cycle that
        takes it."""
        s = self.core
        if len(s.codes) < len(s.adc_cycles):
            s.codes = np.zeros((len(s.adc_cycles), self.cfg.n_neurons), np.int64)
        s.codes[i] = codes
        s.have[i] = True

    def set_all_codes(self, codes: np.ndarray) -> None:
        """The codes of this run's first ``len(codes)`` ADC samples (every one the
        PPU may read: [samples, neurons] int64, kept as given, not copied)."""
        self.core.codes = codes
        self.core.have[:len(codes)] = True

    def advance(self, until: int) -> None:
        """Run the cycles ``self.cycle .. until - 1``."""
        self._check(self.core.advance(until, self.prog, self.geo))

    def _check(self, err) -> None:
        if not err:
            return
        ctl = self.core.ctl
        a, b, cycle = int(ctl[core.C_ERR_A]), int(ctl[core.C_ERR_B]), int(ctl[core.C_ERR_CYCLE])
        if err == core.ERR_SYNAPSE_WRITE:
            raise PpuEmulationError(
                f"sample {self.sample}: the PPU writes synapse row {b} of half {a} in "
                f"cycle {cycle}, before the run's drain ends (cycle {self.geo[core.G_WFROM]}); "
                "the fast backend keeps the weights fixed during a run: run it on backend "
                "'reference' or 'cosim', or write after the drain (time >= L, then "
                f"{self.drain} more cycles)")
        raise RuntimeError(f"sample {self.sample}: ADC sample {a} taken before its codes "
                           "were known (a fast backend bug)")

    def result(self, since: str) -> dict:
        """The result dict of this PPU run (:func:`spikeloop.model.digital.ppu.ppu_result`'s),
        the host having waited ``job.max_cycles`` cycles from ``since``; a PPU
        still running is a RuntimeError."""
        s, job = self.core, self.job
        ctl = s.ctl
        if ctl[core.C_RUN]:
            raise RuntimeError(f"the PPU still runs {job.max_cycles} cycles after {since} "
                               f"(ppu.max_cycles); pc = {int(ctl[core.C_PC])}")
        for i in job.read_dmem:          # (the host's reads count as reads)
            if not s.trk_d[1, i]:
                s.trk_d[0, i] = True
        res = {"status": int(ctl[core.C_RUN]) | int(ctl[core.C_HALTED]) << 1,
               "pc": int(ctl[core.C_PC]),
               "cycles": min(int(ctl[core.C_SIMC] + ctl[core.C_PHASE]), XMASK),
               "out": core.rows_to_vectors(s.outbuf[:int(ctl[core.C_OUTN])]),
               "out_drops": int(ctl[core.C_DROPS]),
               "dmem": {i: int(s.dmem[i]) for i in job.read_dmem}}
        if job.read_synapses:
            res["weights"], res["labels"] = self.synapses
        return res

    def finish(self) -> dict:
        """Run to the halt (at most ``max_cycles`` after the drain); the result."""
        end = self.n_live + self.drain
        self.advance(end)
        self.advance(end + self.job.max_cycles)
        try:
            return self.result(f"sample {self.sample}'s drain")
        except RuntimeError as e:     # (a speculated run: raised if it is kept)
            if not self.track:
                raise
            self._unfinished = e
            return {}

    def hold_of_step(self, k: int, n: int, device) -> torch.Tensor | None:
        """The neurons the resets in step ``k``'s cycles hold (None: none)."""
        holds = self.core.holds
        if k >= len(holds) or not holds[k, -1]:
            return None
        return torch.from_numpy(core.held(holds, k, n)).to(device)


def _state_rows(state: tuple, vector_bytes: int) -> tuple:
    """A state in :meth:`FastPpu.state`'s form as the core's arrays: registers,
    vector registers (bytes, little-endian), data memory."""
    regs, vregs, dmem = state
    return (np.asarray(regs, dtype=np.int64),
            np.stack([core.vector_to_bytes(v, vector_bytes) for v in vregs]),
            np.asarray(dmem, dtype=np.int64))


def _stale_rows(stale_adc: list) -> tuple:
    """An ADC buffer in :class:`FastPpu`'s ``stale_adc`` form (one entry per
    buffer entry, None: not known) as arrays: the unknown entries, the known
    ones, and the known ones' codes stacked."""
    unknown = [j for j, entry in enumerate(stale_adc) if entry is None]
    given = [j for j, entry in enumerate(stale_adc) if entry is not None]
    rows = np.stack([stale_adc[j] for j in given]) if given else None
    return unknown, given, rows


def initial_state(cfg: ChipConfig, job: PpuJob) -> tuple:
    """The registers, vector registers and data memory of the first run of
    ``job`` (:meth:`FastPpu.state`'s form): zeros, and the host's data words."""
    dmem = [0] * chip_geometry(cfg).dmem_words
    for i, w in job.dmem:
        dmem[i] = int(w) & XMASK
    return (0,) * N_REGS, (0,) * N_VREGS, tuple(dmem)


def run_before(cfg: ChipConfig, job: PpuJob, synapses) -> tuple[dict, tuple]:
    """The ``before`` PPU run with the chip idle (time 0, no ADC sample, the
    buffer at its power-up zeros): its result and the synapses it left."""
    p = FastPpu(cfg, job, synapses, write_from=0)
    p.advance(1 + job.max_cycles)
    return p.result("its start"), p.synapses


#: the fields of a sample's state the whole-run kernel runs on
_KERNEL = ("ctl", "regs", "vregs", "dmem", "adcbuf", "known", "outbuf", "holds", "trk_r",
           "trk_v", "trk_d", "snap", "tmp")


def _decoded(cfg: ChipConfig, job: PpuJob, n_live: int, n_steps: int, drain: int,
             write_from: int | None) -> tuple:
    """(geometry, predecoded program) of a :class:`FastPpu`."""
    geo = core.geometry(cfg, n_live=n_live, n_steps=n_steps, drain=drain,
                        write_from=n_live + drain if write_from is None else write_from,
                        out_depth=out_buffer_vectors(cfg))
    return geo, core.predecode(job.words, chip_geometry(cfg).imem_words)


def fast_ppus(cfg: ChipConfig, job: PpuJob, synapses, samples: list[int], stale: list,
              track: list[bool], **kw) -> list[FastPpu]:
    """The PPUs of consecutive samples of one run (``samples``, each with its
    ``stale`` ADC buffer and ``track`` flag; ``kw`` as :class:`FastPpu`'s), their
    states rows of one set of arrays that the whole-run kernel takes without a
    copy (:class:`PpuBatch`), the synapses shared (a program that writes
    synapses runs one sample at a time)."""
    decoded = geo, prog = _decoded(cfg, job, kw.get("n_live", 0), kw.get("n_steps", 0),
                                   kw.get("drain", 0), kw.get("write_from"))
    states = core.CoreState.batch(geo, np.asarray(kw.get("adc_cycles", ()), np.int64),
                                  len(samples), core.resets(prog))
    states[0].syn_w[...], states[0].syn_l[...] = synapses
    rows = _state_rows(kw.pop("state", None) or initial_state(cfg, job),
                       states[0].vregs.shape[1])
    # the samples of a speculated batch share one stale buffer: made into arrays once
    forms: dict[int, tuple] = {}
    for st in stale:
        if st is not None and id(st) not in forms:
            forms[id(st)] = _stale_rows(st)
    return [FastPpu(cfg, job, None, sample=j, stale_adc=st, track=tr, core_state=cs,
                    decoded=decoded, state_rows=rows,
                    stale_rows=None if st is None else forms[id(st)], **kw)
            for j, st, tr, cs in zip(samples, stale, track, states, strict=True)]


class PpuBatch:
    """The PPUs of a batch's samples as one bundle for the whole-run kernel
    (:class:`~spikeloop.backends.digital_core.Ppus`): their states as rows of
    one set of arrays (:func:`fast_ppus`' as they are; other PPUs' stacked, and
    put back after the kernel).  ``ppus`` None or empty: no program (small
    arrays of the same types)."""

    def __init__(self, ppus: list[FastPpu] | None, n_codes: int):
        self.ppus = ppus or []
        have = np.zeros((max(len(self.ppus), 1), max(n_codes, 1)), np.bool_)
        if not self.ppus:
            st = {k: np.zeros((1,) * a.ndim, a.dtype)
                  for k, a in core.CoreState.batch(np.ones(core.G_SIZE, np.int64),
                                                   np.zeros(0, np.int64), 1)[0].rows.items()}
            syn, prog = np.zeros((1, 1, 1), np.int64), np.zeros((1, core.P_CYCLES + 1), np.int64)
            self.bundle = self._bundle(False, prog, np.zeros(1, np.int64), st, syn, syn, have,
                                       np.zeros(1, np.int64))
            self.copied = False
            return
        p0 = self.ppus[0]
        rows = p0.core.rows
        self.copied = not (rows is not None and len(self.ppus) == len(rows["ctl"])
                           and all(p.core.rows is rows and p.core.index == i
                                   for i, p in enumerate(self.ppus)))
        if self.copied:
            rows = {k: np.stack([getattr(p.core, k) for p in self.ppus]) for k in _KERNEL}
        self.rows = rows
        self.bundle = self._bundle(True, p0.prog, p0.geo, rows, p0.core.syn_w, p0.core.syn_l,
                                   have, p0.core.adc_cycles)

    @staticmethod
    def _bundle(on, prog, geo, st, syn_w, syn_l, have, adc_cycles) -> tuple:
        return (on, prog, geo, st["ctl"], st["regs"], st["vregs"], st["dmem"], syn_w, syn_l,
                st["adcbuf"], st["known"], have, adc_cycles, st["outbuf"], st["holds"],
                st["trk_r"], st["trk_v"], st["trk_d"], st["snap"], st["tmp"])

    def put_back(self, adc: np.ndarray) -> None:
        """Each PPU's state after the kernel, and the codes of every ADC sample of
        its run (``adc`` [J, B, n]); raises the error of a PPU that failed."""
        for b, p in enumerate(self.ppus):
            if self.copied:
                for k, a in self.rows.items():
                    getattr(p.core, k)[...] = a[b]
            p.set_all_codes(adc[:, b])
            p._check(int(p.core.ctl[core.C_ERR]))
