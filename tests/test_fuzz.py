"""Every loader fed bad files: random bytes, truncated and bit-flipped files, wrong
dtypes, wrong shapes, missing keys (tests/faults.py).  Only the project's own
error types may escape, each naming the file; a file that still parses may load.

The default tier draws a few examples per loader; the slow tier many more, and
the whole deterministic corpus (also run by ``python -m tests.reliability``)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults import LOADERS, TRACEBACK, UNNAMED, faults, fresh_file, judge

pytestmark = pytest.mark.unit

_SETTINGS = dict(deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _bad_file(data, loader, workdir: Path) -> tuple[Path, str]:
    """A bad file for ``loader`` drawn by hypothesis: random bytes, a valid file
    truncated or with bits flipped, or one of the loader's structural faults."""
    p = fresh_file(loader, workdir)
    valid = p.read_bytes()
    kind = data.draw(st.sampled_from(("random", "truncated", "flipped", "fault")))
    if kind == "random":
        blob = data.draw(st.binary(max_size=4096))
        p.write_bytes(blob)
        return p, f"{len(blob)} random bytes"
    if kind == "truncated":
        k = data.draw(st.integers(0, max(len(valid) - 1, 0)))
        p.write_bytes(valid[:k])
        return p, f"truncated to {k} bytes"
    if kind == "flipped":
        flips = data.draw(st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 7)),
                                   min_size=1, max_size=8))
        b = bytearray(valid)
        for pos, bit in flips:
            b[pos] ^= 1 << bit
        p.write_bytes(bytes(b))
        return p, f"bits flipped at {flips}"
    cases = faults(loader, workdir)
    what, apply = data.draw(st.sampled_from(cases))
    p = fresh_file(loader, workdir)
    apply(p)
    return p, what


def _check(data, loader) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, what = _bad_file(data, loader, Path(tmp))
        outcome, detail = judge(loader.load, path)
        assert outcome not in (TRACEBACK, UNNAMED), f"{loader.name}, {what}: {outcome}: {detail}"


@pytest.mark.parametrize("loader", LOADERS, ids=[x.name for x in LOADERS])
@settings(max_examples=12, **_SETTINGS)
@given(data=st.data())
def test_a_bad_file_is_refused_naming_it(loader, data):
    _check(data, loader)


@pytest.mark.slow
@pytest.mark.parametrize("loader", LOADERS, ids=[x.name for x in LOADERS])
@settings(max_examples=300, **_SETTINGS)
@given(data=st.data())
def test_many_bad_files_are_refused_naming_them(loader, data):
    _check(data, loader)


@pytest.mark.slow
@pytest.mark.parametrize("loader", LOADERS, ids=[x.name for x in LOADERS])
def test_the_whole_corpus_is_handled_cleanly(loader, tmp_path):
    bad = []
    for what, apply in faults(loader, tmp_path):
        p = fresh_file(loader, tmp_path)
        apply(p)
        outcome, detail = judge(loader.load, p)
        if outcome in (TRACEBACK, UNNAMED):
            bad.append(f"{what}: {outcome}: {detail}")
    assert not bad, "\n".join(bad)


def test_valid_files_load(tmp_path):
    """The corpus starts from files that load: a refusal is the fault's doing."""
    for loader in LOADERS:
        assert judge(loader.load, fresh_file(loader, tmp_path))[0] == "accepted", loader.name
