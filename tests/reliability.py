"""The reliability figures of the README: every bad input and fault of
tests/faults.py tried once, and how each was handled.

    .venv/bin/python -m tests.reliability [--verbose]

Prints the inputs tried, those handled cleanly (loaded, or refused with one of the
project's error types naming the file; for a command, one line on stderr and exit
status 2), the tracebacks, the vague refusals (not naming the file, or more than
one line) and the data lost (a result file changed or broken by a refused or
killed writer).  Exit status 1 when anything was not handled cleanly.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

from tests.faults import (
    ACCEPTED,
    REFUSED,
    TRACEBACK,
    UNNAMED,
    cli_cases,
    concurrency_cases,
    judge_cli,
    run_loader_corpus,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verbose", action="store_true", help="one line per input")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []                                   # (group, what, outcome, detail, lost)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for loader, what, outcome, detail in run_loader_corpus(d / "loaders"):
            rows.append((f"loader {loader}", what, outcome, detail, False))
        (d / "cli").mkdir()
        for what, argv, must in cli_cases(d / "cli"):
            outcome, detail = judge_cli(argv, must)
            rows.append(("command", what, outcome, detail, False))
        (d / "conc").mkdir()
        for what, outcome, detail, lost in concurrency_cases(d / "conc"):
            rows.append(("concurrency", what, outcome, detail, lost))
    groups = collections.OrderedDict()
    for g, *_ in rows:
        key = "loaders" if g.startswith("loader") else g
        groups[key] = groups.get(key, 0) + 1
    count = collections.Counter(r[2] for r in rows)
    clean = count[ACCEPTED] + count[REFUSED]
    lost = sum(r[4] for r in rows)
    if args.verbose:
        for g, what, outcome, detail, _ in rows:
            first = detail.splitlines()[0][:100] if detail else ""
            print(f"{g:<22} {what:<48} {outcome:<9} {first}")
    for g, what, outcome, detail, was_lost in rows:
        if outcome in (TRACEBACK, UNNAMED) or was_lost:
            print(f"NOT CLEAN: {g}: {what}: {outcome}: {detail.strip()[:500]}")
    loaders = sorted({r[0][len('loader '):] for r in rows if r[0].startswith("loader")})
    print(f"inputs tried:     {len(rows)} ({groups.get('loaders', 0)} bad files for "
          f"{len(loaders)} loaders, {groups.get('command', 0)} commands given a bad path or "
          f"size, {groups.get('concurrency', 0)} concurrent or killed writers)")
    print(f"handled cleanly:  {clean} ({count[REFUSED]} refused naming the file, "
          f"{count[ACCEPTED]} still valid and loaded)")
    print(f"tracebacks:       {count[TRACEBACK]}")
    print(f"vague refusals:   {count[UNNAMED]}")
    print(f"data lost:        {lost}")
    print(f"({time.perf_counter() - t0:.0f} s; loaders: {', '.join(loaders)})")
    return 0 if clean == len(rows) and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
