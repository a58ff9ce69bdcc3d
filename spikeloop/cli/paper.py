"""``spikeloop experiment paper``: the experiment of spikeloop.experiments.paper with the
energy model of ``spikeloop explore`` (spikeloop/explore/energy.py and its table).

The energy of inference mode is that model's: counts of what the runs did (from
their Observables), times the table's energy per action, plus the static power of
the variant's transistor estimate (the area estimate, cached) over the chip time;
the configuration words are written once for the whole test set.
"""
from __future__ import annotations

from spikeloop.base.config import ChipConfig
from spikeloop.experiments.paper import PaperError, PaperSettings, run_paper
from spikeloop.explore.area import area_metrics
from spikeloop.explore.energy import EnergyTable, activity, add_counts, per_image_metrics


class InferenceEnergy:
    """``energy(cfg, observables, input_events, n_images, us_per_image, config_writes)``
    of :func:`~spikeloop.experiments.paper.run_paper`, from the energy table ``table``."""

    def __init__(self, table: EnergyTable, log=print):
        self.table, self.log = table, log
        self._transistors: dict[str, float] = {}

    def transistors(self, cfg: ChipConfig) -> float:
        if self.table.watts_per_transistor == 0:
            return 0.0
        if cfg.name not in self._transistors:
            self.log(f"energy: the transistor estimate of preset {cfg.name} (area estimate; "
                     "synthesised once, then cached)")
            self._transistors[cfg.name] = float(area_metrics(cfg)["area.transistors_total"])
        return self._transistors[cfg.name]

    def __call__(self, cfg: ChipConfig, observables, input_events, n_images: int,
                 us_per_image: float, config_writes: int) -> dict:
        counts: dict = {}
        for obs, n_ev in zip(observables, input_events, strict=True):
            add_counts(counts, activity(obs, cfg, n_ev))
        counts["config_write"] = counts.get("config_write", 0) + int(config_writes)
        n_tr = self.transistors(cfg)
        res = per_image_metrics(counts, n_images, us_per_image, n_tr, self.table)
        res["transistors"] = n_tr
        res["energy_table"] = self.table.path
        return res


def run(s: PaperSettings) -> dict:
    """Check the settings and the energy table, then run the experiment."""
    s.resolved().check()
    energy = InferenceEnergy(EnergyTable.load(s.energy_table)) if s.energy else None
    return run_paper(s, energy=energy)


__all__ = ["InferenceEnergy", "PaperError", "PaperSettings", "run"]
