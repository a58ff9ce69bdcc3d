"""One point of a sweep, in a process of its own:
``python -m spikeloop.explore.worker JOB.json RESULT.json``.

Writes the point's result (status and metrics) to RESULT.json atomically and
exits 0; a network that does not fit the variant is a result too (status
``does not fit``).  Anything else that goes wrong ends the process with its
traceback in the log, and the sweep marks the point failed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from spikeloop.base.config import ChipConfig
from spikeloop.base.files import atomic_write_text
from spikeloop.explore.energy import EnergyTable
from spikeloop.explore.workloads import Context, DoesNotFit, run_workload


def main(argv: list[str]) -> int:
    job_file, result_file = argv
    job = json.loads(Path(job_file).read_text())
    torch.set_num_threads(1)
    cfg = ChipConfig.from_dict(job["cfg"])
    ctx = Context(cache_dir=Path(job["cache_dir"]), energy=EnergyTable.load(job["energy_table"]),
                  base=ChipConfig.preset(job["base"]), data_dir=job["data_dir"],
                  code_version=job["code_version"])
    print(f"point {job['key']}: {job['workload']} on {cfg.name}, seed {job['seed']}, "
          f"parameters {json.dumps(job['params'], sort_keys=True)}", flush=True)
    try:
        metrics = run_workload(job["workload"], cfg, job["params"], job["seed"], ctx)
        result = {"status": "ok", "reason": "", **metrics}
    except DoesNotFit as e:
        result = {"status": "does not fit", "reason": str(e)}
    atomic_write_text(result_file, json.dumps(result, sort_keys=True) + "\n")
    print(f"point {job['key']}: {result['status']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
