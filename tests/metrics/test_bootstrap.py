"""Percentile bootstrap: coverage of the point estimate, width, determinism, skipped resamples."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from funduslab.metrics import BootstrapCI, bootstrap_ci, bootstrap_metrics, course_average_f1


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ci_contains_point_and_matches_normal_theory(seed: int) -> None:
    x = np.random.default_rng(seed).normal(3.0, 2.0, size=400)
    res = bootstrap_ci(_mean, x, n_boot=600, seed=seed)
    point, low, high = res
    assert isinstance(res, BootstrapCI) and res.n_skipped == 0 and res.n_boot == 600
    assert point == pytest.approx(x.mean())
    assert low < point < high
    # width of a 95 % interval for a mean is about 2 * 1.96 * sd / sqrt(n)
    expected = 2 * 1.96 * x.std() / np.sqrt(x.size)
    np.testing.assert_allclose(high - low, expected, rtol=0.15)


def test_ci_narrows_with_more_rows() -> None:
    rng = np.random.default_rng(0)
    y_small = rng.integers(0, 2, size=(60, 3))
    y_big = rng.integers(0, 2, size=(1500, 3))
    flip = lambda y: np.where(rng.random(y.shape) < 0.2, 1 - y, y)  # noqa: E731
    small = bootstrap_ci(course_average_f1, y_small, flip(y_small), n_boot=200)
    big = bootstrap_ci(course_average_f1, y_big, flip(y_big), n_boot=200)
    assert big.high - big.low < 0.5 * (small.high - small.low)
    for r in (small, big):
        assert r.low <= r.point <= r.high


def test_deterministic_for_a_seed() -> None:
    x = np.random.default_rng(5).random(50)
    a = bootstrap_ci(_mean, x, n_boot=300, seed=11)
    b = bootstrap_ci(_mean, x, n_boot=300, seed=11)
    c = bootstrap_ci(_mean, x, n_boot=300, seed=12)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_rows_resampled_together() -> None:
    y = np.random.default_rng(0).integers(0, 5, size=100)
    res = bootstrap_ci(lambda a, b: float(np.mean(a == b)), y, y.copy(), n_boot=200)
    assert tuple(res) == (1.0, 1.0, 1.0)  # independent resampling would break the pairing


def test_undefined_resamples_are_skipped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    y = np.zeros(25, dtype=int)
    y[:2] = 1
    score = rng.random(25)
    seen_one_class = []

    def auroc(t: np.ndarray, s: np.ndarray) -> float:
        seen_one_class.append(len(np.unique(t)) < 2)
        return roc_auc_score(t, s)  # NaN (or ValueError in older scikit-learn) for one class

    def raising(t: np.ndarray, s: np.ndarray) -> float:
        if len(np.unique(t)) < 2:
            raise ValueError("one class")
        return 0.0

    with caplog.at_level(logging.WARNING, logger="funduslab.metrics"):
        res = bootstrap_ci(auroc, y, score, n_boot=300, seed=0)
    expected_skips = sum(seen_one_class[1:])  # first call is the point estimate
    assert 0 < res.n_skipped == expected_skips
    assert "undefined on" in caplog.text
    assert res.low <= res.high
    assert bootstrap_ci(raising, y, score, n_boot=300, seed=0).n_skipped == res.n_skipped


def test_all_resamples_undefined_gives_nan() -> None:
    res = bootstrap_ci(lambda x: float("nan"), np.arange(10), n_boot=20)
    assert res.n_skipped == 20 and np.isnan(res.low) and np.isnan(res.high)


def test_stratified_resampling_keeps_stratum_sizes() -> None:
    y = np.array([0] * 30 + [1] * 10)
    free = bootstrap_ci(_mean, y, n_boot=200)
    strat = bootstrap_ci(_mean, y, n_boot=200, stratify=y)
    assert free.high > free.low
    assert strat.low == strat.high == pytest.approx(0.25)


def test_bootstrap_metrics_shares_resamples() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=(80, 3))
    pred = np.where(rng.random(y.shape) < 0.25, 1 - y, y)
    out = bootstrap_metrics(
        {"course_average_f1": course_average_f1, "hamming": lambda a, b: float(np.mean(a != b))},
        y,
        pred,
        n_boot=150,
        seed=4,
    )
    assert set(out) == {"course_average_f1", "hamming"}
    single = bootstrap_ci(course_average_f1, y, pred, n_boot=150, seed=4)
    assert out["course_average_f1"] == single.as_dict()
    assert set(out["hamming"]) == {"value", "ci_low", "ci_high", "alpha", "n_boot", "n_skipped"}


def test_input_validation() -> None:
    with pytest.raises(ValueError, match=r"same number of rows.*\(10,\), \(9,\)"):
        bootstrap_ci(_mean, np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(_mean, np.zeros(10), alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(_mean, np.zeros(10), n_boot=0)
    with pytest.raises(ValueError, match="stratify.*length 10"):
        bootstrap_ci(_mean, np.zeros(10), stratify=np.zeros(3))
    with pytest.raises(ValueError, match="at least one array"):
        bootstrap_ci(_mean)
