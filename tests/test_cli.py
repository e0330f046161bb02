"""The command line: verbs listed, user errors as one clear line, summary and synth round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from funduslab.cli import app

runner = CliRunner()


def test_help_lists_the_verbs():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("synth", "data", "train", "predict", "report", "pretrain", "suite", "demo",
                 "explain", "ensemble", "generate", "patches"):
        assert verb in result.output


def test_every_preset_is_registered_and_options_are_checked():
    from funduslab.experiments import PRESETS, parse_preset_options

    assert {"course-task1", "course-task2", "course-task3", "course-task4", "dr-grading",
            "screening", "lesion-patches"} <= set(PRESETS.names())
    result = runner.invoke(app, ["suite", "course-task1", "--data", ".", "--opt", "nope=1"])
    assert result.exit_code == 2
    assert "resnet_image_size" in result.output  # the error lists the valid options
    assert parse_preset_options("course-task1", ["pretrain-epochs=2"]) == {"pretrain_epochs": 2}


def test_suite_set_with_an_unknown_key_fails_before_training_and_lists_the_keys(
        synth_course: Path, tmp_path: Path):
    result = runner.invoke(app, ["suite", "course-task2", "--data", str(synth_course), "--quick",
                                 "--out", str(tmp_path), "--set", "train.epochz=3"])
    assert result.exit_code == 2, result.output
    assert "valid train keys" in result.output and " epochs," in result.output
    assert not list(tmp_path.glob("*_s0"))  # nothing trained


def test_synth_then_summary_counts_match_csvs(tmp_path: Path):
    out = tmp_path / "s"
    result = runner.invoke(app, ["synth", "--layout", "odir-course", "--out", str(out), "--n", "60",
                                 "--image-size", "64", "--seed", "3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "summary", str(out)])
    assert result.exit_code == 0, result.output
    import pandas as pd

    train = pd.read_csv(out / "train.csv")
    assert str(len(train)) in result.output
    assert str(int(train["D"].sum())) in result.output


def test_missing_dataset_is_one_clear_line_and_exit_2(tmp_path: Path):
    result = runner.invoke(app, ["data", "summary", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "not found" in result.output and "Traceback" not in result.output


def test_unknown_backbone_lists_valid_names(tmp_path: Path, synth_course: Path):
    result = runner.invoke(app, ["train", "--data", str(synth_course), "--backbone", "resnet1000",
                                 "--out", str(tmp_path), "--epochs", "1"])
    assert result.exit_code == 2
    assert "resnet18" in result.output


def test_train_flags_reach_the_config_and_bad_values_are_one_line(tmp_path: Path,
                                                                    synth_course: Path):
    base = ["train", "--data", str(synth_course), "--backbone", "tiny_cnn", "--weights", "none",
            "--out", str(tmp_path), "--epochs", "1"]
    result = runner.invoke(app, base + ["--dual", "attention"])
    assert result.exit_code == 2  # the course layout has no image pairs
    assert "pair" in result.output and "deepdrid" in result.output
    result = runner.invoke(app, base + ["--layer-decay", "1.5"])
    assert result.exit_code == 2 and "layer_decay" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(not Path(__file__).parents[2].joinpath("shared/data/odir-course").is_dir()
                    and not Path("../shared/data/odir-course").is_dir(),
                    reason="real course data not beside the checkout")
def test_summary_of_real_course_data_matches_csv_prevalence():
    root = Path(__file__).parents[2] / "shared/data/odir-course"
    if not root.is_dir():
        root = Path("../shared/data/odir-course")
    result = runner.invoke(app, ["data", "summary", str(root)])
    assert result.exit_code == 0, result.output
    for count in ("517", "163", "142", "800", "250"):
        assert count in result.output
