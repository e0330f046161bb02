"""Shared plumbing of the attention heads: feature layouts, tokens and positional encodings.

Backbones hand over their last features in one of three layouts (timm ``forward_features``):
CNNs ``(B, C, H, W)`` ("nchw"), Swin ``(B, H, W, C)`` ("nhwc"), ViT ``(B, P + N, C)`` tokens
with P class/register tokens in front of N = h·w patch tokens ("nlc"). :class:`FeatureMapHead`
turns any of them into a ``(B, C, h, w)`` grid (ViT prefix tokens dropped) so every head works
with every backbone family. :func:`feature_map_options` is what the model factory passes so a
head knows the layout for sure (a Swin map with H = C would otherwise look like NCHW).

The 2-D sine encoding is DETR's (Carion et al., "End-to-End Object Detection with
Transformers", ECCV 2020), after Vaswani et al. (2017).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from funduslab.models.families import family_of

__all__ = ["FeatureMapHead", "PositionEncoding", "feature_map_options", "sine_position_encoding"]

LAYOUTS = ("auto", "nchw", "nhwc", "nlc")


def feature_map_options(head_cls: Any, family: str, num_prefix_tokens: int) -> dict[str, Any]:
    """Layout keyword options for a head that reads feature maps (``{}`` for pooled heads).

    Args:
        head_cls: The registered head class/factory.
        family: Backbone family, a name in :data:`~funduslab.models.families.FAMILIES`.
        num_prefix_tokens: ViT class/register tokens in front of the patch tokens.
    """
    if not getattr(head_cls, "needs_feature_map", False):
        return {}
    try:
        params = inspect.signature(head_cls).parameters
    except (TypeError, ValueError):
        return {}
    options: dict[str, Any] = {}
    if "feature_layout" in params:
        options["feature_layout"] = family_of(family).feature_layout
    if "num_prefix_tokens" in params:
        options["num_prefix_tokens"] = int(num_prefix_tokens)
    return options


class FeatureMapHead(nn.Module):
    """Base of the heads that read the backbone's feature map (``needs_feature_map = True``).

    Args:
        num_features: Channels C of the backbone features.
        feature_layout: ``"nchw"``, ``"nhwc"``, ``"nlc"`` or ``"auto"`` (3-D → tokens; 4-D →
            NCHW when dim 1 is C, else NHWC when the last dim is C).
        num_prefix_tokens: ViT tokens to drop before the patch grid; ``None`` → the remainder
            above the largest square (1 for 65 tokens).

    Subclasses implement ``forward(features) -> (B, K)`` and ``attention_maps(features) ->
    (B, M, h, w)`` (non-negative; see :mod:`funduslab.models.heads`).
    """

    needs_feature_map = True

    def __init__(
        self, num_features: int, feature_layout: str = "auto", num_prefix_tokens: int | None = None
    ) -> None:
        super().__init__()
        if feature_layout not in LAYOUTS:
            raise ValueError(f"feature_layout must be one of {', '.join(LAYOUTS)}, "
                             f"got {feature_layout!r}")
        if num_prefix_tokens is not None and num_prefix_tokens < 0:
            raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
        self.num_features = int(num_features)
        self.feature_layout = feature_layout
        self.num_prefix_tokens = num_prefix_tokens

    def _layout(self, features: torch.Tensor) -> str:
        if self.feature_layout != "auto":
            return self.feature_layout
        if features.ndim == 3:
            return "nlc"
        if features.ndim == 4 and features.shape[1] == self.num_features:
            return "nchw"
        if features.ndim == 4 and features.shape[-1] == self.num_features:
            return "nhwc"
        raise ValueError(f"{type(self).__name__} expects (B, C, H, W), (B, H, W, C) or (B, N, C) "
                         f"features with C={self.num_features}, got {tuple(features.shape)}")

    def feature_grid(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features in any layout → ``(B, C, h, w)``."""
        layout = self._layout(features)
        expected = 3 if layout == "nlc" else 4
        channel_dim = 1 if layout == "nchw" else -1
        if features.ndim != expected or features.shape[channel_dim] != self.num_features:
            raise ValueError(f"{type(self).__name__}: {layout} features with C={self.num_features} "
                             f"expected, got shape {tuple(features.shape)}")
        if layout == "nchw":
            return features
        if layout == "nhwc":
            return features.permute(0, 3, 1, 2)
        b, n, c = features.shape
        prefix = self.num_prefix_tokens
        if prefix is None:
            prefix = n - math.isqrt(n) ** 2
        side = math.isqrt(n - prefix)
        if side * side != n - prefix or side == 0:
            raise ValueError(f"{n} tokens minus {prefix} prefix tokens is not a square patch grid")
        return features[:, prefix:].transpose(1, 2).reshape(b, c, side, side)

    def tokens(self, features: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Backbone features → spatial tokens ``(B, h·w, C)`` (row-major) and the grid ``(h, w)``."""
        grid = self.feature_grid(features)
        return grid.flatten(2).transpose(1, 2), (int(grid.shape[2]), int(grid.shape[3]))

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def sine_position_encoding(
    h: int, w: int, dim: int, temperature: float = 10000.0, device: torch.device | None = None
) -> torch.Tensor:
    """2-D sine/cosine encoding ``(h·w, dim)``: half the channels encode the row, half the column.

    Positions are normalised to (0, 2π] so the encoding is resolution-independent (DETR).
    """
    if dim % 4:
        raise ValueError(f"the sine position encoding needs dim divisible by 4, got {dim}")
    scale = 2 * math.pi
    ys = torch.arange(1, h + 1, dtype=torch.float32, device=device) / h * scale
    xs = torch.arange(1, w + 1, dtype=torch.float32, device=device) / w * scale
    quarter = dim // 4
    freq = temperature ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    ey = ys[:, None] / freq  # (h, dim/4)
    ex = xs[:, None] / freq  # (w, dim/4)
    ey = torch.cat([ey.sin(), ey.cos()], dim=1)[:, None, :].expand(h, w, dim // 2)
    ex = torch.cat([ex.sin(), ex.cos()], dim=1)[None, :, :].expand(h, w, dim // 2)
    return torch.cat([ey, ex], dim=2).reshape(h * w, dim)


class PositionEncoding(nn.Module):
    """Positional encoding added to ``(B, h·w, dim)`` tokens.

    Args:
        dim: Token width.
        kind: ``"sine"`` (fixed 2-D sine), ``"learned"`` (a ``grid_size²`` table, bicubically
            resized to the token grid) or ``"none"``.
        grid_size: Side of the learned table.
    """

    KINDS = ("sine", "learned", "none")

    def __init__(self, dim: int, kind: str = "sine", grid_size: int = 16) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"pos must be one of {', '.join(self.KINDS)}, got {kind!r}")
        if kind == "sine" and dim % 4:
            raise ValueError(f"pos='sine' needs dim divisible by 4, got dim={dim}")
        self.kind = kind
        self.dim = dim
        self.table = None
        if kind == "learned":
            self.table = nn.Parameter(torch.zeros(1, dim, grid_size, grid_size))
            nn.init.trunc_normal_(self.table, std=0.02)

    def encoding(self, grid: tuple[int, int], like: torch.Tensor) -> torch.Tensor | None:
        """The ``(1, h·w, dim)`` encoding for a ``(h, w)`` grid (``None`` for ``"none"``)."""
        h, w = grid
        if self.kind == "sine":
            return sine_position_encoding(h, w, self.dim, device=like.device).to(like.dtype)[None]
        if self.table is not None:
            table = self.table
            if table.shape[-2:] != (h, w):
                table = F.interpolate(table, size=(h, w), mode="bicubic", align_corners=False)
            return table.flatten(2).transpose(1, 2).to(like.dtype)
        return None

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.encoding(grid, tokens)
        return tokens if pos is None else tokens + pos
