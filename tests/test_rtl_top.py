"""The top level in amaranth.sim: a ConfigImage written and read back through the
host bus; an input event routed through playback, crossbar, drivers and synapse
memory into the analog boundary's sums; a spike routed from the neuron back end
through arbiter and crossbar into the recorder."""
import numpy as np
import pytest

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import MINI
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign, pack_event, unpack_array
from spikeloop.rtl.top import Top
from tests.simutil import get, put, simulate

pytestmark = pytest.mark.rtl


class Host:
    """Host-bus transactions for a testbench (one access per cycle)."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    async def write(self, addr, value):
        put(self.ctx, self.dut.host_addr, addr)
        put(self.ctx, self.dut.host_wdata, value)
        put(self.ctx, self.dut.host_we, 1)
        await self.ctx.tick()
        put(self.ctx, self.dut.host_we, 0)

    async def write_image(self, img):
        for addr, value in img.bus_writes():
            await self.write(addr, value)

    async def load_playback(self, cfg, events):
        """``events``: (cycle, link, label) in release order, into the playback
        memory, and ``playback_count``."""
        amap = AddressMap(cfg)
        pb = amap["playback"]
        for i, (cycle, link, label) in enumerate(events):
            await self.write(pb.address(i, 0), cycle)
            await self.write(pb.address(i, 1), label | link << cfg.event_label_bits)
        await self.write(amap["playback_count"].address(0), len(events))

    async def read(self, addr):
        put(self.ctx, self.dut.host_addr, addr)
        put(self.ctx, self.dut.host_re, 1)
        await self.ctx.tick()
        put(self.ctx, self.dut.host_re, 0)
        assert get(self.ctx, self.dut.host_rvalid) == 1
        return get(self.ctx, self.dut.host_rdata)


def test_config_image_reads_back_through_the_bus():
    cfg = MINI
    img = ConfigImage.random(cfg, np.random.default_rng(7))
    writes = img.bus_writes()
    dut = Top(cfg)

    async def bench(ctx):
        host = Host(ctx, dut)
        for addr, value in writes:
            await host.write(addr, value)
        for addr, value in writes:
            got = await host.read(addr)
            assert got == value, f"address {addr:#x}: wrote {value}, read {got}"
        assert get(ctx, dut.host_bad_access) == 0

    simulate(dut, bench, name="top_readback")


def _routing_image(cfg):
    """External link 0 -> bus 0 of half 0 -> driver 0 (rows 0 exc, 1 inh);
    block 0 -> host link 0; neuron 2 enabled with label 0x2a."""
    img = ConfigImage.empty(cfg)
    I_ext0 = cfg.n_blocks
    img.xbar_enable[I_ext0, 0] = 1        # forward every label (mask 0, target 0)
    img.xbar_enable[0, cfg.n_buses] = 1
    img.row_sign[0, 0] = RowSign.EXC
    img.row_sign[0, 1] = RowSign.INH
    img.synapse_weight[0, 0, 3], img.synapse_label[0, 0, 3] = 17, 5
    img.synapse_weight[0, 1, 3], img.synapse_label[0, 1, 3] = 9, 5
    img.synapse_weight[0, 0, 4], img.synapse_label[0, 0, 4] = 30, 6
    img.neuron_enable[2] = 1
    img.neuron_label[2] = 0x2a
    return img


@pytest.mark.parametrize("address,exc,inh", [(5, 17, 9), (6, 30, 0), (7, 0, 0)])
def test_input_event_reaches_the_analog_boundary(address, exc, inh):
    cfg = MINI
    img = _routing_image(cfg)
    amap = AddressMap(cfg)
    dut = Top(cfg)
    col = 3 if address != 6 else 4

    async def bench(ctx):
        host = Host(ctx, dut)
        await host.write_image(img)
        await host.load_playback(cfg, [(10, 0, pack_event(cfg, address))])
        await host.write(amap["ctrl"].address(0), 0b11)               # run | clear
        sums = []
        for _ in range(6 * cfg.analog_step_cycles):
            if get(ctx, dut.step_done):
                e = unpack_array(get(ctx, dut.exc_sum), dut.sum_bits, cfg.n_neurons)
                i = unpack_array(get(ctx, dut.inh_sum), dut.sum_bits, cfg.n_neurons)
                sums.append((e, i))
            await ctx.tick()
        total_e = [sum(s[0][c] for s in sums) for c in range(cfg.n_neurons)]
        total_i = [sum(s[1][c] for s in sums) for c in range(cfg.n_neurons)]
        want_e = [exc if c == col else 0 for c in range(cfg.n_neurons)]
        want_i = [inh if c == col else 0 for c in range(cfg.n_neurons)]
        assert (total_e, total_i) == (want_e, want_i)
        assert await host.read(amap["playback_done"].address(0)) == 1
        assert await host.read(amap["playback_late"].address(0)) == 0
        node = cfg.n_blocks * cfg.crossbar_outputs + 0
        assert await host.read(amap["xbar_events"].address(node)) == 1

    simulate(dut, bench, name="top_route")


def test_spike_is_recorded_with_its_label_and_time():
    cfg = MINI
    img = _routing_image(cfg)
    img.refractory[2] = 3
    amap = AddressMap(cfg)
    dut = Top(cfg)

    async def bench(ctx):
        host = Host(ctx, dut)
        await host.write_image(img)
        await host.write(amap["ctrl"].address(0), 0b11)
        for _ in range(5):
            await ctx.tick()
        t_spike = get(ctx, dut.time)
        put(ctx, dut.spike_in, 0b0100 | 0b1000)   # neuron 3 is disabled
        await ctx.tick()
        put(ctx, dut.spike_in, 0b0100)            # refractory: ignored
        await ctx.tick()
        put(ctx, dut.spike_in, 0)
        for _ in range(20):
            await ctx.tick()
        await host.write(amap["ctrl"].address(0), 0)
        assert await host.read(amap["record_count"].address(0)) == 1
        t = await host.read(amap["record"].address(0, 0))
        word1 = await host.read(amap["record"].address(0, 1))
        assert word1 & ((1 << cfg.event_label_bits) - 1) == 0x2a
        assert word1 >> cfg.event_label_bits == 0                     # host link 0
        assert t_spike < t <= t_spike + 8, (t_spike, t)
        assert await host.read(amap["arbiter_drops"].address(0)) == 0

    simulate(dut, bench, name="top_record")


# -- the whole top level against the composed reference (model/digital/top.py) --

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spikeloop.base.layouts import pack_array  # noqa: E402
from spikeloop.base.protocol import ACTIVATION_BITS  # noqa: E402
from spikeloop.model.digital.top import ChipDigitalRef  # noqa: E402


def _dense_image(cfg, rng):
    """A random image that actually routes: few labels, broad masks, many enabled
    nodes, so events multicast, collide, queue and drop."""
    img = ConfigImage.random(cfg, rng)
    lb = cfg.event_label_bits
    img.xbar_enable = rng.integers(0, 2, size=img.xbar_enable.shape)
    img.xbar_mask = rng.choice([0, 1, 3], size=img.xbar_mask.shape)
    img.xbar_target = rng.integers(0, 2, size=img.xbar_target.shape) & img.xbar_mask
    img.driver_mask = rng.choice([0, 1, 0b11111], size=img.driver_mask.shape)
    img.synapse_label = rng.integers(0, 4, size=img.synapse_label.shape)
    img.neuron_label = rng.integers(0, 1 << lb, size=img.neuron_label.shape) & ~0b111100
    img.refractory = rng.integers(0, 4, size=img.refractory.shape)
    img.refractory_prescale = np.int64(rng.integers(0, 2))
    img.adc_period = np.int64(rng.choice([0, 3, 8]))
    return img


@settings(max_examples=4, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_events=st.integers(0, 24),
       spike_rate=st.sampled_from([0.0, 0.2, 0.9]))
def test_top_matches_composed_reference(seed, n_events, spike_rate):
    compare_top(MINI, seed, n_events, spike_rate)


def compare_top(cfg, seed, n_events, spike_rate, adjust=None, *, cycles=None,
                adc_entries=None):
    """A dense random image (``adjust(img)`` changes it further), ``n_events`` input
    events and spikes at ``spike_rate``: the top level against the composed
    reference, every cycle (``cycles`` running cycles, default 6 analog steps),
    then every counter, the record and the ADC buffer's entries ``adc_entries``
    (default: the first two samples).  Returns the reference."""
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    img = _dense_image(cfg, rng)
    if adjust is not None:
        adjust(img)
    cycles = cycles or 6 * cfg.analog_step_cycles
    ev = sorted((int(rng.integers(0, cycles // 2)), int(rng.integers(0, cfg.n_ext_inputs)),
                 int(rng.integers(0, 1 << cfg.event_label_bits)) & ~0b111100)
                for _ in range(n_events))
    spikes = [int(sum(1 << i for i in range(cfg.n_neurons) if rng.random() < spike_rate))
              for _ in range(cycles)]
    codes = [list(rng.integers(0, 256, size=cfg.n_neurons)) for _ in range(cycles)]
    amap = AddressMap(cfg)
    ref = ChipDigitalRef(cfg, img)
    dut = Top(cfg, activation_counters=True)     # as every co-simulation builds it
    bits = dut.sum_bits

    async def bench(ctx):
        host = Host(ctx, dut)
        await host.write_image(img)
        await host.load_playback(cfg, ev)
        await host.write(amap["ctrl"].address(0), 0b11)
        exp = ref.start(ev)
        for cycle in range(cycles + 1):
            if cycle:
                put(ctx, dut.spike_in, spikes[cycle - 1])
                put(ctx, dut.adc_codes, pack_array(codes[cycle - 1], cfg.adc_bits))
                exp = ref.tick(spikes[cycle - 1], codes[cycle - 1])
            got = {
                "time": get(ctx, dut.time),
                "exc_sum": unpack_array(get(ctx, dut.exc_sum), bits, cfg.n_neurons),
                "inh_sum": unpack_array(get(ctx, dut.inh_sum), bits, cfg.n_neurons),
                "step_done": get(ctx, dut.step_done),
                "refractory_active": get(ctx, dut.refractory_active),
                "adc_sample": get(ctx, dut.adc_sample),
            }
            # in the clear cycle (0) the outputs still show the state from before the run
            for k, v in got.items() if cycle else ():
                assert v == exp[k], f"cycle {cycle} (seed {seed}): {k}: RTL {v} != ref {exp[k]}"
            await ctx.tick()
        put(ctx, dut.spike_in, 0)
        await host.write(amap["ctrl"].address(0), 0)   # still a running cycle
        ref.tick(0, codes[-1])
        for _ in range(40):                         # stopped: events in flight drain
            got = get(ctx, dut.time)
            assert got == ref.tick(0, codes[-1], running=False)["time"]
            await ctx.tick()
        want = ref.final_counters()
        # the simulation instrumentation: each driver's activations since the clear
        acts = unpack_array(get(ctx, dut.row_activations), ACTIVATION_BITS,
                            cfg.n_halves * cfg.drivers_per_half)
        assert acts == want["row_activations"], (
            f"row_activations (seed {seed}): RTL {acts} != ref {want['row_activations']}")
        for name in ("xbar_events", "xbar_drops", "arbiter_drops", "driver_unmatched",
                     "playback_late", "record_drops", "adc_overflow", "record_count",
                     "adc_samples"):
            r = amap[name]
            values = want[name] if isinstance(want[name], list) else [want[name]]
            got = [await host.read(r.address(i)) for i in range(r.count)]
            assert got == values, f"{name} (seed {seed}): RTL {got} != ref {values}"
        rec = amap["record"]
        for i, word in enumerate(ref.recorder.entries()):
            from spikeloop.base.layouts import unpack_timed_event
            label, link, t = unpack_timed_event(cfg, cfg.n_host_links, word)
            assert await host.read(rec.address(i, 0)) == t
            assert await host.read(rec.address(i, 1)) == label | link << cfg.event_label_bits
        adc = amap["adc"]
        entries = range(min(ref.adc.n_samples, 2)) if adc_entries is None else adc_entries
        for s in entries:
            for n in range(cfg.n_neurons):
                assert await host.read(adc.address(s * cfg.n_neurons + n)) == ref.adc.read(s, n)

    simulate(dut, bench, name="top_vs_ref")
    return ref


@pytest.mark.parametrize("depth", [MINI.adc_buffer_depth, 5])
def test_top_adc_ring_matches_composed_reference(depth):
    """The ADC ring (``adc_ring``) on mini and on a depth that is no power of
    two: a sample every cycle for longer than the buffer holds, so the ring
    wraps; the host's ``adc_samples`` counts every sample (read with the
    counters), ``adc_overflow`` stays 0, entries read back after the wrap."""
    cfg = MINI.replace(adc_ring=True, adc_buffer_depth=depth)

    def every_cycle(img):
        img.adc_period = np.int64(1)

    cycles = max(depth + 20, 6 * cfg.analog_step_cycles)
    ref = compare_top(cfg, 21 + depth, 12, 0.2, every_cycle, cycles=cycles,
                      adc_entries=sorted({0, 1, depth // 2, depth - 2, depth - 1}))
    assert ref.adc.n_samples > depth and ref.adc.overflow == 0
    assert sum(ref.final_counters()["row_activations"]) > 0    # the counters counted
    assert ref.adc.wptr == ref.adc.n_samples % depth


def test_every_run_restarts_the_counters():
    """A second run (ctrl = run | clear) starts every counter from zero: here an
    input event that matches no synapse driver, counted once per run."""
    cfg = MINI
    img = _routing_image(cfg)
    img.driver_mask[0, :] = (1 << cfg.row_select_bits) - 1
    img.driver_select[0, :] = 1                       # the event's row select 0 misses all
    amap = AddressMap(cfg)
    dut = Top(cfg)

    async def bench(ctx):
        host = Host(ctx, dut)
        await host.write_image(img)
        await host.load_playback(cfg, [(3, 0, pack_event(cfg, 5))])
        for run in range(3):
            await host.write(amap["ctrl"].address(0), 0b11)
            for _ in range(4 * cfg.analog_step_cycles):
                await ctx.tick()
            await host.write(amap["ctrl"].address(0), 0)
            for _ in range(8):
                await ctx.tick()
            got = [await host.read(amap["driver_unmatched"].address(b))
                   for b in range(cfg.n_buses)]
            assert got == [1] + [0] * (cfg.n_buses - 1), f"run {run}: unmatched {got}"
            node = cfg.n_blocks * cfg.crossbar_outputs
            assert await host.read(amap["xbar_events"].address(node)) == 1, f"run {run}"

    simulate(dut, bench, name="top_counters_restart")


# -- the PPU inside the top level, against the composed reference ----------------

import random  # noqa: E402

from spikeloop.base.isa import chip_geometry  # noqa: E402
from spikeloop.ppu import programs as ppu_programs  # noqa: E402
from spikeloop.ppu.asm import assemble  # noqa: E402


def run_ppu_in_top(cfg, img, words, dmem, *, start_at=0, stop_at=None, cycles=None,
                   ev=(), spike_rate=0.1, seed=0, after=200):
    """Host writes ``img``, the program ``words`` and the data words ``dmem``
    ((index, word) pairs), starts a run and, in running cycle ``start_at`` (0:
    the clear cycle), writes ``ppu_ctrl`` start (``stop_at``: stop); every
    output of the top and the PPU's state compared with ChipDigitalRef every
    cycle, then every synapse, the output buffer, the PPU's status and data
    words read back through the host bus.  Returns the reference and the
    reference's outputs of the running cycles."""
    rng = np.random.default_rng(seed)
    cycles = cycles or 6 * cfg.analog_step_cycles
    amap = AddressMap(cfg)
    ref = ChipDigitalRef(cfg, img)
    ref.ppu.load(words)
    for i, w in dmem:
        ref.ppu.write_dmem(i, w)
    dut = Top(cfg)
    bits = dut.sum_bits
    n = cfg.n_neurons
    spikes = [int(sum(1 << i for i in range(n) if rng.random() < spike_rate))
              for _ in range(cycles)]
    codes = [list(rng.integers(0, 256, size=n)) for _ in range(cycles)]
    ctrl_ppu = amap["ppu_ctrl"].address(0)
    g = chip_geometry(cfg)
    pulses = {start_at: 1}
    if stop_at is not None:
        pulses[stop_at] = pulses.get(stop_at, 0) | 2

    async def bench(ctx):
        host = Host(ctx, dut)
        await host.write_image(img)
        await host.load_playback(cfg, list(ev))
        for i, w in enumerate(words):
            await host.write(amap["ppu_imem"].address(i), w)
        for i, w in dmem:
            await host.write(amap["ppu_dmem"].address(i), w)
        await host.write(amap["ctrl"].address(0), 0b11)
        exp = ref.start(list(ev))
        trace.clear()
        pulse = 0
        for cycle in range(cycles + 1):
            if cycle:
                put(ctx, dut.spike_in, spikes[cycle - 1])
                put(ctx, dut.adc_codes, pack_array(codes[cycle - 1], cfg.adc_bits))
                exp = ref.tick(spikes[cycle - 1], codes[cycle - 1],
                               ppu_start=pulse & 1, ppu_stop=pulse >> 1)
            got = {
                "time": get(ctx, dut.time),
                "exc_sum": unpack_array(get(ctx, dut.exc_sum), bits, n),
                "inh_sum": unpack_array(get(ctx, dut.inh_sum), bits, n),
                "step_done": get(ctx, dut.step_done),
                "refractory_active": get(ctx, dut.refractory_active),
                "adc_sample": get(ctx, dut.adc_sample),
                "ppu_running": get(ctx, dut.ppu.running),
                "ppu_halted": get(ctx, dut.ppu.halted),
                "ppu_pc": get(ctx, dut.ppu.pc),
                "ppu_cycles": get(ctx, dut.ppu.cycles),
                "nreset": get(ctx, dut.ppu.nreset),
            }
            for k, v in got.items() if cycle else ():
                assert v == exp[k], f"cycle {cycle}: {k}: RTL {v} != ref {exp[k]}"
            if cycle:
                trace.append(exp)
            pulse = pulses.get(cycle, 0)
            if pulse:        # the host's ppu_ctrl write, sampled by this cycle's edge
                put(ctx, dut.host_addr, ctrl_ppu)
                put(ctx, dut.host_wdata, pulse)
                put(ctx, dut.host_we, 1)
            await ctx.tick()
            put(ctx, dut.host_we, 0)
        await host.write(amap["ctrl"].address(0), 0)
        ref.tick(0, codes[-1])
        for _ in range(after):                  # the PPU may still run, the chip stopped
            ref.tick(0, codes[-1], running=False)
            await ctx.tick()
        st_ = ref.ppu.sim
        assert await host.read(amap["ppu_status"].address(0)) == (
            int(st_.running) | int(st_.halted) << 1)
        assert await host.read(amap["ppu_pc"].address(0)) == st_.pc
        assert await host.read(amap["ppu_cycles"].address(0)) == st_.cycle
        fc = ref.final_counters()
        assert await host.read(amap["ppu_out_count"].address(0)) == fc["ppu_out_count"]
        assert await host.read(amap["ppu_out_drops"].address(0)) == fc["ppu_out_drops"]
        assert await host.read(amap["syn_host_lost"].address(0)) == 0
        out = amap["ppu_out"]
        for i, vec in enumerate(ref.ppu_out[:4]):
            want = unpack_array(vec, 32, g.vector_words)
            got = [await host.read(out.address(i * g.vector_words + w))
                   for w in range(g.vector_words)]
            assert got == want, f"ppu_out vector {i}: RTL {got} != ref {want}"
        if not st_.running:
            dm = amap["ppu_dmem"]
            for i in range(64):
                assert await host.read(dm.address(i)) == st_.dmem[i], f"dmem word {i}"
        for h in range(cfg.n_halves):
            r = amap[f"synapses{h}"]
            for a in range(r.count):
                row, col = divmod(a, cfg.columns_per_half)
                w, lab = ref.synapses[h].mem[row][col]
                assert await host.read(r.address(a)) == w | lab << cfg.weight_bits, (
                    f"synapse half {h} row {row} column {col}")

    trace = []
    simulate(dut, bench, name="top_ppu")
    return ref, trace


