"""The engine of backend "cosim": runs one *job* (a batch of samples, written by
cosim/backend.py, which documents the job's files) on the simulated top level
(rtl/top.py, component "top") by the run protocol of spikeloop/base/protocol.py,
with the analog model in the loop, and writes the Observables and stats.

It runs inside the simulator only: the cocotb tests of
cosim/tests/test_chip_cocotb.py call :func:`run_job`, :func:`run_ceiling_job`
and :func:`run_readback_job`.  The steps of a job, each a function here:

1. :func:`load_job`: the job's description (:data:`ENV_JOB` names it);
2. :func:`start`: idle analog inputs, the clock, the host-bus driver through
   reset (a :class:`Host`);
3. :func:`write_image`: the configuration image through the host bus;
   :func:`analog_image`: the image the analog side uses (the merge switches
   as the host wrote them);
4. :func:`load_ppu`: the PPU's program and data; with ``when = "before"``
   :func:`start_ppu` and :func:`read_ppu` run it to its halt before the
   first sample;
5. per sample: :func:`write_events` (the playback memory),
   :func:`run_sample` (clear cycle, the running cycles through the analog
   bridge, stop, drain), :func:`read_counters` (time and every counter in
   one burst), :func:`read_records`, :func:`read_adc` and, with ``when =
   "each_sample"``, :func:`read_ppu`;
6. :func:`write_results`: the Observables (backend "cosim"), the membrane
   trace and the stats.

Everything done to the chip goes through the top level's ports: the image,
the input events, ``ctrl`` and every read-back through the host bus
(:class:`~spikeloop.cosim.host.HostBusDriver`); the analog side through the
bridge (cosim/bridge.py).  One thing is observed inside: the synapse
drivers' activations (``row_activations`` of the Observables), which no chip
counter holds, from the co-simulated top level's instrumentation counters
(port ``row_activations``, rtl/top.py; read once per sample); with
``row_events``, or on a chip with driver and synapse mismatch, the
row-activity monitor (:class:`~spikeloop.cosim.monitor.RowActivity`) lists
every activation as well, and its counts must equal the counters'; on such a
chip the bridge takes each step's sums of weight x gain from the
activations it lists (spikeloop/model/synapses.py ``StepInput``), after
checking their digital sums against the RTL's ``exc_sum`` and ``inh_sum``
(the synapses read back after each run of a PPU program that writes them).

PPU (``ppu`` of the job, spikeloop/base/ppu_job.py): the program and its data
are written through the host bus after the image.  ``before``: the PPU is
started and run to its halt before the first sample (e.g. a weight update
that the samples then use), and every synapse is read back.
``each_sample``: ``ppu_ctrl`` start is written in the clear cycle of every
sample: the start pulse is high in running cycle 0 and the PPU executes its
first instruction in cycle 1 (``time = 1``); the synapses are read back after
each run with ``read_synapses``.  After each PPU run (for ``each_sample``:
after the sample's read-back) the host waits for the halt (at most
``max_cycles``) and reads ``ppu_status``, ``ppu_pc``, ``ppu_cycles``, the
output buffer and the dmem words asked for; the results go to the stats file
as ``"ppu"`` (one dict per PPU run), with the bridge's held steps (sample,
step, mask) of that sample.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
import torch
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import ChipConfig
from spikeloop.base.events import InputEvents, Observables, observables_from_samples
from spikeloop.base.image import ConfigImage
from spikeloop.base.isa import chip_geometry
from spikeloop.base.layouts import pack_array, unpack_array, unpack_host_event
from spikeloop.base.ppu_job import PpuJob
from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
from spikeloop.cosim.backend import ENV_JOB, synapse_arrays
from spikeloop.cosim.bridge import (
    AnalogBridge,
    MembraneTrace,
    write_membrane_csv,
    write_membrane_vcd,
)
from spikeloop.cosim.host import HostBusDriver, clock_period_ps, start_clock
from spikeloop.cosim.monitor import RowActivity, activation_counts
from spikeloop.cosim.runner import CosimContext, cosim_context
from spikeloop.model.analog_loop import AnalogLoop
from spikeloop.model.chip import Chip
from spikeloop.model.synapses import StepInput

#: the counters read back after every sample, in the order of the read burst
COUNTERS = ("xbar_events", "xbar_drops", "arbiter_drops", "driver_unmatched",
            "playback_late", "record_drops", "adc_overflow", "record_count", "adc_samples")


# -- the job ------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """A job's description (the JSON that cosim/backend.py writes) and the
    folder its relative paths start from."""

    spec: dict
    base: Path

    def path(self, key: str) -> Path:
        p = Path(self.spec[key])
        return p if p.is_absolute() else self.base / p

    def chip(self, cfg: ChipConfig) -> Chip:
        chip = Chip.load(self.path("chip"))
        if chip.cfg != cfg:
            raise ValueError(f"the job's chip is preset {chip.cfg.name!r}, the build "
                             f"{cfg.name!r}")
        return chip

    def image(self, cfg: ChipConfig) -> ConfigImage:
        return ConfigImage.load(self.path("image"), cfg)

    def events(self, cfg: ChipConfig) -> InputEvents:
        return InputEvents.load(self.path("events"), cfg)

    def ppu(self, cfg: ChipConfig) -> PpuJob | None:
        return PpuJob.of(cfg, self.spec.get("ppu"))

    @property
    def n_steps(self) -> int:
        return int(self.spec["n_steps"])

    def write_stats(self, stats: dict) -> None:
        """``stats`` as JSON to the job's stats path (none: nothing written)."""
        if "stats" in self.spec:
            self.path("stats").write_text(json.dumps(stats, indent=2))


