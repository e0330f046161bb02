"""Reliability bins and ECE (Guo et al. 2017) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from torch.testing import assert_close

from funduslab.metrics import ece_per_class, expected_calibration_error, reliability_bins


def test_ece_matches_a_hand_computation():
    # 5 bins of width 0.2: (0, .2] holds .05 (neg) and .15 (pos): conf .10, acc .5, gap .40
    # (.4, .6] holds .55 (pos): gap .45; (.6, .8] holds .65 (neg): gap .65; (.8, 1] .95 (pos): .05
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.55, 0.65, 0.95])
    hand = 2 / 5 * 0.40 + 1 / 5 * 0.45 + 1 / 5 * 0.65 + 1 / 5 * 0.05
    assert_close(expected_calibration_error(y, p, n_bins=5), hand)
    bins = reliability_bins(y, p, n_bins=5)
    assert bins.counts.tolist() == [2, 0, 1, 1, 1]
    assert_close(bins.mean_predicted[0], 0.10)
    assert_close(bins.observed_rate[0], 0.5)
    assert np.isnan(bins.mean_predicted[1]) and np.isnan(bins.observed_rate[1])
    assert_close(bins.edges, np.linspace(0, 1, 6))


def test_bins_are_closed_on_the_right_and_zero_joins_the_first():
    p = np.array([0.0, 0.2, 0.2000001, 0.4, 1.0])
    bins = reliability_bins(np.array([0, 0, 1, 1, 1]), p, n_bins=5)
    assert bins.counts.tolist() == [2, 2, 0, 0, 1]


def test_perfect_calibration_scores_zero_and_a_confident_miss_scores_high():
    # in the bin (0.2, 0.4] a quarter of the 0.25-forecasts are positive: perfectly calibrated
    y = np.array([1, 0, 0, 0] * 5)
    p = np.full(20, 0.25)
    assert_close(expected_calibration_error(y, p), 0.0)
    assert_close(expected_calibration_error(np.zeros(4, int), np.full(4, 0.99)), 0.99)


def test_ece_per_class_scores_each_column_and_checks_its_input():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 3))
    p = rng.random((50, 3))
    per_class = ece_per_class(y, p, n_bins=4)
    assert per_class.shape == (3,)
    for c in range(3):
        assert_close(per_class[c], expected_calibration_error(y[:, c], p[:, c], n_bins=4))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(y[:, 0], p[:, 0], n_bins=0)
    with pytest.raises(ValueError, match="one column"):
        reliability_bins(y, p)
    with pytest.raises(ValueError, match="shape"):
        ece_per_class(y, p[:, :2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.5, 1.5])
