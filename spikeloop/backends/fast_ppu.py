"""The PPU beside the fast backend: every sample's PPU cycle by cycle.

The fast backend runs the PPU cycle by cycle beside its windows
(:class:`FastPpu`, the cycle-accurate :class:`~spikeloop.model.digital.ppu.PpuRef`):
before the analog step ``k`` it runs every sample's PPU through the last cycle
of that step, so the step sees the reset holds of its cycles (docs/ppu.md) and
the PPU sees exactly the ADC samples taken before each of its cycles.

On the chip a sample's PPU run starts from what the run before left: its
registers, vector registers and data memory (a start clears only ``pc``,
``cycles`` and ``halted``), the synapses it wrote and the ADC buffer's samples
that this run has not yet overwritten.  The fast backend keeps that exactly:
it runs the first sample alone, then the others as one batch *speculating*
that each of them leaves the state it started from (true of programs whose
registers and data at their halt do not depend on the data, like the trace and
inference programs); it keeps the samples up to the first one that did not and runs the
rest one by one (so a program whose state changes every sample costs one
wasted batch, not one per sample).  A read of an ADC sample that the run has
not yet taken, whose stale contents are not known in a batch, also ends the
speculation.  A program that writes synapses runs sample by sample.  One thing it does not
emulate and refuses with :class:`PpuEmulationError` (naming the sample, the
cycle and what to do instead): a synapse write before the sample's drain has
ended (the fast backend's weights are fixed during a run).
"""
from __future__ import annotations

import numpy as np
import torch

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import out_buffer_vectors
from spikeloop.base.ppu_job import PpuJob
from spikeloop.model.digital.ppu import PpuRef, ppu_result


class PpuEmulationError(ValueError):
    """A PPU program does something the fast backend does not emulate."""


class StaleAdcRead(Exception):
    """A batched sample's PPU read an ADC sample whose stale contents (the
    sample before's) are not known yet: the fast backend runs it alone."""



# -- the PPU beside the fast backend ----------------------------------------------------
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
    """The ADC buffer as one sample's PPU reads it in cycle ``cycle``: sample
    ``j`` holds this run's codes once taken (``taken`` samples), before that
    what the run before left (``stale[j]``; None where not known)."""

    def __init__(self, rows, stale, owner: FastPpu):
        super().__init__(rows)
        self.stale, self.owner = stale, owner
        self.taken = 0

    def __getitem__(self, j):
        if isinstance(j, int) and j >= self.taken:
            if self.stale[j] is None:
                o = self.owner
                raise StaleAdcRead(
                    f"sample {o.sample}: the PPU reads ADC sample {j} in cycle {o.cycle}, "
                    f"before the run took it (adc_count = {self.taken}), and what the "
                    "sample before left there is not known in a batch")
            return self.stale[j]
        return super().__getitem__(j)


class FastPpu:
    """One sample's PPU beside the fast backend, cycle by cycle (PpuRef)."""

    def __init__(self, cfg: ChipConfig, job: PpuJob, rows, *, sample: int = 0,
                 stale_adc=None, n_live: int = 0, adc_cycles=(), n_steps: int = 0,
                 drain: int = 0, state: tuple | None = None):
        self.cfg, self.job, self.sample = cfg, job, sample
        self.n_live, self.n_steps, self.drain = n_live, n_steps, drain
        self.adc_cycles = np.asarray(adc_cycles, dtype=np.int64)
        zeros = [[0] * cfg.n_neurons for _ in range(cfg.adc_buffer_depth)]
        self.adc = _AdcBuffer(zeros, stale_adc, self)
        self.ref = PpuRef(cfg, self.adc)
        self.ref.sim.syn.rows = [_Rows([list(r) for r in half], self, h)
                                 for h, half in enumerate(rows)]
        self.ref.load(job.words)
        if state is None:            # the job's: registers 0, the host's data words
            for i, w in job.dmem:
                self.ref.write_dmem(i, w)
        else:                        # what the PPU's run before left
            sim = self.ref.sim
            sim.regs, sim.vregs, sim.dmem = (list(x) for x in state)
        self.cycle = 0
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

    def buffer_after(self) -> list:
        """What the ADC buffer holds after the run: the samples taken, and what
        the run before left in the others."""
        taken = min(len(self.adc_cycles), self.cfg.adc_buffer_depth)
        return [list.__getitem__(self.adc, j) if j < taken else self.adc.stale[j]
                for j in range(len(self.adc))]

    def set_codes(self, j: int, codes) -> None:
        """ADC sample ``j`` of this run (its codes, known before it is taken)."""
        list.__setitem__(self.adc, j, [int(c) for c in codes])

    def advance(self, until: int) -> None:
        """Run the cycles ``self.cycle .. until - 1``."""
        ref, sim = self.ref, self.ref.sim
        L, S = self.n_live, self.cfg.analog_step_cycles
        while self.cycle < until:
            if not sim.running:
                self.cycle = until
                return
            c = self.cycle
            taken = min(int(np.searchsorted(self.adc_cycles, min(c, L), side="left")),
                        self.cfg.adc_buffer_depth)      # the ADC's n_samples
            self.adc.taken = taken
            po = ref.tick(adc_count=taken, time=min(c, L))
            if po["nreset"] and c < L and c // S < self.n_steps:
                self.holds[c // S] = self.holds.get(c // S, 0) | po["nreset"]
            if po["out"] is not None:
                if len(self.out) < self.depth:
                    self.out.append(po["out"])
                else:
                    self.drops = min(self.drops + 1, self.cmax)
            self.cycle += 1

    def finish(self) -> dict:
        """Run to the halt (at most ``max_cycles`` after the drain); the result."""
        end = self.n_live + self.drain
        self.advance(end)
        self.advance(end + self.job.max_cycles)
        return ppu_result(self.cfg, self.ref, self.out, self.drops, self.job, self.rows,
                          f"sample {self.sample}'s drain")

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
