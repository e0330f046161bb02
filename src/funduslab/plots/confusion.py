"""Confusion-matrix figure for graded predictions (matplotlib Agg; atomic write)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from funduslab.plots.figures import save_figure  # noqa: E402

__all__ = ["plot_confusion"]


def plot_confusion(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    out_png: Path,
    title: str = "",
    labels: Sequence[str] | None = None,
) -> Path:
    """Counts and row-normalised colours (recall per true grade) of a K×K confusion matrix.

    Args:
        matrix: ``(K, K)`` counts, rows = true grade, columns = predicted grade.
        out_png: Where to write the PNG (parent folders are created).
        title: Figure title (e.g. ``"test — quadratic κ 0.81"``).
        labels: Tick labels (default ``0 … K-1``).

    Returns:
        ``out_png``.

    Raises:
        ValueError: if ``matrix`` is not square.
    """
    cm = np.asarray(matrix, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {cm.shape}")
    k = cm.shape[0]
    labels = [str(i) for i in range(k)] if labels is None else list(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.8 + 0.8 * k))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    ax.set(xticks=range(k), yticks=range(k), xticklabels=labels, yticklabels=labels,
           xlabel="predicted grade", ylabel="true grade", title=title)
    fig.tight_layout()
    return save_figure(fig, Path(out_png), dpi=100)
