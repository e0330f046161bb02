"""Calibration of predicted probabilities: reliability bins and expected calibration error (ECE).

A model whose thresholds are tuned can still rank well and be badly calibrated; a student who
reads ``p=0.8`` as "80 % likely" needs the reliability diagram to know whether that holds.

ECE follows Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017
(eq. 3): predictions are put into ``M`` equal-width bins ``I_m = ((m-1)/M, m/M]`` (a probability
of exactly 0 joins the first bin) and

    ECE = sum_m (|B_m| / N) * |acc(B_m) - conf(B_m)|.

For one disease column (a binary problem) ``conf(B_m)`` is the mean predicted probability of the
positive class in the bin and ``acc(B_m)`` the observed share of positives there — the classic
reliability diagram of a binary forecaster (DeGroot & Fienberg 1983). Empty bins contribute 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from funduslab.metrics._checks import as_binary_matrix, as_probability_matrix, check_same_rows

__all__ = ["ReliabilityBins", "ece_per_class", "expected_calibration_error", "reliability_bins"]


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width bins of one binary column's predictions.

    Attributes:
        edges: ``(M + 1,)`` bin edges from 0 to 1.
        counts: ``(M,)`` predictions per bin.
        mean_predicted: ``(M,)`` mean predicted probability per bin (NaN when empty).
        observed_rate: ``(M,)`` share of positives per bin (NaN when empty).
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_predicted: np.ndarray
    observed_rate: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error (Guo et al. 2017, eq. 3) of these bins."""
        total = int(self.counts.sum())
        if total == 0:
            return float("nan")
        filled = self.counts > 0
        gap = np.abs(self.observed_rate[filled] - self.mean_predicted[filled])
        return float(np.sum(self.counts[filled] / total * gap))


def _check_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    return int(n_bins)


def reliability_bins(y_true: Any, y_prob: Any, n_bins: int = 10) -> ReliabilityBins:
    """Bin one binary column's predictions into ``n_bins`` equal-width bins ``((m-1)/M, m/M]``.

    Args:
        y_true: ``(N,)`` 0/1 truth.
        y_prob: ``(N,)`` predicted probabilities of the positive class, in [0, 1].
        n_bins: Number of bins ``M``.

    Raises:
        ValueError: bad ``n_bins``, labels other than 0/1, probabilities outside [0, 1],
            more than one column, or mismatched lengths.
    """
    m = _check_bins(n_bins)
    t = as_binary_matrix(y_true, "y_true")
    p = as_probability_matrix(y_prob, "y_prob")
    check_same_rows(t, "y_true", p, "y_prob")
    if t.shape[1] != 1 or p.shape[1] != 1:
        raise ValueError(f"reliability_bins takes one column; got y_true {t.shape}, y_prob "
                         f"{p.shape} (use ece_per_class for (N, C) arrays)")
    t, p = t[:, 0].astype(np.float64), p[:, 0].astype(np.float64)
    edges = np.linspace(0.0, 1.0, m + 1)
    # side="left": a probability equal to an inner edge m/M belongs to the bin it closes
    index = np.searchsorted(edges[1:-1], p, side="left")
    counts = np.bincount(index, minlength=m)
    sum_p = np.bincount(index, weights=p, minlength=m)
    sum_t = np.bincount(index, weights=t, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sum_p / counts, np.nan)
        rate = np.where(counts > 0, sum_t / counts, np.nan)
    return ReliabilityBins(edges, counts.astype(np.int64), mean_p, rate)


def expected_calibration_error(y_true: Any, y_prob: Any, n_bins: int = 10) -> float:
    """ECE of one binary column (Guo et al. 2017) with ``n_bins`` equal-width bins.

    Args:
        y_true: ``(N,)`` 0/1 truth.
        y_prob: ``(N,)`` predicted probabilities of the positive class.
        n_bins: Number of bins.

    Returns:
        ECE in [0, 1]; 0 for a perfectly calibrated forecaster.
    """
    return reliability_bins(y_true, y_prob, n_bins).ece


def ece_per_class(y_true: Any, y_prob: Any, n_bins: int = 10) -> np.ndarray:
    """ECE of each column of ``(N, C)`` multi-label truth and probabilities → ``(C,)``."""
    t = as_binary_matrix(y_true, "y_true")
    p = as_probability_matrix(y_prob, "y_prob")
    check_same_rows(t, "y_true", p, "y_prob")
    return np.array([expected_calibration_error(t[:, c], p[:, c], n_bins)
                     for c in range(t.shape[1])])
