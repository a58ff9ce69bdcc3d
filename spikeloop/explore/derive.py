"""Derive the energy table's static power from the paper's figures:
``spikeloop explore energy``.

The FULL preset runs the paper's MNIST network (trained in software, deployed
as is on a calibrated chip) in inference mode; its dynamic energy per image
comes from the table's per-action energies and the run's counts, its
transistor estimate from the area workload.  The static power per transistor
is what makes dynamic + static = 2.4 µJ per image at 11.8 µs per image (the
paper's 200 mW x 11.8 µs).  Prints every figure it used; ``--write FILE``
writes the table with the derived value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from spikeloop.base.config import FULL
from spikeloop.base.files import atomic_write_text, prepare_output_file
from spikeloop.base.settings import option
from spikeloop.explore.energy import (
    DEFAULT_TABLE,
    PAPER_ENERGY_PER_IMAGE_J,
    PAPER_US_PER_IMAGE,
    EnergyTable,
    derive_static,
)
from spikeloop.explore.sweep import code_version
from spikeloop.explore.workloads import WORKLOADS, Context, area_metrics, deployed


@dataclass
class DeriveSettings:
    energy: str | None = option(None, help="the table whose dynamic energies are used "
                                           "(default: spikeloop/explore/energy.toml)")
    write: str | None = option(None, help="write the table with the derived static power here")
    cache: str = option("build/explore-cache", help="cache of the trained network and the "
                                                    "area (default build/explore-cache)")
    data_dir: str | None = option(None, help="full MNIST IDX files")
    seed: int = option(1, help="chip and training seed (default 1)")
    epochs: int = option(3, help="software training epochs (default 3)")
    test_samples: int = option(1000, help="test images in inference mode (default 1000)")


def derive(s: DeriveSettings) -> dict:
    table = EnergyTable.load(s.energy)
    if s.write:
        prepare_output_file(s.write, "--write")
    params = WORKLOADS["mnist"].check({"epochs": s.epochs, "test_samples": s.test_samples},
                                      FULL)
    ctx = Context(cache_dir=Path(s.cache), energy=table, base=FULL, data_dir=s.data_dir,
                  code_version=code_version())
    res = deployed("mnist", FULL, params, s.seed, ctx)
    n_tr = float(area_metrics(FULL, ctx)["area.transistors_total"])
    dyn = res["energy.dynamic_per_image_j"]
    w = derive_static(dyn, n_tr)
    out = {"accuracy": res["mnist.accuracy"], "us_per_image": res["us_per_image"],
           "dynamic_per_image_j": dyn, "transistors": n_tr, "watts_per_transistor": w,
           "static_w": w * n_tr, "table_energy_per_image_j": res["energy_per_image_j"]}
    return out


def run(s: DeriveSettings) -> int:
    r = derive(s)
    print(f"FULL, the paper's MNIST network deployed as is in inference mode (seed {s.seed}, "
          f"{s.test_samples} test images): accuracy {r['accuracy']:.4f}, "
          f"{r['us_per_image']:.2f} µs per image")
    print(f"dynamic energy per image (the table's per-action energies): "
          f"{r['dynamic_per_image_j'] * 1e6:.4f} µJ")
    print(f"transistor estimate of FULL: {r['transistors']:.4g}")
    print(f"target: {PAPER_ENERGY_PER_IMAGE_J * 1e6:.1f} µJ per image at "
          f"{PAPER_US_PER_IMAGE} µs per image")
    print(f"derived static power: {r['static_w'] * 1e3:.1f} mW, "
          f"{r['watts_per_transistor']:.4g} W per transistor")
    print(f"with the table as it is: {r['table_energy_per_image_j'] * 1e6:.3f} µJ per image")
    if s.write:
        text = Path(s.energy or DEFAULT_TABLE).read_text()
        text = re.sub(r"(?m)^watts_per_transistor\s*=.*$",
                      f"watts_per_transistor = {r['watts_per_transistor']:.6g}", text)
        atomic_write_text(s.write, text)
        print(f"wrote {s.write}")
    return 0
