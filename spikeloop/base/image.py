"""ConfigImage: everything the host writes into the chip.

Both backends consume the same image; a placement produces one.  Arrays are
numpy integer arrays; an image is saved as ``.npz`` (readable with numpy alone:
one array per field, plus ``chip_config`` as a JSON string).

Fields (``H`` halves, ``R`` rows and ``D = R/2`` drivers per half, ``C``
columns per half, ``n`` neurons, ``I``/``O`` crossbar inputs/outputs):

============================ ============ ==========================================
field                        shape        meaning
============================ ============ ==========================================
``synapse_weight``           [H, R, C]    6-bit weight of each synapse
``synapse_label``            [H, R, C]    6-bit label (address) each synapse matches
``driver_select``            [H, D]       row-select value of each synapse driver
``driver_mask``              [H, D]       row-select compare mask of each driver
``row_sign``                 [H, R]       RowSign of each row (0 off, 1 exc, 2 inh)
``neuron_enable``            [n]          neuron sends events when it spikes
``neuron_label``             [n]          event label of its spikes
``neuron_merge``             [C] (H = 2)  column c of both halves is one neuron (analog)
``refractory``               [n]          refractory period in prescaler ticks
``refractory_prescale``      []           ticks every 2**k cycles
``xbar_enable``              [I, O]       crossbar node enabled
``xbar_mask``, ``xbar_target`` [I, O]     node forwards when (label & mask) == target
``adc_period``               []           ADC sampling period in cycles (0: off)
``analog_settings``          [n, 8]       10-bit analog settings per neuron
============================ ============ ==========================================
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from spikeloop.base.addrmap import AddressMap
from spikeloop.base.config import ChipConfig, ConfigError
from spikeloop.base.files import FileError, atomic_savez, field_json, load_npz
from spikeloop.base.layouts import pack_synapse

#: RowSign values a row may take (0 off, 1 excitatory, 2 inhibitory); 3 is unused
ROW_SIGN_MAX = 2


class ImageError(ValueError):
    """A ConfigImage field has the wrong shape or an out-of-range value."""


class ImageFileError(ImageError, FileError):
    """A ConfigImage file cannot be read; the message names the file."""


def _fields(cfg: ChipConfig) -> dict[str, tuple[tuple[int, ...], int]]:
    """field -> (shape, bits)."""
    H, R, C, n = cfg.n_halves, cfg.rows_per_half, cfg.columns_per_half, cfg.n_neurons
    D, I, O = cfg.drivers_per_half, cfg.crossbar_inputs, cfg.crossbar_outputs
    return {
        "synapse_weight": ((H, R, C), cfg.weight_bits),
        "synapse_label": ((H, R, C), cfg.label_bits),
        "driver_select": ((H, D), cfg.row_select_bits),
        "driver_mask": ((H, D), cfg.row_select_bits),
        "row_sign": ((H, R), 2),
        "neuron_enable": ((n,), 1),
        "neuron_label": ((n,), cfg.event_label_bits),
        "neuron_merge": ((C * (H - 1),), 1),
        "refractory": ((n,), cfg.refractory_bits),
        "refractory_prescale": ((), cfg.refractory_prescale_bits),
        "xbar_enable": ((I, O), 1),
        "xbar_mask": ((I, O), cfg.event_label_bits),
        "xbar_target": ((I, O), cfg.event_label_bits),
        "adc_period": ((), cfg.adc_period_bits),
        "analog_settings": ((n, cfg.analog_settings_per_neuron), cfg.analog_setting_bits),
    }


#: ConfigImage field -> address map region (flattened in C order)
REGION_OF = {
    "driver_select": "driver_select",
    "driver_mask": "driver_mask",
    "row_sign": "row_sign",
    "neuron_enable": "neuron_enable",
    "neuron_label": "neuron_label",
    "neuron_merge": "neuron_merge",
    "refractory": "refractory",
    "refractory_prescale": "refractory_prescale",
    "xbar_enable": "xbar_enable",
    "xbar_mask": "xbar_mask",
    "xbar_target": "xbar_target",
    "adc_period": "adc_period",
    "analog_settings": "analog_settings",
}


@dataclass
class ConfigImage:
    cfg: ChipConfig
    synapse_weight: np.ndarray
    synapse_label: np.ndarray
    driver_select: np.ndarray
    driver_mask: np.ndarray
    row_sign: np.ndarray
    neuron_enable: np.ndarray
    neuron_label: np.ndarray
    neuron_merge: np.ndarray
    refractory: np.ndarray
    refractory_prescale: np.ndarray
    xbar_enable: np.ndarray
    xbar_mask: np.ndarray
    xbar_target: np.ndarray
    adc_period: np.ndarray
    analog_settings: np.ndarray

    def __post_init__(self):
        for name, (shape, bits) in _fields(self.cfg).items():
            value = np.asarray(getattr(self, name))
            if value.shape != shape:
                raise ImageError(f"ConfigImage.{name} has shape {value.shape}; "
                                 f"preset {self.cfg.name} needs {shape}")
            if not np.issubdtype(value.dtype, np.integer) and value.dtype != bool:
                raise ImageError(f"ConfigImage.{name} must hold integers, got {value.dtype}")
            value = value.astype(np.int64)
            hi = ROW_SIGN_MAX if name == "row_sign" else (1 << bits) - 1
            if value.size and (value.min() < 0 or value.max() > hi):
                bad = np.argwhere((value < 0) | (value > hi))[0]
                raise ImageError(
                    f"ConfigImage.{name}{[int(i) for i in bad] if value.ndim else ''} = "
                    f"{value[tuple(bad)] if value.ndim else int(value)} is out of range; "
                    f"allowed: 0..{hi}")
            setattr(self, name, value)

    @classmethod
    def empty(cls, cfg: ChipConfig) -> ConfigImage:
        """All zeros: no synapse, no route, every neuron disabled."""
        return cls(cfg, **{name: np.zeros(shape, np.int64)
                           for name, (shape, _) in _fields(cfg).items()})

    @classmethod
    def random(cls, cfg: ChipConfig, rng: np.random.Generator) -> ConfigImage:
        """Every setting drawn uniformly over its whole range (row signs over
        the three RowSign values): for tests of the configuration path."""
        fields = {name: rng.integers(0, 1 << bits, size=shape)
                  for name, (shape, bits) in _fields(cfg).items()}
        fields["row_sign"] %= 3
        return cls(cfg, **fields)

    def copy(self) -> ConfigImage:
        return dataclasses.replace(self, **{f: getattr(self, f).copy()
                                            for f in _fields(self.cfg)})

    def __eq__(self, other) -> bool:
        return (isinstance(other, ConfigImage) and self.cfg == other.cfg and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in _fields(self.cfg)))

    # -- files ----------------------------------------------------------------
    def save(self, path) -> None:
        """Write the image to exactly ``path`` (atomically; no suffix added)."""
        arrays = {f: getattr(self, f) for f in _fields(self.cfg)}
        atomic_savez(path, chip_config=np.array(self.cfg.to_json()), **arrays)

    @classmethod
    def load(cls, path, cfg: ChipConfig | None = None) -> ConfigImage:
        """The image in ``path``.  Its ``chip_config`` must equal ``cfg`` (the whole
        configuration, not only its name); a file without one (written by hand)
        is taken to be for ``cfg``.  Any fault is an :class:`ImageError` naming
        the file, the field and what is allowed."""
        z = load_npz(path, "a ConfigImage .npz")
        try:
            stored = file_config(z, path, cfg)
            # files written before neuron merging existed: no pair merged
            defaults = {"neuron_merge": np.zeros(_fields(stored)["neuron_merge"][0], np.int64)}
            missing = [f for f in _fields(stored) if f not in z and f not in defaults]
            if missing:
                raise ImageError(f"lacks the field(s) {', '.join(missing)}")
            return cls(stored, **{f: z[f] if f in z else defaults[f] for f in _fields(stored)})
        except (ImageError, FileError, ConfigError) as e:
            msg = str(e)
            raise ImageFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") \
                from None

    # -- the host bus ------------------------------------------------------------
    def bus_writes(self) -> list[tuple[int, int]]:
        """(word address, value) of every host write that configures the chip
        with this image, in address-map order (synapses last)."""
        amap = AddressMap(self.cfg)
        writes = []
        for field, region in REGION_OF.items():
            if not np.size(getattr(self, field)):
                continue                       # e.g. neuron_merge on a one-half chip
            r = amap[region]
            for i, v in enumerate(np.asarray(getattr(self, field)).reshape(-1)):
                writes.append((r.address(i), int(v)))
        for h in range(self.cfg.n_halves):
            r = amap[f"synapses{h}"]
            words = pack_synapse(self.cfg, self.synapse_weight[h], self.synapse_label[h])
            for i, v in enumerate(np.asarray(words).reshape(-1)):
                writes.append((r.address(i), int(v)))
        return writes


def file_config(z: dict, path, cfg: ChipConfig | None) -> ChipConfig:
    """The ChipConfig a file (image, events) was written for: its ``chip_config``,
    checked against ``cfg`` field by field; ``cfg`` itself for a file without one."""
    if "chip_config" not in z:
        if cfg is None:
            raise FileError(f"{path}: no chip_config field (the file's design variant); "
                            "name the preset it is for")
        return cfg
    stored = ChipConfig.from_dict(field_json(z, "chip_config", path))
    if cfg is not None and cfg != stored:
        diff = [f"{k} {v} (the run: {cfg.to_dict()[k]})" for k, v in stored.to_dict().items()
                if cfg.to_dict()[k] != v and k != "name"]
        raise FileError(f"{path}: made for chip config {stored.name!r}, not for "
                        f"{cfg.name!r}" + (f": {', '.join(diff[:4])}"
                                           + (" ..." if len(diff) > 4 else "") if diff else
                                           " (same fields, another name)"))
    return stored
