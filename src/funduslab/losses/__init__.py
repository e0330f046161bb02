"""Training losses, registered by name.

Every entry is a factory ``(counts: ClassCounts, **options) -> nn.Module`` taking the training
split's label counts, so count-based losses (class-balanced, weighted BCE) need no special case in
the engine. Losses map ``(logits (B, K), targets (B, K) float) -> scalar``.
"""

from funduslab.losses.base import LOSSES, ClassCounts, build_loss
from funduslab.losses import bce  # noqa: F401  (registers "bce", "weighted_bce")

__all__ = ["LOSSES", "ClassCounts", "build_loss"]
