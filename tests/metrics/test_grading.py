"""Grading metrics and kappa threshold optimisation checked against scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from funduslab.metrics import (
    apply_grade_thresholds,
    cohen_kappa,
    grading_metrics,
    optimize_grade_thresholds,
)

K = 5
LABELS = np.arange(K)


def _random_grades(seed: int, n: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.choice(K, size=n, p=[0.45, 0.15, 0.2, 0.1, 0.1])
    p = np.clip(t + rng.integers(-1, 2, size=n) * (rng.random(n) < 0.4), 0, K - 1)
    logits = rng.normal(size=(n, K)) + 2.0 * (LABELS[None, :] == t[:, None])
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return t, p, prob


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_kappa_matches_sklearn(seed: int, weights: str | None) -> None:
    t, p, _ = _random_grades(seed)
    expected = cohen_kappa_score(t, p, weights=weights, labels=LABELS)
    np.testing.assert_allclose(cohen_kappa(t, p, weights, num_grades=K), expected, rtol=1e-12)
    np.testing.assert_allclose(cohen_kappa(t, p, weights), expected, rtol=1e-12)


def test_cohen_kappa_keeps_grade_distances_when_a_grade_is_missing() -> None:
    t = np.array([0, 1, 3, 4, 1, 3, 0, 4])  # grade 2 absent from both
    p = np.array([0, 3, 1, 4, 1, 3, 1, 4])
    expected = cohen_kappa_score(t, p, weights="quadratic", labels=LABELS)
    assert cohen_kappa(t, p, "quadratic") == pytest.approx(expected)
    naive_sklearn = cohen_kappa_score(t, p, weights="quadratic")  # distances 1->3 become 1
    assert cohen_kappa(t, p, "quadratic") != pytest.approx(naive_sklearn)


def test_cohen_kappa_errors() -> None:
    with pytest.raises(ValueError, match=r"weights.*'cubic'"):
        cohen_kappa([0, 1], [0, 1], weights="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(3, 1\).*\(2, 1\)"):
        cohen_kappa([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"0\.\.4.*7"):
        cohen_kappa([0, 7], [0, 1], num_grades=5)
    with pytest.raises(ValueError, match=r"integer grades.*1\.5"):
        cohen_kappa([0, 1.5], [0, 1])
    assert np.isnan(cohen_kappa([2, 2, 2], [2, 2, 2]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grading_metrics_match_sklearn(seed: int) -> None:
    t, p, prob = _random_grades(seed)
    out = grading_metrics(t, p, prob, num_grades=K)
    np.testing.assert_allclose(
        [out["quadratic_weighted_kappa"], out["linear_weighted_kappa"], out["cohen_kappa"]],
        [cohen_kappa_score(t, p, weights=w, labels=LABELS) for w in ("quadratic", "linear", None)],
        rtol=1e-12,
    )
    assert out["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert out["confusion_matrix"] == confusion_matrix(t, p, labels=LABELS).tolist()
    prec, rec, f1, sup = precision_recall_fscore_support(t, p, labels=LABELS, zero_division=0)
    keys = ("precision", "recall", "f1", "support")
    got = np.array([[out["per_grade"][str(g)][k] for k in keys] for g in LABELS])
    np.testing.assert_allclose(got, np.stack([prec, rec, f1, sup], axis=1), rtol=1e-12)
    assert out["macro_f1"] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    np.testing.assert_allclose(
        out["macro_auroc_ovr"],
        roc_auc_score(t, prob, multi_class="ovr", average="macro"),
        rtol=1e-12,
    )


def test_grading_metrics_missing_grade_auroc_and_errors() -> None:
    t, p, prob = _random_grades(5)
    t[t == 4] = 3  # grade 4 absent: its one-vs-rest AUROC is undefined and skipped
    out = grading_metrics(t, p, prob, num_grades=K)
    assert np.isnan(out["per_grade"]["4"]["auroc"])
    expected = np.mean([roc_auc_score(t == g, prob[:, g]) for g in range(4)])
    assert out["macro_auroc_ovr"] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"y_prob has shape \(80, 3\)"):
        grading_metrics(t, p, prob[:, :3], num_grades=K)
    with pytest.raises(ValueError, match="y_pred must hold grades in 0..4"):
        grading_metrics(t, p + 1, num_grades=K)


def test_apply_grade_thresholds() -> None:
    s = np.array([-0.3, 0.49, 0.5, 1.7, 2.5, 3.49, 9.0])
    grades = apply_grade_thresholds(s, [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_array_equal(grades, [0, 0, 1, 2, 3, 3, 4])
    with pytest.raises(ValueError, match="non-decreasing"):
        apply_grade_thresholds(s, [1.5, 0.5])


def _qwk(t: np.ndarray, p: np.ndarray) -> float:
    return float(cohen_kappa_score(t, p, weights="quadratic", labels=LABELS))


def _skewed_regression(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.choice(K, size=n, p=[0.5, 0.1, 0.25, 0.08, 0.07])
    # a regression head shrunk towards the mean (MSE on skewed labels) plus noise
    s = 0.55 * t + 0.5 + rng.normal(0, 0.35, size=n)
    return t, s


@pytest.mark.parametrize("seed", [0, 1])
def test_optimized_thresholds_beat_naive_rounding(seed: int) -> None:
    t, s = _skewed_regression(seed, 300)
    rounded = apply_grade_thresholds(s, np.arange(K - 1) + 0.5)
    naive = cohen_kappa_score(t, rounded, weights="quadratic", labels=LABELS)
    thr = optimize_grade_thresholds(t, s, K)
    assert thr.shape == (K - 1,) and np.all(np.diff(thr) >= 0)
    tuned = _qwk(t, apply_grade_thresholds(s, thr))
    assert tuned > naive + 0.05, (naive, tuned)
    np.testing.assert_array_equal(thr, optimize_grade_thresholds(t, s, K))  # deterministic


def test_optimized_thresholds_are_coordinatewise_optimal() -> None:
    t, s = _skewed_regression(3, 40)
    s = s.round(1)  # ties
    thr = optimize_grade_thresholds(t, s, K)
    best = _qwk(t, apply_grade_thresholds(s, thr))
    u = np.unique(s)
    moves = np.concatenate([[u[0] - 1], (u[:-1] + u[1:]) / 2, [u[-1] + 1]])
    for i, m in itertools.product(range(K - 1), moves):
        trial = thr.copy()
        trial[i] = m
        if np.any(np.diff(trial) < 0):
            continue
        k = _qwk(t, apply_grade_thresholds(s, trial))
        assert k <= best + 1e-9, (i, m, k, best)


def test_optimize_never_worse_than_initial_and_errors() -> None:
    t, s = _skewed_regression(4, 100)
    init = np.array([0.2, 0.9, 1.4, 1.9])
    before = _qwk(t, apply_grade_thresholds(s, init))
    thr = optimize_grade_thresholds(t, s, K, initial=init)
    after = _qwk(t, apply_grade_thresholds(s, thr))
    assert after >= before
    with pytest.raises(ValueError, match="num_grades-1 = 4"):
        optimize_grade_thresholds(t, s, K, initial=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"\(100, 1\).*\(99, 1\)"):
        optimize_grade_thresholds(t, s[:-1], K)
