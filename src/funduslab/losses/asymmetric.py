"""Asymmetric loss (ASL) for multi-label classification.

Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter & Zelnik-Manor, "Asymmetric Loss For
Multi-Label Classification", ICCV 2021 (arXiv:2009.14119), eqs. 4–8. With ``p = σ(z)`` and the
shifted probability of a negative ``p_m = max(p − m, 0)`` (``m`` = ``clip``)::

    L⁺ = (1 − p)^γ⁺ · log(p)
    L⁻ = p_m^γ⁻   · log(1 − p_m)
    ASL = −mean_{b,c} [ y·L⁺ + (1 − y)·L⁻ ]

Negatives are focused harder than positives (γ⁻ > γ⁺) and easy negatives with ``p < m`` are
discarded entirely. γ⁺ = γ⁻ = 0 and m = 0 give plain BCE. ``log p`` and ``log(1 − p)`` are
log-sigmoids of ±z, so they stay exact (and their gradients finite) at any logit; ``log(1 − p_m)``
for m > 0 is the log of ``min(σ(−z) + m, 1) ≥ m``. ``eps`` floors the base of the focusing
powers (the reference implementation's eps), so ``x^γ`` keeps a finite gradient for γ < 1.
The loss is the mean over elements (the reference sums), matching ``nn.BCEWithLogitsLoss``;
missing (NaN) targets are left out of it (:class:`~funduslab.losses.base.MaskedMultiLabelLoss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from funduslab.losses.base import LOSSES, ClassCounts, MaskedMultiLabelLoss
from funduslab.losses.focal import validate_gamma

__all__ = ["AsymmetricLoss", "asymmetric"]


class AsymmetricLoss(MaskedMultiLabelLoss):
    """ASL on logits, mean over the observed ``(B, K)`` entries (NaN targets: missing).

    Args:
        gamma_neg: Focusing γ⁻ ≥ 0 of negatives (paper: 4).
        gamma_pos: Focusing γ⁺ ≥ 0 of positives (paper: 0–1; default 1).
        clip: Probability margin m in [0, 1) of negatives (paper: 0.05).
        eps: Floor in (0, 1) of the focusing bases.

    Raises:
        ValueError: an option outside its range.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05,
                 eps: float = 1e-8) -> None:
        super().__init__()
        self.gamma_neg = validate_gamma("gamma_neg", gamma_neg)
        self.gamma_pos = validate_gamma("gamma_pos", gamma_pos)
        if not 0.0 <= float(clip) < 1.0:
            raise ValueError(f"loss option clip must be in [0, 1) (0 = no probability shift), "
                             f"got {clip}")
        if not 0.0 < float(eps) < 1.0:
            raise ValueError(f"loss option eps must be in (0, 1), got {eps}")
        self.clip, self.eps = float(clip), float(eps)

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``logits (B, K)``, ``targets (B, K)`` in [0, 1] → ``(B, K)`` ASL terms."""
        z, y = logits.float(), targets.float()
        log_p = F.logsigmoid(z)  # log p
        one_minus_p = torch.sigmoid(-z)  # 1 − p, exact for large z
        if self.clip > 0:
            shifted = (one_minus_p + self.clip).clamp(max=1.0)  # 1 − p_m
            log_neg = torch.log(shifted)
            p_m = 1.0 - shifted
        else:
            log_neg = F.logsigmoid(-z)  # log(1 − p)
            p_m = torch.sigmoid(z)
        loss_pos = log_p
        loss_neg = log_neg
        if self.gamma_pos:
            loss_pos = loss_pos * one_minus_p.clamp(min=self.eps).pow(self.gamma_pos)
        if self.gamma_neg:
            loss_neg = loss_neg * p_m.clamp(min=self.eps).pow(self.gamma_neg)
        return -(y * loss_pos + (1 - y) * loss_neg)


@LOSSES.register("asymmetric")
def asymmetric(counts: ClassCounts | None = None, gamma_neg: float = 4.0, gamma_pos: float = 1.0,
               clip: float = 0.05, eps: float = 1e-8) -> nn.Module:
    """Asymmetric loss (Ridnik et al. 2021): γ⁻, γ⁺, probability margin ``clip``, ``eps``."""
    return AsymmetricLoss(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, eps=eps)
