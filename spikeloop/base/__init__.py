"""The formats every layer shares, in pure Python (numpy, no Amaranth, no torch).

- :mod:`~spikeloop.base.config`: ChipConfig, a design variant, and its presets;
- :mod:`~spikeloop.base.layouts`: every bit format (events, synapses, timed
  events, host words) with its pack and unpack;
- :mod:`~spikeloop.base.addrmap`: the host bus's address map;
- :mod:`~spikeloop.base.isa`: the PPU's instruction set and geometry;
- :mod:`~spikeloop.base.image`: ConfigImage, everything the host writes;
- :mod:`~spikeloop.base.events`: InputEvents and Observables;
- :mod:`~spikeloop.base.ppu_job`: a PPU program run with a job, and its results;
- :mod:`~spikeloop.base.protocol`: the run protocol every backend follows;
- :mod:`~spikeloop.base.settings`: a command's settings dataclass and its arguments.
"""
