"""Image-level lesion presence from patch probabilities (multiple-instance pooling).

An image is a bag of patches; it shows a lesion when at least one patch does (the standard
multiple-instance assumption, Dietterich et al., *Artif. Intell.* 89, 1997). Poolings, registered
in :data:`POOLINGS`, map the ``(P, K)`` probabilities of one image's P patches to ``(K,)``:

* ``max`` — the most confident patch;
* ``top3_mean`` — mean of the 3 highest (less sensitive to one false-positive patch);
* ``noisy_or`` — ``1 - Π(1 - p)``, the probability that at least one patch is positive if the
  patches were independent (Zhang, Platt & Viola, *NIPS* 2005); it grows with the number of
  patches, so its threshold must be tuned.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from funduslab.registry import Registry

__all__ = ["POOLINGS", "pool_by_image"]

Pooling = Callable[[np.ndarray], np.ndarray]
POOLINGS: Registry[Pooling] = Registry("patch pooling")


@POOLINGS.register("max")
def _max(p: np.ndarray) -> np.ndarray:
    return p.max(axis=0)


@POOLINGS.register("top3_mean")
def _top3_mean(p: np.ndarray, k: int = 3) -> np.ndarray:
    k = min(k, len(p))
    return np.sort(p, axis=0)[-k:].mean(axis=0)


@POOLINGS.register("noisy_or")
def _noisy_or(p: np.ndarray) -> np.ndarray:
    # 1 - exp(Σ log(1 - p)), clipped so that one p = 1 does not give log(0)
    return 1.0 - np.exp(np.log1p(-np.clip(p, 0.0, 1.0 - 1e-7)).sum(axis=0))


def pool_by_image(image_ids: pd.Series | list[str], probs: np.ndarray,
                  pooling: str = "max") -> tuple[list[str], np.ndarray]:
    """Pool patch probabilities per source image.

    Args:
        image_ids: ``(P,)`` source image of each patch.
        probs: ``(P, K)`` patch probabilities.
        pooling: Name in :data:`POOLINGS`.

    Returns:
        Image ids (first-appearance order) and their ``(I, K)`` pooled probabilities.
    """
    fn = POOLINGS.get(pooling)
    ids = pd.Series(list(image_ids)).astype(str)
    probs = np.asarray(probs, dtype=np.float64)
    if len(ids) != len(probs):
        raise ValueError(f"{len(ids)} image ids but {len(probs)} probability rows")
    order = list(dict.fromkeys(ids))
    groups = ids.groupby(ids, sort=False).indices
    return order, np.stack([fn(probs[groups[i]]) for i in order]) if order else probs[:0]
