"""Hand-in exports without training: each model kind reloads as NAME.py rebuilds it and gives
funduslab's logits; NAME.py's image resizing equals funduslab's (OpenCV) resize."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from funduslab.config import ModelConfig
from funduslab.handin import standalone
from funduslab.handin.export import export_model, verify_export
from funduslab.handin.plan import architecture_slug, resize_steps
from funduslab.models.factory import build_model, checkpoint_metadata

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 32


def _model(backbone: str, head: str = "linear", stages: list[int] | None = None,
           head_options: dict | None = None) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, weights="none", head=head,
                      attention_stages=stages or [], head_options=head_options or {})
    model = build_model(cfg, 3, image_size=SIZE).eval()
    with torch.no_grad():  # non-trivial BN statistics and SE gates, so a wrong mapping shows
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for name, p in model.named_parameters():
            if "se_blocks" in name and "fc2" in name:
                p.normal_(0, 0.2)
    return model


def _meta(model: nn.Module, head: str = "linear") -> dict:
    return {**checkpoint_metadata(model), "head": head, "image_size": SIZE}


def _entry(exported, model: nn.Module) -> dict:
    return {"kind": exported.kind, "arch": exported.arch, **exported.recipe, "num_outputs": 3,
            "image_size": SIZE, "mean": model.mean.flatten().tolist(),
            "std": model.std.flatten().tolist()}


X = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def _normalised(model: nn.Module) -> torch.Tensor:
    return (X - model.mean) / model.std


@pytest.mark.parametrize("arch,head_key", [("resnet18", "fc"), ("efficientnet_b0", "classifier.1")])
def test_timm_resnet18_and_efficientnet_b0_become_torchvision_files(arch: str, head_key: str):
    model = _model(arch)
    exported = export_model(model, _meta(model), "run")
    assert (exported.kind, exported.arch) == ("torchvision", arch)
    net = getattr(torchvision.models, arch)()  # the course template's own code
    if arch == "resnet18":
        net.fc = nn.Linear(512, 3)
    else:
        net.classifier[1] = nn.Linear(1280, 3)
    net.load_state_dict(exported.state)  # strict
    assert f"{head_key}.weight" in exported.state
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(_normalised(model)), model(X), rtol=0, atol=1e-5)


def test_lite0_is_a_timm_state_dict_with_timms_own_classifier():
    model = _model("tf_efficientnet_lite0")
    exported = export_model(model, _meta(model), "run")
    assert (exported.kind, exported.arch) == ("timm", "tf_efficientnet_lite0")
    assert "classifier.weight" in exported.state and not any(
        k.startswith(("backbone.", "head.")) for k in exported.state)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3).eval()
    net.load_state_dict(exported.state)  # strict
    with torch.no_grad():
        torch.testing.assert_close(net(_normalised(model)), model(X), rtol=0, atol=1e-5)
    assert model.mean.flatten().tolist() == pytest.approx([0.5, 0.5, 0.5])  # Lite's own stats


@pytest.mark.parametrize("head,stages", [("se", None), ("mlp", None), ("linear", [1, 3])])
def test_heads_and_se_blocks_timm_lacks_are_rebuilt_by_the_script(head: str, stages):
    model = _model("tiny_cnn", head, stages)
    exported = export_model(model, _meta(model, head), "run")
    assert exported.kind == "wrapped"
    assert exported.recipe["se_points"] == (["layer1", "layer3"] if stages else [])
    diff = verify_export(model, _entry(exported, model), exported.state, "run", tolerance=1e-5)
    assert diff <= 1e-5


@pytest.mark.parametrize("options", [
    {}, {"pos": "learned", "pool": "cls", "layers": 2, "num_heads": 2, "dim": 32},
    {"pos": "none", "num_heads": 8, "dim": 64, "mlp_ratio": 1.0}])
def test_the_mha_head_of_task_3_2_is_rebuilt_by_the_script(options: dict):
    model = _model("tiny_cnn", "mha", head_options=options)
    with torch.no_grad():  # a learned table and class token away from zero, so both must load
        for name, p in model.head.named_parameters():
            if name in ("pos.table", "cls_token"):
                p.normal_(0, 0.5)
    exported = export_model(model, _meta(model, "mha"), "run")
    assert exported.kind == "wrapped" and exported.recipe["head"] == "mha"
    assert exported.recipe["head_options"] == {"num_heads": options.get("num_heads", 4),
                                               "pos": options.get("pos", "sine")}
    diff = verify_export(model, _entry(exported, model), exported.state, "run", tolerance=1e-5)
    assert diff <= 1e-5


def test_course_backbone_with_another_head_and_unknown_heads_are_refused():
    model = _model("tiny_cnn", "cbam")
    with pytest.raises(ValueError, match=r"run has head 'cbam'.*linear, mlp, se, mha"):
        export_model(model, _meta(model, "cbam"), "run")
    meta = {**_meta(_model("tiny_cnn")), "course_architecture": "resnet18", "head": "se"}
    with pytest.raises(ValueError, match="only the linear head can be handed in on a course"):
        export_model(_model("tiny_cnn"), meta, "run")


def test_architecture_slugs_name_the_course_families():
    assert architecture_slug({"course_architecture": "efficientnet_b0"}) == "efficientnet"
    assert architecture_slug({"backbone": "resnet18"}) == "resnet18"
    assert architecture_slug({"backbone": "tf_efficientnet_lite0"}) == "efficientnet_lite0"
    assert architecture_slug({"backbone": "tiny_cnn", "head": "se",
                              "se_stages": [1]}) == "tiny_cnn_se_sestages"


def test_only_resize_pipelines_are_reproduced():
    assert resize_steps("none", 64, "run") == [[64, True]]
    assert resize_steps("resize:size=64:pad_to_square=false", 64, "run") == [[64, False]]
    for other in ("clahe", "ben_graham", "circle_crop,resize:size=64"):
        with pytest.raises(ValueError, match=r"runs/x was trained with preprocessing .*'none'"):
            resize_steps(other, 64, "runs/x")


@pytest.mark.parametrize("shape,size,pad", [
    ((64, 64), 32, True), ((96, 96), 32, True), ((100, 70), 32, True), ((300, 257), 64, True),
    ((300, 257), 64, False), ((512, 512), 224, True), ((1000, 1500), 256, True)])
def test_script_shrinks_images_exactly_like_funduslab(shape, size: int, pad: bool):
    from funduslab.preprocess.ops import resize

    image = np.random.default_rng(size).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(standalone.resize(image, size, pad),
                                  resize(image, size=size, pad_to_square=pad))


@pytest.mark.parametrize("shape,size", [((20, 30), 32), ((24, 24), 48), ((64, 64), 224)])
def test_script_enlarges_images_like_funduslab_within_one_grey_level(shape, size: int):
    from funduslab.preprocess.ops import resize

    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours = standalone.resize(image, size).astype(int)
    theirs = resize(image, size=size).astype(int)
    assert np.abs(ours - theirs).max() <= 1  # OpenCV with Intel IPP rounds some pixels apart
    assert (ours != theirs).mean() < 0.1


def test_script_imports_nothing_beyond_torch_torchvision_timm_pillow_pandas_numpy():
    from funduslab.handin.bundle import render_script

    allowed = {"torch", "torchvision", "timm", "PIL", "pandas", "numpy", "__future__"}
    tree = ast.parse(render_script("team", []))  # NAME.py, the networks inlined
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - allowed <= set(sys.stdlib_module_names), imported - allowed
