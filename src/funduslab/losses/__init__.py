"""Training losses, registered by name.

Every entry is a factory ``(counts: ClassCounts, **options) -> nn.Module`` taking the training
split's label counts, so count-based losses (class-balanced, weighted BCE) need no special case in
the engine. Losses map ``(logits (B, K), targets (B, K) float) -> scalar``; multi-label losses
derive from :class:`MaskedMultiLabelLoss`, so a NaN target (a label its dataset lacks) is masked
out: zero loss, zero gradient, mean over the observed entries.
"""

from funduslab.losses.base import LOSSES, ClassCounts, MaskedMultiLabelLoss, build_loss
from funduslab.losses import bce  # noqa: F401  (registers "bce", "weighted_bce")
from funduslab.losses import grading  # noqa: F401  (registers grade_ce/_smooth_l1/_mse, coral)
from funduslab.losses import focal  # noqa: F401  (registers "focal")
from funduslab.losses import class_balanced  # noqa: F401  (registers "class_balanced")
from funduslab.losses import asymmetric  # noqa: F401  (registers "asymmetric")

__all__ = ["LOSSES", "ClassCounts", "MaskedMultiLabelLoss", "build_loss"]