def load_job(path: str | os.PathLike | None = None) -> Job:
    """The job at ``path`` (default: the file :data:`ENV_JOB` names)."""
    job_file = Path(os.environ[ENV_JOB] if path is None else path)
    return Job(json.loads(job_file.read_text()), job_file.parent)


# -- the host's side of the top level -----------------------------------------------

@dataclass(frozen=True)
class Host:
    """The simulated top level ``dut`` of ``cfg`` as the host sees it: the
    host-bus driver and the address map."""

    dut: object
    cfg: ChipConfig
    drv: HostBusDriver
    amap: AddressMap

    def address(self, region: str, *index: int) -> int:
        """The bus address of ``region[index]`` (default: entry 0)."""
        return self.amap[region].address(*(index or (0,)))

    async def edge(self, n: int = 1) -> None:
        """Wait for ``n`` rising edges of the clock (e.g. to leave ``ReadOnly``)."""
        for _ in range(n):
            await RisingEdge(self.dut.clk)


async def start(dut, cfg: ChipConfig) -> Host:
    """Idle analog inputs, the clock, and a host-bus driver through reset."""
    dut.spike_in.value = 0
    dut.adc_codes.value = 0
    dut.settings_addr.value = 0
    start_clock(dut, cfg)
    drv = HostBusDriver(dut)
    await drv.reset()
    return Host(dut, cfg, drv, AddressMap(cfg))


async def write_image(host: Host, image: ConfigImage, *, zeros: bool) -> list[tuple[int, int]]:
    """Write ``image`` through the host bus, back to back: every word with
    ``zeros``, else only its non-zero words (the power-up state: registers
    reset to 0, memories initialised to 0).  Returns the writes."""
    writes = image.bus_writes()
    if not zeros:
        writes = [(a, v) for a, v in writes if v]
    await host.drv.write_many(writes)
    return writes


async def analog_image(host: Host, image: ConfigImage) -> ConfigImage:
    """The image the analog side runs with: with two halves, the merge
    switches as the host wrote them into their register (read from the top's
    ``neuron_merge`` port); else ``image`` itself."""
    cfg = host.cfg
    if cfg.n_halves != 2:
        return image
    await host.edge(2)                             # past the edge of the last write
    merge = unpack_array(int(host.dut.neuron_merge.value), 1, cfg.columns_per_half)
    image = image.copy()
    image.neuron_merge = np.asarray(merge, dtype=np.int64)
    return image


# -- the PPU ------------------------------------------------------------------------

