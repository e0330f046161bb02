"""Training-curve figure of a run folder (matplotlib, Agg backend: no display needed).

The figure is meant to be pasted into a student's report as it is, so it says what it shows: a
title naming the run, whole-number epoch ticks counted from 1 (``history.csv`` counts from 0, as
Lightning does), and the epoch whose weights were kept (the best by the monitored metric) marked
on both panels.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from funduslab.config import atomic_path  # noqa: E402

__all__ = ["best_epoch", "plot_history", "save_figure"]

#: ``train.monitor`` → (history column, better direction); mirrors ``training/fit.py``.
_MONITORS = {
    "course_average_f1": ("val_course_average_f1", "max"),
    "macro_auroc": ("val_macro_auroc", "max"),
    "val_loss": ("val_loss", "min"),
    "quadratic_kappa": ("val_quadratic_kappa", "max"),
}


def save_figure(fig: plt.Figure, out_png: Path, dpi: int = 150) -> Path:
    """Save ``fig`` as PNG through a temporary file and a rename (atomic), then close it.

    Raises:
        DiskWriteError: the folder cannot take the file; an older figure there stays.
    """
    out_png = Path(out_png)
    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return out_png


def _monitor_of(run_dir: Path, hist: pd.DataFrame) -> tuple[str, str] | None:
    """The column the run selected its weights by: ``metrics.json``'s ``fit.monitor``, else the
    config's ``train.monitor``, else the first of the usual columns present."""
    column = None
    try:
        column = (json.loads((run_dir / "metrics.json").read_text()).get("fit") or {}) \
            .get("monitor")
    except (OSError, ValueError):
        pass
    if column is None:
        try:
            import yaml

            train = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("train")
            column = _MONITORS.get((train or {}).get("monitor"), (None,))[0]
        except (OSError, ValueError, AttributeError):
            pass
    candidates = [column] if column else [c for c, _ in _MONITORS.values()]
    for col in candidates:
        if col in hist and hist[col].notna().any():
            return col, "min" if col.endswith("loss") else "max"
    return None


def best_epoch(hist: pd.DataFrame, monitor: str, mode: str) -> int:
    """Row index of the kept epoch: the first best value, as Lightning's ModelCheckpoint keeps
    only strict improvements."""
    values = hist[monitor].to_numpy(dtype=float)
    values = np.where(np.isnan(values), np.inf if mode == "min" else -np.inf, values)
    return int(np.argmin(values) if mode == "min" else np.argmax(values))


def plot_history(history_csv: Path, out_png: Path, title: str | None = None,
                 monitor: str | None = None, dpi: int = 150) -> Path:
    """Loss curves (train/val) and validation metric curves per epoch, side by side.

    Args:
        history_csv: A run folder's ``history.csv`` (``epoch`` from 0, one row per epoch).
        out_png: Where to write the PNG (atomically; parent folders are created).
        title: Figure title (default: ``"<run folder>: training curves"``).
        monitor: History column that chose the kept epoch (default: read from the run folder
            beside ``history_csv``; ``*loss`` columns are minimised, others maximised).
        dpi: Resolution.

    Returns:
        ``out_png``.
    """
    history_csv = Path(history_csv)
    hist = pd.read_csv(history_csv)
    epochs = hist["epoch"].to_numpy() + 1 if "epoch" in hist else np.arange(1, len(hist) + 1)
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for col in ("train_loss", "val_loss"):
        if col in hist and hist[col].notna().any():
            ax_loss.plot(epochs, hist[col], marker="o", label=col.replace("_", " "))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    metric_cols = [c for c in hist.columns if c.startswith("val_") and c != "val_loss"
                   and hist[c].notna().any()]
    for col in metric_cols:
        ax_metric.plot(epochs, hist[col], marker="o", label=col[4:].replace("_", " "))
    ax_metric.set(xlabel="epoch", ylabel="score", title="validation metrics")
    chosen = (monitor, "min" if monitor.endswith("loss") else "max") if monitor and \
        monitor in hist else _monitor_of(history_csv.parent, hist)
    if chosen is not None and len(hist):
        row = best_epoch(hist, *chosen)
        for ax in (ax_loss, ax_metric):
            ax.axvline(epochs[row], color="grey", linestyle="--", linewidth=1,
                       label=f"kept: epoch {epochs[row]} (best {chosen[0].replace('_', ' ')})")
    for ax in (ax_loss, ax_metric):
        if 0 < len(epochs) <= 15:  # every epoch gets its tick (a locator would add halves)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs):
            ax.set_xlim(epochs.min() - 0.5, epochs.max() + 0.5)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title or f"{history_csv.parent.name}: training curves")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=dpi)
