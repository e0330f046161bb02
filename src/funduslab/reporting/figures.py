"""Figures written into run folders (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["plot_history"]


def plot_history(history_csv: Path, out_png: Path) -> Path:
    """Loss curves (train/val) and validation metric curves per epoch, side by side."""
    hist = pd.read_csv(history_csv)
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for col in ("train_loss", "val_loss"):
        if col in hist:
            ax_loss.plot(hist["epoch"], hist[col], marker="o", label=col)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    metric_cols = [c for c in hist.columns if c.startswith("val_") and c != "val_loss"]
    for col in metric_cols:
        ax_metric.plot(hist["epoch"], hist[col], marker="o", label=col[4:])
    ax_metric.set(xlabel="epoch", ylabel="score", title="validation metrics")
    if metric_cols:
        ax_metric.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
