"""The model every setup trains: normalisation → backbone → head.

Normalisation lives inside the model so a saved model needs only images scaled to [0, 1]; the
backbone follows timm's API (``forward_features``, ``forward_head(pre_logits=True)``,
``num_features``) so timm models and the wrapped course checkpoints plug in alike.
"""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.heads import HEADS

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FundusModel", "build_head"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_head(
    name: str, num_features: int, num_outputs: int, dropout: float = 0.2, **options: object
) -> nn.Module:
    """Build a registered head (``ValueError`` lists the valid names for an unknown one)."""
    return HEADS.get(name)(num_features, num_outputs, dropout=dropout, **options)


class FundusModel(nn.Module):
    """Backbone + head with built-in input normalisation.

    Args:
        backbone: A timm-style feature extractor (``num_classes=0``).
        head: A registered head; see :mod:`funduslab.models.heads`.
        mean: Per-channel mean of the backbone's pre-training data (RGB, 0–1 scale).
        std: Per-channel standard deviation, likewise.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_features(self) -> int:
        return int(self.backbone.num_features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] ``(B, 3, H, W)`` → backbone feature map."""
        return self.backbone.forward_features((x - self.mean) / self.std)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map → pooled vector ``(B, C)`` as the backbone pools it."""
        return self.backbone.forward_head(features, pre_logits=True)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map → logits ``(B, K)``."""
        if getattr(self.head, "needs_feature_map", False):
            return self.head(features)
        return self.head(self.pool(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] ``(B, 3, H, W)`` → logits ``(B, K)``."""
        return self.forward_head(self.forward_features(x))
