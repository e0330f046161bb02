"""Loss registry and the label counts count-based losses are built from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from funduslab.registry import Registry

__all__ = ["LOSSES", "ClassCounts", "build_loss"]

LOSSES: Registry = Registry("loss")


@dataclass(frozen=True)
class ClassCounts:
    """Positives and negatives per class on the training split.

    Args:
        positives: ``(K,)`` number of positive samples per class.
        negatives: ``(K,)`` number of negative samples per class.
    """

    positives: np.ndarray
    negatives: np.ndarray

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> "ClassCounts":
        """Counts from a ``(N, K)`` 0/1 label matrix."""
        labels = np.asarray(labels)
        pos = labels.sum(axis=0).astype(np.int64)
        return cls(positives=pos, negatives=labels.shape[0] - pos)


def build_loss(name: str, counts: ClassCounts | None = None, **options: Any) -> nn.Module:
    """Build a registered loss; ``ValueError`` lists the valid names for an unknown one."""
    return LOSSES.get(name)(counts, **options)
