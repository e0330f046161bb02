"""Long-tail report for many-label screening (RFMiD-style): per-label AUROC with bootstrap CIs.

Screening sets such as RFMiD carry tens of labels, many with a handful of positives. A macro
AUROC hides how little is known about those: a label with 4 test positives can swing by ±0.2.
This report puts each label's positives (train and test), its AUROC and a 95 % percentile-bootstrap
interval side by side and flags labels with fewer than ``rare_below`` positives, so a reader sees
which numbers carry weight (Efron & Tibshirani 1993 for the bootstrap; RFMiD: Pachade et al. 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.metrics.bootstrap import bootstrap_metrics
from funduslab.metrics.multilabel import auroc_per_class
from funduslab.reporting.run_folder import read_predictions
from funduslab.reporting.tables import markdown_table

__all__ = ["long_tail_report", "long_tail_from_run", "render_long_tail"]


def _label_auroc(c: int):
    def fn(t: np.ndarray, p: np.ndarray) -> float:
        return float(auroc_per_class(t[:, c : c + 1], p[:, c : c + 1])[0])

    return fn


def _macro(t: np.ndarray, p: np.ndarray) -> float:
    return float(np.nanmean(auroc_per_class(t, p))) if t.shape[1] else float("nan")


def _micro(t: np.ndarray, p: np.ndarray) -> float:
    return float(auroc_per_class(t.reshape(-1, 1), p.reshape(-1, 1))[0])


def long_tail_report(
    y_true: Any, y_prob: Any, label_names: Sequence[str], train_positives: Sequence[int] | None = None,
    rare_below: int = 10, n_boot: int = 1000, seed: int = 0,
) -> dict[str, Any]:
    """Per-label AUROC with 95 % CIs on one split, rare labels flagged.

    Args:
        y_true: (N, K) 0/1 labels of the evaluated split.
        y_prob: (N, K) predicted probabilities.
        label_names: K names.
        train_positives: (K,) positives per label in the training split (shown and used for the
            flag when given; otherwise the split's own positives are used).
        rare_below: A label with fewer positives than this is flagged ``rare``.
        n_boot: Bootstrap resamples (rows resampled together for all labels).
        seed: Bootstrap seed.

    Returns:
        ``{"labels": [{name, train_positives, positives, auroc, ci_low, ci_high, rare}],
        "macro_auroc": {value, ci_low, ci_high}, "micro_auroc": {...}, "rare_below": int}``.
        AUROC is NaN (CI NaN) for a label with no positives or no negatives in the split.

    Raises:
        ValueError: shapes disagree, or ``train_positives`` has the wrong length.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=float)
    names = list(label_names)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != len(names):
        raise ValueError(f"y_true {t.shape}, y_prob {p.shape} and {len(names)} label names must "
                         "agree as (N, K), (N, K), K")
    if train_positives is not None and len(train_positives) != len(names):
        raise ValueError(f"train_positives has {len(train_positives)} entries for {len(names)} labels")
    fns = {f"label_{c}": _label_auroc(c) for c in range(len(names))}
    fns.update(macro_auroc=_macro, micro_auroc=_micro)
    cis = bootstrap_metrics(fns, t, p, n_boot=n_boot, seed=seed)
    positives = t.sum(axis=0).astype(int)
    rows = []
    for c, name in enumerate(names):
        ci = cis[f"label_{c}"]
        tp = None if train_positives is None else int(train_positives[c])
        basis = tp if tp is not None else int(positives[c])
        rows.append({"name": name, "train_positives": tp, "positives": int(positives[c]),
                     "auroc": ci["value"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
                     "rare": bool(basis < rare_below)})
    pick = ("value", "ci_low", "ci_high")
    return {"labels": rows, "rare_below": rare_below, "n_boot": n_boot,
            "macro_auroc": {k: cis["macro_auroc"][k] for k in pick},
            "micro_auroc": {k: cis["micro_auroc"][k] for k in pick}}


def long_tail_from_run(
    run_dir: Path, split: str, y_true: np.ndarray, label_names: Sequence[str],
    train_positives: Sequence[int] | None = None, **kwargs: Any,
) -> dict[str, Any]:
    """:func:`long_tail_report` from a run folder's ``predictions/<split>.csv``.

    ``y_true`` must follow the row order of the predictions file (the split's table order, which
    is how the runner writes it).
    """
    _, probs = read_predictions(Path(run_dir), split, list(label_names))
    return long_tail_report(y_true, probs, label_names, train_positives, **kwargs)


def _fmt(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.3f}"


def render_long_tail(report: dict[str, Any], title: str = "Per-label AUROC") -> str:
    """Markdown: one row per label (rarest first), then macro and micro AUROC with CIs."""
    rows = sorted(report["labels"], key=lambda r: (r["train_positives"] or r["positives"]))
    body = [[r["name"], "—" if r["train_positives"] is None else r["train_positives"],
             r["positives"], _fmt(r["auroc"]), f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
             "**rare**" if r["rare"] else ""] for r in rows]
    for key in ("macro_auroc", "micro_auroc"):
        m = report[key]
        body.append([key.replace("_", " "), "", "", _fmt(m["value"]),
                     f"[{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]", ""])
    header = ["label", "train positives", "test positives", "AUROC", "95 % CI", "flag"]
    return (f"## {title}\n\nRare = fewer than {report['rare_below']} positives; percentile "
            f"bootstrap over {report['n_boot']} resamples of the split's rows.\n\n"
            + markdown_table(header, body))
