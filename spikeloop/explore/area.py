"""The ``area`` workload: what a chip variant costs in logic and memory.

:func:`area_metrics` returns flat, JSON-able metrics (all figures count every
instance of a component: the 8 arbiters of FULL, both halves' synapse arrays):

- ``area.cells_total``, ``area.cells.<component>``: logic cells after
  synthesis (yosys's internal gates and flip-flops; memories not included);
- ``area.memory_bits_total``, ``area.memory_bits.<component>``: bits of every
  storage array, ``area.sram_bits_*`` (memories, SRAM macros) plus
  ``area.flipflop_bits_*`` (FIFOs and register files the RTL builds from
  flip-flops; their transistors are in the logic figures);
- ``area.transistors_total``, ``area.transistors.<component>``: logic plus
  SRAM, with ``area.transistors_logic_*`` and ``area.transistors_sram_*``;
- ``area.instances.<component>``: how many instances the chip holds;
- ``area.method``: how the estimate was made, in one line.

The components are those of rtl/components.py plus ``top``, the top level's
own logic and memories.  docs/area.md describes the method, what is counted
and what is approximated; :mod:`spikeloop.rtl.area` does the work.
"""
from __future__ import annotations

from pathlib import Path

from spikeloop.base.config import ChipConfig
from spikeloop.rtl.area import Progress, default_cache_dir, estimate, flat_metrics


def area_metrics(cfg: ChipConfig, *, cache_dir: Path | None = None, timeout_s: int = 1800,
                 progress: Progress | None = None, jobs: int = 1) -> dict:
    """The ``area.*`` metrics of ``cfg`` (module docstring).

    ``cache_dir``: the synthesis cache (default
    :func:`~spikeloop.rtl.area.default_cache_dir`: ``$SPIKELOOP_AREA_CACHE`` or
    the user's cache directory), shared safely by concurrent workers;
    ``timeout_s``: the limit of one yosys run; ``progress``: called with one
    line per step (which component is exported or synthesized, elapsed time);
    ``jobs``: yosys runs at a time."""
    result = estimate(cfg, cache_dir=cache_dir if cache_dir is not None else default_cache_dir(),
                      jobs=jobs, timeout_s=timeout_s, progress=progress)
    return flat_metrics(result)
