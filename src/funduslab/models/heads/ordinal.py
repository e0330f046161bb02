"""CORAL ordinal head: one shared score plus K−1 rank biases (Cao, Mirjalili & Raschka,
"Rank consistent ordinal regression for neural networks", Pattern Recognit. Lett. 140, 2020).

The K−1 binary tasks "grade > k" share every weight; only their biases differ, which makes the
cumulative probabilities rank-consistent (Cao et al., Theorem 1). Any registered head with one
output computes the shared score, so attention or (later) dual-image fusion heads become ordinal
heads by name: ``head: coral, head_options: {base: se}``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from funduslab.models.heads import HEADS

__all__ = ["CoralHead"]


@HEADS.register("coral")
class CoralHead(nn.Module):
    """Shared score ``s(x)`` from a base head with one output, plus biases: ``z_k = s(x) + b_k``.

    Args:
        num_features: Width C of the backbone features.
        num_outputs: Number of rank tasks, K−1 (4 for DR grades 0–4).
        dropout: Passed to the base head.
        base: Registered head computing the shared score (``linear``, ``mlp``, ``se`` …).
        **base_options: Options of the base head.

    Forward: base input (pooled ``(B, C)`` or the feature map) → cumulative logits ``(B, K-1)``.
    """

    # Class level True so the model factory offers the backbone's feature layout; each instance
    # then says what its base head reads (the model checks the instance attribute).
    needs_feature_map = True

    def __init__(self, num_features: int, num_outputs: int, dropout: float = 0.2,
                 base: str = "linear", feature_layout: str | None = None,
                 num_prefix_tokens: int | None = None, **base_options: object) -> None:
        super().__init__()
        if base == "coral":
            raise ValueError("head 'coral' needs a base head other than 'coral' "
                             "(e.g. base: linear)")
        if num_outputs < 1:
            raise ValueError(f"head 'coral' needs num_outputs = K-1 >= 1, got {num_outputs}")
        base_cls = HEADS.get(base)
        if getattr(base_cls, "needs_feature_map", False):
            params = inspect.signature(base_cls).parameters
            layout = {"feature_layout": feature_layout, "num_prefix_tokens": num_prefix_tokens}
            base_options = {**{k: v for k, v in layout.items() if v is not None and k in params},
                            **base_options}
        self.base = base_cls(num_features, 1, dropout=dropout, **base_options)
        self.needs_feature_map = bool(getattr(self.base, "needs_feature_map", False))
        # Descending start (coral-pytorch's CoralLayer): P(grade > k) falls with k from step one.
        self.rank_bias = nn.Parameter(torch.arange(num_outputs, 0, -1).float() / num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, C) or map -> (B, K-1)
        return self.base(features) + self.rank_bias
