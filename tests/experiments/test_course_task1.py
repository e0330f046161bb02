"""The course-task1 preset and the demo run end to end on tiny synthetic data (quick)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console

from funduslab.experiments import PRESETS, run_preset
from funduslab.experiments.course_task1 import course_task1
from funduslab.experiments.demo import run_demo


def _row(text: str, task: str, model: str) -> str:
    return next(ln for ln in text.splitlines() if ln.startswith(f"| {task} | {model} |"))


def test_course_task1_quick_without_source_trains_the_trainable_rows(synth_course: Path,
                                                                     tmp_path: Path):
    out = tmp_path / "runs"
    results = run_preset("course-task1", data=synth_course, team="demo", out=out, quick=True,
                         seeds=[0], sets=["data.image_size=32"])
    assert PRESETS.get("course-task1") is course_task1
    text = results.read_text()
    assert results == out / "results.md" and text.startswith("# Course Task 1")
    for task, model, weights in (("1-2", "EfficientNet (tf_efficientnet_lite0)", "ImageNet"),
                                 ("1-3", "EfficientNet (tf_efficientnet_lite0)", "ImageNet"),
                                 ("1-2", "ResNet18 (resnet18)", "random init"),
                                 ("1-3", "ResNet18 (resnet18)", "random init")):
        row = _row(text, task, model)
        assert weights in row and "| 32 px |" in row and f"demo_task{task}.pt" in row
    assert "| 1-1 |" not in text  # no course checkpoint and no --source: nothing to evaluate
    runs = {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert runs == {"task1-2_efficientnet_s0", "task1-3_efficientnet_s0",
                    "task1-2_resnet18_s0", "task1-3_resnet18_s0"}
    # the quick overlay per setup (frozen: 5 epochs, full: 2), then --set over every row
    for name, setup, epochs in (("task1-2_resnet18_s0", "frozen", 5),
                                ("task1-3_resnet18_s0", "full", 2)):
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        assert (cfg["train"]["setup"], cfg["train"]["epochs"], cfg["train"]["batch_size"],
                cfg["data"]["image_size"]) == (setup, epochs, 8, 32)
    frozen = yaml.safe_load((out / "task1-2_resnet18_s0" / "config.yaml").read_text())
    assert frozen["train"]["lr"] == 3e-3 and frozen["train"]["warmup_epochs"] == 0
    payload = torch.load(out / "task1-3_resnet18_s0" / "demo_task1-3.pt", map_location="cpu",
                         weights_only=True)
    assert payload["metadata"]["label_names"] == ["D", "G", "A"]


def test_course_task1_rejects_an_unknown_set_key_before_training(synth_course: Path,
                                                                 tmp_path: Path):
    with pytest.raises(ValueError, match="valid train keys: setup, epochs"):
        course_task1(synth_course, out=tmp_path / "runs", quick=True,
                     sets=["train.epoch=3"])
    assert not (tmp_path / "runs").exists()


def test_demo_runs_every_task1_row_from_source_models(tmp_path: Path):
    console = Console(file=io.StringIO(), width=200)
    results = run_demo(tmp_path, console=console, size=64, source_n=48)
    assert results == tmp_path / "runs" / "results.md"
    text = results.read_text()
    for family in ("EfficientNet (tf_efficientnet_lite0)", "ResNet18 (resnet18)"):
        for task in ("1-1", "1-2", "1-3"):
            assert "| 64 px |" in _row(text, task, family)
    assert "funduslab pretrain on odir5k" in _row(text, "1-1", "ResNet18 (resnet18)")
    assert "funduslab pretrain on odir5k" in _row(text, "1-1",
                                                 "EfficientNet (tf_efficientnet_lite0)")
    assert (tmp_path / "runs" / "pretrained_backbone" / "ckpt_resnet18_ep1.pt").is_file()
    none = yaml.safe_load((tmp_path / "runs" / "task1-1_resnet18_s0" / "config.yaml").read_text())
    assert none["train"]["setup"] == "none" and none["model"]["weights"].endswith("_ep1.pt")
    assert "Course Task 1" in console.file.getvalue()
