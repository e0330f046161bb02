"""Ordinal grading metrics (diabetic-retinopathy grade 0–4 and similar).

Cohen's kappa (Cohen, Educ. Psychol. Meas. 1960) and its weighted form (Cohen, Psychol. Bull.
1968); the quadratic-weighted kappa is the ranking metric of the Kaggle DR / APTOS 2019 and
DeepDRiD challenges. Regression heads emit a continuous score; :func:`optimize_grade_thresholds`
picks the cut points between grades that maximise quadratic kappa on validation data (coordinate
search, the "OptimizedRounder" used by APTOS 2019 winners), and :func:`apply_grade_thresholds`
turns scores into grades with them.

Weighted kappas always use the full integer grade range as label set, so a grade missing from a
split does not shrink the distances between the others (a pitfall of calling scikit-learn's
``cohen_kappa_score`` without ``labels``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import numpy as np
from sklearn.metrics import cohen_kappa_score, precision_recall_fscore_support

from funduslab.metrics._checks import as_grade_vector, as_probability_matrix, check_same_rows
from funduslab.metrics.multilabel import auroc_per_class

__all__ = [
    "apply_grade_thresholds",
    "cohen_kappa",
    "grading_metrics",
    "optimize_grade_thresholds",
]

logger = logging.getLogger(__name__)

KappaWeights = Literal["linear", "quadratic"] | None
_WEIGHTS = (None, "linear", "quadratic")


def _check_weights(weights: Any) -> None:
    if weights not in _WEIGHTS:
        raise ValueError(f"weights must be one of {_WEIGHTS}; got {weights!r}")


def _check_num_grades(num_grades: Any) -> None:
    if not isinstance(num_grades, (int, np.integer)) or num_grades < 2:
        raise ValueError(f"num_grades must be an integer >= 2; got {num_grades!r}")


def cohen_kappa(
    y_true: Any,
    y_pred: Any,
    weights: KappaWeights = None,
    num_grades: int | None = None,
) -> float:
    """Cohen's kappa between two gradings (scikit-learn ``cohen_kappa_score``).

    Args:
        y_true: (N,) integer grades.
        y_pred: (N,) integer grades.
        weights: ``None`` (unweighted), ``"linear"`` or ``"quadratic"``.
        num_grades: Grades are ``0 … num_grades-1``; default: the integer range spanned by both
            arrays (``min … max``), so weight distances are true grade differences.

    Returns:
        Kappa in [-1, 1]; NaN when undefined (no expected disagreement, e.g. one grade only).

    Raises:
        ValueError: on bad ``weights``, shape mismatch, non-integer or out-of-range grades.
    """
    _check_weights(weights)
    t = as_grade_vector(y_true, "y_true", num_grades)
    p = as_grade_vector(y_pred, "y_pred", num_grades)
    check_same_rows(t[:, None], "y_true", p[:, None], "y_pred")
    if num_grades is None:
        labels = np.arange(min(t.min(), p.min()), max(t.max(), p.max()) + 1)
    else:
        labels = np.arange(num_grades)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = cohen_kappa_score(t, p, labels=labels, weights=weights)
    return float(value)


def _weight_matrix(num_grades: int, weights: KappaWeights) -> np.ndarray:
    """(K, K) disagreement weights: 1 off-diagonal, |i-j| or (i-j)² (scikit-learn's convention)."""
    idx = np.arange(num_grades)
    diff = np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
    if weights is None:
        return (diff > 0).astype(np.float64)
    return diff if weights == "linear" else diff**2


def _kappa_from_confusion(cm: np.ndarray, weights: KappaWeights) -> np.ndarray:
    """Kappa of one or many confusion matrices (..., K, K) (rows true, cols predicted)."""
    cm = np.asarray(cm, dtype=np.float64)
    w = _weight_matrix(cm.shape[-1], weights)
    total = cm.sum(axis=(-2, -1), keepdims=True)
    expected = cm.sum(axis=-1, keepdims=True) * cm.sum(axis=-2, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - (w * cm).sum(axis=(-2, -1)) / (w * expected).sum(axis=(-2, -1))


def _confusion(t: np.ndarray, p: np.ndarray, num_grades: int) -> np.ndarray:
    return np.bincount(t * num_grades + p, minlength=num_grades**2).reshape(num_grades, num_grades)


def grading_metrics(
    y_true: Any,
    y_pred: Any,
    y_prob: Any = None,
    num_grades: int = 5,
) -> dict[str, Any]:
    """Every grading metric we report.

    Args:
        y_true: (N,) integer grades in ``0 … num_grades-1``.
        y_pred: (N,) predicted grades.
        y_prob: Optional (N, num_grades) class probabilities (rows need not sum to 1).
        num_grades: Number of grades K (5 for DR 0–4).

    Returns:
        JSON-serialisable dict: ``n_samples``, ``quadratic_weighted_kappa``,
        ``linear_weighted_kappa``, ``cohen_kappa``, ``accuracy``, ``macro_f1`` (over grades
        present in ``y_true`` or ``y_pred``, as scikit-learn), ``per_grade`` ({"0": {precision,
        recall, f1, support[, auroc]}}), ``confusion_matrix`` (K×K nested list, rows = truth) and,
        with ``y_prob``, ``macro_auroc_ovr`` (one-vs-rest AUROC averaged over grades present).
    """
    _check_num_grades(num_grades)
    t = as_grade_vector(y_true, "y_true", num_grades)
    p = as_grade_vector(y_pred, "y_pred", num_grades)
    check_same_rows(t[:, None], "y_true", p[:, None], "y_pred")
    cm = _confusion(t, p, num_grades)
    per_grade, macro_f1 = _per_grade_scores(t, p, cm)
    out: dict[str, Any] = {
        "n_samples": int(t.size),
        "quadratic_weighted_kappa": float(_kappa_from_confusion(cm, "quadratic")),
        "linear_weighted_kappa": float(_kappa_from_confusion(cm, "linear")),
        "cohen_kappa": float(_kappa_from_confusion(cm, None)),
        "accuracy": float(np.mean(t == p)),
        "macro_f1": macro_f1,
        "per_grade": per_grade,
        "confusion_matrix": cm.astype(int).tolist(),
    }
    if y_prob is not None:
        _add_ovr_auroc(out, t, y_prob, num_grades)
    return out


def _per_grade_scores(
    t: np.ndarray, p: np.ndarray, cm: np.ndarray
) -> tuple[dict[str, dict[str, float]], float]:
    """Precision, recall, F1 and support per grade, and the macro F1 over grades present."""
    labels = np.arange(cm.shape[0])
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, zero_division=0
    )
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    per_grade = {
        str(g): {
            "precision": float(prec[g]),
            "recall": float(rec[g]),
            "f1": float(f1[g]),
            "support": float(support[g]),
        }
        for g in labels
    }
    return per_grade, float(np.mean(f1[present]))


def _add_ovr_auroc(out: dict[str, Any], t: np.ndarray, y_prob: Any, num_grades: int) -> None:
    """Add each grade's one-vs-rest AUROC to ``out["per_grade"]`` and their macro to ``out``."""
    prob = as_probability_matrix(y_prob, "y_prob")
    if prob.shape != (t.size, num_grades):
        raise ValueError(
            f"y_prob has shape {prob.shape}; expected (N, num_grades) = "
            f"({t.size}, {num_grades})"
        )
    labels = np.arange(num_grades)
    onehot = (t[:, None] == labels[None, :]).astype(np.int64)
    auroc = auroc_per_class(onehot, prob)
    for g in labels:
        out["per_grade"][str(g)]["auroc"] = float(auroc[g])
    missing = [int(g) for g in labels if not np.isfinite(auroc[g])]
    if missing:
        logger.warning(
            "one-vs-rest AUROC undefined for grade(s) %s; skipped from the macro", missing
        )
    defined = len(missing) < num_grades
    out["macro_auroc_ovr"] = float(np.nanmean(auroc)) if defined else float("nan")


def _as_score_vector(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector (N,); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} non-finite value(s)")
    return arr


def _as_thresholds(x: Any, name: str, num_grades: int | None = None) -> np.ndarray:
    thr = np.asarray(x, dtype=np.float64).ravel()
    if num_grades is not None and thr.size != num_grades - 1:
        raise ValueError(f"{name} must have num_grades-1 = {num_grades - 1} values; got {thr.size}")
    if not np.isfinite(thr).all() or np.any(np.diff(thr) < 0):
        raise ValueError(f"{name} must be finite and non-decreasing; got {thr.tolist()}")
    return thr


def apply_grade_thresholds(score: Any, thresholds: Any) -> np.ndarray:
    """Turn continuous scores into grades: grade = number of thresholds ``<= score``.

    Args:
        score: (N,) continuous scores (e.g. a regression head's output in grade units).
        thresholds: (K-1,) non-decreasing cut points; ``[0.5, 1.5, 2.5, 3.5]`` is rounding.

    Returns:
        (N,) int64 grades in ``0 … K-1``.
    """
    s = _as_score_vector(score, "score")
    thr = _as_thresholds(thresholds, "thresholds")
    return np.searchsorted(thr, s, side="right").astype(np.int64)


def _best_move(
    s: np.ndarray, t: np.ndarray, thr: np.ndarray, i: int, num_grades: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quadratic kappa for every distinct position of threshold ``i`` (others fixed).

    Returns:
        (candidate thresholds (M,), kappa of each (M,)).
    """
    lo = thr[i - 1] if i > 0 else -np.inf
    hi = thr[i + 1] if i < thr.size - 1 else np.inf
    grades = np.searchsorted(thr, s, side="right")
    movable = (s >= lo) & (s < hi)
    fixed_cm = _confusion(t[~movable], grades[~movable], num_grades)
    sm, tm = s[movable], t[movable]
    if sm.size == 0:
        return thr[i : i + 1].copy(), _kappa_from_confusion(fixed_cm, "quadratic")[None]
    v, inv = np.unique(sm, return_inverse=True)  # ascending unique scores (m,)
    hist = np.zeros((v.size, num_grades))
    np.add.at(hist, (inv, tm), 1.0)
    # moved[k] = true-grade histogram of samples with score >= v_k (go up to grade i+1).
    moved = np.concatenate([np.cumsum(hist[::-1], axis=0)[::-1], np.zeros((1, num_grades))])
    cms = np.repeat(fixed_cm[None].astype(np.float64), v.size + 1, axis=0)
    cms[:, :, i] += hist.sum(axis=0)[None, :] - moved
    cms[:, :, i + 1] += moved
    lower = np.concatenate([[lo if np.isfinite(lo) else v[0] - 1.0], v])
    upper = np.concatenate([v, [hi if np.isfinite(hi) else v[-1] + 1.0]])
    cand = (lower + upper) / 2.0
    bad = cand <= lower
    bad[0] = False
    cand[bad] = upper[bad]
    return cand, _kappa_from_confusion(cms, "quadratic")


def optimize_grade_thresholds(
    y_true: Any,
    y_score: Any,
    num_grades: int,
    initial: Any = None,
    max_rounds: int = 50,
) -> np.ndarray:
    """Cut points between grades that maximise quadratic-weighted kappa (coordinate search).

    Each round moves one threshold at a time to its best position given the others, scoring
    every distinct position exactly (incremental confusion matrices, O(N·K²) per move). A move
    is taken only if it strictly improves kappa, so the result never scores below ``initial``.

    Args:
        y_true: (N,) integer grades in ``0 … num_grades-1``.
        y_score: (N,) continuous scores, e.g. a regression head's output.
        num_grades: Number of grades K.
        initial: (K-1,) starting cut points; default rounding ``[0.5, 1.5, …]``.
        max_rounds: Upper bound on full sweeps over the thresholds.

    Returns:
        (K-1,) non-decreasing thresholds for :func:`apply_grade_thresholds`.
    """
    _check_num_grades(num_grades)
    t = as_grade_vector(y_true, "y_true", num_grades)
    s = _as_score_vector(y_score, "y_score")
    check_same_rows(t[:, None], "y_true", s[:, None], "y_score")
    thr = (
        np.arange(num_grades - 1) + 0.5
        if initial is None
        else _as_thresholds(initial, "initial", num_grades).copy()
    )
    start_cm = _confusion(t, apply_grade_thresholds(s, thr), num_grades)
    current = float(_kappa_from_confusion(start_cm, "quadratic"))
    if not np.isfinite(current):
        current = -np.inf
    for _ in range(max_rounds):
        changed = False
        for i in range(num_grades - 1):
            cand, kappa = _best_move(s, t, thr, i, num_grades)
            kappa = np.where(np.isfinite(kappa), kappa, -np.inf)
            best = float(kappa.max())
            if best > current + 1e-12:
                ties = np.flatnonzero(kappa >= best - 1e-12)
                thr[i] = cand[ties[np.argmin(np.abs(cand[ties] - thr[i]))]]
                current = best
                changed = True
        if not changed:
            break
    logger.debug("optimize_grade_thresholds: kappa %.4f at %s", current, thr.tolist())
    return thr
