"""The top level in amaranth.sim: a ConfigImage written and read back through the
host bus; an input event routed through playback, crossbar, drivers and synapse
memory into the analog boundary's sums; a spike routed from the neuron back end
through arbiter and crossbar into the recorder."""
import numpy as np
import pytest

from spikeloop.config import MINI
from spikeloop.image import ConfigImage
from spikeloop.rtl.addrmap import AddressMap
from spikeloop.rtl.layouts import RowSign, pack_event
from spikeloop.rtl.top import Top
from tests.simutil import get, put, simulate, unpack_array

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

from spikeloop.model.digital.top import ChipDigitalRef  # noqa: E402
from tests.simutil import pack_array  # noqa: E402


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
    cfg = MINI
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    img = _dense_image(cfg, rng)
    cycles = 6 * cfg.analog_step_cycles
    ev = sorted((int(rng.integers(0, cycles // 2)), int(rng.integers(0, cfg.n_ext_inputs)),
                 int(rng.integers(0, 1 << cfg.event_label_bits)) & ~0b111100)
                for _ in range(n_events))
    spikes = [int(sum(1 << i for i in range(cfg.n_neurons) if rng.random() < spike_rate))
              for _ in range(cycles)]
    codes = [list(rng.integers(0, 256, size=cfg.n_neurons)) for _ in range(cycles)]
    amap = AddressMap(cfg)
    ref = ChipDigitalRef(cfg, img)
    dut = Top(cfg)
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
        for name in ("xbar_events", "xbar_drops", "arbiter_drops", "driver_unmatched",
                     "playback_late", "record_drops", "adc_overflow", "record_count",
                     "adc_samples"):
            r = amap[name]
            values = want[name] if isinstance(want[name], list) else [want[name]]
            got = [await host.read(r.address(i)) for i in range(r.count)]
            assert got == values, f"{name} (seed {seed}): RTL {got} != ref {values}"
        rec = amap["record"]
        for i, word in enumerate(ref.recorder.entries()):
            from spikeloop.model.digital.playback import unpack_timed_event
            label, link, t = unpack_timed_event(cfg, cfg.n_host_links, word)
            assert await host.read(rec.address(i, 0)) == t
            assert await host.read(rec.address(i, 1)) == label | link << cfg.event_label_bits
        adc = amap["adc"]
        for s in range(min(ref.adc.n_samples, 2)):
            for n in range(cfg.n_neurons):
                assert await host.read(adc.address(s * cfg.n_neurons + n)) == ref.adc.read(s, n)

    simulate(dut, bench, name="top_vs_ref")


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
