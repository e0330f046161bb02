"""Tables of run results: Rich tables for the terminal, Markdown for ``results.md``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.table import Table

__all__ = ["markdown_table", "mean_std", "metrics_table", "split_scores"]


def split_scores(metrics: dict[str, Any], split: str, kind: str = "threshold_0.5") -> dict[str, Any]:
    """The metric dict of one split and threshold kind (``threshold_0.5`` | ``tuned_thresholds``)."""
    try:
        return metrics["splits"][split][kind]
    except KeyError:
        have = {s: list(v) for s, v in metrics.get("splits", {}).items()}
        raise KeyError(f"no {kind!r} metrics for split {split!r}; run has {have}") from None


def metrics_table(metrics: dict[str, Any]) -> Table:
    """Per split: the run's task kind's table (P/R/F1 per label and the course average F1 for
    multi-label, kappas for grading)."""
    from funduslab.training.task_kinds import task_kind

    return task_kind(metrics.get("task", "multilabel")).metrics_table(metrics)


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
