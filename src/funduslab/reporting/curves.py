"""ROC, precision–recall, reliability and confusion figures of finished runs (matplotlib Agg).

One figure per recipe and kind, one panel per label, the seeds of the recipe overlaid in one
colour each: a student sees at a glance how much of a difference between recipes the seeds
already explain. Each drawing function returns the points it drew as a data frame, so the report
can keep them beside the PNG (a reader can re-plot or check a number, e.g. the area under a
drawn ROC curve against ``metrics.json``'s AUROC).

Curves: scikit-learn ``roc_curve`` / ``precision_recall_curve``; the dot on each curve is the
run's operating point (its thresholded labels). Reliability: equal-width bins and ECE from
:mod:`funduslab.metrics.calibration` (Guo et al. 2017). Prediction files hold no truth, so
:func:`run_scores` matches them by id with the dataset table the run's ``config.yaml`` names (as
``ensemble/members.py`` does); without that table, :func:`confusions_from_metrics` still rebuilds
the confusion counts from ``metrics.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_curve,
)

from funduslab.metrics.calibration import reliability_bins  # noqa: E402
from funduslab.plots.figures import save_figure  # noqa: E402
from funduslab.runs import RunFolder  # noqa: E402
from funduslab.training.task_kinds import task_kind  # noqa: E402

__all__ = ["RunScores", "TruthCache", "binary_confusions", "confusions_from_metrics",
           "draw_confusion", "plot_confusions", "plot_grade_confusion", "plot_pr",
           "plot_reliability", "plot_roc", "run_scores"]

_COLUMNS = 4  # label panels per row


@dataclass
class RunScores:
    """One run's labelled split, as every curve of the report needs it.

    Attributes:
        name: Legend entry (``seed 0`` or the run folder's name).
        label_names: ``K`` labels.
        truth: ``(N, K)`` 0/1 truth.
        probs: ``(N, K)`` predicted probabilities.
        predicted: ``(N, K)`` 0/1 labels at the run's thresholds.
        thresholds: ``(K,)`` the run's thresholds, when known.
    """

    name: str
    label_names: list[str]
    truth: np.ndarray
    probs: np.ndarray
    predicted: np.ndarray
    thresholds: np.ndarray | None = None


def _grid(k: int, size: float = 3.3) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(k, _COLUMNS)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.5), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[k:]:
        ax.axis("off")
    return fig, flat[:k]


def _colour(i: int) -> tuple[float, ...]:
    return plt.get_cmap("tab10")(i % 10)


def _defined(y: np.ndarray) -> bool:
    return 0 < int(y.sum()) < len(y)


def _finish(fig: plt.Figure, title: str, out_png: Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_png)


def _operating_point() -> Line2D:
    return Line2D([], [], color="black", marker="o", linestyle="none", markersize=5,
                  label="run's threshold")


def plot_roc(runs: Sequence[RunScores], out_png: Path, title: str) -> pd.DataFrame:
    """ROC curve per label, runs overlaid; returns ``run, label, fpr, tpr, threshold`` rows."""
    labels = runs[0].label_names
    fig, axes = _grid(len(labels))
    rows = []
    for k, (ax, label) in enumerate(zip(axes, labels)):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for i, run in enumerate(runs):
            y, p = run.truth[:, k], run.probs[:, k]
            if not _defined(y):
                continue
            fpr, tpr, thr = roc_curve(y, p)
            rows += [(run.name, label, a, b, c) for a, b, c in zip(fpr, tpr, thr)]
            ax.plot(fpr, tpr, color=_colour(i), label=f"{run.name}: AUC {auc(fpr, tpr):.3f}")
            pred = run.predicted[:, k]
            ax.plot(np.mean(pred[y == 0]), np.mean(pred[y == 1]), "o", color=_colour(i),
                    markersize=5)
        n_pos = int(runs[0].truth[:, k].sum())
        ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", xlabel="false-positive rate",
               ylabel="true-positive rate (recall)",
               title=f"{label}  ({n_pos} of {len(runs[0].truth)} positive)")
        ax.grid(alpha=0.3)
        ax.legend(handles=[*ax.get_legend_handles_labels()[0], _operating_point()], fontsize=7,
                  loc="lower right")
    _finish(fig, title, out_png)
    return pd.DataFrame(rows, columns=["run", "label", "fpr", "tpr", "threshold"])


def plot_pr(runs: Sequence[RunScores], out_png: Path, title: str) -> pd.DataFrame:
    """Precision–recall curve per label, runs overlaid, prevalence as the chance line; returns
    ``run, label, recall, precision, threshold`` rows (threshold NaN at the curve's end)."""
    labels = runs[0].label_names
    fig, axes = _grid(len(labels))
    rows = []
    for k, (ax, label) in enumerate(zip(axes, labels)):
        prevalence = float(np.mean(runs[0].truth[:, k]))
        ax.axhline(prevalence, color="grey", linestyle=":", linewidth=1,
                   label=f"chance (prevalence {prevalence:.2f})")
        for i, run in enumerate(runs):
            y, p = run.truth[:, k], run.probs[:, k]
            if not _defined(y):
                continue
            precision, recall, thr = precision_recall_curve(y, p)
            thr = np.append(thr, np.nan)
            rows += [(run.name, label, r, q, t) for r, q, t in zip(recall, precision, thr)]
            ap = average_precision_score(y, p)
            ax.step(recall, precision, where="post", color=_colour(i),
                    label=f"{run.name}: AP {ap:.3f}")
            pred = run.predicted[:, k]
            if pred.sum():
                ax.plot(np.mean(pred[y == 1]), np.mean(y[pred == 1]), "o", color=_colour(i),
                        markersize=5)
        ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", xlabel="recall",
               ylabel="precision", title=label)
        ax.grid(alpha=0.3)
        ax.legend(handles=[*ax.get_legend_handles_labels()[0], _operating_point()], fontsize=7,
                  loc="upper right")
    _finish(fig, title, out_png)
    return pd.DataFrame(rows, columns=["run", "label", "recall", "precision", "threshold"])


def plot_reliability(runs: Sequence[RunScores], out_png: Path, title: str,
                     n_bins: int = 10) -> pd.DataFrame:
    """Reliability diagram per label (observed share of positives against mean predicted
    probability in equal-width bins; marker area ∝ images in the bin), ECE in the legend.

    Returns:
        ``run, label, bin_low, bin_high, count, mean_predicted, observed_rate, ece`` rows.
    """
    labels = runs[0].label_names
    fig, axes = _grid(len(labels))
    rows = []
    for k, (ax, label) in enumerate(zip(axes, labels)):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1,
                label="perfect calibration")
        for i, run in enumerate(runs):
            bins = reliability_bins(run.truth[:, k], run.probs[:, k], n_bins)
            ece = bins.ece
            for b in range(n_bins):
                rows.append((run.name, label, bins.edges[b], bins.edges[b + 1],
                             int(bins.counts[b]), bins.mean_predicted[b],
                             bins.observed_rate[b], ece))
            filled = bins.counts > 0
            ax.plot(bins.mean_predicted[filled], bins.observed_rate[filled], color=_colour(i),
                    linewidth=1, label=f"{run.name}: ECE {ece:.3f}")
            size = 12 + 120 * bins.counts[filled] / max(1, int(bins.counts.max()))
            ax.scatter(bins.mean_predicted[filled], bins.observed_rate[filled], s=size,
                       color=_colour(i), alpha=0.7, edgecolor="white", linewidth=0.5)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), aspect="equal",
               xlabel="mean predicted probability", ylabel="observed share positive",
               title=f"{label}  ({n_bins} bins)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    _finish(fig, title, out_png)
    return pd.DataFrame(rows, columns=["run", "label", "bin_low", "bin_high", "count",
                                       "mean_predicted", "observed_rate", "ece"])


