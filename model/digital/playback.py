"""Cycle-accurate reference of the event playback (rtl/playback.py, docs/rtl.md
section 6).

Inputs of :meth:`EventPlaybackRef.tick`: ``clear``, ``host_addr``, ``host_we``,
``host_wdata`` (a packed ``timed_event_format(cfg, n_ext_inputs)`` entry, see
:func:`~spikeloop.base.layouts.pack_timed_event`), ``count``, ``time``, ``links_ready`` (list).
Outputs: ``host_rdata``, ``links_valid``, ``links_payload`` (lists), ``late``,
``done``.
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.base.layouts import unpack_timed_event


class EventPlaybackRef:
    """Playback: memory, head read one cycle ahead, one entry per cycle when due."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.depth = cfg.playback_depth
        self.n_links = cfg.n_ext_inputs
        self.cmax = (1 << cfg.counter_bits) - 1
        self.reset()

    def reset(self) -> None:
        self.mem = [0] * self.depth
        self.head = 0         # data register of the engine's read port
        self.host_rdata = 0   # data register of the host's read port
        self.ptr = 0
        self.late = 0

    def tick(self, *, clear=0, host_addr=0, host_we=0, host_wdata=0, count, time,
             links_ready) -> dict:
        depth, n_links = self.depth, self.n_links
        label, link, etime = unpack_timed_event(self.cfg, n_links, self.head)
        active = self.ptr < min(count, depth)
        due = active and time >= etime
        valid = [int(due and link == k) for k in range(n_links)]
        out = {
            "host_rdata": self.host_rdata,
            "links_valid": valid,
            "links_payload": [label if v else 0 for v in valid],
            "late": self.late,
            "done": int(not active),
        }
        take = due and (link >= n_links or bool(links_ready[link]))
        ptr_next = 0 if clear else self.ptr + int(take)
        # across the clock edge: read ports sample the old contents, then the write
        host_ok = host_addr < depth
        self.host_rdata = self.mem[host_addr if host_ok else 0]
        self.head = self.mem[ptr_next if ptr_next < depth else 0]
        if host_we and host_ok:
            self.mem[host_addr] = host_wdata
        self.ptr = ptr_next
        if clear:
            self.late = 0
        elif take and time > etime:
            self.late = min(self.late + 1, self.cmax)
        return out
