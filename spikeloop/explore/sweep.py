"""Running a sweep: its points, their cache, and where they run.

A point is one variant x workload x seed.  Its key is a hash of the variant's
whole ChipConfig, the workload and its parameters, the seed and the code
version (:func:`code_version`), so a rerun computes only what is missing and
results of other code are never reused.  Each finished point is one JSON file
``DIR/points/<key>.json``, written atomically when the point ends: a killed
sweep loses only the points in flight.  A point that failed is kept in
``DIR/failed/<key>.json`` (with the path of its log) and run again next time;
a point a constraint excluded, in ``DIR/excluded/``, judged again next time.

Every point runs in a process of its own (``python -m spikeloop.explore.worker``)
so a crash, a segfault or an out-of-memory kill marks that point failed with its
log and the sweep goes on.  Those processes are started by a local pool of
``workers`` threads, or as Ray tasks (``ray_address``: ``local`` starts a Ray
instance in this process, ``auto`` joins the running cluster, or a cluster's
address).  Both run the same worker on the same point file, so they give the
same rows, bit for bit where a metric is deterministic (all but ``wall_s``).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from spikeloop.backends.fast import THREADS_ENV
from spikeloop.base.files import atomic_write_text
from spikeloop.explore.spec import Spec, Variant

#: the statuses of a row
OK, DOES_NOT_FIT, INVALID, FAILED, EXCLUDED = ("ok", "does not fit", "invalid variant",
                                               "failed", "excluded")
#: packages whose source makes the code version
_PACKAGES = ("spikeloop", "spikeloop.rtl", "spikeloop.model", "spikeloop.cosim")
#: workloads that run before the others, so constraints on their metrics can exclude
#: a variant before anything costly runs on it
FIRST = ("area",)


#: numeric fields of a row that are not metrics
NOT_METRICS = ("seed", "wall_s")


def qualified(row: dict) -> dict:
    """A result row's numeric metrics, each named after its workload: the metrics
    every workload reports (``energy_per_image_j``, ``power_w``, ``energy.*``,
    ``us_per_image``, ``frames_per_s``) become ``<workload>.<metric>`` (the energy
    of a routing sample and of an MNIST image are different things); the
    variant's fields (``cfg.*``) and the workload's own metrics keep their names;
    missing (NaN) values are left out."""
    wl = str(row.get("workload", ""))
    out = {}
    for k, v in row.items():
        if k in NOT_METRICS or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if isinstance(v, float) and math.isnan(v):
            continue
        out[k if k.startswith(("cfg.", f"{wl}.")) else f"{wl}.{k}"] = v
    return out


class SweepError(ValueError):
    """A sweep that cannot start (e.g. an unreachable Ray address)."""


def code_version() -> str:
    """A hash of every source file of the emulator (Python, TOML): results of
    other code never share a cache entry."""
    h = hashlib.sha256()
    for pkg in _PACKAGES:
        spec = importlib.util.find_spec(pkg)
        root = Path(spec.origin).parent
        for f in sorted(root.rglob("*")):
            if f.suffix in (".py", ".toml") and "__pycache__" not in f.parts:
                h.update(f"{pkg}/{f.relative_to(root)}".encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Point:
    variant: Variant
    workload: str
    params: dict
    seed: int
    key: str

    def describe(self) -> dict:
        """The columns a row of this point carries besides its metrics."""
        cfg = self.variant.cfg
        row = {"key": self.key, "variant": self.variant.label, "workload": self.workload,
               "seed": self.seed, "params": json.dumps(self.params, sort_keys=True)}
        if cfg is not None:
            row.update({f"cfg.{k}": v for k, v in cfg.to_dict().items() if k != "name"})
        for k, v in self.variant.changes:
            row[f"cfg.{k}"] = v
        return row


def points(spec: Spec, version: str) -> list[Point]:
    """Every variant x workload x seed of ``spec``, first-phase workloads first."""
    order = sorted(spec.workloads, key=lambda w: (w not in FIRST, list(spec.workloads).index(w)))
    out = []
    for w in order:
        params = spec.workloads[w]
        for v in spec.variants:
            for seed in spec.seeds:
                cfg_text = v.cfg.to_json() if v.cfg is not None else json.dumps(v.changes)
                key = hashlib.sha256(json.dumps(
                    [json.loads(cfg_text) if v.cfg is not None else cfg_text, w, params, seed,
                     version], sort_keys=True).encode()).hexdigest()[:20]
                out.append(Point(v, w, params, seed, key))
    return out


@dataclasses.dataclass
class Sweep:
    """One sweep: ``spec`` run into ``out`` (see the module docstring)."""

    spec: Spec
    out: Path
    workers: int = 1
    ray_address: str | None = None
    energy_table: str | None = None
    data_dir: str | None = None
    progress: bool = True

    def __post_init__(self):
        self.out = Path(self.out)
        self.version = code_version()
        self.points_dir = self.out / "points"
        self.failed_dir = self.out / "failed"
        self.excluded_dir = self.out / "excluded"
        self.logs_dir = self.out / "logs"
        self.jobs_dir = self.out / "jobs"

    # -- the cache -----------------------------------------------------------------
    def cached(self, p: Point) -> dict | None:
        f = self.points_dir / f"{p.key}.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def _store(self, row: dict) -> None:
        """A finished row into points/; a failed one into failed/ and an excluded
        one into excluded/ (both run again, or judged again, by the next sweep)."""
        d = {FAILED: self.failed_dir, EXCLUDED: self.excluded_dir}.get(row["status"],
                                                                       self.points_dir)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / f"{row['key']}.json", json.dumps(row, sort_keys=True) + "\n")
        if d == self.points_dir:
            (self.failed_dir / f"{row['key']}.json").unlink(missing_ok=True)

    # -- running ----------------------------------------------------------------------
    def job(self, p: Point) -> dict:
        return {"key": p.key, "cfg": p.variant.cfg.to_dict(), "workload": p.workload,
                "params": p.params, "seed": p.seed, "base": self.spec.base.name,
                "cache_dir": str(self.out / "cache"), "energy_table": self.energy_table,
                "data_dir": self.data_dir, "code_version": self.version}

    def run(self) -> list[dict]:
        """Run every point not cached; returns every row (cached ones too)."""
        for d in (self.points_dir, self.logs_dir, self.jobs_dir, self.out / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        manifest = {"spec": str(self.spec.path), "name": self.spec.name,
                    "base": self.spec.base.name, "code_version": self.version,
                    "seeds": list(self.spec.seeds), "workloads": self.spec.workloads,
                    "axes": self.spec.axes}
        atomic_write_text(self.out / "sweep.json", json.dumps(manifest, indent=2) + "\n")
        for f in self.excluded_dir.glob("*.json"):      # the constraints are judged anew
            f.unlink()
        pts = points(self.spec, self.version)
        rows: dict[str, dict] = {}
        todo = []
        for p in pts:
            row = self.cached(p)
            if row is not None:
                rows[p.key] = row
            elif p.variant.cfg is None:
                rows[p.key] = self._finish(p, {"status": INVALID, "reason": p.variant.error})
            else:
                todo.append(p)
        bar = tqdm(total=len(pts), initial=len(pts) - len(todo), unit="point",
                   disable=not self.progress, desc=self.spec.name, dynamic_ncols=True)
        failed = 0
        try:
            with self._executor() as submit:
                for phase in self._phases(todo):
                    runnable = []
                    for p in phase:
                        why = self._excluded(p, rows)
                        if why:
                            rows[p.key] = self._finish(p, {"status": EXCLUDED, "reason": why})
                            bar.update(1)
                        else:
                            runnable.append(p)
                    for p, row in submit(runnable, self):
                        rows[p.key] = row
                        failed += row["status"] == FAILED
                        bar.update(1)
                        bar.set_postfix(failed=failed)
        finally:
            bar.close()
        return [rows[p.key] for p in pts]

    def _phases(self, todo: list[Point]) -> list[list[Point]]:
        first = [p for p in todo if p.workload in FIRST]
        rest = [p for p in todo if p.workload not in FIRST]
        return [ph for ph in (first, rest) if ph]

    def _excluded(self, p: Point, rows: dict) -> str:
        """Why a constraint excludes ``p``'s variant (from the rows of the same
        variant and seed known so far), or ''."""
        if not self.spec.constraints:
            return ""
        known: dict = {}
        for r in rows.values():
            if r.get("variant") == p.variant.label and r.get("seed") == p.seed:
                known.update(r)
        for c in self.spec.constraints:
            why = c.violated_by(known.get(c.metric))
            if why:
                return why
        return ""

    def _finish(self, p: Point, result: dict) -> dict:
        row = {**p.describe(), "code_version": self.version, "wall_s": None, **result}
        self._store(row)
        return row

    def _executor(self):
        if self.ray_address:
            return _RayExecutor(self.ray_address, self.workers)
        return _PoolExecutor(self.workers)

    def finish_job(self, p: Point, result: dict | None, returncode: int, log_text: str,
                   wall: float) -> dict:
        """The row of a point that ran: its result, or failed with its log."""
        log = self.logs_dir / f"{p.key}.log"
        atomic_write_text(log, log_text)
        if result is None:
            last = next((ln for ln in reversed(log_text.splitlines()) if ln.strip()), "")
            return self._finish(p, {"status": FAILED, "log": str(log), "wall_s": wall,
                                    "reason": f"exit {returncode}: {last[:300]}"})
        return self._finish(p, {**result, "log": str(log), "wall_s": wall})


# ------------------------------------------------------------------ executors
def run_job(job: dict) -> tuple[dict | None, int, str, float]:
    """Run one point in a process of its own: ``(result or None, exit status,
    log text, wall seconds)``.  The same function runs on the pool and as a
    Ray task."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spikeloop-point-") as tmp:
        job_file, result_file, log_file = (Path(tmp) / n for n in ("job.json", "result.json",
                                                                    "log.txt"))
        job_file.write_text(json.dumps(job))
        # the points run side by side: one thread each, the fast backend's included
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               THREADS_ENV: "1", "PYTHONHASHSEED": "0"}
        with open(log_file, "wb") as log:
            proc = subprocess.run([sys.executable, "-m", "spikeloop.explore.worker",
                                   str(job_file), str(result_file)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
        result = (json.loads(result_file.read_text())
                  if proc.returncode == 0 and result_file.is_file() else None)
        text = log_file.read_text(errors="replace")
    return result, proc.returncode, text, time.perf_counter() - t0


class _PoolExecutor:
    def __init__(self, workers: int):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(workers, 1))

    def __enter__(self):
        return self.submit

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, pts: list[Point], sweep: Sweep):
        futures = {self.pool.submit(run_job, sweep.job(p)): p for p in pts}
        for f in concurrent.futures.as_completed(futures):
            p = futures[f]
            yield p, sweep.finish_job(p, *f.result())


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a Ray address nothing answers at (Ray itself waits minutes)."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--ray {address}: allowed: local, auto, or HOST:PORT of a Ray cluster's "
                         "head (ray://HOST:PORT for Ray Client)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise SweepError(f"--ray {address}: cannot reach a Ray cluster there ({e})") from None


class _RayExecutor:
    def __init__(self, address: str, workers: int):
        import ray  # optional extra: only a sweep on Ray needs it

        self.ray = ray
        if address not in ("local", "auto"):
            _probe(address)
        try:
            if address == "local":
                ray.init(num_cpus=max(workers, 1), include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise SweepError(f"--ray {address}: cannot reach a Ray cluster there "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                             ) from None
        self.remote = ray.remote(num_cpus=1)(run_job)

    def __enter__(self):
        return self.submit

    def __exit__(self, *exc):
        self.ray.shutdown()

    def submit(self, pts: list[Point], sweep: Sweep):
        refs = {self.remote.remote(sweep.job(p)): p for p in pts}
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for ref in done:
                p = refs[ref]
                try:
                    res = self.ray.get(ref)
                except self.ray.exceptions.RayError as e:     # the task itself died
                    res = (None, -1, f"Ray task failed: {e}", 0.0)
                yield p, sweep.finish_job(p, *res)
