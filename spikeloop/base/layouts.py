"""Every bit format of the chip, defined once for rtl/, model/, cosim/ and the host.

A format is a :class:`BitFormat`: named fields at fixed bit offsets, low bits
first.  The RTL builds its Amaranth layouts from these tables
(:mod:`spikeloop.rtl.layouts`); the references, the co-simulation's drivers and
the host software pack and unpack the same bits with :meth:`BitFormat.pack` and
:meth:`BitFormat.unpack`.  Every format is a function of a
:class:`~spikeloop.base.config.ChipConfig`.

Pure Python: no Amaranth, no torch.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from spikeloop.base.config import ChipConfig


class RowSign(enum.IntEnum):
    """The setting of one synapse row: which synaptic input its current feeds."""

    OFF = 0
    EXC = 1
    INH = 2


@dataclass(frozen=True)
class BitField:
    name: str
    offset: int
    width: int

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1


@dataclass(frozen=True)
class BitFormat:
    """A word of ``size`` bits made of named fields (low bits first).  Fields
    that follow each other without gaps make a plain struct; a gap (e.g. the
    unused high bits of a host word) is allowed."""

    name: str
    fields: tuple[BitField, ...]
    size: int

    @classmethod
    def struct(cls, name: str, widths: dict[str, int]) -> BitFormat:
        """Fields one after the other, in the order given, from bit 0."""
        fields, offset = [], 0
        for field_name, width in widths.items():
            fields.append(BitField(field_name, offset, width))
            offset += width
        return cls(name, tuple(fields), offset)

    @property
    def contiguous(self) -> bool:
        """Whether the fields fill the word from bit 0 without gaps."""
        offset = 0
        for f in self.fields:
            if f.offset != offset:
                return False
            offset += f.width
        return offset == self.size

    def __getitem__(self, name: str) -> BitField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}; fields: "
                       f"{', '.join(f.name for f in self.fields)}")

    def pack(self, **values: int) -> int:
        """The word with the fields given (the others 0); every value checked
        against its field's width."""
        unknown = set(values) - {f.name for f in self.fields}
        if unknown:
            raise KeyError(f"{self.name} has no field {sorted(unknown)[0]!r}; fields: "
                           f"{', '.join(f.name for f in self.fields)}")
        word = 0
        for f in self.fields:
            v = int(values.get(f.name, 0))
            if not 0 <= v <= f.mask:
                raise ValueError(f"{self.name} field {f.name} = {v} does not fit {f.width} "
                                 f"bits (allowed 0..{f.mask})")
            word |= v << f.offset
        return word

    def unpack(self, word: int) -> tuple[int, ...]:
        """The fields' values, in the format's field order."""
        return tuple((word >> f.offset) & f.mask for f in self.fields)


# -- the chip's formats --------------------------------------------------------------

def event_format(cfg: ChipConfig) -> BitFormat:
    """An event label as it travels on the buses and through the crossbar:
    ``address`` (the synapse label it matches), ``row_select`` (the drivers'
    compare field) and, where the label is wider, ``upper``."""
    upper = cfg.event_label_bits - cfg.label_bits - cfg.row_select_bits
    widths = {"address": cfg.label_bits, "row_select": cfg.row_select_bits}
    if upper:
        widths["upper"] = upper
    return BitFormat.struct("event", widths)


def synapse_format(cfg: ChipConfig) -> BitFormat:
    """One synapse: its weight and its label, as stored and as the host sees it."""
    return BitFormat.struct("synapse", {"weight": cfg.weight_bits, "label": cfg.label_bits})


def link_bits(n_links: int) -> int:
    """Bits of a link number among ``n_links`` links (at least 1)."""
    return max(1, (n_links - 1).bit_length())


def timed_event_format(cfg: ChipConfig, n_links: int) -> BitFormat:
    """A timestamped event on one of ``n_links`` links, as the playback and the
    recorder store it."""
    return BitFormat.struct("timed event", {"label": cfg.event_label_bits,
                                            "link": link_bits(n_links),
                                            "time": cfg.timestamp_bits})


def host_event_format(cfg: ChipConfig, n_links: int) -> BitFormat:
    """A playback or record entry (of ``n_links`` links) as the host bus shows
    it: two host words, word 0 the cycle (``time``), word 1 ``label | link <<
    event_label_bits``."""
    w, elb = cfg.host_data_bits, cfg.event_label_bits
    return BitFormat("host event", (BitField("time", 0, cfg.timestamp_bits),
                                    BitField("label", w, elb),
                                    BitField("link", w + elb, link_bits(n_links))), 2 * w)


