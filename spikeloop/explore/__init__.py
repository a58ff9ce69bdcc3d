"""Design-space exploration of chip variants: what a variant costs (area,
energy, speed) and what it buys (accuracy, events carried without loss).

``spikeloop explore SPEC.toml --out DIR`` runs a sweep (:mod:`.spec`,
:mod:`.sweep`, :mod:`.workloads`, :mod:`.energy`); ``spikeloop explore report
DIR`` draws its report (:mod:`.report`); docs/explore.md says how to read it.
"""
