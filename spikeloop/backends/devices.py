"""The torch device the fast backend runs on, checked where the user names it."""
from __future__ import annotations

import torch


def check_device(device):
    """``device`` as a torch device the fast backend can run on (``cpu``, ``cuda``,
    ``cuda:N``), or a ValueError naming the field and what is allowed; the fast
    backend's results are the same bits on either (tests/test_fast_equivalence.py)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device = {device!r}; allowed: cpu, cuda, cuda:N")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not n:
            raise ValueError(f"device = {device!r}: torch {torch.__version__} sees no CUDA "
                             "device here; allowed: cpu")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device = {device!r}: {n} CUDA device(s) here; allowed: "
                             f"cuda:0..cuda:{n - 1}")
    return dev


def check_backend_device(backend: str, device):
    """:func:`check_device` for ``backend``: only the fast backend runs on another
    device than the cpu."""
    if str(device) != "cpu" and backend != "fast":
        raise ValueError(f"device = {str(device)!r}: only the fast backend runs on a torch "
                         f"device (backend {backend!r}: allowed cpu)")
    return check_device(device)