# -- the same formats as integers -----------------------------------------------------

def pack_event(cfg: ChipConfig, address: int, row_select: int = 0, upper: int = 0) -> int:
    """Build an event label from its fields (checks every field's range)."""
    fmt = event_format(cfg)
    if upper and "upper" not in {f.name for f in fmt.fields}:
        raise ValueError(f"event field upper = {upper} does not fit 0 bits (allowed 0..0)")
    values = {"address": address, "row_select": row_select}
    if upper:
        values["upper"] = upper
    return fmt.pack(**values)


def unpack_event(cfg: ChipConfig, label: int) -> tuple[int, int, int]:
    """Split an event label into (address, row_select, upper)."""
    address = label & ((1 << cfg.label_bits) - 1)
    row_select = (label >> cfg.label_bits) & ((1 << cfg.row_select_bits) - 1)
    upper = label >> (cfg.label_bits + cfg.row_select_bits)
    return address, row_select, upper


def pack_synapse(cfg: ChipConfig, weight, label):
    """A synapse word of ``weight`` and ``label`` (integers, or numpy arrays of
    them, whose ranges the caller has checked, as ConfigImage does)."""
    f = synapse_format(cfg)
    return weight << f["weight"].offset | label << f["label"].offset


def unpack_synapse(cfg: ChipConfig, word):
    """(weight, label) of a synapse word (an integer or a numpy array)."""
    f = synapse_format(cfg)
    return (word >> f["weight"].offset) & f["weight"].mask, (
        word >> f["label"].offset) & f["label"].mask


def pack_timed_event(cfg: ChipConfig, n_links: int, label: int, link: int, time: int) -> int:
    """A ``timed_event_format(cfg, n_links)`` entry as an integer."""
    return timed_event_format(cfg, n_links).pack(label=label, link=link, time=time)


def unpack_timed_event(cfg: ChipConfig, n_links: int, word: int) -> tuple[int, int, int]:
    """(label, link, time) of a packed ``timed_event_format(cfg, n_links)`` entry."""
    return timed_event_format(cfg, n_links).unpack(word)


def host_event_words(cfg: ChipConfig, time: int, link: int, label: int) -> tuple[int, int]:
    """The two host words of a playback entry (word 0, word 1)."""
    word = host_event_format(cfg, cfg.n_ext_inputs).pack(time=time, label=label, link=link)
    mask = (1 << cfg.host_data_bits) - 1
    return word & mask, word >> cfg.host_data_bits


def unpack_host_event(cfg: ChipConfig, n_links: int, word0: int,
                      word1: int) -> tuple[int, int, int]:
    """(time, label, link) of a playback or record entry of ``n_links`` links
    read as two host words."""
    return host_event_format(cfg, n_links).unpack(word0 | word1 << cfg.host_data_bits)


# -- arrays of equal elements in one word ----------------------------------------------

def pack_array(values, bits: int, *, wrap: bool = False) -> int:
    """One integer of ``values``, element ``i`` at bits ``i*bits`` (Amaranth's
    ``ArrayLayout`` order, and the PPU's vector lanes).  An element that does
    not fit is a ValueError, or with ``wrap`` taken modulo ``2**bits`` (lane
    arithmetic)."""
    mask = (1 << bits) - 1
    if wrap and bits in (8, 16):        # whole bytes: one conversion (the PPU's lanes)
        vals = [int(v) & mask for v in values]
        if bits == 8:
            return int.from_bytes(bytes(vals), "little")
        return int.from_bytes(b"".join(v.to_bytes(2, "little") for v in vals), "little")
    out = 0
    for i, v in enumerate(values):
        v = int(v)
        if wrap:
            v &= mask
        elif not 0 <= v <= mask:
            raise ValueError(f"element {i} = {v} does not fit {bits} bits")
        out |= v << (i * bits)
    return out


def unpack_array(word: int, bits: int, count: int) -> list[int]:
    """The ``count`` elements of a packed array (element 0 in the low bits)."""
    if bits == 8 and word >= 0:
        return list((word & ((1 << (8 * count)) - 1)).to_bytes(count, "little"))
    mask = (1 << bits) - 1
    return [(word >> (i * bits)) & mask for i in range(count)]
