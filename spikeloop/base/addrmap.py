"""The host configuration bus's address map, generated from a ChipConfig.

The map is the one list that the RTL (rtl/hostbus.py, rtl/top.py), the
software that writes a ConfigImage, and the co-simulation's bus driver all
read.  Addresses are word addresses of ``host_data_bits``-wide words; each
region is aligned to a power of two so that decoding is a compare of the high
address bits.

Region kinds:

- ``reg``: registers of the register bank (configuration, read-write);
- ``mem``: a memory inside a component, reached through its host port;
- ``status``: read-only counters and state;
- ``ctrl``: the control register (bit 0 ``run``: the cycle counter and every
  run-time block advance; writing bit 1 ``clear`` pulses the synchronous clear
  of every block's run state for one cycle);
- ``pulse``: a write makes each written bit high for the one cycle after the
  write (no storage; reads 0): ``ppu_ctrl`` bit 0 ``start``, bit 1 ``stop``.

The PPU (rtl/ppu.py, docs/ppu.md "The PPU in the chip"): ``ppu_imem`` and
``ppu_dmem`` (32-bit words, written and read only while the PPU is not
running), ``ppu_ctrl`` (pulses), ``ppu_status`` (bit 0 running, bit 1
halted), ``ppu_pc``, ``ppu_cycles``, and the output buffer of its stream to
external memory: ``ppu_out`` (vector ``i`` is words ``i*V/32 ..``, word 0 the
low bits), ``ppu_out_count`` (vectors in it) and ``ppu_out_drops`` (vectors
lost because it was full); ``syn_host_lost`` counts host synapse writes lost
to a PPU row write in the same cycle.

Entries wider than a word are split over ``words`` consecutive words, low word
first (``playback`` and ``record`` entries: word 0 time, word 1 label and link).
"""
from __future__ import annotations

from dataclasses import dataclass

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import chip_geometry, out_buffer_vectors


@dataclass(frozen=True)
class Region:
    name: str
    kind: str          # "reg" | "mem" | "status" | "ctrl" | "pulse"
    count: int         # entries
    bits: int          # bits of one entry (summed over its words)
    words: int = 1     # host words per entry
    writable: bool = True
    base: int = 0      # first word address (filled in by AddressMap)
    doc: str = ""

    @property
    def size(self) -> int:
        """Words the region decodes (a power of two)."""
        return 1 << max(0, (self.count * self.words - 1).bit_length())

    def address(self, index: int, word: int = 0) -> int:
        if not 0 <= index < self.count:
            raise IndexError(f"{self.name}[{index}] out of range 0..{self.count - 1}")
        if not 0 <= word < self.words:
            raise IndexError(f"{self.name} has {self.words} word(s) per entry, not {word + 1}")
        return self.base + index * self.words + word


