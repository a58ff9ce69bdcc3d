"""Input events of a run and the Observables that come back from it.

Both are plain numpy arrays saved as ``.npz`` (readable with numpy alone).

InputEvents: one row per event, columns ``sample`` (index in the batch),
``cycle`` (release cycle counted from the start of the sample's run),
``link`` (external input of the crossbar), ``label`` (event label).  Rows are
kept sorted by (sample, cycle, link, label); each sample holds at most
``playback_depth`` events.

Observables (per batch of ``B`` samples, each run for ``n_steps`` analog steps):

================= ======================= ============================================
field             shape / dtype           meaning
================= ======================= ============================================
``spikes``        [K, 4] int64            (sample, step, cycle, neuron) of every spike
                                          the analog neurons emitted (step: analog
                                          step; cycle: the cycle it entered the logic)
``records``       [K, 4] int64            (sample, cycle, link, label) of every event
                                          the recorder stored from the host links
``adc``           [S, B, n] int64         ADC codes of the S samples the ADC took
                                          (ring variant: the buffer's first
                                          min(adc_count, depth) entries in entry
                                          order)
``adc_count``     [B] int64               valid ADC samples per batch entry (ring
                                          variant: samples taken, saturating)
``xbar_events``   [B, I, O] int64         events taken per crossbar node
``xbar_drops``    [B, I, O] int64         events dropped per crossbar node
``arbiter_drops`` [B, n_blocks] int64     spikes dropped per arbiter
``driver_unmatched`` [B, n_buses] int64   bus events that matched no driver
``playback_late`` [B] int64               input events released after their cycle
``record_drops``  [B] int64               events lost to a full record memory
``adc_overflow``  [B] int64               ADC samples lost to a full buffer
``cycles``        [B] int64               clock cycles each sample ran
``row_activations`` [B, H, D] int64      activations of each synapse driver (half,
                                          driver): an event on a bus activates every
                                          driver of that bus it matches, one per
                                          cycle, each driving its two rows; observed
                                          at the drivers, not a chip counter (never
                                          saturates)
``row_events``    [K, 5] int64            (sample, cycle, half, driver, label) of every
                                          driver activation, when the run was asked
                                          for them (run option ``row_events=True``,
                                          every backend); else no rows.  ``cycle``:
                                          clock cycles since the clear cycle (0: the
                                          first running cycle), counting on through
                                          the drain (where ``time`` stands still);
                                          ``label``: the whole event label on the bus
``n_steps``, ``run_seed``, ``backend``    scalars
``ppu``           list of dicts or None    what the host read back of each PPU run
                                          (spikeloop/base/ppu_job.py: status, pc,
                                          cycles, out, out_drops, dmem; weights
                                          and labels when asked); None: no program
================= ======================= ============================================
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import ChipConfig, ConfigError
from spikeloop.base.files import (
    FileError,
    atomic_savez,
    field_array,
    field_int,
    field_json,
    field_text,
    load_npz,
    require_fields,
)
from spikeloop.base.image import file_config
from spikeloop.base.layouts import host_event_words
from spikeloop.base.ppu_job import ppu_first_difference, ppu_results_from_json, ppu_results_to_json


def row_order(t: np.ndarray, limits) -> np.ndarray | None:
    """The order that sorts the rows of ``t`` ([K, m] int64, column ``j`` in
    ``0..limits[j]``) by column 0, then 1, ...; None when they are sorted.  Rows
    with equal keys are equal, so any sort gives the same rows: where the
    columns' bits fit in 63, one packed key is sorted (faster than a lexsort of
    the columns); else a lexsort."""
    if len(t) < 2:
        return None
    widths = [int(x).bit_length() for x in limits]
    if sum(widths) > 63:
        order = np.lexsort(t.T[::-1])
        return None if (order[1:] > order[:-1]).all() else order
    key = t[:, 0].copy()
    for j, w in enumerate(widths[1:], start=1):
        key <<= w
        key |= t[:, j]
    if (key[1:] >= key[:-1]).all():
        return None
    return np.argsort(key)


class EventsError(ValueError):
    """Input events with a bad field."""


class EventsFileError(EventsError, FileError):
    """An events or Observables file cannot be read; the message names the file."""


@dataclass
class InputEvents:
    cfg: ChipConfig
    batch: int
    table: np.ndarray  # [K, 4] int64: sample, cycle, link, label

    COLUMNS = ("sample", "cycle", "link", "label")

    def __post_init__(self):
        if (not isinstance(self.batch, int | np.integer) or isinstance(self.batch, bool)
                or self.batch < 1):
            raise EventsError(f"InputEvents.batch = {self.batch!r}; allowed: an integer >= 1")
        self.batch = int(self.batch)
        t = np.asarray(self.table)
        if t.size == 0:
            t = np.zeros((0, 4), np.int64)      # no events: any dtype and shape
        if t.dtype.kind not in "iu":
            raise EventsError(f"InputEvents.table holds {t.dtype}; allowed: integers "
                              "(sample, cycle, link, label)")
        if t.ndim != 2 or t.shape[1] != 4:
            raise EventsError(f"InputEvents.table has shape {list(t.shape)}; allowed: [K, 4] "
                              "(sample, cycle, link, label)")
        if t.dtype == np.uint64 and len(t) and t.max() > np.iinfo(np.int64).max:
            raise EventsError("InputEvents.table holds values beyond the int64 range")
        t = t.astype(np.int64)
        limits = {"sample": self.batch - 1, "cycle": (1 << self.cfg.timestamp_bits) - 1,
                  "link": self.cfg.n_ext_inputs - 1,
                  "label": (1 << self.cfg.event_label_bits) - 1}
        for j, col in enumerate(self.COLUMNS):
            if len(t) and (t[:, j].min() < 0 or t[:, j].max() > limits[col]):
                bad = int(np.argmax((t[:, j] < 0) | (t[:, j] > limits[col])))
                raise EventsError(f"InputEvents.{col} of event {bad} = {t[bad, j]} is out of "
                                  f"range; allowed: 0..{limits[col]}")
        order = row_order(t, [limits[col] for col in self.COLUMNS])
        self.table = t if order is None else t[order]
        counts = np.bincount(self.table[:, 0])        # up to the last sample with events
        if len(counts) and counts.max() > self.cfg.playback_depth:
            s = int(np.argmax(counts))
            raise EventsError(f"sample {s} has {counts[s]} input events; the playback memory "
                              f"holds playback_depth = {self.cfg.playback_depth}")

    @classmethod
    def from_lists(cls, cfg: ChipConfig, per_sample: list[list[tuple[int, int, int]]]):
        """``per_sample[s]`` = list of (cycle, link, label)."""
        rows = [(s, c, lk, lb) for s, evs in enumerate(per_sample) for c, lk, lb in evs]
        return cls(cfg, len(per_sample), np.array(rows, dtype=np.int64).reshape(-1, 4))

    def of_sample(self, s: int) -> np.ndarray:
        """[k, 3] (cycle, link, label) of sample ``s`` in release order."""
        return self.table[self.table[:, 0] == s][:, 1:]

    def bus_writes(self, s: int) -> list[tuple[int, int]]:
        """(word address, value) of the host writes that load sample ``s`` into
        the playback memory (:func:`~spikeloop.base.layouts.host_event_words`)
        and set ``playback_count``."""
        amap = AddressMap(self.cfg)
        pb = amap["playback"]
        evs = self.of_sample(s).tolist()
        writes = []
        for i, (cycle, link, label) in enumerate(evs):
            word0, word1 = host_event_words(self.cfg, cycle, link, label)
            writes += [(pb.address(i, 0), word0), (pb.address(i, 1), word1)]
        writes.append((amap["playback_count"].address(0), len(evs)))
        return writes

    def save(self, path) -> None:
        """Write the events to exactly ``path`` (atomically; no suffix added)."""
        atomic_savez(path, events=self.table, batch=np.array(self.batch),
                     chip_config=np.array(self.cfg.to_json()))

    @classmethod
    def load(cls, path, cfg: ChipConfig) -> InputEvents:
        """The events in ``path`` for a run on ``cfg``: ``events`` an integer
        array [K, 4], ``batch`` an integer >= 1 and, when present, ``chip_config``
        equal to ``cfg`` (every field).  Any fault is an :class:`EventsError`
        naming the file, the field and what is allowed."""
        z = load_npz(path, "an InputEvents .npz")
        try:
            require_fields(z, ("events", "batch"), path, "an events file ('events' [K, 4] "
                           "(sample, cycle, link, label) and 'batch')")
            stored = file_config(z, path, cfg)
            return cls(stored, field_int(z, "batch", path, lo=1),
                       field_array(z, "events", path))
        except (EventsError, FileError, ConfigError) as e:
            msg = str(e)
            raise EventsFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") \
                from None


@dataclass
class Observables:
    spikes: np.ndarray
    records: np.ndarray
    adc: np.ndarray
    adc_count: np.ndarray
    xbar_events: np.ndarray
    xbar_drops: np.ndarray
    arbiter_drops: np.ndarray
    driver_unmatched: np.ndarray
    playback_late: np.ndarray
    record_drops: np.ndarray
    adc_overflow: np.ndarray
    cycles: np.ndarray
    row_activations: np.ndarray
    row_events: np.ndarray
    n_steps: int
    run_seed: int
    backend: str = ""
    #: one dict per PPU run of the job (spikeloop/base/ppu_job.py), None without a program
    ppu: list | None = None

    FIELDS = ("spikes", "records", "adc", "adc_count", "xbar_events", "xbar_drops",
              "arbiter_drops", "driver_unmatched", "playback_late", "record_drops",
              "adc_overflow", "cycles", "row_activations", "row_events")
    #: the fields of one row per event (the first column: the sample), and their widths
    EVENT_FIELDS = {"spikes": 4, "records": 4, "row_events": 5}

    def spike_raster(self, n_neurons: int) -> np.ndarray:
        """Time-major [n_steps, batch, n_neurons] bool raster (hxtorch layout)."""
        batch = len(self.cycles)
        r = np.zeros((self.n_steps, batch, n_neurons), dtype=bool)
        if len(self.spikes):
            r[self.spikes[:, 1], self.spikes[:, 0], self.spikes[:, 3]] = True
        return r

    def save(self, path) -> None:
        """Write the Observables to exactly ``path`` (atomically; no suffix added)."""
        extra = {}
        if self.ppu is not None:
            extra["ppu"] = np.array(json.dumps(ppu_results_to_json(self.ppu)))
        atomic_savez(path, n_steps=np.array(self.n_steps), run_seed=np.array(self.run_seed),
                     backend=np.array(self.backend),
                     **{f: getattr(self, f) for f in self.FIELDS}, **extra)

    #: the number of dimensions of each field
    NDIM = {"spikes": 2, "records": 2, "adc": 3, "adc_count": 1, "xbar_events": 3,
            "xbar_drops": 3, "arbiter_drops": 2, "driver_unmatched": 2, "playback_late": 1,
            "record_drops": 1, "adc_overflow": 1, "cycles": 1, "row_activations": 3,
            "row_events": 2}

    @classmethod
    def load(cls, path) -> Observables:
        """The Observables in ``path``; a missing field, a field of the wrong type
        or number of dimensions, or unreadable PPU results are an
        :class:`EventsError` naming the file and the field."""
        z = load_npz(path, "an Observables .npz")
        try:
            require_fields(z, (*cls.FIELDS, "n_steps", "run_seed", "backend"), path,
                           "an Observables file")
            arrays = {}
            for f in cls.FIELDS:
                a = field_array(z, f, path)
                width = cls.EVENT_FIELDS.get(f)
                if a.ndim != cls.NDIM[f] or (width is not None and a.shape[1] != width):
                    raise EventsError(f"field {f} has shape {list(a.shape)}; allowed: "
                                      f"{cls.NDIM[f]} dimensions"
                                      + (f" [K, {width}]" if width is not None else ""))
                arrays[f] = a.astype(np.int64)
            batch = len(arrays["cycles"])
            for f in cls.FIELDS:
                n = arrays[f].shape[1] if f == "adc" else (
                    None if f in cls.EVENT_FIELDS else arrays[f].shape[0])
                if n is not None and n != batch:
                    raise EventsError(f"field {f} covers {n} samples, cycles {batch}")
            ppu = None
            if "ppu" in z:
                try:
                    ppu = ppu_results_from_json(field_json(z, "ppu", path, list))
                except (KeyError, TypeError, ValueError, AttributeError) as e:
                    raise EventsError(f"field ppu is not a list of PPU results "
                                      f"({type(e).__name__}: {e})") from None
            return cls(**arrays, n_steps=field_int(z, "n_steps", path, lo=0),
                       run_seed=field_int(z, "run_seed", path, lo=0),
                       backend=field_text(z, "backend", path), ppu=ppu)
        except (EventsError, FileError) as e:
            msg = str(e)
            raise EventsFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") \
                from None

    def first_difference(self, other: Observables) -> str | None:
        """None when identical, else which field (and where) first differs."""
        for f in self.FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            if a.shape != b.shape:
                return f"{f}: shape {a.shape} != {b.shape}"
            if not np.array_equal(a, b):
                idx = tuple(int(i) for i in np.argwhere(a != b)[0])
                return f"{f}{list(idx)}: {a[idx]} != {b[idx]}"
        if self.ppu is not None or other.ppu is not None:

            return ppu_first_difference(self.ppu, other.ppu)
        return None

    def replace(self, **kw) -> Observables:
        return dataclasses.replace(self, **kw)

    def head(self, k: int) -> Observables:
        """The first ``k`` samples of the batch."""
        per_sample = {f: getattr(self, f)[:k] for f in self.FIELDS
                      if f not in self.EVENT_FIELDS and f != "adc"}
        events = {f: getattr(self, f)[getattr(self, f)[:, 0] < k] for f in self.EVENT_FIELDS}
        return self.replace(adc=self.adc[:, :k], **per_sample, **events,
                            ppu=None if self.ppu is None else self.ppu[:k])

    @classmethod
    def concat(cls, parts: list[Observables]) -> Observables:
        """One batch of the batches ``parts`` (run with the same n_steps, run seed
        and backend), in order: sample indices are shifted, ADC samples padded."""
        if not parts:
            raise ValueError("Observables.concat needs at least one part")
        first = parts[0]
        for p in parts[1:]:
            if (p.n_steps, p.run_seed, p.backend) != (first.n_steps, first.run_seed,
                                                      first.backend):
                raise ValueError("Observables.concat: parts differ in n_steps, run_seed or "
                                 "backend")
        offsets = np.cumsum([0] + [len(p.cycles) for p in parts])[:-1]

        def shifted(f):
            w = cls.EVENT_FIELDS[f]
            return np.concatenate([getattr(p, f) + np.array([o] + [0] * (w - 1))
                                   for p, o in zip(parts, offsets, strict=True)]).reshape(-1, w)

        S = max(p.adc.shape[0] for p in parts)
        adc = np.concatenate([np.pad(p.adc, ((0, S - p.adc.shape[0]), (0, 0), (0, 0)))
                              for p in parts], axis=1)
        per_sample = {f: np.concatenate([getattr(p, f) for p in parts])
                      for f in cls.FIELDS if f not in cls.EVENT_FIELDS and f != "adc"}
        ppu = None
        if any(p.ppu is not None for p in parts):
            ppu = [r for p in parts for r in (p.ppu or [])]
        return cls(**{f: shifted(f) for f in cls.EVENT_FIELDS}, adc=adc, **per_sample,
                   n_steps=first.n_steps, run_seed=first.run_seed, backend=first.backend,
                   ppu=ppu)


def observables_from_samples(cfg: ChipConfig, *, spikes, records, adc_rows, counters: dict,
                             cycles_per_sample: int, n_steps: int, run_seed: int,
                             backend: str, row_activations, row_events=(),
                             ppu: list | None = None,
                             adc_count=None) -> Observables:
    """Assemble Observables from what a backend read back sample by sample:
    ``spikes``/``records`` lists of 4-tuples, ``adc_rows[b]`` the valid ADC
    samples of batch entry ``b`` (lists of ``n_neurons`` codes), ``counters[k]``
    one entry per sample for each counter field (flat lists for the arrays),
    ``row_activations[b]`` sample ``b``'s activations per driver (flat, half
    by half), ``row_events`` 5-tuples (sample, cycle, half, driver, label);
    ``adc_count[b]`` the samples the ADC took where that differs from the rows
    read (the ADC ring, ``ChipConfig.adc_ring``), default ``len(adc_rows[b])``."""
    B = len(adc_rows)
    S = max((len(r) for r in adc_rows), default=0)
    adc = np.zeros((S, B, cfg.n_neurons), dtype=np.int64)
    for b, rows in enumerate(adc_rows):
        if len(rows):
            adc[:len(rows), b] = np.array(rows)
    shapes = {"xbar_events": (cfg.crossbar_inputs, cfg.crossbar_outputs),
              "xbar_drops": (cfg.crossbar_inputs, cfg.crossbar_outputs),
              "arbiter_drops": (cfg.n_blocks,), "driver_unmatched": (cfg.n_buses,),
              "playback_late": (), "record_drops": (), "adc_overflow": ()}
    return Observables(
        spikes=np.array(spikes, dtype=np.int64).reshape(-1, 4),
        records=np.array(records, dtype=np.int64).reshape(-1, 4),
        adc=adc, adc_count=np.array([len(r) for r in adc_rows] if adc_count is None
                                    else adc_count, dtype=np.int64).reshape(B),
        **{k: np.array(counters[k], dtype=np.int64).reshape(B, *shape)
           for k, shape in shapes.items()},
        cycles=np.full(B, cycles_per_sample, dtype=np.int64),
        row_activations=np.array(row_activations, dtype=np.int64).reshape(
            B, cfg.n_halves, cfg.drivers_per_half),
        row_events=np.array(row_events, dtype=np.int64).reshape(-1, 5),
        n_steps=n_steps, run_seed=run_seed, backend=backend, ppu=ppu)