async def load_ppu(host: Host, ppu: PpuJob) -> None:
    """The program into ``ppu_imem``, then the data words into ``ppu_dmem``."""
    await host.drv.write_many(
        [(host.address("ppu_imem", i), w) for i, w in enumerate(ppu.words)]
        + [(host.address("ppu_dmem", i), w) for i, w in ppu.dmem])


async def start_ppu(host: Host) -> None:
    """Write ``ppu_ctrl`` start (the pulse is high in the cycle after the write's edge)."""
    await host.drv.write(host.address("ppu_ctrl"), 1)


async def read_ppu(host: Host, ppu: PpuJob, *, synapses: bool) -> dict:
    """Wait (polling ``ppu_status``) until the PPU is not running, at most
    ``ppu.max_cycles`` cycles, then read its status, cycles, pc, output
    buffer, the dmem words ``ppu.read_dmem`` and, with ``synapses``, every
    synapse word of both halves (``"synapses"``: one list per half).  Returns
    the result as the stats file holds it; ends right after a rising edge."""
    cfg, drv = host.cfg, host.drv
    g = chip_geometry(cfg)
    status = host.address("ppu_status")
    waited = 0
    await host.edge(2)     # a start written just now: the pulse, then running
    while (await drv.read(status)) & 1:
        if waited > ppu.max_cycles:
            raise AssertionError(f"the PPU still runs {waited} cycles after the last check "
                                 f"(max_cycles = {ppu.max_cycles}); pc = "
                                 f"{await drv.read(host.address('ppu_pc'))}")
        await host.edge()
        waited += 2
    await host.edge()
    st, pc, cycles, count, drops = await drv.read_many(
        [host.address(k) for k in ("ppu_status", "ppu_pc", "ppu_cycles", "ppu_out_count",
                                   "ppu_out_drops")])
    out = []
    if count:
        await host.edge()
        words = await drv.read_many([host.address("ppu_out", i)
                                     for i in range(count * g.vector_words)])
        out = [pack_array(words[i * g.vector_words:(i + 1) * g.vector_words], 32, wrap=True)
               for i in range(count)]
    dmem = {}
    if ppu.read_dmem:
        await host.edge()
        got = await drv.read_many([host.address("ppu_dmem", i) for i in ppu.read_dmem])
        dmem = dict(zip(ppu.read_dmem, got, strict=True))
    await host.edge()
    res = {"status": st, "pc": pc, "cycles": cycles, "out_count": count, "out_drops": drops,
           "out": [hex(v) for v in out], "dmem": {str(k): v for k, v in dmem.items()}}
    if synapses:
        syn = []
        for h in range(cfg.n_halves):
            r = host.amap[f"synapses{h}"]
            syn.append(await drv.read_many([r.address(i) for i in range(r.count)]))
            await host.edge()
        res["synapses"] = syn
    return res


# -- a sample -----------------------------------------------------------------------

async def write_events(host: Host, events: InputEvents, sample: int) -> None:
    """Batch entry ``sample``'s input events into the playback memory."""
    await host.drv.write_many(events.bus_writes(sample))


async def run_sample(host: Host, bridge: AnalogBridge, loop: AnalogLoop, sample: int,
                     n_steps: int, *, start_ppu: bool = False,
                     rows: RowActivity | None = None) -> float:
    """One run: ``ctrl = run | clear`` (the next cycle clears; with
    ``start_ppu`` the PPU's start is written in that clear cycle), the running
    cycles through the analog bridge, ``ctrl = 0`` in the last running cycle,
    then the drain (:data:`DRAIN_CYCLES` cycles, time stands still).  ``rows``
    (the row-activity monitor) learns where running cycle 0 starts.  Returns
    the wall time of the running phase in s."""
    drv, ctrl = host.drv, host.address("ctrl")
    bridge.drive_codes(loop)                   # before step 0: the initial membranes
    t0 = time.perf_counter()
    await drv.write(ctrl, 0b11)                # run | clear: the next cycle clears
    if start_ppu:                              # start: the pulse in r = 0, the PPU from r = 1
        await drv.write(host.address("ppu_ctrl"), 1)
    else:
        await host.edge()                      # the edge that ends the clear cycle: r = 0
    if rows is not None:
        rows.begin()
    await bridge.run(loop, sample, n_steps)    # returns at the start of r = L - 1
    await drv.write(ctrl, 0)                   # the last running cycle
    wall = time.perf_counter() - t0
    await host.edge(DRAIN_CYCLES)              # the drain: time stands still
    return wall


