"""The area estimate (spikeloop/rtl/area.py, spikeloop/explore/area.py): components
summing to the total, memories counted from the ChipConfig, every cell type
costed, the synthesis cache (reused, shared by concurrent workers), and
`spikeloop rtl area` printing the same figures."""
import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from spikeloop.base.config import FULL, MINI
from spikeloop.cli import main
from spikeloop.explore.area import area_metrics
from spikeloop.rtl import area
from spikeloop.rtl.area import (
    AREA_COMPONENTS,
    GATE_TRANSISTORS,
    UnknownCellError,
    cell_transistors,
    default_cache_dir,
    estimate,
    flat_metrics,
    instances,
    memories,
)

pytestmark = pytest.mark.rtl

#: cheap components of mini (a few seconds of yosys together)
SMALL = ["arbiter", "playback", "recorder"]
#: a variant whose crossbar has 2 inputs x 3 outputs (seconds to synthesize)
TINY_XBAR = MINI.replace(name="tiny-xbar", neurons_per_block=16, n_ext_inputs=1,
                         n_host_links=1, buses_per_half=1)
QUANTITIES = ("cells", "memory_bits", "sram_bits", "flipflop_bits", "transistors",
              "transistors_logic", "transistors_sram")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(cache directory, estimate of SMALL on mini from an empty cache)."""
    cache = tmp_path_factory.mktemp("area-cache")
    return cache, estimate(MINI, SMALL, cache_dir=cache)


def _check_sums(result: dict, metrics: dict) -> None:
    comps = result["components"]
    for c in comps.values():
        for key, value in c["all_instances"].items():
            assert value == c[key] * c["instances"]
        assert c["transistors_total"] == c["transistors_logic"] + c["transistors_sram"]
        assert c["memory_bits"] == c["sram_bits"] + c["flipflop_bits"]
        # every synthesized cell is costed: the logic figure is the table's sum
        assert c["transistors_logic"] == sum(cell_transistors(t) * n
                                             for t, n in c["cell_types"].items())
        assert c["cells"] == sum(c["cell_types"].values())
    for q in QUANTITIES:
        assert metrics[f"area.{q}_total"] == sum(metrics[f"area.{q}.{n}"] for n in comps)
    assert metrics["area.transistors_total"] == (metrics["area.transistors_logic_total"]
                                                 + metrics["area.transistors_sram_total"])
    assert json.loads(json.dumps(metrics)) == metrics


def test_components_sum_to_the_total(small):
    _cache, r = small
    _check_sums(r, flat_metrics(r))
    assert r["components"]["arbiter"]["instances"] == MINI.n_blocks == 4
    assert r["total"]["cells"] == sum(r["components"][n]["cells"] * (4 if n == "arbiter" else 1)
                                      for n in SMALL)
    for n in SMALL:
        c = r["components"][n]
        assert c["cells"] > 0
        # the memories yosys finds in the netlist are the ones counted from the ChipConfig
        assert c["memory_bits_yosys"] == c["sram_bits"]
    assert r["run"] == r["run"] | {"exported": 3, "synthesized": 3, "cached": 0}
    assert "yosys" in r["method"] and "docs/area.md" in r["method"]


def test_memories_match_a_hand_count_for_mini():
    bits = {(m.component, m.name): (m.bits, m.kind) for m in memories(MINI)}
    n_neurons = 16
    assert bits == {
        # 16 rows x 8 columns x (6-bit weight + 6-bit label)
        ("synapse_memory", "synapses"): (16 * 8 * 12, "sram"),
        # 2 words x 14-bit event label
        ("arbiter", "fifo"): (2 * 14, "sram"),
        # (4 blocks + 2 links) x (4 buses + 2 host links) nodes x 2 words x 14 bits
        ("crossbar", "node_fifos"): (6 * 6 * 2 * 14, "flipflop"),
        # 64 entries x (14-bit label + 1-bit link + 32-bit time)
        ("playback", "events"): (64 * 47, "sram"),
        ("recorder", "events"): (64 * 47, "sram"),
        # 64 samples x 16 neurons x 8 bits
        ("adc_control", "buffer"): (64 * n_neurons * 8, "sram"),
        # 2048 x 32-bit instructions; 2048 data words of 32 bits as 512 128-bit vectors
        ("ppu", "imem"): (2048 * 32, "sram"),
        ("ppu", "dmem"): (512 * 128, "sram"),
        # r1..r15 (r0 reads 0), v0..v7
        ("ppu", "scalar_registers"): (15 * 32, "flipflop"),
        ("ppu", "vector_registers"): (8 * 128, "flipflop"),
        # 16 neurons x 8 settings x 10 bits
        ("top", "analog_settings"): (16 * 8 * 10, "sram"),
        # 64 samples x 1 vector each, 128 bits
        ("top", "ppu_out"): (64 * 128, "sram"),
    }


def test_instances_follow_the_top_level():
    assert instances(MINI) == {n: 1 for n in AREA_COMPONENTS} | {
        "arbiter": 4, "synapse_memory": 2, "synapse_drivers": 2, "analog_boundary": 2}
    assert instances(FULL)["arbiter"] == 8
    assert sorted(area.COST_ORDER) == sorted(AREA_COMPONENTS)
    assert instances(MINI.replace(n_halves=1))["synapse_memory"] == 1


def test_a_second_call_runs_no_yosys_and_exports_nothing(small, monkeypatch):
    cache, first = small

    def refuse(*_a, **_k):
        raise AssertionError("the cache should have answered")
    monkeypatch.setattr(area, "run_yosys", refuse)
    monkeypatch.setattr(area, "component_netlist", refuse)
    again = estimate(MINI, SMALL, cache_dir=cache)
    assert again["run"] == again["run"] | {"exported": 0, "synthesized": 0, "cached": 3}
    assert again["components"] == first["components"] and again["total"] == first["total"]
    # a variant that changes nothing the arbiter reads reuses its netlist and result
    other = estimate(MINI.replace(crossbar_fifo_depth=5), ["arbiter"], cache_dir=cache)
    assert other["run"]["exported"] == 0 and other["run"]["synthesized"] == 0
    assert other["components"]["arbiter"] == first["components"]["arbiter"]


def test_a_changed_field_the_component_reads_is_synthesized_again(small):
    cache, first = small
    r = estimate(MINI.replace(arbiter_fifo_depth=4), ["arbiter"], cache_dir=cache)
    assert r["run"] == r["run"] | {"exported": 1, "synthesized": 1}
    assert r["components"]["arbiter"]["memory_bits"] == 4 * 14
    assert r["components"]["arbiter"]["memory_bits_yosys"] == 4 * 14


def test_deeper_crossbar_fifos_have_more_memory_bits(tmp_path):
    shallow = area.flat_metrics(estimate(TINY_XBAR.replace(crossbar_fifo_depth=1), ["crossbar"],
                                         cache_dir=tmp_path))
    deep = area.flat_metrics(estimate(TINY_XBAR.replace(crossbar_fifo_depth=4), ["crossbar"],
                                      cache_dir=tmp_path))
    nodes = 2 * 3
    assert shallow["area.memory_bits_total"] == nodes * 1 * 14
    assert deep["area.memory_bits_total"] == nodes * 4 * 14
    # the FIFOs are flip-flops: the logic grows with them
    assert deep["area.cells_total"] > shallow["area.cells_total"]
    assert deep["area.transistors_total"] > shallow["area.transistors_total"]


def test_every_cell_type_has_a_transistor_count():
    # yosys's own CMOS table where it has one
    assert cell_transistors("$_DFF_P_") == 16 and cell_transistors("$_NAND_") == 4
    assert cell_transistors("$_MUX_") == 12
    # the flip-flops yosys's `stat -tech cmos` leaves out: a D flip-flop plus its controls
    assert cell_transistors("$_DFFE_PP_") == 16 + 12
    assert cell_transistors("$_DFFE_NN_") == 16 + 12
    assert cell_transistors("$_SDFF_PP0_") == 16 + 6
    assert cell_transistors("$_SDFFE_PP0P_") == cell_transistors("$_SDFFCE_PN1N_") == 16 + 6 + 12
    assert cell_transistors("$_DFF_PN0_") == 16 + 4
    assert cell_transistors("$_DFFSRE_PPPP_") == 16 + 8 + 12
    assert cell_transistors("$_DLATCH_P_") == 8
    assert all(cell_transistors(t) > 0 for t in GATE_TRANSISTORS)
    for bad in ("$_FOO_", "$mem_v2", "$add", "spikeloop_arbiter"):
        with pytest.raises(UnknownCellError, match="no transistor count"):
            cell_transistors(bad)


def _estimate_in_a_worker(cache):
    return estimate(MINI, ["arbiter"], cache_dir=cache)["run"]["synthesized"]


def test_concurrent_workers_share_one_cache(tmp_path):
    """Two processes asking for the same component from an empty cache: one
    synthesizes it, the other waits for the entry and reads it."""
    with ProcessPoolExecutor(2, mp_context=get_context("fork")) as pool:
        runs = list(pool.map(_estimate_in_a_worker, [tmp_path, tmp_path]))
    assert sorted(runs) == [0, 1]
    assert len(list((tmp_path / "synth").glob("*.json"))) == 1
    assert not list(tmp_path.rglob("*.tmp*"))


def test_the_top_level_is_its_own_logic_with_black_boxes(tmp_path):
    r = estimate(MINI, ["top"], cache_dir=tmp_path)["components"]["top"]
    assert r["instances"] == 1 and r["cells"] > 0
    assert not any(t.startswith(area.STUB_PREFIX) for t in r["cell_types"])
    # its memories: the analog settings and the PPU's output buffer
    assert r["memory_bits_yosys"] == r["sram_bits"] == 16 * 8 * 10 + 64 * 128


def test_rtl_area_command_prints_the_same_figures(small, tmp_path, capsys):
    cache, _ = small
    out = tmp_path / "area.json"
    assert main(["rtl", "area", "--preset", "mini", "--component", "arbiter",
                 "--cache-dir", str(cache), "--out", str(out)]) == 0
    cap = capsys.readouterr()
    printed = json.loads(cap.out)
    assert printed == json.loads(out.read_text())
    assert printed["metrics"] == flat_metrics(estimate(MINI, ["arbiter"], cache_dir=cache))
    assert printed["metrics"]["area.cells.arbiter"] == 4 * printed["components"]["arbiter"]["cells"]
    assert "0 yosys runs, 1 from the cache" in cap.err
    assert main(["rtl", "area", "--preset", "mini", "--component", "arbiter",
                 "--cache-dir", str(cache), "--table", "--no-progress"]) == 0
    cap = capsys.readouterr()
    cells = printed["metrics"]["area.cells.arbiter"]
    assert f"| arbiter | 4 | {cells:,} |" in cap.out
    assert f"| **total** | | **{cells:,}** |" in cap.out
    assert cap.err == ""
    # a fresh cache: progress names the component being synthesized and its time
    assert main(["rtl", "area", "--preset", "mini", "--component", "recorder",
                 "--cache-dir", str(tmp_path / "fresh")]) == 0
    err = capsys.readouterr().err
    assert "yosys recorder (preset mini) ..." in err
    assert "yosys recorder: done in" in err and "s CPU" in err


@pytest.mark.slow
def test_area_metrics_of_the_whole_mini_chip(tmp_path):
    metrics = area_metrics(MINI, cache_dir=tmp_path)
    result = estimate(MINI, cache_dir=tmp_path)
    assert result["run"]["synthesized"] == 0
    assert flat_metrics(result) == metrics
    _check_sums(result, metrics)
    for c in result["components"].values():
        assert c["memory_bits_yosys"] == c["sram_bits"]
    assert metrics["area.memory_bits_total"] == sum(
        m.bits * instances(MINI)[m.component] for m in memories(MINI))


@pytest.mark.slow
def test_area_metrics_of_the_full_chip():
    # the user's area cache, the one `spikeloop rtl area` and `spikeloop explore`
    # fill (keyed by the netlist's text, yosys's version and the script): the
    # first run synthesizes the full chip's components (about 4 minutes on two
    # cores), a later one reads them; the synthesis itself is the mini test's above
    metrics = area_metrics(FULL, jobs=2)
    result = estimate(FULL, cache_dir=default_cache_dir())
    assert result["run"]["synthesized"] == 0
    _check_sums(result, metrics)
    for c in result["components"].values():
        assert c["memory_bits_yosys"] == c["sram_bits"]
    assert metrics["area.instances.arbiter"] == 8
    # 2 halves x 256 rows x 256 columns x 12 bits of synapses
    assert metrics["area.sram_bits.synapse_memory"] == 2 * 256 * 256 * 12


def test_an_unusable_cache_directory_is_one_line_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["rtl", "area", "--preset", "mini", "--cache-dir", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"spikeloop: error: --cache-dir {a_file}: is a file, not a directory"]
