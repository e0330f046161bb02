"""Tiny test backbones (``tiny_cnn``, ``tiny_vit``, ``tiny_swin``) registered in ``BACKBONES``.

They are kept apart from :mod:`funduslab.models.backbones` because they are not timm
registrations: each is built directly from a timm class with a few thousand to a few hundred
thousand parameters, has no ImageNet weights, and exists so that tests, examples and smoke runs
exercise the CNN, ViT and Swin code paths in seconds on a CPU. They reuse the layouts of the real
families, so everything downstream (partial fine-tuning, SE points, Grad-CAM) sees the same
module names as for ResNet, ViT and Swin.

:mod:`funduslab.models.backbones` imports this module at its end, so the names are registered
whenever the registry is.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from funduslab.models.backbones import (
    BACKBONES,
    BackboneSpec,
    _resnet_layout,
    _swin_layout,
    _vit_layout,
)

__all__: list[str] = []


def _tiny_cnn(in_chans: int = 3, img_size: int | None = None, **kw: Any) -> nn.Module:
    """A 4-stage ResNet with one BasicBlock per stage and 16–128 channels (~0.4 M parameters)."""
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16,
                  in_chans=in_chans, num_classes=0, **kw)


def _tiny_vit(in_chans: int = 3, img_size: int | None = None, **kw: Any) -> nn.Module:
    """A 2-block ViT, 8-px patches, 32-dim tokens, dynamic input size."""
    from timm.models.vision_transformer import VisionTransformer

    kw.setdefault("dynamic_img_size", True)
    return VisionTransformer(img_size=img_size or 64, patch_size=8, embed_dim=32, depth=2,
                             num_heads=2, mlp_ratio=2.0, in_chans=in_chans, num_classes=0, **kw)


def _tiny_swin(in_chans: int = 3, img_size: int | None = None, **kw: Any) -> nn.Module:
    """A 2-stage Swin, 4-px patches, 4×4 windows, 16/32 channels."""
    from timm.models.swin_transformer import SwinTransformer

    kw.setdefault("strict_img_size", False)
    kw.setdefault("drop_path_rate", 0.0)
    kw.setdefault("window_size", 4)
    return SwinTransformer(img_size=img_size or 64, patch_size=4, embed_dim=16,
                           depths=(1, 1), num_heads=(1, 2), mlp_ratio=2.0, in_chans=in_chans,
                           num_classes=0, **kw)


_TINY = {"imagenet": "none", "input_size": (64, 64)}
BACKBONES.register("tiny_cnn")(BackboneSpec("cnn", _resnet_layout, build=_tiny_cnn,
                                            first_conv="conv1", classifier="fc", **_TINY))
BACKBONES.register("tiny_vit")(BackboneSpec("vit", _vit_layout, build=_tiny_vit,
                                            first_conv="patch_embed.proj", classifier="head",
                                            **_TINY))
BACKBONES.register("tiny_swin")(BackboneSpec("swin", _swin_layout, build=_tiny_swin,
                                             first_conv="patch_embed.proj", classifier="head.fc",
                                             **_TINY))
