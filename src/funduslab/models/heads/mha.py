"""MHA head: multi-head self-attention over the spatial tokens, pooled, linear (course Task 3-2).

The backbone's last map becomes h·w tokens, projected to a smaller width ``dim`` (the attention
cost is O((h·w)²·dim)), given positions (2-D sine or learned), passed through ``layers`` pre-norm
transformer blocks (Vaswani et al., "Attention Is All You Need", NeurIPS 2017; pre-norm as in
ViT, Dosovitskiy et al., ICLR 2021) and pooled — the token mean, or a learned class token — into
a linear layer. Self-attention lets distant regions (optic disc, macula, peripheral lesions) inform
each other before pooling, which a CNN's last map only does through its receptive field.
"""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.heads import HEADS
from funduslab.models.heads.feature_map import FeatureMapHead, PositionEncoding

__all__ = ["MHAHead", "TransformerBlock"]


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``.

    Args:
        dim: Token width.
        num_heads: Attention heads (``dim`` must divide by it).
        mlp_ratio: MLP hidden width / ``dim``.
        dropout: Dropout on both residual branches and inside the MLP.
        attn_dropout: Dropout on the attention weights.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 2.0, dropout: float = 0.1,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = max(1, int(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=attn_dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))

    def forward(
        self, x: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, L, dim)`` → same, plus attention weights ``(B, heads, L, L)`` when asked."""
        h = self.norm1(x)
        a, weights = self.attn(h, h, h, need_weights=need_weights, average_attn_weights=False)
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, weights


@HEADS.register("mha")
class MHAHead(FeatureMapHead):
    """Self-attention over spatial tokens → pool → dropout → linear.

    Args:
        num_features: Channels C of the backbone features.
        num_outputs: Logits K.
        dropout: Dropout in the blocks and before the linear layer.
        dim: Token width after the input projection (256).
        num_heads: Attention heads (4).
        layers: Transformer blocks (1).
        mlp_ratio: Block MLP width / ``dim``.
        pos: ``"sine"`` (2-D, fixed), ``"learned"`` or ``"none"``.
        pool: ``"mean"`` over tokens or ``"cls"`` (a learned class token).
        grid_size: Side of the learned position table (resized to the actual grid).
        attn_dropout: Dropout on the attention weights.
        feature_layout, num_prefix_tokens: See :class:`FeatureMapHead` (set by the factory).

    ``attention_maps``: ``(B, 1, h, w)``, the last block's attention received by each token,
    averaged over heads and over queries (``pool="mean"``) or the class token's attention
    (``pool="cls"``), averaged over heads.
    """

    def __init__(
        self, num_features: int, num_outputs: int, dropout: float = 0.2, dim: int = 256,
        num_heads: int = 4, layers: int = 1, mlp_ratio: float = 2.0, pos: str = "sine",
        pool: str = "mean", grid_size: int = 16, attn_dropout: float = 0.0,
        feature_layout: str = "auto", num_prefix_tokens: int | None = None,
    ) -> None:
        super().__init__(num_features, feature_layout, num_prefix_tokens)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        self.pool = pool
        self.proj = nn.Linear(num_features, dim)
        self.pos = PositionEncoding(dim, pos, grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, dropout, attn_dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_outputs)

    def _encode(
        self, features: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
        tokens, grid = self.tokens(features)
        x = self.pos(self.proj(tokens), grid)  # (B, N, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1).to(x.dtype), x], dim=1)
        weights = None
        for i, block in enumerate(self.blocks):
            x, weights = block(x, need_weights=need_weights and i == len(self.blocks) - 1)
        return self.norm(x), weights, grid

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # features -> (B, K)
        x, _, _ = self._encode(features, need_weights=False)
        pooled = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        return self.fc(self.drop(pooled))

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # -> (B, 1, h, w)
        _, weights, (h, w) = self._encode(features, need_weights=True)
        assert weights is not None
        weights = weights.mean(dim=1)  # (B, L, L), heads averaged
        if self.cls_token is not None:
            received = weights[:, 0, 1:]  # the class token's attention over spatial tokens
        else:
            received = weights.mean(dim=1)  # mean over queries
        return received.reshape(len(received), 1, h, w)
