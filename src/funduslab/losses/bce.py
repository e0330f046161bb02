"""Binary cross-entropy on logits, plain and with per-class positive weights."""

from __future__ import annotations

import torch
from torch import nn

from funduslab.losses.base import LOSSES, ClassCounts

__all__ = ["bce", "weighted_bce"]


@LOSSES.register("bce")
def bce(counts: ClassCounts | None = None) -> nn.Module:
    """``-[y log σ(z) + (1 - y) log(1 - σ(z))]`` averaged over samples and classes."""
    return nn.BCEWithLogitsLoss()


@LOSSES.register("weighted_bce")
def weighted_bce(counts: ClassCounts | None = None, max_weight: float = 10.0) -> nn.Module:
    """BCE with ``pos_weight_c = negatives_c / positives_c`` (clipped to ``max_weight``).

    Raises:
        ValueError: without training counts (the weights come from them).
    """
    if counts is None:
        raise ValueError("loss 'weighted_bce' needs the training split's class counts")
    pos = torch.as_tensor(counts.positives, dtype=torch.float32).clamp(min=1)
    neg = torch.as_tensor(counts.negatives, dtype=torch.float32)
    return nn.BCEWithLogitsLoss(pos_weight=(neg / pos).clamp(max=max_weight))
