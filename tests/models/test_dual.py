"""Dual-image models: fusion shapes, attention weights, equivalences and checkpoint round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from funduslab.config import ModelConfig
from funduslab.models.funduslab_checkpoints import save_funduslab_checkpoint
from funduslab.models.dual import FUSIONS, AttentionFusion, DualFundusModel, build_fusion
from funduslab.models.factory import build_model, checkpoint_metadata, model_from_checkpoint

C = 128  # tiny_cnn's pooled width
K = 5


def _model(dual: str, head: str = "linear", **options) -> DualFundusModel:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny_cnn", weights="none", head=head, dual=dual, dropout=0.0,
                      head_options=options)
    return build_model(cfg, K, image_size=32).eval()


def _pooled(model: DualFundusModel, x: torch.Tensor) -> torch.Tensor:
    """Independent pooled features: normalise, backbone feature map, global average pool."""
    fmap = model.backbone.forward_features((x - model.mean) / model.std)  # (B, C, h, w)
    return F.adaptive_avg_pool2d(fmap, 1).flatten(1)


@pytest.mark.parametrize("dual,width", [("concat", 2 * C), ("mean", C), ("attention", C)])
def test_fusion_shapes_with_tiny_cnn(dual: str, width: int):
    model = _model(dual)
    assert isinstance(model, DualFundusModel) and model.dual == dual
    assert model.head.fc.in_features == width == model.num_features
    x = torch.rand(3, 2, 3, 32, 32)
    views = model.pooled_views(x)
    assert views.shape == (3, 2, C)
    assert model.fusion(views).shape == (3, width)
    logits = model(x)
    assert logits.shape == (3, K) and torch.isfinite(logits).all()
    assert model(x[:, 0]).shape == (3, K)  # single images: anchor = partner


def test_registry_names_and_unknown_fusion():
    assert FUSIONS.names() == ["attention", "concat", "mean"]
    with pytest.raises(ValueError, match="valid names: attention, concat, mean"):
        build_fusion("max", 8)


def test_attention_weights_sum_to_one_and_match_hand_computation():
    torch.manual_seed(1)
    fusion = AttentionFusion(16)
    views = torch.randn(4, 2, 16)
    # zero initialisation: exactly the mean fusion
    torch.testing.assert_close(fusion.weights(views), torch.full((4, 2), 0.5))
    torch.testing.assert_close(fusion(views), views.mean(dim=1))
    with torch.no_grad():
        fusion.score.weight.normal_()
        fusion.score.bias.fill_(0.3)
    w = fusion.weights(views)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(4))
    s = views @ fusion.score.weight[0] + 0.3  # (B, 2) scores
    e = torch.exp(s - s.max(dim=1, keepdim=True).values)
    ref_w = e / e.sum(dim=1, keepdim=True)
    torch.testing.assert_close(w, ref_w)
    ref = ref_w[:, 0:1] * views[:, 0] + ref_w[:, 1:2] * views[:, 1]
    torch.testing.assert_close(fusion(views), ref)


def test_attention_score_gets_gradient_at_initialisation():
    model = _model("attention").train()
    x = torch.rand(2, 2, 3, 32, 32)
    model(x).sum().backward()
    assert model.fusion.score.weight.grad is not None
    assert model.fusion.score.weight.grad.abs().sum() > 0


def test_mean_of_identical_views_equals_single_image_features():
    model = _model("mean")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        pooled = _pooled(model, x)
        fused = model.fusion(model.pooled_views(torch.stack([x, x], dim=1)))
        torch.testing.assert_close(fused, pooled, rtol=1e-5, atol=1e-5)
        ref_logits = pooled @ model.head.fc.weight.T + model.head.fc.bias
        torch.testing.assert_close(model(torch.stack([x, x], dim=1)), ref_logits,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x), ref_logits, rtol=1e-5, atol=1e-5)


def test_concat_puts_anchor_first():
    model = _model("concat")
    a, p = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = torch.cat([_pooled(model, a), _pooled(model, p)], dim=1)
        ref_logits = ref @ model.head.fc.weight.T + model.head.fc.bias
        torch.testing.assert_close(model(torch.stack([a, p], dim=1)), ref_logits,
                                   rtol=1e-5, atol=1e-5)
        swapped = model(torch.stack([p, a], dim=1))
    assert not torch.allclose(swapped, ref_logits, atol=1e-4)


def test_feature_map_head_is_refused_with_supported_heads_named():
    with pytest.raises(ValueError, match=r"head 'se'.*linear.*mlp"):
        _model("concat", head="se")
    with pytest.raises(ValueError, match="needs_feature_map|feature map"):
        _model("mean", head="coral", base="se")
    model = _model("mean", head="coral", base="linear")  # coral on a pooled base is fine
    assert model(torch.rand(1, 2, 3, 32, 32)).shape == (1, K)


def test_bad_input_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(B, 2, 3, H, W\)"):
        _model("mean")(torch.rand(1, 3, 3, 32, 32))


@pytest.mark.parametrize("dual", ["concat", "attention"])
def test_checkpoint_round_trip_rebuilds_the_dual_model(tmp_path: Path, dual: str):
    model = _model(dual)
    if dual == "attention":
        with torch.no_grad():
            model.fusion.score.weight.normal_()  # not the zero init, so loading must carry it
    meta = {**checkpoint_metadata(model), "head": "linear", "label_names": list("abcde"),
            "image_size": 32, "num_outputs": K}
    assert meta["dual"] == dual
    path = save_funduslab_checkpoint(tmp_path / "m.pt", model, meta)
    again = model_from_checkpoint(path).eval()
    assert isinstance(again, DualFundusModel) and again.dual == dual
    x = torch.rand(2, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_plain_model_records_dual_none():
    cfg = ModelConfig(backbone="tiny_cnn", weights="none")
    model = build_model(cfg, 3, image_size=32)
    assert not isinstance(model, DualFundusModel)
    assert checkpoint_metadata(model)["dual"] == "none"


def test_pair_batches_run_channels_last_when_the_model_is(monkeypatch):
    model = _model("concat")
    seen: list[bool] = []
    original = model.backbone.forward_features

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return original(x)

    monkeypatch.setattr(model.backbone, "forward_features", spy)
    x = torch.rand(2, 2, 3, 32, 32)
    reference = model(x)
    model.to(memory_format=torch.channels_last)
    assert torch.allclose(model(x), reference, atol=1e-5)
    assert seen == [False, True]  # contiguous before, channels_last once the weights are
