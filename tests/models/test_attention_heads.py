"""Attention heads on every backbone family: shapes, layouts, attention maps, gradients."""

from __future__ import annotations

import pytest
import torch

from funduslab.config import ModelConfig
from funduslab.models.backbones import backbone_info, create_backbone
from funduslab.models.factory import build_model
from funduslab.models.heads import HEADS
from funduslab.models.heads.feature_map import feature_map_options, sine_position_encoding

ATTENTION_HEADS = ["se", "channel", "spatial", "cbam", "mha", "class_query"]
FAMILIES = ["tiny_cnn", "tiny_vit", "tiny_swin"]
K = 3
# M of attention_maps per head (K = one map per label)
MAPS = {"se": K, "channel": K, "spatial": 1, "cbam": 1, "mha": 1, "class_query": K}
SMALL = {"mha": {"dim": 32, "num_heads": 4}, "class_query": {"dim": 32, "num_heads": 4}}


def _head(name: str, backbone: torch.nn.Module, **options):
    info = backbone_info(backbone)
    cls = HEADS.get(name)
    layout = feature_map_options(cls, info.family, info.num_prefix_tokens)
    return cls(info.num_features, K, dropout=0.1, **layout, **SMALL.get(name, {}), **options)


@pytest.fixture(scope="module")
def backbones():
    torch.manual_seed(0)
    return {name: create_backbone(name, "none", img_size=64).eval() for name in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ATTENTION_HEADS)
def test_head_shapes_maps_and_gradients(backbones, family, name):
    torch.manual_seed(0)
    backbone = backbones[family]
    head = _head(name, backbone)
    assert head.needs_feature_map
    with torch.no_grad():
        features = backbone.forward_features(torch.rand(2, 3, 64, 64))
    grid = (2, 2) if family == "tiny_cnn" else (8, 8)  # 64 px / 32 (ResNet), / 8 (ViT, Swin)
    head.train()
    logits = head(features)
    assert logits.shape == (2, K) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}/{family}: no grad on {pname}"
    head.eval()
    with torch.no_grad():
        maps = head.attention_maps(features)
    assert maps.shape == (2, MAPS[name], *grid)
    assert torch.isfinite(maps).all() and (maps >= 0).all()


@pytest.mark.parametrize("name", ATTENTION_HEADS)
def test_layouts_agree(name):
    """The same grid as NCHW, NHWC or ViT tokens (with a class token) gives the same logits."""
    torch.manual_seed(0)
    c = 24
    cls = HEADS.get(name)
    head = cls(c, K, dropout=0.0, **SMALL.get(name, {})).eval()
    grid = torch.randn(2, c, 3, 3)
    tokens = torch.cat([torch.randn(2, 1, c), grid.flatten(2).transpose(1, 2)], dim=1)
    with torch.no_grad():
        ref = head(grid)
        head.feature_layout = "nhwc"
        torch.testing.assert_close(head(grid.permute(0, 2, 3, 1)), ref)
        head.feature_layout, head.num_prefix_tokens = "nlc", 1
        torch.testing.assert_close(head(tokens), ref)
        head.feature_layout, head.num_prefix_tokens = "auto", None  # 10 tokens → 1 prefix + 3×3
        torch.testing.assert_close(head(tokens), ref)
        torch.testing.assert_close(head.attention_maps(tokens), head.attention_maps(grid))


@pytest.mark.parametrize("name,options", [
    ("class_query", {}),
    ("mha", {"pool": "mean"}),
    ("mha", {"pool": "cls", "pos": "learned", "layers": 2}),
])
def test_attention_weights_sum_to_one(backbones, name, options):
    torch.manual_seed(0)
    head = _head(name, backbones["tiny_vit"], **options).eval()
    with torch.no_grad():
        features = backbones["tiny_vit"].forward_features(torch.rand(3, 3, 64, 64))
        maps = head.attention_maps(features)
    totals = maps.sum(dim=(2, 3))
    if options.get("pool") == "cls":  # the class token also attends to itself
        assert (totals <= 1 + 1e-5).all() and (totals > 0).all()
    else:
        torch.testing.assert_close(totals, torch.ones_like(totals))


def test_class_query_maps_are_per_label_and_logits_use_own_query():
    """Label k's logit depends only on query k: changing query 0 leaves logits 1..K-1 alone."""
    torch.manual_seed(0)
    head = HEADS.get("class_query")(16, 4, dropout=0.0, dim=16, num_heads=2).eval()
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        before = head(x)
        head.queries[0].add_(1.0)
        after = head(x)
    torch.testing.assert_close(after[:, 1:], before[:, 1:])
    assert not torch.allclose(after[:, 0], before[:, 0])
    assert head.attention_maps(x).shape == (2, 4, 4, 4)


