"""cocotb test of the whole chip (component "top") with the analog model in the
loop: runs one *job* (a batch of samples) by the run protocol of
spikeloop/base/protocol.py and writes the Observables.

Run it through :func:`spikeloop.cosim.backend.run_cosim`, which writes the job
and sets :data:`ENV_JOB` to the path of its JSON description::

    {"chip": "chip.npz",          # Chip.save format (config, seed, calibration)
     "image": "image.npz",        # ConfigImage.save
     "events": "events.npz",      # InputEvents.save
     "n_steps": 30, "run_seed": 1, "sample_offset": 0,
     "output": "observables.npz", # Observables.save (backend "cosim")
     "stats": "stats.json",       # cycles, wall time, host accesses
     "membranes": false,          # write membranes.vcd/.csv into the run directory
     "write_zeros": true,         # false: write only the image's non-zero words
     "ppu": null}                 # optional: a PPU program (below)

``ppu`` (optional): ``{"words": [...], "dmem": [[index, word], ...], "when":
"before" | "each_sample", "read_dmem": [indices], "read_synapses": bool,
"max_cycles": N}`` (spikeloop/base/ppu_job.py): the program and its data
are written through the host bus after the image; ``before``: the PPU is
started and run to its halt before the first sample (e.g. a weight update
that the samples then use), and every synapse is read back;
``each_sample``: ``ppu_ctrl`` start is written in the clear cycle of every
sample: the start pulse is high in running cycle 0 and the PPU executes its
first instruction in cycle 1 (``time = 1``); the synapses are read back
after each run with ``read_synapses``.  After each PPU run (for
``each_sample``: after the sample's read-back) the host waits for the halt
(at most ``max_cycles``) and reads ``ppu_status``, ``ppu_pc``,
``ppu_cycles``, the output buffer and the dmem words asked for; the results
go to the stats file as ``"ppu"`` (one dict per PPU run), with the bridge's
held steps (sample, step, mask) of that sample.

Everything the test does to the chip goes through the top level's ports: the
image, the input events, ``ctrl`` and every read-back through the host bus
(HostBusDriver); the analog side through the bridge (cosim/bridge.py).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge

from spikeloop.cosim.host import HostBusDriver, clock_period_ps, start_clock
from spikeloop.cosim.runner import cosim_context

#: environment variable holding the path of the job's JSON description
ENV_JOB = "SPIKELOOP_COSIM_JOB"

COUNTERS = ("xbar_events", "xbar_drops", "arbiter_drops", "driver_unmatched",
            "playback_late", "record_drops", "adc_overflow", "record_count", "adc_samples")


def _job_path(job: dict, key: str, base: Path) -> Path:
    p = Path(job[key])
    return p if p.is_absolute() else base / p


def _load_job() -> tuple[dict, Path]:
    """The job description and the folder its relative paths start from."""
    job_file = Path(os.environ[ENV_JOB])
    return json.loads(job_file.read_text()), job_file.parent


async def _start(dut, cfg) -> HostBusDriver:
    """Idle analog inputs, the clock, and a host-bus driver through reset."""
    dut.spike_in.value = 0
    dut.adc_codes.value = 0
    dut.settings_addr.value = 0
    start_clock(dut, cfg)
    drv = HostBusDriver(dut)
    await drv.reset()
    return drv


async def _ppu_results(drv: HostBusDriver, amap, cfg, ppu: dict, synapses: bool) -> dict:
    """Wait (polling ``ppu_status``) until the PPU is not running, at most
    ``ppu["max_cycles"]`` cycles, then read its status, cycles, pc, output
    buffer, the dmem words ``ppu["read_dmem"]`` and, with ``synapses``, every
    synapse word of both halves (``synapses``: one list per half)."""
    from spikeloop.base.isa import chip_geometry
    from spikeloop.base.layouts import pack_array

    g = chip_geometry(cfg)
    status = amap["ppu_status"].address(0)
    limit = int(ppu.get("max_cycles", 100_000))
    waited = 0
    for _ in range(2):     # a start written just now: the pulse, then running
        await RisingEdge(drv.clk)
    while (await drv.read(status)) & 1:
        if waited > limit:
            raise AssertionError(f"the PPU still runs {waited} cycles after the last check "
                                 f"(max_cycles = {limit}); pc = "
                                 f"{await drv.read(amap['ppu_pc'].address(0))}")
        await RisingEdge(drv.clk)
        waited += 2
    await RisingEdge(drv.clk)
    st, pc, cycles, count, drops = await drv.read_many(
        [amap[k].address(0) for k in ("ppu_status", "ppu_pc", "ppu_cycles", "ppu_out_count",
                                      "ppu_out_drops")])
    out = []
    if count:
        await RisingEdge(drv.clk)
        words = await drv.read_many([amap["ppu_out"].address(i)
                                     for i in range(count * g.vector_words)])
        out = [pack_array(words[i * g.vector_words:(i + 1) * g.vector_words], 32, wrap=True)
               for i in range(count)]
    dmem = {}
    if ppu.get("read_dmem"):
        await RisingEdge(drv.clk)
        idx = [int(i) for i in ppu["read_dmem"]]
        dmem = dict(zip(idx, await drv.read_many([amap["ppu_dmem"].address(i) for i in idx]),
                        strict=True))
    await RisingEdge(drv.clk)
    res = {"status": st, "pc": pc, "cycles": cycles, "out_count": count, "out_drops": drops,
           "out": [hex(v) for v in out], "dmem": {str(k): v for k, v in dmem.items()}}
    if synapses:
        syn = []
        for h in range(cfg.n_halves):
            r = amap[f"synapses{h}"]
            syn.append(await drv.read_many([r.address(i) for i in range(r.count)]))
            await RisingEdge(drv.clk)
        res["synapses"] = syn
    return res


@cocotb.test(skip=ENV_JOB not in os.environ)
async def test_run_job(dut):
    """Image, then per sample: playback, run with the analog bridge, stop,
    drain, read back; the Observables go to the job's output path."""
    # heavy imports inside the test: the module is imported by every cocotb run
    # that lists it, the analog model only when a job runs
    import numpy as np
    import torch

    from spikeloop.base.addrmap import AddressMap
    from spikeloop.base.events import InputEvents, observables_from_samples
    from spikeloop.base.image import ConfigImage
    from spikeloop.base.layouts import unpack_array
    from spikeloop.base.protocol import DRAIN_CYCLES, live_cycles
    from spikeloop.cosim.bridge import (
        AnalogBridge,
        MembraneTrace,
        write_membrane_csv,
        write_membrane_vcd,
    )
    from spikeloop.model.analog_loop import AnalogLoop
    from spikeloop.model.chip import Chip

    # one thread: the analog model's per-step tensors are tiny, a second thread
    # only contends with the simulator (as tests/conftest.py does for pytest)
    torch.set_num_threads(1)
    wall0 = time.perf_counter()
    ctx = cosim_context()
    cfg = ctx.cfg
    job, base = _load_job()
    chip = Chip.load(_job_path(job, "chip", base))
    assert chip.cfg == cfg, f"the job's chip is preset {chip.cfg.name!r}, the build {cfg.name!r}"
    image = ConfigImage.load(_job_path(job, "image", base), cfg)
    events = InputEvents.load(_job_path(job, "events", base), cfg)
    n_steps, run_seed = int(job["n_steps"]), int(job["run_seed"])
    sample_offset = int(job.get("sample_offset", 0))
    n, elb = cfg.n_neurons, cfg.event_label_bits
    L = live_cycles(cfg, n_steps)
    amap = AddressMap(cfg)
    ctrl = amap["ctrl"].address(0)
    period = clock_period_ps(cfg)

    drv = await _start(dut, cfg)
    t_image = time.perf_counter()
    if job.get("write_zeros", True):
        n_writes = await drv.write_image(image)
    else:   # power-up state: registers reset to 0, memories initialised to 0
        writes = [(a, v) for a, v in image.bus_writes() if v]
        await drv.write_many(writes)
        n_writes = len(writes)
    t_image = time.perf_counter() - t_image
    cocotb.log.info("image: %d host writes in %.2f s", n_writes, t_image)
    if cfg.n_halves == 2:
        # the analog side takes the merge switches from the register the host wrote
        for _ in range(2):                         # past the edge of the last write
            await RisingEdge(dut.clk)
        merge = unpack_array(int(dut.neuron_merge.value), 1, cfg.columns_per_half)
        image = image.copy()
        image.neuron_merge = np.asarray(merge, dtype=np.int64)

    ppu = job.get("ppu")
    ppu_results = []
    if ppu:
        if ppu["when"] not in ("before", "each_sample"):
            raise ValueError(f"job ppu.when = {ppu['when']!r}; allowed: before, each_sample")
        await drv.write_many(
            [(amap["ppu_imem"].address(i), int(w)) for i, w in enumerate(ppu["words"])]
            + [(amap["ppu_dmem"].address(int(i)), int(w)) for i, w in ppu.get("dmem", [])])
        if ppu["when"] == "before":
            await drv.write(amap["ppu_ctrl"].address(0), 1)
            res = await _ppu_results(drv, amap, cfg, ppu, synapses=True)
            ppu_results.append(res)
            await RisingEdge(dut.clk)

    trace = MembraneTrace(n) if job.get("membranes") else None
    bridge = AnalogBridge(dut, cfg, trace=trace)
    records, adc_rows = [], []
    counters = {k: [] for k in COUNTERS}
    t_runs = 0.0
    for s in range(events.batch):
        loop = AnalogLoop(chip, image, [sample_offset + s], run_seed)
        loop.plan_steps(n_steps)                   # noise of many steps per call, same bits
        await drv.write_many(events.bus_writes(s))
        bridge.drive_codes(loop)                   # before step 0: the initial membranes
        t0 = time.perf_counter()
        await drv.write(ctrl, 0b11)                # run | clear: the next cycle clears
        if ppu and ppu["when"] == "each_sample":   # start: the pulse in r = 0, the PPU from r = 1
            await drv.write(amap["ppu_ctrl"].address(0), 1)
        else:
            await RisingEdge(dut.clk)              # the edge that ends the clear cycle: r = 0
        await bridge.run(loop, s, n_steps)         # returns at the start of r = L - 1
        await drv.write(ctrl, 0)                   # the last running cycle
        t_runs += time.perf_counter() - t0
        for _ in range(DRAIN_CYCLES):              # the drain: time stands still
            await RisingEdge(dut.clk)
        # the first read is sampled at the end of drain cycle DRAIN_CYCLES, i.e. the
        # state after DRAIN_CYCLES stopped cycles, as the reference reads it; time
        # and every counter in one pipelined burst
        addrs, spans = [amap["time"].address(0)], {}
        for key in COUNTERS:
            r = amap[key]
            spans[key] = (len(addrs), r.count)
            addrs += [r.address(i) for i in range(r.count)]
        vals = await drv.read_many(addrs)
        assert vals[0] == L, (f"sample {s}: time reads {vals[0]} after the run, "
                              f"live_cycles = {L}")
        assert str(dut.running.value) == "0"
        c = {k: vals[a:a + m] for k, (a, m) in spans.items()}
        for key in COUNTERS:
            counters[key].append(c[key])
        n_rec, n_adc = c["record_count"][0], c["adc_samples"][0]
        rec = amap["record"]
        await RisingEdge(dut.clk)
        words = await drv.read_many([rec.address(i, w) for i in range(n_rec) for w in (0, 1)])
        for i in range(n_rec):
            t, w1 = words[2 * i], words[2 * i + 1]
            records.append((s, t, w1 >> elb, w1 & ((1 << elb) - 1)))
        adc = amap["adc"]
        await RisingEdge(dut.clk)
        codes = await drv.read_many([adc.address(i) for i in range(n_adc * n)])
        adc_rows.append([codes[k * n:(k + 1) * n] for k in range(n_adc)])
        await RisingEdge(dut.clk)
        if ppu and ppu["when"] == "each_sample":
            res = await _ppu_results(drv, amap, cfg, ppu,
                                     synapses=bool(ppu.get("read_synapses")))
            res["holds"] = [list(h) for h in bridge.holds if h[0] == s]
            ppu_results.append(res)
            await RisingEdge(dut.clk)
        cocotb.log.info("sample %d: %d spikes so far, %d records, %d ADC samples", s,
                        len(bridge.spikes), n_rec, n_adc)
    await ReadOnly()
    sim_cycles = int(get_sim_time("ps")) // period

    B = events.batch
    obs = observables_from_samples(
        cfg, spikes=bridge.spikes, records=records, adc_rows=adc_rows, counters=counters,
        cycles_per_sample=L, n_steps=n_steps, run_seed=run_seed, backend="cosim")
    out = _job_path(job, "output", base)
    obs.save(out)
    if trace is not None:
        write_membrane_vcd(trace, ctx.run_dir / "membranes.vcd")
        write_membrane_csv(trace, ctx.run_dir / "membranes.csv")
    wall = time.perf_counter() - wall0
    stats = {
        "simulator": ctx.simulator, "preset": cfg.name, "batch": B, "n_steps": n_steps,
        "live_cycles": B * L, "sim_cycles": sim_cycles, "host_accesses": drv.accesses,
        "analog_steps": bridge.steps_run, "image_writes": n_writes,
        "test_wall_s": wall, "image_wall_s": t_image, "run_wall_s": t_runs,
        "cycles_per_s": sim_cycles / wall if wall > 0 else None,
        "live_cycles_per_s": B * L / t_runs if t_runs > 0 else None,
    }
    if ppu:
        stats["ppu"] = ppu_results
    if "stats" in job:
        _job_path(job, "stats", base).write_text(json.dumps(stats, indent=2))
    cocotb.log.info("cosim job: %d samples x %d live cycles, %d cycles simulated in %.2f s "
                    "(%.0f cycles/s; running phases %.0f cycles/s)", B, L, sim_cycles, wall,
                    stats["cycles_per_s"] or 0, stats["live_cycles_per_s"] or 0)


