"""The dr-grading preset runs end to end on synthetic APTOS / ODIR-5K data in quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from funduslab.data.synthetic_layouts import write_layout
from funduslab.experiments import PRESETS
from funduslab.experiments.dr_grading import dr_grading
from funduslab.reporting.tables import mean_std


def test_dr_grading_quick_compares_formulations_preprocessing_and_two_stage(tmp_path: Path):
    target = write_layout("aptos", tmp_path / "target", n=60, seed=3, size=48)
    source = write_layout("aptos", tmp_path / "source", n=60, seed=4, size=48)
    out = tmp_path / "runs"
    results = dr_grading(target, out=out, quick=True, seeds=[0], source=source, adapter="aptos",
                         backbone="tiny_cnn", weights="none", preprocess="none,clahe",
                         two_stage=True)
    assert PRESETS.get("dr-grading") is dr_grading
    text = results.read_text()
    for needle in ("test quadratic κ", "test linear κ", "test unweighted κ", "test accuracy",
                   "| regression | none |", "| ordinal | none |", "| ce | clahe |",
                   "stage 1 (source)", "stage 2 (target)", "one stage (baseline)"):
        assert needle in text, needle
    runs = {p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}
    # ce/none is shared by both studies: run once
    assert runs == {"grading_ce_none_s0", "grading_regression_none_s0", "grading_ordinal_none_s0",
                    "grading_ce_clahe_s0", "grading_two_stage_s0"}
    clahe = yaml.safe_load((out / "grading_ce_clahe_s0" / "config.yaml").read_text())
    assert clahe["data"]["preprocess"] == "clahe" and clahe["train"]["monitor"] == "quadratic_kappa"
    reg = json.loads((out / "grading_regression_none_s0" / "metrics.json").read_text())
    qwk = reg["splits"]["test"]["grading"]["quadratic_weighted_kappa"]
    assert f"| regression | none | {mean_std([qwk])} |" in text  # the table shows the run's number
    two = json.loads((out / "grading_two_stage_s0" / "metrics.json").read_text())
    assert two["fit"]["source_stage"]["monitor"] == "val_quadratic_kappa"
    assert (out / "grading_two_stage_s0" / "source_stage" / "history.csv").is_file()


def test_dr_grading_reads_odir5k_grades_and_rejects_bad_options(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=80, seed=3, size=48)
    results = dr_grading(data, out=tmp_path / "runs", quick=True, seeds=[0], backbone="tiny_cnn",
                         weights="none", formulations="ordinal", preprocess="none",
                         dual="concat", sampler="class_sqrt", setup="frozen")
    text = results.read_text()
    assert "| ordinal | none |" in text and "`concat` fusion" in text and "`class_sqrt`" in text
    assert "a head on frozen features" in text
    run_dir = tmp_path / "runs" / "grading_ordinal_none_s0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["dual"] == "concat"  # each eye graded beside its fellow eye
    assert saved["train"]["setup"] == "frozen"
    with pytest.raises(ValueError, match="setup must be"):
        dr_grading(data, out=tmp_path / "bad", quick=True, setup="partial")
    with pytest.raises(ValueError, match="valid: .*ben_graham"):
        dr_grading(data, out=tmp_path / "bad", quick=True, preprocess="none,fancy")
    with pytest.raises(ValueError, match="needs --source"):
        dr_grading(data, out=tmp_path / "bad", quick=True, two_stage=True)
