"""Losses for ordinal grading (DR grade 0–4), registered by name.

* ``grade_ce`` — cross-entropy over the K grades with label smoothing (Szegedy et al., "Rethinking
  the Inception Architecture", CVPR 2016), optionally weighted by inverse grade frequency.
* ``grade_smooth_l1`` / ``grade_mse`` — regression of the grade as a number from one output.
* ``coral`` — CORAL (Cao, Mirjalili & Raschka, "Rank consistent ordinal regression for neural
  networks with application to age estimation", Pattern Recognit. Lett. 140, 2020): K−1 binary
  tasks "grade > k" on cumulative logits, summed binary cross-entropies, averaged over the batch.

Every loss maps ``(outputs (B, O), grades (B,) or (B, 1), any dtype holding integers) -> scalar``;
targets arrive as floats from the generic training step and are converted here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from funduslab.losses.base import LOSSES, ClassCounts

__all__ = ["CoralLoss", "GradeCrossEntropy", "GradeRegressionLoss", "coral_levels"]


def _grades(target: torch.Tensor) -> torch.Tensor:
    """``(B,)`` or ``(B, 1)`` grades → ``(B,)`` int64."""
    return target.reshape(-1).round().long()


def coral_levels(grades: torch.Tensor, num_grades: int) -> torch.Tensor:
    """Binary rank targets ``levels[b, k] = 1[grade_b > k]``, ``k = 0 … K-2``: ``(B, K-1)``."""
    ranks = torch.arange(num_grades - 1, device=grades.device)
    return (grades.reshape(-1, 1) > ranks).float()


class GradeCrossEntropy(nn.Module):
    """Softmax cross-entropy over K grade logits with label smoothing.

    Args:
        smoothing: ε; the target is ``(1-ε)·onehot + ε/K`` (PyTorch's ``label_smoothing``).
        weight: Optional ``(K,)`` per-grade weights.
    """

    def __init__(self, smoothing: float = 0.1, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        self.register_buffer("weight", weight if weight is None else weight.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # (B, K), (B,)
        return F.cross_entropy(logits.float(), _grades(target), weight=self.weight,
                               label_smoothing=self.smoothing)


class GradeRegressionLoss(nn.Module):
    """SmoothL1 (Huber, ``beta`` in grade units) or MSE between one output and the grade.

    Args:
        kind: ``"smooth_l1"`` or ``"mse"``.
        beta: SmoothL1 switch point between quadratic and linear (grades).
    """

    def __init__(self, kind: str = "smooth_l1", beta: float = 1.0) -> None:
        super().__init__()
        if kind not in ("smooth_l1", "mse"):
            raise ValueError(f"regression loss kind must be 'smooth_l1' or 'mse', got {kind!r}")
        self.kind, self.beta = kind, float(beta)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # (B, 1), (B,)
        if output.ndim != 2 or output.shape[1] != 1:
            raise ValueError("regression expects one output per image (B, 1), "
                             f"got {tuple(output.shape)}")
        score, grade = output.float().reshape(-1), _grades(target).float()
        if self.kind == "mse":
            return F.mse_loss(score, grade)
        return F.smooth_l1_loss(score, grade, beta=self.beta)


class CoralLoss(nn.Module):
    """CORAL loss: ``mean_b Σ_k λ_k · BCE(z_bk, 1[y_b > k])`` over K−1 cumulative logits.

    Args:
        importance: Optional ``(K-1,)`` task weights λ (Cao et al. eq. 4); default all ones.
    """

    def __init__(self, importance: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("importance", importance if importance is None else importance.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # (B, K-1), (B,)
        levels = coral_levels(_grades(target), logits.shape[1] + 1)
        per_task = F.binary_cross_entropy_with_logits(logits.float(), levels, reduction="none")
        if self.importance is not None:
            per_task = per_task * self.importance
        return per_task.sum(dim=1).mean()


@LOSSES.register("grade_ce")
def grade_ce(counts: ClassCounts | None = None, smoothing: float = 0.1,
             balanced: bool = False) -> nn.Module:
    """Label-smoothed cross-entropy; ``balanced`` weights grade g by ``N / (K · n_g)``.

    ``counts.positives`` must hold the number of training images per grade (``(K,)``).
    """
    weight = None
    if balanced:
        if counts is None:
            raise ValueError("loss 'grade_ce' with balanced=true needs the training grade counts")
        n = torch.as_tensor(counts.positives, dtype=torch.float32).clamp(min=1)
        weight = n.sum() / (len(n) * n)
    return GradeCrossEntropy(smoothing, weight)


@LOSSES.register("grade_smooth_l1")
def grade_smooth_l1(counts: ClassCounts | None = None, beta: float = 1.0) -> nn.Module:
    """SmoothL1 regression of the grade (one output)."""
    return GradeRegressionLoss("smooth_l1", beta)


@LOSSES.register("grade_mse")
def grade_mse(counts: ClassCounts | None = None) -> nn.Module:
    """Mean squared error regression of the grade (one output)."""
    return GradeRegressionLoss("mse")


@LOSSES.register("coral")
def coral(counts: ClassCounts | None = None, importance: list[float] | None = None) -> nn.Module:
    """CORAL rank-consistent ordinal loss (K−1 cumulative logits)."""
    return CoralLoss(None if importance is None else torch.tensor(importance, dtype=torch.float32))
