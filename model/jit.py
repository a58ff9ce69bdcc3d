"""numba's on-disk cache for the compiled kernels, kept fresh by everything they compile in.

numba keys a cached function by the source of its own file alone. The fast
backend's whole-run kernel (spikeloop/backends/digital_core.py) inlines
functions of other files (the LIF row of ``analog.py``, the membrane noise of
``noise.py``, the PPU core of ``ppu_core.py``) and freezes constants of others
(the ISA's opcodes, configuration fields): after an edit of one of those,
numba alone would load the old machine code and the backend would silently
compute the old model.

It also holds :func:`next_set`, a compiled helper the kernels of several of
those files share.

Importing this module registers cache locators (numba's own, with another
source stamp) for the functions of the kernel packages (``spikeloop.base``,
``spikeloop.model``, ``spikeloop.backends``): their stamp is a hash over the
source of every Python file of those packages, so an edit of any of them
recompiles them all. Functions elsewhere (the cochlea model's) keep numba's
per-file stamp. Every module of those packages that compiles with
``cache=True`` imports this one before its first decorator. numba is pinned
(pyproject.toml): the locator classes used here are those of its
``numba.core.caching``.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numba
import numpy as np
from numba.core import caching

import spikeloop.base

#: the packages whose functions share the stamp, and whose sources it covers
KERNEL_DIRS: tuple[Path, ...] = tuple(
    p.resolve() for p in (Path(spikeloop.base.__file__).parent,
                          Path(__file__).parent,
                          Path(spikeloop.base.__file__).parent.parent / "backends"))


def _sources(dirs: tuple[Path, ...]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for d in dirs:
        for p in sorted(d.glob("*.py")):
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _hash(sources: tuple[tuple[str, int, int], ...]) -> bytes:
    # keyed by every file's name, mtime and size: an edit while a process runs
    # is hashed again
    h = hashlib.sha256()
    for path, _, _ in sources:
        h.update(Path(path).name.encode() + b"\0")
        h.update(Path(path).read_bytes() + b"\0")
    return h.digest()


def sources_stamp(dirs: tuple[Path, ...] = KERNEL_DIRS) -> bytes:
    """The stamp of the kernels' cache: a hash of every ``*.py`` in ``dirs``."""
    return _hash(_sources(tuple(dirs)))


def is_kernel_file(py_file: str) -> bool:
    return Path(py_file).resolve().parent in KERNEL_DIRS


def _kernel_locator(base: type) -> type:
    class KernelLocator(base):
        spikeloop_kernel = True

        def get_source_stamp(self):
            return sources_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            if not is_kernel_file(py_file):
                return None
            return super().from_function(py_func, py_file)

    KernelLocator.__name__ = KernelLocator.__qualname__ = f"Kernel{base.__name__}"
    return KernelLocator


def install() -> None:
    """Put the kernel locators first in numba's list (once per process): numba's
    own order (NUMBA_CACHE_DIR, then the source tree's __pycache__, then the
    user's cache directory), each with the kernels' stamp."""
    classes = caching.CacheImpl._locator_classes
    if any(getattr(c, "spikeloop_kernel", False) for c in classes):
        return
    classes[0:0] = [_kernel_locator(b) for b in (caching.UserProvidedCacheLocator,
                                                 caching.InTreeCacheLocator,
                                                 caching.UserWideCacheLocator)]


install()


@numba.njit(inline="always", nogil=True)
def next_set(mask, i, n):
    """The first index ``j`` with ``i <= j < n`` and ``mask[j]`` set (a bool
    array, one byte per entry), else ``n``.  Up to a multiple of eight entry by
    entry, then eight entries per machine word, skipping the words with none:
    the kernels' scans of rare flags (spikes, numbers left to an exact path)
    cost about an eighth of a loop over every entry."""
    while i < n and i & 7:
        if mask[i]:
            return i
        i += 1
    words = mask[:n - (n & 7)].view(np.uint64)
    q = i >> 3
    while q < len(words) and words[q] == 0:
        q += 1
    i = max(i, q << 3)
    while i < n:
        if mask[i]:
            return i
        i += 1
    return n
