"""Multi-label disease-detection metrics: one definition used by training, evaluation and reports.

Each column of ``y_true``/``y_pred`` is one disease (course: D, G, A) scored as an independent
binary problem. Two F1 flavours are reported side by side (see DESIGN.md, "Metrics have one home"):

* ``f1`` — the usual positive-class F1 of a column;
* ``f1_macro`` — scikit-learn ``f1_score(..., average="macro")`` on that binary column, i.e. the
  F1 of "diseased" and of "healthy" averaged. The ODIR course template's "average F-score"
  (:func:`course_average_f1`) is the mean of this over the disease columns.

Counts-based formulas are used (vectorised over columns) and tested against scikit-learn:
precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)``, F1 ``2TP/(2TP+FP+FN)``, each 0 when its
denominator is 0 (scikit-learn ``zero_division=0``). Like scikit-learn, the binary macro averages
over the labels present in ``y_true`` or ``y_pred`` (a column that is all 0 in both scores 1.0).

Predictions are ``y_prob >= threshold``. AUROC uses the Mann–Whitney rank formulation
(Hanley & McNeil, Radiology 1982), identical to ``sklearn.metrics.roc_auc_score`` including ties.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from funduslab.metrics._checks import (
    as_binary_matrix,
    as_probability_matrix,
    check_same_rows,
    resolve_label_names,
)

__all__ = [
    "apply_thresholds",
    "auroc_per_class",
    "average_precision_per_class",
    "course_average_f1",
    "multilabel_metrics",
    "per_class_report",
    "tune_thresholds",
]

logger = logging.getLogger(__name__)

F1Objective = Literal["f1", "f1_macro"]
_OBJECTIVES = ("f1", "f1_macro")


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0 where ``den == 0`` (scikit-learn ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _binary_f1_scores(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positive-class F1 and scikit-learn binary macro F1 from confusion counts (any shape)."""
    f1_pos = _safe_div(2 * tp, 2 * tp + fp + fn)
    f1_neg = _safe_div(2 * tn, 2 * tn + fn + fp)
    # scikit-learn averages over labels present in y_true or y_pred only.
    has_pos = (tp + fn + fp) > 0
    has_neg = (tn + fp + fn) > 0
    f1_macro = _safe_div(f1_pos * has_pos + f1_neg * has_neg, has_pos.astype(int) + has_neg)
    return f1_pos, f1_macro