def _quiet_image(cfg, rng):
    img = _dense_image(cfg, rng)
    img.refractory[:] = 0
    img.adc_period = np.int64(4)
    return img


def test_top_ppu_weight_update_matches_reference_and_numpy():
    cfg = MINI
    rng = np.random.default_rng(3)
    img = _quiet_image(cfg, rng)
    g = chip_geometry(cfg)
    first, M = 3, 9                              # row chunks 3..11: both halves on mini
    upd = rng.integers(-128, 128, size=(M, g.lanes(8)))
    words = ppu_programs.program("weight_update", cfg).words
    dmem = ppu_programs.weight_update_dmem(cfg, first, upd)
    ref, _ = run_ppu_in_top(cfg, img, words, dmem, start_at=5,
                         cycles=ppu_programs.weight_update_cycles(cfg, M) + 20)
    got = np.array([[[w for w, _ in row] for row in s.mem] for s in ref.synapses])
    want = ppu_programs.weight_update_numpy(cfg, img.synapse_weight, first, upd)
    assert (got == want).all()
    assert ref.ppu.sim.halted and ref.ppu.sim.cycle == ppu_programs.weight_update_cycles(cfg, M)


def test_top_ppu_trace_and_inference_match_reference():
    """The trace program streams the run's ADC samples; the inference program's resets hold the
    neurons (refractory_active) for the analog step of the reset cycle."""
    cfg = MINI
    rng = np.random.default_rng(4)
    img = _quiet_image(cfg, rng)
    n_rec = 5
    ref, _ = run_ppu_in_top(cfg, img, ppu_programs.program("trace", cfg).words,
                         ppu_programs.trace_dmem(cfg, n_rec), start_at=0, cycles=40)
    codes = ppu_programs.trace_vectors_to_codes(cfg, ref.ppu_out)
    assert codes.shape == (n_rec, cfg.n_neurons)
    assert codes.tolist() == [ref.adc.buffer[s] for s in range(n_rec)]
    S = cfg.analog_step_cycles
    spacing = 3 * S + 5
    ref, trace = run_ppu_in_top(cfg, img, ppu_programs.program("inference", cfg).words,
                                ppu_programs.inference_dmem(cfg, 3, spacing), start_at=0,
                                cycles=3 * spacing + 3 * S, spike_rate=0.0)
    seen = [ref.ppu.sim.dmem[ppu_programs.RESET_LOG + k] for k in (1, 2)]
    assert all(k * spacing <= t <= k * spacing + 1 for k, t in zip((1, 2), seen, strict=True)), seen
    # the resets: in cycles seen + 3 (one neuron chunk on mini), every neuron
    resets = [o["time"] for o in trace if o["nreset"]]
    assert resets == [t + 3 for t in seen]
    assert all(o["nreset"] == (1 << cfg.n_neurons) - 1 for o in trace if o["nreset"])
    # held for exactly the analog step that contains the reset cycle
    held = [o["time"] // S - 1 for o in trace if o["step_done"] and o["refractory_active"]]
    assert held == [c // S for c in resets], (held, resets)


@pytest.mark.parametrize("start_at,stop_at", [(2, None), (0, 90)])
def test_top_random_ppu_program_matches_reference(start_at, stop_at):
    """A random program (tests/test_ppu_rtl.py's generator: row reads and
    writes, ADC reads, resets, stream) during a run with random spikes and
    input events; a stop in the middle for the second case."""
    _random_ppu_run(11 + start_at, start_at, stop_at, require_ports=True)


@pytest.mark.slow
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.nested_given])
@given(seed=st.integers(0, 2**32 - 1), start_at=st.integers(0, 30),
       stop_at=st.one_of(st.none(), st.integers(31, 149)))   # the run has 150 cycles
