"""Shared harness for the co-simulation tests: the Verilator build of a chip's top."""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.cosim import runner
from spikeloop.cosim.backend import BUILD_ARGS


def build_verilator_top(cfg: ChipConfig) -> runner.BuildInfo:
    """The top of ``cfg`` built for Verilator as the cosim backend builds it
    (cached by its Verilog); prints whether it was reused or built, and where."""
    info = runner.build(cfg, "top", "verilator", False, build_args=BUILD_ARGS["verilator"])
    print(f"verilator {cfg.name} top: {'reused' if info.cached else 'built'} in "
          f"{info.seconds:.1f} s ({info.build_dir})")
    return info
