"""Replay: a network trained on the fast backend, run on the cycle-level co-simulation.

    spikeloop replay DIR [--samples 20] [--batch 10] [--simulator verilator] [--workers N]

``DIR`` is a ``spikeloop train --backend fast`` output directory (``network.pt``
and the chip instance ``chip.npz``).  The first ``--samples`` test samples of
the run's task go through the trained network twice, on the same chip
instance, with the same noise keys: once on backend ``fast``, once on backend
``cosim`` (the exported RTL under cocotb, with the analog model bridged in).
The replay passes when every batch's Observables are identical field by field
(spikes, records, ADC codes, counters, drops) and so are the network's outputs
and predictions; it prints one line per batch and writes ``DIR/replay.json`` (an earlier
replay's report stays: the next is ``replay-2.json``, ...).  The batches after the
first (which makes or finds the simulator's build) are co-simulated ``--workers``
at a time, each in its own simulator process, each with the noise keys it has in
a replay batch by batch: the report does not depend on the number of workers.  A difference
is reported with the first differing field, sample, step and neuron
(``Observables.first_difference``).  This is what lets a hardware designer
trust a training run on the fast backend: the RTL does the same.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from spikeloop.base.files import DirLock, atomic_write_text, prepare_output_dir, unused_path
from spikeloop.base.settings import option
from spikeloop.data import Batches
from spikeloop.training.tasks import build_task
from spikeloop.training.train import load_network, open_chip_run


class ReplayError(RuntimeError):
    """The replay could not run (missing files, wrong backend); says what and where."""


@dataclass
class ReplaySettings:
    """What to replay; the fields are ``spikeloop replay``'s arguments."""

    run_dir: str = option(positional=True,
                          help="output directory of `spikeloop train --backend fast`")
    samples: int = option(20, help="test samples (default 20)")
    batch: int = option(10, help="samples per run (default 10)")
    simulator: str = option("verilator", choices=("verilator", "icarus"),
                            help="the co-simulation's simulator (default verilator)")
    build_dir: str | None = option(None, help="where the simulator builds are cached "
                                   "(default $SPIKELOOP_COSIM_BUILD_ROOT, else build/cosim in "
                                   "a source checkout, else the user's cache directory)")
    workers: int = option(0, help="batches co-simulated at once, each in its own simulator "
                          "process (default 0: one per CPU)")


