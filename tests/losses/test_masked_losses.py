"""Missing (NaN) labels are masked out of every registered multi-label loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from funduslab.losses import LOSSES, MaskedMultiLabelLoss, build_loss
from funduslab.losses.base import ClassCounts
from funduslab.training.grading import GRADING_FORMULATIONS

COUNTS = ClassCounts(positives=np.array([40, 5, 12]), negatives=np.array([60, 95, 88]))


def _multilabel_losses() -> list[str]:
    """Every registered loss that no grading formulation names: the multi-label ones."""
    grading = {n for f in GRADING_FORMULATIONS.names() for n in GRADING_FORMULATIONS.get(f).losses}
    return sorted(set(LOSSES.names()) - grading)


MULTILABEL = _multilabel_losses()
OPTIONS: dict[str, list[dict]] = {  # a non-default setting too, where the loss has options
    "focal": [{}, {"alpha": [0.2, 0.5, 0.9], "gamma": 1.5}],
    "class_balanced": [{}, {"base": "bce", "beta": 0.99}],
    "asymmetric": [{}, {"clip": 0.0, "gamma_pos": 0.5}],
}
CASES = [(name, opts) for name in MULTILABEL for opts in OPTIONS.get(name, [{}])]

# 6 images × 3 labels; every column misses exactly 2 entries, at different rows
MISSING = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 3, generator=g) * 3
    targets = (torch.rand(6, 3, generator=g) < 0.4).float()
    return logits, targets


def _observed_only(logits: torch.Tensor, masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's 4 observed entries stacked into a complete ``(4, 3)`` batch, no NaN."""
    keep = ~torch.from_numpy(MISSING)
    ref_logits = torch.stack([logits[keep[:, c], c] for c in range(3)], dim=1)
    ref_targets = torch.stack([masked[keep[:, c], c] for c in range(3)], dim=1)
    assert not torch.isnan(ref_targets).any()
    return ref_logits, ref_targets


def test_the_multilabel_losses_are_found():
    assert {"bce", "weighted_bce", "focal", "class_balanced", "asymmetric"} <= set(MULTILABEL)
    assert "coral" not in MULTILABEL and "grade_ce" not in MULTILABEL


@pytest.mark.parametrize("name", MULTILABEL)
def test_every_multilabel_loss_masks(name):
    assert isinstance(build_loss(name, COUNTS), MaskedMultiLabelLoss)


@pytest.mark.parametrize("name, options", CASES)
def test_masked_entries_get_exactly_zero_gradient(name, options):
    logits, targets = _batch()
    targets[torch.from_numpy(MISSING)] = float("nan")
    logits.requires_grad_(True)  # a leaf: its .grad is the gradient w.r.t. each logit
    loss = build_loss(name, COUNTS, **options)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[torch.from_numpy(MISSING)] == 0).all()  # exactly zero, not just small
    # observed entries get the gradient of the complete batch of observed entries only
    ref_logits, ref_targets = _observed_only(logits.detach(), targets)
    ref_logits.requires_grad_(True)
    build_loss(name, COUNTS, **options)(ref_logits, ref_targets).backward()
    keep = ~torch.from_numpy(MISSING)
    for c in range(3):
        torch.testing.assert_close(logits.grad[keep[:, c], c], ref_logits.grad[:, c])


@pytest.mark.parametrize("name, options", CASES)
def test_loss_equals_the_loss_of_the_observed_entries_only(name, options):
    """Reference without any NaN: each column's 4 observed entries moved into rows 0–3.

    Every loss here is a mean of terms that depend only on (logit, target, class), so the
    observed entries of each column can be re-stacked into a complete (4, 3) batch; its plain
    loss is the mean over exactly the observed entries.
    """
    logits, targets = _batch(seed=1)
    masked = targets.clone()
    masked[torch.from_numpy(MISSING)] = float("nan")
    keep = ~torch.from_numpy(MISSING)
    ref_logits, ref_targets = _observed_only(logits, masked)
    loss = build_loss(name, COUNTS, **options)
    torch.testing.assert_close(loss(logits, masked), loss(ref_logits, ref_targets))
    # and it is not the loss with the missing entries filled in as negatives
    zero_filled = torch.where(keep, targets, torch.zeros_like(targets))
    assert not torch.allclose(loss(logits, masked), loss(logits, zero_filled))


@pytest.mark.parametrize("name", MULTILABEL)
def test_all_missing_gives_zero_loss_and_gradient(name):
    logits = torch.randn(2, 3, requires_grad=True)
    loss = build_loss(name, COUNTS)(logits, torch.full((2, 3), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()


def test_class_counts_count_observed_labels_only():
    labels = np.array([[1, 0, np.nan], [0, np.nan, np.nan], [1, 1, 0], [np.nan, 0, 1]])
    counts = ClassCounts.from_labels(labels)
    np.testing.assert_array_equal(counts.positives, [2, 1, 1])
    np.testing.assert_array_equal(counts.negatives, [1, 2, 1])
    full = ClassCounts.from_labels(np.array([[1, 0], [1, 1], [0, 0]]))  # no NaN: as before
    np.testing.assert_array_equal(full.positives, [2, 1])
    np.testing.assert_array_equal(full.negatives, [1, 2])
