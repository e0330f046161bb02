"""Attention layers for feature maps, and SE insertion into pretrained CNN backbones.

* :class:`SEModule` — squeeze-and-excitation (Hu et al., "Squeeze-and-Excitation Networks",
  CVPR 2018): global average pool → 1×1 conv (C → C·r) → ReLU → 1×1 conv → sigmoid channel gate.
* :class:`ChannelAttention`, :class:`SpatialAttention`, :class:`CBAM` — the convolutional block
  attention module (Woo et al., "CBAM", ECCV 2018): a channel gate from average- *and* max-pooled
  descriptors through a shared MLP, then a spatial gate from a 7×7 conv over the channel-wise mean
  and max maps.

All take ``(B, C, H, W)`` and return the same shape; every gate module has ``gate(x)`` returning
the multiplier it applies (``(B, C, 1, 1)`` or ``(B, 1, H, W)``). The layer names (``fc1``,
``fc2``) follow timm's ``SEModule``.

**Identity initialisation** (``identity_init=True``). Dropping a plain SE block into a pretrained
network changes it: a freshly initialised sigmoid gate sits near 0.5, so it halves every
activation of that stage and the pretrained features downstream see inputs they were never
trained on. The residual form ``y = x + γ·(x·gate − x)`` with ``γ = 0`` avoids that; we use its
parameter-free equivalent ``y = x · 2σ(z)`` with the last layer producing ``z`` (``fc2`` / the
spatial conv) initialised to zero, so ``2σ(0) = 1`` and ``y = x`` *exactly* at step 0. Compared
with a learnable scalar γ (ReZero, Bachlechner et al., 2020) in front of a randomly initialised
gate, the excitation's own last layer receives a gradient at the first step (with γ = 0 no gate
parameter does), and the gate may also amplify a channel (range 0–2) instead of only damping it.
:func:`insert_se` uses this form.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from timm.layers import make_divisible
from torch import nn

from funduslab.models.backbones import backbone_info

__all__ = [
    "CBAM",
    "ChannelAttention",
    "SEModule",
    "SpatialAttention",
    "inserted_se",
    "insert_se",
]

log = logging.getLogger(__name__)


def _reduced(channels: int, rd_ratio: float, rd_channels: int | None) -> int:
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if not 0 < rd_ratio <= 1:
        raise ValueError(f"rd_ratio must be in (0, 1], got {rd_ratio}")
    return int(rd_channels or make_divisible(channels * rd_ratio, 8, round_limit=0.0))


def _squash(z: torch.Tensor, identity_init: bool) -> torch.Tensor:
    """Gate from logits: ``σ(z)`` (standard) or ``2σ(z)`` (equals 1 where ``z = 0``)."""
    return 2.0 * torch.sigmoid(z) if identity_init else torch.sigmoid(z)


class SEModule(nn.Module):
    """Squeeze-and-excitation channel gate (Hu et al., 2018).

    Args:
        channels: Channels C of the input map.
        rd_ratio: Reduction ratio 1/r of the bottleneck (1/16 in the paper).
        rd_channels: Bottleneck width; overrides ``rd_ratio`` (default: C·r rounded to a
            multiple of 8, at least 8).
        act_layer: Bottleneck activation.
        identity_init: Start as the identity (gate ``2σ(z)``, ``fc2`` zeroed); see the module
            docstring.

    Shapes:
        ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None,
        act_layer: type[nn.Module] = nn.ReLU, identity_init: bool = False,
    ) -> None:
        super().__init__()
        rd = _reduced(channels, rd_ratio, rd_channels)
        self.identity_init = identity_init
        self.fc1 = nn.Conv2d(channels, rd, kernel_size=1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(rd, channels, kernel_size=1)
        if identity_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel multipliers ``(B, C, 1, 1)`` in (0, 1), or (0, 2) when identity-initialised."""
        squeezed = x.mean(dim=(2, 3), keepdim=True)
        return _squash(self.fc2(self.act(self.fc1(squeezed))), self.identity_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return x * self.gate(x)


class ChannelAttention(nn.Module):
    """CBAM channel gate: shared MLP on average- and max-pooled descriptors (Woo et al., 2018).

    Args:
        channels: Channels C of the input map.
        rd_ratio: Bottleneck ratio of the shared MLP (1/16 in the paper).
        rd_channels: Bottleneck width; overrides ``rd_ratio``.
        identity_init: Start as the identity (``fc2`` zeroed, gate ``2σ``).

    Shapes:
        ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, rd_channels: int | None = None,
        identity_init: bool = False,
    ) -> None:
        super().__init__()
        rd = _reduced(channels, rd_ratio, rd_channels)
        self.identity_init = identity_init
        self.fc1 = nn.Conv2d(channels, rd, kernel_size=1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, channels, kernel_size=1)
        if identity_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    def _mlp(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(v)))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel multipliers ``(B, C, 1, 1)``."""
        z = self._mlp(x.mean(dim=(2, 3), keepdim=True)) + self._mlp(x.amax(dim=(2, 3), keepdim=True))
        return _squash(z, self.identity_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return x * self.gate(x)


class SpatialAttention(nn.Module):
    """CBAM spatial gate: a k×k conv over the channel mean and max maps (Woo et al., 2018).

    Args:
        kernel_size: Odd conv size (7 in the paper).
        identity_init: Start as the identity (conv zeroed, gate ``2σ``).

    Shapes:
        ``(B, C, H, W)`` → ``(B, C, H, W)``; :meth:`gate` gives the ``(B, 1, H, W)`` map.
    """

    def __init__(self, kernel_size: int = 7, identity_init: bool = False) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.identity_init = identity_init
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        if identity_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial multipliers ``(B, 1, H, W)``, non-negative."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return _squash(self.conv(pooled), self.identity_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return x * self.gate(x)


class CBAM(nn.Module):
    """Channel gate then spatial gate (Woo et al., 2018).

    Args:
        channels: Channels C of the input map.
        rd_ratio: Channel-MLP bottleneck ratio.
        kernel_size: Spatial conv size.
        identity_init: Start both gates as the identity.

    Shapes:
        ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(
        self, channels: int, rd_ratio: float = 1 / 16, kernel_size: int = 7,
        identity_init: bool = False,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, rd_ratio, identity_init=identity_init)
        self.spatial = SpatialAttention(kernel_size, identity_init=identity_init)

    def spatial_gate(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial attention map ``(B, 1, H, W)`` CBAM applies after its channel gate."""
        return self.spatial.gate(self.channel(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return self.spatial(self.channel(x))


class _ApplyToOutput:
    """Forward hook ``output → module(output)``; a plain object so deepcopy/pickle keep it tied
    to the copied module (no closure)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, _target: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return self.module(output)


def insert_se(backbone: nn.Module, stages: list[int], rd_ratio: float = 1 / 16) -> list[str]:
    """Add identity-initialised SE blocks after chosen feature levels of a CNN backbone.

    The levels are the backbone's ``backbone_info(backbone).se_points`` — the stage outputs that
    are NCHW maps (ResNet ``layer1`` … ``layer4``; EfficientNet ``blocks.1``, ``blocks.2``,
    ``blocks.4``, ``blocks.6``), numbered 1 (shallowest) … N, or -1 … -N from the deep end. Each
    SE multiplies the level's output through a forward hook; the modules live in
    ``backbone.se_blocks`` (state-dict keys ``se_blocks.<level>.fc1.weight`` …), so the
    pretrained weights keep their names and load as before. Because every SE starts as the
    exact identity (see the module docstring), the model's outputs at step 0 equal those of the
    backbone without SE. The choice is recorded as ``backbone.funduslab_se`` so checkpoints can
    rebuild it (:func:`inserted_se`).

    Args:
        backbone: A backbone from :func:`funduslab.models.backbones.create_backbone`.
        stages: Feature levels to gate (1-based; negative counts from the deepest).
        rd_ratio: SE reduction ratio.

    Returns:
        The module names that received an SE block.

    Raises:
        ValueError: a ViT/Swin backbone (no feature maps), a level out of range, or SE already
            inserted.
    """
    info = backbone_info(backbone)
    points = info.se_points
    if not points:
        raise ValueError(f"backbone {info.name!r} ({info.family}) has no NCHW stage outputs to "
                         "insert SE into; model.attention_stages works with CNN backbones only")
    if getattr(backbone, "funduslab_se", None):
        raise ValueError(f"backbone {info.name!r} already has SE blocks {backbone.funduslab_se}")
    n = len(points)
    chosen: list[int] = []
    for s in stages:
        if isinstance(s, bool) or not isinstance(s, int) or not (1 <= s <= n or -n <= s <= -1):
            names = ", ".join(f"{i + 1}={name}" for i, (name, _) in enumerate(points))
            raise ValueError(f"attention stage {s!r} is not a feature level of {info.name!r}; "
                             f"valid: 1..{n} or -{n}..-1 ({names})")
        level = s if s > 0 else n + 1 + s
        if level not in chosen:
            chosen.append(level)
    chosen.sort()
    if not chosen:
        return []
    blocks = nn.ModuleDict()
    for level in chosen:
        name, channels = points[level - 1]
        se = SEModule(channels, rd_ratio, identity_init=True)
        blocks[name.replace(".", "_")] = se
        backbone.get_submodule(name).register_forward_hook(_ApplyToOutput(se))
    backbone.se_blocks = blocks
    backbone.funduslab_se = {"stages": chosen, "rd_ratio": float(rd_ratio)}
    inserted = [points[level - 1][0] for level in chosen]
    log.info("inserted identity-initialised SE after %s of %s", ", ".join(inserted), info.name)
    return inserted


def inserted_se(backbone: nn.Module) -> dict[str, Any]:
    """``{"se_stages": [...], "se_rd_ratio": r}`` for a backbone with SE inserted, else ``{}``."""
    spec = getattr(backbone, "funduslab_se", None)
    if not spec:
        return {}
    return {"se_stages": list(spec["stages"]), "se_rd_ratio": float(spec["rd_ratio"])}