@cocotb.test(skip=ENV_JOB not in os.environ)
async def test_ceiling_job(dut):
    """The speed ceiling of a build: the job's image and input events, the same
    running cycles per sample, but no analog bridge: one Timer across each run,
    no Python on any cycle.  Writes {"live_cycles", "run_wall_s"} to the job's
    stats path."""
    from cocotb.triggers import Timer

    from spikeloop.base.addrmap import AddressMap
    from spikeloop.base.events import InputEvents
    from spikeloop.base.image import ConfigImage
    from spikeloop.base.protocol import live_cycles

    ctx = cosim_context()
    cfg = ctx.cfg
    job, base = _load_job()
    image = ConfigImage.load(_job_path(job, "image", base), cfg)
    events = InputEvents.load(_job_path(job, "events", base), cfg)
    L = live_cycles(cfg, int(job["n_steps"]))
    amap = AddressMap(cfg)
    ctrl = amap["ctrl"].address(0)
    period = clock_period_ps(cfg)
    drv = await _start(dut, cfg)
    await drv.write_many([(a, v) for a, v in image.bus_writes() if v])
    t_runs = 0.0
    for s in range(events.batch):
        await drv.write_many(events.bus_writes(s))
        t0 = time.perf_counter()
        await drv.write(ctrl, 0b11)
        await Timer((L - 1) * period, unit="ps")
        await drv.write(ctrl, 0)
        t_runs += time.perf_counter() - t0
        await RisingEdge(dut.clk)
    stats = {"simulator": ctx.simulator, "preset": cfg.name, "live_cycles": events.batch * L,
             "run_wall_s": t_runs,
             "live_cycles_per_s": events.batch * L / t_runs if t_runs > 0 else None}
    _job_path(job, "stats", base).write_text(json.dumps(stats, indent=2))


