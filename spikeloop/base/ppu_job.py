"""A PPU program run with a job, on every backend: the job description and what
the host reads back of each PPU run.

The job (``ppu=`` of :meth:`spikeloop.model.chip.Chip.run`, a dict or
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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import XMASK, chip_geometry, decode

WHEN = ("before", "each_sample")
_KEYS = ("words", "dmem", "when", "read_dmem", "read_synapses", "max_cycles")


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
