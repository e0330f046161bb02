"""Class-query head: one learned query per disease attends over the spatial tokens.

Query2Label (Liu et al., "Query2Label: A Simple Transformer Way to Multi-Label Classification",
2021) and ML-Decoder (Ridnik et al., WACV 2023): each label gets its own query vector that
cross-attends (``nn.MultiheadAttention``) over the backbone's tokens, and its own linear read-out
(ML-Decoder's group-FC with one query per class). Every disease therefore looks at its own
regions — the optic cup for glaucoma, the macula for AMD, lesions anywhere for DR — and
:meth:`ClassQueryHead.attention_maps` returns one map per disease.
"""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.heads import HEADS
from funduslab.models.heads.feature_map import FeatureMapHead, PositionEncoding

__all__ = ["ClassQueryHead"]


@HEADS.register("class_query")
class ClassQueryHead(FeatureMapHead):
    """K learned queries × cross-attention over tokens → per-query FFN → per-class linear.

    Args:
        num_features: Channels C of the backbone features.
        num_outputs: Logits K (one query each).
        dropout: Dropout on the residual branches and before the read-out.
        dim: Width after the input projection (256).
        num_heads: Attention heads (4).
        mlp_ratio: FFN hidden width / ``dim``.
        pos: Position encoding added to the keys: ``"sine"``, ``"learned"`` or ``"none"``.
        grid_size: Side of the learned position table.
        attn_dropout: Dropout on the attention weights.
        feature_layout, num_prefix_tokens: See :class:`FeatureMapHead` (set by the factory).

    ``attention_maps``: ``(B, K, h, w)``, each disease query's attention over the grid (averaged
    over heads); every map sums to 1.
    """

    def __init__(
        self, num_features: int, num_outputs: int, dropout: float = 0.2, dim: int = 256,
        num_heads: int = 4, mlp_ratio: float = 2.0, pos: str = "sine", grid_size: int = 16,
        attn_dropout: float = 0.0, feature_layout: str = "auto",
        num_prefix_tokens: int | None = None,
    ) -> None:
        super().__init__(num_features, feature_layout, num_prefix_tokens)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        hidden = max(1, int(dim * mlp_ratio))
        self.proj = nn.Linear(num_features, dim)
        self.norm_tokens = nn.LayerNorm(dim)
        self.pos = PositionEncoding(dim, pos, grid_size)
        self.queries = nn.Parameter(torch.zeros(num_outputs, dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.norm_queries = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=attn_dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)
        self.class_weight = nn.Parameter(torch.zeros(num_outputs, dim))
        nn.init.trunc_normal_(self.class_weight, std=0.02)
        self.class_bias = nn.Parameter(torch.zeros(num_outputs))

    def _attend(
        self, features: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
        tokens, grid = self.tokens(features)
        values = self.norm_tokens(self.proj(tokens))  # (B, N, dim)
        keys = self.pos(values, grid)  # positions on the keys only (DETR)
        q = self.queries.to(values.dtype).expand(values.shape[0], -1, -1)  # (B, K, dim); traceable
        a, weights = self.attn(self.norm_queries(q), keys, values, need_weights=need_weights,
                               average_attn_weights=True)
        x = q + self.drop(a)
        x = x + self.drop(self.ffn(self.norm_ffn(x)))
        return x, weights, grid

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # features -> (B, K)
        x, _, _ = self._attend(features, need_weights=False)
        x = self.drop(x)
        return (x * self.class_weight.to(x.dtype)).sum(dim=-1) + self.class_bias.to(x.dtype)

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # -> (B, K, h, w)
        _, weights, (h, w) = self._attend(features, need_weights=True)
        assert weights is not None  # (B, K, N)
        return weights.reshape(weights.shape[0], weights.shape[1], h, w)