def test_sine_position_encoding_matches_formula():
    pe = sine_position_encoding(2, 3, 8)  # (6, 8): row sin/cos (4), column sin/cos (4)
    assert pe.shape == (6, 8)
    y, x = 1, 2  # token 5 = row 1, column 2
    fy, fx = (y + 1) / 2 * 2 * torch.pi, (x + 1) / 3 * 2 * torch.pi
    freq = torch.tensor([1.0, 100.0])  # 10000 ** (i / 2)
    expected = torch.cat([torch.sin(fy / freq), torch.cos(fy / freq),
                          torch.sin(fx / freq), torch.cos(fx / freq)])
    torch.testing.assert_close(pe[5], expected)


@pytest.mark.parametrize("backbone,layout,prefix", [
    ("tiny_cnn", "nchw", 0), ("tiny_vit", "nlc", 1), ("tiny_swin", "nhwc", 0),
])
def test_factory_tells_heads_the_layout(backbone, layout, prefix):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, weights="none", head="cbam")
    model = build_model(cfg, num_outputs=K, image_size=64)
    assert model.head.feature_layout == layout and model.head.num_prefix_tokens == prefix
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, K)
    # Swin at 256 px: an (B, 32, 32, 32) NHWC map that "auto" would misread as NCHW
    if backbone == "tiny_swin":
        big = build_model(cfg, num_outputs=K, image_size=256).eval()
        x = torch.rand(1, 3, 256, 256)
        with torch.no_grad():
            f = big.forward_features(x)
            assert f.shape == (1, 32, 32, 32)
            assert big.head.feature_grid(f).shape == (1, 32, 32, 32)
            torch.testing.assert_close(big.head.feature_grid(f), f.permute(0, 3, 1, 2))


def test_bad_head_options_raise_value_error():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        HEADS.get("mha")(32, K, dim=30, num_heads=4)
    with pytest.raises(ValueError, match="pool must be"):
        HEADS.get("mha")(32, K, pool="max")
    with pytest.raises(ValueError, match="pos must be"):
        HEADS.get("class_query")(32, K, pos="rope")
    with pytest.raises(ValueError, match="feature_layout"):
        HEADS.get("se")(32, K, feature_layout="nwhc")
    with pytest.raises(ValueError, match="C=32"):
        HEADS.get("se")(32, K)(torch.randn(2, 16, 4, 4))


# --- learning: each head, on tiny_cnn through the real runner, learns a task with a known answer


def _write_spots(root, n: int = 240, size: int = 64, seed: int = 0):
    """Coloured spots on grey noise: label R/G/B = a red/green/blue disc (radius 8 px) is
    somewhere in the image (each present with p = 0.4, independently, at a random place).
    Splits: 60 % train, 15 % val, 25 % test."""
    import cv2
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    colours = {"R": (0, 0, 230), "G": (0, 210, 0), "B": (230, 60, 0)}  # BGR for OpenCV
    rows = []
    for i in range(n):
        img = rng.normal(60, 12, (size, size, 3)).clip(0, 255).astype(np.uint8)
        labels = {}
        for name, bgr in colours.items():
            labels[name] = int(rng.random() < 0.4)
            if labels[name]:
                x, y = rng.integers(6, size - 6, 2)
                cv2.circle(img, (int(x), int(y)), 8, bgr, -1)
        split = "train" if i < 0.6 * n else ("val" if i < 0.75 * n else "test")
        cv2.imwrite(str(root / "images" / f"s{i:04d}.png"), img)
        rows.append({"id": f"s{i:04d}.png", **labels, "split": split})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


@pytest.fixture(scope="module")
def spots(tmp_path_factory: pytest.TempPathFactory):
    return _write_spots(tmp_path_factory.mktemp("spots"))


LEARN_BAR = 0.85  # course average F1 on the 60 test images; constant predictions score ≤ 0.38


@pytest.mark.slow
@pytest.mark.parametrize("variant", ATTENTION_HEADS + ["se_stages"])
def test_each_head_learns_coloured_spots(spots, tmp_path, variant):
    """15 epochs of tiny_cnn at 64 px, about 20 s each with one thread; observed F1 0.93–0.99."""
    import json

    from funduslab.config import config_from_dict
    from funduslab.training.runner import run

    model = {"backbone": "tiny_cnn", "weights": "none", "head": variant}
    if variant == "se_stages":
        model.update(head="linear", attention_stages=[1, 2, 3, 4])
    if variant in SMALL:
        model["head_options"] = {"dim": 64}
    cfg = config_from_dict({
        "data": {"adapter": "generic_csv", "root": str(spots), "image_size": 64,
                 "augment": "light", "options": {"split_column": "split", "labels": "R,G,B"}},
        "model": model,
        "train": {"setup": "full", "epochs": 15, "lr": 3e-3, "backbone_lr": 3e-3,
                  "batch_size": 16, "seed": 0},
        "output": {"out": str(tmp_path), "name": variant, "figures": False},
    })
    scores = json.loads((run(cfg, progress=False) / "metrics.json").read_text())
    test = scores["splits"]["test"]["threshold_0.5"]
    per_class = {k: round(v["f1"], 3) for k, v in test["per_class"].items()}
    assert test["course_average_f1"] >= LEARN_BAR, per_class
