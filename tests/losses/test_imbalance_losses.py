"""Focal, class-balanced and asymmetric losses against hand formulas, BCE and torchvision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from funduslab.losses import LOSSES, build_loss
from funduslab.losses.base import ClassCounts
from funduslab.losses.class_balanced import effective_number_weights

COUNTS = ClassCounts(positives=np.array([40, 5, 12]), negatives=np.array([60, 95, 88]))

# a small hand example: 2 images × 3 classes
Z = np.array([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]])
Y = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def _np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _np_bce(z, y):
    p = _np_sigmoid(z)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _t(a):
    return torch.tensor(a, dtype=torch.float32)


def _random_batch(seed=0, b=16, k=3, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, generator=g) * scale
    targets = (torch.rand(b, k, generator=g) < 0.3).float()
    return logits, targets


def test_registry_lists_new_losses():
    assert {"focal", "class_balanced", "asymmetric", "weighted_bce", "bce"} <= set(LOSSES.names())


@pytest.mark.parametrize("name, options", [
    ("focal", {"gamma": 0.0, "alpha": None}),
    ("class_balanced", {"beta": 0.0, "base": "bce"}),
    ("class_balanced", {"beta": 0.0, "base": "focal", "gamma": 0.0}),
    ("asymmetric", {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0}),
])
def test_neutral_setting_is_plain_bce(name, options):
    logits, targets = _random_batch()
    loss = build_loss(name, COUNTS, **options)(logits, targets)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, targets))


@pytest.mark.parametrize("name, options", [
    ("focal", {}), ("focal", {"gamma": 0.5, "alpha": 0.25}), ("focal", {"alpha": [0.2, 0.5, 0.9]}),
    ("class_balanced", {}), ("class_balanced", {"base": "bce", "beta": 0.9999}),
    ("class_balanced", {"gamma": 0.5}),
    ("asymmetric", {}), ("asymmetric", {"gamma_pos": 0.5, "gamma_neg": 0.5, "clip": 0.0}),
])
def test_gradients_finite_at_saturated_logits(name, options):
    logits = torch.tensor([[30.0, -30.0, 30.0], [-30.0, 30.0, -30.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])  # right, right, wrong / wrong, …
    loss = build_loss(name, COUNTS, **options)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # the confidently wrong elements (p≈1 for y=0, p≈0 for y=1) still get a pushing gradient
    assert logits.grad[0, 2] > 0 and logits.grad[1, 0] < 0


def test_focal_matches_hand_formula():
    gamma, alpha = 2.0, np.array([0.25, 0.5, 0.75])
    p = _np_sigmoid(Z)
    p_t = np.where(Y == 1, p, 1 - p)
    alpha_t = np.where(Y == 1, alpha, 1 - alpha)
    by_hand = np.mean(-alpha_t * (1 - p_t) ** gamma * np.log(p_t))
    loss = build_loss("focal", None, gamma=gamma, alpha=alpha.tolist())(_t(Z), _t(Y))
    torch.testing.assert_close(loss, torch.tensor(by_hand, dtype=torch.float32))


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.6, 1.0), (None, 3.0), (0.5, 0.0)])
def test_focal_matches_torchvision(alpha, gamma):
    logits, targets = _random_batch(seed=3)
    ours = build_loss("focal", None, alpha=alpha, gamma=gamma)(logits, targets)
    ref = sigmoid_focal_loss(logits, targets, alpha=-1 if alpha is None else alpha, gamma=gamma,
                             reduction="mean")
    torch.testing.assert_close(ours, ref)


def test_focal_down_weights_easy_examples_relative_to_bce():
    easy = build_loss("focal", None, gamma=2.0)(_t([[4.0]]), _t([[1.0]]))
    hard = build_loss("focal", None, gamma=2.0)(_t([[-1.0]]), _t([[1.0]]))
    bce_easy, bce_hard = _np_bce(4.0, 1.0), _np_bce(-1.0, 1.0)
    assert easy / bce_easy < 0.001 < 0.5 < hard / bce_hard


def test_class_balanced_weights_match_effective_number_formula():
    beta = 0.99
    w_pos, w_neg = effective_number_weights(COUNTS, beta)
    n = np.array([40, 5, 12, 60, 95, 88], dtype=float)
    raw = (1 - beta) / (1 - beta ** n)
    expected = raw / raw.sum() * 6
    np.testing.assert_allclose(np.concatenate([w_pos, w_neg]), expected, rtol=1e-12)
    assert np.isclose(w_pos.sum() + w_neg.sum(), 6.0)
    assert w_pos[1] == max(w_pos) and w_pos[1] > w_neg[1]  # 5 positives: the rarest group
    # β = 0: every weight is 1; β → 1: weights → inverse frequency
    np.testing.assert_allclose(np.concatenate(effective_number_weights(COUNTS, 0.0)), np.ones(6))
    w_pos, w_neg = effective_number_weights(COUNTS, 1 - 1e-9)
    inv = 1 / n
    np.testing.assert_allclose(np.concatenate([w_pos, w_neg]), inv / inv.sum() * 6, rtol=1e-5)


@pytest.mark.parametrize("base, gamma", [("bce", 0.0), ("focal", 2.0)])
def test_class_balanced_loss_matches_hand_formula(base, gamma):
    beta = 0.999
    n_pos, n_neg = COUNTS.positives.astype(float), COUNTS.negatives.astype(float)
    w_pos, w_neg = (1 - beta) / (1 - beta ** n_pos), (1 - beta) / (1 - beta ** n_neg)
    scale = 6 / (w_pos.sum() + w_neg.sum())
    w = np.where(Y == 1, w_pos * scale, w_neg * scale)
    p = _np_sigmoid(Z)
    p_t = np.where(Y == 1, p, 1 - p)
    by_hand = np.mean(w * (1 - p_t) ** gamma * _np_bce(Z, Y))
    loss = build_loss("class_balanced", COUNTS, beta=beta, base=base, gamma=2.0)(_t(Z), _t(Y))
    torch.testing.assert_close(loss, torch.tensor(by_hand, dtype=torch.float32))


def test_class_balanced_handles_a_class_without_positives():
    counts = ClassCounts(positives=np.array([0, 3]), negatives=np.array([10, 7]))
    w_pos, w_neg = effective_number_weights(counts, 0.9)
    assert np.isfinite(w_pos).all() and np.isfinite(w_neg).all()


def test_asymmetric_matches_hand_formula():
    gamma_neg, gamma_pos, m = 4.0, 1.0, 0.05
    p = _np_sigmoid(Z)
    p_m = np.maximum(p - m, 0.0)
    pos = (1 - p) ** gamma_pos * np.log(p)
    neg = p_m ** gamma_neg * np.log(1 - p_m)
    by_hand = -np.mean(Y * pos + (1 - Y) * neg)
    loss = build_loss("asymmetric", None, gamma_neg=gamma_neg, gamma_pos=gamma_pos,
                      clip=m)(_t(Z), _t(Y))
    torch.testing.assert_close(loss, torch.tensor(by_hand, dtype=torch.float32))


def test_asymmetric_discards_negatives_below_the_margin():
    asl = build_loss("asymmetric", None, clip=0.05)
    logit = torch.tensor([[-4.0]], requires_grad=True)  # p ≈ 0.018 < 0.05
    loss = asl(logit, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == 0.0 and logit.grad.item() == 0.0


@pytest.mark.parametrize("name, options, error, words", [
    ("focal", {"gama": 2.0}, TypeError, "gama"),
    ("focal", {"gamma": -1.0}, ValueError, "gamma"),
    ("focal", {"alpha": 1.5}, ValueError, "alpha"),
    ("class_balanced", {"beta": 1.0}, ValueError, "beta"),
    ("class_balanced", {"beta": -0.1}, ValueError, "beta"),
    ("class_balanced", {"base": "softmax"}, ValueError, "base"),
    ("class_balanced", {"betta": 0.9}, TypeError, "betta"),
    ("asymmetric", {"clip": 1.0}, ValueError, "clip"),
    ("asymmetric", {"gamma_neg": -2}, ValueError, "gamma_neg"),
    ("asymmetric", {"eps": 0.0}, ValueError, "eps"),
    ("asymmetric", {"margin": 0.05}, TypeError, "margin"),
])
def test_bad_options_raise_with_the_option_named(name, options, error, words):
    with pytest.raises(error, match=words):
        build_loss(name, COUNTS, **options)


def test_class_balanced_needs_counts_and_matching_class_number():
    with pytest.raises(ValueError, match="class counts"):
        build_loss("class_balanced", None)
    with pytest.raises(ValueError, match="3 classes"):
        build_loss("class_balanced", COUNTS)(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="one alpha per class"):
        build_loss("focal", None, alpha=[0.1, 0.2])(torch.zeros(2, 3), torch.zeros(2, 3))


def test_unknown_loss_name_lists_valid_ones():
    with pytest.raises(ValueError, match="class_balanced"):
        build_loss("focall", None)