async def read_counters(host: Host, sample: int, cycles: int) -> dict[str, list[int]]:
    """``time`` and every counter of :data:`COUNTERS` in one pipelined burst
    (one list of entries per counter).  The first read is sampled at the end
    of the last drain cycle, i.e. the state after :data:`DRAIN_CYCLES` stopped
    cycles, as the reference reads it; ``time`` must read ``cycles`` (the
    run's live cycles) and the chip must not run."""
    addrs, spans = [host.address("time")], {}
    for key in COUNTERS:
        r = host.amap[key]
        spans[key] = (len(addrs), r.count)
        addrs += [r.address(i) for i in range(r.count)]
    vals = await host.drv.read_many(addrs)
    assert vals[0] == cycles, (f"sample {sample}: time reads {vals[0]} after the run, "
                               f"live_cycles = {cycles}")
    running = str(host.dut.running.value)
    assert running == "0", f"sample {sample}: running = {running} after the drain"
    return {k: vals[a:a + m] for k, (a, m) in spans.items()}


async def read_records(host: Host, sample: int, n_records: int) -> list[tuple[int, ...]]:
    """The recorder's first ``n_records`` entries as ``(sample, time, link, label)``."""
    cfg, rec = host.cfg, host.amap["record"]
    await host.edge()
    words = await host.drv.read_many([rec.address(i, w) for i in range(n_records)
                                      for w in (0, 1)])
    out = []
    for i in range(n_records):
        time, label, link = unpack_host_event(cfg, cfg.n_host_links, words[2 * i],
                                              words[2 * i + 1])
        out.append((sample, time, link, label))
    return out


async def read_adc(host: Host, n_samples: int) -> list[list[int]]:
    """The ADC buffer's first ``min(n_samples, adc_buffer_depth)`` entries
    (``n_neurons`` codes each), in entry order; ``n_samples`` is the status
    ``adc_samples`` (with the ADC ring the samples taken, which can exceed
    the buffer)."""
    n = host.cfg.n_neurons
    adc = host.amap["adc"]
    n_samples = min(n_samples, host.cfg.adc_buffer_depth)
    await host.edge()
    codes = await host.drv.read_many([adc.address(i) for i in range(n_samples * n)])
    return [codes[k * n:(k + 1) * n] for k in range(n_samples)]


# -- results ------------------------------------------------------------------------

def write_results(job: Job, ctx: CosimContext, obs: Observables, stats: dict,
                  trace: MembraneTrace | None) -> None:
    """The Observables to the job's output path, the membrane trace (if kept)
    as ``membranes.vcd``/``.csv`` into the run directory, the stats to the
    job's stats path."""
    obs.save(job.path("output"))
    if trace is not None:
        write_membrane_vcd(trace, ctx.run_dir / "membranes.vcd")
        write_membrane_csv(trace, ctx.run_dir / "membranes.csv")
    job.write_stats(stats)


# -- the jobs -----------------------------------------------------------------------

