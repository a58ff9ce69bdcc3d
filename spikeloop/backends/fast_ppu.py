"""The PPU beside the fast backend: every sample's PPU cycle by cycle.

The fast backend runs the PPU cycle by cycle beside its windows
(:class:`FastPpu`, the cycle-accurate :class:`~spikeloop.model.digital.ppu.PpuRef`):
before the analog step ``k`` it runs every sample's PPU through the last cycle
of that step, so the step sees the reset holds of its cycles (docs/ppu.md) and
the PPU sees exactly the ADC samples taken before each of its cycles.

On the chip a sample's PPU run starts from what the run before left: its
registers, vector registers and data memory (a start clears only ``pc``,
``cycles`` and ``halted``), the synapses it wrote and the ADC buffer's entries
that this run has not yet overwritten.  The fast backend keeps that exactly:
it runs the first sample alone, then the others as one batch *speculating*
that each starts from the state the first one left.  Every speculated run logs
which registers, vector registers and data words it read before writing them
(:class:`_Tracked`); sample ``j`` is kept when none of those differs between
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

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import CSRS, XMASK, decode, out_buffer_vectors
from spikeloop.base.ppu_job import PpuJob
from spikeloop.model.digital.ppu import PpuRef, ppu_result

_BRANCHES = frozenset(("beq", "bne", "blt", "bge", "bltu", "bgeu"))
_CSR_TIME = CSRS["time"]
#: the CSRs a poll loop may read: values known in advance as functions of the cycle
_POLLED = frozenset((CSRS["adc_count"], _CSR_TIME))
#: the most poll-loop iterations run at once
_POLL_CHUNK = 4096


class PpuEmulationError(ValueError):
    """A PPU program does something the fast backend does not emulate."""


# -- the PPU beside the fast backend ----------------------------------------------------
class _Tracked(list):
    """A register file or data memory that logs, per element, whether it was
    read before this run wrote it (``read_first``) and whether it was written
    (``written``).  Reads for the results (a job's ``read_dmem``) count as
    reads; copies of the whole list (``list(x)``, iteration) do not."""

    def __init__(self, items):
        super().__init__(items)
        self.read_first: set[int] = set()
        self.written: set[int] = set()

    def _indices(self, i):
        if isinstance(i, slice):
            return range(*i.indices(len(self)))
        return (i % len(self),)

    def __getitem__(self, i):
        if type(i) is int:          # (the common case, without building a range)
            k = i % len(self)
            if k not in self.written:
                self.read_first.add(k)
        else:
            self.read_first.update(k for k in self._indices(i) if k not in self.written)
        return super().__getitem__(i)

    def __setitem__(self, i, value):
        self.written.update(self._indices(i))
        super().__setitem__(i, value)


class _Rows(list):
    """One half's synapse rows as the PPU writes them: a write is checked (and
    refused during the run or its drain)."""

    def __init__(self, rows, owner: FastPpu, half: int):
        super().__init__(rows)
        self.owner, self.half = owner, half

    def __setitem__(self, row, value):
        self.owner._synapse_write(self.half, row)
        super().__setitem__(row, value)


class _AdcBuffer(list):
    """The ADC buffer as one sample's PPU reads it: entry ``j`` holds the latest
    of this run's first ``taken`` samples that went there (sample ``i`` goes to
    entry ``i``, and only while ``i < depth``; on a ring, ``cfg.adc_ring``, to
    entry ``i % depth``), else what the run before left (``stale[j]``; None
    where not known).  A sample's codes come (:meth:`FastPpu.set_codes`) before
    the cycle that takes it and wait in ``pending`` until then."""

    def __init__(self, stale, owner: FastPpu, ring: bool):
        super().__init__(stale)
        self.owner, self.ring, self.depth = owner, ring, len(stale)
        self.taken = 0
        self.pending: dict[int, list] = {}

    def take(self, n: int) -> None:
        """This run has taken ``n`` samples (unsaturated; never fewer than before)."""
        for i in range(self.taken, n):
            if self.ring or i < self.depth:
                codes = self.pending.pop(i, None)
                if codes is None:
                    raise RuntimeError(f"sample {self.owner.sample}: ADC sample {i} taken "
                                       "before its codes were known (a fast backend bug)")
                list.__setitem__(self, i % self.depth, codes)
        self.taken = max(self.taken, n)

    def __getitem__(self, j):
        row = super().__getitem__(j)
        if row is None:         # not known in a speculative batch: the run is not kept
            self.owner.stale_read = True
            return [0] * self.owner.cfg.n_neurons
        return row


class FastPpu:
    """One sample's PPU beside the fast backend, cycle by cycle (PpuRef)."""

    def __init__(self, cfg: ChipConfig, job: PpuJob, rows, *, sample: int = 0,
                 stale_adc=None, n_live: int = 0, adc_cycles=(), n_steps: int = 0,
                 drain: int = 0, state: tuple | None = None, track: bool = False):
        """``state``: the registers, vector registers and data memory the run
        starts from (None: the job's); ``track``: a speculated run, which logs
        what it reads (:meth:`depends_on`, :meth:`end_state`)."""
        self.cfg, self.job, self.sample = cfg, job, sample
        self.n_live, self.n_steps, self.drain = n_live, n_steps, drain
        self.adc_cycles = np.asarray(adc_cycles, dtype=np.int64)
        self._adc_cycles = self.adc_cycles.tolist()
        if stale_adc is None:       # the power-up zeros
            stale_adc = [[0] * cfg.n_neurons for _ in range(cfg.adc_buffer_depth)]
        self.adc = _AdcBuffer(stale_adc, self, cfg.adc_ring)
        self.ref = PpuRef(cfg, self.adc)
        self.ref.sim.syn.rows = [_Rows([list(r) for r in half], self, h)
                                 for h, half in enumerate(rows)]
        self.ref.load(job.words)
        if state is None:            # the job's: registers 0, the host's data words
            for i, w in job.dmem:
                self.ref.write_dmem(i, w)
        else:                        # what the PPU's run before left
            sim = self.ref.sim
            sim.regs, sim.vregs, sim.dmem = ((_Tracked if track else list)(x) for x in state)
        self.track = track
        #: a speculated run read an ADC entry whose contents were not known
        self.stale_read = False
        self._unfinished: Exception | None = None
        self.cycle = 0
        #: pc -> the poll loop there, or None (:meth:`_poll_loop`)
        self._polls: dict[int, tuple | None] = {}
        self.out: list[int] = []
        self.drops = 0
        self.depth = out_buffer_vectors(cfg)
        self.cmax = (1 << cfg.counter_bits) - 1
        #: step -> neurons held (a bit mask) by the resets in that step's cycles
        self.holds: dict[int, int] = {}
        self.wrote = False
        self._write_from = n_live + drain
        self.ref.tick(start=1)          # the start pulse, in cycle 0 of the run
        self.cycle = 1

    @property
    def rows(self):
        return self.ref.sim.syn.rows

    def _synapse_write(self, half: int, row: int) -> None:
        if self.cycle < self._write_from:
            raise PpuEmulationError(
                f"sample {self.sample}: the PPU writes synapse row {row} of half {half} in "
                f"cycle {self.cycle}, before the run's drain ends (cycle {self._write_from}); "
                "the fast backend keeps the weights fixed during a run: run it on backend "
                "'reference' or 'cosim', or write after the drain (time >= L, then "
                f"{self.drain} more cycles)")
        self.wrote = True

    def state(self) -> tuple:
        """The core's state that outlives a run: registers, vector registers and
        data memory (a start clears only ``pc``, ``cycles`` and ``halted``)."""
        sim = self.ref.sim
        return tuple(sim.regs), tuple(sim.vregs), tuple(sim.dmem)

    def depends_on(self, start: tuple, assumed: tuple) -> bool:
        """Whether this speculated run, started from ``assumed``, read something
        before writing it that differs in ``start`` (the state the run before
        really left), or an ADC entry not known in the batch."""
        if self.stale_read:
            return True
        sim = self.ref.sim
        for mem, a, b in zip((sim.regs, sim.vregs, sim.dmem), start, assumed, strict=True):
            if any(a[k] != b[k] for k in mem.read_first):
                return True
        return False

    def end_state(self, start: tuple) -> tuple:
        """The state this speculated run leaves when it starts from ``start``
        (and :meth:`depends_on` is False): what it wrote, else ``start``'s.
        Raises the error of a run that did not halt."""
        if self._unfinished is not None:
            raise self._unfinished
        sim = self.ref.sim
        return tuple(tuple(m[k] if k in mem.written else s0[k] for k in range(len(s0)))
                     for mem, s0, m in zip((sim.regs, sim.vregs, sim.dmem), start,
                                           self.state(), strict=True))

    def buffer_after(self) -> list:
        """What the ADC buffer holds after the run, entry by entry: the samples
        this run left there, and what the run before left in the others."""
        self.adc.take(len(self.adc_cycles))
        return list(list.__iter__(self.adc))

    def set_codes(self, i: int, codes: list) -> None:
        """The codes of ADC sample ``i`` of this run (a list of ints, kept as
        given), known before the cycle that takes it."""
        self.adc.pending[i] = codes

    def advance(self, until: int) -> None:
        """Run the cycles ``self.cycle .. until - 1``."""
        ref, sim, adc = self.ref, self.ref.sim, self.adc
        L, S = self.n_live, self.cfg.analog_step_cycles
        cap = self.cmax if self.cfg.adc_ring else self.cfg.adc_buffer_depth
        cycles, n_all = self._adc_cycles, len(self._adc_cycles)
        while self.cycle < until:
            if not sim.running:     # (the buffer still follows the run)
                adc.take(int(np.searchsorted(self.adc_cycles, min(until, L))))
                self.cycle = until
                return
            c = self.cycle
            if ref.phase == 0 and self._skip_polls(c, until, cap):
                continue
            t = min(c, L)
            taken = adc.taken       # the samples taken before cycle c (unsaturated)
            while taken < n_all and cycles[taken] < t:
                taken += 1
            if taken != adc.taken:
                adc.take(taken)
            po = ref.tick(adc_count=min(taken, cap), time=t)   # the ADC's n_samples
            if po["nreset"] and c < L and c // S < self.n_steps:
                self.holds[c // S] = self.holds.get(c // S, 0) | po["nreset"]
            if po["out"] is not None:
                if len(self.out) < self.depth:
                    self.out.append(po["out"])
                else:
                    self.drops = min(self.drops + 1, self.cmax)
            self.cycle += 1

    def _poll_loop(self, pc: int):
        """``(rd, csr, branch, rb, ra)`` where the instructions at ``pc`` are a
        poll loop ``L: csrr rd, adc_count|time; b<cc> .., .., L`` (two one-cycle
        instructions, ``rd`` not r0), else None (kept per ``pc``)."""
        try:
            return self._polls[pc]
        except KeyError:
            pass
        imem = self.ref.sim.imem
        n = len(imem)
        c, b = decode(imem[pc]), decode(imem[(pc + 1) % n])
        loop = None
        if (c.instr is not None and c.instr.mnemonic == "csrr" and c.imm in _POLLED and c.a
                and c.instr.cycles == 1 and b.instr is not None
                and b.instr.mnemonic in _BRANCHES and b.instr.cycles == 1
                and (pc + 1 + b.simm) % n == pc):
            loop = (c.a, c.imm, b.instr.mnemonic, b.b, b.a)
        self._polls[pc] = loop
        return loop

    def _skip_polls(self, c: int, until: int, cap: int) -> int:
        """At a poll loop (:meth:`_poll_loop`) in cycle ``c``: run at once the
        iterations (two cycles each, before ``until``) whose branch goes back,
        which change nothing but the polled register and the cycle count; the
        value each one reads is known in advance (the ADC's sample count, or the
        chip time).  Returns the cycles run (0: none, the core steps as usual)."""
        sim = self.ref.sim
        loop = self._poll_loop(sim.pc)
        if loop is None:
            return 0
        kmax = min((until - c) // 2, _POLL_CHUNK)
        if kmax < 2:
            return 0
        rd, csr, mn, rb, ra = loop
        t = np.minimum(c + 2 * np.arange(kmax, dtype=np.int64), self.n_live)
        if csr == _CSR_TIME:
            f = t & XMASK
        else:
            f = np.minimum(np.searchsorted(self.adc_cycles, t, side="left"), cap)
        regs = sim.regs
        x = f if rb == rd else np.full(kmax, list.__getitem__(regs, rb), dtype=np.int64)
        y = f if ra == rd else np.full(kmax, list.__getitem__(regs, ra), dtype=np.int64)
        if mn in ("blt", "bge"):
            x, y = x.astype(np.uint32).view(np.int32), y.astype(np.uint32).view(np.int32)
        back = {"beq": x == y, "bne": x != y, "blt": x < y, "bge": x >= y,
                "bltu": x < y, "bgeu": x >= y}[mn]
        stop = np.flatnonzero(~back)
        k = int(stop[0]) if len(stop) else kmax
        if k == 0:
            return 0
        regs[rd] = int(f[k - 1])            # (through the register file: logged as written,
        for r in {rb, ra} - {rd}:           # the other operand as read, as the steps would)
            regs[r]
        sim.cycle += 2 * k
        self.cycle += 2 * k
        return 2 * k

    def finish(self) -> dict:
        """Run to the halt (at most ``max_cycles`` after the drain); the result."""
        end = self.n_live + self.drain
        self.advance(end)
        self.advance(end + self.job.max_cycles)
        try:
            return ppu_result(self.cfg, self.ref, self.out, self.drops, self.job, self.rows,
                              f"sample {self.sample}'s drain")
        except RuntimeError as e:     # (a speculated run: raised if it is kept)
            if not self.track:
                raise
            self._unfinished = e
            return {}

    def hold_of_step(self, k: int, n: int, device) -> torch.Tensor | None:
        mask = self.holds.pop(k, 0)
        if not mask:
            return None
        return torch.tensor([(mask >> i) & 1 for i in range(n)], dtype=torch.bool, device=device)


def run_before(cfg: ChipConfig, job: PpuJob, rows) -> tuple[dict, list]:
    """The ``before`` PPU run with the chip idle (time 0, no ADC sample, the
    buffer at its power-up zeros): its result and the synapse rows it left."""
    p = FastPpu(cfg, job, rows, stale_adc=[[0] * cfg.n_neurons] * cfg.adc_buffer_depth)
    p._write_from = 0
    p.advance(1 + job.max_cycles)
    return ppu_result(cfg, p.ref, p.out, p.drops, job, p.rows, "its start"), p.rows
