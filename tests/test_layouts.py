"""The bit formats (spikeloop/base/layouts.py): packing checks every field, and
the RTL's Amaranth layouts (rtl/layouts.py) are built from the same tables."""
import pytest

from spikeloop.base import layouts as L
from spikeloop.base.config import FULL, MINI
from spikeloop.rtl import layouts as rtl_layouts

pytestmark = pytest.mark.unit


def test_event_packing_round_trips_and_checks_ranges():
    label = L.pack_event(FULL, address=37, row_select=21, upper=5)
    assert L.unpack_event(FULL, label) == (37, 21, 5)
    assert rtl_layouts.event_layout(FULL).size == FULL.event_label_bits
    with pytest.raises(ValueError, match="address = 64 does not fit 6 bits"):
        L.pack_event(FULL, address=64)
    with pytest.raises(ValueError, match="upper = 1 does not fit 0 bits"):
        L.pack_event(MINI.replace(event_label_bits=MINI.label_bits + MINI.row_select_bits),
                     address=0, upper=1)


@pytest.mark.parametrize("cfg", [MINI, FULL], ids=["mini", "full"])
def test_amaranth_layouts_are_the_formats(cfg):
    pairs = [(L.event_format(cfg), rtl_layouts.event_layout(cfg)),
             (L.synapse_format(cfg), rtl_layouts.synapse_layout(cfg)),
             (L.timed_event_format(cfg, 3), rtl_layouts.timed_event_layout(cfg, 3)),
             (L.host_event_format(cfg, cfg.n_ext_inputs),
              rtl_layouts.host_event_layout(cfg, cfg.n_ext_inputs))]
    for fmt, layout in pairs:
        assert layout.size == fmt.size
        got = {name: (f.offset, f.width) for name, f in layout}
        assert got == {f.name: (f.offset, f.width) for f in fmt.fields}, fmt.name


def test_timed_and_host_event_words():
    cfg = MINI
    word = L.pack_timed_event(cfg, 2, label=0x1A5, link=1, time=77)
    assert L.unpack_timed_event(cfg, 2, word) == (0x1A5, 1, 77)
    with pytest.raises(ValueError, match="timed event field link = 2 does not fit 1 bits"):
        L.pack_timed_event(cfg, 2, label=0, link=2, time=0)
    w0, w1 = L.host_event_words(cfg, time=1234, link=1, label=0x55)
    assert w0 == 1234 and w1 == 0x55 | 1 << cfg.event_label_bits
    assert L.unpack_host_event(cfg, cfg.n_ext_inputs, w0, w1) == (1234, 0x55, 1)


def test_arrays_pack_in_element_order_and_check_or_wrap():
    assert L.pack_array([1, 2, 3], 4) == 0x321
    assert L.unpack_array(0x321, 4, 3) == [1, 2, 3]
    with pytest.raises(ValueError, match="element 1 = 16 does not fit 4 bits"):
        L.pack_array([0, 16], 4)
    assert L.pack_array([-1, 17], 4, wrap=True) == 0x1F
    fmt = L.synapse_format(MINI)
    with pytest.raises(KeyError, match="has no field 'colour'"):
        fmt.pack(colour=1)
