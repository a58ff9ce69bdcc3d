"""``spikeloop explore``: sweeps of chip variants and their reports (docs/explore.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from spikeloop.base.files import lock_output_dir
from spikeloop.base.settings import option
from spikeloop.explore import report, search, spec, sweep
from spikeloop.explore.energy import EnergyTable
from spikeloop.explore.workloads import WORKLOADS


@dataclass
class ExploreSettings:
    spec: str = option(positional=True, help="the sweep's spec (TOML; docs/explore.md)")
    out: str = option(required=True, help="the sweep's directory: rows, cache, logs, report "
                                          "(a rerun computes only what is missing)")
    workers: int = option(os.cpu_count() or 1, help="points run at once on this machine "
                                                    "(default: all cores)")
    ray: str | None = option(None, help="run the points on Ray: local (start one here), auto "
                                        "(the running cluster) or a cluster's address")
    search: str | None = option(None, choices=("optuna",),
                                help="instead of the grid: a multi-objective search (NSGA-II)")
    trials: int = option(20, help="--search: trials (variants) to run (default 20)")
    objectives: str = option("mnist.energy_per_image_j:min,mnist.accuracy:max",
                             help="--search: METRIC:min|max, comma-separated")
    search_seed: int = option(0, help="--search: the sampler's seed (default 0)")
    energy: str | None = option(None, help="an energy table (TOML) instead of the default "
                                           "(spikeloop/explore/energy.toml)")
    data_dir: str | None = option(None, help="full MNIST IDX files (default: the data the "
                                             "training tasks find)")
    progress: bool = option(True, flag="--no-progress", help="no progress bar")


@dataclass
class ReportSettings:
    dir: str = option(positional=True, help="a sweep's directory")


def run(s: ExploreSettings) -> int:
    """Check everything, then run the sweep (or search) and draw its report."""
    sp = spec.load(s.spec, WORKLOADS)
    if not isinstance(s.workers, int) or s.workers < 1:
        raise ValueError(f"workers = {s.workers!r}; allowed: an integer >= 1")
    if s.search is not None:
        objectives = search.parse_objectives(s.objectives)
        if s.trials < 1:
            raise ValueError(f"trials = {s.trials!r}; allowed: an integer >= 1")
    EnergyTable.load(s.energy)                       # a bad table: refused before any point
    with lock_output_dir(s.out, command="spikeloop explore") as lock:
        if lock.note:
            print(lock.note)
        sw = sweep.Sweep(sp, s.out, workers=s.workers, ray_address=s.ray,
                         energy_table=s.energy, data_dir=s.data_dir, progress=s.progress)
        n_var = len(sp.variants)
        print(f"sweep {sp.name}: base {sp.base.name}, {n_var} variants x "
              f"{len(sp.workloads)} workloads x seeds {list(sp.seeds)}; code version "
              f"{sw.version}; {'Ray ' + s.ray if s.ray else f'{s.workers} workers'}")
        if s.search is not None:
            hist = search.search(sw, s.trials, objectives, seed=s.search_seed)
            ok = sum(v is not None for _, v in hist)
            print(f"search: {len(hist)} trials, {ok} with every objective")
        else:
            rows = sw.run()
            failed = [r for r in rows if r["status"] == sweep.FAILED]
            for r in failed:
                print(f"failed: {r['variant']} {r['workload']} seed {r['seed']}: "
                      f"{r.get('reason', '')} (log {r.get('log')})")
        res = report.write_report(s.out)
    print(f"{res['rows']} rows ({', '.join(f'{n} {k}' for k, n in sorted(res['status'].items()))})"
          f"; report: {os.path.join(s.out, 'report.md')}")
    return 1 if res["status"].get(sweep.FAILED) else 0


def run_report(s: ReportSettings) -> int:
    res = report.write_report(s.dir)
    print(f"{res['rows']} rows; wrote {', '.join(res['written'])} in {s.dir}")
    return 0
