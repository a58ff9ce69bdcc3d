"""The ``spikeloop`` command line: the table of commands and one dispatcher.

Each command is a settings dataclass (its fields are the command's arguments,
:mod:`spikeloop.base.settings`) and a ``run(settings)``, kept beside the code it
drives; this module only lists them.
"""
from __future__ import annotations

import sys

from spikeloop.base.settings import Command
from spikeloop.base.settings import main as dispatch
from spikeloop.cli import chip, rtl
from spikeloop.experiments import mismatch
from spikeloop.experiments.mismatch import ExperimentError, MismatchSettings, run_mismatch
from spikeloop.ppu import learn
from spikeloop.training import replay, train
from spikeloop.training.replay import ReplayError

DESCRIPTION = ("Emulate an accelerated analog neuromorphic chip, verify its digital logic and "
               "train spiking networks on it in the loop.")

GROUPS = {
    ("rtl",): "the chip's digital logic: Verilog, area, lint, address map",
    ("experiment",): "the paper's experiments on the emulated chip",
    ("ppu",): "programs of the plasticity processor (PPU)",
}

COMMANDS = (
    Command(("rtl", "export"), rtl.ExportSettings, rtl.export,
            "Verilog of the top level and of every component"),
    Command(("rtl", "area"), rtl.AreaSettings, rtl.area_report,
            "cells, memory bits and transistors per component (yosys synth; stat), as JSON"),
    Command(("rtl", "lint"), rtl.LintSettings, rtl.lint_report,
            "Verilator lint of the exported Verilog, waivers listed"),
    Command(("rtl", "addrmap"), rtl.AddrmapSettings, rtl.addrmap,
            "the host configuration bus's address map"),
    Command(("config",), chip.ConfigSettings, chip.config, "a preset's ChipConfig as JSON"),
    Command(("calibrate",), chip.CalibrateSettings, chip.calibrate,
            "calibrate a chip instance by measurement and report the spreads"),
    Command(("scenario",), chip.ScenarioSettings, chip.scenario,
            "write a verification scenario's image and input events"),
    Command(("run",), chip.RunSettings, chip.run,
            "run input events on a chip instance with a backend; write the Observables"),
    Command(("train",), train.TrainSettings, train.run,
            "train a spiking network in software, or in the loop on an emulated chip",
            description="Surrogate-gradient training (the paper's method, docs/paper.md): "
            "the ideal software model, or in the loop on an emulated chip instance. Writes "
            "checkpoint.pt every epoch, network.pt, results.json, plots and train.log to --out.",
            on_interrupt="continue with the same arguments and "
            "--resume (the last checkpoint is {settings.out}/checkpoint.pt)"),
    Command(("experiment", "mismatch"), MismatchSettings, run_mismatch,
            "in the loop vs software deployed as is vs transfer between chips",
            description=mismatch.__doc__, user_errors=(ExperimentError,)),
    Command(("replay",), replay.ReplaySettings, replay.run,
            "a network trained on the fast backend, replayed on the co-simulated RTL",
            description=replay.__doc__, user_errors=(ReplayError,)),
    Command(("ppu", "learn"), learn.LearnSettings, learn.demonstrate,
            "homeostatic synaptic scaling learned on the chip by its PPU, without the host",
            description=learn.__doc__),
)


def main(argv=None) -> int:
    return dispatch("spikeloop", DESCRIPTION, COMMANDS, argv, GROUPS)


if __name__ == "__main__":
    sys.exit(main())
