"""Event and word formats, defined once for rtl/, model/ and cosim/.

Every layout is a function of a :class:`~spikeloop.config.ChipConfig`.  The
Python-side helpers (``pack_*``/``unpack_*``) are what model/ and cosim/ use to
build and decode the same bit patterns, so no format is ever re-typed.
"""
from __future__ import annotations

import enum

from amaranth.hdl import unsigned
from amaranth.lib import data

from spikeloop.config import ChipConfig


class RowSign(enum.IntEnum):
    """The setting of one synapse row: which synaptic input its current feeds."""

    OFF = 0
    EXC = 1
    INH = 2


def event_layout(cfg: ChipConfig) -> data.StructLayout:
    """An event label as it travels on the buses and through the crossbar."""
    upper = cfg.event_label_bits - cfg.label_bits - cfg.row_select_bits
    fields = {
        "address": unsigned(cfg.label_bits),
        "row_select": unsigned(cfg.row_select_bits),
    }
    if upper:
        fields["upper"] = unsigned(upper)
    return data.StructLayout(fields)


def synapse_layout(cfg: ChipConfig) -> data.StructLayout:
    """One synapse: its weight and its label, as stored and as seen by the host."""
    return data.StructLayout({
        "weight": unsigned(cfg.weight_bits),
        "label": unsigned(cfg.label_bits),
    })


def timed_event_layout(cfg: ChipConfig, n_links: int) -> data.StructLayout:
    """A timestamped event on one of ``n_links`` links (playback and record)."""
    return data.StructLayout({
        "label": unsigned(cfg.event_label_bits),
        "link": unsigned(max(1, (n_links - 1).bit_length())),
        "time": unsigned(cfg.timestamp_bits),
    })


# -- Python helpers: the same formats as integers ------------------------------

def pack_event(cfg: ChipConfig, address: int, row_select: int = 0, upper: int = 0) -> int:
    """Build an event label from its fields (checks every field's range)."""
    upper_bits = cfg.event_label_bits - cfg.label_bits - cfg.row_select_bits
    for name, value, bits in (("address", address, cfg.label_bits),
                              ("row_select", row_select, cfg.row_select_bits),
                              ("upper", upper, upper_bits)):
        if not 0 <= value < (1 << bits):
            raise ValueError(f"event field {name} = {value} does not fit {bits} bits "
                             f"(allowed 0..{(1 << bits) - 1})")
    return address | (row_select << cfg.label_bits) | (
        upper << (cfg.label_bits + cfg.row_select_bits))


def unpack_event(cfg: ChipConfig, label: int) -> tuple[int, int, int]:
    """Split an event label into (address, row_select, upper)."""
    address = label & ((1 << cfg.label_bits) - 1)
    row_select = (label >> cfg.label_bits) & ((1 << cfg.row_select_bits) - 1)
    upper = label >> (cfg.label_bits + cfg.row_select_bits)
    return address, row_select, upper


def pack_synapse(cfg: ChipConfig, weight: int, label: int) -> int:
    return weight | (label << cfg.weight_bits)


def unpack_synapse(cfg: ChipConfig, word: int) -> tuple[int, int]:
    return word & ((1 << cfg.weight_bits) - 1), (word >> cfg.weight_bits) & (
        (1 << cfg.label_bits) - 1)
