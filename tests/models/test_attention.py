"""Attention layers (SE, CBAM) against hand computations, and SE insertion into backbones."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from funduslab.config import ModelConfig
from funduslab.models.attention import (
    CBAM,
    ChannelAttention,
    SEModule,
    SpatialAttention,
    insert_se,
    inserted_se,
)
from funduslab.models.backbones import create_backbone
from funduslab.models.funduslab_checkpoints import save_funduslab_checkpoint
from funduslab.models.factory import build_model, checkpoint_metadata, model_from_checkpoint


def test_se_module_matches_hand_computation():
    torch.manual_seed(0)
    se = SEModule(16, rd_ratio=1 / 4, rd_channels=4)
    x = torch.randn(2, 16, 5, 7)
    s = x.mean(dim=(2, 3))  # (B, C) squeeze
    w1, b1 = se.fc1.weight.view(4, 16), se.fc1.bias
    w2, b2 = se.fc2.weight.view(16, 4), se.fc2.bias
    gate = torch.sigmoid(torch.relu(s @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_cbam_halves_match_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    ch = ChannelAttention(8, rd_channels=2)
    mlp = lambda v: ch.fc2(torch.relu(ch.fc1(v)))  # noqa: E731
    gate = torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    torch.testing.assert_close(ch(x), x * gate)
    sp = SpatialAttention(kernel_size=3)
    maps = torch.stack([x.mean(1), x.amax(1)], dim=1)
    sgate = torch.sigmoid(nn.functional.conv2d(maps, sp.conv.weight, sp.conv.bias, padding=1))
    torch.testing.assert_close(sp(x), x * sgate)
    cbam = CBAM(8, rd_ratio=1 / 4, kernel_size=3)
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
    assert cbam.spatial_gate(x).shape == (2, 1, 6, 6)


@pytest.mark.parametrize("make", [
    lambda: SEModule(24, identity_init=True),
    lambda: ChannelAttention(24, identity_init=True),
    lambda: SpatialAttention(identity_init=True),
    lambda: CBAM(24, identity_init=True),
])
def test_identity_initialised_modules_start_as_identity_and_learn(make):
    torch.manual_seed(0)
    module = make()
    x = torch.randn(3, 24, 5, 5)
    torch.testing.assert_close(module(x), x, rtol=0, atol=0)
    # the last layer gets a gradient at step 0, so the gate can move away from identity
    (module(x) * torch.randn_like(x)).sum().backward()
    last = [p for n, p in module.named_parameters() if n.endswith(("fc2.weight", "conv.weight"))]
    assert last and all(p.grad is not None and p.grad.abs().sum() > 0 for p in last)


def test_plain_sigmoid_gate_would_halve_activations():
    """Why insertion uses 2σ with a zeroed last layer: σ(0) = 0.5 halves the stage output."""
    se = SEModule(16)
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(se(x), 0.5 * x)


@pytest.mark.parametrize("backbone", ["tiny_cnn", "resnet18", "tf_efficientnet_lite0"])
def test_insert_se_leaves_pretrained_features_unchanged_at_step_zero(backbone):
    torch.manual_seed(0)
    plain = create_backbone(backbone, "none").eval()
    gated = copy.deepcopy(plain)
    names = insert_se(gated, [1, -1], rd_ratio=1 / 8)
    assert len(names) == 2 and len(gated.se_blocks) == 2
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gated.forward_features(x), plain.forward_features(x))
    # pretrained weights keep their names: the plain state dict loads, only SE keys are new
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("se_blocks.") for k in missing)


def test_inserted_se_is_on_the_forward_path_and_trains():
    torch.manual_seed(0)
    net = create_backbone("tiny_cnn", "none")
    insert_se(net, [2, 4])
    assert inserted_se(net) == {"se_stages": [2, 4], "se_rd_ratio": 1 / 16}
    net.forward_features(torch.rand(2, 3, 64, 64)).square().mean().backward()
    for name, p in net.se_blocks.named_parameters():
        if name.endswith("fc2.weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        net.se_blocks["layer4"].fc2.bias.fill_(3.0)  # gate 2σ(3) ≈ 1.9 on every channel
    ref = copy.deepcopy(net)  # the copy's hook must use the copy's SE, not the original's
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref.se_blocks["layer4"].fc2.bias.fill_(0.0)  # back to identity in the copy only
        torch.testing.assert_close(net.forward_features(x),
                                   ref.forward_features(x) * 2 * torch.sigmoid(torch.tensor(3.0)))


def test_insert_se_rejects_bad_stages_and_transformers():
    net = create_backbone("tiny_cnn", "none")
    with pytest.raises(ValueError, match="valid: 1..4"):
        insert_se(net, [5])
    with pytest.raises(ValueError, match="CNN backbones only"):
        insert_se(create_backbone("tiny_vit", "none"), [1])
    insert_se(net, [1])
    with pytest.raises(ValueError, match="already has SE"):
        insert_se(net, [2])


def test_config_attention_stages_build_and_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="tiny_cnn", weights="none", attention_stages=[3, 4])
    model = build_model(cfg, num_outputs=3).eval()
    assert set(model.backbone.se_blocks) == {"layer3", "layer4"}
    with torch.no_grad():
        for p in model.backbone.se_blocks.parameters():
            p.add_(0.1)  # move away from identity so the round trip is a real test
    meta = {**checkpoint_metadata(model), "head": "linear", "label_names": ["D", "G", "A"],
            "image_size": 64}
    assert meta["se_stages"] == [3, 4]
    path = save_funduslab_checkpoint(tmp_path / "m.pt", model, meta)
    loaded = model_from_checkpoint(path).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
