"""Files the commands read and write, handled so that nothing is lost and no
bad file ends in a traceback.

- Reading: :func:`load_npz` reads an ``.npz`` archive whole (never unpickling
  anything) and turns every way a file can be wrong (missing, a directory,
  empty, truncated, random bytes, a single ``.npy``, Python objects inside, too
  large) into one :class:`FileError` that names the file and what is wrong;
  :func:`field_int`, :func:`field_text`, :func:`field_json` and
  :func:`field_array` read one field of it the same way.
- Writing: :func:`atomic_open` writes a file under a temporary name in the
  same directory and renames it over the target only when it is complete
  (``os.replace``): a reader sees the old file or the new one, never half of
  one, and a killed writer leaves no truncated file behind.
- Output paths are checked before any work starts (:func:`prepare_output_file`,
  :func:`prepare_output_dir`): a path under a file, a directory given for a
  file, an unwritable place, or an existing result are refused at once; missing
  parent directories are created.
- :class:`DirLock`: a run directory is written by one process at a time.  The
  lock file ``.spikeloop.lock`` holds the owner's pid, host and command; a
  second writer is refused with who holds it; the lock of a process that died
  (even by SIGKILL: the lock is an ``flock`` the kernel releases) is taken over,
  with a note naming the previous owner.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

#: the most bytes an ``.npz`` file's arrays may take once read (uncompressed);
#: ``$SPIKELOOP_MAX_FILE_BYTES`` changes it
MAX_FILE_BYTES = 4 << 30
ENV_MAX_FILE_BYTES = "SPIKELOOP_MAX_FILE_BYTES"
#: the lock file of a run directory
LOCK_NAME = ".spikeloop.lock"


class FileError(ValueError):
    """A file or path the user named cannot be used; the message names it and
    says what is wrong."""


class LockError(FileError):
    """A directory is being written by another process (the message says which)."""


def _limit(default: int, env: str) -> int:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise FileError(f"${env} = {text!r}; allowed: a number of bytes") from None
    if value < 1:
        raise FileError(f"${env} = {text!r}; allowed: a number of bytes >= 1")
    return value


def max_file_bytes() -> int:
    return _limit(MAX_FILE_BYTES, ENV_MAX_FILE_BYTES)


def _os_reason(e: OSError) -> str:
    return {errno.ENOENT: "no such file", errno.EISDIR: "is a directory",
            errno.EACCES: "permission denied", errno.ENOTDIR: "a parent is not a directory",
            errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
            }.get(e.errno, e.strerror or type(e).__name__)


def _reason(e: BaseException) -> str:
    """What went wrong, in one short line (never a library's advice)."""
    if isinstance(e, OSError) and e.errno is not None:
        return _os_reason(e)
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "allow_pickle" in text or "pickle" in text.lower():
        return "it holds Python objects, which are never loaded"
    if isinstance(e, zipfile.BadZipFile | EOFError) or "zlib" in type(e).__module__:
        return f"corrupt or truncated archive ({text or type(e).__name__})"
    if isinstance(e, MemoryError):
        return "too large to read into memory"
    return text[:200] or type(e).__name__


# -- reading -------------------------------------------------------------------------

def check_input_file(path, what: str) -> Path:
    """``path`` as a Path when it names a readable regular file, else FileError."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise FileError(f"{path}: {_os_reason(e)} ({what} expected)") from None
    if p.is_dir():
        raise FileError(f"{path}: is a directory, not {what}")
    if not os.access(p, os.R_OK):
        raise FileError(f"{path}: permission denied ({what})")
    if st.st_size == 0:
        raise FileError(f"{path}: the file is empty ({what} expected)")
    return p


def load_npz(path, what: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive ``path`` (``what`` says what it should
    hold, e.g. "a ConfigImage .npz"), or :class:`FileError` naming the file."""
    p = check_input_file(path, what)
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise FileError(f"{path}: {_os_reason(e)} ({what})") from None
    if magic.startswith(b"\x93NUMPY"):
        raise FileError(f"{path}: a single .npy array, not {what} (an .npz archive)")
    if not magic.startswith(b"PK"):
        raise FileError(f"{path}: not {what} (not an .npz archive)")
    limit = max_file_bytes()
    try:
        with np.load(p, allow_pickle=False) as z:
            size = sum(i.file_size for i in z.zip.infolist())
            if size > limit:
                raise FileError(f"{path}: its arrays take {size} bytes, more than the "
                                f"limit of {limit} (${ENV_MAX_FILE_BYTES})")
            return {k: z[k] for k in z.files}
    except FileError:
        raise
    except Exception as e:       # noqa: BLE001 - any failure to parse is the file's fault
        raise FileError(f"{path}: not readable as {what} ({_reason(e)})") from None


def require_fields(arrays: dict, names, path, what: str) -> None:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise FileError(f"{path}: {what} lacks the field(s) {', '.join(missing)}")


def field_array(arrays: dict, name: str, path, *, integer: bool = True) -> np.ndarray:
    """Field ``name``: an integer (or bool) array when ``integer``, else a number array."""
    a = arrays[name]
    kinds = "iub" if integer else "iubf"
    if a.dtype.kind not in kinds:
        allowed = "integers" if integer else "numbers"
        raise FileError(f"{path}: field {name} holds {a.dtype}; allowed: {allowed}")
    return a


def field_int(arrays: dict, name: str, path, lo: int | None = None,
              hi: int | None = None) -> int:
    """Field ``name`` as one integer (a 0-d or one-element integer array) in ``lo..hi``."""
    a = arrays[name]
    if a.dtype.kind not in "iu" or a.size != 1:
        raise FileError(f"{path}: field {name} is {a.dtype} of shape {list(a.shape)}; "
                        "allowed: one integer")
    v = int(a.reshape(()))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise FileError(f"{path}: field {name} = {v}; allowed: {allowed}")
    return v


def field_float(arrays: dict, name: str, path) -> float:
    a = arrays[name]
    if a.dtype.kind not in "iuf" or a.size != 1 or not np.isfinite(a.reshape(())):
        raise FileError(f"{path}: field {name} is {a.dtype} of shape {list(a.shape)}; "
                        "allowed: one finite number")
    return float(a.reshape(()))


def field_bool(arrays: dict, name: str, path) -> bool:
    a = arrays[name]
    if a.dtype.kind not in "biu" or a.size != 1 or int(a.reshape(())) not in (0, 1):
        raise FileError(f"{path}: field {name} is {a.dtype} of shape {list(a.shape)}; "
                        "allowed: true or false")
    return bool(a.reshape(()))


def field_text(arrays: dict, name: str, path) -> str:
    a = arrays[name]
    if a.dtype.kind != "U" or a.ndim != 0:
        raise FileError(f"{path}: field {name} is {a.dtype} of shape {list(a.shape)}; "
                        "allowed: a string")
    return str(a)


def field_json(arrays: dict, name: str, path, kind: type = dict):
    text = field_text(arrays, name, path)
    try:
        value = json.loads(text)
    except ValueError as e:
        raise FileError(f"{path}: field {name} is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise FileError(f"{path}: field {name} holds JSON {type(value).__name__}; "
                        f"allowed: a JSON {kind.__name__}")
    return value


# -- writing -------------------------------------------------------------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", encoding: str | None = None):
    """Open a temporary file beside ``path`` for writing; when the block ends
    without an exception it is flushed to disk and renamed to ``path``
    (``os.replace``), else removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)      # mkstemp's 0600 -> what open() would give
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_savez(path, **arrays) -> None:
    """``np.savez`` to exactly ``path`` (no suffix added), atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


# -- caches ---------------------------------------------------------------------------

def build_cache_dir(env: str, name: str) -> Path:
    """Where a cache of build products lives: ``$<env>``, else ``<repo>/build/<name>``
    for a source checkout whose folder is writable, else the user's cache
    directory (``$XDG_CACHE_HOME/spikeloop/<name>``, default
    ``~/.cache/spikeloop/<name>``)."""
    if os.environ.get(env):
        return Path(os.environ[env]).resolve()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file() and os.access(repo, os.W_OK):
        return repo / "build" / name
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).resolve() / "spikeloop" / name


