"""Dual-image models: two photographs pass one shared backbone and are fused before the head.

DeepDRiD (Liu et al., "DeepDRiD: Diabetic Retinopathy — Grading and Image Quality Estimation
Challenge", Patterns 3(6), 2022) takes two photographs of every eye; its challenge entries grade
an eye better from both views than from either alone. Here every image stays the *anchor* of one
sample (so predictions, metrics and submissions remain per image) and its *partner* — the other
image of its pair, see :mod:`funduslab.training.pairs` — is the second view::

    (B, 2, 3, H, W) ──backbone (shared)──► pooled (B, 2, C) ──fusion──► (B, C') ──head──► (B, K)

Fusions are registered by name in :data:`FUSIONS` (``model.dual`` in the config):

* ``concat``    — ``[anchor, partner]`` → ``(B, 2C)``; the head sees which view is the anchor.
* ``mean``      — average of the two pooled vectors → ``(B, C)``; symmetric in the views.
* ``attention`` — attention-based pooling (Ilse, Tomczak & Welling, "Attention-based Deep Multiple
  Instance Learning", ICML 2018) in its simplest form: a learned score ``s_v = w·h_v + b`` per
  view (``Linear(C, 1)``), ``a = softmax_v(s)``, output ``Σ_v a_v h_v`` → ``(B, C)``. ``w`` and
  ``b`` start at zero, so at step 0 the weights are exactly 1/2 each and the fusion *is* ``mean``
  (a neutral start, like an identity-initialised attention block); the score layer still gets a
  gradient from the first step (``∂s_v/∂w = h_v``), so it learns to favour the more informative
  view — e.g. the sharper of two shots.

A plain ``(B, 3, H, W)`` batch is read as anchor = partner (the backbone runs once per image), so
Grad-CAM, the web page and other single-image tools work unchanged. Heads that read the feature
map (``needs_feature_map``) are not supported: the fusion works on pooled vectors.
"""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.classifier import IMAGENET_MEAN, IMAGENET_STD, FundusModel
from funduslab.registry import Registry

__all__ = [
    "FUSIONS",
    "AttentionFusion",
    "ConcatFusion",
    "DualFundusModel",
    "Fusion",
    "MeanFusion",
    "build_fusion",
    "dual_mode",
    "pooled_heads",
]

FUSIONS: Registry = Registry("dual-image fusion")


class Fusion(nn.Module):
    """Base class: pooled views ``(B, V, C)`` → one vector per sample ``(B, out_features)``.

    Args:
        num_features: Width C of each view's pooled backbone features.
    """

    name = ""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    @property
    def out_features(self) -> int:
        """Width of the fused vector (what the head reads)."""
        return self.num_features

    def forward(self, views: torch.Tensor) -> torch.Tensor:  # (B, V, C) -> (B, out_features)
        raise NotImplementedError


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """Anchor then partner, concatenated: ``(B, 2, C)`` → ``(B, 2C)``."""

    name = "concat"

    @property
    def out_features(self) -> int:
        return 2 * self.num_features

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        if views.shape[1] != 2:
            raise ValueError(f"concat fusion expects 2 views (B, 2, C), got {tuple(views.shape)}")
        return views.flatten(1)


@FUSIONS.register("mean")
class MeanFusion(Fusion):
    """Average of the views: ``(B, V, C)`` → ``(B, C)``."""

    name = "mean"

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return views.mean(dim=1)