class AddressMap:
    """All regions of the host bus for one ChipConfig."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        c = cfg
        n, H, R, D = c.n_neurons, c.n_halves, c.rows_per_half, c.drivers_per_half
        nodes = c.crossbar_inputs * c.crossbar_outputs
        cnt = c.counter_bits
        regions = [
            Region("ctrl", "ctrl", 1, 2, doc="bit 0 run, bit 1 clear (pulse)"),
            Region("time", "status", 1, c.timestamp_bits, writable=False,
                   doc="cycle counter since the last clear"),
            Region("neuron_enable", "reg", n, 1, doc="neuron n fires events"),
            Region("neuron_label", "reg", n, c.event_label_bits,
                   doc="event label a spike of neuron n carries"),
            Region("refractory", "reg", n, c.refractory_bits,
                   doc="refractory period of neuron n in prescaler ticks"),
            Region("refractory_prescale", "reg", 1, c.refractory_prescale_bits,
                   doc="refractory counters tick every 2**k cycles"),
        ]
        if H == 2:
            regions.append(Region(
                "neuron_merge", "reg", c.columns_per_half, 1,
                doc="column c of half 0 merged with column c of half 1 (analog, see docs)"))
        regions += [
            Region("driver_select", "reg", H * D, c.row_select_bits,
                   doc="row-select value of driver h*D+d"),
            Region("driver_mask", "reg", H * D, c.row_select_bits,
                   doc="row-select compare mask of driver h*D+d"),
            Region("row_sign", "reg", H * R, 2, doc="RowSign of row h*R+r"),
            Region("xbar_enable", "reg", nodes, 1, doc="crossbar node i*O+o enabled"),
            Region("xbar_mask", "reg", nodes, c.event_label_bits, doc="crossbar node mask"),
            Region("xbar_target", "reg", nodes, c.event_label_bits, doc="crossbar node target"),
            Region("playback_count", "reg", 1, (c.playback_depth).bit_length(),
                   doc="entries of the playback memory to play"),
            Region("adc_period", "reg", 1, c.adc_period_bits,
                   doc="ADC sampling period in cycles (0: off)"),
            Region("analog_settings", "mem", n * c.analog_settings_per_neuron,
                   c.analog_setting_bits,
                   doc="10-bit analog settings, neuron n setting k at n*8+k"),
        ]
        regions += [
            Region(f"synapses{h}", "mem", R * c.columns_per_half,
                   c.weight_bits + c.label_bits,
                   doc=f"half {h}: synapse row*C+col, weight | label << weight_bits")
            for h in range(H)
        ]
        regions += [
            Region("playback", "mem", c.playback_depth,
                   c.host_data_bits + c.event_label_bits + 4, words=2,
                   doc="word 0: release cycle; word 1: label | link << event_label_bits"),
            Region("record", "mem", c.record_depth,
                   c.host_data_bits + c.event_label_bits + 4, words=2, writable=False,
                   doc="word 0: cycle; word 1: label | link << event_label_bits"),
            Region("adc", "mem", c.adc_buffer_depth * n, c.adc_bits, writable=False,
                   doc="ADC code of sample s, neuron n at s*N+n"),
            Region("xbar_events", "status", nodes, cnt, writable=False,
                   doc="events taken by crossbar node"),
            Region("xbar_drops", "status", nodes, cnt, writable=False,
                   doc="events dropped by crossbar node (FIFO full)"),
            Region("arbiter_drops", "status", c.n_blocks, cnt, writable=False,
                   doc="spikes dropped by block arbiter (neuron still pending)"),
            Region("driver_unmatched", "status", c.n_buses, cnt, writable=False,
                   doc="bus events that matched no synapse driver"),
            Region("playback_late", "status", 1, cnt, writable=False,
                   doc="input events released after their cycle"),
            Region("playback_done", "status", 1, 1, writable=False),
            Region("record_count", "status", 1, (c.record_depth).bit_length(),
                   writable=False, doc="entries written to the record memory"),
            Region("record_drops", "status", 1, cnt, writable=False,
                   doc="output events lost because the record memory was full"),
            Region("adc_samples", "status", 1, cnt, writable=False,
                   doc="ADC samples taken since the clear (saturating); sample i in "
                       "entry i % adc_buffer_depth")
            if c.adc_ring else
            Region("adc_samples", "status", 1, (c.adc_buffer_depth).bit_length(),
                   writable=False, doc="ADC samples in the buffer"),
            Region("adc_overflow", "status", 1, cnt, writable=False,
                   doc="ADC samples lost because the buffer was full (ring: always 0)"
                   if c.adc_ring else "ADC samples lost because the buffer was full"),
        ]
        g = chip_geometry(c)
        out_vectors = out_buffer_vectors(c)
        regions += [
            Region("ppu_imem", "mem", g.imem_words, 32,
                   doc="PPU instruction word i (while the PPU is not running)"),
            Region("ppu_dmem", "mem", g.dmem_words, 32,
                   doc="PPU data word i (while the PPU is not running)"),
            Region("ppu_ctrl", "pulse", 1, 2, doc="PPU: write bit 0 start, bit 1 stop (pulses)"),
            Region("ppu_status", "status", 1, 2, writable=False,
                   doc="PPU: bit 0 running, bit 1 halted"),
            Region("ppu_pc", "status", 1, max(1, g.pc_bits), writable=False,
                   doc="PPU: the instruction executing, or where it stopped"),
            Region("ppu_cycles", "status", 1, 32, writable=False,
                   doc="PPU: cycles run since its start (saturating)"),
            Region("ppu_out", "mem", out_vectors * g.vector_words, 32, writable=False,
                   doc="PPU output buffer: word w of streamed vector i at i*V/32+w"),
            Region("ppu_out_count", "status", 1, out_vectors.bit_length(), writable=False,
                   doc="PPU output buffer: vectors in it (since the PPU's start)"),
            Region("ppu_out_drops", "status", 1, cnt, writable=False,
                   doc="PPU output buffer: vectors lost because it was full"),
            Region("syn_host_lost", "status", 1, cnt, writable=False,
                   doc="host synapse writes lost to a PPU row write in the same cycle"),
        ]
        # place regions, largest first, each aligned to its size
        placed = []
        addr = 0
        for r in sorted(regions, key=lambda r: -r.size):
            addr = (addr + r.size - 1) // r.size * r.size
            placed.append(Region(**{**r.__dict__, "base": addr}))
            addr += r.size
        self.addr_bits = max(1, (addr - 1).bit_length())
        self.regions = {r.name: r for r in sorted(placed, key=lambda r: r.base)}

    def __getitem__(self, name: str) -> Region:
        try:
            return self.regions[name]
        except KeyError:
            raise KeyError(f"no region {name!r} in the address map; regions: "
                           f"{', '.join(self.regions)}") from None

    def __iter__(self):
        return iter(self.regions.values())

    def decode(self, addr: int) -> tuple[Region, int, int]:
        """(region, entry index, word) of a word address; KeyError if unmapped."""
        for r in self.regions.values():
            if r.base <= addr < r.base + r.size:
                off = addr - r.base
                index, word = divmod(off, r.words)
                if index < r.count:
                    return r, index, word
        raise KeyError(f"address {addr:#x} is not mapped")

    def table(self) -> str:
        lines = [f"{'region':<22}{'base':>10}{'entries':>9}{'bits':>6}  access  what"]
        for r in self.regions.values():
            acc = "rw" if r.writable else "ro"
            lines.append(f"{r.name:<22}{r.base:>#10x}{r.count:>9}{r.bits:>6}  {acc:<6}  {r.doc}")
        return "\n".join(lines)