def test_top_random_ppu_programs_long(seed, start_at, stop_at):
    print(f"seed {seed}")
    _random_ppu_run(seed, start_at, stop_at, require_ports=False)


def _random_ppu_run(seed, start_at, stop_at, *, require_ports):
    from tests.test_ppu_rtl import random_program

    cfg = MINI
    prng = random.Random(seed)
    rng = np.random.default_rng(seed)
    img = _quiet_image(cfg, rng)
    g = chip_geometry(cfg)
    src = "\n".join(random_program(prng, g, 40))
    words = assemble(src, cfg).words
    dmem = [(i, prng.randrange(1 << 32)) for i in range(g.vector_words * 8 + 13)]
    ref, trace = run_ppu_in_top(cfg, img, words, dmem, start_at=start_at, stop_at=stop_at,
                                cycles=150, seed=seed)
    if require_ports:   # the program reached the chip's ports
        assert ref.ppu.sim.stream or ref.ppu.sim.resets
    if stop_at is not None:
        # stopped, unless the program reached its halt before the stop (halted stays set)
        assert not ref.ppu.sim.running


# -- the ADC ring (adc_ring) with a PPU program reading it -------------------------


def test_top_adc_ring_trace_program_matches_reference():
    """mini with the ring, a sample every cycle for 100 cycles: the trace program
    (which reads entry k for sample k, about 14 cycles per sample) reads most
    entries after the ring has wrapped over them, so it streams later samples
    than those it waited for."""
    cfg = MINI.replace(adc_ring=True)
    img = _quiet_image(cfg, np.random.default_rng(6))
    img.adc_period = np.int64(1)
    S = cfg.adc_buffer_depth
    n_rec = 20
    ref, _ = run_ppu_in_top(cfg, img, ppu_programs.program("trace", cfg).words,
                            ppu_programs.trace_dmem(cfg, n_rec), start_at=0,
                            cycles=S + 36, after=400)
    assert ref.adc.n_samples > S and ref.adc.overflow == 0
    # halted within the cycles compared, so the host's read-back is of the end state
    assert ref.ppu.sim.halted and len(ref.ppu_out) == n_rec
    codes = ppu_programs.trace_vectors_to_codes(cfg, ref.ppu_out).tolist()
    # entry 0 was read (sample 0) before sample S overwrote it; entries from 8 on
    # were read after their overwrite by sample S + k, and hold it to the end
    assert codes[0] != ref.adc.buffer[0]
    assert codes[8:] == [ref.adc.buffer[k] for k in range(8, n_rec)]


