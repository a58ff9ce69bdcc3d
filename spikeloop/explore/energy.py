"""Energy and power from what a run did: counts of actions x energy per action,
plus static power that scales with the variant's transistor estimate.

The counts come from the Observables alone (:func:`activity`), so every backend
gives the same counts for the same run (the emulation contract).  The energy
per action and the static power per transistor are a table
(``energy.toml`` beside this module; a user's own file with ``--energy``):
which figures are assumed and which derived is said in that file and in
docs/explore.md.

``python -m spikeloop.explore.energy derive`` recomputes the derived static
power from the FULL preset running the paper's MNIST network in inference mode
and prints every figure it used.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np

from spikeloop.base.config import ChipConfig
from spikeloop.base.events import Observables

DEFAULT_TABLE = Path(__file__).with_name("energy.toml")
#: the actions of the table, in the order reports list them
ACTIONS = ("host_event_in", "host_event_out", "arbiter_grant", "crossbar_write", "bus_event",
           "row_activation", "synapse_read", "neuron_spike", "adc_conversion", "ppu_cycle",
           "config_write")
#: the paper's figures the default table is derived from (docs/paper.md)
PAPER_ENERGY_PER_IMAGE_J = 2.4e-6
PAPER_US_PER_IMAGE = 11.8


class EnergyTableError(ValueError):
    """An energy table that cannot be used; names the file and the key."""


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    #: action -> picojoules
    dynamic_pj: dict
    watts_per_transistor: float
    path: str = ""

    @classmethod
    def load(cls, path=None) -> EnergyTable:
        path = Path(path) if path is not None else DEFAULT_TABLE
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise EnergyTableError(f"{path}: no such energy table") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise EnergyTableError(f"{path}: not a readable TOML energy table ({e})") from None
        dyn = raw.get("dynamic_pj")
        if not isinstance(dyn, dict):
            raise EnergyTableError(f"{path}: a [dynamic_pj] table is missing")
        for k, v in dyn.items():
            if k not in ACTIONS:
                raise EnergyTableError(f"{path}: dynamic_pj.{k}: unknown action; allowed: "
                                       + ", ".join(ACTIONS))
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise EnergyTableError(f"{path}: dynamic_pj.{k} = {v!r}; allowed: a number >= 0")
        missing = [a for a in ACTIONS if a not in dyn]
        if missing:
            raise EnergyTableError(f"{path}: dynamic_pj lacks {', '.join(missing)}")
        w = raw.get("static", {}).get("watts_per_transistor")
        if not isinstance(w, int | float) or isinstance(w, bool) or w < 0:
            raise EnergyTableError(f"{path}: static.watts_per_transistor = {w!r}; "
                                   "allowed: a number >= 0")
        return cls({a: float(dyn[a]) for a in ACTIONS}, float(w), str(path))


def activity(obs: Observables, cfg: ChipConfig, n_input_events: int,
             config_writes: int = 0) -> dict[str, int]:
    """Counts of every action of :data:`ACTIONS` in a run, from its Observables.

    ``n_input_events``: the events the host played (the InputEvents' rows);
    ``config_writes``: configuration words written for it (0 when the chip was
    configured once for many runs; add them where they are spent).

    - a spike takes its block's arbiter unless the arbiter dropped it;
    - crossbar writes are the events the nodes took (``xbar_events``);
    - bus events are the events the nodes towards the buses took (the first
      ``n_buses`` outputs);
    - row activations are the synapse drivers' activations
      (``row_activations``): a bus event activates the row pair of every
      driver of its bus that it matches, one per cycle, so an event several
      drivers match counts once per driver; one no driver matched
      (``driver_unmatched``) activates none;
    - an activated row reads the synapses of its half (``columns_per_half``);
    - ADC conversions: every neuron for every sample taken (``adc_count``);
    - PPU cycles: the cycles of every PPU run the host read back.
    """
    spikes = int(len(obs.spikes))
    bus = int(obs.xbar_events[:, :, :cfg.n_buses].sum())
    rows = int(obs.row_activations.sum())
    ppu = sum(int(r.get("cycles", 0)) for r in (obs.ppu or []))
    played = max(int(n_input_events) - int(obs.playback_late.sum()), 0)
    return {
        "host_event_in": played,
        "host_event_out": int(len(obs.records)),
        "arbiter_grant": max(spikes - int(obs.arbiter_drops.sum()), 0),
        "crossbar_write": int(obs.xbar_events.sum()),
        "bus_event": bus,
        "row_activation": rows,
        "synapse_read": rows * cfg.columns_per_half,
        "neuron_spike": spikes,
        "adc_conversion": int(obs.adc_count.sum()) * cfg.n_neurons,
        "ppu_cycle": ppu,
        "config_write": int(config_writes),
    }


def add_counts(total: dict, counts: dict) -> dict:
    for k, v in counts.items():
        total[k] = total.get(k, 0) + v
    return total


def energy(counts: dict, seconds: float, transistors: float, table: EnergyTable) -> dict:
    """Joules per action, dynamic, static (``seconds`` of chip time at the
    variant's static power) and total; average power over ``seconds``."""
    dyn = {a: counts.get(a, 0) * table.dynamic_pj[a] * 1e-12 for a in ACTIONS}
    static_w = transistors * table.watts_per_transistor
    e_dyn = float(sum(dyn.values()))
    e_static = static_w * seconds
    total = e_dyn + e_static
    return {"dynamic_j": e_dyn, "static_j": e_static, "total_j": total,
            "static_w": static_w, "power_w": total / seconds if seconds > 0 else float("nan"),
            "per_action_j": dyn}


def per_image_metrics(counts: dict, n_images: int, us_per_image: float, transistors: float,
                      table: EnergyTable) -> dict:
    """The energy metrics every workload reports: energy per image (J), average
    power (W), its dynamic and static parts, and the dynamic energy per action
    per image (``energy.<action>_j``)."""
    per = {k: v / n_images for k, v in counts.items()}
    e = energy(per, us_per_image * 1e-6, transistors, table)
    out = {"energy_per_image_j": e["total_j"], "power_w": e["power_w"],
           "energy.dynamic_per_image_j": e["dynamic_j"],
           "energy.static_per_image_j": e["static_j"], "energy.static_w": e["static_w"]}
    out.update({f"energy.{a}_j": float(v) for a, v in e["per_action_j"].items()})
    out.update({f"count.{a}_per_image": float(v) for a, v in per.items()})
    return out


def derive_static(dynamic_per_image_j: float, transistors: float,
                  us_per_image: float = PAPER_US_PER_IMAGE,
                  target_j: float = PAPER_ENERGY_PER_IMAGE_J) -> float:
    """Watts per transistor that make ``dynamic + static`` = ``target_j`` per image."""
    if dynamic_per_image_j >= target_j:
        raise ValueError(f"the dynamic energy alone ({dynamic_per_image_j:.3g} J) reaches the "
                         f"target {target_j:.3g} J: lower the assumed per-action energies")
    return (target_j - dynamic_per_image_j) / (us_per_image * 1e-6) / transistors


def as_array(counts: dict) -> np.ndarray:
    return np.array([counts.get(a, 0) for a in ACTIONS], dtype=np.int64)
