"""The code-coverage report's reasons: a stable description of each line of the
generated Verilog, the join with spikeloop/verify/codecov_reasons.py, and the
failure when an uncovered line has none."""
import re
from pathlib import Path

import pytest

from spikeloop.verify import codecov
from spikeloop.verify.codecov_reasons import LINE_REASONS, TOGGLE_CLASSES, Reason

pytestmark = pytest.mark.unit

VERILOG = r"""module spikeloop_top_crossbar(clk);
  always @* begin
    if (\$auto$verilog_backend.cc:2355:dump_module$13 ) begin end
    \$127  = 14'h0000;
    casez (o0_grant)
      3'h0:
          \$127  = n0_0_head;
      3'h2:
          \$127  = n2_0_head;
    endcase
  end
  always @* begin
    \$1222  = o2_locked;
    if (clear) begin
      \$1222  = 1'h0;
    end else if (\$1022 ) begin
      \$1222  = 1'h0;
    end
  end
  always @* begin
    rdata = 32'd0;
    casez (rd_region)
      6'h08:
          (* full_case = 32'd1 *)
          if (rd_word) begin
            rdata = \port$3444$0 [14:0];
          end
    endcase
  end
endmodule
"""


def line_of(src, text, nth=0):
    return [i + 1 for i, ln in enumerate(src) if ln.strip() == text][nth]


def test_description_names_the_signal_the_arm_and_the_statement():
    src = VERILOG.splitlines()
    names = codecov.arm_names("mini")
    assert codecov.describe(src, line_of(src, "3'h2:"), names) == \
        "$: case (o0_grant) 3'h2 -> $ = n2_0_head;"
    assert codecov.describe(src, line_of(src, r"end else if (\$1022 ) begin"), names) == \
        "o2_locked: end else if ($) begin -> $ = 1'h0;"
    assert codecov.describe(src, line_of(src, "6'h08:"), names) == \
        "rdata: case (rd_region) 6'h08 [playback] -> if (rd_word) begin"


def test_description_does_not_depend_on_net_numbers_or_line_numbers():
    src = VERILOG.splitlines()
    shifted = ["// a line more", *re.sub(r"\\\$1(\d+)", r"\\$9\1", VERILOG).splitlines()]
    for text in ("3'h2:", r"end else if (\$1022 ) begin"):
        a = codecov.describe(src, line_of(src, text))
        moved = text.replace("$1022", "$9022")
        assert codecov.describe(shifted, line_of(shifted, moved)) == a


def test_globs_take_brackets_literally():
    assert codecov.glob_match("refractory_count*: if (spike_out[*]) *",
                              "refractory_count8: if (spike_out[8]) begin -> x")
    assert not codecov.glob_match("a[0]", "a0")
    assert codecov.glob_match("arbiter?", "arbiter2")


def _coverage_dir(tmp_path, count):
    """A merged.dat with one line point (``3'h2`` of VERILOG) hit ``count`` times."""
    src = tmp_path / "top.v"
    src.write_text(VERILOG)
    line = line_of(VERILOG.splitlines(), "3'h2:")
    rec = "\x01".join(f"{k}\x02{v}" for k, v in (
        ("f", str(src)), ("l", str(line)), ("n", "3"), ("page", "v_line/spikeloop_top.crossbar"),
        ("o", "case"), ("h", "TOP.spikeloop_top.crossbar")))
    (tmp_path / "merged.dat").write_text(f"# SystemC::Coverage-3\nC '{rec}' {count}\n")
    return tmp_path


def test_report_fails_on_an_uncovered_line_without_a_reason(tmp_path, capsys):
    out = _coverage_dir(tmp_path, 0)
    assert codecov.report(out, "mini", reasons=()) == 1
    assert "without a reason" in capsys.readouterr().err
    why = Reason("crossbar", "$: case (o0_grant) *", "untested", "routed by the test X")
    assert codecov.report(out, "mini", reasons=(why,)) == 0
    printed = capsys.readouterr().out
    assert "routed by the test X" in printed and "o0_grant" in printed
    assert codecov.report(_coverage_dir(tmp_path, 3), "mini", reasons=()) == 0
    capsys.readouterr()
    # a line a test should reach, left unexecuted: fails, naming the test
    must = Reason("crossbar", "$: case (o0_grant) *", "reached", "tests/test_y.py::test_z")
    assert codecov.report(_coverage_dir(tmp_path, 0), "mini", reasons=(must,)) == 1
    assert "tests/test_y.py::test_z" in capsys.readouterr().err
    assert codecov.report(_coverage_dir(tmp_path, 1), "mini", reasons=(must,)) == 0


def test_every_reason_is_complete_and_names_a_test_that_exists():
    repo = Path(__file__).resolve().parents[1]
    for r in LINE_REASONS:
        assert r.kind in ("unreachable", "untested", "reached") and r.why and r.match, r
        for path, func in re.findall(r"(tests/\w+\.py)::(\w+)", r.why):
            assert f"def {func}(" in (repo / path).read_text(), (r, path, func)
        if r.kind in ("untested", "reached"):
            assert re.search(r"tests/\w+\.py", r.why), f"untested without a test: {r}"
    for c in TOGGLE_CLASSES:
        re.compile(c.signal)
        assert c.why and c.from_bit >= 0
