"""A PPU program run with a job, on every backend: the job description, what
the host reads back of each PPU run, and the PPU beside the fast backend.

The job (``ppu=`` of :meth:`spikeloop.chip.Chip.run`, a dict or
:class:`PpuJob`)::

    {"words": [...],              # the program (ppu_imem words 0..)
     "dmem": [(index, word), ...],# data words the host writes after the program
     "when": "before",            # or "each_sample"
     "read_dmem": [indices],      # dmem words read back after each PPU run
     "read_synapses": False,      # read every synapse back after each PPU run
     "max_cycles": 100000}        # the halt is awaited this many cycles at most

``before``: after the image, the host starts the PPU and waits for its halt;
then the samples run (with the synapses the program left).  ``each_sample``:
the host writes the PPU's start in the clear cycle of every sample: the start
pulse is high in running cycle 0 and the PPU executes its first instruction
in cycle 1 (``time = 1``, ``cycle = 0``); after the sample's read-back
the host waits for the halt.  A PPU that has not halted ``max_cycles`` cycles
after its start (``before``) or after the sample's drain (``each_sample``) is
an error naming its ``pc``; the cosim counts from the end of its read-back.

Each PPU run gives one result dict (``Observables.ppu``, in run order)::

    {"status": 2,                 # ppu_status: bit 0 running, bit 1 halted
     "pc": 17, "cycles": 395,     # ppu_pc, ppu_cycles
     "out": [v0, v1, ...],        # the output buffer: streamed vectors as ints
     "out_drops": 0,              # ppu_out_drops
     "dmem": {index: word},       # the read_dmem words
     "weights": array, "labels": array}   # [halves, rows, columns], if read_synapses

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
registers and data at their halt do not depend on the data, like programs 1
and 2); it keeps the samples up to the first one that did not and runs the
rest one by one (so a program whose state changes every sample costs one
wasted batch, not one per sample).  A read of an ADC sample that the run has
not yet taken, whose stale contents are not known in a batch, also ends the
speculation.  A program that writes synapses runs sample by sample.  One thing it does not
emulate and refuses with :class:`PpuEmulationError` (naming the sample, the
cycle and what to do instead): a synapse write before the sample's drain has
ended (the fast backend's weights are fixed during a run).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spikeloop.config import ChipConfig
from spikeloop.model.digital.ppu import PpuRef
from spikeloop.model.ppu import XMASK, chip_geometry, decode, out_buffer_vectors

WHEN = ("before", "each_sample")
_KEYS = ("words", "dmem", "when", "read_dmem", "read_synapses", "max_cycles")


class PpuEmulationError(ValueError):
    """A PPU program does something the fast backend does not emulate."""


class StaleAdcRead(Exception):
    """A batched sample's PPU read an ADC sample whose stale contents (the
    sample before's) are not known yet: the fast backend runs it alone."""


@dataclass(frozen=True)
class PpuJob:
    words: tuple[int, ...]
    dmem: tuple[tuple[int, int], ...] = ()
    when: str = "before"
    read_dmem: tuple[int, ...] = ()
    read_synapses: bool = False
    max_cycles: int = 100_000

    @classmethod
    def of(cls, cfg: ChipConfig, spec) -> PpuJob | None:
        """``spec`` (a dict, a PpuJob or None) checked against ``cfg``."""
        if spec is None or isinstance(spec, PpuJob):
            return spec
        if not isinstance(spec, dict):
            raise ValueError(f"ppu = {type(spec).__name__}; allowed: a dict with keys "
                             f"{', '.join(_KEYS)}, a PpuJob or None")
        bad = sorted(set(spec) - set(_KEYS))
        if bad:
            raise ValueError(f"ppu has unknown key(s) {', '.join(bad)}; "
                             f"allowed: {', '.join(_KEYS)}")
        if "words" not in spec or "when" not in spec:
            raise ValueError("ppu needs 'words' (the program) and 'when' "
                             f"({' or '.join(WHEN)})")
        g = chip_geometry(cfg)
        words = tuple(int(w) for w in spec["words"])
        if not 1 <= len(words) <= g.imem_words:
            raise ValueError(f"ppu.words holds {len(words)} words; allowed: 1..{g.imem_words} "
                             "(the instruction memory)")
        if any(not 0 <= w <= XMASK for w in words):
            raise ValueError("ppu.words: every word must be in 0..2**32-1")
        dmem = tuple((int(i), int(w)) for i, w in spec.get("dmem", ()))
        for i, w in dmem:
            if not 0 <= i < g.dmem_words or not 0 <= w <= XMASK:
                raise ValueError(f"ppu.dmem entry ({i}, {w}): index allowed 0..{g.dmem_words - 1}, "
                                 "word 0..2**32-1")
        when = spec["when"]
        if when not in WHEN:
            raise ValueError(f"ppu.when = {when!r}; allowed: {', '.join(WHEN)}")
        read = tuple(int(i) for i in spec.get("read_dmem", ()))
        if any(not 0 <= i < g.dmem_words for i in read):
            raise ValueError(f"ppu.read_dmem: indices allowed 0..{g.dmem_words - 1}")
        max_cycles = spec.get("max_cycles", 100_000)
        if not isinstance(max_cycles, int | np.integer) or max_cycles < 1:
            raise ValueError(f"ppu.max_cycles = {max_cycles!r}; allowed: an integer >= 1")
        rs = spec.get("read_synapses", False)
        if not isinstance(rs, bool | np.bool_):
            raise ValueError(f"ppu.read_synapses = {rs!r}; allowed: True or False")
        return cls(words, dmem, when, read, bool(rs), int(max_cycles))

    def as_dict(self) -> dict:
        return {"words": list(self.words), "dmem": [list(x) for x in self.dmem],
                "when": self.when, "read_dmem": list(self.read_dmem),
                "read_synapses": self.read_synapses, "max_cycles": self.max_cycles}

    @property
    def writes_synapses(self) -> bool:
        """Whether the program holds a synapse row store (``vsw``/``vsl``)."""
        for w in self.words:
            ins = decode(w).instr
            if ins is not None and ins.mnemonic in ("vsw", "vsl"):
                return True
        return False


