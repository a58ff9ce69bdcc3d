"""What the synapse array hands the analog side: per analog step and neuron
column, the sum of the currents of the synapses the drivers activated.

The digital side (the RTL, its references, the fast backend) decides which
driver is activated in which cycle and with which address; a synapse of one
of the driver's two rows contributes when its label equals the address, its
row's sign choosing the excitatory or inhibitory input. An ideal synapse's
current is its 6-bit weight; with driver and synapse mismatch
(:func:`~spikeloop.model.mismatch.synapse_gain_table`) it is ``weight * gain``
in units of ``2**-WEIGHT_GAIN_BITS`` weight LSB, an integer, so the sums stay
exact integers whatever order they are added in and every backend gets the
same bits (``Chip.lif_params`` divides the neurons' gains by the same power
of two).

- :func:`row_tables`: per (half, driver) and row the weights the analog side
  integrates, the labels and the signs;
- :func:`accumulate`: adds the rows of a list of activations to the sums (the
  fast backend's compiled run inlines it);
- :class:`StepInput`: the sums of each analog step from activations listed
  with their cycle (the reference backend and the co-simulation, whose digital
  side hands the analog model column sums of the *digital* weights: these are
  checked against the same activations' digital sums).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from spikeloop.base.config import ChipConfig
from spikeloop.base.image import ConfigImage
from spikeloop.base.layouts import RowSign


class RowTables(NamedTuple):
    """Per (half * drivers_per_half + driver) and row of the driver (2)."""

    weight: np.ndarray      #: [H * D, 2, C] int32: what a matched synapse adds
    label: np.ndarray       #: [H * D, 2, C] int64
    sign: np.ndarray        #: [H * D, 2] int64: 0 excitatory, 1 inhibitory, -1 off


def row_tables(cfg: ChipConfig, image: ConfigImage, gains: np.ndarray | None = None,
               synapse_weight: np.ndarray | None = None,
               synapse_label: np.ndarray | None = None) -> RowTables:
    """The tables of ``image`` (its ``synapse_weight`` and ``synapse_label``
    unless given, [halves, rows, columns]): the digital weights, or with
    ``gains`` (``Chip.synapse_gains``) weight x gain."""
    H, D, C = cfg.n_halves, cfg.drivers_per_half, cfg.columns_per_half
    w = np.asarray(image.synapse_weight if synapse_weight is None else synapse_weight,
                   dtype=np.int64)
    if gains is not None:
        w = w * np.asarray(gains, dtype=np.int64)
    sign = np.asarray(image.row_sign).reshape(H * D, 2)
    return RowTables(
        np.ascontiguousarray(w.reshape(H * D, 2, C), dtype=np.int32),
        np.ascontiguousarray(np.asarray(image.synapse_label if synapse_label is None
                                        else synapse_label).reshape(H * D, 2, C),
                             dtype=np.int64),
        np.where(sign == RowSign.EXC, 0, np.where(sign == RowSign.INH, 1, -1)).astype(np.int64))


@numba.njit(cache=True, nogil=True)
def accumulate(acts, drivers_per_half, row_weight, row_label, row_sign, acc):
    """Add the synapse weights of ``acts`` rows (sample, half, driver, address)
    to ``acc`` [2 (exc, inh), B, halves, columns]: both rows of the driver, the
    synapses whose label is the address, by the row's sign (``row_sign``
    [halves * drivers, 2]: 0 exc, 1 inh, -1 off; ``row_weight``, ``row_label``
    [halves * drivers, 2, columns]: :func:`row_tables`)."""
    accumulate_first(acts, len(acts), drivers_per_half, row_weight, row_label, row_sign, acc)


@numba.njit(cache=True, nogil=True, inline="always")
def accumulate_first(acts, k, drivers_per_half, row_weight, row_label, row_sign, acc):
    """:func:`accumulate` of the first ``k`` rows of ``acts``."""
    C = acc.shape[3]
    for m in range(k):
        b, h, address = acts[m, 0], acts[m, 1], acts[m, 3]
        hd = h * drivers_per_half + acts[m, 2]
        for r in range(2):
            s = row_sign[hd, r]
            if s < 0:
                continue
            dst = acc[s, b, h]
            lab = row_label[hd, r]
            wt = row_weight[hd, r]
            for c in range(C):      # (a select, not a branch: vectorised)
                w = wt[c]
                dst[c] += w if lab[c] == address else 0


class StepInput:
    """The synapse sums of one sample's analog steps from its driver activations.

    ``step(activations, k)``: the activations are ``(cycle, half, driver,
    label)`` in cycle order, counted from running cycle 0 (the reference's
    ``row_events``, the co-simulation's row-activity monitor; the address is
    the label's low ``label_bits``); step ``k`` takes those of cycles
    ``[k S, (k + 1) S)``, the window whose sums the analog boundary shows at
    cycle ``(k + 1) S`` (the fast backend's windows). It returns the
    excitatory and inhibitory sums the analog model integrates and the digital
    weights' sums of the same activations, which must equal the digital side's
    own column sums."""

    def __init__(self, cfg: ChipConfig, image: ConfigImage, gains: np.ndarray | None,
                 synapse_weight: np.ndarray | None = None,
                 synapse_label: np.ndarray | None = None):
        self.cfg = cfg
        self.S = cfg.analog_step_cycles
        self.D = cfg.drivers_per_half
        self.addr_mask = (1 << cfg.label_bits) - 1
        self.digital = row_tables(cfg, image, None, synapse_weight, synapse_label)
        self.analog = row_tables(cfg, image, gains, synapse_weight, synapse_label)
        self.shape = (2, 1, cfg.n_halves, cfg.columns_per_half)
        self.reset()

    def reset(self) -> None:
        """A new sample: its activations are listed from the start."""
        self._next = 0

    def step(self, activations, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(analog sums, digital sums) of step ``k``, each int64 [2 (exc, inh), n]."""
        lo, hi = k * self.S, (k + 1) * self.S
        i = self._next
        while i < len(activations) and activations[i][0] < lo:
            i += 1
        j = i
        while j < len(activations) and activations[j][0] < hi:
            j += 1
        self._next = j
        acts = np.zeros((j - i, 4), dtype=np.int64)
        if j > i:
            acts[:, 1:] = np.asarray(activations[i:j], dtype=np.int64)[:, 1:]
            acts[:, 3] &= self.addr_mask
        out = []
        for t in (self.analog, self.digital):
            acc = np.zeros(self.shape, dtype=np.int64)
            accumulate(acts, self.D, t.weight, t.label, t.sign, acc)
            out.append(acc.reshape(2, -1))
        return out[0], out[1]
