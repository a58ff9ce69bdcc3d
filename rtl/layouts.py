"""The chip's bit formats as Amaranth layouts, built from the one definition of
each format in :mod:`spikeloop.base.layouts` (where the host, the references
and the co-simulation pack and unpack the same bits)."""
from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data

from spikeloop.base.config import ChipConfig
from spikeloop.base.layouts import (
    BitFormat,
    event_format,
    host_event_format,
    synapse_format,
    timed_event_format,
)


def layout(fmt: BitFormat) -> data.Layout:
    """The Amaranth layout of ``fmt``: a ``StructLayout`` where the fields fill the
    word without gaps, else a ``FlexibleLayout`` with the fields' offsets."""
    if fmt.contiguous:
        return data.StructLayout({f.name: unsigned(f.width) for f in fmt.fields})
    return data.FlexibleLayout(fmt.size, {f.name: data.Field(unsigned(f.width), f.offset)
                                          for f in fmt.fields})


def event_layout(cfg: ChipConfig) -> data.StructLayout:
    """An event label as it travels on the buses and through the crossbar."""
    return layout(event_format(cfg))


def synapse_layout(cfg: ChipConfig) -> data.StructLayout:
    """One synapse: its weight and its label, as stored and as seen by the host."""
    return layout(synapse_format(cfg))


def timed_event_layout(cfg: ChipConfig, n_links: int) -> data.StructLayout:
    """A timestamped event on one of ``n_links`` links (playback and record)."""
    return layout(timed_event_format(cfg, n_links))


def host_event_layout(cfg: ChipConfig, n_links: int) -> data.Layout:
    """A playback or record entry as two host words (time; label and link)."""
    return layout(host_event_format(cfg, n_links))
