"""Plots of a training run (PNG, matplotlib's Agg canvas; no pyplot, no global state).

- ``curves.png``: train loss, train and test accuracy, hidden spikes per neuron
  and input, per epoch;
- ``raster.png``: the hidden spikes of one test sample (neuron over time);
- ``traces.png``: membrane traces of one test sample: the hidden neurons that
  spiked most (spikes marked above the threshold line) and every output (on a
  chip backend: the measured, normalised ADC traces and recorded spikes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FILES = {"curves": "curves.png", "raster": "raster.png", "traces": "traces.png"}
#: hidden neurons drawn in traces.png (those that spiked most, then the first ones)
N_TRACES = 4


def figure(w: float, h: float, rows: int = 1, cols: int = 1):
    """A figure of ``rows`` x ``cols`` axes, drawn off screen (matplotlib, an
    optional extra, is imported here, when a plot is asked for)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes.ravel()


def training_curves(history: list[dict], path, title: str = "") -> None:
    fig, (ax_loss, ax_acc, ax_spk) = figure(10, 3.2, 1, 3)
    ep = [r["epoch"] for r in history]
    ax_loss.plot(ep, [r["train_loss"] for r in history], "o-", label="train")
    tested = [r for r in history if r["test_accuracy"] is not None]
    ax_loss.plot([r["epoch"] for r in tested], [r["test_loss"] for r in tested], "s--",
                 label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss (NLL + regularisers)")
    ax_acc.plot(ep, [r["train_accuracy"] for r in history], "o-", label="train")
    ax_acc.plot([r["epoch"] for r in tested], [r["test_accuracy"] for r in tested], "s--",
                label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_spk.plot(ep, [r["train_spikes_per_neuron_input"] for r in history], "o-", label="train")
    ax_spk.plot([r["epoch"] for r in tested], [r["test_spikes_per_neuron_input"] for r in tested],
                "s--", label="test")
    ax_spk.set(xlabel="epoch", ylabel="hidden spikes per neuron and input")
    for ax in (ax_loss, ax_acc, ax_spk):
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(path)


def spike_raster(z_hidden: np.ndarray, dt_us: float, path, title: str = "") -> None:
    """``z_hidden`` ``[T, H]`` of one sample."""
    z = np.asarray(z_hidden)
    fig, (ax,) = figure(6, 4)
    t, n = np.nonzero(z > 0)
    ax.scatter((t + 1) * dt_us, n, s=60, marker="|", linewidths=1.5, color="k")
    ax.set(xlim=(0, z.shape[0] * dt_us), ylim=(-0.5, z.shape[1] - 0.5), xlabel="time (us)",
           ylabel="hidden neuron",
           title=f"{title}{': ' if title else ''}{int(z.sum())} hidden spikes, one test sample")
    fig.savefig(path)


def membrane_traces(v_hidden: np.ndarray, v_out: np.ndarray, dt_us: float, path, *,
                    measured: bool, z_hidden: np.ndarray | None = None,
                    label: int | None = None, title: str = "") -> None:
    """``v_hidden`` ``[T, H]``, ``v_out`` ``[T, C]`` of one sample; with ``z_hidden``
    ``[T, H]`` the neurons that spiked most are drawn, their spikes marked."""
    vh, vo = np.asarray(v_hidden), np.asarray(v_out)
    z = (vh >= 1.0) if z_hidden is None else np.asarray(z_hidden) > 0
    t = np.arange(1, vh.shape[0] + 1) * dt_us
    fig, (ax_h, ax_o) = figure(7, 5.5, 2, 1)
    active = np.argsort(-z.sum(0), kind="stable")[:N_TRACES]
    for n in sorted(active):
        (line,) = ax_h.plot(t, vh[:, n], ".-", label=f"neuron {n}")
        ts = t[z[:, n]]
        ax_h.plot(ts, np.full(len(ts), 1.1), "|", ms=12, mew=2, color=line.get_color())
    ax_h.axhline(1.0, color="gray", ls=":", lw=1)
    what = "ADC membrane (normalised)" if measured else "membrane (model)"
    ax_h.set(ylabel=what, title=f"{title}{': ' if title else ''}hidden layer, one test sample")
    ax_h.legend(fontsize=8)
    for c in range(vo.shape[1]):
        ax_o.plot(t, vo[:, c], ".-", lw=2.5 if c == label else 1,
                  label=f"class {c}" + (" (label)" if c == label else ""))
    ax_o.set(xlabel="time (us)", ylabel=what, title="output layer")
    ax_o.legend(fontsize=7, ncol=2)
    for ax in (ax_h, ax_o):
        ax.grid(alpha=0.3)
    fig.savefig(path)


def write_all(out: Path, history: list[dict], sample, *, dt_us: float, measured: bool,
              title: str = "", label: int | None = None) -> dict:
    """Write the three plots; ``sample`` a NetworkOutput (its batch element 0 is drawn)."""
    out = Path(out)
    training_curves(history, out / FILES["curves"], title)
    z = sample.z_hidden[:, 0].detach().cpu().numpy()
    spike_raster(z, dt_us, out / FILES["raster"], title)
    membrane_traces(sample.v_hidden[:, 0].detach().cpu().numpy(),
                    sample.v_out[:, 0].detach().cpu().numpy(), dt_us, out / FILES["traces"],
                    measured=measured, z_hidden=z, label=label, title=title)
    return {k: out / v for k, v in FILES.items()}
