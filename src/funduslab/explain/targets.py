"""Where a CAM looks and how it reads the activations: target layers, reshapes, class targets.

Grad-CAM and its relatives (Selvaraju et al., ICCV 2017) weight the channels of one layer's
activations. That layer comes from the backbone's :class:`~funduslab.models.backbones.BackboneInfo`
(``gradcam_layer``); its output must become an ``(B, C, h, w)`` map:

* CNNs already give ``(B, C, h, w)``;
* ViT blocks give tokens ``(B, P + h·w, C)`` — drop the ``P`` class/register tokens and fold the
  patch tokens back onto their grid (Dosovitskiy et al., ICLR 2021);
* Swin blocks in timm give ``(B, h, w, C)`` — move channels first (Liu et al., ICCV 2021).

Reshape transforms are plain functions, as pytorch-grad-cam expects; targets are its
``ClassifierOutputTarget`` (one logit per disease).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from funduslab.models.backbones import backbone_info

__all__ = [
    "class_targets",
    "feature_map_nchw",
    "patch_grid",
    "reshape_transform_for",
    "swin_nhwc_to_nchw",
    "target_layer",
    "vit_tokens_to_nchw",
]

ReshapeFn = Callable[[torch.Tensor], torch.Tensor]


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


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def reshape_transform_for(model: nn.Module, image_hw: tuple[int, int]) -> ReshapeFn | None:
    """The reshape the CAM layer of ``model`` (a FundusModel or backbone) needs, or ``None``.

    Args:
        model: A :class:`~funduslab.models.classifier.FundusModel` or its backbone.
        image_hw: Input size ``(H, W)`` in pixels (fixes the ViT patch grid).
    """
    backbone = _backbone(model)
    info = backbone_info(backbone)
    if info.gradcam_layout == "nlc":
        return functools.partial(vit_tokens_to_nchw, grid=patch_grid(backbone, image_hw),
                                 num_prefix_tokens=info.num_prefix_tokens)
    if info.gradcam_layout == "nhwc":
        return swin_nhwc_to_nchw
    return None


def target_layer(model: nn.Module) -> nn.Module:
    """The module whose output Grad-CAM weights (``BackboneInfo.gradcam_layer``)."""
    backbone = _backbone(model)
    return backbone.get_submodule(backbone_info(backbone).gradcam_layer)


def feature_map_nchw(model: nn.Module, features: torch.Tensor,
                     image_hw: tuple[int, int]) -> torch.Tensor:
    """``model.forward_features`` output → ``(B, C, h, w)`` whatever the family.

    ViT features are tokens (prefix tokens dropped), Swin features NHWC, CNN features NCHW.
    """
    info = backbone_info(_backbone(model))
    if info.family == "vit":
        return vit_tokens_to_nchw(features, patch_grid(_backbone(model), image_hw),
                                  info.num_prefix_tokens)
    if info.family == "swin":
        return swin_nhwc_to_nchw(features)
    return features


def class_targets(index: int, batch_size: int) -> list[ClassifierOutputTarget]:
    """One pytorch-grad-cam target per image, all on output ``index`` (one disease)."""
    return [ClassifierOutputTarget(index) for _ in range(batch_size)]
