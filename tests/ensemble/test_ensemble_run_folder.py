"""Ensembles of real tiny runs: run-folder round trip, mismatched members, the CLI verb."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from funduslab.config import config_from_dict
from funduslab.ensemble import load_members, write_ensemble_run
from funduslab.training.runner import run

LABELS = ["D", "G", "A"]


def tiny_member(data: Path, out: Path, name: str, seed: int, **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "lr": 3e-3, "backbone_lr": 3e-3,
                "precision": "32", "warmup_epochs": 0, "seed": seed}
    settings.update(train)
    return config_from_dict({
        "data": {"root": str(data), "image_size": 64, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": settings,
        "output": {"out": str(out), "name": name, "figures": False},
    })


@pytest.fixture(scope="module")
def members(synth_course: Path, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("members")
    return [run(tiny_member(synth_course, out, f"m{s}", seed=s), progress=False) for s in range(3)]


def _probs(run_dir: Path, split: str) -> np.ndarray:
    frame = pd.read_csv(run_dir / "predictions" / f"{split}.csv")
    return frame[[f"p_{n}" for n in LABELS]].to_numpy()


def _truth(root: Path, split: str) -> pd.DataFrame:
    return pd.read_csv(root / f"{split}.csv")


@pytest.mark.parametrize("method", ["max_voting", "soft_voting", "weighted", "stacking"])
def test_every_method_writes_a_complete_run_folder(method, members, synth_course, tmp_path):
    out = write_ensemble_run(load_members(members), method, tmp_path / method, tune=True)
    for name in ("config.yaml", "metrics.json", "submission.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "val", "offsite_test"}
    for entry in metrics["splits"].values():
        assert set(entry) == {"threshold_0.5", "tuned_thresholds"}
    assert metrics["thresholds"]["used"] == "tuned_on_val"
    template = pd.read_csv(synth_course / "onsite_test_submission.csv")
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["id", "D", "G", "A"]
    assert sub["id"].tolist() == template["id"].tolist()
    for split in ("train", "val", "offsite_test", "onsite_test"):
        ours = pd.read_csv(out / "predictions" / f"{split}.csv")
        theirs = pd.read_csv(members[0] / "predictions" / f"{split}.csv")
        assert ours["id"].tolist() == theirs["id"].tolist()
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["ensemble"]["method"] == method
    assert cfg["ensemble"]["members"] == [  # relative to the ensemble folder
        Path(os.path.relpath(m.resolve(), out.resolve())).as_posix() for m in members]
    assert cfg["ensemble"]["members_absolute"] == [str(m.resolve()) for m in members]
    assert cfg["data"]["root"] == str(synth_course)


def test_soft_voting_numbers_match_an_independent_computation(members, synth_course, tmp_path):
    out = write_ensemble_run(load_members(members), "soft_voting", tmp_path / "soft")
    for split in ("val", "offsite_test", "onsite_test"):
        mean = np.mean([_probs(m, split) for m in members], axis=0)
        np.testing.assert_allclose(_probs(out, split), mean, atol=1e-6)
    # metrics.json's course average F-score, recomputed with scikit-learn from the labels on disk
    truth = _truth(synth_course, "offsite_test")
    preds = pd.read_csv(out / "predictions" / "offsite_test.csv")
    assert preds["id"].tolist() == truth["id"].astype(str).tolist()
    y = truth[LABELS].to_numpy()
    p = (np.mean([_probs(m, "offsite_test") for m in members], axis=0) >= 0.5).astype(int)
    expected = np.mean([f1_score(y[:, c], p[:, c], average="macro") for c in range(3)])
    metrics = json.loads((out / "metrics.json").read_text())
    saved = metrics["splits"]["offsite_test"]["threshold_0.5"]["course_average_f1"]
    assert saved == pytest.approx(expected)
    np.testing.assert_array_equal(preds[LABELS].to_numpy(), p)  # fixed 0.5 labels by default


def test_weighted_beats_its_members_on_val_and_records_weights(members, tmp_path):
    out = write_ensemble_run(load_members(members), "weighted", tmp_path / "w",
                             params={"objective": "course_average_f1"})
    metrics = json.loads((out / "metrics.json").read_text())
    weights = metrics["ensemble"]["learned"]["weights_"]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0) and min(weights) >= 0
    ens = metrics["splits"]["val"]["threshold_0.5"]["course_average_f1"]
    assert all(ens >= m["val"]["course_average_f1"] - 1e-12 for m in metrics["members"].values())


@pytest.mark.parametrize("method", ["weighted", "stacking"])
def test_garbage_test_labels_change_nothing_but_their_metrics(method, members, tmp_path):
    data = load_members(members)
    a = write_ensemble_run(data, method, tmp_path / "a")
    data.targets["offsite_test"] = 1 - data.targets["offsite_test"]
    data.targets["train"] = np.zeros_like(data.targets["train"])
    b = write_ensemble_run(data, method, tmp_path / "b")
    for split in ("train", "val", "offsite_test", "onsite_test"):
        pd.testing.assert_frame_equal(pd.read_csv(a / "predictions" / f"{split}.csv"),
                                      pd.read_csv(b / "predictions" / f"{split}.csv"))
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["splits"]["val"] == mb["splits"]["val"]
    assert ma["thresholds"] == mb["thresholds"]


def test_an_ensemble_folder_can_itself_be_a_member(members, tmp_path):
    soft = write_ensemble_run(load_members(members[:2]), "soft_voting", tmp_path / "soft")
    nested = write_ensemble_run(load_members([soft, members[2]]), "soft_voting", tmp_path / "n")
    first_two = np.mean([_probs(m, "val") for m in members[:2]], axis=0)
    expected = (first_two + _probs(members[2], "val")) / 2
    np.testing.assert_allclose(_probs(nested, "val"), expected, atol=2e-6)


def test_mismatched_members_raise_naming_the_run_folder(members, tmp_path):
    shuffled = tmp_path / "shuffled"
    shutil.copytree(members[1], shuffled)
    frame = pd.read_csv(shuffled / "predictions" / "val.csv")
    frame.iloc[::-1].to_csv(shuffled / "predictions" / "val.csv", index=False)
    with pytest.raises(ValueError, match=r"shuffled/predictions/val\.csv.*same order"):
        load_members([members[0], shuffled])

    relabelled = tmp_path / "relabelled"
    shutil.copytree(members[1], relabelled)
    cfg = yaml.safe_load((relabelled / "config.yaml").read_text())
    cfg["provenance"]["label_names"] = ["D", "G", "C"]
    (relabelled / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="relabelled predicts labels"):
        load_members([members[0], relabelled])

    with pytest.raises(FileNotFoundError, match="config.yaml"):
        load_members([members[0], tmp_path / "empty"])
    with pytest.raises(ValueError, match="at least 2"):
        load_members([members[0]])


def _cli() -> typer.Typer:
    from funduslab.cli.ensemble import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    return app


def test_cli_combines_run_folders_and_rejects_bad_input(members, tmp_path):
    cli = CliRunner()
    args = ["ensemble", "stacking", *map(str, members), "--out", str(tmp_path), "--name", "st",
            "--meta", "gradient_boosting", "--oof-folds", "2"]
    result = cli.invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((tmp_path / "st" / "config.yaml").read_text())
    params = cfg["ensemble"]["params"]
    assert params["meta"] == "gradient_boosting" and params["cv"] == 2

    result = cli.invoke(_cli(), ["ensemble", "median", *map(str, members), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "bagging" in result.output and "soft_voting" in result.output
    result = cli.invoke(_cli(), ["ensemble", "soft_voting", *map(str, members), "--out",
                                 str(tmp_path), "--meta", "logistic"])
    assert result.exit_code == 2 and "no parameter" in result.output
    result = cli.invoke(_cli(), ["ensemble", "bagging", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--config" in result.output
