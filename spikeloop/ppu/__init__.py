"""Tools for the plasticity processor (PPU): assembler, programs, on-chip
learning, and the generated tables of docs/ppu.md.  The core is rtl/ppu.py, its
references model/ppu_sim.py and model/digital/ppu.py, its instruction set
spikeloop/base/isa.py."""
