"""ChipConfig: presets, derived geometry, range checks naming the field."""
import pytest

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import FULL, MINI, ChipConfig, ConfigError

pytestmark = pytest.mark.unit


def test_full_preset_is_brainscales2_sized():
    assert FULL.n_neurons == 512 and FULL.columns_per_half == 256
    assert FULL.rows_per_half == 256 and FULL.drivers_per_half == 128
    assert FULL.weight_bits == 6 and FULL.label_bits == 6
    assert FULL.buses_per_half == 4 and FULL.clock_mhz == 125
    assert FULL.n_blocks == 8 and FULL.crossbar_inputs == 12 and FULL.crossbar_outputs == 12


@pytest.mark.parametrize("field,value,match", [
    ("weight_bits", 0, r"weight_bits = 0 .*allowed: 1\.\.8"),
    ("buses_per_half", 200, r"buses_per_half = 200 .*allowed: 1\.\.128"),
    ("event_label_bits", 10, r"event_label_bits = 10 .*allowed: 11\.\.24"),
    ("n_neurons", 511, r"n_neurons = 511 must be a multiple of n_halves"),
    ("rows_per_half", 7, r"rows_per_half = 7 must be even"),
    ("neurons_per_block", 3, r"neurons_per_block = 3 must divide"),
    ("ppu_vector_bits", 100, r"ppu_vector_bits = 100 is not allowed"),
    ("clock_mhz", 1.5, r"clock_mhz must be an integer"),
])
def test_out_of_range_fields_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        FULL.replace(**{field: value})


def test_label_wider_than_event_is_refused():
    with pytest.raises(ConfigError, match="event_label_bits"):
        FULL.replace(label_bits=8, row_select_bits=8)


def test_presets_and_json_round_trip():
    for cfg in (FULL, MINI):
        assert ChipConfig.preset(cfg.name) is cfg
        assert ChipConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown preset 'huge'; allowed: full, mini"):
        ChipConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown ChipConfig field"):
        ChipConfig.from_dict({"neurons": 3})


@pytest.mark.parametrize("cfg", [MINI, FULL], ids=["mini", "full"])
def test_address_map_regions_do_not_overlap(cfg):
    amap = AddressMap(cfg)
    spans = sorted((r.base, r.base + r.size) for r in amap)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start
    assert spans[-1][1] <= 1 << amap.addr_bits
    r = amap["neuron_label"]
    assert amap.decode(r.address(3)) == (r, 3, 0)
    with pytest.raises(IndexError):
        r.address(cfg.n_neurons)
