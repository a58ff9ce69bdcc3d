"""A sweep's specification: a TOML file, read with the standard library.

::

    name = "fifo-buses-step"          # optional; names the report
    base = "full"                     # a preset (spikeloop config --preset ...)
    seeds = [1]                       # chip seeds; each point runs once per seed

    [axes]                            # a grid: every combination of these values
    crossbar_fifo_depth = [2, 4, 8]
    buses_per_half = [2, 4]

    # or, instead of [axes], an explicit list of variants:
    # variants = [{crossbar_fifo_depth = 2}, {crossbar_fifo_depth = 8, buses_per_half = 2}]

    [workloads.area]                  # a workload and its parameters (all optional)
    [workloads.routing]
    rates = [0.02, 0.05, 0.1, 0.2]

    [[constraints]]                   # optional: a variant failing one is not run
    metric = "area.cells_total"       # further; its rows say why
    max = 2_000_000

Every ChipConfig field but ``name`` can be an axis; the base preset itself is
always a point (the report highlights it).  Errors name the file, the line and
the field, and say what is allowed, before any point runs.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
from pathlib import Path

from spikeloop.base.config import PRESETS, ChipConfig, ConfigError

#: the top-level keys of a spec
KEYS = ("name", "base", "seeds", "axes", "variants", "workloads", "constraints")
#: the keys of a constraint
CONSTRAINT_KEYS = ("metric", "min", "max")


class SpecError(ValueError):
    """A spec file that cannot be run; the message names the file, line and field."""


@dataclasses.dataclass(frozen=True)
class Constraint:
    metric: str
    min: float | None = None
    max: float | None = None

    def violated_by(self, value) -> str | None:
        """Why ``value`` violates this constraint, or None."""
        if not isinstance(value, int | float):
            return None
        if self.min is not None and value < self.min:
            return f"{self.metric} = {value:g} below {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{self.metric} = {value:g} above {self.max:g}"
        return None


@dataclasses.dataclass(frozen=True)
class Variant:
    """One design variant: the base preset with ``changes``; ``error`` when the
    combination is not a valid ChipConfig (its rows say why)."""

    changes: tuple[tuple[str, int], ...]
    cfg: ChipConfig | None
    error: str = ""

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.changes) or "base"


@dataclasses.dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    base: ChipConfig
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    #: workload name -> its parameters (validated, defaults filled in)
    workloads: dict
    constraints: tuple[Constraint, ...]
    #: the axes of a grid (field -> values); for an explicit list, the fields it varies
    axes: dict

    def space(self) -> dict[str, list[int]]:
        """Field -> the values the axes (or the listed variants) give it, and the
        base's own: the search space of ``--search``."""
        return {f: sorted(set(values) | {getattr(self.base, f)})
                for f, values in self.axes.items()}


def _line_of(text: str, key: str, after: int = 0) -> int:
    """The 1-based line where ``key`` is first assigned or opened (0: not found)."""
    pat = re.compile(rf"^\s*(\[+\s*)?[\w.\"]*\b{re.escape(key)}\b")
    for i, line in enumerate(text.splitlines()[after:], start=after + 1):
        if pat.search(line):
            return i
    return 0


def _where(path: Path, text: str, key: str) -> str:
    line = _line_of(text, key)
    return f"{path}:{line}" if line else str(path)


def _fields() -> list[str]:
    return [f.name for f in dataclasses.fields(ChipConfig) if f.name != "name"]


