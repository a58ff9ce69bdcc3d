"""Backend "reference": the composed cycle-accurate references of model/digital/
and the analog model, one cycle at a time in Python.  Slow (a few thousand
cycles per second on the mini preset) and simple: the golden model that the
cosim and fast backends are checked against.  ``ppu``: a PPU program run with
the job (spikeloop/base/ppu_job.py); its results are ``Observables.ppu``.

With driver and synapse mismatch (``Chip.synapse_gains``) the analog model
integrates each step's activated synapses times their gains
(:class:`~spikeloop.model.synapses.StepInput`, from the activations the
reference lists with their cycles), and the digital boundary's column sums
must equal the same activations' digital sums."""
from __future__ import annotations

import numpy as np
import torch

from spikeloop.base.events import InputEvents, Observables, observables_from_samples
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import unpack_timed_event
from spikeloop.base.ppu_job import PpuJob
from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
from spikeloop.model.analog_loop import AnalogLoop, bits_to_bool, bool_to_bits
from spikeloop.model.chip import Chip
from spikeloop.model.digital.ppu import ppu_result
from spikeloop.model.digital.top import ChipDigitalRef
from spikeloop.model.synapses import StepInput


def run_reference(chip: Chip, image: ConfigImage, events: InputEvents, n_steps: int, *,
                  run_seed: int = 0, sample_offset: int = 0, ppu=None,
                  row_events: bool = False) -> Observables:
    """``row_events``: list every driver activation in ``Observables.row_events``."""
    cfg = chip.cfg
    if n_steps < 1:
        raise ValueError(f"n_steps = {n_steps}; allowed: >= 1")
    job = PpuJob.of(cfg, ppu)
    n = cfg.n_neurons
    ref = ChipDigitalRef(cfg, image)
    gains = chip.synapse_gains
    ref.record_rows = bool(row_events) or gains is not None
    inputs = None
    # a program that writes synapses changes them between samples
    rewrites = job is not None and job.writes_synapses
    ppu_runs = []
    if job is not None:
        ref.ppu.load(job.words)
        for i, w in job.dmem:
            ref.ppu.write_dmem(i, w)
        if job.when == "before":
            ref.tick(0, [0] * n, running=False, ppu_start=1)
            ppu_runs.append(_ppu_halt(ref, job, "its start"))
    L = live_cycles(cfg, n_steps)
    spikes, records, adc_rows, adc_counts, rows, row_acts = [], [], [], [], [], []
    counters = {k: [] for k in ("xbar_events", "xbar_drops", "arbiter_drops",
                                "driver_unmatched", "playback_late", "record_drops",
                                "adc_overflow")}
    each = job is not None and job.when == "each_sample"
    for s in range(events.batch):
        analog = AnalogLoop(chip, image, [sample_offset + s], run_seed)
        codes = [int(c) for c in analog.codes()[0]]
        ref.start(events.of_sample(s).tolist())
        ref.reset_rows()
        if gains is not None and (s == 0 or rewrites):
            # the synapse memory as the run starts (a program may have written it)
            inputs = StepInput(cfg, image, gains, synapse_weight=_memory(ref, 0),
                               synapse_label=_memory(ref, 1))
        if inputs is not None:
            inputs.reset()
        k = 0
        for r in range(L):
            o = ref.analog_outputs()
            spike_in = 0
            if o["step_done"] and k < n_steps:
                exc, inh = o["exc_sum"], o["inh_sum"]
                if inputs is not None:
                    (exc, inh), digital = inputs.step(ref.row_events, k)
                    if digital[0].tolist() != o["exc_sum"] or digital[1].tolist() != o["inh_sum"]:
                        raise AssertionError(f"sample {s}, step {k}: the analog boundary's sums "
                                             "differ from its activations' synapses")
                fired = analog.step(torch.tensor(np.array([exc])), torch.tensor(np.array([inh])),
                                    torch.tensor([bits_to_bool(o["refractory_active"], n)]))[0]
                spikes += [(s, k, r, int(i)) for i in torch.nonzero(fired).reshape(-1)]
                spike_in = bool_to_bits(fired.tolist())
                codes = [int(c) for c in analog.codes()[0]]
                k += 1
            # the host's ppu_ctrl write in the clear cycle: the start pulse in cycle 0
            ref.tick(spike_in, codes, running=True, ppu_start=int(each and r == 0))
        assert k == n_steps, f"{k} analog steps in {L} cycles, expected {n_steps}"
        for _ in range(DRAIN_CYCLES):
            ref.tick(0, codes, running=False)
        if each:
            ppu_runs.append(_ppu_halt(ref, job, f"sample {s}'s drain"))
        for word in ref.recorder.entries():
            label, link, t = unpack_timed_event(cfg, cfg.n_host_links, word)
            records.append((s, t, link, label))
        adc_rows.append(ref.adc.host_rows())
        adc_counts.append(ref.adc.n_samples)
        c = ref.final_counters()
        for key in counters:
            counters[key].append(c[key])
        row_acts.append(c["row_activations"])
        if row_events:
            rows += [(s, *e) for e in ref.row_events]
    return observables_from_samples(
        cfg, spikes=spikes, records=records, adc_rows=adc_rows, counters=counters,
        cycles_per_sample=L, n_steps=n_steps, run_seed=run_seed, backend="reference",
        row_activations=row_acts, row_events=rows, ppu=ppu_runs if job is not None else None,
        adc_count=adc_counts)


def _ppu_halt(ref: ChipDigitalRef, job: PpuJob, since: str) -> dict:
    """Stopped cycles until the PPU halts (at most ``job.max_cycles``); its result."""
    zeros = [0] * ref.cfg.n_neurons
    for _ in range(job.max_cycles):
        if not ref.ppu.sim.running:
            break
        ref.tick(0, zeros, running=False)
    return ppu_result(ref.cfg, ref.ppu, ref.ppu_out, ref.ppu_out_drops, job,
                      [syn.mem for syn in ref.synapses], since)


def _memory(ref: ChipDigitalRef, field: int) -> np.ndarray:
    """The synapse memories' weights (``field`` 0) or labels (1), [halves, rows, columns]."""
    return np.array([[[cell[field] for cell in row] for row in syn.mem] for syn in ref.synapses],
                    dtype=np.int64)