def outputs_digest(out) -> str:
    """SHA-256 of a network's outputs (every tensor of its ``NetworkOutput``, in
    order, as float64 bytes): the same batch, keys and network give the same
    digest on every backend, machine and number of workers."""
    h = hashlib.sha256()
    for t in (t for t in out if t is not None):
        h.update(t.detach().to(torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()


def replay(s: ReplaySettings, log=print) -> dict:
    """Run the first ``s.samples`` test samples of the training run in ``s.run_dir``
    on fast and cosim; returns the report (also written to ``run_dir/replay.json``, or
    ``replay-2.json``, ... beside an earlier replay's)."""
    run_dir, samples, batch, simulator = Path(s.run_dir), s.samples, s.batch, s.simulator
    if samples < 1 or batch < 1 or s.workers < 0:
        raise ReplayError(f"--samples {samples}, --batch {batch}, --workers {s.workers}; "
                          "allowed: --samples and --batch >= 1, --workers >= 0")
    meta, chip = open_chip_run(run_dir, "replay", ReplayError)
    st = meta["settings"]
    task = build_task(st["task"], cfg=chip.cfg, data_dir=st.get("data_dir"),
                      hidden=st.get("hidden"), test_samples=samples,
                      input_channels=st.get("input_channels"))
    if s.build_dir is not None:
        build_root = str(prepare_output_dir(s.build_dir, "--build-dir"))

    def networks() -> dict:
        """A pair of the trained network, on fast and on cosim (one per worker)."""
        nets = {b: load_network(run_dir / "network.pt", chip=chip, backend=b)[0]
                for b in ("fast", "cosim")}
        nets["cosim"].backend_options["simulator"] = simulator
        if s.build_dir is not None:
            nets["cosim"].backend_options["build_root"] = build_root
        return nets

    first = networks()
    base = int(first["fast"].samples_run)       # the noise keys continue the training's
    n_samples = min(samples, len(task.test))
    batches = list(enumerate(Batches(task.test, batch, shuffle=False)))
    workers = min(s.workers or os.cpu_count() or 1, len(batches))
    log(f"replay {run_dir}: task {st['task']}, preset {chip.cfg.name}, chip seed "
        f"{chip.chip_seed}, {n_samples} test samples in batches of {batch}, "
        f"run seed {int(first['fast'].run_seed)}, samples from {base}; {workers} "
        f"simulator process(es) at once")
    t_wall = {"fast": 0.0, "cosim": 0.0}
    lock, fast_lock = threading.Lock(), threading.Lock()
    free: queue.SimpleQueue = queue.SimpleQueue()
    free.put(first)

    def one(k: int, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Batch ``k`` on both backends, its noise keyed as in a replay batch by batch."""
        try:
            nets = free.get_nowait()
        except queue.Empty:
            nets = networks()
        try:
            with torch.no_grad():       # per thread: autograd's mode is thread-local
                raster, times = task.encode(x)
            outs, obs = {}, {}
            for b, n in nets.items():
                n.samples_run.fill_(base + k * batch)
                # the fast backend shares its thread pool: one batch at a time (it is
                # three orders of magnitude faster than the co-simulation)
                with fast_lock if b == "fast" else contextlib.nullcontext(), torch.no_grad():
                    t0 = time.perf_counter()
                    outs[b] = n(raster, times_us=times)
                    dt = time.perf_counter() - t0
                with lock:
                    t_wall[b] += dt
                obs[b] = n.last_observables
        finally:
            free.put(nets)
        diff = obs["fast"].first_difference(obs["cosim"])
        same_out = all(torch.equal(a, c) for a, c in zip(outs["fast"], outs["cosim"],
                                                        strict=True))
        pf, pc = outs["fast"].log_probs.argmax(1), outs["cosim"].log_probs.argmax(1)
        row = {"batch": k, "samples": len(y), "observables_equal": diff is None,
               "outputs_equal": same_out, "predictions_equal": bool(torch.equal(pf, pc)),
               "correct": int((pc == y).sum()),
               "hidden_spikes": int(outs["cosim"].z_hidden.sum()),
               "outputs_sha256": outputs_digest(outs["cosim"]),
               "cycles": int(obs["cosim"].cycles.sum()),
               "first_difference": None if diff is None else str(diff)}
        log(f"  batch {k}: {len(y)} samples, observables "
            f"{'equal' if diff is None else 'DIFFER'}, outputs "
            f"{'equal' if same_out else 'DIFFER'}, predictions "
            f"{'equal' if row['predictions_equal'] else 'DIFFER'}, "
            f"{row['hidden_spikes']} hidden spikes, {row['cycles']} cycles")
        return row

    t_start = time.perf_counter()
    # the first batch alone: it makes (or finds) the simulator's build the others share
    k0, (x0, y0) = batches[0]
    rows = [one(k0, x0, y0)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        rows += list(pool.map(lambda kb: one(kb[0], *kb[1]), batches[1:]))
    elapsed = time.perf_counter() - t_start
    correct = sum(r.pop("correct") for r in rows)
    first_diff = next((f"batch {r['batch']}: {r['first_difference']}" for r in rows
                       if r["first_difference"] is not None), None)
    for r in rows:
        r.pop("first_difference")
    ok = all(r["observables_equal"] and r["outputs_equal"] and r["predictions_equal"]
             for r in rows)
    report = {"run_dir": str(run_dir), "task": st["task"], "preset": chip.cfg.name,
              "chip_seed": chip.chip_seed, "simulator": simulator, "samples": n_samples,
              "batches": rows, "passed": ok, "first_difference": first_diff,
              "cosim_accuracy": correct / n_samples,
              "wall_s": t_wall, "elapsed_s": elapsed, "workers": workers,
              "cycles": int(sum(r["cycles"] for r in rows))}
    out = unused_path(run_dir / "replay.json")      # an earlier replay's report stays
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    log(f"replay {'PASSED' if ok else 'FAILED'}: {n_samples} samples, "
        f"{report['cycles']} cycles simulated in {elapsed:.1f} s with {workers} simulator "
        f"process(es) (fast {t_wall['fast']:.1f} s, cosim {t_wall['cosim']:.1f} s, summed over "
        f"the batches); accuracy on these samples {report['cosim_accuracy']:.3f}"
        + ("" if ok else f"; first difference: {first_diff}")
        + f"; wrote {out}")
    return report


def run(s: ReplaySettings) -> int:
    """``spikeloop replay``: exit status 0 when the replay passed, 1 when it did not.
    The run directory is locked meanwhile (no training may write it)."""
    if not Path(s.run_dir).is_dir():
        raise ReplayError(f"{s.run_dir}: no such directory (replay takes the output directory "
                          "of `spikeloop train --backend fast`)")
    with DirLock(s.run_dir, "spikeloop replay") as lock:
        if lock.note:
            print(lock.note)
        return 0 if replay(s)["passed"] else 1
