"""Directed stimulus for the functional-coverage bins (spikeloop/verify/fcov.py) that
the random tests of each block do not reach, or reach only with some of their
draws; every run is still compared with the block's reference, cycle by cycle."""
from __future__ import annotations

import pytest

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import MINI
from spikeloop.base.isa import BY_MNEMONIC, ISA, decode
from spikeloop.base.layouts import pack_timed_event
from spikeloop.model.digital.synapse_memory import IDLE_ROW, RowEvent
from spikeloop.ppu.asm import assemble
from spikeloop.verify.fcov import SATURATING, saturates
from tests import (
    test_ppu_rtl,
    test_rtl_crossbar,
    test_rtl_hostbus,
    test_rtl_neuron_backend,
    test_rtl_playback,
    test_rtl_synapse_memory,
    test_rtl_top,
)

pytestmark = pytest.mark.rtl


def test_hostbus_every_region_read_and_written_and_unmapped():
    """Every region's first and last word written and read (read-only regions
    count the write as a bad access), the control register and the cycle counter
    read, unmapped addresses (beyond the map and in the holes of a region's
    decoded window), and the bad-access counter up to saturation."""
    cfg = MINI.replace(counter_bits=4)
    amap = AddressMap(cfg)
    acc = []
    for r in amap:
        for a in sorted({r.base, r.base + r.count * r.words - 1}):
            acc += [(a, 0x5A5A_5A5A ^ a, True, False), (a, 0, False, True)]
    top = (1 << amap.addr_bits) - 1
    unmapped = [a for a in range(top, top - 64, -1)
                if not any(r.base <= a < r.base + r.count * r.words for r in amap)][:2]
    assert unmapped, "the address map fills the whole address space"
    acc += [(unmapped[0], 1, True, False), (unmapped[-1], 0, False, True)]
    # the holes inside a region's decoded window (entries beyond its count) are
    # unmapped: first, while the bad-access counter still counts
    holes = []
    for r in amap:
        if r.count * r.words < r.size:
            hole = r.base + r.count * r.words
            holes += [(hole, 7, True, False), (hole, 0, False, True)]
    assert holes, "no region with a hole in its decoded window"
    acc = holes + acc
    acc += [(unmapped[0], 0, False, True)] * 20 + [(0, 0, False, False)] * 2
    status = {r.name: [(3 * i + 1) & ((1 << r.bits) - 1) for i in range(r.count)]
              for r in amap if r.kind == "status"}
    test_rtl_hostbus.run_compare(cfg, acc, status)


def test_neurons_every_prescale():
    """A spike accepted under every prescale setting, once in a tick cycle and once
    between ticks, with refractory periods 1 and the maximum."""
    cfg = MINI
    n = cfg.n_neurons
    rmax = (1 << cfg.refractory_bits) - 1
    stim = []
    for p in range(1 << cfg.refractory_prescale_bits):
        refr = [1 if i % 2 else rmax for i in range(n)]
        stim.append({"spike_in": 0, "enable": (1 << n) - 1, "refractory": refr,
                     "prescale": p, "clear": 1})
        for t in range(12):
            stim.append({"spike_in": (1 << n) - 1 if t in (0, 3) else 0,
                         "enable": (1 << n) - 1, "refractory": refr, "prescale": p,
                         "clear": 0})
    test_rtl_neuron_backend.run_compare(cfg, stim)


def _merge_all(img):
    img.neuron_merge[:] = 1


@pytest.mark.parametrize("seed", [3])
def test_top_depth_one_fifos_full_together_and_every_column_merged(seed):
    """Depth-1 FIFOs in the arbiters and the crossbar under a spike storm: the
    arbiters' and the crossbar's FIFOs full in the same cycles; every neuron pair
    merged."""
    cfg = MINI.replace(arbiter_fifo_depth=1, crossbar_fifo_depth=1)
    test_rtl_top.compare_top(cfg, seed, 24, 0.9, adjust=_merge_all)


def test_ppu_undefined_word_halts():
    """An undefined instruction word executes as ``halt``."""
    words = assemble("addi r1, r0, 5\naddi r2, r1, 1", MINI,
                     imem_words=test_ppu_rtl.IMEM).words
    defined_ops = {i.opcode for i in BY_MNEMONIC.values()}
    undefined = next(op for op in range(64) if op not in defined_ops)
    words = list(words) + [undefined << 26, 0]
    test_ppu_rtl.run_and_compare(MINI, words, test_ppu_rtl._scenario(MINI))


def test_ppu_multiplies_that_saturate():
    """``vmulu`` and ``vmul`` whose products leave the lane's range, in 8- and 16-bit
    lanes (the random programs rarely draw such operands for ``vmulu``)."""
    src = "\n".join([
        "addi r1, r0, 200", "vsplat.b v1, r1", "vmulu.b v2, v1, v1, 0",
        "vmul.b v3, v1, v1, 0", "lui r2, 1", "vsplat.h v4, r2",
        "vmulu.h v5, v4, v4, 0", "vmulu.b v6, v1, v1, 8", "halt"])
    words = assemble(src, MINI, imem_words=test_ppu_rtl.IMEM).words
    test_ppu_rtl.run_and_compare(MINI, words, test_ppu_rtl._scenario(MINI))