@pytest.mark.parametrize("period,missed", [(None, 0), (3, None)])
def test_top_adc_ring_stream_program_matches_reference(period, missed):
    """The stream program on a ring of depth 5: every sample streamed while the
    program keeps up (the period it needs), samples counted as missed when the
    ADC is faster than the program (period 3)."""
    cfg = MINI.replace(adc_ring=True, adc_buffer_depth=5)
    g = chip_geometry(cfg)
    chunks = g.adc_chunks
    need = ppu_programs.stream_cycles_per_sample(cfg, chunks)
    img = _quiet_image(cfg, np.random.default_rng(8))
    img.adc_period = np.int64(period or need)
    n = 12                                              # > 2 * depth: wraps twice
    dmem = [(ppu_programs.STREAM_N, n), (ppu_programs.STREAM_FIRST_CHUNK, 0),
            (ppu_programs.STREAM_CHUNKS, chunks)]
    if period is None:
        assert dmem == ppu_programs.stream_dmem(cfg, n, 0, chunks, adc_period=need)
    ref, _ = run_ppu_in_top(cfg, img, ppu_programs.program("stream", cfg).words, dmem,
                            start_at=0, cycles=n * int(img.adc_period) + 40)
    assert ref.ppu.sim.halted and ref.adc.n_samples >= n
    got_missed = ref.ppu.sim.dmem[ppu_programs.STREAM_MISSED]
    if missed is not None:
        assert got_missed == missed
        assert len(ref.ppu_out) == n * chunks
    else:
        assert got_missed > 0 and len(ref.ppu_out) == (n - got_missed) * chunks
