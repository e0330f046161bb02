"""SE head: squeeze-and-excitation on the last feature map, average pool, linear (course Task 3-1).

Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018. The channel gate re-weights the
backbone's last map per image before pooling, so the classifier sees features whose mix depends on
the image. Channel attention has no spatial map of its own; :meth:`attention_maps` returns the
class activation maps (Zhou et al., "Learning Deep Features for Discriminative Localization",
CVPR 2016) of the gated features, which decompose the logits exactly
(``logit_k = mean_hw CAM_k + b_k`` before the ReLU).
"""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.attention import SEModule
from funduslab.models.heads import HEADS
from funduslab.models.heads.feature_map import FeatureMapHead

__all__ = ["GatedPoolHead", "SEHead"]


class GatedPoolHead(FeatureMapHead):
    """A gate module on the ``(B, C, h, w)`` grid → global average pool → dropout → linear.

    Args:
        num_features: Channels C.
        num_outputs: Logits K.
        gate: Module ``(B, C, h, w) → (B, C, h, w)``.
        dropout: Dropout before the linear layer.
        feature_layout, num_prefix_tokens: See :class:`FeatureMapHead`.
    """

    def __init__(
        self, num_features: int, num_outputs: int, gate: nn.Module, dropout: float = 0.2,
        feature_layout: str = "auto", num_prefix_tokens: int | None = None,
    ) -> None:
        super().__init__(num_features, feature_layout, num_prefix_tokens)
        self.gate = gate
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # features -> (B, K)
        gated = self.gate(self.feature_grid(features))
        return self.fc(self.drop(gated.mean(dim=(2, 3))))

    def class_activation_maps(self, features: torch.Tensor) -> torch.Tensor:
        """ReLU'd class activation maps of the gated features, ``(B, K, h, w)``."""
        gated = self.gate(self.feature_grid(features))
        cam = torch.einsum("kc,bchw->bkhw", self.fc.weight.to(gated.dtype), gated)
        return torch.relu(cam)


@HEADS.register("se")
class SEHead(GatedPoolHead):
    """SE block (Hu et al., 2018) on the last feature map → pool → dropout → linear.

    Args:
        num_features: Channels C of the backbone features.
        num_outputs: Logits K.
        dropout: Dropout before the linear layer.
        rd_ratio: SE reduction ratio (1/16).
        feature_layout, num_prefix_tokens: See :class:`FeatureMapHead` (set by the factory).

    ``attention_maps``: ``(B, K, h, w)`` class activation maps of the gated features.
    """

    def __init__(
        self, num_features: int, num_outputs: int, dropout: float = 0.2, rd_ratio: float = 1 / 16,
        feature_layout: str = "auto", num_prefix_tokens: int | None = None,
    ) -> None:
        super().__init__(num_features, num_outputs, SEModule(num_features, rd_ratio), dropout,
                         feature_layout, num_prefix_tokens)

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # -> (B, K, h, w)
        return self.class_activation_maps(features)
