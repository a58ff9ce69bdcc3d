"""The cocotb co-simulation runner (spikeloop.cosim.runner) on the HostBus
component of the mini preset, on Verilator and on Icarus.

Builds go to build/cosim/ and are reused across runs (the first Verilator
build of the hostbus takes ~40 s on a 2-core machine, Icarus ~1 s; a cache hit
costs the Verilog export, ~0.5 s)."""
import time

import pytest

from spikeloop.base.config import MINI
from spikeloop.cosim import runner
from spikeloop.cosim.runner import CosimNoTestsError, CosimTestFailure

pytestmark = pytest.mark.cosim

MODULE = "spikeloop.cosim.tests.test_hostbus_cocotb"
SELFTEST_ENV = "SPIKELOOP_COSIM_SELFTEST_FAIL"   # see cosim/tests/test_hostbus_cocotb.py
EXPECTED = {"test_reset_state", "test_registers_read_back", "test_write_image_verify",
            "test_status_and_memory_reads", "test_bad_access_counts_unmapped",
            "test_ctrl_run_and_clear"}


@pytest.fixture(scope="module", params=["verilator", "icarus"])
def hostbus(request):
    info = runner.build(MINI, "hostbus", request.param)
    print(f"{request.param}: {'reused' if info.cached else 'built'} {info.build_dir} "
          f"in {info.seconds:.1f} s")
    return info


def test_hostbus_passes(hostbus):
    res = runner.run_tests(hostbus, MODULE)
    assert res.passed
    assert {t.name for t in res.ran} == EXPECTED
    assert all(t.status == "passed" for t in res.ran)
    assert all(t.sim_time_ns > 0 for t in res.ran)
    assert res.results_xml.is_file() and res.log.is_file()
    assert str(res.seed) in res.log.read_text()     # cocotb used the seed we printed


def test_second_build_reuses_the_cache(hostbus):
    t0 = time.monotonic()
    again = runner.build(MINI, "hostbus", hostbus.simulator)
    elapsed = time.monotonic() - t0
    assert again.cached
    assert again.build_dir == hostbus.build_dir
    assert again.digest == hostbus.digest
    assert elapsed < 10, f"cache hit took {elapsed:.1f} s"
    print(f"{hostbus.simulator}: cache hit in {elapsed:.2f} s")


def test_other_config_is_another_build():
    """The hash covers the Verilog: a variant of the preset builds elsewhere."""
    base = runner.build(MINI, "hostbus", "icarus")
    variant = runner.build(MINI.replace(counter_bits=12), "hostbus", "icarus")
    assert variant.build_dir != base.build_dir
    assert variant.build_dir.name.startswith("icarus-mini-")


def test_filter_matching_nothing_raises(hostbus):
    with pytest.raises(CosimNoTestsError, match=r"no test ran.*log: .*sim\.log"):
        runner.run_tests(hostbus, MODULE, testcase="test_that_does_not_exist")


def test_failing_test_raises(hostbus):
    with pytest.raises(CosimTestFailure, match=r"1 of 1 .*failed.*seed=1234.*log: ") as e:
        runner.run_tests(hostbus, MODULE, testcase="test_deliberate_failure",
                         extra_env={SELFTEST_ENV: "1"}, seed=1234)
    assert "deliberate failure" in str(e.value)


def test_verilator_threads_come_from_the_environment(monkeypatch):
    """``$SPIKELOOP_VERILATOR_THREADS``: unset or 1, the plain arguments; N > 1,
    ``--threads N`` (another build: the arguments are part of its key); anything
    else is refused in one line naming the variable."""
    monkeypatch.delenv(runner.ENV_VERILATOR_THREADS, raising=False)
    assert runner.verilator_args() == runner.VERILATOR_ARGS
    monkeypatch.setenv(runner.ENV_VERILATOR_THREADS, "1")
    assert runner.verilator_args() == runner.VERILATOR_ARGS
    monkeypatch.setenv(runner.ENV_VERILATOR_THREADS, "2")
    assert runner.verilator_args() == (*runner.VERILATOR_ARGS, "--threads", "2")
    for bad in ("0", "two", "-1", "65"):
        monkeypatch.setenv(runner.ENV_VERILATOR_THREADS, bad)
        with pytest.raises(ValueError, match=runner.ENV_VERILATOR_THREADS):
            runner.verilator_args()
