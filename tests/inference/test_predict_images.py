"""``funduslab predict``: a saved model on new images reproduces what its run predicted.

The reference is the run folder itself: the runner predicted every split (including the
unlabelled onsite split, whose ``submission.csv`` it wrote) from the decode cache; ``predict``
decodes the image files again with the model's recorded preprocessing and must agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.data.cache import decode_preprocessed
from funduslab.data.synthetic_layouts import write_layout
from funduslab.ensemble import load_members, write_ensemble_run
from funduslab.ensemble.bundle import save_ensemble_bundle
from funduslab.preprocess import build_pipeline
from funduslab.inference.predict_images import list_inputs, predict_saved, write_prediction_folder
from funduslab.training.runner import run
from funduslab.inference.saved_model import load_saved_model

LABELS = ["D", "G", "A"]
cli = CliRunner()


def _cfg(data: Path, out: Path, name: str, seed: int = 0, **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "lr": 3e-3, "backbone_lr": 3e-3,
                "precision": "32", "warmup_epochs": 0, "seed": seed}
    settings.update(train)
    return config_from_dict({
        "data": {"root": str(data), "image_size": 48, "cache_dir": str(out / "cache"),
                 "augment": "none", "preprocess": "circle_crop"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": settings,
        "output": {"out": str(out), "name": name, "figures": False},
    })


@pytest.fixture(scope="module")
def runs(synth_course: Path, tmp_path_factory) -> dict[str, Path]:
    """Two tiny course runs (one with val-tuned thresholds, one with flip TTA)."""
    out = tmp_path_factory.mktemp("predict_runs")
    return {"tuned": run(_cfg(synth_course, out, "tuned", tune_thresholds=True), progress=False),
            "tta": run(_cfg(synth_course, out, "tta", seed=1, tta=True), progress=False)}


def _saved_probs(run_dir: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / "predictions" / f"{split}.csv").set_index("id")


def _template(data: Path) -> Path:
    return data / "onsite_test_submission.csv"


@pytest.mark.parametrize("name", ["tuned", "tta"])
def test_predicting_the_onsite_template_reproduces_the_runs_submission(
    runs, synth_course: Path, tmp_path: Path, name: str
):
    run_dir = runs[name]
    saved = load_saved_model(run_dir)
    assert saved.tta is (name == "tta") and saved.preprocess == "circle_crop"
    inputs = list_inputs(_template(synth_course), synth_course / "images" / "onsite_test")
    out = write_prediction_folder(tmp_path / "p", saved, inputs, predict_saved(saved, inputs.paths))
    ours = pd.read_csv(out / "predictions.csv").set_index("id")
    theirs = _saved_probs(run_dir, "onsite_test").loc[ours.index]
    cols = [f"p_{n}" for n in LABELS]
    np.testing.assert_allclose(ours[cols].to_numpy(), theirs[cols].to_numpy(), atol=2e-5)
    sub, run_sub = pd.read_csv(out / "submission.csv"), pd.read_csv(run_dir / "submission.csv")
    assert list(sub.columns) == ["id", "D", "G", "A"]
    assert sub["id"].tolist() == pd.read_csv(_template(synth_course))["id"].tolist()
    pd.testing.assert_frame_equal(sub, run_sub)
    record = json.loads((out / "predict.json").read_text())
    assert record["images"] == len(sub) and record["tta"] is (name == "tta")
    assert record["threshold_source"] == "the run's" and len(record["images_fingerprint"]) == 64


def test_the_runs_tuned_thresholds_are_used_unless_one_threshold_is_given(
    runs, synth_course: Path, tmp_path: Path
):
    saved = load_saved_model(runs["tuned"])
    metrics = json.loads((runs["tuned"] / "metrics.json").read_text())
    np.testing.assert_allclose(saved.thresholds, metrics["thresholds"]["tuned_on_val"])
    inputs = list_inputs(synth_course / "images" / "offsite_test")
    outputs = predict_saved(saved, inputs.paths)
    fixed = write_prediction_folder(tmp_path / "fixed", saved, inputs, outputs, threshold=0.5)
    frame = pd.read_csv(fixed / "predictions.csv")
    for name in LABELS:
        np.testing.assert_array_equal(frame[name], (frame[f"p_{name}"] >= 0.5).astype(int))


def test_a_folder_gives_the_same_probabilities_as_the_csv_and_weights_file_as_the_folder(
    runs, synth_course: Path
):
    run_dir = runs["tuned"]
    folder = list_inputs(synth_course / "images" / "offsite_test")
    assert folder.ids == sorted(folder.ids) and all(Path(p).is_file() for p in folder.paths)
    from_run = predict_saved(load_saved_model(run_dir), folder.paths)
    from_file = predict_saved(load_saved_model(run_dir / "model.pt"), folder.paths)
    np.testing.assert_allclose(from_run, from_file, atol=1e-6)
    probs = 1 / (1 + np.exp(-from_run))
    theirs = _saved_probs(run_dir, "offsite_test").loc[folder.ids, [f"p_{n}" for n in LABELS]]
    np.testing.assert_allclose(probs, theirs.to_numpy(), atol=2e-5)


def test_tta_flag_overrides_the_run_and_changes_the_outputs(runs, synth_course: Path):
    saved = load_saved_model(runs["tuned"])
    paths = list_inputs(synth_course / "images" / "offsite_test").paths[:8]
    plain = predict_saved(saved, paths)
    flipped = predict_saved(saved, paths, tta=True)
    assert not np.allclose(plain, flipped)  # a tiny CNN is not flip-invariant
    pipe = build_pipeline("circle_crop", 48)  # the three views by hand
    decoded = np.stack([decode_preprocessed(p, pipe, 48) for p in paths])
    x = torch.from_numpy(decoded).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        expected = torch.stack([saved.model(v) for v in (x, x.flip(-1), x.flip(-2))]).mean(0)
    np.testing.assert_allclose(flipped, expected.numpy(), atol=1e-5)


def test_an_ensemble_bundle_predicts_as_its_ensemble_run(runs, synth_course: Path, tmp_path: Path):
    ens = write_ensemble_run(load_members(list(runs.values())), "soft_voting", tmp_path / "ens")
    bundle = save_ensemble_bundle(ens, tmp_path / "team_task4.pt")
    inputs = list_inputs(synth_course / "images" / "offsite_test")
    cols = [f"p_{n}" for n in LABELS]
    theirs = _saved_probs(ens, "offsite_test").loc[inputs.ids, cols].to_numpy()
    for source in (bundle, ens):  # the bundle file, and the ensemble run folder itself
        saved = load_saved_model(source)
        probs = 1 / (1 + np.exp(-predict_saved(saved, inputs.paths)))
        np.testing.assert_allclose(probs, theirs, atol=2e-5)


def test_grading_models_write_grades_with_their_cut_points(tmp_path: Path):
    data = write_layout("aptos", tmp_path / "aptos", n=60, seed=2, size=48)
    cfg = config_from_dict({
        "data": {"adapter": "aptos", "root": str(data), "image_size": 32,
                 "cache_dir": str(tmp_path / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 8, "precision": "32",
                  "formulation": "regression", "warmup_epochs": 0},
        "output": {"out": str(tmp_path / "runs"), "name": "reg", "figures": False},
    })
    run_dir = run(cfg, progress=False)
    saved = load_saved_model(run_dir)
    assert saved.task == "grading" and saved.num_grades == 5
    inputs = list_inputs(data / "test.csv", data / "test_images")
    out = write_prediction_folder(tmp_path / "p", saved, inputs, predict_saved(saved, inputs.paths))
    ours = pd.read_csv(out / "submission.csv")
    assert list(ours.columns) == ["id_code", "grade"]
    theirs = pd.read_csv(run_dir / "submission.csv")  # id_code, diagnosis from the run
    np.testing.assert_array_equal(ours["grade"], theirs.set_index("id_code").loc[
        ours["id_code"], "diagnosis"])


# --- bad input ------------------------------------------------------------------------------

def test_a_missing_image_names_the_csv_row(synth_course: Path, tmp_path: Path):
    template = tmp_path / "t.csv"
    frame = pd.read_csv(_template(synth_course))
    frame.loc[2, "id"] = "nobody_left.jpg"
    frame.to_csv(template, index=False)
    with pytest.raises(FileNotFoundError, match=r"t\.csv.*nobody_left\.jpg"):
        list_inputs(template, synth_course / "images" / "onsite_test")


def test_a_corrupt_image_is_named(runs, synth_course: Path, tmp_path: Path):
    folder = tmp_path / "imgs"
    shutil.copytree(synth_course / "images" / "offsite_test", folder)
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(b"\xff\xd8 not a jpeg")
    saved = load_saved_model(runs["tuned"])
    with pytest.raises(ValueError, match=victim.name):
        predict_saved(saved, list_inputs(folder).paths)


def test_a_template_asking_for_labels_the_model_lacks_is_refused(runs, synth_course: Path,
                                                                 tmp_path: Path):
    template = tmp_path / "t.csv"
    pd.read_csv(_template(synth_course)).assign(C=0).to_csv(template, index=False)
    inputs = list_inputs(template, synth_course / "images" / "onsite_test")
    saved = load_saved_model(runs["tuned"])
    with pytest.raises(ValueError, match=r"\['C'\].*does not predict"):
        write_prediction_folder(tmp_path / "p", saved, inputs, np.zeros((len(inputs.ids), 3)))
    assert not (tmp_path / "p").exists()  # refused before anything was written


def test_files_that_are_not_funduslab_models_are_named(tmp_path: Path):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match=r"plain\.pt.*not a funduslab model"):
        load_saved_model(plain)
    with pytest.raises(FileNotFoundError, match="no model at"):
        load_saved_model(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        load_saved_model(tmp_path)


# --- command line ---------------------------------------------------------------------------

def test_cli_predict_writes_the_submission_and_reports_bad_input_in_one_line(
    runs, synth_course: Path, tmp_path: Path
):
    out = tmp_path / "cli"
    result = cli.invoke(app, ["predict", str(runs["tuned"]), str(_template(synth_course)),
                              "--images", str(synth_course / "images" / "onsite_test"),
                              "--out", str(out)])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "submission.csv"),
                                  pd.read_csv(runs["tuned"] / "submission.csv"))
    result = cli.invoke(app, ["predict", str(runs["tuned"]), str(_template(synth_course))])
    assert result.exit_code == 2 and "pass --images" in result.output
    result = cli.invoke(app, ["predict", str(runs["tuned"]), str(synth_course / "images"),
                              "--threshold", "1.5"])
    assert result.exit_code == 2 and "--threshold" in result.output
