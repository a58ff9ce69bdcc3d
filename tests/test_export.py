"""Verilog export, Verilator lint and yosys area through the CLI and the API."""
import dataclasses
import json
import re

import pytest
from amaranth.back import verilog

from spikeloop.base.config import MINI
from spikeloop.cli import main
from spikeloop.cosim.runner import _public_text, top_port_directions
from spikeloop.rtl.components import COMPONENTS, build, module_name
from spikeloop.rtl.export import area, lint, simulation_verilog

pytestmark = pytest.mark.rtl


def test_export_writes_every_component(tmp_path, capsys):
    assert main(["rtl", "export", "--preset", "mini", "--out", str(tmp_path)]) == 0
    for name in COMPONENTS:
        text = (tmp_path / f"{name}.v").read_text()
        assert f"module {module_name(name)}(" in text
    assert json.loads((tmp_path / "chip_config.json").read_text())["name"] == "mini"
    top = (tmp_path / "top.v").read_text()
    for port in ("host_addr", "exc_sum", "spike_in", "adc_codes", "step_done"):
        assert port in top
    assert "exported" in capsys.readouterr().out


def test_mini_verilog_lints_clean():
    findings = lint(MINI)
    assert findings.keys() == COMPONENTS.keys()
    assert {k: v for k, v in findings.items() if v} == {}


def test_area_counts_cells_and_memory_bits():
    r = area(MINI, ["synapse_memory", "arbiter"])
    syn = r["components"]["synapse_memory"]
    bits = MINI.rows_per_half * MINI.columns_per_half * (MINI.weight_bits + MINI.label_bits)
    assert syn["memory_bits"] == bits
    assert syn["transistors_sram"] == 6 * bits
    assert syn["cells"] > 0 and syn["transistors_logic"] > 0
    # the arbiter's output FIFO is a memory of depth x event label
    assert r["components"]["arbiter"]["memory_bits"] == (
        MINI.arbiter_fifo_depth * MINI.event_label_bits)
    assert r["total"]["cells"] == syn["cells"] + r["components"]["arbiter"]["cells"]


def test_addrmap_command_prints_every_region(capsys):
    assert main(["rtl", "addrmap", "--preset", "mini"]) == 0
    out = capsys.readouterr().out
    for region in ("synapses0", "xbar_mask", "ctrl", "record"):
        assert region in out


def test_area_failure_names_a_log_that_exists(tmp_path):
    """A yosys run that fails (here: out of time) names its log, kept after the run."""
    log = tmp_path / "mini" / "spikeloop_ppu.yosys.log"
    with pytest.raises(RuntimeError, match=f"yosys took more than 1 s on spikeloop_ppu; "
                                           f"log: {log}$"):
        area(MINI, ["ppu"], timeout_s=1, log_dir=tmp_path)
    assert log.is_file()


def test_simulation_verilog_moves_every_reset_into_its_flip_flop():
    """The Verilog the Verilator co-simulation compiles: the same ports and
    registers as Amaranth's own, each register's domain reset inside its
    ``always @(posedge clk)`` block, and no combinational block reading ``rst``
    (Verilator would evaluate it on every call of the model)."""
    for name in ("arbiter", "crossbar", "adc_control"):
        plain = verilog.convert(build(name, MINI), name=module_name(name), emit_src=False,
                                strip_internal_attrs=True)
        sim = simulation_verilog(build(name, MINI), module_name(name))
        assert (top_port_directions(sim, module_name(name))
                == top_port_directions(plain, module_name(name)))
        resets = len(re.findall(r"if \(rst\) begin", plain))
        assert resets > 0
        assert len(re.findall(r"^\s+if \(rst\) \S+ <= ", sim, re.M)) == resets
        for block in re.findall(r"always @\* begin(.*?)\n  end\n", sim, re.S):
            assert not re.search(r"\brst\b", block), block[:200]
        def clocked(text):   # every register written at the clock edge
            return set(re.findall(r"(\S+) <= ", text))
        assert clocked(sim) == clocked(plain)


def test_top_ports_lists_the_ports_of_the_top_module():
    text = ("module inner(a, y);\n  input a;\n  output y;\nendmodule\n"
            "module top(clk, rst, d, q);\n  input clk;\n  wire clk;\n  input rst;\n"
            "  input [13:0] d;\n  output [3:0] q;\n  reg [3:0] q = 4'h0;\nendmodule\n")
    assert top_port_directions(text, "top") == [("clk", "input"), ("rst", "input"),
                                                ("d", "input"), ("q", "output")]
    # the VPI may write the inputs only: an output it could write would be evaluated
    # again, with everything behind it, at every call of the model
    assert _public_text(text, "top").splitlines() == [
        'public_flat_rw -module "top" -var "clk"', 'public_flat_rw -module "top" -var "rst"',
        'public_flat_rw -module "top" -var "d"', 'public_flat_rd -module "top" -var "q"']


# -- the cache of exported Verilog ------------------------------------------------------

def test_a_second_export_is_read_from_the_cache_byte_for_byte(tmp_path, monkeypatch):
    from spikeloop.rtl import export
    cache = tmp_path / "cache"
    first = export.export_verilog(MINI, tmp_path / "a", ["arbiter", "crossbar"], cache=cache)
    fresh = export.export_verilog(MINI, tmp_path / "c", ["arbiter", "crossbar"], cache=False)

    def refuse(*a, **k):
        raise AssertionError("exported again although the cache holds it")
    monkeypatch.setattr(export, "_component_verilog", refuse)
    second = export.export_verilog(MINI, tmp_path / "b", ["arbiter", "crossbar"], cache=cache)
    for name in ("arbiter", "crossbar"):
        assert second[name].read_text() == first[name].read_text() == fresh[name].read_text()
    # another option, another config, another code version: not the cached text
    deeper = dataclasses.replace(MINI, arbiter_fifo_depth=MINI.arbiter_fifo_depth + 1)
    for kw, cfg in ((dict(simulation=True), MINI), ({}, deeper)):
        with pytest.raises(AssertionError, match="exported again"):
            export.export_verilog(cfg, tmp_path / "d", ["arbiter"], cache=cache, **kw)
    monkeypatch.setattr(export, "code_version", lambda: "another-version")
    with pytest.raises(AssertionError, match="exported again"):
        export.export_verilog(MINI, tmp_path / "e", ["arbiter"], cache=cache)


def test_the_cache_drops_other_code_versions_unused_for_a_day(tmp_path):
    import os
    import time

    from spikeloop.rtl import export
    cache = tmp_path / "cache"
    old, recent = cache / "0123456789abcdef", cache / "fedcba9876543210"
    for d in (old, recent):
        d.mkdir(parents=True)
        (d / "arbiter-x.v").write_text("module x; endmodule\n")
    day = 24 * 3600
    os.utime(old, (time.time() - day - 60,) * 2)
    os.utime(recent, (time.time() - day + 600,) * 2)
    export.export_verilog(MINI, tmp_path / "a", ["arbiter"], cache=cache)
    assert not old.exists() and recent.is_dir()
    assert (cache / export.code_version()).is_dir()


def test_an_unwritable_cache_still_exports(tmp_path):
    from spikeloop.rtl import export
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    files = export.export_verilog(MINI, tmp_path / "a", ["arbiter"], cache=a_file / "cache")
    assert "module " in files["arbiter"].read_text()
