"""Training front end: functional core (:mod:`.functional`) and thin modules (:mod:`.modules`).

Time-major ``[T, B, N]`` layout.  :class:`SoftwareNetwork` runs the ideal model;
:class:`spikeloop.nn.chip_network.ChipNetwork` runs the forward pass on an emulated chip.
"""
from spikeloop.nn import functional
from spikeloop.nn.functional import (
    DEFAULT_PARAMS,
    Inject,
    LIFParameters,
    LIFState,
    LIState,
    SuperSpike,
    inject,
    li_sequence,
    li_step,
    lif_sequence,
    lif_step,
    max_over_time_log_softmax,
    spike_count_regularizer,
    superspike,
    weight_regularizer,
)
from spikeloop.nn.modules import (
    HIDDEN_SCALE,
    LI,
    LIF,
    WEIGHT_MAX,
    LoopNetwork,
    NetworkOutput,
    SoftwareNetwork,
    Synapse,
)

__all__ = [
    "functional",
    "DEFAULT_PARAMS",
    "Inject",
    "LIFParameters",
    "LIFState",
    "LIState",
    "SuperSpike",
    "inject",
    "li_sequence",
    "li_step",
    "lif_sequence",
    "lif_step",
    "max_over_time_log_softmax",
    "spike_count_regularizer",
    "superspike",
    "weight_regularizer",
    "HIDDEN_SCALE",
    "WEIGHT_MAX",
    "LoopNetwork",
    "LI",
    "LIF",
    "NetworkOutput",
    "SoftwareNetwork",
    "Synapse",
]
