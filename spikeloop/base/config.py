"""ChipConfig: one design variant of the emulated chip.

Every size and bit width of the RTL (rtl/), of the behavioural models (model/)
and of the co-simulation (cosim/) derives from a ChipConfig; nothing else
hard-codes a size.  Two presets exist:

- ``full``: BrainScaleS-2 sized (512 neurons in two halves of 256 columns, 256
  synapse rows and 128 synapse drivers per half, 6-bit weights and labels,
  4 event buses per half, 8 neuron event outputs + 4 external links into the
  crossbar, 8 buses + 4 host links out of it, 125 MHz).
- ``mini``: the same architecture shrunk so that a co-simulation of a few
  thousand cycles takes seconds.

Geometry (derived, see the properties below):

- neuron ``n`` sits in half ``n // columns_per_half``, column ``n % columns_per_half``;
- synapse driver ``d`` of a half drives rows ``2*d`` and ``2*d + 1`` and listens
  to bus ``d % buses_per_half`` of its half;
- global bus index ``h * buses_per_half + b``;
- neurons are grouped into ``n_blocks`` blocks of ``neurons_per_block``; each
  block has one spike-to-event arbiter and one crossbar input;
- crossbar inputs: the block outputs ``0..n_blocks-1``, then the external links;
  crossbar outputs: the buses ``0..n_buses-1``, then the host links.

Event label layout (``event_label_bits`` wide, see spikeloop/base/layouts.py):
``[label_bits-1:0]`` synapse address (matched against the synapse labels),
``[label_bits+row_select_bits-1:label_bits]`` row select (matched by the
synapse drivers), upper bits free for routing.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


class ConfigError(ValueError):
    """A ChipConfig field is out of its allowed range."""


def _check_range(name: str, value, lo: int, hi: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"ChipConfig.{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"ChipConfig.{name} = {value} is out of range; allowed: {allowed}")


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class ChipConfig:
    """A design variant.  Frozen; build variants with :meth:`replace`."""

    name: str = "custom"
    #: neuron circuits on the chip (split evenly over ``n_halves``)
    n_neurons: int = 512
    #: synapse arrays (one per half; each feeds the neurons of its half)
    n_halves: int = 2
    #: synapse rows per half (two per synapse driver)
    rows_per_half: int = 256
    #: event buses per half; each synapse driver listens to one of them
    buses_per_half: int = 4
    #: synaptic weight bits (the 6-bit current DAC of a synapse)
    weight_bits: int = 6
    #: synapse label (address) bits, matched against event bits [label_bits-1:0]
    label_bits: int = 6
    #: bits of the row-select field of an event, matched by the synapse drivers
    row_select_bits: int = 5
    #: bits of an event label on the buses and in the crossbar
    event_label_bits: int = 14
    #: neurons per spike-to-event arbiter block
    neurons_per_block: int = 64
    #: depth of each arbiter's output FIFO
    arbiter_fifo_depth: int = 4
    #: external event inputs of the crossbar (playback links)
    n_ext_inputs: int = 4
    #: crossbar outputs towards the host (recording links)
    n_host_links: int = 4
    #: depth of each crossbar node's FIFO
    crossbar_fifo_depth: int = 4
    #: width of the event and drop counters (saturating)
    counter_bits: int = 16
    #: column ADC resolution
    adc_bits: int = 8
    #: samples the ADC buffer holds (per column)
    adc_buffer_depth: int = 32
    #: ADC sampling period register width (in clock cycles)
    adc_period_bits: int = 12
    #: clock of the digital logic
    clock_mhz: int = 125
    #: clock cycles per analog integration step
    analog_step_cycles: int = 8
    #: per-neuron refractory counter bits
    refractory_bits: int = 8
    #: bits of the global refractory prescaler exponent (tick every 2**k cycles)
    refractory_prescale_bits: int = 4
    #: bits of the per-neuron analog settings (capacitive memory)
    analog_setting_bits: int = 10
    #: analog settings per neuron (leak, reset, threshold, tau_mem, tau_syn_exc,
    #: tau_syn_inh, gain_exc, gain_inh)
    analog_settings_per_neuron: int = 8
    #: width of the cycle counter and of event timestamps
    timestamp_bits: int = 32
    #: entries of the playback (input event) memory
    playback_depth: int = 1024
    #: entries of the record (output event) memory
    record_depth: int = 1024
    #: data width of the host configuration bus
    host_data_bits: int = 32
    #: vector width of the plasticity processor in bits (128 x 8 or 64 x 16)
    ppu_vector_bits: int = 1024
    #: the ADC buffer as a ring: sample ``i`` of a run goes to entry
    #: ``i % adc_buffer_depth`` and ``n_samples`` counts every sample (saturating
    #: at ``2**counter_bits - 1``); nothing overflows in the ADC: a reader (the
    #: PPU's stream program) that falls more than ``adc_buffer_depth`` samples
    #: behind misses samples and counts them itself
    adc_ring: bool = False
    #: vectors of the memory the PPU streams to (``ppu_out``, read by the host
    #: after a sample); 0: the default of ``spikeloop.base.isa.out_buffer_vectors``
    #: (one vector per ADC chunk of a full ADC buffer, at least 16)
    ppu_out_vectors: int = 0

    def __post_init__(self) -> None:
        _check_range("n_halves", self.n_halves, 1, 2)
        _check_range("n_neurons", self.n_neurons, 2, 4096)
        if self.n_neurons % self.n_halves:
            raise ConfigError(
                f"ChipConfig.n_neurons = {self.n_neurons} must be a multiple of "
                f"n_halves = {self.n_halves}")
        _check_range("rows_per_half", self.rows_per_half, 2, 1024)
        if self.rows_per_half % 2:
            raise ConfigError(
                f"ChipConfig.rows_per_half = {self.rows_per_half} must be even "
                "(each synapse driver drives two rows)")
        _check_range("weight_bits", self.weight_bits, 1, 8)
        _check_range("label_bits", self.label_bits, 1, 8)
        _check_range("row_select_bits", self.row_select_bits, 1, 8)
        _check_range("event_label_bits", self.event_label_bits,
                     self.label_bits + self.row_select_bits, 24)
        _check_range("buses_per_half", self.buses_per_half, 1, self.drivers_per_half)
        _check_range("neurons_per_block", self.neurons_per_block, 1, self.n_neurons)
        if self.n_neurons % self.neurons_per_block:
            raise ConfigError(
                f"ChipConfig.neurons_per_block = {self.neurons_per_block} must divide "
                f"n_neurons = {self.n_neurons}")
        _check_range("arbiter_fifo_depth", self.arbiter_fifo_depth, 1, 256)
        _check_range("n_ext_inputs", self.n_ext_inputs, 1, 16)
        _check_range("n_host_links", self.n_host_links, 1, 16)
        _check_range("crossbar_fifo_depth", self.crossbar_fifo_depth, 1, 256)
        _check_range("counter_bits", self.counter_bits, 4, 32)
        _check_range("adc_bits", self.adc_bits, 2, 12)
        _check_range("adc_buffer_depth", self.adc_buffer_depth, 1, 4096)
        _check_range("adc_period_bits", self.adc_period_bits, 2, 24)
        _check_range("clock_mhz", self.clock_mhz, 1, 2000)
        _check_range("analog_step_cycles", self.analog_step_cycles, 1, 4096)
        _check_range("refractory_bits", self.refractory_bits, 1, 16)
        _check_range("refractory_prescale_bits", self.refractory_prescale_bits, 1, 5)
        _check_range("analog_setting_bits", self.analog_setting_bits, 4, 16)
        _check_range("analog_settings_per_neuron", self.analog_settings_per_neuron, 8, 8)
        _check_range("timestamp_bits", self.timestamp_bits, 16, 48)
        _check_range("playback_depth", self.playback_depth, 1, 1 << 16)
        _check_range("record_depth", self.record_depth, 1, 1 << 16)
        _check_range("host_data_bits", self.host_data_bits, 32, 32)
        if not isinstance(self.ppu_vector_bits, int) or self.ppu_vector_bits not in (
                128, 256, 512, 1024):
            raise ConfigError(
                f"ChipConfig.ppu_vector_bits = {self.ppu_vector_bits!r} is not allowed; "
                "allowed: 128, 256, 512, 1024")
        if not isinstance(self.adc_ring, bool):
            raise ConfigError(f"ChipConfig.adc_ring = {self.adc_ring!r} is not allowed; "
                              "allowed: true, false")
        _check_range("ppu_out_vectors", self.ppu_out_vectors, 0, 1 << 16)
        if self.ppu_out_vectors and (self.ppu_out_vectors < 16
                                     or not _is_pow2(self.ppu_out_vectors)):
            raise ConfigError(f"ChipConfig.ppu_out_vectors = {self.ppu_out_vectors} is not "
                              "allowed; allowed: 0 (the default size) or a power of two "
                              "from 16 to 65536")
        wide = max(self.weight_bits + self.label_bits, self.event_label_bits,
                   self.analog_setting_bits, self.timestamp_bits)
        if wide > self.host_data_bits:
            raise ConfigError(
                f"a configuration word of {wide} bits does not fit "
                f"ChipConfig.host_data_bits = {self.host_data_bits}")

    # -- derived geometry -------------------------------------------------
    @property
    def columns_per_half(self) -> int:
        return self.n_neurons // self.n_halves

    @property
    def drivers_per_half(self) -> int:
        return self.rows_per_half // 2

    @property
    def n_buses(self) -> int:
        return self.n_halves * self.buses_per_half

    @property
    def n_blocks(self) -> int:
        return self.n_neurons // self.neurons_per_block

    @property
    def crossbar_inputs(self) -> int:
        return self.n_blocks + self.n_ext_inputs

    @property
    def crossbar_outputs(self) -> int:
        return self.n_buses + self.n_host_links

    @property
    def weight_max(self) -> int:
        return (1 << self.weight_bits) - 1

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.clock_mhz

    @property
    def analog_step_us(self) -> float:
        return self.analog_step_cycles / self.clock_mhz

    # -- (de)serialisation --------------------------------------------------
    def replace(self, **changes) -> ChipConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ChipConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(f"unknown ChipConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str) -> ChipConfig:
        try:
            return PRESETS[name]
        except KeyError:
            raise ConfigError(
                f"unknown preset {name!r}; allowed: {', '.join(sorted(PRESETS))}") from None


FULL = ChipConfig(name="full")

MINI = ChipConfig(
    name="mini",
    n_neurons=16,
    rows_per_half=16,
    buses_per_half=2,
    neurons_per_block=4,
    arbiter_fifo_depth=2,
    n_ext_inputs=2,
    n_host_links=2,
    crossbar_fifo_depth=2,
    adc_buffer_depth=64,
    adc_period_bits=8,
    playback_depth=64,
    record_depth=64,
    ppu_vector_bits=128,
)

PRESETS = {"full": FULL, "mini": MINI}
