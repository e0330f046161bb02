"""Class-balanced loss from the effective number of samples.

Cui, Jia, Lin, Song & Belongie, "Class-Balanced Loss Based on Effective Number of Samples",
CVPR 2019 (arXiv:1901.05555). A group with ``n`` training samples counts as

    E_n = (1 − β^n) / (1 − β)          (β ∈ [0, 1); β → 1 gives E_n → n, β = 0 gives E_n = 1)

samples, and its loss terms are weighted ``w ∝ 1 / E_n``. For multi-label data each class ``c``
is a binary problem with two groups, its positives (``n = positives_c``) and its negatives
(``n = negatives_c``), so there are 2K weights::

    w⁺_c = 1 / E(positives_c),   w⁻_c = 1 / E(negatives_c),
    rescaled jointly so that Σ_c (w⁺_c + w⁻_c) = 2K        (mean weight 1, Cui et al. eq. 3)

Joint rescaling keeps both the positive/negative balance within a disease and the emphasis on
rarer diseases (a rare disease's positives weigh more than a common one's). The loss is

    CB = mean_{b,c} [ y·w⁺_c + (1 − y)·w⁻_c ] · base(z_bc, y_bc)

with ``base`` = BCE or the sigmoid focal term ``(1 − p_t)^γ · BCE`` (Cui et al.'s best variant;
no α, the class weights take its place). Counts of 0 are treated as 1. β = 0 makes every weight
1, i.e. the plain base loss.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from funduslab.losses.base import LOSSES, ClassCounts, MaskedMultiLabelLoss
from funduslab.losses.focal import focal_terms, validate_gamma

__all__ = ["ClassBalancedLoss", "class_balanced", "effective_number_weights"]

BASES = ("bce", "focal")


def effective_number_weights(counts: ClassCounts, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-class weights for positives and negatives from the effective number of samples.

    Args:
        counts: Training positives/negatives per class, ``(K,)`` each.
        beta: β in [0, 1).

    Returns:
        ``(w_pos (K,), w_neg (K,))`` float64, jointly summing to 2K.

    Raises:
        ValueError: β outside [0, 1).
    """
    beta = float(beta)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"loss option beta must be in [0, 1) (typical 0.9 … 0.9999; 0 = all "
                         f"weights 1), got {beta}")
    n = np.concatenate([np.asarray(counts.positives, dtype=np.float64),
                        np.asarray(counts.negatives, dtype=np.float64)]).clip(min=1)
    effective = (1.0 - np.power(beta, n)) / (1.0 - beta)
    weights = 1.0 / effective
    weights = weights * len(weights) / weights.sum()
    k = len(n) // 2
    return weights[:k], weights[k:]


class ClassBalancedLoss(MaskedMultiLabelLoss):
    """Per-(class, polarity) weighted BCE or focal loss, mean over the observed ``(B, K)``
    entries (NaN targets are missing; the counts behind the weights are observed labels only).

    Args:
        pos_weight: ``(K,)`` weights of positive targets.
        neg_weight: ``(K,)`` weights of negative targets.
        base: ``"bce"`` or ``"focal"``.
        gamma: Focusing parameter of the focal base (ignored for ``bce``).
    """

    def __init__(self, pos_weight: torch.Tensor, neg_weight: torch.Tensor,
                 base: Literal["bce", "focal"] = "focal", gamma: float = 2.0) -> None:
        super().__init__()
        if base not in BASES:
            raise ValueError(f"loss option base must be one of {list(BASES)}, got {base!r}")
        self.base = base
        self.gamma = validate_gamma("gamma", gamma) if base == "focal" else 0.0
        self.register_buffer("pos_weight", torch.as_tensor(pos_weight, dtype=torch.float32))
        self.register_buffer("neg_weight", torch.as_tensor(neg_weight, dtype=torch.float32))

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``logits (B, K)``, ``targets (B, K)`` in [0, 1] → ``(B, K)`` weighted terms."""
        if logits.shape[-1] != self.pos_weight.numel():
            raise ValueError(f"class-balanced loss was built for {self.pos_weight.numel()} classes "
                             f"but the model has {logits.shape[-1]} outputs")
        y = targets.float()
        weight = self.pos_weight * y + self.neg_weight * (1 - y)
        return weight * focal_terms(logits, y, self.gamma)


@LOSSES.register("class_balanced")
def class_balanced(counts: ClassCounts | None = None, beta: float = 0.999,
                   base: Literal["bce", "focal"] = "focal", gamma: float = 2.0) -> nn.Module:
    """Class-balanced loss (Cui et al. 2019) with weights from the training counts.

    Raises:
        ValueError: without training counts, β outside [0, 1), unknown ``base`` or γ < 0.
    """
    if counts is None:
        raise ValueError("loss 'class_balanced' needs the training split's class counts "
                         "(positives and negatives per class) to compute its weights")
    w_pos, w_neg = effective_number_weights(counts, beta)
    return ClassBalancedLoss(torch.from_numpy(w_pos), torch.from_numpy(w_neg), base, gamma)
