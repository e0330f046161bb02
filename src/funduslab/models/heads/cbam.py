"""CBAM heads: the full module and its two halves on the last feature map, then pool → linear.

Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018. ``cbam`` applies the channel
gate then the spatial gate; ``channel`` and ``spatial`` apply one of them, which shows which half
carries the gain. The spatial heads' :meth:`attention_maps` is their spatial gate ``(B, 1, h, w)``
in (0, 1); the channel head has none of its own and returns class activation maps (as the SE head).
"""

from __future__ import annotations

import torch

from funduslab.models.attention import CBAM, ChannelAttention, SpatialAttention
from funduslab.models.heads import HEADS
from funduslab.models.heads.se import GatedPoolHead

__all__ = ["CBAMHead", "ChannelAttentionHead", "SpatialAttentionHead"]


@HEADS.register("cbam")
class CBAMHead(GatedPoolHead):
    """CBAM (channel then spatial gate) → pool → dropout → linear.

    Args:
        num_features: Channels C of the backbone features.
        num_outputs: Logits K.
        dropout: Dropout before the linear layer.
        rd_ratio: Channel-MLP reduction ratio.
        kernel_size: Spatial conv size (7; use 3 on small maps if you like).
        feature_layout, num_prefix_tokens: See :class:`FeatureMapHead` (set by the factory).

    ``attention_maps``: the spatial gate ``(B, 1, h, w)``.
    """

    def __init__(
        self, num_features: int, num_outputs: int, dropout: float = 0.2, rd_ratio: float = 1 / 16,
        kernel_size: int = 7, feature_layout: str = "auto", num_prefix_tokens: int | None = None,
    ) -> None:
        super().__init__(num_features, num_outputs, CBAM(num_features, rd_ratio, kernel_size),
                         dropout, feature_layout, num_prefix_tokens)

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # -> (B, 1, h, w)
        return self.gate.spatial_gate(self.feature_grid(features))


@HEADS.register("spatial")
class SpatialAttentionHead(GatedPoolHead):
    """CBAM's spatial gate alone → pool → dropout → linear.

    Args:
        num_features: Channels C of the backbone features.
        num_outputs: Logits K.
        dropout: Dropout before the linear layer.
        kernel_size: Spatial conv size.
        feature_layout, num_prefix_tokens: See :class:`FeatureMapHead`.

    ``attention_maps``: the spatial gate ``(B, 1, h, w)``.
    """

    def __init__(
        self, num_features: int, num_outputs: int, dropout: float = 0.2, kernel_size: int = 7,
        feature_layout: str = "auto", num_prefix_tokens: int | None = None,
    ) -> None:
        super().__init__(num_features, num_outputs, SpatialAttention(kernel_size), dropout,
                         feature_layout, num_prefix_tokens)

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # -> (B, 1, h, w)
        return self.gate.gate(self.feature_grid(features))


@HEADS.register("channel")
class ChannelAttentionHead(GatedPoolHead):
    """CBAM's channel gate alone → pool → dropout → linear.

    Args:
        num_features: Channels C of the backbone features.
        num_outputs: Logits K.
        dropout: Dropout before the linear layer.
        rd_ratio: Channel-MLP reduction ratio.
        feature_layout, num_prefix_tokens: See :class:`FeatureMapHead`.

    ``attention_maps``: ``(B, K, h, w)`` class activation maps of the gated features.
    """

    def __init__(
        self, num_features: int, num_outputs: int, dropout: float = 0.2, rd_ratio: float = 1 / 16,
        feature_layout: str = "auto", num_prefix_tokens: int | None = None,
    ) -> None:
        super().__init__(num_features, num_outputs, ChannelAttention(num_features, rd_ratio),
                         dropout, feature_layout, num_prefix_tokens)

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # -> (B, K, h, w)
        return self.class_activation_maps(features)
