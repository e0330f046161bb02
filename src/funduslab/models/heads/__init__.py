"""Classifier heads, registered by name.

A head turns backbone features into logits. Heads that only need a pooled vector set
``needs_feature_map = False`` and receive ``(B, C)``; attention heads set it ``True`` and receive the
backbone's feature map — ``(B, C, H, W)`` for CNNs, ``(B, N, C)`` tokens for transformers. Every
head is built as ``HEADS.get(name)(num_features, num_outputs, dropout=..., **options)``.
"""

from funduslab.registry import Registry

HEADS: Registry = Registry("head")

from funduslab.models.heads import linear  # noqa: E402,F401  (registers "linear", "mlp")

__all__ = ["HEADS"]
