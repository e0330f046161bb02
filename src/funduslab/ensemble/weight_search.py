"""What the weighted-average combiner searches over: simplex weights and their log loss.

``WeightedAveraging`` (``combiners.py``) minimises :func:`log_loss` with :func:`log_loss_grad`
(SLSQP, convex in ``w``) or scores every point of :func:`simplex_grid` for the course F-score.
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np

__all__ = ["EPS", "MAX_GRID", "log_loss", "log_loss_grad", "simplex_grid"]

#: Probabilities are clipped to ``[EPS, 1 - EPS]`` before a log or logit (every combiner).
EPS = 1e-7
MAX_GRID = 200_000


def log_loss(w: np.ndarray, P: np.ndarray, t: np.ndarray) -> float:
    """Mean binary cross-entropy of the ``w``-weighted mean of ``P (M, N, K)`` against ``t``."""
    q = np.clip(np.tensordot(w, P, axes=1), EPS, 1 - EPS)
    return float(-np.mean(t * np.log(q) + (1 - t) * np.log(1 - q)))


def log_loss_grad(w: np.ndarray, P: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Gradient of :func:`log_loss` with respect to ``w`` ``(M,)``."""
    q = np.clip(np.tensordot(w, P, axes=1), EPS, 1 - EPS)
    dq = (q - t) / (q * (1 - q)) / t.size  # d loss / d q
    return np.tensordot(P, dq, axes=([1, 2], [0, 1]))


def simplex_grid(n_members: int, steps: int) -> np.ndarray:
    """All weight vectors with entries in ``{0, 1/steps, …, 1}`` summing to 1 ``(G, M)``."""
    size = comb(steps + n_members - 1, n_members - 1)
    if size > MAX_GRID:
        raise ValueError(f"a simplex grid of step 1/{steps} over {n_members} members has {size} "
                         f"points (> {MAX_GRID}); lower grid_steps or use objective='log_loss'")
    out = []
    for bars in itertools.combinations(range(steps + n_members - 1), n_members - 1):
        edges = (-1, *bars, steps + n_members - 1)
        out.append([edges[i + 1] - edges[i] - 1 for i in range(n_members)])
    return np.asarray(out, dtype=np.float64) / steps