# -- results ------------------------------------------------------------------------
def ppu_result(cfg: ChipConfig, ref: PpuRef, out: list[int], drops: int, job: PpuJob,
               rows, since: str) -> dict:
    """The result dict of a PPU run the host waited ``job.max_cycles`` cycles
    for, counted from ``since``: ``ref``'s core, the output buffer
    ``out``/``drops``, and ``rows[half][row][col] = (weight, label)`` when the
    job reads the synapses back.  A PPU still running is a RuntimeError."""
    sim = ref.sim
    if sim.running:
        raise RuntimeError(f"the PPU still runs {job.max_cycles} cycles after {since} "
                           f"(ppu.max_cycles); pc = {sim.pc}")
    res = {"status": int(sim.running) | int(sim.halted) << 1, "pc": int(sim.pc),
           "cycles": min(sim.cycle + ref.phase, XMASK), "out": [int(v) for v in out],
           "out_drops": int(drops), "dmem": {i: int(sim.dmem[i]) for i in job.read_dmem}}
    if job.read_synapses:
        res["weights"], res["labels"] = synapse_arrays(rows)
    return res


def synapse_arrays(rows) -> tuple[np.ndarray, np.ndarray]:
    """(weights, labels) [halves, rows, columns] of ``rows[h][r][c] = (w, label)``."""
    a = np.asarray([[list(r) for r in half] for half in rows], dtype=np.int64)
    return a[..., 0].copy(), a[..., 1].copy()


def ppu_results_to_json(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        d = {k: v for k, v in r.items() if k not in ("weights", "labels", "out", "dmem")}
        d["out"] = [hex(v) for v in r["out"]]
        d["dmem"] = {str(k): v for k, v in r["dmem"].items()}
        for k in ("weights", "labels"):
            if k in r:
                d[k] = np.asarray(r[k]).tolist()
        out.append(d)
    return out


def ppu_results_from_json(data: list[dict]) -> list[dict]:
    out = []
    for d in data:
        r = dict(d)
        r["out"] = [int(v, 16) for v in d["out"]]
        r["dmem"] = {int(k): int(v) for k, v in d["dmem"].items()}
        for k in ("weights", "labels"):
            if k in d:
                r[k] = np.asarray(d[k], dtype=np.int64)
        out.append(r)
    return out


def ppu_first_difference(a: list[dict] | None, b: list[dict] | None) -> str | None:
    """Where two lists of PPU results first differ (None: identical)."""
    if a is None or b is None:
        return f"ppu: {'no program' if a is None else f'{len(a)} runs'} != " \
               f"{'no program' if b is None else f'{len(b)} runs'}"
    if len(a) != len(b):
        return f"ppu: {len(a)} runs != {len(b)}"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for k in ("status", "pc", "cycles", "out_drops"):
            if x[k] != y[k]:
                return f"ppu[{i}].{k}: {x[k]} != {y[k]}"
        if len(x["out"]) != len(y["out"]):
            return f"ppu[{i}].out: {len(x['out'])} vectors != {len(y['out'])}"
        for j, (u, v) in enumerate(zip(x["out"], y["out"], strict=True)):
            if u != v:
                return f"ppu[{i}].out[{j}]: {u:#x} != {v:#x}"
        if x["dmem"] != y["dmem"]:
            k = next(k for k in sorted(set(x["dmem"]) | set(y["dmem"]))
                     if x["dmem"].get(k) != y["dmem"].get(k))
            return f"ppu[{i}].dmem[{k}]: {x['dmem'].get(k)} != {y['dmem'].get(k)}"
        for k in ("weights", "labels"):
            if (k in x) != (k in y):
                return f"ppu[{i}].{k}: read back in one run only"
            if k in x and not np.array_equal(x[k], y[k]):
                idx = tuple(int(t) for t in np.argwhere(np.asarray(x[k]) != np.asarray(y[k]))[0])
                return f"ppu[{i}].{k}{list(idx)}: {x[k][idx]} != {y[k][idx]}"
    return None


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