def _confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-column (TP, FP, FN, TN) for (N, C) 0/1 arrays; each is (C,) int64."""
    tp = np.sum((y_true == 1) & (y_pred == 1), axis=0)
    fp = np.sum((y_true == 0) & (y_pred == 1), axis=0)
    fn = np.sum((y_true == 1) & (y_pred == 0), axis=0)
    tn = y_true.shape[0] - tp - fp - fn
    return tp, fp, fn, tn


def _checked_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = as_binary_matrix(y_true, "y_true")
    p = as_binary_matrix(y_pred, "y_pred")
    check_same_rows(t, "y_true", p, "y_pred")
    return t, p


def per_class_report(
    y_true: Any, y_pred: Any, label_names: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """Per-disease precision, recall, F1 (positive class), binary macro F1 and support.

    Args:
        y_true: (N, C) 0/1 ground truth (a 1-D (N,) vector is one column).
        y_pred: (N, C) 0/1 predictions.
        label_names: C names; default the DataFrame columns of ``y_true`` or ``class_0 …``.

    Returns:
        ``{name: {"precision", "recall", "f1", "f1_macro", "support"}}`` with plain floats
        (``support`` = number of positives, as float for uniform JSON).

    Raises:
        ValueError: on shape mismatch, values outside {0, 1} or a wrong number of names.
    """
    t, p = _checked_pair(y_true, y_pred)
    names = resolve_label_names(label_names, t.shape[1], y_true)
    tp, fp, fn, tn = _confusion_counts(t, p)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1, f1_macro = _binary_f1_scores(tp, fp, fn, tn)
    return {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "f1_macro": float(f1_macro[c]),
            "support": float(tp[c] + fn[c]),
        }
        for c, name in enumerate(names)
    }


def course_average_f1(y_true: Any, y_pred: Any) -> float:
    """The ODIR course template's "average F-score".

    Mean over disease columns of ``sklearn.metrics.f1_score(y_true[:, c], y_pred[:, c],
    average="macro")`` — per disease, the F1 of the positive and of the negative class averaged.

    Args:
        y_true: (N, C) 0/1 ground truth.
        y_pred: (N, C) 0/1 predictions.

    Returns:
        The average F-score in [0, 1].
    """
    t, p = _checked_pair(y_true, y_pred)
    _, f1_macro = _binary_f1_scores(*_confusion_counts(t, p))
    return float(np.mean(f1_macro))


def apply_thresholds(
    y_prob: Any, thresholds: float | Sequence[float] | np.ndarray = 0.5
) -> np.ndarray:
    """Binarise probabilities: ``y_prob >= threshold`` per column.

    Args:
        y_prob: (N, C) probabilities in [0, 1].
        thresholds: One threshold for all columns or C thresholds.

    Returns:
        (N, C) int64 array of 0/1 predictions.
    """
    prob = as_probability_matrix(y_prob, "y_prob")
    thr = _thresholds_vector(thresholds, prob.shape[1])
    return (prob >= thr[None, :]).astype(np.int64)


def _thresholds_vector(
    thresholds: float | Sequence[float] | np.ndarray, num_classes: int
) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim == 0:
        thr = np.full(num_classes, float(thr))
    if thr.shape != (num_classes,):
        raise ValueError(
            f"thresholds must be a scalar or have one value per class ({num_classes},); "
            f"got shape {thr.shape}"
        )
    if not np.isfinite(thr).all():
        raise ValueError(f"thresholds must be finite; got {thr.tolist()}")
    return thr


def auroc_per_class(y_true: Any, y_prob: Any) -> np.ndarray:
    """Area under the ROC curve of each column; NaN where a column has a single label value.

    Args:
        y_true: (N, C) 0/1 ground truth.
        y_prob: (N, C) scores (probabilities in [0, 1]).

    Returns:
        (C,) float64 array.
    """
    t = as_binary_matrix(y_true, "y_true")
    prob = as_probability_matrix(y_prob, "y_prob")
    check_same_rows(t, "y_true", prob, "y_prob")
    n_pos = t.sum(axis=0)
    n_neg = t.shape[0] - n_pos
    ranks = rankdata(prob, axis=0)  # average ranks for ties -> (N, C)
    rank_sum = np.sum(ranks * t, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def average_precision_per_class(y_true: Any, y_prob: Any) -> np.ndarray:
    """Average precision (area under the PR curve, scikit-learn definition) of each column.

    NaN where a column has no positives (scikit-learn would return 0 there with a warning).

    Returns:
        (C,) float64 array.
    """
    t = as_binary_matrix(y_true, "y_true")
    prob = as_probability_matrix(y_prob, "y_prob")
    check_same_rows(t, "y_true", prob, "y_prob")
    out = np.full(t.shape[1], np.nan)
    for c in range(t.shape[1]):
        if t[:, c].any():
            out[c] = average_precision_score(t[:, c], prob[:, c])
    return out


def _nan_mean(values: np.ndarray, names: Sequence[str], metric: str) -> float:
    """Mean over defined entries; log which classes were skipped; NaN when none is defined."""
    undefined = [n for n, v in zip(names, values) if not np.isfinite(v)]
    if undefined:
        logger.warning(
            "%s undefined for class(es) %s (only one label value present); skipped from the macro",
            metric,
            undefined,
        )
    if len(undefined) == len(values):
        return float("nan")
    return float(np.nanmean(values))


def multilabel_metrics(
    y_true: Any,
    y_prob: Any,
    thresholds: float | Sequence[float] | np.ndarray = 0.5,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every multi-label metric we report, from probabilities and thresholds.

    Args:
        y_true: (N, C) 0/1 ground truth.
        y_prob: (N, C) probabilities in [0, 1].
        thresholds: Scalar or (C,) thresholds; predictions are ``y_prob >= threshold``.
        label_names: C names (default DataFrame columns of ``y_true`` or ``class_0 …``).

    Returns:
        A JSON-serialisable dict (plain floats; NaN marks an undefined value):
        ``n_samples``, ``label_names``, ``thresholds`` ({name: t}), ``course_average_f1``,
        ``macro_f1``/``micro_f1``/``macro_precision``/``macro_recall``/``micro_precision``/
        ``micro_recall`` (positive class), ``macro_auroc``/``micro_auroc``,
        ``macro_average_precision``/``micro_average_precision``, ``hamming_loss``,
        ``subset_accuracy`` and ``per_class`` ({name: {precision, recall, f1, f1_macro, support,
        auroc, average_precision, threshold}}). Macros skip undefined classes (logged).
    """
    t = as_binary_matrix(y_true, "y_true")
    prob = as_probability_matrix(y_prob, "y_prob")
    check_same_rows(t, "y_true", prob, "y_prob")
    names = resolve_label_names(label_names, t.shape[1], y_true)
    thr = _thresholds_vector(thresholds, t.shape[1])
    pred = (prob >= thr[None, :]).astype(np.int64)

    per_class, auroc, ap = _per_class_scores(t, prob, pred, thr, names)

    tp, fp, fn, tn = _confusion_counts(t, pred)
    f1_pos, f1_macro = _binary_f1_scores(tp, fp, fn, tn)
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    micro_auroc, micro_ap = _micro_ranking_scores(t, prob)
    return {
        "n_samples": int(t.shape[0]),
        "label_names": list(names),
        "thresholds": {n: float(thr[c]) for c, n in enumerate(names)},
        "course_average_f1": float(np.mean(f1_macro)),
        "macro_f1": float(np.mean(f1_pos)),
        "micro_f1": float(_safe_div(2 * TP, 2 * TP + FP + FN)),
        "macro_precision": float(np.mean(_safe_div(tp, tp + fp))),
        "macro_recall": float(np.mean(_safe_div(tp, tp + fn))),
        "micro_precision": float(_safe_div(TP, TP + FP)),
        "micro_recall": float(_safe_div(TP, TP + FN)),
        "macro_auroc": _nan_mean(auroc, names, "AUROC"),
        "micro_auroc": micro_auroc,
        "macro_average_precision": _nan_mean(ap, names, "average precision"),
        "micro_average_precision": micro_ap,
        "hamming_loss": float(np.mean(t != pred)),
        "subset_accuracy": float(np.mean(np.all(t == pred, axis=1))),
        "per_class": per_class,
    }


