"""Every command given a bad path, a bad file or a size the chip cannot run:
one line on stderr naming the file (or the field and its limit), exit status 2,
never a traceback, never advice to unpickle a file (tests/faults.py lists the
cases; ``python -m tests.reliability`` counts them)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.faults import REFUSED, cli_cases, judge_cli

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return cli_cases(tmp_path_factory.mktemp("cli-errors"))


def test_every_command_refuses_a_bad_path_in_one_line(cases):
    bad = []
    for what, argv, must_hold in cases:
        outcome, detail = judge_cli(argv, must_hold)
        if outcome != REFUSED:
            bad.append(f"{what}: {outcome}: {detail}")
    assert not bad, "\n".join(bad)
    assert len(cases) >= 45


def test_a_refused_output_file_is_left_as_it_was(cases):
    existing = [argv for what, argv, _ in cases if what == "run: --out exists"][0]
    path = existing[existing.index("--out") + 1]
    before = open(path, "rb").read()
    judge_cli(existing, path)
    assert open(path, "rb").read() == before


def test_the_console_script_refuses_in_one_line(tmp_path):
    """The real entry point (a new process): one line, status 2, no traceback."""
    res = subprocess.run([sys.executable, "-m", "spikeloop.cli", "run", "--backend", "fast",
                          "--preset", "mini", "--chip-seed", "1", "--image",
                          str(tmp_path / "none.npz"), "--events", str(tmp_path / "e.npz"),
                          "--steps", "10", "--out", str(tmp_path / "o.npz")],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"spikeloop: error: {tmp_path / 'none.npz'}: no such "
                                       "file (a ConfigImage .npz expected)"]
