"""Transaction-level, cycle-accurate references of every digital block (see docs/rtl.md)."""