def draw_confusion(ax: plt.Axes, matrix: np.ndarray, ticks: Sequence[str], title: str,
                   what: str = "label") -> None:
    """Counts of a ``(C, C)`` confusion matrix (rows = truth) on row-normalised colours."""
    cm = np.asarray(matrix, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=10,
                    color="white" if share[i, j] > 0.6 else "black")
    c = range(cm.shape[0])
    ax.set(xticks=c, yticks=c, xticklabels=ticks, yticklabels=ticks, title=title,
           xlabel=f"predicted {what}", ylabel=f"true {what}")


def binary_confusions(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``(K, 2, 2)`` counts ``[[TN, FP], [FN, TP]]`` per label of ``(N, K)`` 0/1 arrays."""
    y, pred = np.asarray(truth), np.asarray(predicted)
    counts = np.array([[np.sum((y == 0) & (pred == 0), 0), np.sum((y == 0) & (pred == 1), 0)],
                       [np.sum((y == 1) & (pred == 0), 0), np.sum((y == 1) & (pred == 1), 0)]])
    return counts.transpose(2, 0, 1).astype(np.int64)  # (2, 2, K) → (K, 2, 2)


def plot_confusions(matrices: np.ndarray, label_names: Sequence[str],
                    thresholds: Sequence[float] | None, out_png: Path,
                    title: str) -> pd.DataFrame:
    """One 2×2 confusion matrix per label (``(K, 2, 2)`` from :func:`binary_confusions`) at
    the run's thresholds; returns ``label, threshold, tn, fp, fn, tp`` rows."""
    fig, axes = _grid(len(label_names), size=2.3)
    rows = []
    for k, (ax, label) in enumerate(zip(axes, label_names)):
        t = None if thresholds is None else float(thresholds[k])
        name = label if t is None else f"{label} at p ≥ {t:.2f}"
        draw_confusion(ax, matrices[k], ["0", "1"], name)
        rows.append((label, t, *np.asarray(matrices[k]).ravel().tolist()))
    _finish(fig, title, out_png)
    return pd.DataFrame(rows, columns=["label", "threshold", "tn", "fp", "fn", "tp"])


def plot_grade_confusion(matrix: Sequence[Sequence[int]], out_png: Path, title: str) -> Path:
    """A grading run's ``(G, G)`` confusion matrix (rows = true grade)."""
    g = len(matrix)
    fig, ax = plt.subplots(figsize=(1.6 + 0.7 * g, 1.2 + 0.7 * g))
    draw_confusion(ax, np.asarray(matrix), [str(i) for i in range(g)], "", what="grade")
    return _finish(fig, title, out_png)


class TruthCache:
    """Dataset tables by ``(adapter, root, options)``, so the runs of one dataset read it once;
    a table that cannot be read is remembered with the reason."""

    def __init__(self) -> None:
        self._tables: dict[str, Any] = {}

    def table(self, data: dict[str, Any]) -> tuple[Any, str | None]:
        """``(SampleTable, None)`` or ``(None, why)`` for a config's ``data`` section."""
        from funduslab.data.adapters import load_table

        adapter, root = data.get("adapter", "odir_course"), str(data.get("root", "data"))
        options = data.get("options") or {}
        key = json.dumps([adapter, root, options], sort_keys=True, default=str)
        if key not in self._tables:
            try:
                self._tables[key] = (load_table(adapter, Path(root), **options), None)
            except (FileNotFoundError, ValueError, KeyError, OSError) as err:
                self._tables[key] = (None, f"{adapter} data at {root} unreadable: {err}")
        return self._tables[key]


def _prediction_frame(folder: RunFolder, split: str) -> pd.DataFrame:
    # RunFolder.predictions gives probabilities; the thresholded labels are the same file's
    # label columns (a grading run: its ``grade`` column)
    return pd.read_csv(folder.path / "predictions" / f"{split}.csv", dtype={"id": str})


def run_scores(folder: RunFolder, split: str, name: str, kind: str,
               cache: TruthCache) -> tuple[RunScores | None, str | None]:
    """A run's truth, probabilities and thresholded labels on ``split``, matched by id with the
    dataset table its ``config.yaml`` names; ``(None, why)`` when the truth is out of reach.
    Rows with a missing label (joined sources) are left out, as in ``metrics.json``."""
    if split not in folder.prediction_splits:
        return None, f"no predictions/{split}.csv"
    table, why = cache.table(folder.config.get("data") or {})
    if table is None:
        return None, f"no truth ({why})"
    if split not in table.splits:
        return None, f"no truth: split {split!r} is not in {table.source or 'its dataset'}"
    rows = table.split(split)
    if not bool(rows["labelled"].all()):
        return None, f"no truth: split {split!r} is unlabelled"
    rows.index = rows["id"].astype(str)
    frame = _prediction_frame(folder, split)
    ids = frame["id"].astype(str).tolist()
    missing = [i for i in ids if i not in rows.index]
    if missing:
        return None, (f"no truth: predictions/{split}.csv lists ids its dataset lacks, e.g. "
                      f"{missing[:3]}")
    labels, probs, predicted, thresholds = task_kind(kind).read_scores(
        folder, frame, split, list(table.label_names))
    truth = rows.loc[ids, labels].to_numpy(float)
    keep = ~np.isnan(truth).any(axis=1)
    if not keep.any():
        return None, f"no truth: every {split} row has a missing label"
    return RunScores(name, list(labels), truth[keep].astype(np.int64), probs[keep],
                     predicted[keep], None if thresholds is None else np.asarray(thresholds)), None


def confusions_from_metrics(folder: RunFolder, split: str) -> np.ndarray | None:
    """``(K, 2, 2)`` confusion counts at the run's thresholds rebuilt from ``metrics.json``
    (support, recall, precision) and the predictions' positive counts — for a record whose
    dataset is not on this machine. ``None`` when the numbers are not there."""
    metrics = folder.metrics
    block = "tuned_thresholds" if (metrics.get("thresholds") or {}).get("used") == \
        "tuned_on_val" else "threshold_0.5"
    entry = ((metrics.get("splits") or {}).get(split) or {}).get(block)
    labels = folder.label_names
    if not entry or "n_samples" not in entry:
        return None
    try:
        called = _prediction_frame(folder, split)[labels].sum()
    except (OSError, KeyError, ValueError):
        called = None
    out = []
    for label in labels:
        c = (entry.get("per_class") or {}).get(label)
        if not c:
            return None
        pos = round(c["support"])
        tp = round(c["recall"] * pos)
        if c["precision"] > 0:
            fp = round(tp / c["precision"]) - tp
        elif called is not None:
            fp = int(called[label]) - tp
        else:
            return None
        fn = pos - tp
        out.append([[entry["n_samples"] - tp - fp - fn, fp], [fn, tp]])
    return np.asarray(out, dtype=np.int64)
