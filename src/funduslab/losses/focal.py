"""Sigmoid focal loss for multi-label classification.

Lin, Goyal, Girshick, He & Dollár, "Focal Loss for Dense Object Detection", ICCV 2017
(arXiv:1708.02002), eq. 5 in its sigmoid form, per class ``c`` and sample ``b``::

    p      = σ(z)
    p_t    = p        if y = 1,   1 − p   if y = 0      (soft y: p·y + (1 − p)(1 − y))
    α_t    = α_c      if y = 1,   1 − α_c if y = 0      (no α: α_t = 1)
    FL     = −α_t (1 − p_t)^γ log p_t  =  α_t (1 − p_t)^γ · BCE(z, y)

averaged over the batch and the K classes. ``γ = 0`` and no α is plain BCE. The values follow
:func:`torchvision.ops.sigmoid_focal_loss` (checked in the tests); the modulating factor is built
from ``σ(−z)`` rather than ``1 − σ(z)`` so it keeps its precision for confident logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from funduslab.losses.base import LOSSES, ClassCounts, MaskedMultiLabelLoss

__all__ = ["SigmoidFocalLoss", "focal", "focal_terms", "validate_gamma"]


def focal_terms(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Unreduced, un-α-weighted focal loss ``(1 − p_t)^γ · BCE(z, y)``.

    Args:
        logits: ``(B, K)`` raw scores z.
        targets: ``(B, K)`` targets y in [0, 1].
        gamma: Focusing parameter γ ≥ 0.

    Returns:
        ``(B, K)`` float32 loss terms.
    """
    logits, targets = logits.float(), targets.float()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if gamma == 0:
        return ce
    # 1 − p_t = p·(1 − y) + (1 − p)·y with 1 − p = σ(−z) exact for large z; the floor keeps the
    # gradient of x^γ finite for γ < 1 where 1 − p_t underflows to 0.
    one_minus_pt = torch.sigmoid(logits) * (1 - targets) + torch.sigmoid(-logits) * targets
    tiny = torch.finfo(one_minus_pt.dtype).tiny
    return ce * one_minus_pt.clamp(min=tiny).pow(gamma)


def validate_gamma(name: str, gamma: float) -> float:
    """Return ``gamma`` as float; ``ValueError`` naming option ``name`` unless it is >= 0."""
    gamma = float(gamma)
    if not gamma >= 0:  # also rejects NaN
        raise ValueError(f"loss option {name} must be >= 0 (0 = no focusing), got {gamma}")
    return gamma


class SigmoidFocalLoss(MaskedMultiLabelLoss):
    """Focal loss on logits, mean over the observed ``(B, K)`` entries (NaN targets: missing).

    Args:
        alpha: ``None`` (no class weighting), a scalar α in [0, 1] for every class, or a
            ``(K,)`` sequence of per-class α_c; positives are weighted α_c, negatives 1 − α_c.
        gamma: Focusing parameter γ ≥ 0 (Lin et al. use 2).

    Raises:
        ValueError: α outside [0, 1], γ < 0, or a per-class α whose length differs from K
            (at the first forward).
    """

    def __init__(self, alpha: float | Sequence[float] | None = None, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = validate_gamma("gamma", gamma)
        if alpha is None:
            self.register_buffer("alpha", None)
        else:
            values = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)
            if values.numel() == 0 or not bool(((values >= 0) & (values <= 1)).all()):
                raise ValueError("loss option alpha must be null, a number in [0, 1] or a list of "
                                 f"per-class numbers in [0, 1]; got {alpha!r}")
            self.register_buffer("alpha", values)

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``logits (B, K)``, ``targets (B, K)`` in [0, 1] → ``(B, K)`` α-weighted terms."""
        loss = focal_terms(logits, targets, self.gamma)
        if self.alpha is not None:
            if self.alpha.numel() not in (1, logits.shape[-1]):
                raise ValueError(f"focal loss alpha has {self.alpha.numel()} values but the model "
                                 f"has {logits.shape[-1]} outputs; give one alpha per class")
            y = targets.float()
            loss = loss * (self.alpha * y + (1 - self.alpha) * (1 - y))
        return loss


@LOSSES.register("focal")
def focal(counts: ClassCounts | None = None, alpha: float | list[float] | None = None,
          gamma: float = 2.0) -> nn.Module:
    """Sigmoid focal loss (Lin et al. 2017); ``alpha`` None / scalar / per-class, ``gamma`` γ."""
    return SigmoidFocalLoss(alpha=alpha, gamma=gamma)
