"""Small pieces of logic that several components share."""
from __future__ import annotations

from amaranth.hdl import Module, Signal, Value


def round_robin_grant(m: Module, req: Value, last: Value, n: int, name: str) -> Signal:
    """The requester that round robin grants: the lowest set bit of ``req``
    above index ``last``, else the lowest set bit of ``req`` (wrapping around).
    Combinational; the result is only meaningful while ``req`` is non-zero.
    A caller may override it by a later comb assignment to the returned signal."""
    after = Signal(n, name=f"{name}_after")  # bit i: i > last
    grant = Signal(range(n), name=f"{name}_grant")
    for i in range(n):
        m.d.comb += after[i].eq(last < i if i else 0)
    hi = req & after
    # later assignments win: lowest request after `last`, else lowest request
    for i in reversed(range(n)):
        with m.If(req[i]):
            m.d.comb += grant.eq(i)
    for i in reversed(range(n)):
        with m.If(hi[i]):
            m.d.comb += grant.eq(i)
    return grant
