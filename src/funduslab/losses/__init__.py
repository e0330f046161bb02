"""Training losses, registered by name.

Every entry is a factory ``(counts: ClassCounts, **options) -> nn.Module`` taking the training
split's label counts, so count-based losses (class-balanced, weighted BCE) need no special case in
the engine. Losses map ``(logits (B, K), targets (B, K) float) -> scalar``; multi-label losses
derive from :class:`MaskedMultiLabelLoss`, so a NaN target (a label its dataset lacks) is masked
out: zero loss, zero gradient, mean over the observed entries.
"""

from funduslab.losses.base import LOSSES, ClassCounts, MaskedMultiLabelLoss, build_loss
from funduslab.registry import import_modules_of

import_modules_of(__name__, __path__)  # each module registers its losses: a new loss is one file

__all__ = ["LOSSES", "ClassCounts", "MaskedMultiLabelLoss", "build_loss"]
