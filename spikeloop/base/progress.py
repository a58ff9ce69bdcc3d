"""Progress of a long step that prints nothing of its own (a synthesis run, a
Verilator build): what is being done, then the elapsed time every so often, then
how long it took.  Messages go to stderr, so that a command's output (JSON, a
table) stays clean on stdout.

    with Heartbeat("yosys synth of component top (preset full)"):
        run_yosys(...)
"""
from __future__ import annotations

import sys
import threading
import time


class Heartbeat:
    """Print ``what ...`` on entry, ``what: N s so far`` every ``every`` seconds
    while the block runs, and ``what: done in N s`` at its end (``failed`` when
    it raised).  ``stream``: where to print (default stderr); ``enabled=False``
    prints nothing."""

    def __init__(self, what: str, *, every: float = 30.0, stream=None, enabled: bool = True):
        self.what = what
        self.every = every
        self.stream = stream
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0

    def _say(self, msg: str) -> None:
        stream = self.stream or sys.stderr
        try:
            print(msg, file=stream, flush=True)
        except (OSError, ValueError):       # a closed stream: progress is optional
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._say(f"  {self.what}: {time.monotonic() - self.t0:.0f} s so far")

    def __enter__(self) -> Heartbeat:
        self.t0 = time.monotonic()
        if self.enabled:
            self._say(f"{self.what} ...")
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.enabled:
            dt = time.monotonic() - self.t0
            self._say(f"  {self.what}: {'done' if exc_type is None else 'failed'} "
                      f"in {dt:.1f} s")
