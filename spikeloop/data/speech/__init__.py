"""Spoken digits made on this machine: espeak-ng speech (:mod:`.synth`) through
the cochlea model that made SHD (:mod:`.cochlea`, lauscher's stages vectorised),
written as SHD's HDF5 files (:mod:`.build`); docs/speech.md."""