@FUSIONS.register("attention")
class AttentionFusion(Fusion):
    """Softmax-weighted sum of the views with a learned score per view (Ilse et al. 2018).

    ``score = Linear(C, 1)``, zero-initialised so training starts from equal weights (= ``mean``).
    """

    name = "attention"

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.score = nn.Linear(self.num_features, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def weights(self, views: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, V)`` over the views (each row sums to 1)."""
        return torch.softmax(self.score(views).squeeze(-1).float(), dim=1).to(views.dtype)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return (self.weights(views).unsqueeze(-1) * views).sum(dim=1)


def build_fusion(name: str, num_features: int) -> Fusion:
    """Registered fusion for C-wide pooled features (``ValueError`` lists the valid names)."""
    return FUSIONS.get(name)(num_features)


def pooled_heads() -> list[str]:
    """Heads usable in dual mode: those reading the pooled vector (plus ``coral`` on one)."""
    from funduslab.models.heads import HEADS

    names = [n for n in HEADS.names() if not getattr(HEADS.get(n), "needs_feature_map", False)]
    return names + ["coral (with a pooled base head)"]


class DualFundusModel(FundusModel):
    """A :class:`FundusModel` whose head reads two fused views of one eye.

    Args:
        backbone: Shared timm-style feature extractor (``num_classes=0``).
        head: Registered pooled-vector head with ``fusion.out_features`` inputs.
        fusion: A registered :class:`Fusion`.
        mean: Per-channel normalisation mean (RGB, 0–1 scale).
        std: Per-channel normalisation standard deviation.
        head_name: Head name for error messages.

    Raises:
        ValueError: ``head`` reads the feature map (``needs_feature_map``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        fusion: Fusion,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        head_name: str | None = None,
    ) -> None:
        if getattr(head, "needs_feature_map", False):
            raise ValueError(
                f"head {head_name or type(head).__name__!r} reads the backbone's feature map, "
                f"which dual-image mode (model.dual={fusion.name!r}) does not support; use one of "
                f"{', '.join(pooled_heads())}, or model.dual: none"
            )
        super().__init__(backbone, head, mean, std)
        self.fusion = fusion

    @property
    def dual(self) -> str:
        """The fusion's registry name (``model.dual``)."""
        return self.fusion.name

    @property
    def num_features(self) -> int:
        """Width the head reads: the fused vector (``2C`` for ``concat``, else ``C``)."""
        return self.fusion.out_features

    def pooled_views(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, V, 3, H, W)`` in [0, 1] → pooled features ``(B, V, C)`` (one pass)."""
        b, v = x.shape[:2]
        flat = x.flatten(0, 1)  # (B·V, 3, H, W); a 5-D batch cannot be channels_last itself
        if _channels_last(self):
            flat = flat.contiguous(memory_format=torch.channels_last)
        pooled = self.pool(self.forward_features(flat))  # (B·V, C)
        return pooled.view(b, v, -1)

    def fuse_head(self, views: torch.Tensor) -> torch.Tensor:
        """Pooled views ``(B, V, C)`` → logits ``(B, K)`` (fusion, then head)."""
        return self.head(self.fusion(views))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map of single images → logits ``(B, K)``, each image its own partner."""
        pooled = self.pool(features)
        return self.fuse_head(torch.stack([pooled, pooled], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, 3, H, W)`` (anchor, partner) or ``(B, 3, H, W)`` (partner = anchor) → logits.

        Raises:
            ValueError: any other shape.
        """
        if x.ndim == 4:
            return self.forward_head(self.forward_features(x))
        if x.ndim != 5 or x.shape[1] != 2:
            raise ValueError(f"dual model expects (B, 2, 3, H, W) or (B, 3, H, W) images, got "
                             f"{tuple(x.shape)}")
        return self.fuse_head(self.pooled_views(x))


def _channels_last(model: nn.Module) -> bool:
    """Whether the first convolution kernel is stored channels_last (``train.channels_last``)."""
    weight = next((p for p in model.parameters() if p.ndim == 4), None)
    return (weight is not None and weight.shape[1] > 1
            and weight.is_contiguous(memory_format=torch.channels_last)
            and not weight.is_contiguous())


def dual_mode(model: nn.Module) -> str:
    """``model.dual`` value that rebuilds ``model``: its fusion name, or ``"none"``."""
    return model.dual if isinstance(model, DualFundusModel) else "none"
