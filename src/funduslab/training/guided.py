"""Attention-guided learning: class activation maps that agree under a horizontal flip.

A fundus photograph flipped left–right is still a valid fundus photograph (a right eye becomes a
left eye), and where the model looks should flip with it. Following Guo et al., "Visual Attention
Consistency under Image Transforms for Multi-Label Image Classification" (CVPR 2019), the
training loss becomes

    loss = classification(x) + λ · mean[(M(x) − flip(M(flip(x))))²]

where ``M`` are the model's class activation maps ``(B, K, h, w)`` computed differentiably from
the last feature map:

* a linear head (``head.fc``) on pooled features gives the CAM of Zhou et al., "Learning Deep
  Features for Discriminative Localization" (CVPR 2016): ``M_k = Σ_c W_kc · F_c`` — for
  average-pooled backbones the logit is exactly the spatial mean of ``M_k`` plus the bias;
* a head with ``attention_maps(features) -> (B, M, h, w)`` uses those maps;
* any other head falls back to the class-agnostic activation energy ``mean_c |F_c|``.

Both views go through the backbone in one batch (BatchNorm sees them together); the
classification term uses the original view's logits. ViT tokens and Swin NHWC maps are brought
to ``(B, C, h, w)`` first (:func:`funduslab.models.feature_maps.feature_map_nchw`). Switch it on with
``train.attention_consistency: λ > 0``; it applies to the fine-tuning setups (full, partial,
two-stage target stage), not to ``frozen`` (cached features) or ``none``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable

import torch
from torch import nn

from funduslab.models.feature_maps import feature_map_nchw
from funduslab.training.module import FitOptions, FundusTask

__all__ = [
    "AttentionConsistencyTask",
    "class_activation_maps",
    "consistency_task",
    "flip_consistency",
]

log = logging.getLogger(__name__)


def _final_linear(head: nn.Module) -> nn.Linear | None:
    fc = getattr(head, "fc", None)
    if isinstance(fc, nn.Linear) and not getattr(head, "needs_feature_map", False):
        return fc
    return None


def class_activation_maps(
    model: nn.Module, features: torch.Tensor, image_hw: tuple[int, int]
) -> torch.Tensor:
    """Differentiable activation maps of ``model`` (a FundusModel) from its feature map.

    Args:
        model: FundusModel whose ``forward_features`` produced ``features``.
        features: Backbone output for images of size ``image_hw`` (NCHW, tokens or NHWC).
        image_hw: Input ``(H, W)`` in pixels.

    Returns:
        ``(B, K, h, w)`` CAMs for a linear head, ``(B, M, h, w)`` head attention maps, or
        ``(B, 1, h, w)`` activation energy for other heads.
    """
    head = model.head
    if callable(getattr(head, "attention_maps", None)):
        return head.attention_maps(features)
    fmap = feature_map_nchw(model, features, image_hw)
    fc = _final_linear(head)
    if fc is not None:
        return torch.einsum("kc,bchw->bkhw", fc.weight.to(fmap.dtype), fmap)
    return fmap.abs().mean(dim=1, keepdim=True)


def flip_consistency(maps: torch.Tensor, maps_of_flipped: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between maps and the flipped-back maps of the flipped images.

    Args:
        maps: ``(B, K, h, w)`` maps of the images.
        maps_of_flipped: ``(B, K, h, w)`` maps of the horizontally flipped images.

    Returns:
        Scalar ``mean((maps − maps_of_flipped.flip(-1))²)``.
    """
    if maps.shape != maps_of_flipped.shape:
        raise ValueError(f"map shapes differ: {tuple(maps.shape)} vs "
                         f"{tuple(maps_of_flipped.shape)}")
    return torch.mean((maps.float() - maps_of_flipped.float().flip(-1)) ** 2)


class AttentionConsistencyTask(FundusTask):
    """:class:`FundusTask` whose training loss adds ``λ ·`` :func:`flip_consistency` of the CAMs.

    Args:
        net: A :class:`~funduslab.models.classifier.FundusModel` (whole model, not a head).
        loss: Classification loss ``(logits, targets) -> scalar``.
        label_names: Output names.
        options: Optimisation settings.
        head_params: Parameters trained at ``options.lr``.
        consistency_weight: ``λ > 0``.

    Raises:
        TypeError: ``net`` has no ``forward_features``/``forward_head`` (e.g. a bare head).
        ValueError: ``consistency_weight`` not positive.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        label_names: list[str],
        options: FitOptions,
        head_params: Iterable[nn.Parameter] | None = None,
        consistency_weight: float = 1.0,
    ) -> None:
        if not (hasattr(net, "forward_features") and hasattr(net, "forward_head")):
            raise TypeError(f"attention consistency needs the whole FundusModel, got "
                            f"{type(net).__name__}; it does not apply to setup 'frozen'")
        if not consistency_weight > 0:
            raise ValueError(f"consistency_weight must be > 0, got {consistency_weight!r}")
        super().__init__(net, loss, label_names, options, head_params)
        self.consistency_weight = float(consistency_weight)

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(classification loss, flip consistency)`` for images ``x`` ``(B, 3, H, W)``."""
        both = torch.cat([x, x.flip(-1)])
        if self.options.channels_last:
            both = both.contiguous(memory_format=torch.channels_last)
        features = self.net.forward_features(both)
        b = len(x)
        logits = self.net.forward_head(features[:b])
        classification = self.loss(logits.float(), y.float())
        maps = class_activation_maps(self.net, features, (int(x.shape[-2]), int(x.shape[-1])))
        return classification, flip_consistency(maps[:b], maps[b:])

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        classification, consistency = self.loss_terms(x, y)
        loss = classification + self.consistency_weight * consistency
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        self.log("train_consistency", consistency, on_step=False, on_epoch=True, batch_size=len(x))
        return loss


def consistency_task(weight: float) -> Callable[..., AttentionConsistencyTask]:
    """A drop-in for the :class:`FundusTask` constructor with ``consistency_weight=weight``."""
    log.info("attention consistency under horizontal flips, weight %.3g", weight)
    return functools.partial(AttentionConsistencyTask, consistency_weight=weight)
