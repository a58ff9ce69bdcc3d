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
  ``n_samples`` (with ``cfg.adc_ring``: the samples taken since the clear,
  ``counter_bits`` wide, as the host's ``adc_samples``), ``time`` the cycle
  counter;
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

Simulation instrumentation (``Top(cfg, activation_counters=True)``, the
top level every co-simulation builds; not part of the chip, nor of its area):
``row_activations`` (Out, ``ArrayLayout(unsigned(ACTIVATION_BITS),
n_halves * drivers_per_half)``), element ``h * drivers_per_half + d``: the
activations of driver ``d`` of half ``h`` (its first row on its bus's even row
port) since the last ``clear`` cycle, saturating; a run's activations per
driver, counted in the simulator instead of by a testbench process woken in
every active cycle.

Run protocol: configure with ``run = 0``; then write ``ctrl = run | clear``:
every block's run state is cleared in the first cycle and the cycle counter
starts.  While ``run = 0`` the playback plays nothing, the ADC does not
sample and spikes are ignored; counters and memories keep their values so the
host can read them back after a run.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import out_buffer_vectors
from spikeloop.base.protocol import ACTIVATION_BITS
from spikeloop.rtl.adc_control import AdcControl
from spikeloop.rtl.analog_boundary import AnalogBoundary
from spikeloop.rtl.arbiter import SpikeArbiter
from spikeloop.rtl.crossbar import Crossbar
from spikeloop.rtl.hostbus import HostBus
from spikeloop.rtl.layouts import host_event_layout
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


def _copy_fields(layout: data.Layout, dst, src) -> list:
    """``dst.<f>.eq(src.<f>)`` for every field ``f`` of ``layout`` (views of
    layouts with these field names)."""
    return [dst[name].eq(src[name]) for name, _ in data.Layout.cast(layout)]


def _view_of_word(layout: data.Layout, word) -> data.View:
    """``word`` (e.g. a host-bus entry, narrower than ``layout``) zero-extended to
    the layout's size and viewed through it."""
    size = data.Layout.cast(layout).size
    word = Value.cast(word)
    return data.View(layout, Cat(word, Const(0, max(0, size - len(word))))[:size])


def _word_of_fields(layout: data.Layout, entry) -> data.View:
    """The value of ``layout`` (a view of it) with each field taken from the field
    of that name of ``entry`` and the bits between the fields 0 (fields must not
    overlap)."""
    layout = data.Layout.cast(layout)
    parts, pos = [], 0
    for name, fld in sorted(layout, key=lambda item: item[1].offset):
        parts += [Const(0, fld.offset - pos), entry[name]]
        pos = fld.offset + fld.width
    return data.View(layout, Cat(*parts, Const(0, layout.size - pos)))


class Top(wiring.Component):
    def __init__(self, cfg: ChipConfig, *, activation_counters: bool = False):
        self.cfg = cfg
        self.activation_counters = activation_counters
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
        if activation_counters:
            ports["row_activations"] = Out(data.ArrayLayout(
                unsigned(ACTIVATION_BITS), cfg.n_halves * cfg.drivers_per_half))
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
        clear, live = self._host_bus(m)
        self._cycle_counter(m, clear)
        self._neuron_backend(m, clear, live)
        self._arbiters_crossbar(m, clear)
        self._playback(m, clear, live)
        self._recorder(m, clear)
        self._halves(m, clear)
        self._adc_control(m, clear, live)
        self._analog_settings(m)
        self._elaborate_ppu(m, clear)
        return m

    def _host_bus(self, m: Module):
        """The host bus and its pins; ``running`` is the ``run`` bit of ``ctrl``.
        Returns ``clear`` (high for the one cycle after a write of ``ctrl`` with
        ``clear`` set) and ``live``: running and not clearing (combinational)."""
        hb = self.hostbus
        m.submodules.hostbus = hb
        m.d.comb += [
            hb.addr.eq(self.host_addr), hb.wdata.eq(self.host_wdata),
            hb.we.eq(self.host_we), hb.re.eq(self.host_re),
            self.host_rdata.eq(hb.rdata), self.host_rvalid.eq(hb.rvalid),
            self.host_bad_access.eq(hb.bad_access),
            self.running.eq(hb.run),
        ]
        # the clear cycle starts a run: no spike, input event or ADC sample enters in
        # it (the blocks drop their inputs while they clear)
        live = Signal()
        m.d.comb += live.eq(hb.run & ~hb.clear)
        return hb.clear, live

    def _cycle_counter(self, m: Module, clear) -> None:
        """``time``: set to 0 at the edge that ends a ``clear`` cycle, else counting
        up by one per cycle while running."""
        hb = self.hostbus
        with m.If(clear):
            m.d.sync += self.time.eq(0)
        with m.Elif(hb.run):
            m.d.sync += self.time.eq(self.time + 1)
        m.d.comb += hb.time.eq(self.time)

    def _neuron_backend(self, m: Module, clear, live) -> None:
        """The neuron back end (rtl/neuron_backend.py): takes ``spike_in`` while
        ``live``, its settings from the host bus.  Its ``refractory_active`` leaves
        the chip ORed with the PPU's reset hold (:meth:`_ppu_reset_hold`)."""
        hb, nb = self.hostbus, self.neurons
        m.submodules.neurons = nb
        m.d.comb += [
            nb.spike_in.eq(Mux(live, self.spike_in, 0)),
            nb.enable.eq(hb.neuron_enable.as_value()),
            nb.refractory.eq(hb.refractory),
            nb.prescale.eq(hb.refractory_prescale.as_value()),
            nb.clear.eq(clear),
        ]

    def _arbiters_crossbar(self, m: Module, clear) -> None:
        """The spike arbiters, one per block of ``neurons_per_block`` neurons (its
        spikes labelled by ``neuron_label``), into the crossbar's first inputs;
        the crossbar's settings and counters on the host bus."""
        cfg, hb, nb, xb = self.cfg, self.hostbus, self.neurons, self.crossbar
        P, elb = cfg.neurons_per_block, cfg.event_label_bits
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

    def _playback(self, m: Module, clear, live) -> None:
        """The event playback into the crossbar's external inputs (after the
        blocks' inputs); it plays ``playback_count`` entries while ``live``.  Its
        host port takes and gives entries in the two-word host format
        (:func:`~spikeloop.rtl.layouts.host_event_layout` of ``n_ext_inputs``
        links)."""
        cfg, hb, xb, pb = self.cfg, self.hostbus, self.crossbar, self.playback
        m.submodules.playback = pb
        for lnk in range(cfg.n_ext_inputs):
            _connect_stream(m, pb.links[lnk], xb.inputs[cfg.n_blocks + lnk])
        host_layout = host_event_layout(cfg, cfg.n_ext_inputs)
        m.d.comb += [
            pb.host_addr.eq(hb.playback_addr),
            pb.host_we.eq(hb.playback_we),
            *_copy_fields(host_layout, pb.host_wdata,
                          _view_of_word(host_layout, hb.playback_wdata)),
            pb.count.eq(Mux(live, hb.playback_count.as_value(), 0)),
            pb.time.eq(self.time),
            pb.clear.eq(clear),
            hb.playback_rdata.eq(_word_of_fields(host_layout, pb.host_rdata)),
            hb.playback_late.eq(pb.late),
            hb.playback_done.eq(pb.done),
        ]

    def _recorder(self, m: Module, clear) -> None:
        """The event recorder on the crossbar's host links (after the buses);
        the host reads its entries in the two-word host format
        (:func:`~spikeloop.rtl.layouts.host_event_layout` of ``n_host_links``
        links)."""
        cfg, hb, xb, rec = self.cfg, self.hostbus, self.crossbar, self.recorder
        m.submodules.recorder = rec
        for lnk in range(cfg.n_host_links):
            _connect_stream(m, xb.outputs[cfg.n_buses + lnk], rec.links[lnk])
        m.d.comb += [
            rec.time.eq(self.time),
            rec.clear.eq(clear),
            rec.host_addr.eq(hb.record_addr),
            hb.record_rdata.eq(_word_of_fields(host_event_layout(cfg, cfg.n_host_links),
                                               rec.host_rdata)),
            hb.record_count.eq(rec.count),
            hb.record_drops.eq(rec.drops),
        ]

    def _halves(self, m: Module, clear) -> None:
        """Per half: the crossbar's bus outputs -> synapse drivers -> synapse
        memory (host port ``synapses<h>``) -> analog boundary; the halves'
        weight sums side by side on ``exc_sum``/``inh_sum``; ``step_done`` is half
        0's."""
        cfg, hb, xb = self.cfg, self.hostbus, self.crossbar
        B, R, D = cfg.buses_per_half, cfg.rows_per_half, cfg.drivers_per_half
        unmatched = []
        exc, inh = [], []
        for h in range(cfg.n_halves):
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
        if self.activation_counters:
            self._count_activations(m, clear)

    def _count_activations(self, m: Module, clear) -> None:
        """``row_activations`` (simulation instrumentation, see the module
        docstring): driver ``d`` listens to bus ``d % B`` and is activated in a
        cycle where that bus's even row port is active with row ``2d``."""
        cfg = self.cfg
        B, D = cfg.buses_per_half, cfg.drivers_per_half
        full = (1 << ACTIVATION_BITS) - 1
        for h in range(cfg.n_halves):
            rows = self.drivers[h].rows
            for d in range(D):
                port, count = rows[2 * (d % B)], self.row_activations[h * D + d]
                with m.If(clear):
                    m.d.sync += count.eq(0)
                with m.Elif(port.active & (port.row == 2 * d) & (count != full)):
                    m.d.sync += count.eq(count + 1)

    def _adc_control(self, m: Module, clear, live) -> None:
        """The ADC sampling control: samples ``adc_codes`` every ``adc_period``
        cycles while ``live`` (``adc_sample`` marks the cycle); the host reads the
        buffer and its counters."""
        hb, adc = self.hostbus, self.adc
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

    def _analog_settings(self, m: Module) -> None:
        """The analog settings (the capacitive memory): the host's write and
        synchronous read port, and the analog read-out (``settings_addr`` ->
        ``settings_data`` in the next cycle); on two-half chips the merge switches'
        register (``neuron_merge``)."""
        cfg, hb = self.cfg, self.hostbus
        n_settings = cfg.n_neurons * cfg.analog_settings_per_neuron
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
        if cfg.n_halves == 2:
            m.d.comb += self.neuron_merge.eq(hb.neuron_merge.as_value())

    def _elaborate_ppu(self, m: Module, clear) -> None:
        """The PPU, its ports into the chip and its host regions (module docstring)."""
        m.submodules.ppu = self.ppu
        self._ppu_ports(m)
        self._ppu_synapse_rows(m)
        self._ppu_reset_hold(m, clear)
        self._ppu_out_buffer(m)

    def _ppu_ports(self, m: Module) -> None:
        """The PPU's control, status and memories on the host bus (``ppu_ctrl``
        bit 0 starts, bit 1 stops); its ADC read port to the ADC control, whose
        ``n_samples`` it reads as ``adc_count``; ``time``."""
        hb, adc, ppu = self.hostbus, self.adc, self.ppu
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

    def _ppu_synapse_rows(self, m: Module) -> None:
        """The PPU's row port, demultiplexed to the synapse memory of ``half``;
        its ``rdata`` comes from the half of the last read (``ppu_half_q``,
        registered with the read).  ``syn_host_lost`` counts (saturating) the
        cycles in which a host synapse write was lost to a PPU write."""
        cfg, hb, ppu = self.cfg, self.hostbus, self.ppu
        cmax = (1 << cfg.counter_bits) - 1
        half_q = Signal(range(max(2, cfg.n_halves)), name="ppu_half_q")
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

    def _ppu_reset_hold(self, m: Module, clear) -> None:
        """The PPU's neuron resets: the reset hold register ``ppu_reset_hold``
        (module docstring for its timing), ORed into ``refractory_active``."""
        ppu = self.ppu
        hold = Signal(self.cfg.n_neurons, name="ppu_reset_hold")
        with m.If(clear):
            m.d.sync += hold.eq(0)
        with m.Elif(self.step_done):
            m.d.sync += hold.eq(ppu.nreset)
        with m.Else():
            m.d.sync += hold.eq(hold | ppu.nreset)
        m.d.comb += self.refractory_active.eq(self.neurons.refractory_active | hold)

    def _ppu_out_buffer(self, m: Module) -> None:
        """The PPU's output stream into the host-readable output buffer (memory
        ``ppu_out``; always ready): a vector is written at entry ``ppu_out_count``
        in the cycle it is valid, or counted in ``ppu_out_drops`` when the buffer
        is full; a start of the PPU empties it.  The host reads 32-bit words
        (synchronous read)."""
        cfg, hb, ppu = self.cfg, self.hostbus, self.ppu
        cmax = (1 << cfg.counter_bits) - 1
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
