"""The course-best preset: candidates as data, the row chosen on val, the deliverables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from funduslab.config import DEFAULT_EPOCHS
from funduslab.data.adapters import load_table
from funduslab.data.synthetic_layouts import write_layout
from funduslab.experiments import PRESETS, parse_preset_options
from funduslab.experiments.course_best import (
    CANDIDATES,
    QUICK,
    candidate_config,
    course_best,
    cross_fitted_val_f1,
)
from funduslab.models.factory import model_from_checkpoint
from funduslab.runs import write_predictions


@pytest.fixture(scope="module")
def odir5k_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_layout("odir5k", tmp_path_factory.mktemp("odir5k"), n=24, seed=3, size=32)


def _check_chosen_is_val_best(out: Path) -> dict:
    summary = json.loads((out / "results.json").read_text())
    ran = {n: r for n, r in summary["rows"].items() if not r["skipped"]}
    means = {n: float(np.mean(r["val"])) for n, r in ran.items()}
    assert summary["chosen"] == max(means, key=means.get)  # val only: the first best on a tie
    chosen = summary["rows"][summary["chosen"]]
    assert summary["chosen_run"] == chosen["runs"][int(np.argmax(chosen["val"]))]
    return summary


def _check_deliverables(out: Path, course: Path, run_dir: Path, weights: str) -> None:
    template = pd.read_csv(course / "onsite_test_submission.csv")
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["id", "D", "G", "A"]
    assert sub["id"].tolist() == template["id"].tolist()
    assert sub.equals(pd.read_csv(run_dir / "submission.csv"))
    payload = torch.load(out / weights, map_location="cpu", weights_only=True)
    assert payload["metadata"]["label_names"] == ["D", "G", "A"]
    model = model_from_checkpoint(out / weights).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_quick_without_source_chooses_on_val(synth_course: Path, tmp_path: Path):
    out = tmp_path / "best"
    results = course_best(synth_course, team="demo", out=out, quick=True, seeds=[0, 1],
                          rows="longer,tuned")
    assert PRESETS.get("course-best") is course_best
    summary = _check_chosen_is_val_best(out)
    assert list(summary["rows"]) == ["reference", "longer", "tuned"]  # reference always runs
    _check_deliverables(out, synth_course, Path(summary["chosen_run"]), "demo_task4.pt")
    text = results.read_text()
    assert "chosen on val only" in text and f"**{summary['chosen']}** (chosen)" in text
    assert "cross-fitted" in text and "`--quick`" in text
    for row in ("reference", "longer", "tuned"):
        assert f"| {row} |" in text or f"**{row}** (chosen)" in text
    # the quick overlay reaches every row; the tuned row re-evaluates the reference's weights
    cfg = yaml.safe_load((out / "longer_s1" / "config.yaml").read_text())
    assert (cfg["model"]["backbone"], cfg["data"]["image_size"], cfg["train"]["epochs"]) == (
        "tiny_cnn", 32, 1)
    tuned = yaml.safe_load((out / "tuned_s0" / "config.yaml").read_text())
    assert tuned["train"]["setup"] == "none" and tuned["train"]["tune_thresholds"] is True
    assert tuned["model"]["weights"] == str(out / "reference_s0" / "model.pt")
    tuned_metrics = json.loads((out / "tuned_s0" / "metrics.json").read_text())
    assert tuned_metrics["thresholds"]["used"] == "tuned_on_val"
    # the offsite figure of the tuned row is the tuned one; of the reference, the 0.5 one
    ref_metrics = json.loads((out / "reference_s0" / "metrics.json").read_text())
    assert summary["rows"]["reference"]["offsite_test"][0] == pytest.approx(
        ref_metrics["splits"]["offsite_test"]["threshold_0.5"]["course_average_f1"])
    assert summary["rows"]["tuned"]["offsite_test"][0] == pytest.approx(
        tuned_metrics["splits"]["offsite_test"]["tuned_thresholds"]["course_average_f1"])


def test_quick_with_a_synthetic_source_marks_extra_data(synth_course: Path, odir5k_source: Path,
                                                        tmp_path: Path):
    out = tmp_path / "best"
    results = course_best(synth_course, team="demo", out=out, quick=True, seeds=[0],
                          source=odir5k_source, rows="joined_d,joined_tuned,two_stage",
                          task="4-1")
    summary = _check_chosen_is_val_best(out)  # joined: the runs joined_tuned re-evaluates
    assert list(summary["rows"]) == ["reference", "joined", "joined_d", "joined_tuned",
                                     "two_stage"]
    _check_deliverables(out, synth_course, Path(summary["chosen_run"]), "demo_task4-1.pt")
    joined = yaml.safe_load((out / "joined_s0" / "config.yaml").read_text())
    assert joined["data"]["extra_sources"] == [{"adapter": "odir5k", "root": str(odir5k_source),
                                                "options": {"labels": ["D", "G", "A"]},
                                                "splits": None}]
    n_extra = len(load_table("odir5k", odir5k_source).frame)
    n_train = len(load_table("odir_course", synth_course).split("train"))
    assert joined["provenance"]["split_sizes"]["train"] == n_train + n_extra
    only_d = yaml.safe_load((out / "joined_d_s0" / "config.yaml").read_text())
    assert only_d["data"]["extra_sources"][0]["options"] == {"labels": ["D"]}  # G, A masked
    retuned = yaml.safe_load((out / "joined_tuned_s0" / "config.yaml").read_text())
    assert retuned["model"]["weights"] == str(out / "joined_s0" / "model.pt")
    assert retuned["data"]["extra_sources"] == joined["data"]["extra_sources"]
    two = yaml.safe_load((out / "two_stage_s0" / "config.yaml").read_text())
    assert two["train"]["setup"] == "two-stage" and two["train"]["source_epochs"] == 1  # quick
    assert two["train"]["source"]["image_size"] == 32
    extra = {n: r["extra_data"] for n, r in summary["rows"].items()}
    assert extra == {"reference": "—", "joined": "source joined to train",
                     "joined_d": "source joined to train (D only)",
                     "joined_tuned": "source joined to train", "two_stage": "source, stage 1"}
    assert str(odir5k_source) in results.read_text()


def test_rows_are_data_and_source_rows_need_a_source(synth_course: Path, tmp_path: Path):
    names = [c.name for c in CANDIDATES]
    assert names[0] == "reference" and {"joined", "joined_d", "two_stage", "lite1_256",
                                        "lite1_288", "lite2_256", "lite2_288", "longer",
                                        "tuned"} <= set(names)
    for c in CANDIDATES:  # a re-evaluating row comes after the row whose runs it reads
        assert not c.thresholds_of or names.index(c.thresholds_of) < names.index(c.name)
    ref = candidate_config(CANDIDATES[0], synth_course, tmp_path, seed=2)
    assert (ref.model.backbone, ref.model.weights, ref.data.image_size, ref.train.setup,
            ref.train.epochs, ref.train.loss, ref.train.tune_thresholds) == (
        "tf_efficientnet_lite0", "imagenet", 256, "full", DEFAULT_EPOCHS, "bce", False)
    assert ref.output.name == "reference_s2" and ref.train.seed == 2
    lite2 = candidate_config(next(c for c in CANDIDATES if c.name == "lite2_288"), synth_course,
                             tmp_path, seed=0)
    assert (lite2.model.backbone, lite2.data.image_size) == ("tf_efficientnet_lite2", 288)
    quick = candidate_config(next(c for c in CANDIDATES if c.name == "lite2_288"), synth_course,
                             tmp_path, seed=0, quick=True)
    assert (quick.model.backbone, quick.data.image_size) == (QUICK["model"]["backbone"], 32)
    for row in ("joined", "joined_tuned"):
        with pytest.raises(ValueError, match="pass --source"):
            course_best(synth_course, out=tmp_path / "a", quick=True, seeds=[0], rows=row)
    with pytest.raises(ValueError, match="course-best rows are: reference"):
        course_best(synth_course, out=tmp_path / "b", quick=True, seeds=[0], rows="lite3")
    with pytest.raises(FileNotFoundError, match="--source"):
        course_best(synth_course, out=tmp_path / "c", quick=True, seeds=[0],
                    source=tmp_path / "missing")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert parse_preset_options("course-best", ["rows=longer", "task=4-2", "workers=4"]) == {
        "rows": "longer", "task": "4-2", "workers": 4}


def test_tuned_row_lands_in_the_study_folder_when_the_reference_came_from_elsewhere(
        synth_course: Path, tmp_path: Path):
    """A finished reference run copied into a study keeps its old output.out in config.yaml;
    its tuned re-evaluation must still be written into (and read from) this study's folder."""
    first, second = tmp_path / "first", tmp_path / "second"
    course_best(synth_course, out=first, quick=True, seeds=[0], rows="reference")
    second.mkdir()
    shutil.copytree(first / "reference_s0", second / "reference_s0")
    course_best(synth_course, out=second, quick=True, seeds=[0], rows="tuned")
    assert (second / "tuned_s0" / "metrics.json").is_file()
    assert not (first / "tuned_s0").exists()
    summary = json.loads((second / "results.json").read_text())
    assert summary["rows"]["tuned"]["runs"] == [str(second / "tuned_s0")]


def test_cross_fitted_val_figure(synth_course: Path, tmp_path: Path):
    table = load_table("odir_course", synth_course)
    val = table.split("val")
    truth = val[table.label_names].to_numpy(dtype=float)
    ids = val["id"].tolist()
    perfect = tmp_path / "perfect"
    write_predictions(perfect / "predictions" / "val.csv", ids, truth * 0.8 + 0.1,
                      truth.astype(int), table.label_names)
    assert cross_fitted_val_f1(perfect, table) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = np.clip(truth * 0.3 + rng.random(truth.shape) * 0.7, 0, 1)
    order = rng.permutation(len(ids))
    for name, rows in (("noisy", np.arange(len(ids))), ("shuffled", order)):
        write_predictions(tmp_path / name / "predictions" / "val.csv", [ids[i] for i in rows],
                          noisy[rows], (noisy[rows] >= 0.5).astype(int), table.label_names)
    score = cross_fitted_val_f1(tmp_path / "noisy", table)
    assert 0.0 <= score < 1.0
    assert cross_fitted_val_f1(tmp_path / "shuffled", table) == pytest.approx(score)
