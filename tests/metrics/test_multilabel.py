"""Multi-label metrics checked against scikit-learn computed independently."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from funduslab.metrics import (
    apply_thresholds,
    course_average_f1,
    multilabel_metrics,
    per_class_report,
    tune_thresholds,
)

SEEDS = [0, 1, 2, 3]


def _random_case(seed: int, n: int = 60, c: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.uniform(0.1, 0.6, size=c)).astype(int)
    # informative but noisy probabilities, rounded to create ties
    prob = np.clip(0.35 * y + rng.random((n, c)) * 0.65, 0, 1).round(2)
    return y, prob


@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_report_matches_sklearn(seed: int) -> None:
    y, prob = _random_case(seed)
    pred = (prob >= 0.5).astype(int)
    pred[:, 0] = 0  # degenerate column: nothing predicted positive
    y[:, 1] = 0  # degenerate column: no positives
    rep = per_class_report(y, pred, ["a", "b", "c", "d"])
    assert list(rep) == ["a", "b", "c", "d"]
    for c, name in enumerate(rep):
        t, p = y[:, c], pred[:, c]
        expected = [
            precision_score(t, p, zero_division=0),
            recall_score(t, p, zero_division=0),
            f1_score(t, p, zero_division=0),
            f1_score(t, p, average="macro", zero_division=0),
            t.sum(),
        ]
        got = [rep[name][k] for k in ("precision", "recall", "f1", "f1_macro", "support")]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_f1_macro_single_label_column_matches_sklearn() -> None:
    # all-negative truth and prediction: scikit-learn macro over the one present label = 1.0
    y = np.zeros((5, 1), dtype=int)
    rep = per_class_report(y, y, ["D"])
    expected = f1_score(y[:, 0], y[:, 0], average="macro", zero_division=0)
    assert rep["D"]["f1_macro"] == expected == 1.0
    assert rep["D"]["f1"] == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_course_average_f1_matches_sklearn(seed: int) -> None:
    y, prob = _random_case(seed)
    pred = (prob >= 0.5).astype(int)
    expected = np.mean([f1_score(y[:, c], pred[:, c], average="macro") for c in range(y.shape[1])])
    np.testing.assert_allclose(course_average_f1(y, pred), expected, rtol=1e-12)


def test_course_average_f1_hand_computed() -> None:
    y_true = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    y_pred = np.array([[1, 0], [0, 1], [0, 1], [0, 0]])
    # column 0: TP=1 FN=1 FP=0 TN=2 -> F1+ = 2/3, F1- = 4/5 -> 11/15
    # column 1: TP=1 FN=1 FP=1 TN=1 -> F1+ = 1/2, F1- = 1/2 -> 1/2
    assert course_average_f1(y_true, y_pred) == pytest.approx((11 / 15 + 1 / 2) / 2)  # 37/60
    out = multilabel_metrics(y_true, y_pred.astype(float), 0.5, ["D", "G"])
    assert out["course_average_f1"] == pytest.approx(37 / 60)
    assert out["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # positive-class, differs


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_metrics_match_sklearn(seed: int) -> None:
    y, prob = _random_case(seed)
    thr = np.array([0.3, 0.5, 0.55, 0.7])
    pred = (prob >= thr).astype(int)
    out = multilabel_metrics(y, prob, thr, ["D", "G", "A", "O"])
    np.testing.assert_allclose(
        [out["macro_f1"], out["micro_f1"], out["hamming_loss"], out["subset_accuracy"]],
        [
            f1_score(y, pred, average="macro", zero_division=0),
            f1_score(y, pred, average="micro", zero_division=0),
            hamming_loss(y, pred),
            accuracy_score(y, pred),
        ],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        [out["macro_precision"], out["micro_precision"], out["macro_recall"], out["micro_recall"]],
        [
            precision_score(y, pred, average="macro", zero_division=0),
            precision_score(y, pred, average="micro", zero_division=0),
            recall_score(y, pred, average="macro", zero_division=0),
            recall_score(y, pred, average="micro", zero_division=0),
        ],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        [out["macro_auroc"], out["micro_auroc"]],
        [roc_auc_score(y, prob, average="macro"), roc_auc_score(y, prob, average="micro")],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        [out["macro_average_precision"], out["micro_average_precision"]],
        [
            average_precision_score(y, prob, average="macro"),
            average_precision_score(y, prob, average="micro"),
        ],
        rtol=1e-12,
    )
    per_auc = [out["per_class"][n]["auroc"] for n in ("D", "G", "A", "O")]
    per_ap = [out["per_class"][n]["average_precision"] for n in ("D", "G", "A", "O")]
    np.testing.assert_allclose(per_auc, roc_auc_score(y, prob, average=None), rtol=1e-12)
    np.testing.assert_allclose(per_ap, average_precision_score(y, prob, average=None), rtol=1e-12)
    assert out["thresholds"] == {"D": 0.3, "G": 0.5, "A": 0.55, "O": 0.7}


def test_multilabel_metrics_json_and_nan_safe_macro(caplog: pytest.LogCaptureFixture) -> None:
    y, prob = _random_case(7, c=3)
    y[:, 2] = 0  # AUROC undefined for this class
    with caplog.at_level(logging.WARNING, logger="funduslab.metrics"):
        out = multilabel_metrics(y, prob, 0.5, ["D", "G", "A"])
    assert np.isnan(out["per_class"]["A"]["auroc"])
    assert np.isnan(out["per_class"]["A"]["average_precision"])
    expected = np.mean([roc_auc_score(y[:, c], prob[:, c]) for c in (0, 1)])
    np.testing.assert_allclose(out["macro_auroc"], expected, rtol=1e-12)
    assert "AUROC undefined" in caplog.text and "'A'" in caplog.text
    text = json.dumps(out)  # plain Python types only
    assert json.loads(text)["label_names"] == ["D", "G", "A"]

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            assert type(v) in (float, int, str), type(v)

    walk(out)


def test_apply_thresholds_uses_greater_equal() -> None:
    prob = np.array([[0.5, 0.2], [0.49, 0.8]])
    np.testing.assert_array_equal(apply_thresholds(prob), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(apply_thresholds(prob, [0.4, 0.9]), [[1, 0], [1, 0]])


def test_tune_thresholds_finds_separating_threshold() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(80, 2))
    y[0], y[1] = 0, 1
    prob = np.where(y == 1, rng.uniform(0.75, 0.95, y.shape), rng.uniform(0.05, 0.45, y.shape))
    prob[:, 1] = np.where(y[:, 1] == 1, rng.uniform(0.2, 0.3, 80), rng.uniform(0.0, 0.15, 80))
    thr = tune_thresholds(y, prob)
    for c in range(2):
        assert prob[y[:, c] == 0, c].max() < thr[c] <= prob[y[:, c] == 1, c].min()
    assert thr[0] == 0.5  # 0.5 separates too: ties go to 0.5
    np.testing.assert_array_equal(apply_thresholds(prob, thr), y)
    np.testing.assert_array_equal(thr, tune_thresholds(y, prob))  # deterministic


@pytest.mark.parametrize("objective", ["f1", "f1_macro"])
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_tune_thresholds_is_optimal_by_brute_force(seed: int, objective: str) -> None:
    y, prob = _random_case(seed, n=40, c=3)
    prob = prob * 0.6  # shifted: 0.5 is a poor threshold
    thr = tune_thresholds(y, prob, objective=objective)
    avg = "binary" if objective == "f1" else "macro"
    for c in range(y.shape[1]):
        cands = np.concatenate([np.unique(prob[:, c]), [1.01]])
        brute = max(f1_score(y[:, c], prob[:, c] >= t, average=avg, zero_division=0) for t in cands)
        got = f1_score(y[:, c], prob[:, c] >= thr[c], average=avg, zero_division=0)
        at_half = f1_score(y[:, c], prob[:, c] >= 0.5, average=avg, zero_division=0)
        np.testing.assert_allclose(got, brute, rtol=1e-12)
        assert got >= at_half
    tuned = f1_score(y, apply_thresholds(prob, thr), average="macro", zero_division=0)
    naive = f1_score(y, apply_thresholds(prob, 0.5), average="macro", zero_division=0)
    if objective == "f1":
        assert tuned > naive + 0.05


def test_tune_thresholds_with_grid() -> None:
    y, prob = _random_case(3, n=50)
    grid = np.linspace(0.05, 0.95, 19)
    thr = tune_thresholds(y, prob, grid=grid, objective="f1")
    assert all(np.isclose(grid, t).any() for t in thr)
    for c in range(y.shape[1]):
        scores = [f1_score(y[:, c], prob[:, c] >= t, zero_division=0) for t in grid]
        got = f1_score(y[:, c], prob[:, c] >= thr[c], zero_division=0)
        np.testing.assert_allclose(got, max(scores), rtol=1e-12)


def test_tune_thresholds_degenerate_class_returns_half() -> None:
    y = np.zeros((10, 1), dtype=int)
    prob = np.linspace(0, 1, 10)[:, None]
    np.testing.assert_array_equal(tune_thresholds(y, prob), [0.5])


def test_input_validation_errors() -> None:
    y = np.zeros((4, 3), dtype=int)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        per_class_report(y, np.zeros((4, 2), dtype=int))
    with pytest.raises(ValueError, match=r"only 0 and 1.*2"):
        course_average_f1(np.array([[0, 2], [1, 0]]), np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match=r"y_pred.*-1"):
        course_average_f1(np.zeros((2, 2), dtype=int), np.array([[0, -1], [1, 0]]))
    with pytest.raises(ValueError, match=r"\[0, 1\].*1\.5"):
        multilabel_metrics(y, np.full((4, 3), 1.5))
    with pytest.raises(ValueError, match="non-finite"):
        multilabel_metrics(y, np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="label_names has 2"):
        per_class_report(y, y, ["D", "G"])
    with pytest.raises(ValueError, match=r"thresholds.*\(3,\).*\(2,\)"):
        multilabel_metrics(y, np.zeros((4, 3)), [0.5, 0.5])
    with pytest.raises(ValueError, match="objective"):
        tune_thresholds(y, np.zeros((4, 3)), objective="accuracy")  # type: ignore[arg-type]
