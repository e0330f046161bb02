"""Tables of run results: Rich tables for the terminal, Markdown for ``results.md``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.table import Table

__all__ = ["grading_table", "markdown_table", "mean_std", "metrics_table", "split_scores"]


def split_scores(metrics: dict[str, Any], split: str, kind: str = "threshold_0.5") -> dict[str, Any]:
    """The metric dict of one split and threshold kind (``threshold_0.5`` | ``tuned_thresholds``)."""
    try:
        return metrics["splits"][split][kind]
    except KeyError:
        have = {s: list(v) for s, v in metrics.get("splits", {}).items()}
        raise KeyError(f"no {kind!r} metrics for split {split!r}; run has {have}") from None


def metrics_table(metrics: dict[str, Any]) -> Table:
    """Per split: positive-class P/R/F1 per label and the course average F1 (kappas for grading)."""
    if metrics.get("task") == "grading":
        return grading_table(metrics)
    labels = metrics["label_names"]
    table = Table(title="results (threshold 0.5 | tuned on val)")
    table.add_column("split")
    table.add_column("thresholds")
    for name in labels:
        table.add_column(f"{name} P/R/F1", justify="right")
    table.add_column("course avg F1", justify="right")
    table.add_column("macro AUROC", justify="right")
    for split, entry in metrics["splits"].items():
        for kind, scores in entry.items():
            row = [split, "0.5" if kind == "threshold_0.5" else "tuned"]
            for name in labels:
                c = scores["per_class"][name]
                row.append(f"{c['precision']:.3f}/{c['recall']:.3f}/{c['f1']:.3f}")
            row.append(f"{scores['course_average_f1']:.4f}")
            auc = scores.get("macro_auroc")
            row.append("—" if auc is None or auc != auc else f"{auc:.4f}")
            table.add_row(*row)
    return table


def grading_table(metrics: dict[str, Any]) -> Table:
    """Per split of a grading run: quadratic, linear and unweighted kappa and accuracy."""
    table = Table(title=f"grading results ({metrics.get('formulation', '')})")
    keys = ("quadratic_weighted_kappa", "linear_weighted_kappa", "cohen_kappa", "accuracy")
    for col in ("split", "quadratic κ", "linear κ", "unweighted κ", "accuracy"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, entry in metrics["splits"].items():
        scores = entry["grading"]
        table.add_row(split, *("—" if scores.get(k) is None else f"{scores[k]:.4f}" for k in keys))
    return table


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (sample std over seeds; just the value for one seed)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return "—"
    if arr.size == 1:
        return f"{arr[0]:.4f}"
    return f"{arr.mean():.4f} ± {arr.std(ddof=1):.4f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
