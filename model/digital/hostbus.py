"""Cycle-accurate reference of rtl/hostbus.py (see its docstring for the protocol)."""
from __future__ import annotations

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import ChipConfig


class HostBusRef:
    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.amap = AddressMap(cfg)
        self.reset()

    def reset(self) -> None:
        self.regs = {r.name: [0] * r.count for r in self.amap if r.kind == "reg"}
        self.run = 0
        self.clear = 0
        self.pulses = {r.name: 0 for r in self.amap if r.kind == "pulse"}
        self.bad_access = 0
        self.holds = {r.name: 0 for r in self.amap if r.kind == "mem" and r.words == 2}
        self._read = None          # (region, index, word) of last cycle's read, or "unmapped"
        self._read_value = 0
        self._rvalid = 0

    def _decode(self, addr):
        try:
            return self.amap.decode(addr)
        except KeyError:
            return None

    def tick(self, addr: int, wdata: int, we: int, re: int,
             status: dict[str, list[int]], mem_rdata: dict[str, int]) -> dict:
        """One cycle. ``status``: the status inputs; ``mem_rdata``: what each
        memory's host port returns this cycle (for the read of the last cycle)."""
        dw = self.cfg.host_data_bits
        out = {"run": self.run, "clear": self.clear, "rvalid": self._rvalid,
               "bad_access": self.bad_access, "regs": {k: list(v) for k, v in self.regs.items()},
               "pulses": dict(self.pulses)}
        # read data of the previous cycle's access
        rdata = 0
        if self._read is not None and self._read != "unmapped":
            region, index, word = self._read
            if region.kind == "mem":
                rdata = (mem_rdata[region.name] >> (dw * word)) & ((1 << dw) - 1)
            else:
                rdata = self._read_value
        out["rdata"] = rdata
        # this cycle's memory port outputs
        dec = self._decode(addr)
        mem_ports = {}
        for r in self.amap:
            if r.kind != "mem":
                continue
            # the port address is the low address bits, whether or not the region is hit
            offset = addr & (r.size - 1)
            index = offset >> 1 if r.words == 2 else offset
            port = {"addr": index & ((1 << max(1, (r.count - 1).bit_length())) - 1)}
            hit = dec is not None and dec[0].name == r.name
            if r.writable and r.words == 1:
                port["we"] = int(bool(hit and we))
                port["wdata"] = wdata & ((1 << r.bits) - 1)
            elif r.writable:
                port["we"] = int(bool(hit and we and dec[2] == 1))
                port["wdata"] = (self.holds[r.name] | (wdata << dw)) & ((1 << r.bits) - 1)
            mem_ports[r.name] = port
        out["mem"] = mem_ports

        # clock edge
        self.clear = 0
        self.pulses = {k: 0 for k in self.pulses}
        self._rvalid = re
        self._read = None
        bad = False
        if (we or re) and dec is None:
            bad = True
        if dec is not None:
            region, index, word = dec
            if re:
                self._read = dec
                if region.kind == "ctrl":
                    self._read_value = self.run
                elif region.kind == "pulse":
                    self._read_value = 0
                elif region.kind == "reg":
                    self._read_value = self.regs[region.name][index]
                elif region.kind == "status":
                    self._read_value = status[region.name][index]
            if we:
                if not region.writable:
                    bad = True
                elif region.kind == "ctrl":
                    self.run, self.clear = wdata & 1, (wdata >> 1) & 1
                elif region.kind == "pulse":
                    self.pulses[region.name] = wdata & ((1 << region.bits) - 1)
                elif region.kind == "reg":
                    self.regs[region.name][index] = wdata & ((1 << region.bits) - 1)
                elif region.kind == "mem" and region.words == 2 and word == 0:
                    self.holds[region.name] = wdata
        if bad and self.bad_access < (1 << self.cfg.counter_bits) - 1:
            self.bad_access += 1
        return out
