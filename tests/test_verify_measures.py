"""The verification measures themselves: the functional-coverage report (merge,
table, waivers, failure on an unhit bin), the co-simulation trace replay, the
mutation catalogue, the parser of Verilator's coverage data."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from spikeloop.base.config import MINI
from spikeloop.verify import codecov, fcov, mutate

pytestmark = pytest.mark.unit


def _database(path: Path, hits: int) -> Path:
    """The current model exported with every bin set to ``hits``."""
    fcov.coverage_db.export_to_xml(filename=str(path))
    tree = ET.parse(path)
    for e in tree.getroot().iter():
        if "bin" in e.attrib:
            e.attrib["hits"] = str(hits)
    tree.write(path)
    return path


def _set_bin(path: Path, abs_name_prefix: str, label: str, hits: int) -> None:
    tree = ET.parse(path)
    for e in tree.getroot().iter():
        if e.attrib.get("bin") == label and e.attrib["abs_name"].startswith(abs_name_prefix):
            e.attrib["hits"] = str(hits)
    tree.write(path)


def test_report_merges_databases_and_fails_on_a_bin_neither_hit_nor_waived(
        tmp_path, capsys, monkeypatch):
    a = _database(tmp_path / "a.xml", 1)
    b = _database(tmp_path / "b.xml", 0)
    for p in (a, b):     # the arbiter's "drop" bin hit in neither database
        _set_bin(p, "top.chip.arbiter.drop.", "drop", 0)
    settings = fcov.ReportSettings(directory=str(tmp_path))
    assert fcov.report(settings) == 1
    out = capsys.readouterr().out
    assert "NOT HIT arbiter.drop.drop" in out
    assert out.count("NOT HIT") == 1
    row = next(line for line in out.splitlines() if line.startswith("arbiter "))
    n_arbiter = sum(len(b) for b in fcov.BLOCKS["arbiter"].points.values())
    assert row.split("|")[2].strip() != row.split("|")[1].strip()
    assert int(row.split("|")[2]) >= n_arbiter
    monkeypatch.setitem(fcov.WAIVERS, "arbiter.drop.drop", "a test of the waiver")
    assert fcov.report(settings) == 0
    assert "waived arbiter.drop.drop: a test of the waiver" in capsys.readouterr().out


def test_report_refuses_a_database_of_another_model(tmp_path):
    p = _database(tmp_path / "a.xml", 1)
    tree = ET.parse(p)
    parent = next(e for e in tree.getroot().iter() if e.tag == "drop")
    parent.remove(list(parent)[0])
    tree.write(p)
    with pytest.raises(ValueError, match="different version of the coverage model"):
        fcov.report(fcov.ReportSettings(directory=str(tmp_path)))


def test_saturation_of_the_ppu_lanes():
    assert fcov.saturates("vadds", 100, 100, 0, 0, 16)          # 100 + 100 > 127
    assert not fcov.saturates("vadds", 1, 1, 0, 0, 16)
    assert fcov.saturates("vsubu", 0, 1, 0, 0, 16)               # floor 0
    assert not fcov.saturates("vaddu", 200, 50, 0, 0, 8)
    assert fcov.saturates("vaddu", 200, 56, 0, 0, 8)             # 256 > 255
    assert fcov.saturates("vmul", 0x4000, 0x4000, 1, 0, 16)      # 16-bit lanes


def test_cosim_trace_replays_through_the_model(tmp_path):
    names = fcov.top_signals(MINI)
    lines = [json.dumps({"signals": names, "config": MINI.to_dict()}),
             json.dumps({"d": [[i, 0] for i in range(len(names))], "n": 3}),
             json.dumps({"d": [[names.index("hostbus.re"), 1]], "n": 2})]
    (tmp_path / "x.fcov.jsonl").write_text("\n".join(lines) + "\n")
    before = fcov.coverage_db["chip.hostbus.unmapped"].detailed_coverage["read"]
    assert fcov.sample_traces(tmp_path) == 5
    after = fcov.coverage_db["chip.hostbus.unmapped"].detailed_coverage["read"]
    # two cycles of a read with no region's decode flag set: two unmapped reads
    assert after == before + 2


def test_mutation_catalogue_applies_to_a_copy(tmp_path):
    mutate.check_catalogue()
    assert len(mutate.MUTANTS) >= 30
    assert {m.file for m in mutate.MUTANTS} <= set(mutate.OWN_TESTS)
    m = mutate.MUTANTS[0]
    copy = mutate.apply(m, tmp_path)
    changed = [p.name for p in copy.glob("*.py")
               if p.read_text() != (mutate.RTL / p.name).read_text()]
    assert changed == [m.file]
    assert m.new in (copy / m.file).read_text()


def test_verilator_coverage_data_is_parsed(tmp_path):
    dat = tmp_path / "coverage.dat"
    rec = "\x01".join(f"{k}\x02{v}" for k, v in
                      (("f", "top.v"), ("l", "12"), ("n", "3"), ("page", "v_line/spike_arbiter"),
                       ("o", "block"), ("h", "TOP.top.arbiter0")))
    tog = rec.replace("v_line", "v_toggle").replace("block", "drops[0]:0->1")
    dat.write_text(f"# SystemC::Coverage-3\nC '{rec}' 5\nC '{tog}' 0\n")
    pts = codecov.parse_dat(dat)
    assert [(p.module, p.kind, p.line, p.count) for p in pts] == [
        ("spike_arbiter", "line", 12, 5), ("spike_arbiter", "toggle", 12, 0)]
    text, uncovered = codecov.table(pts)
    assert "spike_arbiter | 1" in text and "100.0 %" in text and not uncovered
