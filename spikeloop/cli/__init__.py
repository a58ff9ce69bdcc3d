"""The ``spikeloop`` command line: the table of commands and one dispatcher.

Each command is a settings dataclass (its fields are the command's arguments,
:mod:`spikeloop.base.settings`) and a ``run(settings)``, kept beside the code it
drives; this module only lists them.
"""
from __future__ import annotations

import sys

from spikeloop.base.files import LockError
from spikeloop.base.settings import Command
from spikeloop.base.settings import main as dispatch
from spikeloop.cli import chip, explore, nir, rtl
from spikeloop.cli import paper as paper_cli
from spikeloop.data.speech import build as speech_build
from spikeloop.data.speech import check as speech_check
from spikeloop.experiments import decalibration, mismatch, paper
from spikeloop.experiments import speech as speech_experiment
from spikeloop.experiments.decalibration import DecalibrationSettings, run_decalibration
from spikeloop.experiments.mismatch import ExperimentError, MismatchSettings, run_mismatch
from spikeloop.explore import derive, spec
from spikeloop.explore.energy import EnergyTableError
from spikeloop.explore.report import ReportError
from spikeloop.explore.sweep import SweepError
from spikeloop.ppu import learn
from spikeloop.training import diagnose, replay, train
from spikeloop.training.replay import ReplayError

DESCRIPTION = ("Emulate an accelerated analog neuromorphic chip, verify its digital logic and "
               "train spiking networks on it in the loop.")

GROUPS = {
    ("rtl",): "the chip's digital logic: Verilog, area, lint, address map",
    ("experiment",): "the paper's experiments on the emulated chip",
    ("ppu",): "programs of the plasticity processor (PPU)",
    ("explore",): "chip-design variants: what each costs and what it buys (SPEC is short "
                  "for run SPEC)",
    ("data",): "data sets made on this machine",
    ("nir",): "NIR graphs (snnTorch, norse, Sinabs, hxtorch) onto the chip and back",
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
    Command(("experiment", "decalibration"), DecalibrationSettings, run_decalibration,
            "self-correction: the chip deliberately decalibrated, in the loop vs transferred",
            description=decalibration.__doc__, user_errors=(ExperimentError,)),
    Command(("experiment", "paper"), paper.PaperSettings, paper_cli.run,
            "the paper's table: full MNIST in the loop and in software, inference mode, "
            "energy, beside the paper's numbers",
            description=paper.__doc__,
            user_errors=(paper.PaperError, EnergyTableError, LockError)),
    Command(("replay",), replay.ReplaySettings, replay.run,
            "a network trained on the fast backend, replayed on the co-simulated RTL",
            description=replay.__doc__, user_errors=(ReplayError,)),
    Command(("diagnose",), diagnose.DiagnoseSettings, diagnose.run,
            "where a network trained in the loop and its ideal model part ways (spikes, "
            "readout, gradient)",
            description=diagnose.__doc__, user_errors=(diagnose.DiagnoseError,)),
    Command(("nir", "import"), nir.ImportSettings, nir.run_import,
            "map a NIR graph onto a chip instance (placed, converted, quantised)",
            description="Map a NIR graph onto a calibrated chip instance: populations onto "
            "neuron circuits, weights onto signed 6-bit synapse pairs (docs/nir.md). Writes "
            "network.pt (for spikeloop train --init), chip.npz, image.npz and import.json."),
    Command(("nir", "export"), nir.ExportSettings, nir.run_export,
            "write a trained network as a NIR graph of the ideal model",
            description="A network of a run directory (spikeloop train, spikeloop nir "
            "import) as a NIR graph: CubaLIF hidden, CubaLI readout, Linear weights in "
            "their real-valued scale (docs/nir.md)."),
    Command(("nir", "interop"), nir.InteropSettings, nir.run_interop,
            "snnTorch -> NIR -> the chip and back, on MNIST (needs the extra 'peers')",
            description="The paper's MNIST network trained in snnTorch, written by its NIR "
            "exporter, imported and deployed on the chip, trained a few epochs in the loop, "
            "against spikeloop's own training in the loop; spikeloop's network exported and "
            "read by snnTorch's importer (docs/nir.md)."),
    Command(("explore", "run"), explore.ExploreSettings, explore.run,
            "sweep chip variants over workloads (area, routing, mnist, yinyang)",
            description="Run a sweep of chip variants (a TOML spec: base preset, axes or "
            "variants, workloads, seeds, constraints) on a process pool or a Ray cluster, "
            "cached per point, and draw its report (docs/explore.md). `spikeloop explore "
            "SPEC ...` is short for `spikeloop explore run SPEC ...`.",
            user_errors=(spec.SpecError, EnergyTableError, SweepError, LockError)),
    Command(("explore", "report"), explore.ReportSettings, explore.run_report,
            "(re)draw a sweep's report: results table, report.md, Pareto plots",
            user_errors=(ReportError,)),
    Command(("explore", "energy"), derive.DeriveSettings, derive.run,
            "derive the energy table's static power from the paper's 2.4 µJ per image",
            description=derive.__doc__, user_errors=(EnergyTableError,)),
    Command(("experiment", "speech"), speech_experiment.SpeechExperimentSettings,
            speech_experiment.run,
            "the paper's speech network (SHD's) on spoken digits or SHD: software, control, "
            "in the loop",
            description=speech_experiment.__doc__,
            user_errors=(speech_experiment.SpeechExperimentError, LockError)),
    Command(("data", "speech"), speech_build.SpeechSettings, speech_build.run,
            "spoken digits (espeak-ng, English and German) through SHD's cochlea, as SHD files",
            description=speech_build.__doc__),
    Command(("data", "cochlea-check"), speech_check.CochleaCheckSettings, speech_check.run,
            "the vectorised cochlea against lauscher's on a few utterances",
            description=speech_check.__doc__),
    Command(("ppu", "learn"), learn.LearnSettings, learn.demonstrate,
            "homeostatic synaptic scaling learned on the chip by its PPU, without the host",
            description=learn.__doc__),
)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if (len(argv) > 1 and argv[0] == "explore" and argv[1] not in ("run", "report", "energy")
            and not argv[1].startswith("-")):
        argv.insert(1, "run")                  # `explore SPEC` is `explore run SPEC`
    return dispatch("spikeloop", DESCRIPTION, COMMANDS, argv, GROUPS)


if __name__ == "__main__":
    sys.exit(main())
