"""Why each line of the exported Verilog that the coverage run leaves unexecuted
is unexecuted: the table `python -m spikeloop.verify.codecov` joins to its
uncovered lines (it fails when one has no entry here).

Entries are keyed by the component (Verilog instance path below the top, a glob:
``arbiter*``) and a glob over the line's stable description (see
:func:`spikeloop.verify.codecov.describe`: the signal its process assigns, the
``case`` selector and arm or the ``if`` condition, the first statement; yosys's
numbered nets written ``$``), never by line numbers, which move with every
change of the RTL.  ``kind`` is

- ``unreachable``: no input of the chip can execute the line; ``why`` says why;
- ``untested``: reachable, no test reaches it yet; ``why`` names the stimulus or
  test that should (an accepted gap: the report lists it, the run passes);
- ``reached``: a test reaches it (``why`` names the test); should the line ever
  be left unexecuted, the run fails and names that test.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    component: str      # glob over the instance path below the top ("crossbar", "arbiter*")
    match: str          # glob over the line's description
    kind: str           # "unreachable" | "untested" | "reached"
    why: str


@dataclass(frozen=True)
class ToggleClass:
    name: str
    signal: str         # regular expression over the signal's Verilog name (bit index removed)
    from_bit: int       # bits below it are not in the class
    why: str


FLOOD = "tests/test_cosim_coverage.py::test_flood_every_crossbar_path_and_both_halves"
EVERY_INSTRUCTION = "tests/test_cosim_coverage.py::test_every_ppu_instruction_in_the_top"
REGIONS = "tests/test_cosim_coverage.py::test_every_region_through_the_top"

R = Reason
LINE_REASONS: tuple[Reason, ...] = (
    # crossbar: node (i, o) = input i (blocks, then external links) x output o
    # (buses of half 0, of half 1, then host links)
    R("crossbar", "n*_*_head: case (n*_*_rp) *", "reached",
      f"the node's FIFO presents its second word only after it sent a first one; {FLOOD} "
      "sends at least two events through every node"),
    R("crossbar", "n*_*_w*: case (n*_*_wp) *", "reached",
      f"the node's FIFO stores its first or second word only when the node takes events; "
      f"{FLOOD} routes every event to every node"),
    R("crossbar", "$: case (o*_grant) *", "reached",
      f"the output grants this input only when the node (input, output) is routed; {FLOOD}"),
    R("crossbar", "o*_locked: *", "reached",
      f"a transfer on this output (its grant released); {FLOOD}"),
    R("crossbar", "o*_held: *", "reached", f"a transfer on this output; {FLOOD}"),
    # neuron back end
    R("neurons", "refractory_count*: if (spike_out[*]) *", "reached",
      f"the neuron spikes (half 1's neurons in no scenario); {FLOOD} makes every neuron fire"),
    # host bus: the read-data mux, one arm per region
    R("hostbus", "rdata: case (rd_region) * [*] -> *", "reached",
      f"a host read of the region on the whole chip (the runs read the image's words, the "
      f"counters and the PPU's results only); {REGIONS} reads every region"),
    # PPU: operand multiplexers and the decoder, one arm per register / opcode
    R("ppu", "reg_c: case (ins[17:14]) *", "reached",
      f"the register as the third operand (field c); {EVERY_INSTRUCTION}"),
    R("ppu", "reg_d: case (ins[13:10]) *", "reached",
      f"the register as the fourth operand (field d: vset's value); {EVERY_INSTRUCTION}"),
    R("ppu", "vreg_d: case (ins[12:10]) *", "reached",
      f"the vector register as vsel's selector (field d); {EVERY_INSTRUCTION}"),
    R("ppu", "valu*: case (ins[8:4]) * [*] -> *", "reached",
      f"the vector-ALU function in this lane size; {EVERY_INSTRUCTION}"),
    R("ppu", "s_*: case (ins[31:26]) * [*] -> *", "reached",
      f"the scalar opcode; {EVERY_INSTRUCTION}"),
    R("ppu", "next_pc: end else if (is_jalr) begin -> *", "reached",
      f"a jalr; {EVERY_INSTRUCTION}"),
)

COUNTERS = (r"(event_count|drop_count|xbar_events|xbar_drops|drops|late|overflow|bad_access"
            r"|unmatched|lost|cycles|time|count)")

TOGGLE_CLASSES: tuple[ToggleClass, ...] = (
    ToggleClass(
        "counters' upper bits", COUNTERS, 5,
        "bit k of a counter rises after 2**k counts and falls after 2**(k+1); the runs last "
        "hundreds to a few thousand cycles, so bits 5 and up of the 16- and 32-bit event, "
        "drop, time and cycle counters stay 0 (saturation is tested in amaranth.sim with "
        "4-bit counters and in the mini-tight co-simulation variant)"),
    ToggleClass(
        "generated nets", r"^\$|^port\$",
        0, "yosys's numbered intermediate nets (sums, comparisons, multiplexer outputs, "
           "memory read ports): no state of their own; each is a function of named signals"),
)
