"""The co-simulation's readers and writers of signal values (cosim/host.py): the
simulator's bit strings to integers and packed arrays, and back, against the
pure-Python formats (spikeloop.base.layouts) they replace on the hot path."""
import numpy as np
import pytest

from spikeloop.base.layouts import pack_array, unpack_array
from spikeloop.cosim.host import array_word, unsigned_array_or_none, unsigned_or_none

pytestmark = pytest.mark.unit


class Signal:
    """What the readers use of a cocotb 2.1 handle: the simulator object's
    ``get_signal_val_binstr()``, the bit string most significant bit first
    (what ``str(handle.value)`` returns)."""

    def __init__(self, bits: str):
        self._handle = self
        self.bits = bits

    def get_signal_val_binstr(self) -> str:
        return self.bits


def bit_string(word: int, width: int) -> str:
    return format(word, f"0{width}b")


@pytest.mark.parametrize("bits, count", [(12, 512), (8, 3), (8, 512), (16, 5), (1, 64), (20, 1)])
def test_packed_arrays_read_and_write_like_the_formats(bits, count):
    rng = np.random.default_rng(bits * 1000 + count)
    values = rng.integers(0, 1 << bits, count)
    values[:2] = [0, (1 << bits) - 1][:count] if count > 1 else [(1 << bits) - 1]
    word = pack_array(values.tolist(), bits)
    assert array_word(values, bits) == word
    got = unsigned_array_or_none(Signal(bit_string(word, bits * count)), bits, count)
    assert got.dtype == np.int64
    assert got.tolist() == unpack_array(word, bits, count) == values.tolist()


def test_unresolved_bits_read_as_none():
    width = 12 * 4
    word = bit_string(pack_array([1, 2, 3, 4], 12), width)
    for bad in "XZUW-":
        for at in (0, 17, width - 1):
            s = word[:at] + bad + word[at + 1:]
            assert unsigned_array_or_none(Signal(s), 12, 4) is None
            assert unsigned_or_none(Signal(s)) is None
    # weak levels resolve (as cocotb's is_resolvable and to_unsigned do)
    weak = word.replace("1", "H", 1).replace("0", "L", 1)
    assert unsigned_array_or_none(Signal(weak), 12, 4).tolist() == [1, 2, 3, 4]
    assert unsigned_or_none(Signal(weak)) == int(word, 2)


def test_a_width_that_is_not_the_arrays_is_an_error():
    with pytest.raises(ValueError, match="48 bits read as 4 x 11 bits"):
        unsigned_array_or_none(Signal("0" * 48), 11, 4)


def test_an_element_that_does_not_fit_is_an_error():
    assert array_word(np.array([], dtype=np.int64), 8) == 0
    for bad in (256, -1):
        with pytest.raises(ValueError, match=f"element 1 = {bad} does not fit 8 bits"):
            array_word(np.array([3, bad, 7]), 8)
