"""k-fold cross-validation: patient-grouped stratified folds over train+val, out-of-fold scores,
fold ensemble on the test splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.folds import assign_folds, fold_table
from funduslab.metrics import multilabel_metrics
from funduslab.training.cross_validation import cross_validate
from funduslab.inference.predict_images import list_inputs, predict_saved
from funduslab.inference.saved_model import load_saved_model

LABELS = ["D", "G", "A"]
PROBS = [f"p_{n}" for n in LABELS]


def test_folds_keep_patients_together_balance_labels_and_leave_tests_alone(synth_course: Path):
    table = load_table("odir_course", synth_course)
    folds = assign_folds(table, ["train", "val"], 4, seed=0)
    frame = table.frame
    pooled = frame["split"].isin(["train", "val"]).to_numpy()
    assert (folds[~pooled] == -1).all() and set(folds[pooled]) == {0, 1, 2, 3}
    per_patient = pd.Series(folds[pooled]).groupby(frame.loc[pooled, "patient"].to_numpy())
    assert per_patient.nunique().max() == 1  # a patient's eyes never straddle folds
    sizes = np.bincount(folds[pooled])
    assert sizes.max() - sizes.min() <= 0.25 * sizes.mean()
    overall = frame.loc[pooled, LABELS].astype(int).mean()
    for k in range(4):
        share = frame.loc[pooled][folds[pooled] == k][LABELS].astype(int).mean()
        assert (share - overall).abs().max() < 0.12, (k, share.to_dict())
    np.testing.assert_array_equal(folds, assign_folds(table, ["train", "val"], 4, seed=0))
    assert not np.array_equal(folds, assign_folds(table, ["train", "val"], 4, seed=1))
    refolded = fold_table(table, "train", "val", 4, 2, seed=0).frame.set_index("id")
    assert (refolded.loc[frame["id"][pooled & (folds == 2)], "split"] == "val").all()
    assert (refolded.loc[frame["id"][pooled & (folds != 2)], "split"] == "train").all()
    tests = frame[~pooled].set_index("id")["split"]
    pd.testing.assert_series_equal(refolded.loc[tests.index, "split"], tests)
    with pytest.raises(ValueError, match="cannot fill"):
        assign_folds(table, ["train", "val"], 10_000)


def test_fold_settings_are_checked():
    for bad in ({"folds": 1}, {"folds": 3, "fold": 3}):
        with pytest.raises(ValueError, match="data.folds"):
            config_from_dict({"data": bad})


@pytest.fixture(scope="module")
def cv_dir(synth_course: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv")
    cfg = config_from_dict({
        "data": {"root": str(synth_course), "image_size": 32, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32",
                  "warmup_epochs": 0, "tune_thresholds": True},
        "output": {"out": str(out), "name": "tiny_cv", "figures": False},
    })
    return cross_validate(cfg, folds=3, progress=False)


def test_out_of_fold_predictions_cover_train_and_val_once_each_from_its_own_fold(
    cv_dir: Path, synth_course: Path
):
    table = load_table("odir_course", synth_course)
    pooled = table.frame[table.frame["split"].isin(["train", "val"])]
    oof = pd.read_csv(cv_dir / "predictions" / "val.csv")
    assert sorted(oof["id"]) == sorted(pooled["id"])
    oof = oof.set_index("id")
    for k in range(3):  # every image's score comes from the fold that held it out
        held = pd.read_csv(cv_dir / f"fold{k}" / "predictions" / "val.csv").set_index("id")
        np.testing.assert_allclose(oof.loc[held.index, PROBS], held[PROBS], atol=1e-6)
    metrics = json.loads((cv_dir / "metrics.json").read_text())
    truth = pooled.set_index("id").loc[oof.index, LABELS].to_numpy(dtype=int)
    expected = multilabel_metrics(truth, oof[PROBS].to_numpy(), 0.5, LABELS)
    got = metrics["splits"]["val"]["threshold_0.5"]["course_average_f1"]
    assert got == pytest.approx(expected["course_average_f1"], abs=1e-4)
    assert len(metrics["cross_validation"]["fold_val_course_average_f1"]) == 3


def test_test_splits_get_the_mean_of_the_fold_models(cv_dir: Path, synth_course: Path):
    ours = pd.read_csv(cv_dir / "predictions" / "offsite_test.csv").set_index("id")
    folds = [pd.read_csv(cv_dir / f"fold{k}" / "predictions" / "offsite_test.csv")
             .set_index("id").loc[ours.index, PROBS].to_numpy() for k in range(3)]
    np.testing.assert_allclose(ours[PROBS].to_numpy(), np.mean(folds, axis=0), atol=2e-6)
    sub = pd.read_csv(cv_dir / "submission.csv")
    assert list(sub.columns) == ["id", *LABELS]
    # the folder predicts new images as it predicted its test splits (fold models averaged,
    # out-of-fold thresholds)
    saved = load_saved_model(cv_dir)
    inputs = list_inputs(synth_course / "images" / "offsite_test")
    probs = 1 / (1 + np.exp(-predict_saved(saved, inputs.paths)))
    np.testing.assert_allclose(probs, ours.loc[inputs.ids, PROBS].to_numpy(), atol=2e-5)
    metrics = json.loads((cv_dir / "metrics.json").read_text())
    np.testing.assert_allclose(saved.thresholds, metrics["thresholds"]["tuned_on_val"])


def test_rerunning_reuses_the_finished_folds(cv_dir: Path):
    import yaml

    from funduslab.config import config_from_dict as load

    stamps = {k: (cv_dir / f"fold{k}" / "model.pt").stat().st_mtime_ns for k in range(3)}
    raw = yaml.safe_load((cv_dir / "config.yaml").read_text())
    cfg = load(raw)
    cfg.data.folds, cfg.data.fold = 0, 0
    cross_validate(cfg, folds=3, progress=False)
    assert stamps == {k: (cv_dir / f"fold{k}" / "model.pt").stat().st_mtime_ns
                      for k in range(3)}