def _per_class_scores(
    t: np.ndarray, prob: np.ndarray, pred: np.ndarray, thr: np.ndarray, names: Sequence[str]
) -> tuple[dict[str, dict[str, float]], np.ndarray, np.ndarray]:
    """The per-class report with AUROC, average precision and threshold; the AUROC and AP arrays."""
    per_class = per_class_report(t, pred, names)
    auroc = auroc_per_class(t, prob)
    ap = average_precision_per_class(t, prob)
    for c, name in enumerate(names):
        per_class[name].update(
            auroc=float(auroc[c]), average_precision=float(ap[c]), threshold=float(thr[c])
        )
    return per_class, auroc, ap


def _micro_ranking_scores(t: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """Micro AUROC and average precision: every (image, class) pair as one binary decision."""
    flat_t, flat_prob = t.ravel(), prob.ravel()
    micro_auroc = float(auroc_per_class(flat_t, flat_prob)[0])
    micro_ap = float(average_precision_score(flat_t, flat_prob)) if flat_t.any() else float("nan")
    return micro_auroc, micro_ap


def _candidate_thresholds(values: np.ndarray) -> np.ndarray:
    """One representative threshold per distinct prediction set ``{p >= t}`` (sorted ascending).

    For sorted unique values ``u_0 < … < u_{m-1}`` the sets are ``{p >= u_k}`` (threshold in
    ``(u_{k-1}, u_k]``) and the empty set (threshold above ``u_{m-1}``). The representative is
    0.5 when 0.5 lies in the interval, otherwise the interval's midpoint (bounded to [0, 1]).
    """
    u = np.unique(values)
    lo = np.concatenate([[min(0.0, u[0])], u])  # interval (lo, hi]; first closed at lo
    hi = np.concatenate([u, [1.0]])
    rep = (lo + hi) / 2.0
    rep[0] = u[0] / 2.0 if u[0] > 0 else u[0]
    # A midpoint that rounds onto the open lower end belongs to the previous set: use hi.
    bad = rep <= lo
    bad[0] = False
    rep[bad] = hi[bad]
    if u[-1] >= 1.0:  # empty set needs a threshold strictly above 1
        rep[-1] = np.nextafter(u[-1], np.inf)
    inside = np.concatenate([[0.5 <= u[0]], (0.5 > lo[1:]) & (0.5 <= hi[1:])])
    rep[inside] = 0.5
    return rep


def _f1_objective(
    tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int, objective: str
) -> np.ndarray:
    f1_pos, f1_macro = _binary_f1_scores(tp, fp, n_pos - tp, n_neg - fp)
    return f1_pos if objective == "f1" else f1_macro


def tune_thresholds(
    y_true: Any,
    y_prob: Any,
    grid: Sequence[float] | np.ndarray | None = None,
    objective: F1Objective = "f1_macro",
) -> np.ndarray:
    """Per class, the threshold maximising that class's F1 on (usually validation) data.

    The default objective is the figure the course reports and runs are selected on: each
    disease's two-class macro F1 (:func:`course_average_f1` averages it). Tuning positive-class
    F1 instead can *lower* the course figure on the very split it was tuned on (it trades the
    healthy class's F1 for the diseased one's), so ask for ``"f1"`` only when that is the figure
    reported (lesion patches).

    Every distinct prediction set ``{y_prob >= t}`` is scored exactly (grid over unique
    probabilities; the threshold returned is 0.5 when 0.5 is optimal, otherwise the midpoint
    between neighbouring probabilities). With ``grid`` given, only those thresholds are tried.
    Ties go to the threshold closest to 0.5, then to the smaller one, so the result is
    deterministic.

    Args:
        y_true: (N, C) 0/1 ground truth.
        y_prob: (N, C) probabilities in [0, 1].
        grid: Optional candidate thresholds (any length ≥ 1).
        objective: ``"f1"`` (positive-class F1) or ``"f1_macro"`` (binary macro F1, the
            course average F-score's per-disease term).

    Returns:
        (C,) float64 thresholds for :func:`apply_thresholds`.
    """
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective must be one of {_OBJECTIVES}; got {objective!r}")
    t = as_binary_matrix(y_true, "y_true")
    prob = as_probability_matrix(y_prob, "y_prob")
    check_same_rows(t, "y_true", prob, "y_prob")
    user_grid = None
    if grid is not None:
        user_grid = np.unique(np.asarray(grid, dtype=np.float64).ravel())
        if user_grid.size == 0 or not np.isfinite(user_grid).all():
            raise ValueError(f"grid must hold at least one finite threshold; got {grid!r}")
    out = np.empty(t.shape[1])
    for c in range(t.shape[1]):
        y, p = t[:, c], prob[:, c]
        n_pos = int(y.sum())
        n_neg = y.size - n_pos
        if n_pos == 0 or n_neg == 0:  # nothing to separate: keep the untuned threshold
            logger.warning("tune_thresholds: class %d has a single label value; kept 0.5", c)
            out[c] = 0.5
            continue
        cand = _candidate_thresholds(p) if user_grid is None else user_grid
        pos_sorted, neg_sorted = np.sort(p[y == 1]), np.sort(p[y == 0])
        tp = n_pos - np.searchsorted(pos_sorted, cand, side="left")
        fp = n_neg - np.searchsorted(neg_sorted, cand, side="left")
        score = _f1_objective(tp, fp, n_pos, n_neg, objective)
        best = np.flatnonzero(score >= score.max() - 1e-12)
        order = np.lexsort((cand[best], np.abs(cand[best] - 0.5)))
        out[c] = cand[best[order[0]]]
    return out
