"""Layer-wise learning-rate decay groups (BEiT/MAE) and their use by FundusTask."""

from __future__ import annotations

import re

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from funduslab.models.backbones import create_backbone
from funduslab.models.classifier import FundusModel
from funduslab.training.layer_decay import layer_decay_groups
from funduslab.training.module import FitOptions, FundusTask

LR, BACKBONE_LR, WD = 1e-2, 1e-3, 0.05


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name: str, img: int = 32) -> FundusModel:
    torch.manual_seed(0)
    backbone = create_backbone(name, "none", img_size=img)
    return FundusModel(backbone, nn.Linear(backbone.num_features, 2))


# Independent depth tables, written from the parameter names alone: (depth id or None, L).
def _vit_depth(name: str) -> tuple[int, int]:
    if re.match(r"(patch_embed\.|cls_token$|pos_embed$)", name):
        return 0, 3
    if m := re.match(r"blocks\.(\d+)\.", name):
        return int(m[1]) + 1, 3
    assert re.match(r"(norm|fc_norm)\.", name), name
    return 3, 3


def _swin_depth(name: str, depths: tuple[int, ...]) -> tuple[int, int]:
    total = sum(depths) + 1
    if name.startswith("patch_embed."):
        return 0, total
    if m := re.match(r"layers\.(\d+)\.(?:blocks\.(\d+)|downsample)\.", name):
        stage, block = int(m[1]), int(m[2] or 0)  # downsample runs before block 0
        return sum(depths[:stage]) + block + 1, total
    assert name.startswith("norm."), name
    return total, total


def _cnn_depth(name: str) -> tuple[int, int]:
    if re.match(r"(conv1|bn1)\.", name):
        return 0, 4
    m = re.match(r"layer(\d)\.", name)
    assert m, name
    return int(m[1]), 4  # no final layer: layer4 is the deepest (L = 4)


EXPECTED = {
    "tiny_vit": _vit_depth,
    "tiny_swin": lambda n: _swin_depth(n, (1, 1)),
    "tiny_cnn": _cnn_depth,
    "swin_tiny_patch4_window7_224": lambda n: _swin_depth(n, (2, 2, 6, 2)),
}


def _lr_of(groups: list[dict]) -> dict[int, float]:
    return {id(p): g["lr"] for g in groups for p in g["params"]}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_group_lrs_follow_backbone_lr_times_decay_to_the_depth(name: str) -> None:
    model = _model(name, 64 if name.startswith("swin") else 32)
    decay = 0.7
    groups = layer_decay_groups(model, list(model.head.parameters()), LR, BACKBONE_LR, WD, decay)
    lr_of = _lr_of(groups)
    for full, p in model.named_parameters():
        if full.startswith("head."):
            assert lr_of[id(p)] == LR
            continue
        depth, last = EXPECTED[name](full.removeprefix("backbone."))
        assert lr_of[id(p)] == pytest.approx(BACKBONE_LR * decay ** (last - depth)), full
    deepest = max(g["layer_id"] for g in groups)
    assert deepest == EXPECTED[name]("norm.weight" if name != "tiny_cnn" else "layer4.x")[1]
    names = {g["name"].removesuffix("_no_wd") for g in groups}
    assert names >= {"head", "layer0", f"layer{deepest}"}
    assert len({g["name"] for g in groups}) == len(groups)  # Lightning's LR monitor needs this


@pytest.mark.parametrize("name", ["tiny_vit", "tiny_swin", "tiny_cnn"])
def test_every_trainable_parameter_in_exactly_one_group(name: str) -> None:
    model = _model(name)
    frozen = list(model.backbone.parameters())[:3]
    for p in frozen:
        p.requires_grad_(False)
    groups = layer_decay_groups(model, list(model.head.parameters()), LR, BACKBONE_LR, WD, 0.8)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert not {id(p) for p in frozen} & set(ids)


@pytest.mark.parametrize("name", ["tiny_vit", "tiny_swin", "tiny_cnn"])
def test_decay_one_reproduces_the_two_group_learning_rates(name: str) -> None:
    model = _model(name)
    head = list(model.head.parameters())
    task = FundusTask(model, nn.BCEWithLogitsLoss(), ["a", "b"],
                      FitOptions(lr=LR, backbone_lr=BACKBONE_LR), head_params=head)
    two = _lr_of(task._parameter_groups())
    assert len(task._parameter_groups()) == 2
    assert _lr_of(layer_decay_groups(model, head, LR, BACKBONE_LR, WD, 1.0)) == two


def test_no_weight_decay_on_biases_norms_tokens_and_bias_tables() -> None:
    expected_no_wd = {
        "tiny_vit": r"(\.bias|norm\d?\.weight|cls_token|pos_embed)$",
        "tiny_swin": r"(\.bias|norm\d?\.weight|relative_position_bias_table)$",
        "tiny_cnn": r"(\.bias|bn\d\.weight|downsample\.1\.weight)$",
    }
    for name, pattern in expected_no_wd.items():
        model = _model(name)
        groups = layer_decay_groups(model, list(model.head.parameters()), LR, BACKBONE_LR, WD, 0.9)
        wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
        for full, p in model.named_parameters():
            want = 0.0 if re.search(pattern, full) else WD
            assert wd_of[id(p)] == want, (name, full)
        assert any(w == WD for w in wd_of.values()) and any(w == 0 for w in wd_of.values())


def test_decay_out_of_range_is_refused() -> None:
    model = _model("tiny_cnn")
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
            layer_decay_groups(model, None, LR, BACKBONE_LR, WD, bad)


def test_tiny_vit_fits_with_layer_decay_and_schedule_keeps_group_ratios(tmp_path) -> None:
    model = _model("tiny_vit")
    before = model.backbone.patch_embed.proj.weight.detach().clone()
    options = FitOptions(lr=LR, backbone_lr=BACKBONE_LR, weight_decay=WD, warmup_epochs=0.5,
                         schedule="step", epochs=2, layer_decay=0.7)
    task = FundusTask(model, nn.BCEWithLogitsLoss(), ["a", "b"], options,
                      head_params=list(model.head.parameters()))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(8, 3, 32, 32, generator=g),
                         torch.randint(0, 2, (8, 2), generator=g).float())
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(task, DataLoader(data, batch_size=4))
    assert trainer.global_step == 3
    opt = trainer.optimizers[0]
    assert len(opt.param_groups) > 4
    factors = [g["lr"] / g["initial_lr"] for g in opt.param_groups]
    assert factors[0] == pytest.approx(0.01)  # after 3 steps: warm-up 1, then two ×0.1 drops
    assert factors == pytest.approx([factors[0]] * len(factors))
    head = next(g for g in opt.param_groups if g["name"] == "head")
    for group in opt.param_groups:
        if group["layer_id"] >= 0:
            want = BACKBONE_LR / LR * 0.7 ** (3 - group["layer_id"])
            assert group["lr"] / head["lr"] == pytest.approx(want), group["name"]
    assert not torch.equal(before, model.backbone.patch_embed.proj.weight)
