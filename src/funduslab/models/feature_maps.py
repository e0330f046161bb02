"""Any backbone's last features as a ``(B, C, h, w)`` map, whatever its family.

Used where a map is needed outside a head: the attention-guided loss
(:mod:`funduslab.training.guided`) and the CAM reshapes (:mod:`funduslab.explain.targets`).
The per-family rule lives in :mod:`funduslab.models.families`.
"""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.backbones import backbone_info
from funduslab.models.families import family_of

__all__ = ["backbone_of", "feature_map_nchw"]


def backbone_of(model: nn.Module) -> nn.Module:
    """The backbone of a :class:`~funduslab.models.classifier.FundusModel`, or ``model`` itself."""
    return getattr(model, "backbone", model)


def feature_map_nchw(model: nn.Module, features: torch.Tensor,
                     image_hw: tuple[int, int]) -> torch.Tensor:
    """``model.forward_features`` output → ``(B, C, h, w)`` (ViT prefix tokens dropped).

    Args:
        model: A FundusModel or a backbone built by ``create_backbone``.
        features: Its ``forward_features`` output, in the family's layout.
        image_hw: Input size ``(H, W)`` in pixels (fixes the ViT patch grid).
    """
    backbone = backbone_of(model)
    info = backbone_info(backbone)
    return family_of(info.family).to_nchw(features, backbone, image_hw, info.num_prefix_tokens)
