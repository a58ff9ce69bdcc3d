"""The catalogue of the chip's digital components, for export, lint and area.

Each entry builds one component from a ChipConfig; ``top`` composes them all."""
from __future__ import annotations

import importlib

from spikeloop.base.config import ChipConfig

#: name -> (module under spikeloop.rtl, class name)
COMPONENTS: dict[str, tuple[str, str]] = {
    "synapse_memory": ("synapse_memory", "SynapseMemory"),
    "synapse_drivers": ("synapse_drivers", "SynapseDrivers"),
    "neuron_backend": ("neuron_backend", "NeuronBackend"),
    "arbiter": ("arbiter", "SpikeArbiter"),
    "crossbar": ("crossbar", "Crossbar"),
    "playback": ("playback", "EventPlayback"),
    "recorder": ("recorder", "EventRecorder"),
    "adc_control": ("adc_control", "AdcControl"),
    "analog_boundary": ("analog_boundary", "AnalogBoundary"),
    "hostbus": ("hostbus", "HostBus"),
    "ppu": ("ppu", "Ppu"),
    "top": ("top", "Top"),
}


def build(name: str, cfg: ChipConfig, *, instrument: bool = False):
    """A fresh instance of component ``name`` for ``cfg``; ``instrument``: the
    top level with its simulation instrumentation (``Top``'s
    ``activation_counters``; the other components have none)."""
    try:
        module, cls = COMPONENTS[name]
    except KeyError:
        raise ValueError(f"unknown component {name!r}; allowed: {', '.join(COMPONENTS)}") from None
    cls = getattr(importlib.import_module(f"spikeloop.rtl.{module}"), cls)
    return cls(cfg, activation_counters=True) if instrument and name == "top" else cls(cfg)


def module_name(name: str) -> str:
    """The Verilog module name of a component in the exported files."""
    return "spikeloop_" + name
