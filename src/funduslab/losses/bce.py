"""Binary cross-entropy on logits, plain and with per-class positive weights.

Both mask missing (NaN) targets out (:class:`~funduslab.losses.base.MaskedMultiLabelLoss`), so
rows joined from a dataset without a label train on the labels they have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from funduslab.losses.base import LOSSES, ClassCounts, MaskedMultiLabelLoss

__all__ = ["BinaryCrossEntropy", "bce", "weighted_bce"]


class BinaryCrossEntropy(MaskedMultiLabelLoss):
    """``-[w_c·y log σ(z) + (1 - y) log(1 - σ(z))]``, mean over the observed ``(B, K)`` entries.

    Args:
        pos_weight: Optional ``(K,)`` weights ``w_c`` of the positive terms (``None``: 1).
    """

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight",
                             None if pos_weight is None else torch.as_tensor(pos_weight).float())

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight,
                                                  reduction="none")


@LOSSES.register("bce")
def bce(counts: ClassCounts | None = None) -> nn.Module:
    """``-[y log σ(z) + (1 - y) log(1 - σ(z))]`` averaged over observed samples and classes."""
    return BinaryCrossEntropy()


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
    return BinaryCrossEntropy(pos_weight=(neg / pos).clamp(max=max_weight))