def test_crossbar_event_counters_saturate_in_every_node_class():
    """20 events through one node of each class (block or external input to a bus
    or a host link), output always ready: each node queues and forwards every
    event, its event counter (4 bits) saturates at 15, nothing is dropped."""
    cfg = MINI.replace(counter_bits=4)
    n_out = cfg.crossbar_outputs
    routes = [(0, 0), (1, cfg.n_buses), (cfg.n_blocks, 1),
              (cfg.n_blocks + 1, cfg.n_buses + 1)]
    config = test_rtl_crossbar._one_to_one_config(cfg, routes)
    stim = []
    for t in range(24):
        s = test_rtl_crossbar._idle(cfg)
        for i, _ in routes:
            s["inputs_valid"][i] = int(t < 20)
            s["inputs_payload"][i] = (5 * t + i) % (1 << cfg.event_label_bits)
        stim.append(s)
    trace, final = test_rtl_crossbar.run_crossbar(cfg, config, stim)
    assert [sum(t["outputs_valid"][o] for t in trace) for _, o in routes] == [20] * 4
    nodes = [i * n_out + o for i, o in routes]
    assert [final["event_count"][n] for n in nodes] == [15] * len(routes)
    assert [final["drop_count"][n] for n in nodes] == [0] * len(routes)


def test_crossbar_broadcast():
    """One event of an input whose nodes to every output are enabled: every node
    takes it, every output forwards it."""
    cfg = MINI
    n_out = cfg.crossbar_outputs
    i = cfg.n_blocks
    config = test_rtl_crossbar._one_to_one_config(cfg, [(i, o) for o in range(n_out)])
    stim = [test_rtl_crossbar._idle(cfg) for _ in range(4)]
    stim[0]["inputs_valid"][i] = 1
    stim[0]["inputs_payload"][i] = 0x2A
    trace, final = test_rtl_crossbar.run_crossbar(cfg, config, stim)
    assert final["event_count"][i * n_out:(i + 1) * n_out] == [1] * n_out
    assert [t["outputs_payload"][o] for o in range(n_out) for t in trace
            if t["outputs_valid"][o]] == [0x2A] * n_out


def test_synapse_rows_one_port_at_a_time():
    """Each row port active alone (a label match on every other column), then
    every port on the same row."""
    cfg = MINI
    c = cfg.columns_per_half
    n_ports = 2 * cfg.buses_per_half
    stim = test_rtl_synapse_memory.two_label_row(cfg)
    for p in range(n_ports):
        rows = [IDLE_ROW] * n_ports
        rows[p] = RowEvent(1, 2, 9)
        stim.append({"rows": rows})
    stim.append({"rows": [RowEvent(1, 2, 4)] * n_ports})
    out = test_rtl_synapse_memory.run(cfg, stim)[c:]
    odd = [col + 1 if col % 2 else 0 for col in range(c)]
    for p in range(n_ports):
        assert out[p]["weights"] == [odd if q == p else [0] * c for q in range(n_ports)]
    even = [0 if col % 2 else col + 1 for col in range(c)]
    assert out[n_ports]["weights"] == [even] * n_ports


def test_playback_every_entry_late_counter_saturates_host_writes_while_playing():
    """A program that fills the playback memory (16 entries, all due at time 1):
    the run's time starts at 2, so all 16 are late, one leaving per cycle, and the
    4-bit late counter stops at 15; the host rewrites a played entry while the
    program plays."""
    cfg = MINI.replace(playback_depth=16, counter_bits=4)
    depth = cfg.playback_depth
    entries = [(k + 1, k % cfg.n_ext_inputs, 1) for k in range(depth)]
    stim = test_rtl_playback._write_entries(cfg, entries, depth)
    t0 = len(stim)
    for t in range(depth + 4):
        s = test_rtl_playback._cycle(cfg, count=depth, time=t + 2)
        if t == 6:
            s.update(host_we=1, host_addr=0,
                     host_wdata=pack_timed_event(cfg, cfg.n_ext_inputs, 99, 0, 0))
        stim.append(s)
    trace = test_rtl_playback.run_playback(cfg, stim)
    released = [label for c, _, label in test_rtl_playback._released(trace, cfg) if c >= t0]
    assert released == [label for label, _, _ in entries]
    assert trace[-1]["late"] == 15 and trace[-1]["done"] == 1
    assert trace[t0 + 6]["done"] == 0


