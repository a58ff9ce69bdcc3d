"""The top's neuron-merge switches: the host's ``neuron_merge`` register drives
the ``neuron_merge`` port to the analog side, column by column.

The co-simulation reads this port to merge neurons in the analog model, so a
port stuck at 0 shows there only when a scenario merges neurons; here it is
checked at the top's boundary directly, after each write."""
import numpy as np
import pytest

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import MINI
from spikeloop.rtl.top import Top
from tests.simutil import get, simulate
from tests.test_rtl_top import Host

pytestmark = pytest.mark.rtl


def test_merge_register_drives_the_merge_port():
    cfg = MINI
    assert cfg.n_halves == 2
    amap = AddressMap(cfg)
    region = amap["neuron_merge"]
    C = cfg.columns_per_half
    rng = np.random.default_rng(4)
    patterns = [rng.integers(0, 2, C) for _ in range(3)] + [np.ones(C, int), np.zeros(C, int)]
    patterns.insert(0, np.eye(C, dtype=int)[C // 2])       # one column alone
    dut = Top(cfg)

    async def bench(ctx):
        host = Host(ctx, dut)
        assert get(ctx, dut.neuron_merge) == 0
        for bits in patterns:
            for c in range(C):
                await host.write(region.address(c), int(bits[c]))
            want = sum(int(b) << c for c, b in enumerate(bits))
            got = get(ctx, dut.neuron_merge)
            assert got == want, f"merge port {got:#x}, register {want:#x}"
            for c in range(C):
                assert await host.read(region.address(c)) == bits[c]

    simulate(dut, bench, name="top_merge")