# -- output paths, checked before the work -------------------------------------------

def unused_path(path) -> Path:
    """``path``, or where it exists the first of ``stem-2.suffix``, ``stem-3.suffix``,
    ... that does not: a run's result beside the earlier runs' (call it where no
    other process writes the directory, e.g. under its :class:`DirLock`)."""
    path = Path(path)
    out, k = path, 1
    while out.exists():
        k += 1
        out = path.with_name(f"{path.stem}-{k}{path.suffix}")
    return out


def _first_existing(p: Path) -> Path:
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _make_dir(d: Path, label: str) -> None:
    anc = _first_existing(d)
    if anc.exists() and not anc.is_dir():
        raise FileError(f"{label}: {anc} is a file, not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FileError(f"{label}: cannot create directory {d} ({_os_reason(e)})") from None
    try:                                          # writable? (root ignores permissions,
        fd, probe = tempfile.mkstemp(dir=d, prefix=".write-test-")   # a read-only mount not)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise FileError(f"{label}: cannot write in {d} ({_os_reason(e)})") from None


def prepare_output_file(path, option: str = "--out", *, overwrite: bool = False,
                        example: str = "result.npz") -> Path:
    """Check, before any work, that the file ``path`` can be written: refuse a
    directory (or a name ending in a separator), a path under a file, an
    unwritable place, and an existing file unless ``overwrite``; create the
    missing parent directories.  Returns the path that will be written."""
    text = str(path)
    label = f"{option} {text}"
    if not text.strip():
        raise FileError(f"{option}: empty path; give a file name such as {example}")
    p = Path(text)
    if text.endswith(("/", os.sep)) or p.is_dir():
        raise FileError(f"{label}: is a directory; give a file name such as "
                        f"{p / example}")
    if p.exists() and not overwrite:
        raise FileError(f"{label}: the file exists; choose another name, or pass --force "
                        "to replace it")
    _make_dir(p.parent, label)
    return p


def prepare_output_dir(path, option: str = "--out") -> Path:
    """Check, before any work, that the directory ``path`` can be written
    (created with its parents when missing)."""
    text = str(path)
    if not text.strip():
        raise FileError(f"{option}: empty path; give a directory")
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise FileError(f"{option} {text}: is a file, not a directory")
    _make_dir(p, f"{option} {text}")
    return p


# -- one writer per directory --------------------------------------------------------

def _holder_text(info: dict) -> str:
    if not info:
        return "another process (its lock file is being written)"
    started = info.get("started")
    when = (time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started))
            if isinstance(started, int | float) else "")
    cmd = f" ({info['command']})" if info.get("command") else ""
    return f"process {info.get('pid', '?')} on host {info.get('host', '?')}{when}{cmd}"


