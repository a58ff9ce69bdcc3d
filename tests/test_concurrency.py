"""Concurrent and killed writers: a second writer on one --out is refused naming
the holder, a killed writer's stale lock is taken over with a note, a writer
killed in the middle of a write leaves the previous file whole (tests/faults.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from spikeloop.base.files import (
    LOCK_NAME,
    DirLock,
    LockError,
    atomic_open,
    atomic_write_text,
    unused_path,
)
from tests.faults import REFUSED, concurrency_cases

pytestmark = pytest.mark.unit


def test_concurrent_and_killed_writers(tmp_path):
    rows = concurrency_cases(tmp_path)
    assert [r[0] for r in rows] == ["a second writer on a locked --out",
                                    "the stale lock of a killed writer",
                                    "a writer killed during an atomic write"]
    for what, outcome, detail, lost in rows:
        assert outcome == REFUSED and not lost, f"{what}: {outcome}: {detail}"


def test_a_lock_names_its_holder_and_is_released(tmp_path):
    with DirLock(tmp_path, "first") as lock:
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "first"
        with pytest.raises(LockError, match=rf"in use by process {os.getpid()} on host .*first"):
            DirLock(tmp_path, "second").acquire()
        assert lock.note is None
    assert not (tmp_path / LOCK_NAME).exists()
    with DirLock(tmp_path, "third") as again:                 # released: no note
        assert again.note is None


def test_an_atomic_write_that_fails_leaves_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("the writer fails")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) != "0o600"


@pytest.mark.slow
def test_two_training_runs_on_one_out(tmp_path):
    """Two real `spikeloop train` processes on one --out: the second is refused
    while the first runs; the first finishes with its results intact."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "spikeloop.cli", "train", "yinyang", "--epochs", "2",
            "--train-samples", "200", "--test-samples", "50", "--no-progress",
            "--out", str(out)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / LOCK_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(args, capture_output=True, text=True)
    assert second.returncode == 2
    assert f"in use by process {first.pid}" in second.stderr
    assert len(second.stderr.splitlines()) == 1
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["epochs_done"] == 2


def test_a_later_runs_report_goes_beside_the_earlier_one(tmp_path):
    """unused_path: the earlier report stays, the next run's gets the next free name."""
    report = tmp_path / "replay.json"
    names = []
    for k in range(3):
        out = unused_path(report)
        atomic_write_text(out, f"run {k}\n")
        names.append(out.name)
    assert names == ["replay.json", "replay-2.json", "replay-3.json"]
    assert [(tmp_path / n).read_text() for n in names] == ["run 0\n", "run 1\n", "run 2\n"]
    (tmp_path / "replay-2.json").unlink()           # a gap is filled first
    assert unused_path(report).name == "replay-2.json"
