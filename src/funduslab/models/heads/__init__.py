"""Classifier heads, registered by name.

A head turns backbone features into logits. Heads that only need a pooled vector set
``needs_feature_map = False`` and receive ``(B, C)``; attention heads set it ``True`` and receive the
backbone's feature map — ``(B, C, H, W)`` for CNNs, ``(B, N, C)`` tokens for transformers. Every
head is built as ``HEADS.get(name)(num_features, num_outputs, dropout=..., **options)``.

Registered: ``linear``, ``mlp`` (pooled); ``se``, ``channel``, ``spatial``, ``cbam``, ``mha``,
``class_query`` (feature map; see :mod:`.feature_map` for the layouts they accept — CNN
``(B, C, H, W)``, Swin ``(B, H, W, C)``, ViT ``(B, P + h·w, C)`` with P prefix tokens; the model
factory passes ``feature_layout`` and ``num_prefix_tokens`` so no layout is guessed).

Attention-map contract — every feature-map head implements::

    attention_maps(features) -> Tensor  # (B, M, h, w), float, values >= 0

where ``features`` is exactly what the head's ``forward`` receives (the backbone's
``forward_features`` output) and ``(h, w)`` is the backbone's feature grid (ViT prefix tokens
dropped). Callers upsample the maps to the image (e.g. bilinear to ``(H, W)``) and may min–max
normalise each map; no head normalises them for display. Per head:

* ``class_query``: M = K, one map per label (its query's attention, heads averaged; sums to 1).
* ``mha``: M = 1, attention received per token in the last block, averaged over heads and queries
  (``pool="mean"``; sums to 1) or the class token's attention (``pool="cls"``).
* ``cbam``, ``spatial``: M = 1, the spatial gate in (0, 1).
* ``se``, ``channel``: M = K, ReLU'd class activation maps of the channel-gated features (channel
  attention has no spatial map of its own).

It runs the head once more with attention weights enabled (training uses the fast fused path),
so call it under ``torch.no_grad()`` and ``model.eval()`` for explanations.
"""

from funduslab.registry import Registry, import_modules_of

HEADS: Registry = Registry("head")

import_modules_of(__name__, __path__)  # each module registers its heads: a new head is one file

__all__ = ["HEADS"]
