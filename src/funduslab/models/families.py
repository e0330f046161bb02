"""Backbone families: what differs between CNNs, ViTs and Swins, in one registered object each.

A family owns four things that used to be ``if family == …`` ladders in five modules:

* the layout of its feature maps — CNNs ``(B, C, h, w)`` ("nchw"), Swin stages in timm
  ``(B, h, w, C)`` ("nhwc", Liu et al., ICCV 2021), ViT tokens ``(B, P + h·w, C)`` with ``P``
  class/register tokens in front ("nlc", Dosovitskiy et al., ICLR 2021);
* how such features become a ``(B, C, h, w)`` map (Grad-CAM reshapes, attention heads, the
  attention-guided loss);
* the timm constructor options that size it for an input (ViT/Swin are built for one size);
* how layer-wise learning-rate decay numbers the blocks inside a stage.

A new family is one :class:`BackboneFamily` subclass registered in :data:`FAMILIES`; backbones
name their family in :class:`~funduslab.models.backbones.BackboneSpec`. ``tests/models/
test_families.py`` runs every registered family through the same checks.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn

from funduslab.registry import Registry

__all__ = [
    "FAMILIES",
    "BackboneFamily",
    "FeatureLayout",
    "family_of",
    "patch_grid",
    "swin_nhwc_to_nchw",
    "swin_window_size",
    "vit_tokens_to_nchw",
]

FeatureLayout = Literal["nchw", "nhwc", "nlc"]

#: Family name → :class:`BackboneFamily` (one instance each, registered below the classes).
FAMILIES: Registry = Registry("backbone family")


class BackboneFamily:
    """Base class: a CNN-like family needs nothing overridden.

    Attributes:
        name: Registry name (``"cnn"``, ``"vit"``, ``"swin"``).
        feature_layout: Layout of ``forward_features`` and of the Grad-CAM layer's output.
        stage_maps: Stage outputs are NCHW maps of any input size, so squeeze-excitation can be
            inserted after a stage and the input size may change between epochs.
    """

    name: ClassVar[str] = "cnn"
    feature_layout: ClassVar[FeatureLayout] = "nchw"
    stage_maps: ClassVar[bool] = True

    def to_nchw(self, features: torch.Tensor, backbone: nn.Module, image_hw: tuple[int, int],
                num_prefix_tokens: int = 0) -> torch.Tensor:
        """Features in this family's layout → ``(B, C, h, w)``."""
        return features

    def size_options(self, img_size: int, timm_model: bool) -> dict[str, Any]:
        """Constructor defaults that size the model for ``img_size`` px (``{}``: any size works).

        ``timm_model`` is false for the tiny test backbones, whose builders take fewer options.
        """
        return {}

    def block_index(self, parameter: str, stage: str) -> int:
        """Depth offset of ``parameter`` inside stage ``stage`` for layer-wise LR decay.

        0 for families whose stage is one depth unit (a CNN stage, a ViT block).
        """
        return 0


class CnnFamily(BackboneFamily):
    """Convolutional networks (ResNet, EfficientNet, DenseNet, ConvNeXt): NCHW everywhere."""


class VitFamily(BackboneFamily):
    """Vision Transformers: tokens, a fixed patch grid, built with a dynamic image size."""

    name = "vit"
    feature_layout = "nlc"
    stage_maps = False

    def to_nchw(self, features: torch.Tensor, backbone: nn.Module, image_hw: tuple[int, int],
                num_prefix_tokens: int = 0) -> torch.Tensor:
        return vit_tokens_to_nchw(features, patch_grid(backbone, image_hw), num_prefix_tokens)

    def size_options(self, img_size: int, timm_model: bool) -> dict[str, Any]:
        return {"img_size": img_size, "dynamic_img_size": True}


class SwinFamily(BackboneFamily):
    """Swin Transformers: NHWC stage outputs, windows sized for the input, blocks per stage."""

    name = "swin"
    feature_layout = "nhwc"
    stage_maps = False

    def to_nchw(self, features: torch.Tensor, backbone: nn.Module, image_hw: tuple[int, int],
                num_prefix_tokens: int = 0) -> torch.Tensor:
        return swin_nhwc_to_nchw(features)

    def size_options(self, img_size: int, timm_model: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"img_size": img_size, "strict_img_size": False}
        if timm_model:
            options["window_size"] = swin_window_size(img_size)
        return options

    def block_index(self, parameter: str, stage: str) -> int:
        """Block index inside a Swin stage (``layers.2``); 0 for the stage's patch merging.

        timm runs a stage's ``downsample`` before its blocks, so it shares the depth of the
        stage's first block — as in timm's own ``group_matcher`` for Swin.
        """
        rest = parameter[len(stage) + 1:]
        return int(rest.split(".")[1]) if rest.startswith("blocks.") else 0


for _family in (CnnFamily(), VitFamily(), SwinFamily()):
    FAMILIES.register(_family.name)(_family)


def family_of(name: str) -> BackboneFamily:
    """The registered family ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    return FAMILIES.get(name)


def vit_tokens_to_nchw(
    tokens: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1
) -> torch.Tensor:
    """ViT tokens ``(B, P + h·w, C)`` → patch feature map ``(B, C, h, w)``.

    Args:
        tokens: Block output, class/register tokens first, patch tokens in row-major order.
        grid: ``(h, w)`` patches per column and row.
        num_prefix_tokens: ``P``, the tokens in front of the patch tokens (1 for a class token).

    Raises:
        ValueError: the token count is not ``P + h·w``.
    """
    h, w = grid
    if tokens.ndim != 3 or tokens.shape[1] != num_prefix_tokens + h * w:
        raise ValueError(f"expected ViT tokens (B, {num_prefix_tokens} + {h}*{w}, C), got "
                         f"{tuple(tokens.shape)}")
    patches = tokens[:, num_prefix_tokens:, :]
    return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


def swin_nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    """Swin (timm) stage output ``(B, h, w, C)`` → ``(B, C, h, w)``."""
    if x.ndim != 4:
        raise ValueError(f"expected a Swin feature map (B, h, w, C), got {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2)


def patch_grid(backbone: nn.Module, image_hw: tuple[int, int]) -> tuple[int, int]:
    """Patch grid ``(h, w)`` a ViT backbone makes of an ``image_hw`` input (pixels)."""
    patch = backbone.patch_embed.patch_size
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return image_hw[0] // ph, image_hw[1] // pw


def swin_window_size(img_size: int, default: int = 7) -> int:
    """Swin window side for ``img_size`` px with 4-px patches: ``img_size / 32`` when that is whole.

    The Swin paper fine-tunes at a larger resolution by enlarging the window so that the last
    stage is one window (224 px → 7, 384 px → 12) and interpolating the relative position bias
    tables bicubically (Liu et al., ICCV 2021, §4.1); 256 px thus gets 8. Sizes that are not a
    multiple of 32, or smaller than ``32 · default``, keep ``default`` (timm pads to the window).
    """
    return max(default, img_size // 32) if img_size % 32 == 0 else default
