import os

from hypothesis import settings

# Every random seed is printed on failure (hypothesis prints the falsifying
# example and its seed); CI runs derandomized so the same commit gives the same run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# One torch thread: on this 2-core machine a second thread slows the small
# per-step tensors of the analog model down (contention with the simulator).
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a dependency
    torch = None


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA device: skipped (and said so) without one;
    ``make test-cuda`` runs them alone and refuses to run without one."""
    import pytest

    if torch is not None and torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
