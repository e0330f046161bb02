"""Layer-wise learning-rate decay: deeper backbone layers train faster than shallow ones.

The optimiser parameter groups follow BEiT (Bao et al., "BEiT: BERT Pre-Training of Image
Transformers", ICLR 2022) and MAE fine-tuning (He et al., CVPR 2022), after ELECTRA (Clark et al.,
ICLR 2020): every backbone parameter gets a depth id ``0 … L`` — stem/patch embedding 0, one id per
unit (ViT block, Swin block counted across stages, CNN stage), final norm ``L`` — and trains at

    backbone_lr · decay ** (L − id)

so the deepest layers keep ``backbone_lr`` and the patch embedding gets ``backbone_lr · decay^L``.
Head parameters train at ``lr``. As in BEiT/MAE/timm, 1-D parameters (biases, norm weights,
layer-scale gammas), position embeddings, class/register tokens and Swin relative position bias
tables get no weight decay (``weight_decay = 0``); every other weight gets ``weight_decay``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from funduslab.models.backbones import BackboneInfo, backbone_info
from funduslab.models.families import family_of

__all__ = ["NO_DECAY_KEYWORDS", "layer_decay_groups", "layer_depth_ids", "skips_weight_decay"]

log = logging.getLogger(__name__)

NO_DECAY_KEYWORDS = (
    "pos_embed", "cls_token", "reg_token", "dist_token", "relative_position_bias_table",
)


def _named(model: nn.Module, name: str) -> list[tuple[str, nn.Parameter]]:
    """``(full name, parameter)`` of submodule ``name``, or of the parameter called ``name``."""
    try:
        return list(model.get_submodule(name).named_parameters(prefix=name))
    except AttributeError:
        return [(name, model.get_parameter(name))]


def layer_depth_ids(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """Depth id ``0 … L`` of every backbone parameter, read from its :class:`BackboneInfo` layout.

    Stem (patch embedding, class token, position embedding; CNN stem conv) is 0; then one id per
    unit in order: a ViT block, a Swin block (counted across stages), a CNN stage; the final
    norm/conv is ``L`` when it holds parameters, else the deepest unit is ``L``. Parameters the
    layout does not name (none for the registered backbones) are put at ``L``.

    Args:
        backbone: a model built by :func:`funduslab.models.backbones.create_backbone`.

    Returns:
        ``({parameter name: depth id}, L)``, names as in ``backbone.named_parameters()``.
    """
    info = backbone_info(backbone)
    family = family_of(info.family)
    ids: dict[str, int] = {}
    for module_name in info.stem:
        for name, _ in _named(backbone, module_name):
            ids.setdefault(name, 0)
    depth = 0
    for stage in info.stages:
        first = depth + 1
        depth = first
        for module_name in stage:
            for name, _ in _named(backbone, module_name):
                block = family.block_index(name, module_name)
                ids.setdefault(name, first + block)
                depth = max(depth, ids[name])
    final = [name for module_name in info.final for name, _ in _named(backbone, module_name)]
    if final:
        depth += 1
        for name in final:
            ids.setdefault(name, depth)
    for name, _ in backbone.named_parameters():
        if name not in ids:
            log.debug("layer decay: %s is outside the %s layout; depth %d", name, info.name, depth)
            ids[name] = depth
    return ids, depth


def skips_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Whether parameter ``name`` gets no weight decay (1-D, bias, embedding/token/bias table)."""
    return param.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_KEYWORDS)


def _find_backbone(net: nn.Module) -> tuple[str, nn.Module] | None:
    for name, module in net.named_modules():
        if isinstance(getattr(module, "funduslab_info", None), BackboneInfo):
            return name, module
    return None


def layer_decay_groups(
    net: nn.Module,
    head_params: Iterable[nn.Parameter] | None,
    lr: float,
    backbone_lr: float,
    weight_decay: float,
    decay: float,
) -> list[dict]:
    """AdamW parameter groups with layer-wise learning-rate decay (BEiT/MAE recipe).

    Args:
        net: the trained module — a :class:`FundusModel` or a bare backbone; the backbone is the
            first submodule carrying a ``funduslab_info``.
        head_params: parameters trained at ``lr``; ``None`` → every parameter is head.
        lr: head learning rate.
        backbone_lr: learning rate of the deepest backbone layer (depth ``L``).
        weight_decay: decoupled weight decay for matrices/kernels; 0 for the no-decay set.
        decay: per-layer factor, ``0 < decay <= 1``; 1 gives the plain head/backbone rates.

    Returns:
        Groups ``{"params", "lr", "weight_decay", "name", "layer_id", "lr_scale"}`` holding every
        trainable parameter of ``net`` exactly once: ``head`` / ``head_no_wd`` first, then
        ``layer<i>`` / ``layer<i>_no_wd`` for ``i = 0 … L``. ``layer_id`` is -1 for the head.
        Trainable parameters outside both the head and the backbone train at ``backbone_lr``.

    Raises:
        ValueError: ``decay`` outside (0, 1].
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {decay!r}")
    head_ids = None if head_params is None else {id(p) for p in head_params}
    depth_of, last = _backbone_depths(net)
    groups: dict[tuple[int, bool], dict] = {}
    outside = 0
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        if head_ids is None or id(param) in head_ids:
            layer, rate, scale = -1, lr, 1.0
        else:
            layer = depth_of.get(name, last)
            outside += name not in depth_of
            scale = decay ** (last - layer)
            rate = backbone_lr * scale
        no_wd = skips_weight_decay(name, param)
        key = (layer, no_wd)
        if key not in groups:
            groups[key] = _new_group(layer, no_wd, rate, scale, weight_decay)
        groups[key]["params"].append(param)
    if outside:
        log.warning("layer decay: %d trainable non-head parameters are outside the backbone "
                    "layout; they train at backbone_lr", outside)
    return [groups[k] for k in sorted(groups)]


def _backbone_depths(net: nn.Module) -> tuple[dict[str, int], int]:
    """``(parameter name in net -> backbone depth, deepest depth L)``; empty and 0 when ``net``
    has no backbone carrying a ``funduslab_info``."""
    found = _find_backbone(net)
    if found is None:
        return {}, 0
    prefix, backbone = found
    ids, last = layer_depth_ids(backbone)
    return {(f"{prefix}.{n}" if prefix else n): d for n, d in ids.items()}, last


def _new_group(layer: int, no_wd: bool, rate: float, scale: float, weight_decay: float) -> dict:
    """An empty parameter group of depth ``layer`` (-1: the head)."""
    label = "head" if layer < 0 else f"layer{layer}"
    return {"params": [], "lr": rate, "weight_decay": 0.0 if no_wd else weight_decay,
            "name": label + ("_no_wd" if no_wd else ""), "layer_id": layer, "lr_scale": scale}
