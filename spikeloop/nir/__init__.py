"""NIR (the Neuromorphic Intermediate Representation) import and export (docs/nir.md).

    from spikeloop.nir import from_nir, to_nir, read_graph
    net = from_nir(read_graph("net.nir"), chip)     # placed on the chip, trainable in the loop
    nir.write("out.nir", to_nir(net))
"""
from spikeloop.nir.convert import (
    DEFAULT_DT_S,
    SUPPORTED,
    NirError,
    from_nir,
    quantisation_report,
    read_graph,
    spec_from_nir,
    spec_of,
    to_nir,
)
from spikeloop.nir.network import GraphChipNetwork, GraphNetwork
from spikeloop.nir.spec import INPUT, GraphSpec, Link, Population

__all__ = ["DEFAULT_DT_S", "SUPPORTED", "NirError", "from_nir", "quantisation_report",
           "read_graph", "spec_from_nir", "spec_of", "to_nir", "GraphChipNetwork",
           "GraphNetwork", "INPUT", "GraphSpec", "Link", "Population"]
