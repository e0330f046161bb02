"""Grading losses against hand computations and PyTorch references; the CORAL head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from funduslab.losses import LOSSES, build_loss
from funduslab.losses.base import ClassCounts
from funduslab.losses.grading import coral_levels
from funduslab.models.heads import HEADS


def test_grade_ce_label_smoothing_matches_hand_formula_and_torch():
    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    grades = torch.tensor([0, 1, 2, 3, 4, 2])
    eps = 0.2
    loss = build_loss("grade_ce", None, smoothing=eps)(logits, grades.float())
    logp = F.log_softmax(logits, dim=1)
    target = torch.full((6, 5), eps / 5)
    target[torch.arange(6), grades] += 1 - eps
    by_hand = -(target * logp).sum(dim=1).mean()
    torch.testing.assert_close(loss, by_hand)
    torch.testing.assert_close(loss, F.cross_entropy(logits, grades, label_smoothing=eps))
    # (B, 1) float targets as the generic training step passes them give the same value
    column = grades[:, None].float()
    torch.testing.assert_close(build_loss("grade_ce", None, smoothing=eps)(logits, column), loss)


def test_grade_ce_balanced_weights_are_inverse_grade_frequency():
    counts = ClassCounts(positives=torch.tensor([6, 3, 1, 1, 1]).numpy(),
                         negatives=torch.tensor([6, 9, 11, 11, 11]).numpy())
    loss = build_loss("grade_ce", counts, smoothing=0.0, balanced=True)
    expected = torch.tensor([12 / 30, 12 / 15, 12 / 5, 12 / 5, 12 / 5])  # N / (K · n_g)
    torch.testing.assert_close(loss.weight, expected)
    logits, grades = torch.randn(4, 5), torch.tensor([0, 1, 2, 4])
    reference = F.cross_entropy(logits, grades, weight=loss.weight)
    torch.testing.assert_close(loss(logits, grades), reference)


def test_regression_losses_on_hand_computed_values():
    out = torch.tensor([[0.5], [2.0], [4.0]])
    grades = torch.tensor([0.0, 4.0, 4.0])
    # SmoothL1 (beta 1): |d| = 0.5 → 0.5·0.25 = 0.125; |d| = 2 → 2 - 0.5 = 1.5; 0 → 0
    smooth = build_loss("grade_smooth_l1")(out, grades)
    torch.testing.assert_close(smooth, torch.tensor((0.125 + 1.5) / 3))
    torch.testing.assert_close(build_loss("grade_mse")(out, grades), torch.tensor((0.25 + 4.0) / 3))
    with pytest.raises(ValueError, match="one output"):
        build_loss("grade_mse")(torch.zeros(3, 5), grades)


def test_coral_loss_equals_manual_sum_of_binary_cross_entropies():
    logits = torch.tensor([[2.0, 0.5, -1.0, -3.0], [1.0, 1.0, 0.0, -0.5]])
    grades = torch.tensor([1, 3])
    levels = [[1, 0, 0, 0], [1, 1, 1, 0]]
    manual = 0.0
    for b in range(2):
        for k in range(4):
            p = 1 / (1 + math.exp(-logits[b, k].item()))
            manual -= levels[b][k] * math.log(p) + (1 - levels[b][k]) * math.log(1 - p)
    manual /= 2  # summed over the K-1 tasks, averaged over the batch (Cao et al. 2020)
    loss = build_loss("coral")(logits, grades.float())
    torch.testing.assert_close(loss, torch.tensor(manual, dtype=torch.float32))
    torch.testing.assert_close(coral_levels(grades, 5), torch.tensor(levels, dtype=torch.float32))
    weighted = build_loss("coral", importance=[1.0, 0.0, 0.0, 0.0])(logits, grades)
    first = F.binary_cross_entropy_with_logits(logits[:, 0], torch.ones(2), reduction="sum") / 2
    torch.testing.assert_close(weighted, first)


def test_every_grading_loss_is_registered():
    assert {"grade_ce", "grade_smooth_l1", "grade_mse", "coral"} <= set(LOSSES.names())


def test_coral_head_shares_weights_and_differs_only_by_rank_biases():
    torch.manual_seed(0)
    head = HEADS.get("coral")(8, 4, dropout=0.0)
    x = torch.randn(3, 8)
    z = head(x)  # (B, K-1)
    assert z.shape == (3, 4)
    shared = head.base(x)  # (B, 1): one score for every rank task
    torch.testing.assert_close(z - shared, head.rank_bias.expand(3, 4))
    assert torch.all(head.rank_bias[:-1] > head.rank_bias[1:])  # descending start
    z.sum().backward()
    assert all(p.grad is not None for p in head.parameters())
    with pytest.raises(ValueError, match="base head"):
        HEADS.get("coral")(8, 4, base="coral")