def load(path, workloads: dict) -> Spec:
    """Read and check the spec at ``path``.  ``workloads``: name -> parameter
    checker (:data:`spikeloop.explore.workloads.WORKLOADS`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot be read as a text file ({e})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    return parse(raw, path, text, workloads)


def parse(raw: dict, path: Path, text: str, workloads: dict) -> Spec:
    def fail(key: str, msg: str):
        raise SpecError(f"{_where(path, text, key)}: {msg}")

    for k in raw:
        if k not in KEYS:
            fail(k, f"unknown key {k!r}; allowed: {', '.join(KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        fail("name", "name must be a non-empty string")
    base_name = raw.get("base")
    if base_name not in PRESETS:
        fail("base", f"base = {base_name!r}; allowed: {', '.join(sorted(PRESETS))}")
    base = PRESETS[base_name]
    seeds = raw.get("seeds", [1])
    if (not isinstance(seeds, list) or not seeds
            or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds)):
        fail("seeds", f"seeds = {seeds!r}; allowed: a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        fail("seeds", f"seeds = {seeds!r} repeats a seed")
    axes, variants = _variants(raw, base, fail)
    wl = raw.get("workloads")
    if not isinstance(wl, dict) or not wl:
        fail("workloads", "workloads: at least one [workloads.NAME] table; allowed names: "
             + ", ".join(workloads))
    checked = {}
    for wname, params in wl.items():
        if wname not in workloads:
            fail(wname, f"unknown workload {wname!r}; allowed: {', '.join(workloads)}")
        if not isinstance(params, dict):
            fail(wname, f"workloads.{wname} must be a table of parameters")
        try:
            checked[wname] = workloads[wname].check(params, base)
        except ValueError as e:
            key = next((k for k in params if k in str(e)), wname)
            fail(key, f"workloads.{wname}: {e}")
    constraints = []
    for c in raw.get("constraints", []):
        if not isinstance(c, dict):
            fail("constraints", "each [[constraints]] is a table: metric, min and/or max")
        for k in c:
            if k not in CONSTRAINT_KEYS:
                fail(k, f"unknown constraint key {k!r}; allowed: {', '.join(CONSTRAINT_KEYS)}")
        if not isinstance(c.get("metric"), str) or ("min" not in c and "max" not in c):
            fail("metric", "a constraint names a metric (string) and a min and/or a max")
        for k in ("min", "max"):
            if k in c and (not isinstance(c[k], int | float) or isinstance(c[k], bool)):
                fail(k, f"constraint {k} = {c[k]!r}; allowed: a number")
        constraints.append(Constraint(c["metric"], c.get("min"), c.get("max")))
    return Spec(path=path, name=name, base=base, seeds=tuple(seeds), variants=variants,
                workloads=checked, constraints=tuple(constraints), axes=axes)


def make_variant(base: ChipConfig, changes: dict) -> Variant:
    """The variant of ``base`` with ``changes`` (a field -> value dict); its name
    is the base's with the changes (``full[crossbar_fifo_depth=2]``)."""
    items = tuple(sorted(changes.items()))
    label = ",".join(f"{k}={v}" for k, v in items)
    name = f"{base.name}[{label}]" if label else base.name
    try:
        return Variant(items, base.replace(name=name, **dict(items)) if items else base)
    except ConfigError as e:
        return Variant(items, None, str(e))


def _value_ok(field: str, v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _variants(raw: dict, base: ChipConfig, fail) -> tuple[dict, tuple[Variant, ...]]:
    fields = _fields()
    has_axes, has_list = "axes" in raw, "variants" in raw
    if has_axes == has_list:
        fail("axes", "give either [axes] (a grid) or variants = [...] (an explicit list)")
    if has_axes:
        axes = raw["axes"]
        if not isinstance(axes, dict) or not axes:
            fail("axes", "[axes] maps ChipConfig fields to lists of values")
        for f, values in axes.items():
            if f not in fields:
                fail(f, f"unknown ChipConfig field {f!r}; allowed: {', '.join(fields)}")
            if not isinstance(values, list) or not values or not all(
                    _value_ok(f, v) for v in values):
                fail(f, f"axes.{f} = {values!r}; allowed: a non-empty list of integers")
            if len(set(values)) != len(values):
                fail(f, f"axes.{f} = {values!r} repeats a value")
            for v in values:               # a value out of the field's own range: refused now
                try:
                    _check_field(base, f, v)
                except ConfigError as e:
                    fail(f, str(e))
        names = list(axes)
        combos = [dict(zip(names, c, strict=True)) for c in itertools.product(*axes.values())]
    else:
        combos = raw["variants"]
        if not isinstance(combos, list) or not combos:
            fail("variants", "variants = [...] is a non-empty list of tables")
        for c in combos:
            if not isinstance(c, dict):
                fail("variants", "each variant is a table {field = value, ...}")
            for f, v in c.items():
                if f not in fields:
                    fail(f, f"unknown ChipConfig field {f!r}; allowed: {', '.join(fields)}")
                if not _value_ok(f, v):
                    fail(f, f"{f} = {v!r}; allowed: an integer")
                try:
                    _check_field(base, f, v)
                except ConfigError as e:
                    fail(f, str(e))
        axes = {f: sorted({c[f] for c in combos if f in c}) for c in combos for f in c}
    # changes equal to the base's value are no change: one point per distinct chip
    seen, out = set(), [make_variant(base, {})]
    seen.add(())
    for c in combos:
        changes = {k: v for k, v in c.items() if getattr(base, k) != v}
        key = tuple(sorted(changes.items()))
        if key not in seen:
            seen.add(key)
            out.append(make_variant(base, changes))
    return axes, tuple(out)


def _check_field(base: ChipConfig, field: str, value: int) -> None:
    """A value outside the field's own range is a spec error (ConfigError); a
    combination the chip cannot be built with is an invalid variant (a row)."""
    try:
        base.replace(**{field: value})
    except ConfigError as e:
        if f"ChipConfig.{field} " in str(e) and "out of range" in str(e):
            raise