async def run_job(dut, job: Job | None = None) -> dict:
    """The job (default: :func:`load_job`) on ``dut``: the image, the PPU
    program, then per sample: playback, run with the analog bridge, stop,
    drain, read back; writes the Observables and the stats.  Returns the stats."""
    # one thread: the analog model's per-step tensors are tiny, a second thread
    # only contends with the simulator (as tests/conftest.py does for pytest)
    torch.set_num_threads(1)
    wall0 = time.perf_counter()
    ctx = cosim_context()
    cfg = ctx.cfg
    job = load_job() if job is None else job
    chip, image, events = job.chip(cfg), job.image(cfg), job.events(cfg)
    ppu = job.ppu(cfg)
    each_sample = ppu is not None and ppu.when == "each_sample"
    n_steps, run_seed = job.n_steps, int(job.spec["run_seed"])
    sample_offset = int(job.spec.get("sample_offset", 0))
    L = live_cycles(cfg, n_steps)

    host = await start(dut, cfg)
    t_image = time.perf_counter()
    n_writes = len(await write_image(host, image, zeros=job.spec.get("write_zeros", True)))
    t_image = time.perf_counter() - t_image
    cocotb.log.info("image: %d host writes in %.2f s", n_writes, t_image)
    image = await analog_image(host, image)

    ppu_results = []
    if ppu is not None:
        await load_ppu(host, ppu)
        if ppu.when == "before":
            await start_ppu(host)
            ppu_results.append(await read_ppu(host, ppu, synapses=True))
            await host.edge()

    trace = MembraneTrace(cfg.n_neurons) if job.spec.get("membranes") else None
    # the activations per driver come from the top's own counters (read once a
    # sample); the per-cycle monitor runs only when every activation is listed
    # (asked for, or with driver and synapse mismatch: each step's sums of
    # weight x gain come from its activations), and its counts must then equal
    # the counters'
    gains = chip.synapse_gains
    rows = (RowActivity(dut, cfg, clock_period_ps(cfg), keep_events=True)
            if job.spec.get("row_events", False) or gains is not None else None)
    inputs = None
    # a program that writes synapses changes what the steps' sums add: the
    # synapses are read back after each of its runs (the first sample's from
    # the image, or from a program run before)
    rewrites = gains is not None and ppu is not None and ppu.writes_synapses
    if gains is not None:
        syn = (synapse_arrays(cfg, ppu_results[-1]["synapses"])
               if rewrites and ppu_results else (None, None))
        inputs = StepInput(cfg, image, gains, *syn)
    bridge = AnalogBridge(dut, cfg, trace=trace, inputs=inputs,
                          rows=rows if inputs is not None else None)
    records, adc_rows, adc_counts, row_acts, row_events = [], [], [], [], []
    counters = {k: [] for k in COUNTERS}
    t_runs = 0.0
    # the compiled code of the analog steps, loaded once per simulator process
    t_load = time.perf_counter()
    warm = AnalogLoop(chip, image, [sample_offset], run_seed)
    warm.load_compiled()
    bridge.load_compiled(warm)
    t_load = time.perf_counter() - t_load
    for s in range(events.batch):
        loop = AnalogLoop(chip, image, [sample_offset + s], run_seed)
        loop.plan_steps(n_steps)                   # noise of many steps per call, same bits
        await write_events(host, events, s)
        t_runs += await run_sample(host, bridge, loop, s, n_steps, start_ppu=each_sample,
                                   rows=rows)
        listed, evs = rows.take() if rows is not None else (None, [])
        if job.spec.get("row_events", False):
            row_events += [(s, *e) for e in evs]
        c = await read_counters(host, s, L)    # returns with the values settled
        acts = activation_counts(dut, cfg)
        if listed is not None and listed != acts:
            d = next(i for i, (a, b) in enumerate(zip(listed, acts, strict=True)) if a != b)
            raise AssertionError(f"sample {s}: driver {d} (flat index) was activated "
                                 f"{listed[d]} times by the monitor's count and "
                                 f"{acts[d]} times by row_activations")
        row_acts.append(acts)
        for key in COUNTERS:
            counters[key].append(c[key])
        n_rec, n_adc = c["record_count"][0], c["adc_samples"][0]
        records += await read_records(host, s, n_rec)
        adc_rows.append(await read_adc(host, n_adc))
        adc_counts.append(n_adc)
        await host.edge()
        if each_sample:
            res = await read_ppu(host, ppu, synapses=ppu.read_synapses or rewrites)
            if rewrites:
                bridge.inputs = StepInput(cfg, image, gains,
                                          *synapse_arrays(cfg, res["synapses"]))
            res["holds"] = [list(h) for h in bridge.holds if h[0] == s]
            ppu_results.append(res)
            await host.edge()
        cocotb.log.info("sample %d: %d spikes so far, %d records, %d ADC samples", s,
                        len(bridge.spikes), n_rec, n_adc)
    if rows is not None:
        rows.stop()
    await ReadOnly()
    sim_cycles = int(get_sim_time("ps")) // clock_period_ps(cfg)

    B = events.batch
    obs = observables_from_samples(
        cfg, spikes=bridge.spikes, records=records, adc_rows=adc_rows, counters=counters,
        cycles_per_sample=L, n_steps=n_steps, run_seed=run_seed, backend="cosim",
        row_activations=row_acts, row_events=row_events, adc_count=adc_counts)
    wall = time.perf_counter() - wall0
    stats = {
        "simulator": ctx.simulator, "preset": cfg.name, "batch": B, "n_steps": n_steps,
        "live_cycles": B * L, "sim_cycles": sim_cycles, "host_accesses": host.drv.accesses,
        "analog_steps": bridge.steps_run, "image_writes": n_writes,
        "test_wall_s": wall, "image_wall_s": t_image, "run_wall_s": t_runs,
        "compiled_load_s": t_load,
        "cycles_per_s": sim_cycles / wall if wall > 0 else None,
        "live_cycles_per_s": B * L / t_runs if t_runs > 0 else None,
    }
    if ppu is not None:
        stats["ppu"] = ppu_results
    write_results(job, ctx, obs, stats, trace)
    cocotb.log.info("cosim job: %d samples x %d live cycles, %d cycles simulated in %.2f s "
                    "(%.0f cycles/s; running phases %.0f cycles/s)", B, L, sim_cycles, wall,
                    stats["cycles_per_s"] or 0, stats["live_cycles_per_s"] or 0)
    return stats


