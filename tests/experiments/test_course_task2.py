"""The course-task2 preset runs end to end on the synthetic course split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from funduslab.experiments import PRESETS
from funduslab.experiments.course_task2 import course_task2, task2_variants
from funduslab.models.factory import model_from_checkpoint


def test_course_task2_quick_writes_table_and_task_weights(synth_course: Path, tmp_path: Path):
    out = tmp_path / "runs"
    results = course_task2(synth_course, team="demo", out=out, quick=True, seeds=[0],
                           backbone="tiny_cnn", weights="none", sampler="patient",
                           gamma=1.5, beta=0.99)
    assert PRESETS.get("course-task2") is course_task2
    text = results.read_text()
    rows = ["| — | bce |", "| 2-1 | focal |", "| 2-2 | class_balanced |", "| — | asymmetric |"]
    positions = [text.index(row) for row in rows]
    assert positions == sorted(positions)  # in this order
    assert "tuned on val only" in text and "γ=1.5" in text and "β=0.99" in text

    for name, loss, options in (("bce_s0", "bce", {}),
                                ("focal_s0", "focal", {"gamma": 1.5, "alpha": None}),
                                ("class_balanced_s0", "class_balanced",
                                 {"beta": 0.99, "base": "focal", "gamma": 1.5}),
                                ("asymmetric_s0", "asymmetric",
                                 {"gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05})):
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        assert cfg["train"]["loss"] == loss and cfg["train"]["loss_options"] == options
        assert cfg["train"]["sampler"] == "patient"

    for run_dir, task in (("focal_s0", "2-1"), ("class_balanced_s0", "2-2")):
        weights = out / run_dir / f"demo_task{task}.pt"
        assert weights.is_file()
        payload = torch.load(weights, map_location="cpu", weights_only=True)
        assert payload["format"] == "funduslab"
        assert payload["state_dict"] and all(isinstance(v, torch.Tensor)
                                             for v in payload["state_dict"].values())
        assert payload["metadata"]["label_names"] == ["D", "G", "A"]
        model = model_from_checkpoint(weights)  # the weights fit the architecture they name
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    assert not list((out / "bce_s0").glob("demo_task*.pt"))  # extra rows save no task weights


def test_bad_loss_options_fail_before_training(synth_course: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="beta"):
        course_task2(synth_course, out=tmp_path, quick=True, seeds=[0], beta=1.0)
    with pytest.raises(ValueError, match="sampler"):
        course_task2(synth_course, out=tmp_path, quick=True, seeds=[0], sampler="patients")
    assert not any(tmp_path.iterdir())


def test_variant_rows_and_tasks():
    variants = task2_variants()
    assert [v.name for v in variants] == ["bce", "focal", "class_balanced", "asymmetric"]
    assert [v.task for v in variants] == [None, "2-1", "2-2", None]


def test_baseline_runs_are_reused_only_under_the_same_recipe(synth_course: Path, tmp_path: Path):
    first = tmp_path / "first"
    course_task2(synth_course, out=first, quick=True, seeds=[0], backbone="tiny_cnn",
                 weights="none", rows="bce")
    out = tmp_path / "second"
    results = course_task2(synth_course, out=out, quick=True, seeds=[0], backbone="tiny_cnn",
                           weights="none", rows="bce,focal",
                           baseline_runs=str(first / "bce_s*"))
    assert not (out / "bce_s0").exists() and (out / "focal_s0" / "metrics.json").is_file()
    text = results.read_text()
    assert "| — | bce |" in text and "reuses finished runs" in text
    with pytest.raises(ValueError, match=r"train\.sampler: 'random' → 'patient'"):
        course_task2(synth_course, out=tmp_path / "third", quick=True, seeds=[0],
                     backbone="tiny_cnn", weights="none", rows="bce", sampler="patient",
                     baseline_runs=str(first / "bce_s*"))
    with pytest.raises(ValueError, match="has seed 1"):
        course_task2(synth_course, out=tmp_path / "third", quick=True, seeds=[1],
                     backbone="tiny_cnn", weights="none", rows="bce",
                     baseline_runs=str(first / "bce_s*"))
    with pytest.raises(ValueError, match="unknown row"):
        course_task2(synth_course, out=tmp_path / "third", quick=True, rows="bce,focall")
