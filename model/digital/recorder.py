"""Cycle-accurate reference of the event recorder (rtl/recorder.py, docs/rtl.md
section 6).

Inputs of :meth:`EventRecorderRef.tick`: ``clear``, ``time``, ``links_valid``,
``links_payload`` (lists), ``host_addr``.  Outputs: ``links_ready`` (list),
``count``, ``drops``, ``host_rdata`` (a packed ``timed_event_layout(cfg,
n_host_links)`` entry, see :func:`~spikeloop.model.digital.playback.unpack_timed_event`).
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.base.layouts import pack_timed_event


class EventRecorderRef:
    """Recorder: round-robin over the links, one event per cycle, memory then drops."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.depth = cfg.record_depth
        self.n_links = cfg.n_host_links
        self.cmax = (1 << cfg.counter_bits) - 1
        self.reset()

    def reset(self) -> None:
        self.mem = [0] * self.depth
        self.host_rdata = 0
        self._clear_run_state()

    def _clear_run_state(self) -> None:
        self.count = 0
        self.drops = 0
        self.last = self.n_links - 1

    def entries(self) -> list[int]:
        """The recorded entries (packed), oldest first."""
        return self.mem[:self.count]

    def tick(self, *, clear=0, time, links_valid, links_payload, host_addr=0) -> dict:
        n_links = self.n_links
        grant = None
        for k in range(1, n_links + 1):
            link = (self.last + k) % n_links
            if links_valid[link]:
                grant = link
                break
        out = {
            "links_ready": [int(grant == k) for k in range(n_links)],
            "count": self.count,
            "drops": self.drops,
            "host_rdata": self.host_rdata,
        }
        self.host_rdata = self.mem[host_addr if host_addr < self.depth else 0]
        if clear:
            self._clear_run_state()
        elif grant is not None:
            self.last = grant
            if self.count < self.depth:
                self.mem[self.count] = pack_timed_event(
                    self.cfg, n_links, links_payload[grant], grant, time)
                self.count += 1
            else:
                self.drops = min(self.drops + 1, self.cmax)
        return out
