"""Cycle-accurate reference of rtl/top.py's run phase, composed from the
references of its blocks.

The host side is taken as done: the ConfigImage is loaded straight into the
references' state (the host bus has its own reference, model/digital/hostbus.py).
A run is what the top level does after the host writes ``ctrl = run | clear``:
one clear cycle, then cycles with ``running`` high, ``time`` counting from 0.

Per cycle the blocks are evaluated in the order of their combinational paths:
neuron back end -> arbiters and playback (their outputs depend on state only;
the crossbar is always ready) -> crossbar outputs (state only, ``peek``) ->
synapse drivers and recorder (their ``ready``) -> crossbar -> synapse memories
-> analog boundaries -> the PPU (model/digital/ppu.py: its row writes after the
event ports read the rows, its ADC read before this cycle's sample is written);
the ADC control last.

The PPU: ``ppu`` (:class:`PpuRef`); the host's writes of its memories are
``ppu.load(words)`` / ``ppu.write_dmem(i, word)``, the ``ppu_ctrl`` pulses are
the ``ppu_start`` / ``ppu_stop`` inputs of :meth:`tick` (high in the cycle
after the host's write, as the host bus makes them).  ``ppu_out`` holds the
streamed vectors in the output buffer, ``ppu_out_drops`` those lost;
``hold`` is the reset hold ORed into ``refractory_active`` (rtl/top.py).

Driver activations (what the Observables' ``row_activations`` and
``row_events`` report): ``row_acts[h][d]`` counts the activations of driver
``d`` of half ``h`` since the last clear cycle; with ``record_rows`` set,
``row_events`` lists them as (cycle, half, driver, label), ``cycle`` counting
the cycles since the clear cycle (on through stopped cycles, where ``time``
stands still).  The clear cycle's own outputs are not counted.
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.base.image import ConfigImage
from spikeloop.base.isa import out_buffer_vectors
from spikeloop.base.layouts import pack_timed_event
from spikeloop.model.digital.adc_control import AdcControlRef
from spikeloop.model.digital.analog_boundary import AnalogBoundaryRef
from spikeloop.model.digital.arbiter import SpikeArbiterRef
from spikeloop.model.digital.crossbar import CrossbarRef
from spikeloop.model.digital.neuron_backend import NeuronBackendRef
from spikeloop.model.digital.playback import EventPlaybackRef
from spikeloop.model.digital.ppu import PpuRef
from spikeloop.model.digital.recorder import EventRecorderRef
from spikeloop.model.digital.synapse_drivers import SynapseDriversRef
from spikeloop.model.digital.synapse_memory import SynapseMemoryRef


def _flat(a) -> list[int]:
    return [int(x) for x in a.reshape(-1)]


class ChipDigitalRef:
    def __init__(self, cfg: ChipConfig, image: ConfigImage):
        if image.cfg != cfg:
            raise ValueError(f"image is for preset {image.cfg.name!r}, not {cfg.name!r}")
        self.cfg = cfg
        c = cfg
        self.nb = NeuronBackendRef(c)
        self.arbiters = [SpikeArbiterRef(c) for _ in range(c.n_blocks)]
        self.xbar = CrossbarRef(c)
        self.drivers = [SynapseDriversRef(c) for _ in range(c.n_halves)]
        self.synapses = [SynapseMemoryRef(c) for _ in range(c.n_halves)]
        self.boundaries = [AnalogBoundaryRef(c) for _ in range(c.n_halves)]
        self.playback = EventPlaybackRef(c)
        self.recorder = EventRecorderRef(c)
        self.adc = AdcControlRef(c)
        self.ppu = PpuRef(c, self.adc.buffer)
        self.hold = 0
        #: driver activations since the last clear (see the module docstring)
        self.record_rows = False
        self.row_acts = [[0] * c.drivers_per_half for _ in range(c.n_halves)]
        self.row_events: list[tuple[int, int, int, int]] = []
        self.cycle = 0
        self.ppu_out: list[int] = []
        self.ppu_out_depth = out_buffer_vectors(c)
        self.ppu_out_drops = 0
        self.time = 0
        self.load_image(image)

    def load_image(self, image: ConfigImage) -> None:
        """Back-door load of every setting (what the host bus writes)."""
        c = self.cfg
        self.enable = sum(int(v) << i for i, v in enumerate(image.neuron_enable))
        self.labels = _flat(image.neuron_label)
        self.refractory = _flat(image.refractory)
        self.prescale = int(image.refractory_prescale)
        self.xb_enable = _flat(image.xbar_enable)
        self.xb_mask = _flat(image.xbar_mask)
        self.xb_target = _flat(image.xbar_target)
        self.select = [_flat(image.driver_select[h]) for h in range(c.n_halves)]
        self.mask = [_flat(image.driver_mask[h]) for h in range(c.n_halves)]
        self.row_sign = [_flat(image.row_sign[h]) for h in range(c.n_halves)]
        for h, syn in enumerate(self.synapses):
            syn.mem = [[(int(image.synapse_weight[h, r, col]), int(image.synapse_label[h, r, col]))
                        for col in range(c.columns_per_half)] for r in range(c.rows_per_half)]
        self.adc_period = int(image.adc_period)

    def start(self, events, *, ppu_start: int = 0, ppu_stop: int = 0) -> dict:
        """Load the playback memory with ``events`` ([k, 3]: cycle, link, label in
        release order) and run the clear cycle.  Returns that cycle's outputs."""
        c = self.cfg
        if len(events) > c.playback_depth:
            raise ValueError(f"{len(events)} events; playback_depth is {c.playback_depth}")
        pb = self.playback
        for i, (cycle, link, label) in enumerate(events):
            pb.mem[i] = pack_timed_event(c, c.n_ext_inputs, int(label), int(link), int(cycle))
        self.count = len(events)
        return self._cycle(0, [0] * c.n_neurons, clear=1, ppu_start=ppu_start,
                           ppu_stop=ppu_stop)

    def tick(self, spike_in: int = 0, adc_codes=None, *, running: bool = True,
             ppu_start: int = 0, ppu_stop: int = 0) -> dict:
        """One cycle; returns the outputs the top level shows in it.  With
        ``running`` false (after the host wrote ``run = 0``) no spike, input
        event or ADC sample enters and time stands still, but events in flight
        still drain through the crossbar, the drivers and the recorder."""
        return self._cycle(spike_in, adc_codes or [0] * self.cfg.n_neurons, clear=0,
                           live=running, ppu_start=ppu_start, ppu_stop=ppu_stop)

    def _cycle(self, spike_in: int, adc_codes, clear: int, live: bool = True,
               ppu_start: int = 0, ppu_stop: int = 0) -> dict:
        c = self.cfg
        P, B = c.neurons_per_block, c.buses_per_half
        time = self.time
        live = live and not clear
        nb = self.nb.tick(spike_in=spike_in if live else 0, enable=self.enable,
                          refractory=self.refractory, prescale=self.prescale, clear=clear)
        valid, payload = [], []
        for k, arb in enumerate(self.arbiters):
            o = arb.tick(spikes=(nb["spike_out"] >> (k * P)) & ((1 << P) - 1),
                         labels=self.labels[k * P:(k + 1) * P], events_ready=1, clear=clear)
            valid.append(o["events_valid"])
            payload.append(o["events_payload"])
        pb = self.playback.tick(clear=clear, count=self.count if live else 0, time=time,
                                links_ready=[1] * c.n_ext_inputs)
        valid += pb["links_valid"]
        payload += pb["links_payload"]

        xpeek = self.xbar.peek()
        ready = []
        drv_out = []
        for h, drv in enumerate(self.drivers):
            o = drv.tick(self.select[h], self.mask[h], self.row_sign[h],
                         xpeek["outputs_valid"][h * B:(h + 1) * B],
                         xpeek["outputs_payload"][h * B:(h + 1) * B], clear=clear)
            ready += o["buses_ready"]
            drv_out.append(o)
            if not clear:
                self._count_rows(h, o["rows"], xpeek["outputs_payload"][h * B:(h + 1) * B])
        rec = self.recorder.tick(clear=clear, time=time,
                                 links_valid=xpeek["outputs_valid"][c.n_buses:],
                                 links_payload=xpeek["outputs_payload"][c.n_buses:])
        ready += rec["links_ready"]
        self.xbar.tick(clear=clear, enable=self.xb_enable, mask=self.xb_mask,
                            target=self.xb_target, inputs_valid=valid,
                            inputs_payload=payload, outputs_ready=ready)
        exc, inh, step_done = [], [], 0
        for h in range(c.n_halves):
            w = self.synapses[h].tick(rows=drv_out[h]["rows"])["weights"]
            bo = self.boundaries[h].tick(w, drv_out[h]["signs"], clear=clear)
            exc += bo["exc_sum"]
            inh += bo["inh_sum"]
            step_done = bo["step_done"]
        # the PPU: after the event ports read the rows, before the ADC writes its sample
        ppu = self.ppu
        ppu.sim.syn.rows = [syn.mem for syn in self.synapses]
        po = ppu.tick(start=ppu_start, stop=ppu_stop, adc_count=self.adc.n_samples, time=time)
        hold = self.hold
        if clear:
            self.hold = 0
        elif step_done:
            self.hold = po["nreset"]
        else:
            self.hold = hold | po["nreset"]
        if ppu_start and not po["running"]:
            self.ppu_out, self.ppu_out_drops = [], 0
        elif po["out"] is not None:
            if len(self.ppu_out) < self.ppu_out_depth:
                self.ppu_out.append(po["out"])
            else:
                self.ppu_out_drops = min(self.ppu_out_drops + 1,
                                         (1 << c.counter_bits) - 1)
        adc = self.adc.tick(period=self.adc_period if live else 0, codes=adc_codes,
                            clear=clear)
        self.time = 0 if clear else time + int(live)
        self.cycle = 0 if clear else self.cycle + 1
        return {"time": time, "exc_sum": exc, "inh_sum": inh, "step_done": step_done,
                "refractory_active": nb["refractory_active"] | hold,
                "spike_out": nb["spike_out"], "adc_sample": adc["sample"],
                "ppu_running": po["running"], "ppu_halted": po["halted"], "ppu_pc": po["pc"],
                "ppu_cycles": po["cycles"], "nreset": po["nreset"]}

    def _count_rows(self, h: int, rows, payloads) -> None:
        """This cycle's activations of half ``h``'s drivers (port ``2b`` of bus
        ``b`` drives the activated driver's first row)."""
        for b, label in enumerate(payloads):
            ev = rows[2 * b]
            if ev.active:
                d = ev.row // 2
                self.row_acts[h][d] += 1
                if self.record_rows:
                    self.row_events.append((self.cycle, h, d, label))

    def reset_rows(self) -> None:
        """Forget the driver activations counted so far (a new sample)."""
        c = self.cfg
        self.row_acts = [[0] * c.drivers_per_half for _ in range(c.n_halves)]
        self.row_events = []

    def analog_outputs(self) -> dict:
        """What the analog side sees of this cycle before giving its inputs: the
        outputs that depend on state only (``step_done``, the sums, the
        refractory flags as an int bit mask)."""
        exc, inh = [], []
        for b in self.boundaries:
            exc += b.exc_sum
            inh += b.inh_sum
        active = sum(1 << i for i, c in enumerate(self.nb.counters) if c) | self.hold
        return {"step_done": self.boundaries[0].step_done, "exc_sum": exc, "inh_sum": inh,
                "refractory_active": active}

    def final_counters(self) -> dict:
        """The status counters as the host reads them after the run."""
        return {
            "xbar_events": list(self.xbar.event_count),
            "xbar_drops": list(self.xbar.drop_count),
            "arbiter_drops": [a.drops for a in self.arbiters],
            "driver_unmatched": [u for d in self.drivers for u in d.unmatched],
            "playback_late": self.playback.late,
            "record_drops": self.recorder.drops,
            "adc_overflow": self.adc.overflow,
            "record_count": self.recorder.count,
            "adc_samples": self.adc.n_samples,
            "ppu_out_count": len(self.ppu_out),
            "ppu_out_drops": self.ppu_out_drops,
            "row_activations": [a for h in self.row_acts for a in h],
        }
