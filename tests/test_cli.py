"""The command line: every command's arguments derived from its settings
dataclass (spikeloop/base/settings.py), one dispatcher, refusals with one line
and exit status 2."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from spikeloop.base.settings import Command, add_arguments, build_parser, from_args, option
from spikeloop.base.settings import main as dispatch
from spikeloop.cli import COMMANDS, main

pytestmark = pytest.mark.unit


@dataclasses.dataclass
class Demo:
    name: str = option(positional=True, choices=("a", "b"), help="a or b")
    out: str = option(required=True, help="where")
    count: int = option(3, help="how many")
    rate: float | None = option(None, help="optional rate")
    seeds: tuple[int, ...] = option((0, 1), help="several")
    tags: tuple[str, ...] = option((), repeat=True, help="repeatable")
    fast: bool = option(False, help="a switch")
    progress: bool = option(True, flag="--no-progress", help="a switch on by default")
    chip_file: str | None = option(None, flag="--chip", help="another flag name")
    internal: int = 7                     # not an argument


def _parse(argv):
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p, Demo)
    return from_args(Demo, p.parse_args(argv))


def test_arguments_follow_the_fields():
    s = _parse(["b", "--out", "x"])
    assert s == Demo(name="b", out="x")
    s = _parse(["a", "--out", "y", "--count", "5", "--rate", "0.5", "--seeds", "4", "5", "6",
                "--tags", "p", "--tags", "q", "--fast", "--no-progress", "--chip", "c.npz"])
    assert s == Demo(name="a", out="y", count=5, rate=0.5, seeds=(4, 5, 6), tags=("p", "q"),
                     fast=True, progress=False, chip_file="c.npz")
    assert s.internal == 7


def test_refusals_are_one_line_and_status_2(capsys):
    cmd = Command(("demo",), Demo, lambda s: 0, "a demo")
    assert dispatch("tool", "", [cmd], ["demo", "c", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "name = 'c'; allowed: a, b" in err
    assert dispatch("tool", "", [cmd], ["demo", "a"]) == 2        # --out missing
    assert "--out" in capsys.readouterr().err

    def refuse(s):
        raise ValueError(f"count = {s.count}; allowed: an integer >= 4")

    bad = Command(("demo",), Demo, refuse, "a demo")
    assert dispatch("tool", "", [bad], ["demo", "a", "--out", "x"]) == 2
    assert capsys.readouterr().err == "tool: error: count = 3; allowed: an integer >= 4\n"


def test_a_command_returns_its_status_and_an_interrupt_its_hint(capsys):
    assert dispatch("tool", "", [Command(("demo",), Demo, lambda s: 1, "")],
                    ["demo", "a", "--out", "x"]) == 1

    def interrupted(s):
        raise KeyboardInterrupt

    cmd = Command(("demo",), Demo, interrupted, "", on_interrupt="resume from {settings.out}")
    assert dispatch("tool", "", [cmd], ["demo", "a", "--out", "run7"]) == 130
    assert "tool demo: interrupted; resume from run7" in capsys.readouterr().err


def test_every_command_parses_its_help():
    parser = build_parser("spikeloop", "", COMMANDS)
    words = {c.words for c in COMMANDS}
    assert {("train",), ("run",), ("rtl", "export"), ("experiment", "mismatch"), ("replay",),
            ("ppu", "learn"), ("calibrate",), ("scenario",), ("config",)} <= words
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([*cmd.words, "--help"])
        assert e.value.code == 0


def test_the_console_script_dispatches():
    res = subprocess.run([sys.executable, "-m", "spikeloop.cli", "config", "--preset", "mini"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and '"name": "mini"' in res.stdout
    assert main(["config", "--preset", "huge"]) == 2
