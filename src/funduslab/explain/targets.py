"""Where a CAM looks and how it reads the activations: target layers, reshapes, class targets.

Grad-CAM and its relatives (Selvaraju et al., ICCV 2017) weight the channels of one layer's
activations. That layer comes from the backbone's :class:`~funduslab.models.backbones.BackboneInfo`
(``gradcam_layer``); its output must become a ``(B, C, h, w)`` map.
CNNs already give one; ViT tokens and Swin's NHWC maps are reshaped by their backbone family
(:mod:`funduslab.models.families`). Reshape transforms are plain functions, as pytorch-grad-cam
expects; targets are its ``ClassifierOutputTarget`` (one logit per disease).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from funduslab.models.backbones import backbone_info
from funduslab.models.families import family_of
from funduslab.models.feature_maps import backbone_of

__all__ = ["class_targets", "reshape_transform_for", "target_layer"]

ReshapeFn = Callable[[torch.Tensor], torch.Tensor]


def reshape_transform_for(model: nn.Module, image_hw: tuple[int, int]) -> ReshapeFn | None:
    """The reshape the CAM layer of ``model`` (a FundusModel or backbone) needs, or ``None``.

    Args:
        model: A :class:`~funduslab.models.classifier.FundusModel` or its backbone.
        image_hw: Input size ``(H, W)`` in pixels (fixes the ViT patch grid).
    """
    backbone = backbone_of(model)
    info = backbone_info(backbone)
    family = family_of(info.family)
    if family.feature_layout == "nchw":
        return None
    return functools.partial(family.to_nchw, backbone=backbone, image_hw=image_hw,
                             num_prefix_tokens=info.num_prefix_tokens)


def target_layer(model: nn.Module) -> nn.Module:
    """The module whose output Grad-CAM weights (``BackboneInfo.gradcam_layer``)."""
    backbone = backbone_of(model)
    return backbone.get_submodule(backbone_info(backbone).gradcam_layer)


def class_targets(index: int, batch_size: int) -> list[ClassifierOutputTarget]:
    """One pytorch-grad-cam target per image, all on output ``index`` (one disease)."""
    return [ClassifierOutputTarget(index) for _ in range(batch_size)]
