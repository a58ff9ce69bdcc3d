"""Training front end: functional core (:mod:`.functional`) and thin modules (:mod:`.modules`).

Time-major ``[T, B, N]`` layout; software-only mode for now (no chip in the loop).
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
from spikeloop.nn.modules import LI, LIF, NetworkOutput, SoftwareNetwork, Synapse

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
    "LI",
    "LIF",
    "NetworkOutput",
    "SoftwareNetwork",
    "Synapse",
]