@cocotb.test(skip=ENV_JOB not in os.environ)
async def test_readback_job(dut):
    """Every word of the job's image written through the host bus and read back
    (registers, synapse arrays, analog settings): the configuration path as
    software uses it on silicon.  Writes {"words", "mismatches"} to the stats path."""
    from spikeloop.base.image import ConfigImage

    cfg = cosim_context().cfg
    job, base = _load_job()
    image = ConfigImage.load(_job_path(job, "image", base), cfg)
    drv = await _start(dut, cfg)
    writes = image.bus_writes()
    await drv.write_many(writes)
    await RisingEdge(dut.clk)
    got = await drv.read_many([a for a, _ in writes])
    bad = [(a, v, g) for (a, v), g in zip(writes, got, strict=True) if v != g]
    await RisingEdge(dut.clk)
    stats = {"words": len(writes), "mismatches": len(bad),
             "first": [f"{a:#x}: wrote {v}, read {g}" for a, v, g in bad[:5]],
             "bad_access": int(dut.host_bad_access.value.to_unsigned())}
    _job_path(job, "stats", base).write_text(json.dumps(stats, indent=2))
    assert not bad, f"{len(bad)} of {len(writes)} words read back wrong, first: {stats['first']}"
    assert stats["bad_access"] == 0
