"""Rebalancing of lesion patch sets, registered by name in :data:`REBALANCERS`.

Lesion patches are rare and unequal (a photograph has dozens of microaneurysm patches and a few
soft-exudate ones, and hundreds of healthy patches), so patch sets are usually undersampled before
training (van Grinsven et al., *IEEE TMI* 35(5), 2016). Labels are multi-hot, so "the patches of
a lesion" are defined through each patch's **primary lesion**: the rarest lesion (fewest positive
patches in the input, ties in ``MA, HE, EX, SE`` order) among those it contains. Groups are then
disjoint and every count below is exact.

A rebalancer is ``(labels (N, K) 0/1, rng, **options) -> sorted kept row indices``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from funduslab.registry import Registry

__all__ = ["REBALANCERS", "primary_lesion", "rebalance"]

Rebalancer = Callable[..., np.ndarray]
REBALANCERS: Registry[Rebalancer] = Registry("patch rebalancing")


def primary_lesion(labels: np.ndarray) -> np.ndarray:
    """Primary lesion of each patch: index of its rarest positive class; ``-1`` when healthy.

    Args:
        labels: ``(N, K)`` 0/1.

    Returns:
        ``(N,)`` int64 in ``-1 … K-1``.
    """
    labels = np.asarray(labels, dtype=bool)
    counts = labels.sum(axis=0)
    order = np.argsort(counts, kind="stable")  # rarest first; ties keep class order
    rank = np.where(labels[:, order], np.arange(len(order)), len(order))
    first = rank.min(axis=1) if labels.shape[1] else np.zeros(len(labels), int)
    return np.where(first < len(order), order[np.minimum(first, len(order) - 1)], -1)


def _sample(idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``idx`` without replacement (all when ``n ≥ len(idx)``)."""
    return idx if n >= len(idx) else rng.choice(idx, size=n, replace=False)


def _per_group(labels: np.ndarray, rng: np.random.Generator, lesion_cap: int,
               healthy_cap: int) -> np.ndarray:
    primary = primary_lesion(labels)
    kept = [_sample(np.flatnonzero(primary == -1), healthy_cap, rng)]
    for c in range(labels.shape[1]):
        kept.append(_sample(np.flatnonzero(primary == c), lesion_cap, rng))
    return np.sort(np.concatenate(kept)).astype(np.int64)


@REBALANCERS.register("none")
def _none(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep every patch."""
    return np.arange(len(labels), dtype=np.int64)


@REBALANCERS.register("lesion_seed")
def _lesion_seed(labels: np.ndarray, rng: np.random.Generator,
                 healthy_ratio: float = 1.0) -> np.ndarray:
    """Undersample every lesion to the rarest lesion's count; keep k× as many healthy patches.

    With ``m`` = positives of the rarest lesion present (the size of its primary group), each
    primary-lesion group keeps ``min(m, group size)`` patches and the healthy patches keep
    ``min(round(healthy_ratio · m), healthy)``.

    Args:
        healthy_ratio: ``k``, healthy patches per patch of the rarest lesion.
    """
    if healthy_ratio < 0:
        raise ValueError(f"healthy_ratio must be ≥ 0, got {healthy_ratio}")
    labels = np.asarray(labels, dtype=bool)
    counts = labels.sum(axis=0)
    present = counts[counts > 0]
    m = int(present.min()) if present.size else 0
    return _per_group(labels, rng, m, int(round(healthy_ratio * m)))


@REBALANCERS.register("cap_per_class")
def _cap_per_class(labels: np.ndarray, rng: np.random.Generator, cap: int = 1000) -> np.ndarray:
    """Keep at most ``cap`` patches per primary lesion and ``cap`` healthy patches."""
    if cap < 1:
        raise ValueError(f"cap must be ≥ 1 patch, got {cap}")
    return _per_group(np.asarray(labels, dtype=bool), rng, int(cap), int(cap))


def rebalance(labels: np.ndarray, name: str = "none", seed: int = 0, **options: Any) -> np.ndarray:
    """Indices of the patches a named strategy keeps.

    Args:
        labels: ``(N, K)`` 0/1 multi-hot labels.
        name: One of ``REBALANCERS.names()``.
        seed: Seed of the undersampling.
        **options: Strategy options (``healthy_ratio``, ``cap``).

    Returns:
        Sorted ``(M,)`` int64 row indices.

    Raises:
        ValueError: unknown strategy (lists the valid ones) or a bad option value.
        TypeError: an option the strategy does not take.
    """
    strategy = REBALANCERS.get(name)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xBA1]))
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (N, K) multi-hot, got shape {labels.shape}")
    try:
        return strategy(labels, rng, **options)
    except TypeError as err:
        raise TypeError(f"rebalancing {name!r}: {err}") from None
