"""The CPU speed levers of the training recipe: frozen early stages, progressive resizing and
the precision ``auto`` picks. Each must change what trains, not only how fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from tiny_runs import tiny_config as shared_tiny_config
from torch import nn

from funduslab.config import RunConfig, TrainConfig, config_from_dict
from funduslab.training import fit
from funduslab.training.module import FundusTask, resize_images
from funduslab.training.runner import run


def tiny_config(data: Path, out: Path, name: str, **train) -> RunConfig:
    return shared_tiny_config(data, out, name,
                              **{"epochs": 2, "lr": 3e-3, "backbone_lr": 3e-3, **train})


def test_freeze_stages_keeps_stem_and_first_stage_and_their_batchnorm_fixed(
        synth_course: Path, tmp_path: Path):
    import lightning as L

    from funduslab.models.backbones import create_backbone, stage_parameter_groups
    from funduslab.models.factory import model_from_checkpoint

    run_dir = run(tiny_config(synth_course, tmp_path, "frozen1", freeze_stages=1, epochs=1),
                  progress=False)
    trained = model_from_checkpoint(run_dir / "unit_task1-3.pt")
    L.seed_everything(0, verbose=False)
    init = create_backbone("tiny_cnn", "none")
    groups_t = dict(stage_parameter_groups(trained.backbone))
    groups_i = dict(stage_parameter_groups(init))
    for name in ("stem", "stage1"):
        for p, q in zip(groups_t[name], groups_i[name], strict=True):
            torch.testing.assert_close(p, q)
    last = [k for k in groups_t if k.startswith("stage")][-1]
    assert any(not torch.equal(p, q) for p, q in zip(groups_t[last], groups_i[last]))
    # the frozen stages' BatchNorm statistics did not move either; the trained ones did
    bn_t = [m for m in trained.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_i = [m for m in init.modules() if isinstance(m, nn.BatchNorm2d)]
    assert torch.equal(bn_t[0].running_mean, bn_i[0].running_mean)
    assert not torch.equal(bn_t[-1].running_mean, bn_i[-1].running_mean)
    assert "stem + 1 stage frozen throughout" in (run_dir / "metrics.json").read_text()


def test_freeze_epochs_releases_the_stages_after_them(synth_course: Path, tmp_path: Path,
                                                      monkeypatch):
    seen: dict[int, bool] = {}
    original = FundusTask.training_step

    def spy(self, batch, batch_idx):
        stem = next(self.net.backbone.parameters())
        bn = next(m for m in self.net.backbone.modules() if isinstance(m, nn.BatchNorm2d))
        seen[self.current_epoch] = (stem.requires_grad, bn.training)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(FundusTask, "training_step", spy)
    run(tiny_config(synth_course, tmp_path, "thaw", freeze_stages=1, freeze_epochs=1, epochs=3),
        progress=False)
    assert seen == {0: (False, False), 1: (True, True), 2: (True, True)}


def test_freeze_stages_beyond_the_backbone_names_the_valid_range(synth_course: Path, tmp_path: Path):
    with pytest.raises(ValueError, match=r"freeze_stages must be in 0\.\."):
        run(tiny_config(synth_course, tmp_path, "frozen9", freeze_stages=9, epochs=1), progress=False)


def test_progressive_resizing_trains_the_first_epochs_small(synth_course: Path, tmp_path: Path,
                                                           monkeypatch):
    seen: dict[int, set[int]] = {}
    original = FundusTask.training_step

    def spy(self, batch, batch_idx):
        seen.setdefault(self.current_epoch, set()).add(batch[0].shape[-1])
        return original(self, batch, batch_idx)

    monkeypatch.setattr(FundusTask, "training_step", spy)
    cfg = tiny_config(synth_course, tmp_path, "prog", epochs=3, progressive_size=24,
                      progressive_epochs=2)
    run(cfg, progress=False)
    assert seen == {0: {24}, 1: {24}, 2: {32}}


def test_progressive_resizing_must_leave_epochs_at_full_size():
    with pytest.raises(ValidationError, match="progressive_epochs"):
        TrainConfig(epochs=4, progressive_size=192, progressive_epochs=4)
    with pytest.raises(ValidationError, match="progressive_epochs"):
        TrainConfig(epochs=4, progressive_size=192)
    assert TrainConfig(epochs=4, progressive_size=192, progressive_epochs=3).progressive_epochs == 3


def test_resize_images_keeps_leading_dimensions_and_means():
    x = torch.rand(2, 2, 3, 16, 16)  # dual-image pairs
    y = resize_images(x, 8)
    assert y.shape == (2, 2, 3, 8, 8)
    torch.testing.assert_close(y.mean(dim=(-1, -2)), x.mean(dim=(-1, -2)), atol=1e-2, rtol=0)
    assert resize_images(x, 16) is x


def test_auto_precision_keeps_depthwise_models_in_fp32_on_a_bf16_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    depthwise = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8))
    dense = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=2))
    assert fit.has_depthwise_convolutions(depthwise)
    assert not fit.has_depthwise_convolutions(dense)
    assert fit.resolve_precision("auto", "cpu", depthwise) == "32"
    assert fit.resolve_precision("auto", "cpu", dense) == "bf16-mixed"
    assert fit.resolve_precision("bf16-mixed", "cpu", depthwise) == "bf16-mixed"  # asked for
    assert not fit.evaluation_bf16(TrainConfig(accelerator="cpu"), depthwise)



def test_kernels_capped_at_avx2_count_as_no_native_bf16(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 measures an AVX2-only VM's code paths: auto must pick fp32."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    dense = nn.Sequential(nn.Conv2d(3, 8, 3))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert fit.native_cpu_bf16() and fit.resolve_precision("auto", "cpu", dense) == "bf16-mixed"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not fit.native_cpu_bf16() and fit.resolve_precision("auto", "cpu", dense) == "32"

def _recipe_cfg(**parts):
    from funduslab.config import config_from_dict

    base = {"data": {"image_size": 256}, "model": {"backbone": "tf_efficientnet_lite0",
                                                   "weights": "imagenet"},
            "train": {"setup": "full", "epochs": 8}}
    for key, value in parts.items():
        base[key] = {**base[key], **value}
    return config_from_dict(base)


def test_fast_recipe_fills_the_knobs_for_a_pretrained_cnn_fine_tune():
    from funduslab.training.recipe import resolve_recipe

    t = resolve_recipe(_recipe_cfg()).train
    assert (t.freeze_stages, t.freeze_epochs, t.progressive_size) == (2, None, 0)  # throughout
    t = resolve_recipe(_recipe_cfg(train={"epochs": 13, "setup": "two-stage"})).train
    assert (t.freeze_stages, t.freeze_epochs) == (2, None)


@pytest.mark.parametrize("parts", [
    {"train": {"recipe": "plain"}},
    {"model": {"weights": "none"}},  # random early features must train
    {"model": {"backbone": "tiny_vit", "weights": "none"}},
    {"train": {"setup": "frozen"}},
    {"train": {"setup": "partial"}},
    {"train": {"epochs": 3}},
    {"train": {"devices": 2}},  # measured on one device only
])
def test_fast_recipe_leaves_other_runs_alone(parts):
    from funduslab.training.recipe import resolve_recipe

    cfg = _recipe_cfg(**parts)
    assert resolve_recipe(cfg) == cfg


def test_knobs_set_explicitly_win_over_the_recipe():
    from funduslab.training.recipe import resolve_recipe

    t = resolve_recipe(_recipe_cfg(train={"freeze_stages": 0, "progressive_size": 160,
                                          "progressive_epochs": 2})).train
    assert (t.freeze_stages, t.freeze_epochs, t.progressive_size) == (0, None, 160)
    t = resolve_recipe(_recipe_cfg(train={"freeze_epochs": 3})).train  # released after 3
    assert (t.freeze_stages, t.freeze_epochs) == (2, 3)


def test_releasing_frozen_stages_is_refused_under_ddp():
    with pytest.raises(ValidationError, match="DDP"):
        TrainConfig(freeze_stages=2, freeze_epochs=3, devices=2)
    assert TrainConfig(freeze_stages=2, devices=2).freeze_epochs is None  # frozen throughout: fine


def test_freeze_epochs_of_the_whole_run_is_spelled_null():
    assert TrainConfig(epochs=8, freeze_stages=2, freeze_epochs=8).freeze_epochs is None
    assert TrainConfig(epochs=8, freeze_stages=2, freeze_epochs=12).freeze_epochs is None
    assert TrainConfig(epochs=8, freeze_stages=2, freeze_epochs=7).freeze_epochs == 7


def test_a_run_under_the_recipe_matches_the_config_that_left_its_knobs_unset():
    """Presets compare a finished run's saved (resolved) config with the row they would train."""
    from funduslab.training.recipe import resolve_recipe
    from funduslab.training.resume import config_differences

    saved = resolve_recipe(_recipe_cfg())
    assert config_differences(saved, _recipe_cfg()) == []
    thawed = _recipe_cfg(train={"freeze_stages": 2, "freeze_epochs": 4})
    assert config_differences(thawed, _recipe_cfg()) == ["train.freeze_epochs: 4 → None"]
    every_weight = _recipe_cfg(train={"recipe": "plain"})
    assert "train.freeze_stages: 0 → 2" in config_differences(every_weight, _recipe_cfg())