async def run_ceiling_job(dut, job: Job | None = None) -> dict:
    """The speed ceiling of a build: the job's image (its non-zero words) and
    input events, the same running cycles per sample, but no analog bridge:
    one Timer across each run, no Python on any cycle.  Writes and returns
    ``{"live_cycles", "run_wall_s", "live_cycles_per_s", ...}``."""
    ctx = cosim_context()
    cfg = ctx.cfg
    job = load_job() if job is None else job
    image, events = job.image(cfg), job.events(cfg)
    L = live_cycles(cfg, job.n_steps)
    host = await start(dut, cfg)
    ctrl = host.address("ctrl")
    await write_image(host, image, zeros=False)
    t_runs = 0.0
    for s in range(events.batch):
        await write_events(host, events, s)
        t0 = time.perf_counter()
        await host.drv.write(ctrl, 0b11)
        await Timer((L - 1) * clock_period_ps(cfg), unit="ps")
        await host.drv.write(ctrl, 0)
        t_runs += time.perf_counter() - t0
        await host.edge()
    stats = {"simulator": ctx.simulator, "preset": cfg.name, "live_cycles": events.batch * L,
             "run_wall_s": t_runs,
             "live_cycles_per_s": events.batch * L / t_runs if t_runs > 0 else None}
    job.write_stats(stats)
    return stats


async def run_readback_job(dut, job: Job | None = None) -> dict:
    """Every word of the job's image written through the host bus and read back
    (registers, synapse arrays, analog settings): the configuration path as
    software uses it on silicon.  Writes and returns ``{"words", "mismatches",
    "first", "bad_access"}``; raises AssertionError on a difference or a bad
    access."""
    cfg = cosim_context().cfg
    job = load_job() if job is None else job
    image = job.image(cfg)
    host = await start(dut, cfg)
    writes = await write_image(host, image, zeros=True)
    await host.edge()
    got = await host.drv.read_many([a for a, _ in writes])
    bad = [(a, v, g) for (a, v), g in zip(writes, got, strict=True) if v != g]
    await host.edge()
    stats = {"words": len(writes), "mismatches": len(bad),
             "first": [f"{a:#x}: wrote {v}, read {g}" for a, v, g in bad[:5]],
             "bad_access": int(dut.host_bad_access.value.to_unsigned())}
    job.write_stats(stats)
    assert not bad, f"{len(bad)} of {len(writes)} words read back wrong, first: {stats['first']}"
    assert stats["bad_access"] == 0, f"host_bad_access = {stats['bad_access']}"
    return stats
