"""numba's cache of the compiled kernels follows every file they compile in
(spikeloop/model/jit.py): the whole-run kernel inlines the LIF row, the noise and
the PPU core of other files, which numba's per-file stamp would not notice."""
import numba
import pytest

from spikeloop.backends import digital_core, ppu_core
from spikeloop.data.speech import cochlea
from spikeloop.model import analog, jit, noise

pytestmark = pytest.mark.unit


def _dispatchers(module):
    return [f for f in vars(module).values()
            if isinstance(f, numba.core.registry.CPUDispatcher) and f._cache is not None
            and hasattr(f._cache, "_impl")]


@pytest.mark.parametrize("module", [digital_core, ppu_core, analog, noise])
def test_the_kernels_are_stamped_by_every_source_they_compile_in(module):
    ds = _dispatchers(module)
    assert ds
    for d in ds:
        loc = d._cache._impl.locator
        assert type(loc).__name__.startswith("Kernel") and loc.get_source_stamp() == \
            jit.sources_stamp()


def test_other_compiled_code_keeps_numbas_per_file_stamp():
    ds = _dispatchers(cochlea)
    assert ds and not any(getattr(d._cache._impl.locator, "spikeloop_kernel", False)
                          for d in ds)
    assert not jit.is_kernel_file(cochlea.__file__)
    assert jit.is_kernel_file(ppu_core.__file__) and jit.is_kernel_file(analog.__file__)


def test_the_stamp_changes_with_any_source_file(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.py").write_text("X = 1\n")
    (b / "y.py").write_text("Y = 2\n")
    (b / "notes.txt").write_text("not a source\n")
    first = jit.sources_stamp((a, b))
    assert jit.sources_stamp((a, b)) == first
    (b / "y.py").write_text("Y = 3\n")
    assert jit.sources_stamp((a, b)) != first
    (b / "y.py").write_text("Y = 2\n")
    assert jit.sources_stamp((a, b)) == first
    (b / "notes.txt").write_text("changed\n")
    assert jit.sources_stamp((a, b)) == first
    jit.install()                                   # a second install adds nothing
    classes = numba.core.caching.CacheImpl._locator_classes
    assert sum(getattr(c, "spikeloop_kernel", False) for c in classes) == 3
