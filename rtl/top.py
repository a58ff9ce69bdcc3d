"""Top: the chip's digital logic, composed from a ChipConfig.

Signature:

- Host bus: ``host_addr``, ``host_wdata``, ``host_we``, ``host_re`` (In),
  ``host_rdata``, ``host_rvalid``, ``host_bad_access`` (Out): see rtl/hostbus.py;
  every setting of a ConfigImage is written and read back through it
  (address map: spikeloop/base/addrmap.py).
- ``running`` (Out): the ``run`` bit of ``ctrl``; ``time`` (Out,
  ``timestamp_bits``): the cycle counter, cleared by a ``clear`` and advancing
  while ``running``.
- The analog boundary, towards the analog model:
  ``exc_sum``, ``inh_sum`` (Out, ``ArrayLayout(sum_bits, n_neurons)``): the
  matched weight sums of the last complete analog step, valid while
  ``step_done`` (Out) is high (one cycle after the step's last cycle);
  ``spike_in`` (In, ``n_neurons`` bits): the analog model's spikes, taken in the
  cycle they are high (the bridge drives them for one cycle per step);
  ``refractory_active`` (Out, ``n_neurons``): neurons the digital back end holds
  in reset (refractory, or the PPU's reset hold, below);
  ``adc_codes`` (In, ``ArrayLayout(adc_bits, n_neurons)``): the column ADC's
  conversion of the present membranes; ``adc_sample`` (Out): the ADC control
  latches ``adc_codes`` in this cycle;
  ``settings_addr`` (In) / ``settings_data`` (Out, synchronous read): the
  analog settings memory (the capacitive memory's read-out to the neurons);
  ``neuron_merge`` (Out, ``columns_per_half`` bits, two-half chips only): the
  register of the neuron circuits' merge switches (bit ``c``: column ``c`` of
  both halves forms one neuron; the switches act in the analog model).

The PPU (rtl/ppu.py; docs/ppu.md "The PPU in the chip"), a submodule ``ppu``
with 2048 + 2048 words of memory, reached through the host bus only:
``ppu_imem``/``ppu_dmem`` (its memories), ``ppu_ctrl`` (start/stop pulses),
``ppu_status``/``ppu_pc``/``ppu_cycles``.  Its ports inside the chip:

- ``syn``: the PPU row port of synapse memory ``half`` (``ppu_row``,
  ``ppu_re``, ``ppu_we``, ``ppu_wdata``; ``rdata`` from the half of the last
  read);
- ``adc``: the ADC control's PPU read port; ``adc_count`` is the ADC's
  ``n_samples``, ``time`` the cycle counter;
- ``nreset``: a reset pulse of neuron ``i`` in cycle ``c`` sets bit ``i`` of
  the *reset hold* register from cycle ``c + 1``; the hold is ORed into
  ``refractory_active`` and emptied at the edge that ends a ``step_done``
  cycle (then taking that cycle's pulses) and by ``clear``.  The analog side
  reads ``refractory_active`` in the ``step_done`` cycle ``(k+1)S`` for step
  ``k``, so a reset in running cycle ``c`` (``time = c``) holds the neuron at
  its reset potential for exactly analog step ``k = c // S``, the step whose
  cycles contain ``c``; a reset while the chip is not running (or in the
  clear cycle) acts on no step;
- ``out``: always ready; each streamed vector is written into the output
  buffer (``out_buffer_vectors(cfg)`` vectors, host region ``ppu_out``) at
  entry ``ppu_out_count``; when it is full the vector is lost and
  ``ppu_out_drops`` counts it.  A start of the PPU empties the buffer (count
  and drops to 0).

``syn_host_lost`` (status) counts host synapse writes lost because the PPU
wrote a row of the same half in that cycle (reset only by the domain reset).

Run protocol: configure with ``run = 0``; then write ``ctrl = run | clear``:
every block's run state is cleared in the first cycle and the cycle counter
starts.  While ``run = 0`` the playback plays nothing, the ADC does not
sample and spikes are ignored; counters and memories keep their values so the
host can read them back after a run.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import out_buffer_vectors
from spikeloop.rtl.adc_control import AdcControl
from spikeloop.rtl.analog_boundary import AnalogBoundary
from spikeloop.rtl.arbiter import SpikeArbiter
from spikeloop.rtl.crossbar import Crossbar
from spikeloop.rtl.hostbus import HostBus
from spikeloop.rtl.neuron_backend import NeuronBackend
from spikeloop.rtl.playback import EventPlayback
from spikeloop.rtl.ppu import Ppu
from spikeloop.rtl.recorder import EventRecorder
from spikeloop.rtl.synapse_drivers import SynapseDrivers
from spikeloop.rtl.synapse_memory import SynapseMemory


def _connect_stream(m: Module, src, dst) -> None:
    """Source stream -> sink stream (payload layouts of equal width)."""
    m.d.comb += [
        dst.valid.eq(src.valid),
        dst.payload.eq(src.payload),
        src.ready.eq(dst.ready),
    ]


def _slice(view, start: int, count: int, bits: int):
    """Elements ``start .. start+count-1`` of an ArrayLayout view, as a Value."""
    return view.as_value()[start * bits:(start + count) * bits]


class Top(wiring.Component):
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.hostbus = HostBus(cfg)
        self.neurons = NeuronBackend(cfg)
        self.arbiters = [SpikeArbiter(cfg) for _ in range(cfg.n_blocks)]
        self.crossbar = Crossbar(cfg)
        self.drivers = [SynapseDrivers(cfg) for _ in range(cfg.n_halves)]
        self.synapses = [SynapseMemory(cfg) for _ in range(cfg.n_halves)]
        self.boundaries = [AnalogBoundary(cfg) for _ in range(cfg.n_halves)]
        self.playback = EventPlayback(cfg)
        self.recorder = EventRecorder(cfg)
        self.adc = AdcControl(cfg)
        self.ppu = Ppu(cfg)
        #: width of one column's weight sum (from the analog boundary)
        self.sum_bits = self.boundaries[0].signature.members["exc_sum"].shape.elem_shape.width
        n = cfg.n_neurons
        n_settings = n * cfg.analog_settings_per_neuron
        ports = {}
        if cfg.n_halves == 2:
            # the merge switches of the neuron circuits (analog; docs/analog.md)
            ports["neuron_merge"] = Out(cfg.columns_per_half)
        super().__init__(ports | {
            "host_addr": In(self.hostbus.amap.addr_bits),
            "host_wdata": In(cfg.host_data_bits),
            "host_we": In(1),
            "host_re": In(1),
            "host_rdata": Out(cfg.host_data_bits),
            "host_rvalid": Out(1),
            "host_bad_access": Out(cfg.counter_bits),
            "running": Out(1),
            "time": Out(cfg.timestamp_bits),
            "exc_sum": Out(data.ArrayLayout(unsigned(self.sum_bits), n)),
            "inh_sum": Out(data.ArrayLayout(unsigned(self.sum_bits), n)),
            "step_done": Out(1),
            "spike_in": In(n),
            "refractory_active": Out(n),
            "adc_codes": In(data.ArrayLayout(unsigned(cfg.adc_bits), n)),
            "adc_sample": Out(1),
            "settings_addr": In(range(n_settings)),
            "settings_data": Out(cfg.analog_setting_bits),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        n, H, B, P = cfg.n_neurons, cfg.n_halves, cfg.buses_per_half, cfg.neurons_per_block
        R, D = cfg.rows_per_half, cfg.drivers_per_half
        elb = cfg.event_label_bits
        hb = self.hostbus
        m.submodules.hostbus = hb
        m.d.comb += [
            hb.addr.eq(self.host_addr), hb.wdata.eq(self.host_wdata),
            hb.we.eq(self.host_we), hb.re.eq(self.host_re),
            self.host_rdata.eq(hb.rdata), self.host_rvalid.eq(hb.rvalid),
            self.host_bad_access.eq(hb.bad_access),
            self.running.eq(hb.run),
        ]
        clear = hb.clear
        running = hb.run
        # the clear cycle starts a run: no spike, input event or ADC sample enters in
        # it (the blocks drop their inputs while they clear)
        live = Signal()
        m.d.comb += live.eq(running & ~clear)

        # cycle counter
        with m.If(clear):
            m.d.sync += self.time.eq(0)
        with m.Elif(running):
            m.d.sync += self.time.eq(self.time + 1)
        m.d.comb += hb.time.eq(self.time)

        # neuron back end
        nb = self.neurons
        m.submodules.neurons = nb
        m.d.comb += [
            nb.spike_in.eq(Mux(live, self.spike_in, 0)),
            nb.enable.eq(hb.neuron_enable.as_value()),
            nb.refractory.eq(hb.refractory),
            nb.prescale.eq(hb.refractory_prescale.as_value()),
            nb.clear.eq(clear),
        ]   # refractory_active: with the PPU's reset hold (_elaborate_ppu)

        # arbiters, one per block, into the crossbar's first inputs
        xb = self.crossbar
        m.submodules.crossbar = xb
        arb_drops = []
        for k, arb in enumerate(self.arbiters):
            m.submodules[f"arbiter{k}"] = arb
            m.d.comb += [
                arb.spikes.eq(nb.spike_out[k * P:(k + 1) * P]),
                arb.labels.eq(_slice(hb.neuron_label, k * P, P, elb)),
                arb.clear.eq(clear),
            ]
            _connect_stream(m, arb.events, xb.inputs[k])
            arb_drops.append(arb.drops)
        m.d.comb += hb.arbiter_drops.eq(Cat(*arb_drops))
        m.d.comb += [
            xb.enable.eq(hb.xbar_enable),
            xb.mask.eq(hb.xbar_mask),
            xb.target.eq(hb.xbar_target),
            xb.clear.eq(clear),
            hb.xbar_events.eq(xb.event_count),
            hb.xbar_drops.eq(xb.drop_count),
        ]

        # playback -> crossbar external inputs
        pb = self.playback
        m.submodules.playback = pb
        for lnk in range(cfg.n_ext_inputs):
            _connect_stream(m, pb.links[lnk], xb.inputs[cfg.n_blocks + lnk])
        ts = cfg.timestamp_bits
        m.d.comb += [
            pb.host_addr.eq(hb.playback_addr),
            pb.host_we.eq(hb.playback_we),
            # word 0: release cycle; word 1: label | link << event_label_bits
            pb.host_wdata.time.eq(hb.playback_wdata[:ts]),
            pb.host_wdata.label.eq(hb.playback_wdata[32:32 + elb]),
            pb.host_wdata.link.eq(hb.playback_wdata[32 + elb:]),
            pb.count.eq(Mux(live, hb.playback_count.as_value(), 0)),
            pb.time.eq(self.time),
            pb.clear.eq(clear),
            hb.playback_rdata.eq(Cat(pb.host_rdata.time, Const(0, 32 - ts),
                                     pb.host_rdata.label, pb.host_rdata.link)),
            hb.playback_late.eq(pb.late),
            hb.playback_done.eq(pb.done),
        ]

        # crossbar host links -> recorder
        rec = self.recorder
        m.submodules.recorder = rec
        for lnk in range(cfg.n_host_links):
            _connect_stream(m, xb.outputs[cfg.n_buses + lnk], rec.links[lnk])
        rd = rec.host_rdata
        m.d.comb += [
            rec.time.eq(self.time),
            rec.clear.eq(clear),
            rec.host_addr.eq(hb.record_addr),
            hb.record_rdata.eq(Cat(rd.time, Const(0, 32 - ts), rd.label, rd.link)),
            hb.record_count.eq(rec.count),
            hb.record_drops.eq(rec.drops),
        ]

        # per half: drivers -> synapse memory -> analog boundary
        unmatched = []
        exc, inh = [], []
        for h in range(H):
            drv, syn, bnd = self.drivers[h], self.synapses[h], self.boundaries[h]
            m.submodules[f"drivers{h}"] = drv
            m.submodules[f"synapses{h}"] = syn
            m.submodules[f"boundary{h}"] = bnd
            for b in range(B):
                _connect_stream(m, xb.outputs[h * B + b], drv.buses[b])
            m.d.comb += [
                drv.select.eq(_slice(hb.driver_select, h * D, D, cfg.row_select_bits)),
                drv.mask.eq(_slice(hb.driver_mask, h * D, D, cfg.row_select_bits)),
                drv.row_sign.eq(_slice(hb.row_sign, h * R, R, 2)),
                syn.host_addr.eq(getattr(hb, f"synapses{h}_addr")),
                syn.host_we.eq(getattr(hb, f"synapses{h}_we")),
                syn.host_wdata.eq(getattr(hb, f"synapses{h}_wdata")),
                getattr(hb, f"synapses{h}_rdata").eq(syn.host_rdata),
                drv.clear.eq(clear),
                bnd.clear.eq(clear),
            ]
            for p in range(2 * B):
                wiring.connect(m, drv.rows[p], syn.rows[p])
                m.d.comb += [
                    bnd.weights[p].eq(syn.weights[p]),
                    bnd.signs[p].eq(drv.signs[p]),
                ]
            unmatched.extend(drv.unmatched)
            exc.append(bnd.exc_sum)
            inh.append(bnd.inh_sum)
        m.d.comb += [
            hb.driver_unmatched.eq(Cat(*unmatched)),
            self.exc_sum.eq(Cat(*exc)),
            self.inh_sum.eq(Cat(*inh)),
            self.step_done.eq(self.boundaries[0].step_done),
        ]

        # ADC sampling control
        adc = self.adc
        m.submodules.adc = adc
        m.d.comb += [
            adc.period.eq(Mux(live, hb.adc_period.as_value(), 0)),
            adc.codes.eq(self.adc_codes),
            adc.clear.eq(clear),
            self.adc_sample.eq(adc.sample),
            adc.host_addr.eq(hb.adc_addr),
            hb.adc_rdata.eq(adc.host_rdata),
            hb.adc_samples.eq(adc.n_samples),
            hb.adc_overflow.eq(adc.overflow),
        ]

        # analog settings (the capacitive memory): host port and the analog read-out
        n_settings = n * cfg.analog_settings_per_neuron
        m.submodules.capmem = capmem = Memory(
            shape=unsigned(cfg.analog_setting_bits), depth=n_settings, init=[])
        wp = capmem.write_port()
        host_rp = capmem.read_port()
        analog_rp = capmem.read_port()
        m.d.comb += [
            wp.addr.eq(hb.analog_settings_addr), wp.en.eq(hb.analog_settings_we),
            wp.data.eq(hb.analog_settings_wdata),
            host_rp.addr.eq(hb.analog_settings_addr),
            hb.analog_settings_rdata.eq(host_rp.data),
            analog_rp.addr.eq(self.settings_addr),
            self.settings_data.eq(analog_rp.data),
        ]
        if H == 2:
            m.d.comb += self.neuron_merge.eq(hb.neuron_merge.as_value())

        self._elaborate_ppu(m, clear)
        return m

    def _elaborate_ppu(self, m: Module, clear) -> None:
        """The PPU, its ports into the chip and its host regions (module docstring)."""
        cfg, hb, adc, ppu = self.cfg, self.hostbus, self.adc, self.ppu
        n, H = cfg.n_neurons, cfg.n_halves
        cmax = (1 << cfg.counter_bits) - 1
        m.submodules.ppu = ppu
        m.d.comb += [
            ppu.start.eq(hb.ppu_ctrl[0]),
            ppu.stop.eq(hb.ppu_ctrl[1]),
            hb.ppu_status.eq(Cat(ppu.running, ppu.halted)),
            hb.ppu_pc.eq(ppu.pc),
            hb.ppu_cycles.eq(ppu.cycles),
            ppu.host_imem_addr.eq(hb.ppu_imem_addr),
            ppu.host_imem_we.eq(hb.ppu_imem_we),
            ppu.host_imem_wdata.eq(hb.ppu_imem_wdata),
            hb.ppu_imem_rdata.eq(ppu.host_imem_rdata),
            ppu.host_dmem_addr.eq(hb.ppu_dmem_addr),
            ppu.host_dmem_we.eq(hb.ppu_dmem_we),
            ppu.host_dmem_wdata.eq(hb.ppu_dmem_wdata),
            hb.ppu_dmem_rdata.eq(ppu.host_dmem_rdata),
            ppu.adc_count.eq(adc.n_samples),
            ppu.time.eq(self.time),
            adc.ppu_addr.eq(ppu.adc.addr),
            adc.ppu_re.eq(ppu.adc.re),
            ppu.adc.rdata.eq(adc.ppu_rdata),
        ]

        # synapse rows: one port, demultiplexed by half; rdata from the half last read
        half_q = Signal(range(max(2, H)), name="ppu_half_q")
        with m.If(ppu.syn.re):
            m.d.sync += half_q.eq(ppu.syn.half)
        lost = []
        for h, syn in enumerate(self.synapses):
            sel = Signal(name=f"ppu_half{h}")
            m.d.comb += [
                sel.eq(ppu.syn.half == h),
                syn.ppu_row.eq(ppu.syn.row),
                syn.ppu_re.eq(ppu.syn.re & sel),
                syn.ppu_we.eq(Mux(sel, ppu.syn.we, 0)),
                syn.ppu_wdata.eq(ppu.syn.wdata),
            ]
            lost.append(syn.host_lost)
        with m.Switch(half_q):
            for h, syn in enumerate(self.synapses):
                with m.Case(h):
                    m.d.comb += ppu.syn.rdata.eq(syn.ppu_rdata)
        n_lost = Signal(cfg.counter_bits, name="syn_host_lost")
        with m.If(Cat(*lost).any() & (n_lost != cmax)):
            m.d.sync += n_lost.eq(n_lost + 1)
        m.d.comb += hb.syn_host_lost.eq(n_lost)

        # neuron resets: the reset hold, ORed into refractory_active
        hold = Signal(n, name="ppu_reset_hold")
        with m.If(clear):
            m.d.sync += hold.eq(0)
        with m.Elif(self.step_done):
            m.d.sync += hold.eq(ppu.nreset)
        with m.Else():
            m.d.sync += hold.eq(hold | ppu.nreset)
        m.d.comb += self.refractory_active.eq(self.neurons.refractory_active | hold)

        # the output stream into the host-readable output buffer
        depth = out_buffer_vectors(cfg)
        V = ppu.geom.vector_bits
        vw = ppu.geom.vector_words
        m.submodules.ppu_out = obuf = Memory(shape=unsigned(V), depth=depth, init=[])
        wp, rp = obuf.write_port(), obuf.read_port()
        count = Signal(range(depth + 1), name="ppu_out_count")
        drops = Signal(cfg.counter_bits, name="ppu_out_drops")
        full = Signal(name="ppu_out_full")
        m.d.comb += [
            ppu.out.ready.eq(1),
            full.eq(count == depth),
            wp.addr.eq(count),
            wp.data.eq(ppu.out.payload),
            wp.en.eq(ppu.out.valid & ~full),
        ]
        with m.If(ppu.start & ~ppu.running):
            m.d.sync += [count.eq(0), drops.eq(0)]
        with m.Elif(ppu.out.valid & ~full):
            m.d.sync += count.eq(count + 1)
        with m.Elif(ppu.out.valid & (drops != cmax)):
            m.d.sync += drops.eq(drops + 1)
        wb = (vw - 1).bit_length()
        word_q = Signal(max(1, wb), name="ppu_out_word_q")
        if wb:
            m.d.sync += word_q.eq(hb.ppu_out_addr[:wb])
            m.d.comb += rp.addr.eq(hb.ppu_out_addr[wb:])
        else:
            m.d.comb += rp.addr.eq(hb.ppu_out_addr)
        m.d.comb += [
            hb.ppu_out_rdata.eq(rp.data.word_select(word_q, 32) if wb else rp.data[:32]),
            hb.ppu_out_count.eq(count),
            hb.ppu_out_drops.eq(drops),
        ]
