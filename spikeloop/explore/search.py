"""Multi-objective search over a sweep's space with Optuna (NSGA-II):
``spikeloop explore SPEC --search optuna --trials N --objectives
mnist.energy_per_image_j:min,mnist.accuracy:max``.

The space is the values the spec's variants take per field.  Trials are asked
in batches of ``workers``, each trial a variant whose points (every workload and
seed of the spec) run through the same sweep machinery and cache as a grid, so
a trial met before costs nothing.  An objective is the mean over seeds of a
metric; a variant that is invalid or does not fit is a failed trial.  The
sampler is seeded: the same spec and seed ask the same trials.
"""
from __future__ import annotations

import dataclasses

from spikeloop.explore.spec import Spec, make_variant
from spikeloop.explore.sweep import OK, Sweep, qualified

DIRECTIONS = {"min": "minimize", "max": "maximize"}


def parse_objectives(text: str) -> list[tuple[str, str]]:
    """``"a:min,b:max"`` -> ``[("a", "min"), ("b", "max")]``; refused: one line."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        name, _, d = part.partition(":")
        if not name or d not in DIRECTIONS:
            raise ValueError(f"objectives = {text!r}: each is METRIC:min or METRIC:max, "
                             "comma-separated (e.g. mnist.energy_per_image_j:min,"
                             "mnist.accuracy:max)")
        out.append((name, d))
    return out


def _value(rows: list[dict], metric: str) -> float | None:
    vals = [qualified(r).get(metric) for r in rows if r.get("status") == OK]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def search(sweep: Sweep, trials: int, objectives: list[tuple[str, str]], seed: int = 0) -> list:
    """Run the search; returns ``[(changes, values or None)]`` per trial."""
    import optuna  # optional extra: only a search needs it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec: Spec = sweep.spec
    space = spec.space()
    if not space:
        raise ValueError(f"{spec.path}: --search needs axes or variants with at least one field "
                         "that varies")
    study = optuna.create_study(directions=[DIRECTIONS[d] for _, d in objectives],
                                sampler=optuna.samplers.NSGAIISampler(seed=seed))
    history = []
    batch = max(sweep.workers, 1)
    done = 0
    while done < trials:
        asked = [study.ask() for _ in range(min(batch, trials - done))]
        changes = [{f: t.suggest_categorical(f, vals) for f, vals in space.items()}
                   for t in asked]
        variants = tuple(make_variant(spec.base, {k: v for k, v in c.items()
                                                  if getattr(spec.base, k) != v})
                         for c in changes)
        unique = tuple({v.label: v for v in variants}.values())
        sub = dataclasses.replace(sweep, spec=dataclasses.replace(spec, variants=unique))
        rows = sub.run()
        for t, c, v in zip(asked, changes, variants, strict=True):
            mine = [r for r in rows if r["variant"] == v.label]
            values = [_value(mine, m) for m, _ in objectives]
            if any(x is None for x in values):
                missing = [m for (m, _), x in zip(objectives, values, strict=True) if x is None]
                if done == 0 and all(r.get("status") == OK for r in mine):
                    raise ValueError(f"objective {missing[0]!r} is not a metric of the spec's "
                                     "workloads; see the columns of results.csv")
                study.tell(t, state=optuna.trial.TrialState.FAIL)
                history.append((c, None))
            else:
                study.tell(t, values)
                history.append((c, values))
        done += len(asked)
    return history
