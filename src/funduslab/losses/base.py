"""Loss registry, the label counts count-based losses are built from, and missing labels.

A multi-label target may be missing: a row joined from a dataset that does not grade that disease
(:mod:`funduslab.data.join`) carries NaN there. Every multi-label loss derives from
:class:`MaskedMultiLabelLoss`, which keeps such entries out of the loss instead of guessing them:
they add exactly zero loss and zero gradient, and the mean is over the observed entries only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from funduslab.registry import Registry

__all__ = ["LOSSES", "ClassCounts", "MaskedMultiLabelLoss", "build_loss", "masked_mean"]

LOSSES: Registry = Registry("loss")


@dataclass(frozen=True)
class ClassCounts:
    """Positives and negatives per class on the training split (observed labels only).

    Args:
        positives: ``(K,)`` number of positive samples per class.
        negatives: ``(K,)`` number of negative samples per class.
    """

    positives: np.ndarray
    negatives: np.ndarray

    @classmethod
    def from_labels(cls, labels: np.ndarray) -> "ClassCounts":
        """Counts from a ``(N, K)`` 0/1 label matrix; NaN (missing) entries count as neither."""
        labels = np.asarray(labels, dtype=np.float64)
        observed = ~np.isnan(labels)
        pos = np.where(observed, labels, 0.0).sum(axis=0).astype(np.int64)
        return cls(positives=pos, negatives=observed.sum(axis=0).astype(np.int64) - pos)


def masked_mean(terms: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Mean of ``terms (B, K)`` over the ``observed (B, K)`` entries; 0 when none is observed.

    ``torch.where`` (not a multiplication) drops the unobserved entries, so their gradient is
    exactly zero; a batch without observed entries gives a zero loss that still backpropagates.
    No branch on the mask's content, so a GPU step does not wait for it.
    """
    kept = torch.where(observed, terms, torch.zeros((), dtype=terms.dtype, device=terms.device))
    return kept.sum() / observed.sum().clamp(min=1).to(terms.dtype)


class MaskedMultiLabelLoss(nn.Module):
    """Base of the multi-label losses: NaN targets are missing labels and are masked out.

    Subclasses implement :meth:`terms`, the unreduced loss of fully observed targets; the
    missing entries' targets are replaced by 0 before it is called (so every term is finite)
    and dropped after it.
    """

    def terms(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``logits (B, K)`` float32, ``targets (B, K)`` in [0, 1] → ``(B, K)`` loss terms."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``logits (B, K)``, ``targets (B, K)`` in [0, 1] or NaN (missing) → scalar mean."""
        z, y = logits.float(), targets.float()
        observed = ~torch.isnan(y)
        y = torch.where(observed, y, torch.zeros((), dtype=y.dtype, device=y.device))
        return masked_mean(self.terms(z, y), observed)


def build_loss(name: str, counts: ClassCounts | None = None, **options: Any) -> nn.Module:
    """Build a registered loss; ``ValueError`` lists the valid names for an unknown one."""
    return LOSSES.get(name)(counts, **options)
