"""Plain heads on the pooled feature vector: the course template's classifier and a small MLP."""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.heads import HEADS

__all__ = ["LinearHead", "MLPHead"]


@HEADS.register("linear")
class LinearHead(nn.Module):
    """Dropout + one linear layer on the pooled features (the course template's head).

    Args:
        num_features: Width C of the pooled backbone features.
        num_outputs: Number of logits (3 for D/G/A).
        dropout: Dropout probability before the linear layer.
    """

    needs_feature_map = False

    def __init__(self, num_features: int, num_outputs: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_outputs)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, K)
        return self.fc(self.drop(pooled))


@HEADS.register("mlp")
class MLPHead(nn.Module):
    """Linear → GELU → dropout → linear; a little capacity for frozen-feature probes.

    Args:
        num_features: Width C of the pooled backbone features.
        num_outputs: Number of logits.
        dropout: Dropout probability.
        hidden: Hidden width (default C // 2).
    """

    needs_feature_map = False

    def __init__(
        self, num_features: int, num_outputs: int, dropout: float = 0.2, hidden: int | None = None
    ) -> None:
        super().__init__()
        hidden = hidden or max(num_features // 2, 16)
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(num_features, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, K)
        return self.net(pooled)
