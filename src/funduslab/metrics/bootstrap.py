"""Percentile-bootstrap confidence intervals for any metric.

Rows (images) are resampled with replacement, the same rows from every array, and the metric is
recomputed on each resample; the interval is the ``alpha/2`` and ``1-alpha/2`` percentiles of the
resampled values (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13).
Resamples on which the metric is undefined (it raises ``ValueError`` or returns a non-finite value,
e.g. AUROC of a resample holding one class) are skipped and counted. With ``stratify``, rows are
resampled within each stratum, keeping stratum sizes fixed (e.g. keep the number of positives).

All resample indices are drawn up front from ``numpy.random.default_rng(seed)`` (in chunks, to
bound memory), and :func:`bootstrap_metrics` reuses them for every metric so intervals of
different metrics come from the same resamples.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BootstrapCI", "bootstrap_ci", "bootstrap_metrics"]

logger = logging.getLogger(__name__)

MetricFn = Callable[..., float]
_MAX_INDEX_CELLS = 4_000_000  # indices held at once (n_boot_chunk * N)


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its percentile-bootstrap interval.

    Unpacks as ``point, low, high = bootstrap_ci(...)``.

    Attributes:
        point: Metric on the full data (NaN if undefined there).
        low: Lower bound (``alpha/2`` percentile); NaN if no resample was valid.
        high: Upper bound (``1-alpha/2`` percentile).
        n_boot: Resamples drawn.
        n_skipped: Resamples on which the metric was undefined and were skipped.
        alpha: 1 - confidence level.
    """

    point: float
    low: float
    high: float
    n_boot: int
    n_skipped: int
    alpha: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.point, self.low, self.high))

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready ``{"value", "ci_low", "ci_high", "alpha", "n_boot", "n_skipped"}``."""
        return {
            "value": self.point,
            "ci_low": self.low,
            "ci_high": self.high,
            "alpha": self.alpha,
            "n_boot": self.n_boot,
            "n_skipped": self.n_skipped,
        }


def _check_inputs(
    arrays: tuple[Any, ...], n_boot: int, alpha: float, stratify: Any
) -> tuple[list[np.ndarray], np.ndarray | None]:
    if not arrays:
        raise ValueError("bootstrap needs at least one array to resample")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    arrs = [np.asarray(a) for a in arrays]
    for k, a in enumerate(arrs):
        if a.ndim == 0:
            raise ValueError(f"array {k} is a scalar; bootstrap resamples rows of arrays")
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        shapes = ", ".join(str(a.shape) for a in arrs)
        raise ValueError(f"all arrays must have the same number of rows; got shapes {shapes}")
    if n == 0:
        raise ValueError("bootstrap needs at least one row")
    strata = None
    if stratify is not None:
        strata = np.asarray(stratify)
        if strata.ndim != 1 or strata.shape[0] != n:
            raise ValueError(
                f"stratify must be a 1-D vector of length {n}; got shape {strata.shape}"
            )
    return arrs, strata


def _index_chunks(
    n: int, n_boot: int, seed: int, strata: np.ndarray | None
) -> Iterator[np.ndarray]:
    """Yield (B_chunk, n) resample index arrays, n_boot rows in total, deterministic in seed."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_INDEX_CELLS // n)
    groups = None
    if strata is not None:
        _, inv = np.unique(strata, return_inverse=True)
        groups = [np.flatnonzero(inv == g) for g in range(inv.max() + 1)]
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        if groups is None:
            yield rng.integers(0, n, size=(b, n))
        else:
            parts = [g[rng.integers(0, g.size, size=(b, g.size))] for g in groups]
            yield np.concatenate(parts, axis=1)
        done += b


def _evaluate(fn: MetricFn, arrays: list[np.ndarray]) -> float:
    """Metric value, or NaN where it is undefined (raises ValueError / returns non-finite)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(fn(*arrays))
    except ValueError:
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def _summarise(name: str, point: float, values: np.ndarray, alpha: float) -> BootstrapCI:
    valid = values[np.isfinite(values)]
    skipped = int(values.size - valid.size)
    if skipped:
        logger.warning(
            "bootstrap %s: metric undefined on %d of %d resamples; skipped",
            name,
            skipped,
            values.size,
        )
    if valid.size == 0:
        low = high = float("nan")
    else:
        q_low, q_high = np.percentile(valid, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        low, high = float(q_low), float(q_high)
    return BootstrapCI(float(point), low, high, int(values.size), skipped, float(alpha))


def _bootstrap(
    metric_fns: Mapping[str, MetricFn],
    arrays: tuple[Any, ...],
    n_boot: int,
    alpha: float,
    seed: int,
    stratify: Any,
) -> dict[str, BootstrapCI]:
    if not metric_fns:
        raise ValueError("metric_fns is empty; pass {name: metric_fn}")
    arrs, strata = _check_inputs(arrays, n_boot, alpha, stratify)
    names = list(metric_fns)
    points = {k: _evaluate(metric_fns[k], arrs) for k in names}
    values = {k: np.empty(n_boot) for k in names}
    row = 0
    for idx_chunk in _index_chunks(arrs[0].shape[0], n_boot, seed, strata):
        for idx in idx_chunk:
            sample = [a[idx] for a in arrs]
            for k in names:
                values[k][row] = _evaluate(metric_fns[k], sample)
            row += 1
    return {k: _summarise(k, points[k], values[k], alpha) for k in names}


def bootstrap_metrics(
    metric_fns: Mapping[str, MetricFn],
    *arrays: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratify: Any = None,
) -> dict[str, dict[str, float | int]]:
    """Point estimates and bootstrap intervals for several metrics on the same resamples.

    Args:
        metric_fns: ``{name: fn}``; each ``fn(*arrays)`` returns a float.
        *arrays: Arrays with N rows each (e.g. ``y_true`` (N, C), ``y_prob`` (N, C)).
        n_boot: Number of resamples.
        alpha: 1 - confidence level (0.05 → 95 % interval).
        seed: Seed for ``numpy.random.default_rng``.
        stratify: Optional (N,) stratum labels; rows are resampled within strata.

    Returns:
        ``{name: {"value", "ci_low", "ci_high", "alpha", "n_boot", "n_skipped"}}`` (for
        ``metrics.json``).

    Raises:
        ValueError: on mismatched row counts, empty input, bad ``n_boot``/``alpha``/``stratify``.
    """
    res = _bootstrap(metric_fns, arrays, n_boot, alpha, seed, stratify)
    return {k: ci.as_dict() for k, ci in res.items()}


def bootstrap_ci(
    metric_fn: MetricFn,
    *arrays: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratify: Any = None,
) -> BootstrapCI:
    """Percentile-bootstrap interval of one metric.

    Args:
        metric_fn: ``metric_fn(*arrays) -> float``, e.g. :func:`course_average_f1`.
        *arrays: Arrays with N rows each, resampled together.
        n_boot: Number of resamples.
        alpha: 1 - confidence level.
        seed: Seed for ``numpy.random.default_rng``.
        stratify: Optional (N,) stratum labels; rows are resampled within strata.

    Returns:
        :class:`BootstrapCI` — unpacks as ``(point, low, high)``; ``.n_skipped`` counts
        resamples where the metric was undefined (also logged as a warning).

    Raises:
        ValueError: on mismatched row counts, empty input, bad ``n_boot``/``alpha``/``stratify``.
    """
    name = getattr(metric_fn, "__name__", "metric")
    return _bootstrap({name: metric_fn}, arrays, n_boot, alpha, seed, stratify)[name]
