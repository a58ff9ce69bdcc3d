"""cocotb driver of the host configuration bus (rtl/hostbus.py).

The protocol: one access per clock cycle; ``addr``, ``wdata``, ``we``, ``re``
are sampled at a rising edge of ``clk``; ``rdata`` and ``rvalid`` show the
result of a read in the cycle after the edge that sampled it.

Timing discipline of :class:`HostBusDriver` (cocotb 2.1 triggers):

- inputs are driven right after a rising edge (``RisingEdge(clk)`` has
  fired, before ``ReadOnly``) and are sampled by the next edge;
- after each access the bus is driven idle (``we = re = 0``) in the same
  time step, so a caller that stops calling the driver never repeats an
  access; a following access in the same time step overrides the idle value,
  so back-to-back calls issue one access per cycle;
- read data is sampled at the falling edge of the cycle after the sampling
  edge (the design is clocked on rising edges alone: the values of that edge
  have settled), where the next access is driven: one wake-up per read (on
  Verilator the writes apply at once, at the end of their time step's
  evaluation: no further wake-up for cocotb's ``ReadWrite`` phase;
  :func:`inertial_deposits`).  A
  driver method that starts while the simulation is not right after a rising
  edge of ``clk`` (after a read, in ``ReadOnly``, after a ``Timer``, at the
  start of a test) first awaits the next rising edge.

The driver knows reset: :meth:`reset` holds ``rst`` (Amaranth's synchronous,
active-high domain reset) for some cycles with the bus idle, and accesses
before a reset raise :class:`HostBusError` (pass ``require_reset=False`` when
the testbench resets the design itself).

Port names: the bare HostBus component has ``addr``, ``wdata``, ``we``,
``re``, ``rdata``, ``rvalid`` (``prefix=""``); the top level exposes them as
``host_addr`` ... (``prefix="host_"``, the default).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Lock, RisingEdge, current_gpi_trigger

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import ChipConfig

BUS_PORTS = ("addr", "wdata", "we", "re", "rdata", "rvalid")


class HostBusError(AssertionError):
    """A host access did not behave as the protocol says (no rvalid, X data,
    mismatch on verify, access before reset)."""


def clock_period_ps(cfg: ChipConfig) -> int:
    """The clock period of ``cfg`` in ps, rounded to an even number (50:50 duty)."""
    return 2 * max(1, round(500_000 / cfg.clock_mhz))


#: a simulator value's resolvable weak levels, as their strong ones
WEAK_LEVELS = str.maketrans("LH", "01")
_BITS_DELETED = str.maketrans("", "", "01")


def binstr(handle) -> str:
    """A signal's value as the simulator's bit string (MSB first; ``0``, ``1``,
    ``X``, ``Z``, ...): what ``str(handle.value)`` returns, without building the
    value object (cocotb 2.1's handles keep the simulator object in ``_handle``;
    the monitors read signals every cycle, where that object costs as much as
    the read)."""
    return handle._handle.get_signal_val_binstr()


def binstr_reader(handle):
    """:func:`binstr` of ``handle`` as a function of no arguments (for a signal
    read every cycle)."""
    return handle._handle.get_signal_val_binstr


def unsigned_or_none(handle) -> int | None:
    """The unsigned value of a signal, or None where a bit is X, Z, U, W or -.

    From the simulator's bit string (cocotb keeps it as it came): testing
    ``is_resolvable`` builds an object per bit, which on the columns' wide sums
    costs more than the analog step they feed."""
    text = binstr(handle).translate(WEAK_LEVELS)
    if not text or text.translate(_BITS_DELETED):     # int() would take "-", "_", " "
        return None
    return int(text, 2)


def unsigned_array_or_none(handle, bits: int, count: int) -> np.ndarray | None:
    """The ``count`` elements of a packed array signal (element ``i`` in bits
    ``[i*bits, (i+1)*bits)``, as ``unpack_array``) as int64 numpy, or None where
    a bit is not 0 or 1: from the simulator's bit string, with no Python loop
    over the elements (the full chip's columns' sums are 6,144 bits wide)."""
    text = binstr(handle)
    if len(text) != bits * count:
        raise ValueError(f"a signal of {len(text)} bits read as {count} x {bits} bits")
    digits = np.frombuffer(text.translate(WEAK_LEVELS).encode("ascii"), np.uint8)
    if digits.max() > _ONE or digits.min() < _ZERO:
        return None
    lsb_first = (digits[::-1] & 1).reshape(count, bits).astype(np.int64)
    return lsb_first @ (np.int64(1) << np.arange(bits, dtype=np.int64))


_ZERO, _ONE = ord("0"), ord("1")
_WHOLE_BYTES = {8: np.dtype("<u1"), 16: np.dtype("<u2"), 32: np.dtype("<u4")}


def inertial_deposits() -> bool:
    """Whether the running simulator applies a write (cocotb's deposit) after
    the evaluation of the time step it was made in, whatever callback made it:
    Verilator (cocotb's main loop for it) does, so a testbench may write
    inputs at once from any callback and the clocked logic of that time step
    still sees the old values. Elsewhere cocotb holds such writes for the
    ``ReadWrite`` phase, which costs a wake-up of the simulator's callbacks
    per time step written in."""
    return cocotb.SIM_NAME.strip().lower().startswith("verilator")


def bits_writer(handle, at_once: bool) -> Callable[[str], None]:
    """A function writing a bit string (``0``/``1``, most significant bit
    first, the port's width) to ``handle``: ``at_once`` (see
    :func:`inertial_deposits`) as cocotb's immediate write does, else by
    cocotb's ``handle.value``."""
    if not at_once:
        def write(text: str) -> None:
            handle.value = text
        return write
    put = handle._handle.set_signal_val_binstr
    return lambda text: put(0, text)                    # (action 0: deposit)


def port_writer(handle, at_once: bool) -> Callable[[int], None]:
    """:func:`bits_writer` for a non-negative integer (range checked by the
    caller)."""
    if not at_once:
        def write(value: int) -> None:
            handle.value = value
        return write
    width = len(handle)
    if width <= 32:
        put = handle._handle.set_signal_val_int
        return lambda value: put(0, value)              # (action 0: deposit)
    write_bits = bits_writer(handle, True)
    return lambda value: write_bits(format(value, f"0{width}b"))


def array_word(values: np.ndarray, bits: int) -> int:
    """``pack_array(values, bits)`` of non-negative integers that fit ``bits``
    bits, with no Python loop over the elements (a ValueError otherwise)."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and not (v.min() >= 0 and v.max() < (1 << bits)):
        bad = int(np.flatnonzero((v < 0) | (v >= (1 << bits)))[0])
        raise ValueError(f"element {bad} = {int(v[bad])} does not fit {bits} bits")
    if bits in _WHOLE_BYTES:           # element i is byte(s) i: the little-endian bytes
        return int.from_bytes(v.astype(_WHOLE_BYTES[bits]).tobytes(), "little")
    lsb_first = ((v[:, None] >> np.arange(bits, dtype=np.int64)) & 1).astype(np.uint8)
    return int.from_bytes(np.packbits(lsb_first.reshape(-1), bitorder="little").tobytes(),
                          "little")


def start_clock(dut, cfg: ChipConfig, signal: str = "clk") -> Clock:
    """Start the GPI (C++) clock on ``dut.<signal>`` at ``cfg.clock_mhz``
    (125 MHz: 8 ns).  Returns the running :class:`cocotb.clock.Clock`."""
    clock = Clock(getattr(dut, signal), clock_period_ps(cfg), unit="ps", impl="gpi")
    clock.start(start_high=False)
    return clock


class HostBusDriver:
    """Drive the host bus of ``dut``: ``await drv.reset()``, then
    ``await drv.write(addr, value)``, ``value = await drv.read(addr)``,
    ``await drv.write_image(image)``."""

    def __init__(self, dut, prefix: str = "host_", clock: str = "clk",
                 reset: str | None = "rst", require_reset: bool = True):
        self.dut = dut
        self.prefix = prefix
        missing = [prefix + p for p in BUS_PORTS if not _has(dut, prefix + p)]
        if missing:
            raise AttributeError(
                f"{dut._name} has no port(s) {', '.join(missing)}; the bare HostBus "
                "component needs prefix='', the top level prefix='host_'")
        self.addr, self.wdata, self.we, self.re, self.rdata, self.rvalid = (
            getattr(dut, prefix + p) for p in BUS_PORTS)
        self.clk = getattr(dut, clock)
        self.rst = getattr(dut, reset) if reset else None
        self.addr_bits = len(self.addr)
        self.data_bits = len(self.wdata)
        at_once = inertial_deposits()
        self._addr, self._wdata, self._we, self._re = (
            port_writer(h, at_once) for h in (self.addr, self.wdata, self.we, self.re))
        self.is_reset = not require_reset
        self.accesses = 0       # accesses issued since construction
        # tasks sharing the driver (a testbench and a monitor) take turns per call
        self._lock = Lock(f"{prefix}bus")

    # -- timing ---------------------------------------------------------------------
    async def _drive_point(self) -> None:
        """Return right after a rising edge of clk, where inputs may be driven."""
        trig = current_gpi_trigger()
        if not (isinstance(trig, RisingEdge) and trig.signal is self.clk):
            await RisingEdge(self.clk)

    def _idle(self) -> None:
        self._we(0)
        self._re(0)

    def _check(self, addr: int, value: int | None = None) -> None:
        if not self.is_reset:
            raise HostBusError("host access before reset: await HostBusDriver.reset() first "
                               "(or pass require_reset=False)")
        if not 0 <= addr < (1 << self.addr_bits):
            raise ValueError(f"address {addr:#x} does not fit {self.addr_bits} address bits")
        if value is not None and not 0 <= value < (1 << self.data_bits):
            raise ValueError(f"value {value:#x} does not fit {self.data_bits} data bits")

    # -- reset ----------------------------------------------------------------------
    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` (synchronous) for ``cycles`` rising edges with the bus
        idle, then release it; returns right after the last edge in reset, so
        the next access is sampled by the first edge out of reset."""
        if self.rst is None:
            raise HostBusError("this driver has no reset signal (reset=None)")
        async with self._lock:
            await self._drive_point()
            self._addr(0)
            self._wdata(0)
            self._idle()
            self.rst.value = 1
            for _ in range(max(1, cycles)):
                await RisingEdge(self.clk)
            self.rst.value = 0
            self.is_reset = True

    # -- accesses -------------------------------------------------------------------
    async def write(self, addr: int, value: int) -> None:
        """One write; returns right after the edge that performed it."""
        await self.write_many([(addr, value)])

    async def write_many(self, writes: Iterable[tuple[int, int]]) -> None:
        """Back-to-back writes, one per cycle; returns right after the edge
        that performed the last one, with the bus driven idle."""
        writes = [(int(a), int(v)) for a, v in writes]
        for a, v in writes:
            self._check(a, v)
        async with self._lock:
            await self._drive_point()
            for addr, value in writes:
                self._addr(addr)
                self._wdata(value)
                self._we(1)
                self._re(0)
                await RisingEdge(self.clk)
                self.accesses += 1
                self._idle()

    async def read(self, addr: int) -> int:
        """One read; returns ``rdata`` of the cycle after the access (see
        :meth:`read_many`)."""
        return (await self.read_many([addr]))[0]

    async def read_many(self, addrs: Iterable[int]) -> list[int]:
        """Pipelined reads, one per cycle; the values in order.  Returns at the
        falling edge of the cycle after the last access (the values of its
        rising edge settled), with the bus idle from the next rising edge on.

        One wake-up per read: at the falling edge of the cycle after access
        ``i`` (the design is clocked on rising edges alone) its ``rdata`` has
        settled and access ``i + 1`` is driven for the next rising edge."""
        addrs = [int(a) for a in addrs]
        for a in addrs:
            self._check(a)
        out: list[int] = []
        if not addrs:
            return out
        async with self._lock:
            await self._drive_point()
            self._addr(addrs[0])
            self._re(1)
            self._we(0)
            await RisingEdge(self.clk)              # access 0 sampled here
            for i, a in enumerate(addrs):
                await FallingEdge(self.clk)         # rdata of access i (sampled at the
                self.accesses += 1                  # rising edge before) has settled
                out.append(self._sample(a))
                if i + 1 < len(addrs):              # access i+1: the next rising edge
                    self._addr(addrs[i + 1])
                else:
                    self._idle()
        return out

    def _sample(self, addr: int) -> int:
        if str(self.rvalid.value) != "1":
            raise HostBusError(f"read of {addr:#x}: {self.prefix}rvalid is "
                               f"{self.rvalid.value} in the cycle after the access")
        v = unsigned_or_none(self.rdata)
        if v is None:
            raise HostBusError(f"read of {addr:#x}: {self.prefix}rdata is "
                               f"{self.rdata.value} (X/Z bits)")
        return v

    # -- configuration images -------------------------------------------------------
    async def write_image(self, image, verify: bool = False) -> int:
        """Write every word of ``image.bus_writes()`` (a ConfigImage), back to
        back.  ``verify``: read back the words of ``reg`` regions (registers
        of the register bank; memories need the component behind them) and
        raise :class:`HostBusError` on the first difference.  Returns the
        number of writes."""
        writes = image.bus_writes()
        await self.write_many(writes)
        if verify:
            amap = AddressMap(image.cfg)
            regs = [(a, v) for a, v in writes if amap.decode(a)[0].kind == "reg"]
            got = await self.read_many([a for a, _ in regs])
            for (a, v), g in zip(regs, got, strict=True):
                if g != v:
                    r, index, _ = amap.decode(a)
                    raise HostBusError(f"write_image verify: {r.name}[{index}] at {a:#x} "
                                       f"reads {g:#x}, wrote {v:#x}")
        return len(writes)


def _has(dut, name: str) -> bool:
    try:
        getattr(dut, name)
    except AttributeError:
        return False
    return True
