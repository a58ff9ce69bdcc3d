"""A sweep's report, drawn from its rows alone (``DIR/points``, ``failed``, ``excluded``):

- ``results.parquet`` and ``results.csv``: one row per variant x workload x
  seed: the variant's fields (``cfg.*``), its key, the code version, the wall
  time, every metric and the status (ok, does not fit, invalid variant,
  excluded, failed with the path of its log);
- ``report.md``: the points, the best per objective, the Pareto-optimal
  variants;
- ``pareto_*.png``: Pareto fronts, one marker per variant, the base preset
  highlighted: energy per image against accuracy, area against frames/s, drops
  against crossbar FIFO depth; each only when the sweep has its metrics.

Every file is written atomically; a report drawn again replaces the previous
report of the same directory (the rows are the record).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from spikeloop.base.files import atomic_open, atomic_write_text
from spikeloop.explore.sweep import qualified

#: (x metric, x better, y metric, y better, file, title)
PLOTS = (
    ("mnist.energy_per_image_j", "min", "mnist.accuracy", "max", "pareto_energy_accuracy.png",
     "MNIST: energy per image against test accuracy"),
    ("yinyang.energy_per_image_j", "min", "yinyang.accuracy", "max",
     "pareto_energy_accuracy_yy.png",
     "Yin-Yang: energy per image against test accuracy"),
    ("area.transistors_total", "min", "mnist.frames_per_s", "max", "pareto_area_speed.png",
     "area against MNIST frames per second"),
    ("area.transistors_total", "min", "yinyang.frames_per_s", "max", "pareto_area_speed_yy.png",
     "area against Yin-Yang frames per second"),
    ("cfg.crossbar_fifo_depth", "min", "routing.xbar_drops", "min", "pareto_fifo_drops.png",
     "crossbar FIFO depth against events dropped (routing)"),
)


class ReportError(ValueError):
    """A directory that holds no sweep."""


def load_rows(out) -> pd.DataFrame:
    out = Path(out)
    files = [f for d in ("points", "failed", "excluded") for f in sorted((out / d).glob("*.json"))]
    if not (out / "sweep.json").is_file() and not files:
        raise ReportError(f"{out}: not a sweep directory (no sweep.json, no points/)")
    rows = []
    for f in files:
        try:
            rows.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{f}: not a readable result row ({e})") from None
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values(["workload", "variant", "seed"], kind="stable").reset_index(drop=True)
    return df


def per_variant(df: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: the mean over seeds of every metric of its ok rows,
    the metrics every workload reports named after their workload
    (:func:`~spikeloop.explore.sweep.qualified`: ``mnist.energy_per_image_j``,
    ``routing.energy_per_image_j``, ...)."""
    ok = df[df["status"] == "ok"]
    if not len(ok):
        return pd.DataFrame()
    recs = [{"variant": r["variant"], **qualified(r)} for r in ok.to_dict("records")]
    return pd.DataFrame(recs).groupby("variant", sort=False).mean(numeric_only=True)


def pareto(points: np.ndarray, better: tuple[str, str]) -> np.ndarray:
    """Mask of the non-dominated rows of ``points`` [n, 2] (NaN rows never)."""
    sign = np.array([1.0 if b == "min" else -1.0 for b in better])
    p = points * sign
    valid = ~np.isnan(p).any(axis=1)
    mask = np.zeros(len(p), dtype=bool)
    for i in np.nonzero(valid)[0]:
        dominated = valid & (p <= p[i]).all(axis=1) & (p < p[i]).any(axis=1)
        mask[i] = not dominated.any()
    return mask


def _plot(v: pd.DataFrame, x: str, bx: str, y: str, by: str, title: str, path: Path) -> bool:
    import matplotlib  # plotting: an optional extra, loaded when a report is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x not in v.columns or y not in v.columns:
        return False
    d = v[[x, y]].dropna()
    if len(d) < 2:
        return False
    front = pareto(d.to_numpy(float), (bx, by))
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    ax.scatter(d[x], d[y], c="#999999", s=28, label="variant", zorder=2)
    f = d[front].sort_values(x)
    ax.plot(f[x], f[y], "-o", color="#1f77b4", ms=6, label="Pareto front", zorder=3)
    if "base" in d.index:
        ax.scatter([d.loc["base", x]], [d.loc["base", y]], marker="*", s=220, c="#d62728",
                   label="base preset", zorder=4)
    for name, row in f.iterrows():
        ax.annotate(name if len(name) < 40 else name[:37] + "...", (row[x], row[y]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{x} ({'lower' if bx == 'min' else 'higher'} is better)")
    ax.set_ylabel(f"{y} ({'lower' if by == 'min' else 'higher'} is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())
    return True


def _md_table(df: pd.DataFrame, cols: list[str], max_rows: int = 60) -> str:
    cols = [c for c in cols if c in df.columns]
    if not cols or not len(df):
        return "(none)\n"

    def fmt(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.head(max_rows).iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_report(out) -> dict:
    """(Re)draw the report of sweep directory ``out``; returns what was written."""
    out = Path(out)
    df = load_rows(out)
    manifest = {}
    if (out / "sweep.json").is_file():
        manifest = json.loads((out / "sweep.json").read_text())
    with atomic_open(out / "results.parquet", "wb") as fh:
        df.to_parquet(fh, index=False)
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    v = per_variant(df)
    written = ["results.parquet", "results.csv"]
    plots = []
    for x, bx, y, by, name, title in PLOTS:
        if _plot(v, x, bx, y, by, title, out / name):
            plots.append(name)
    written += plots
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    md = [f"# Sweep {manifest.get('name', out.name)}", "",
          f"Base preset `{manifest.get('base', '?')}`, seeds {manifest.get('seeds', '?')}, "
          f"code version `{manifest.get('code_version', '?')}`.", "",
          "Points: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".", ""]
    key_metrics = ["area.transistors_total", "area.cells_total", "area.memory_bits_total",
                   "routing.max_lossless_rate", "routing.delivered_fraction",
                   "routing.xbar_drops", "routing.latency_p99_cycles", "mnist.accuracy",
                   "yinyang.accuracy", *(f"{w}.{m}" for w in ("mnist", "yinyang") for m in (
                       "us_per_image", "frames_per_s", "energy_per_image_j", "power_w")),
                   "routing.energy_per_image_j"]
    if len(v):
        vv = v.reset_index()
        md += ["## Variants (mean over seeds)", "", _md_table(vv, ["variant", *key_metrics]), ""]
        md += ["## Best per metric", ""]
        for m, better in (("mnist.energy_per_image_j", "min"), ("mnist.accuracy", "max"),
                          ("yinyang.energy_per_image_j", "min"), ("yinyang.accuracy", "max"),
                          ("routing.max_lossless_rate", "max"),
                          ("routing.delivered_fraction", "max"),
                          ("area.transistors_total", "min"), ("mnist.frames_per_s", "max")):
            if m in v.columns and v[m].notna().any():
                best = v[m].idxmin() if better == "min" else v[m].idxmax()
                md.append(f"- {m} ({better}): `{best}` = {v.loc[best, m]:.4g}")
        md.append("")
    bad = df[df["status"] != "ok"] if len(df) else df
    if len(bad):
        md += ["## Points not ok", "", _md_table(bad, ["variant", "workload", "seed", "status",
                                                       "reason", "log"]), ""]
    for p in plots:
        md += [f"![{p}]({p})", ""]
    atomic_write_text(out / "report.md", "\n".join(md))
    written.append("report.md")
    return {"rows": len(df), "status": counts, "written": written}
