"""Cycle-accurate reference of the PPU as the top level wires it (rtl/ppu.py
inside rtl/top.py), built on the instruction-level simulator
(:class:`~spikeloop.model.ppu_sim.PpuSim`).

The core executes one instruction at a time with a fixed cycle count; inside
the chip ``out.ready`` is always high (the output buffer never stalls the
core), so ``vout`` takes one cycle.  :class:`PpuRef` steps PpuSim at the
*last* cycle of each instruction, which is where the RTL makes every
architectural effect (register writes, the synapse row write of ``vsw``/``vsl``,
the ``nreset`` pulse, the stream transfer).  The one read that another block can
change between an instruction's two cycles is the ADC sample of ``vadc``
(the RTL reads it in the first cycle, before that cycle's sample is written):
the reference takes a copy of that sample in the first cycle.  Synapse rows
are read in the first cycle too, but nothing else writes them during a run
(the host side is taken as done, as in model/digital/top.py).

``tick(start, stop, adc_count, time)`` returns this cycle's outputs
(``running``, ``halted``, ``pc``, ``cycles``, ``nreset`` as an int mask,
``out`` the streamed vector or None) and advances across the clock edge.
The caller links ``sim.syn.rows`` to the synapse memories and ``sim.adc`` to
the ADC buffer (model/digital/top.py does).
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.base.isa import XMASK, chip_geometry, decode
from spikeloop.base.ppu_job import PpuJob, synapse_arrays
from spikeloop.model.ppu_sim import Environment, PpuSim, SynapseRows


class PpuRef:
    def __init__(self, cfg: ChipConfig, adc_buffer=None):
        self.cfg = cfg
        self.geom = chip_geometry(cfg)
        self._adc_count = 0
        self._time = 0
        env = Environment(ready=lambda c: True, adc_count=lambda c: self._adc_count,
                          time=lambda c: self._time)
        self.sim = PpuSim(self.geom, env=env, syn=SynapseRows(cfg), adc=adc_buffer)
        self.phase = 0
        self._adc_snap = None     # (sample, codes) read in the first cycle of a vadc

    # -- host side (the host bus's writes, taken as done) -------------------------
    def load(self, words, base: int = 0) -> None:
        """Instruction words into the instruction memory (``ppu_imem``)."""
        self.sim.load(words, base)

    def write_dmem(self, index: int, word: int) -> None:
        """One 32-bit word of the data memory (``ppu_dmem``)."""
        self.sim.dmem[index % self.geom.dmem_words] = int(word) & XMASK

    # -- cycles ---------------------------------------------------------------------
    def tick(self, *, start: int = 0, stop: int = 0, adc_count: int = 0, time: int = 0) -> dict:
        sim = self.sim
        out = {"running": int(sim.running), "halted": int(sim.halted), "pc": sim.pc,
               "cycles": min(sim.cycle + self.phase, XMASK), "nreset": 0, "out": None}
        if not sim.running:
            if start:
                sim.start()
                self.phase = 0
            return out
        self._adc_count, self._time = adc_count, time & XMASK
        dec = decode(sim.imem[sim.pc])
        ins = dec.instr
        if ins is not None and ins.cycles == 2 and self.phase == 0:
            # first cycle: the read is issued
            if ins.mnemonic == "vadc":
                ea = (sim.regs[dec.b] + dec.simm) & XMASK
                sample, _, ok = self.geom.split_adc_address(ea)
                self._adc_snap = (sample, list(sim.adc[sample])) if ok else None
            if stop:        # abandoned without effect; pc stays on it
                sim.cycle += 1
                sim.running = False
            else:
                self.phase = 1
            return out
        n_res, n_str = len(sim.resets), len(sim.stream)
        adc = sim.adc
        if ins is not None and ins.mnemonic == "vadc" and self._adc_snap is not None:
            view = list(adc)
            view[self._adc_snap[0]] = self._adc_snap[1]
            sim.adc = view
        try:
            sim.step()
        finally:
            sim.adc = adc
            self._adc_snap = None
            self.phase = 0
        if stop:
            sim.running = False
        if len(sim.resets) > n_res:
            out["nreset"] = sim.resets[-1][1]
        if len(sim.stream) > n_str:
            out["out"] = sim.stream[-1][1]
        return out


def ppu_result(cfg: ChipConfig, ref: PpuRef, out: list[int], drops: int, job: PpuJob,
               rows, since: str) -> dict:
    """The result dict of a PPU run the host waited ``job.max_cycles`` cycles
    for, counted from ``since``: ``ref``'s core, the output buffer
    ``out``/``drops``, and ``rows[half][row][col] = (weight, label)`` when the
    job reads the synapses back.  A PPU still running is a RuntimeError."""
    sim = ref.sim
    if sim.running:
        raise RuntimeError(f"the PPU still runs {job.max_cycles} cycles after {since} "
                           f"(ppu.max_cycles); pc = {sim.pc}")
    res = {"status": int(sim.running) | int(sim.halted) << 1, "pc": int(sim.pc),
           "cycles": min(sim.cycle + ref.phase, XMASK), "out": [int(v) for v in out],
           "out_drops": int(drops), "dmem": {i: int(sim.dmem[i]) for i in job.read_dmem}}
    if job.read_synapses:
        res["weights"], res["labels"] = synapse_arrays(rows)
    return res