def _read_lock(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
        info = json.loads(data.decode("utf-8")) if data.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class DirLock:
    """Exclusive use of a directory by one process (see the module docstring).

        with DirLock(out, "spikeloop train") as lock:
            if lock.note: print(lock.note)     # a dead process's lock was taken over
            ...

    Refused: :class:`LockError` naming the holder (pid, host, start, command)."""

    def __init__(self, directory, command: str = ""):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.command = command or " ".join(Path(a).name if i == 0 else a
                                           for i, a in enumerate(sys.argv))
        self.fd: int | None = None
        #: a line about the dead process whose lock was taken over, else None
        self.note: str | None = None

    def acquire(self) -> DirLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise LockError(f"{self.directory}: cannot create the lock file {self.path} "
                                f"({_os_reason(e)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_lock(fd)
                os.close(fd)
                raise LockError(f"{self.directory} is in use by {_holder_text(holder)}; wait "
                                "for it to finish or choose another directory") from None
            try:                              # the file we locked is still the lock file?
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)                      # removed by its releasing owner: retry
        previous = _read_lock(fd)
        if previous:
            self.note = (f"note: took over the lock of {self.directory} from "
                         f"{_holder_text(previous)}, which ended without releasing it")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": self.command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)              # while still holding it (see acquire)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> DirLock:
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_output_dir(path, option: str = "--out", command: str = "") -> DirLock:
    """:func:`prepare_output_dir` then :class:`DirLock` on it, acquired."""
    return DirLock(prepare_output_dir(path, option), command).acquire()


@contextlib.contextmanager
def waiting_lock(lock_path):
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing), waiting
    for another holder to finish: concurrent workers that make the same cached
    result (a build, a trained network) make it once and share it."""
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