#: values splatted into the lanes of the saturation operands: (name, 8-bit, 16-bit)
_SPLAT = [("max", 0x7F, 0x7FFF), ("ones", -1, -1), ("one", 1, 1), ("two", 2, 2)]
#: per saturating instruction: (operands that saturate, operands in range)
_SATURATE = {"vadds": (("max", "max"), ("one", "one")),
             "vsubs": (("max", "ones"), ("one", "one")),
             "vaddu": (("ones", "one"), ("one", "one")),
             "vsubu": (("one", "two"), ("two", "one")),
             "vmul": (("max", "max"), ("one", "one")),
             "vmulu": (("ones", "ones"), ("one", "one"))}


def every_opcode_program() -> str:
    """A program that executes every instruction of the ISA (``halt`` last): every
    scalar instruction, every branch taken, ``jal`` and ``jalr``, the memory and
    port instructions, every vector-ALU function in 8- and 16-bit lanes, and each
    saturating function once with operands that saturate and once in range."""
    lines = ["addi r1, r0, 7", "addi r2, r0, 3", "lui r3, 1", "ori r3, r3, 5"]
    lines += [f"{i.mnemonic} r4, r1, r2" for i in ISA if i.fmt == "R"]
    lines += [f"{i.mnemonic} r4, r1, 3" for i in ISA if i.fmt == "I"]
    lines += ["lui r5, 2", "csrr r5, cycle", "csrr r5, adc_count", "csrr r5, time",
              "sw r1, 4(r0)", "lw r6, 4(r0)"]
    # every branch taken, over an instruction that would spoil r1
    for mn, a, b in (("beq", "r1", "r1"), ("bne", "r1", "r2"), ("blt", "r2", "r1"),
                     ("bge", "r1", "r2"), ("bltu", "r2", "r1"), ("bgeu", "r1", "r2")):
        lines += [f"{mn} {a}, {b}, t_{mn}", "addi r1, r0, 0", f"t_{mn}:"]
    lines += ["jal r7, t_jal", "addi r1, r0, 0", "t_jal:",
              "jalr r8, t_jalr(r0)", "addi r1, r0, 0", "t_jalr:"]
    # the generic vector operands: v1, v2 from the data memory, v3 a selector
    lines += ["vld v1, 1(r0)", "vld v2, 2(r0)", "vsplat.b v3, r2", "vset.b v3, v3, r0, r0"]
    for ins in ISA:
        if ins.funct is None:
            continue
        for sfx in (".b", ".h"):
            ops = {"V3": "v4, v1, v2", "V3S": "v4, v1, v2, 3", "V2S": "v4, v1, 5",
                   "V4": "v4, v1, v2, v3", "VX": "v4, r3", "VG": "r9, v1, r2",
                   "VP": "v4, v1, r2, r3"}[ins.fmt]
            lines.append(f"{ins.mnemonic}{sfx} {ops}")
    # saturating functions: operands splatted, each lane size on its own registers
    for sfx, col in ((".b", 1), (".h", 2)):
        regs = {}
        for k, (name, *values) in enumerate(_SPLAT):
            regs[name] = f"v{4 + k}"
            lines += [f"addi r10, r0, {values[col - 1]}", f"vsplat{sfx} v{4 + k}, r10"]
        for mn, pairs in _SATURATE.items():
            for a, b in pairs:
                sh = ", 0" if mn.startswith("vmul") else ""
                lines.append(f"{mn}{sfx} v1, {regs[a]}, {regs[b]}{sh}")
    # the memories and ports: data memory, synapse rows, ADC samples, output, resets
    lines += ["vst v2, 3(r0)", "vlw v5, 1(r0)", "vll v6, 1(r0)", "vsw v5, 2(r0)",
              "vsl v6, 2(r0)", "vadc v7, 0(r0)", "vout v2", "vout v1", "vrst v3, 0(r0)",
              "halt"]
    return "\n".join(lines)


def test_ppu_every_opcode():
    """Every instruction executed once at least, saturating functions with
    saturating and in-range operands in both lane sizes; ``out.ready`` low three
    cycles in four, so that the two ``vout`` stall and transfer."""
    src = every_opcode_program()
    imem = test_ppu_rtl.LONG_IMEM
    words = assemble(src, MINI, imem_words=imem).words
    sc = test_ppu_rtl._scenario(MINI, max_cycles=2000)
    sc.ready = [0, 0, 0, 1]
    sim, trace = test_ppu_rtl.run_and_compare(MINI, words, sc, imem_words=imem)
    assert sim.halted and len(sim.stream) == 2
    assert sim.regs[1] == 7, "a branch or jump fell through"
    executed = [decode(r.word) for r in trace]
    assert {d.instr.mnemonic for d in executed} == {i.mnemonic for i in ISA}
    # what each saturating function did, from its operand registers
    seen = set()
    for before, d in zip(trace, executed[1:], strict=False):
        if d.instr.mnemonic in SATURATING:
            seen.add((d.instr.mnemonic, d.size,
                      saturates(d.instr.mnemonic, before.vregs[d.b], before.vregs[d.c],
                                d.size, d.sh, MINI.ppu_vector_bits)))
    assert seen == {(mn, size, sat) for mn in SATURATING for size in (0, 1)
                    for sat in (False, True)}, seen
