"""Bad files and faults for every loader, and how a loader's answer is judged.

The corpus behind tests/test_fuzz.py, tests/test_cli_errors.py and
``python -m tests.reliability``.  A loader's answer to a bad input is *clean*
when it either loads (the input happened to be valid) or raises one of the
project's own error types (a ValueError or RuntimeError subclass defined in
spikeloop) whose message names the file; anything else (a library's exception,
a message that does not say which file) is not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from spikeloop import FULL, MINI
from spikeloop.base.events import InputEvents, Observables
from spikeloop.base.image import ConfigImage
from spikeloop.cli import main
from spikeloop.cli.chip import RunSettings, ppu_job
from spikeloop.data.mnist import read_idx, write_idx
from spikeloop.data.shd import load_shd
from spikeloop.explore.energy import DEFAULT_TABLE, EnergyTable
from spikeloop.explore.spec import load as load_spec
from spikeloop.explore.workloads import WORKLOADS
from spikeloop.model.calibration import CalibrationResult, CalibrationTargets
from spikeloop.model.chip import Chip
from spikeloop.nn import LIFParameters
from spikeloop.training.train import TrainSettings, load_network, load_torch_file, make_network

# -- judging an answer ---------------------------------------------------------------

ACCEPTED, REFUSED, UNNAMED, TRACEBACK = "accepted", "refused", "unnamed", "traceback"


def is_project_error(e: BaseException) -> bool:
    return (isinstance(e, ValueError | RuntimeError)
            and type(e).__module__.split(".")[0] == "spikeloop")


def judge(load: Callable[[Path], object], path: Path, name_in_message: str | None = None):
    """(outcome, detail) of ``load(path)``: accepted, refused (a project error naming
    the file), unnamed (a project error that does not name it) or traceback."""
    try:
        load(path)
    except Exception as e:     # noqa: BLE001 - judging is the point
        if not is_project_error(e):
            return TRACEBACK, f"{type(e).__module__}.{type(e).__name__}: {e}"
        msg = str(e)
        named = (name_in_message or str(path)) in msg or (str(path.parent) in msg
                                                          and path.name in msg)
        if not named:
            return UNNAMED, f"{type(e).__name__}: {e}"
        return REFUSED, str(e)
    return ACCEPTED, ""


# -- valid files, one per loader -------------------------------------------------------

def _calibration() -> CalibrationResult:
    chip = Chip(MINI, 1)
    return CalibrationResult(chip.analog.nominal_settings().to(torch.int64), MINI.name, 1,
                             CalibrationTargets(), config=MINI)


def _observables() -> Observables:
    B, cfg = 2, MINI
    z = np.zeros
    return Observables(
        spikes=np.array([[0, 1, 12, 3], [1, 2, 20, 5]]), records=z((0, 4), np.int64),
        adc=z((1, B, cfg.n_neurons), np.int64), adc_count=np.ones(B, np.int64),
        xbar_events=z((B, cfg.crossbar_inputs, cfg.crossbar_outputs), np.int64),
        xbar_drops=z((B, cfg.crossbar_inputs, cfg.crossbar_outputs), np.int64),
        arbiter_drops=z((B, cfg.n_blocks), np.int64), driver_unmatched=z((B, cfg.n_buses),
                                                                         np.int64),
        playback_late=z(B, np.int64), record_drops=z(B, np.int64), adc_overflow=z(B, np.int64),
        cycles=np.full(B, 100, np.int64),
        row_activations=z((B, cfg.n_halves, cfg.drivers_per_half), np.int64),
        row_events=z((0, 5), np.int64), n_steps=12, run_seed=1, backend="fast")


NETWORK_KWARGS = {"n_in": 5, "n_hidden": 8, "n_out": 3, "recurrent": False,
                  "readout_scale": 10.0, "params": dataclasses.asdict(LIFParameters(dt_us=1.7))}


def _network_file(path: Path) -> None:
    net = make_network("software", NETWORK_KWARGS, generator=torch.Generator().manual_seed(0))
    torch.save({"state_dict": net.state_dict(), "network_kwargs": NETWORK_KWARGS,
                "backend": "software", "task": "yinyang", "preset": None, "chip_seed": None,
                "settings": {}}, path)


def _checkpoint_file(path: Path) -> None:
    torch.save({"format": 1, "epoch": 1, "network": {"w": torch.zeros(3)}, "optimizer": {},
                "scheduler": {}, "history": [], "rng": {}, "settings": {}, "wall_s": 1.0}, path)


def _shd_file(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        vf = h5py.vlen_dtype(np.float64)
        vu = h5py.vlen_dtype(np.uint16)
        times = f.create_dataset("spikes/times", (2,), dtype=vf)
        units = f.create_dataset("spikes/units", (2,), dtype=vu)
        times[0], times[1] = np.array([0.1, 0.5]), np.array([0.2])
        units[0], units[1] = np.array([3, 7], np.uint16), np.array([699], np.uint16)
        f.create_dataset("labels", data=np.array([1, 19], np.uint16))


EXPLORE_SPEC = ('name = "s"\nbase = "mini"\nseeds = [1, 2]\n[axes]\ncrossbar_fifo_depth = [1, 2]\n'
                '[workloads.routing]\nrates = [0.01, 0.1]\n[[constraints]]\n'
                'metric = "area.cells_total"\nmax = 1e9\n')
PPU_SOURCE = "csrr r1, time\nsw r1, 0(r0)\nvout v0\nhalt\n"


def _ppu(path: Path):
    s = RunSettings(backend="fast", preset="mini", chip_seed=1, image="", events="", steps=1,
                    out="", ppu=str(path))
    return ppu_job(s, MINI)


@dataclasses.dataclass(frozen=True)
class Loader:
    """A loader under test: how to write a valid file, how to load one, its kind."""

    name: str
    filename: str
    write: Callable[[Path], None]
    load: Callable[[Path], object]
    kind: str                           # "npz", "torch", "idx", "hdf5", "text"


LOADERS = (
    Loader("image", "image.npz", lambda p: ConfigImage.random(
        MINI, np.random.default_rng(0)).save(p), lambda p: ConfigImage.load(p, MINI), "npz"),
    Loader("events", "events.npz", lambda p: InputEvents.from_lists(
        MINI, [[(5, 0, 3), (9, 1, 40)], [(2, 1, 7)]]).save(p),
        lambda p: InputEvents.load(p, MINI), "npz"),
    Loader("observables", "obs.npz", lambda p: _observables().save(p), Observables.load, "npz"),
    Loader("chip", "chip.npz", lambda p: Chip(MINI, 1, _calibration()).save(p), Chip.load,
           "npz"),
    Loader("calibration", "cal.npz", lambda p: _calibration().save(p), CalibrationResult.load,
           "npz"),
    Loader("checkpoint", "checkpoint.pt", _checkpoint_file,
           lambda p: load_torch_file(p, "checkpoint", ("format", "epoch", "network")), "torch"),
    Loader("network", "network.pt", _network_file, lambda p: load_network(p), "torch"),
    Loader("idx", "train-images-idx3-ubyte",
           lambda p: write_idx(p, np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)),
           read_idx, "idx"),
    Loader("idx.gz", "train-labels-idx1-ubyte.gz",
           lambda p: write_idx(p, np.arange(10, dtype=np.uint8)), read_idx, "idx"),
    Loader("hdf5", "shd_train.h5", _shd_file, lambda p: load_shd(p.parent, "train"), "hdf5"),
    Loader("ppu assembly", "prog.s", lambda p: p.write_text(PPU_SOURCE), _ppu, "text"),
    Loader("explore spec", "sweep.toml", lambda p: p.write_text(EXPLORE_SPEC),
           lambda p: load_spec(p, WORKLOADS), "text"),
    Loader("energy table", "energy.toml", lambda p: p.write_bytes(DEFAULT_TABLE.read_bytes()),
           EnergyTable.load, "text"),
)


# -- faults ------------------------------------------------------------------------------

def _arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=True) as z:
        return dict(z)


def _rewrite(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _npz_faults(valid: Path) -> list[tuple[str, Callable[[Path], None]]]:
    """Missing keys, wrong dtypes and wrong shapes of every field."""
    out = []
    for key in _arrays(valid):
        def drop(p, key=key):
            a = _arrays(p)
            del a[key]
            _rewrite(p, a)

        def retype(p, key=key, to="f"):
            a = _arrays(p)
            v = a[key]
            a[key] = {"f": (np.asarray(v, dtype=np.float64) + 0.5 if v.dtype.kind in "iufb"
                            else np.float64(7.9)),
                      "s": np.array("text"), "o": np.array([{"x": 1}], dtype=object),
                      "neg": np.full(v.shape, -2, np.int64) if v.dtype.kind in "iub"
                      else np.array(-2)}[to]
            _rewrite(p, a)

        def reshape(p, key=key, how="flat"):
            a = _arrays(p)
            v = np.asarray(a[key])
            a[key] = (v.reshape(-1) if how == "flat" and v.ndim != 1 else
                      v[None] if how == "extra" else v.reshape(-1)[:0]) \
                if v.dtype.kind != "U" else np.array([str(v), str(v)])
            _rewrite(p, a)

        def huge(p, key=key):
            a = _arrays(p)
            v = a[key]
            if v.dtype.kind in "iub":
                a[key] = np.full(v.shape, 2**62, np.int64)
            else:
                a[key] = np.array("{" * 3 + "not json")
            _rewrite(p, a)

        out += [(f"{key}: missing", drop), (f"{key}: as float", retype),
                (f"{key}: as a string", lambda p, f=retype: f(p, to="s")),
                (f"{key}: as Python objects", lambda p, f=retype: f(p, to="o")),
                (f"{key}: negative", lambda p, f=retype: f(p, to="neg")),
                (f"{key}: flattened", reshape),
                (f"{key}: an extra dimension", lambda p, f=reshape: f(p, how="extra")),
                (f"{key}: empty", lambda p, f=reshape: f(p, how="empty")),
                (f"{key}: huge or not JSON", huge)]
    return out


class _NotAllowed:
    """A class torch.load(weights_only=True) must refuse to rebuild."""


def _torch_faults() -> list[tuple[str, Callable[[Path], None]]]:
    def save(obj):
        return lambda p: torch.save(obj, p)

    def raw_pickle(p):
        p.write_bytes(pickle.dumps({"payload": os.getcwd, "state_dict": {}}))

    return [("a list, not a dict", save([1, 2, 3])),
            ("a dict without the fields", save({"x": torch.zeros(2)})),
            ("fields of the wrong type", save({"format": "1", "epoch": "x", "network": 3,
                                               "state_dict": "w", "network_kwargs": [],
                                               "backend": 7, "settings": None})),
            ("a backend that does not exist", save({"state_dict": {}, "network_kwargs": {},
                                                    "backend": "quantum", "format": 1,
                                                    "epoch": 1, "network": {}})),
            ("network sizes that do not rebuild", save(
                {"state_dict": {"w": torch.zeros(1)}, "network_kwargs": {"n_in": -1},
                 "backend": "software", "format": 1, "epoch": 1, "network": {}})),
            ("a fraction object (not allowed)", save({"x": Fraction(1, 3)})),
            ("an object of a foreign class", save({"x": _NotAllowed()})),
            ("a raw pickle naming a function", raw_pickle)]


def _bytes_faults(valid_bytes: bytes, seed: int) -> list[tuple[str, Callable[[Path], None]]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in (1, 7, 64, 1000, 20000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        out.append((f"{n} random bytes", lambda p, d=data: p.write_bytes(d)))
    for head in (b"PK\x03\x04", b"\x93NUMPY", b"\x1f\x8b", b"\x89HDF\r\n\x1a\n", b"PK\x05\x06"):
        data = head + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
        out.append((f"random bytes after magic {head[:4]!r}", lambda p, d=data: p.write_bytes(d)))
    L = len(valid_bytes)
    for frac in (0.02, 0.25, 0.5, 0.75, 0.98):
        k = max(1, int(L * frac))
        out.append((f"truncated to {k} of {L} bytes",
                    lambda p, k=k: p.write_bytes(valid_bytes[:k])))
    out.append(("the last byte cut", lambda p: p.write_bytes(valid_bytes[:-1])))
    for i in range(6):
        pos = rng.integers(0, L, 1 + i)
        data = bytearray(valid_bytes)
        for q in pos:
            data[q] ^= 1 << int(rng.integers(0, 8))
        out.append((f"{1 + i} bit(s) flipped", lambda p, d=bytes(data): p.write_bytes(d)))
    return out


def _common_faults() -> list[tuple[str, Callable[[Path], None]]]:
    def missing(p):
        if p.exists():
            p.unlink()

    def directory(p):
        if p.exists():
            p.unlink()
        p.mkdir()

    def npy(p):
        with open(p, "wb") as f:
            np.save(f, np.arange(10))

    def gzip_of_random(p):
        p.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x01" * 50))

    def gzip_truncated(p):
        p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x0a" + bytes(10))[:20])

    return [("missing", missing), ("a directory", directory),
            ("empty", lambda p: p.write_bytes(b"")),
            ("a text file", lambda p: p.write_text("hello, I am not a data file\n")),
            ("a .npy array", npy), ("gzip of a short file", gzip_of_random),
            ("truncated gzip", gzip_truncated)]


def faults(loader: Loader, workdir: Path) -> list[tuple[str, Callable[[Path], None]]]:
    """Every fault of ``loader``: (description, apply(path)), applied to a fresh valid file."""
    valid = workdir / ("valid-" + loader.filename)
    loader.write(valid)
    out = _common_faults() + _bytes_faults(valid.read_bytes(), seed=len(loader.name))
    if loader.kind == "npz":
        out += _npz_faults(valid)
    if loader.kind == "torch":
        out += _torch_faults()
    if loader.kind == "text":
        out += [("not assembly", lambda p: p.write_text("this is not an instruction\n")),
                ("an unknown register", lambda p: p.write_text("addi r99, r0, 1\nhalt\n")),
                ("latin-1 bytes", lambda p: p.write_bytes("é = 1\n".encode("latin-1")))]
    return out


def fresh_file(loader: Loader, workdir: Path) -> Path:
    """A valid file of ``loader`` at its own name in a fresh folder of ``workdir``."""
    d = workdir / f"case-{loader.name.replace(' ', '_')}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    p = d / loader.filename
    loader.write(p)
    return p


def run_loader_corpus(workdir: Path) -> list[tuple[str, str, str, str]]:
    """(loader, fault, outcome, detail) for every loader and every fault."""
    rows = []
    workdir.mkdir(parents=True, exist_ok=True)
    for loader in LOADERS:
        for what, apply in faults(loader, workdir):
            p = fresh_file(loader, workdir)
            apply(p)
            outcome, detail = judge(loader.load, p)
            rows.append((loader.name, what, outcome, detail))
    return rows


# -- the commands, each given a bad path -----------------------------------------------

def _write_fixtures(d: Path) -> dict[str, Path]:
    """Valid and bad files the command cases point at."""
    f = {}
    f["image"] = d / "image.npz"
    ConfigImage.random(MINI, np.random.default_rng(0)).save(f["image"])
    f["events"] = d / "events.npz"
    InputEvents.from_lists(MINI, [[(5, 0, 3)]]).save(f["events"])
    f["chip"] = d / "chip.npz"
    Chip(MINI, 1, _calibration()).save(f["chip"])
    f["empty"] = d / "empty.npz"
    f["empty"].write_bytes(b"")
    f["random"] = d / "random.npz"
    f["random"].write_bytes(np.random.default_rng(1).integers(0, 256, 500, np.uint8).tobytes())
    f["truncated"] = d / "truncated.npz"
    f["truncated"].write_bytes(f["image"].read_bytes()[:300])
    f["npy"] = d / "array.npz"
    with open(f["npy"], "wb") as fh:
        np.save(fh, np.arange(4))
    a = _arrays(f["image"])
    a["row_sign"] = np.full_like(a["row_sign"], 3)
    f["row_sign3"] = d / "row_sign3.npz"
    _rewrite(f["row_sign3"], a)
    f["events_full"] = d / "events_full.npz"
    InputEvents.from_lists(FULL, [[(5, 0, 3)]]).save(f["events_full"])
    f["events_float"] = d / "events_float.npz"
    _rewrite(f["events_float"], {"events": np.array([[0, 7.9, 0, 1]]), "batch": np.array(1)})
    f["events_k3"] = d / "events_k3.npz"
    _rewrite(f["events_k3"], {"events": np.array([[0, 7, 0]]), "batch": np.array(1)})
    f["events_batch"] = d / "events_batch.npz"
    _rewrite(f["events_batch"], {"events": np.zeros((0, 4), np.int64), "batch": np.array(-2)})
    f["events_late"] = d / "events_late.npz"
    InputEvents.from_lists(MINI, [[(500, 0, 3)]]).save(f["events_late"])
    a = _arrays(f["chip"])
    del a["chip_seed"]
    f["chip_noseed"] = d / "chip_noseed.npz"
    _rewrite(f["chip_noseed"], a)
    f["chip_variant"] = d / "chip_variant.npz"
    Chip(MINI.replace(crossbar_fifo_depth=8), 1).save(f["chip_variant"])
    f["a_file"] = d / "a_file"
    f["a_file"].write_text("I am a file\n")
    f["existing"] = d / "existing.npz"
    f["existing"].write_bytes(b"precious results")
    f["binary"] = d / "prog.s"
    f["binary"].write_bytes(bytes(range(256)))
    f["dir"] = d / "a_dir"
    f["dir"].mkdir()
    # run directories of `spikeloop train`
    for name, ckpt in (("corrupt", b"PK\x03\x04 not really a checkpoint"),
                       ("foreign", pickle.dumps({"payload": os.getcwd}))):
        f[f"run_{name}"] = d / f"run_{name}"
        f[f"run_{name}"].mkdir()
        (f[f"run_{name}"] / "checkpoint.pt").write_bytes(ckpt)
    st = TrainSettings(task="yinyang", out=str(d / "run_done"), epochs=3, progress=False)
    f["run_done"] = d / "run_done"
    f["run_done"].mkdir()
    torch.save({"format": 1, "epoch": 3, "network": {}, "optimizer": {}, "scheduler": {},
                "history": [], "rng": {}, "settings": st.to_dict(), "wall_s": 1.0},
               f["run_done"] / "checkpoint.pt")
    f["replay_net"] = d / "replay_net"
    f["replay_net"].mkdir()
    (f["replay_net"] / "network.pt").write_bytes(b"garbage")
    shutil.copy(f["chip"], f["replay_net"] / "chip.npz")
    f["replay_chip"] = d / "replay_chip"
    f["replay_chip"].mkdir()
    torch.save({"backend": "fast", "settings": {"task": "yinyang"}, "state_dict": {},
                "network_kwargs": NETWORK_KWARGS}, f["replay_chip"] / "network.pt")
    shutil.copy(f["image"], f["replay_chip"] / "chip.npz")
    f["mnist"] = d / "mnist"
    f["mnist"].mkdir()
    for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"):
        (f["mnist"] / (n + ".gz")).write_bytes(gzip.compress(b"\x00\x00\x08\x03abc")[:15])
    return f


def cli_cases(d: Path) -> list[tuple[str, list[str], str]]:
    """(what, argv, a text the error line must hold) for every command with a bad
    path or a refused size; each must end in one line on stderr and status 2."""
    f = _write_fixtures(d)
    run = ["run", "--backend", "reference", "--preset", "mini", "--chip-seed", "1",
           "--steps", "20"]

    def r(image=f["image"], events=f["events"], out=d / "obs.npz", extra=()):
        return [*run, "--image", str(image), "--events", str(events), "--out", str(out),
                *extra]

    train = ["train", "yinyang", "--no-progress", "--epochs", "1"]
    cases = [
        ("run: image missing", r(image=d / "nope.npz"), str(d / "nope.npz")),
        ("run: image empty", r(image=f["empty"]), str(f["empty"])),
        ("run: image random bytes", r(image=f["random"]), str(f["random"])),
        ("run: image truncated", r(image=f["truncated"]), str(f["truncated"])),
        ("run: image a .npy", r(image=f["npy"]), str(f["npy"])),
        ("run: image row_sign 3", r(image=f["row_sign3"]), "row_sign"),
        ("run: image a directory", r(image=f["dir"]), str(f["dir"])),
        ("run: events missing", r(events=d / "none.npz"), str(d / "none.npz")),
        ("run: events of preset full", r(events=f["events_full"]), str(f["events_full"])),
        ("run: events as floats", r(events=f["events_float"]), str(f["events_float"])),
        ("run: events [K, 3]", r(events=f["events_k3"]), str(f["events_k3"])),
        ("run: events batch -2", r(events=f["events_batch"]), str(f["events_batch"])),
        ("run: events after the last cycle", r(events=f["events_late"]), "never be played"),
        ("run: an image as --chip", r(extra=["--chip", str(f["image"])]), str(f["image"])),
        ("run: chip without chip_seed", r(extra=["--chip", str(f["chip_noseed"])]),
         str(f["chip_noseed"])),
        ("run: chip of another variant", r(extra=["--chip", str(f["chip_variant"])]),
         str(f["chip_variant"])),
        ("run: chip missing", r(extra=["--chip", str(d / "c.npz")]), str(d / "c.npz")),
        ("run: chip random bytes", r(extra=["--chip", str(f["random"])]), str(f["random"])),
        ("run: --out under a file", r(out=f["a_file"] / "obs.npz"), str(f["a_file"])),
        ("run: --out a directory", r(out=f["dir"]), str(f["dir"])),
        ("run: --out ending in /", r(out=str(d / "out") + "/"), str(d / "out")),
        ("run: --out exists", r(out=f["existing"]), str(f["existing"])),
        ("run: --steps 1e9", [*run[:-1], "1000000000", "--image", str(f["image"]),
                              "--events", str(f["events"]), "--out", str(d / "o2.npz")],
         "cycle counter"),
        ("run: --steps 0", [*run[:-1], "0", "--image", str(f["image"]), "--events",
                            str(f["events"]), "--out", str(d / "o3.npz")], "steps = 0"),
        ("run: --run-seed -3", r(extra=["--run-seed", "-3"]), "run_seed = -3"),
        ("run: --chip-seed -1", ["run", "--backend", "reference", "--preset", "mini",
                                 "--chip-seed", "-1", "--steps", "20", "--image",
                                 str(f["image"]), "--events", str(f["events"]), "--out",
                                 str(d / "o4.npz")], "chip_seed = -1"),
        ("run: --ppu a binary file", r(extra=["--ppu", str(f["binary"])]), str(f["binary"])),
        ("run: --build-dir under a file", r(extra=["--build-dir", str(f["a_file"] / "b")]),
         str(f["a_file"])),
        ("calibrate: --out under a file", ["calibrate", "--preset", "mini", "--chip-seed", "1",
                                           "--out", str(f["a_file"] / "c.npz")],
         str(f["a_file"])),
        ("calibrate: --out a directory", ["calibrate", "--preset", "mini", "--chip-seed", "1",
                                          "--out", str(f["dir"])], str(f["dir"])),
        ("calibrate: --out exists", ["calibrate", "--preset", "mini", "--chip-seed", "1",
                                     "--out", str(f["existing"])], str(f["existing"])),
        ("calibrate: --plot under a file", ["calibrate", "--preset", "mini", "--chip-seed", "1",
                                            "--out", str(d / "c.npz"), "--plot",
                                            str(f["a_file"] / "p.png")], str(f["a_file"])),
        ("scenario: --out a file", ["scenario", "psp", "--preset", "mini", "--out",
                                    str(f["a_file"])], str(f["a_file"])),
        ("train: --out under a file", [*train, "--out", str(f["a_file"] / "run")],
         str(f["a_file"])),
        ("train: --out a file", [*train, "--out", str(f["a_file"])], str(f["a_file"])),
        ("train: --resume, corrupt checkpoint", [*train, "--resume", "--out",
                                                 str(f["run_corrupt"])], "checkpoint.pt"),
        ("train: --resume, checkpoint with foreign objects",
         [*train, "--resume", "--out", str(f["run_foreign"])], "checkpoint.pt"),
        ("train: --resume, --epochs below those done",
         ["train", "yinyang", "--no-progress", "--epochs", "2", "--resume", "--out",
          str(f["run_done"])], "has done 3 epochs"),
        ("train: --init corrupt", [*train, "--out", str(d / "t1"), "--init", str(f["random"])],
         str(f["random"])),
        ("train: --chip corrupt", [*train, "--backend", "fast", "--preset", "mini",
                                   "--chip-seed", "1", "--out", str(d / "t2"), "--chip",
                                   str(f["truncated"])], str(f["truncated"])),
        ("train: mnist with corrupt IDX files", ["train", "mnist", "--no-progress", "--epochs",
                                                 "1", "--out", str(d / "t3"), "--data-dir",
                                                 str(f["mnist"])], str(f["mnist"])),
        ("replay: no such directory", ["replay", str(d / "no-run")], str(d / "no-run")),
        ("replay: corrupt network.pt", ["replay", str(f["replay_net"])], "network.pt"),
        ("replay: an image as chip.npz", ["replay", str(f["replay_chip"])], "chip.npz"),
        ("diagnose: no such directory", ["diagnose", str(d / "no-run")], str(d / "no-run")),
        ("diagnose: corrupt network.pt", ["diagnose", str(f["replay_net"])], "network.pt"),
        ("diagnose: an image as chip.npz", ["diagnose", str(f["replay_chip"])], "chip.npz"),
        ("rtl export: --out a file", ["rtl", "export", "--preset", "mini", "--out",
                                      str(f["a_file"])], str(f["a_file"])),
        ("rtl area: --out under a file", ["rtl", "area", "--preset", "mini", "--out",
                                          str(f["a_file"] / "a.json")], str(f["a_file"])),
        ("experiment mismatch: --out a file", ["experiment", "mismatch", "--task", "yinyang",
                                               "--preset", "mini", "--out", str(f["a_file"])],
         str(f["a_file"])),
        ("ppu learn: --out a file", ["ppu", "learn", "--out", str(f["a_file"])],
         str(f["a_file"])),
    ]
    return cases


def run_cli(argv: list[str]) -> tuple[int | None, str, str, str]:
    """(exit status, stdout, stderr, escaped exception) of ``spikeloop ARGV`` in
    this process; an exception that escapes the dispatcher is a traceback."""
    out, err = io.StringIO(), io.StringIO()
    rc, escaped = None, ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException:       # noqa: BLE001 - an escaping exception is the finding
            escaped = traceback.format_exc()
    return rc, out.getvalue(), err.getvalue(), escaped


def judge_cli(argv: list[str], must_hold: str) -> tuple[str, str]:
    """(outcome, detail): refused (one line, status 2, naming ``must_hold``, no
    traceback and no advice to unpickle), unnamed, or traceback."""
    rc, _out, err, escaped = run_cli(argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if escaped or "Traceback" in err:
        return TRACEBACK, escaped or err
    if rc != 2 or len(lines) != 1 or not lines[0].startswith("spikeloop: error:"):
        return UNNAMED, f"status {rc}, stderr {err!r}"
    if must_hold not in lines[0] or "weights_only" in lines[0]:
        return UNNAMED, lines[0]
    return REFUSED, lines[0]


# -- concurrent writers and killed ones -------------------------------------------------

HOLD_LOCK = ("import os, signal, sys, time\n"
             "from spikeloop.base.files import DirLock\n"
             "lock = DirLock(sys.argv[1], 'a writer under test').acquire()\n"
             "print('locked', flush=True)\n"
             "if sys.argv[2] == 'die':\n"
             "    os.kill(os.getpid(), signal.SIGKILL)\n"
             "time.sleep(120)\n")

KEEP_WRITING = ("import sys\n"
                "import numpy as np\n"
                "from spikeloop.base.files import atomic_savez\n"
                "print('writing', flush=True)\n"
                "i = 0\n"
                "while True:\n"
                "    i += 1\n"
                "    atomic_savez(sys.argv[1], a=np.full(2_000_000, i), i=np.array(i))\n")


def _start(code: str, *args: str):
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    proc.stdout.readline()                  # the child's first line: it holds the lock
    return proc


def concurrency_cases(d: Path) -> list[tuple[str, str, str, bool]]:
    """(what, outcome, detail, data lost) of each concurrency fault."""
    rows = []
    # 1. a second writer on an --out another process writes: refused, naming the holder
    run_dir = d / "busy"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('{"precious": true}\n')
    holder = _start(HOLD_LOCK, str(run_dir), "hold")
    try:
        outcome, detail = judge_cli(["train", "yinyang", "--no-progress", "--epochs", "1",
                                     "--out", str(run_dir)], f"process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    lost = (run_dir / "results.json").read_text() != '{"precious": true}\n'
    rows.append(("a second writer on a locked --out", outcome, detail, lost))
    # 2. a writer killed (SIGKILL) while holding the lock: the next one takes it over
    dead_dir = d / "dead"
    dead_dir.mkdir()
    dead = _start(HOLD_LOCK, str(dead_dir), "die")
    dead.wait()
    rc, out, err, escaped = run_cli(["scenario", "psp", "--preset", "mini", "--out",
                                     str(dead_dir)])
    ok = (rc == 0 and not escaped and f"process {dead.pid}" in out and "took over" in out
          and (dead_dir / "image.npz").is_file())
    rows.append(("the stale lock of a killed writer", REFUSED if ok else UNNAMED,
                 out.strip().splitlines()[0] if out.strip() else err, False))
    # 3. a writer killed in the middle of an atomic write: the old file stays whole
    target = d / "atomic.npz"
    np.savez(target, a=np.zeros(3), i=np.array(0))
    writer = _start(KEEP_WRITING, str(target))
    time.sleep(1.0)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    try:
        with np.load(target) as z:
            i, a = int(z["i"]), z["a"]
        whole = bool((a == i).all()) and (i == 0 or len(a) == 2_000_000)
    except Exception as e:     # noqa: BLE001 - a half-written file is the finding
        whole, i = False, repr(e)
    rows.append(("a writer killed during an atomic write", REFUSED if whole else TRACEBACK,
                 f"the file holds write {i}, whole", not whole))
    return rows
