"""Attention-consistency training: CAM identity, loss terms, gradient flow, a short run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from explain_helpers import StandInAttentionHead, tiny_model
from torch import nn

from funduslab.training.guided import (
    AttentionConsistencyTask,
    class_activation_maps,
    flip_consistency,
)
from funduslab.training.module import FitOptions, FundusTask


def _task(model, weight=None):
    args = (model, nn.BCEWithLogitsLoss(), ["D", "G", "A"], FitOptions(channels_last=False))
    return FundusTask(*args) if weight is None else AttentionConsistencyTask(
        *args, consistency_weight=weight)


def test_linear_head_cam_averages_to_the_logit():
    """Zhou et al.: with average pooling, logit_k = mean_ij CAM_k(i, j) + b_k."""
    model = tiny_model("tiny_cnn")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.forward_features(x)
        cams = class_activation_maps(model, features, (64, 64))
        logits = model(x)
    assert cams.shape == (2, 3, 2, 2)
    torch.testing.assert_close(cams.mean((-2, -1)) + model.head.fc.bias, logits)


@pytest.mark.parametrize("backbone", ["tiny_vit", "tiny_swin"])
def test_transformer_cams_are_class_maps_on_the_patch_grid(backbone):
    model = tiny_model(backbone)
    with torch.no_grad():
        features = model.forward_features(torch.rand(2, 3, 64, 64))
        cams = class_activation_maps(model, features, (64, 64))
    assert cams.shape == (2, 3, 8, 8)


def test_attention_head_uses_its_maps_other_heads_the_activation_energy():
    att = tiny_model("tiny_cnn")
    att.head = StandInAttentionHead(att.num_features, 3)
    mlp = tiny_model("tiny_cnn", head="mlp")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        f = att.forward_features(x)
        torch.testing.assert_close(class_activation_maps(att, f, (64, 64)),
                                   att.head.attention_maps(f))
        g = mlp.forward_features(x)
        torch.testing.assert_close(class_activation_maps(mlp, g, (64, 64)),
                                   g.abs().mean(1, keepdim=True))


def test_flip_consistency_by_hand():
    maps = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert flip_consistency(maps, maps.flip(-1)).item() == 0.0
    other = torch.tensor([[[[2.0, 1.0], [4.0, 0.0]]]])  # flipped back: [[1, 2], [0, 4]]
    assert flip_consistency(maps, other).item() == pytest.approx(9.0 / 4)
    with pytest.raises(ValueError, match="shapes differ"):
        flip_consistency(maps, maps[..., :1])


def test_loss_terms_match_the_plain_task_and_an_independent_consistency():
    model = tiny_model("tiny_cnn")
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 2, (4, 3), generator=torch.Generator().manual_seed(2)).float()
    plain, guided = _task(model), _task(model, weight=2.0)
    model.eval()  # BatchNorm statistics fixed: both views give the same per-image logits
    classification, consistency = guided.loss_terms(x, y)
    torch.testing.assert_close(classification, plain.loss(plain(x), y))
    with torch.no_grad():
        w = model.head.fc.weight
        cam = torch.einsum("kc,bchw->bkhw", w, model.forward_features(x))
        cam_f = torch.einsum("kc,bchw->bkhw", w, model.forward_features(x.flip(-1)))
        expected = ((cam - cam_f.flip(-1)) ** 2).mean()
    torch.testing.assert_close(consistency, expected)
    assert consistency.item() > 0
    total = classification + guided.consistency_weight * consistency
    assert total.item() > plain.loss(plain(x), y).item()


def test_consistency_gradient_reaches_the_backbone():
    model = tiny_model("tiny_cnn").train()
    guided = _task(model, weight=1.0)
    _, consistency = guided.loss_terms(torch.rand(4, 3, 64, 64), torch.zeros(4, 3))
    consistency.backward()
    first_conv = model.backbone.conv1.weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    assert model.head.fc.weight.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(TypeError, match="FundusModel"):
        _task(nn.Linear(4, 3), weight=1.0)
    with pytest.raises(ValueError, match="> 0"):
        _task(tiny_model("tiny_cnn"), weight=0.0)


def test_short_synthetic_run_with_attention_consistency(synth_course: Path, tmp_path: Path):
    from funduslab.config import config_from_dict
    from funduslab.training.runner import run

    cfg = config_from_dict({
        "data": {"root": str(synth_course), "image_size": 64, "cache_dir": str(tmp_path / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32",
                  "warmup_epochs": 0, "attention_consistency": 0.5},
        "output": {"out": str(tmp_path), "name": "guided", "figures": False},
    })
    run_dir = run(cfg, progress=False)
    history = pd.read_csv(run_dir / "history.csv")
    assert "train_consistency" in history and history["train_consistency"].iloc[0] > 0
    assert (run_dir / "predictions" / "offsite_test.csv").is_file()
