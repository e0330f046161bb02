"""Course (torchvision) checkpoints in, funduslab checkpoints out."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from funduslab import __version__
from funduslab.models.backbones import backbone_info, create_backbone, stage_parameter_groups
from funduslab.models.checkpoints import (
    CourseBackbone,
    build_course_backbone,
    course_backbone,
    detect_checkpoint_format,
    load_course_checkpoint,
    save_course_format,
)
from funduslab.models.funduslab_checkpoints import (
    load_funduslab_checkpoint,
    save_funduslab_checkpoint,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _course_net(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(num_classes=3).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a wrong mapping would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module")
def course_files(tmp_path_factory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("course")
    out = {}
    names = {"resnet18": "ckpt_resnet18_ep50.pt", "efficientnet_b0": "ckpt_efficientnet_ep50.pt"}
    for arch, fname in names.items():
        net = _course_net(arch)
        torch.save(net.state_dict(), root / fname)
        out[arch] = (root / fname, net)
    return out


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0"])
def test_course_checkpoint_loads_exactly(course_files, arch: str) -> None:
    path, net = course_files[arch]
    state = torch.load(path, weights_only=True)
    assert detect_checkpoint_format(state) == f"torchvision_{arch}"
    loaded = load_course_checkpoint(path, architecture=arch).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), net(X), rtol=0, atol=0)
    kept = course_backbone(path, architecture=arch, keep_head=True).eval()
    assert kept.num_classes == 3
    with torch.no_grad():
        torch.testing.assert_close(kept(X), net(X), rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0"])
def test_course_backbone_features_match_torchvision_pooling(course_files, arch: str) -> None:
    path, net = course_files[arch]
    backbone = create_backbone(arch, path).eval()  # the engine's entry point
    assert isinstance(backbone, CourseBackbone) and backbone.num_classes == 0
    pooled = {}
    net.avgpool.register_forward_hook(lambda m, i, o: pooled.setdefault("x", torch.flatten(o, 1)))
    with torch.no_grad():
        net(X)
        feats = backbone(X)
    assert feats.shape == (2, backbone.num_features) == (2, backbone_info(backbone).num_features)
    torch.testing.assert_close(feats, pooled["x"], rtol=0, atol=0)
    info = backbone_info(backbone)
    assert info.weights == f"course:{path}"
    assert isinstance(backbone.get_submodule(info.gradcam_layer), nn.Module)
    ids = [id(p) for _, ps in stage_parameter_groups(backbone) for p in ps]
    assert sorted(ids) == sorted({id(p) for p in backbone.parameters()})


def test_saved_course_backbone_reloads_into_an_empty_one(course_files) -> None:
    trained = course_backbone(course_files["efficientnet_b0"][0]).eval()
    empty = build_course_backbone("efficientnet_b0").eval()
    empty.load_state_dict(trained.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(empty(X), trained(X), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"one of \['efficientnet_b0', 'resnet18'\]"):
        build_course_backbone("resnet34")


def test_course_backbone_trains(course_files) -> None:
    backbone = course_backbone(course_files["resnet18"][0]).train()
    backbone(X).sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model_state_dict": sd, "epoch": 50},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
    ],
    ids=["model_state_dict", "state_dict+module", "module"],
)
def test_wrapped_and_prefixed_course_checkpoints(course_files, tmp_path, wrap) -> None:
    _, net = course_files["resnet18"]
    path = tmp_path / "wrapped.pt"
    torch.save(wrap(net.state_dict()), path)
    assert detect_checkpoint_format(torch.load(path, weights_only=True)) == "torchvision_resnet18"
    with torch.no_grad():
        torch.testing.assert_close(load_course_checkpoint(path).eval()(X), net(X), rtol=0, atol=0)


def test_wrong_architecture_is_named(course_files) -> None:
    path = course_files["resnet18"][0]
    expected = (r"holds a torchvision resnet18 \(fc 512→3\) but the config asks for "
                r"efficientnet_b0; pass --backbone resnet18 or another file")
    with pytest.raises(ValueError, match=expected):
        create_backbone("efficientnet_b0", path)
    with pytest.raises(ValueError, match=r"classifier\.1 1280→3\) but the config asks for resnet3"):
        load_course_checkpoint(course_files["efficientnet_b0"][0], architecture="resnet34")


def test_non_course_file_is_refused(tmp_path) -> None:
    torch.save(torchvision.models.resnet34(num_classes=3).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(ValueError, match=r"r34\.pt' is not a course checkpoint .*keys: conv1\."):
        load_course_checkpoint(tmp_path / "r34.pt")
    assert detect_checkpoint_format({"a": torch.zeros(1)}) == "unknown"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_course_checkpoint(tmp_path / "missing.pt")


def test_funduslab_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    model = create_backbone("tiny_cnn", "none")
    meta = {"architecture": "tiny_cnn", "label_names": ["D", "G", "A"], "image_size": 64,
            "preprocessing": {"steps": ["circle_crop", "resize"], "size": 64}, "out_dir": tmp_path}
    path = save_funduslab_checkpoint(tmp_path / "runs" / "team_task1-1.pt", model, meta)
    assert sorted(p.name for p in path.parent.iterdir()) == ["team_task1-1.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert detect_checkpoint_format(raw) == "funduslab"
    state, loaded_meta = load_funduslab_checkpoint(path)
    assert loaded_meta["label_names"] == ["D", "G", "A"]
    assert loaded_meta["preprocessing"]["steps"] == ["circle_crop", "resize"]
    assert loaded_meta["out_dir"] == str(tmp_path)
    assert loaded_meta["funduslab_version"] == __version__
    assert state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    again = create_backbone("tiny_cnn", path)  # a funduslab file also works as backbone weights
    torch.testing.assert_close(again.conv1.weight, model.conv1.weight)


def test_funduslab_checkpoint_refuses_bad_metadata_and_course_files(tmp_path, course_files) -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"metadata\.extra\.fn is a function"):
        save_funduslab_checkpoint(tmp_path / "x.pt", model, {"extra": {"fn": _course_net}})
    assert not list(tmp_path.glob("*x.pt*"))
    with pytest.raises(ValueError, match="course checkpoint: use load_course_checkpoint"):
        load_funduslab_checkpoint(course_files["resnet18"][0])


def test_save_course_format_reproduces_the_course_file(course_files, tmp_path) -> None:
    _, net = course_files["efficientnet_b0"]
    path = save_course_format(tmp_path / "ckpt_efficientnet_ep50.pt", net)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == set(net.state_dict()) and raw["classifier.1.weight"].shape == (3, 1280)
    with torch.no_grad():
        torch.testing.assert_close(load_course_checkpoint(path).eval()(X), net(X), rtol=0, atol=0)
    kept = course_backbone(course_files["resnet18"][0], keep_head=True)
    save_course_format(tmp_path / "again.pt", kept)
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert detect_checkpoint_format(again) == "torchvision_resnet18"
    with pytest.raises(ValueError, match="keep_head=True"):
        save_course_format(tmp_path / "bad.pt", course_backbone(course_files["resnet18"][0]))
