"""RunFolder: one reader of run folders and records (issue 30, step 1)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny_runs import train_tiny

from funduslab.config import RunConfig
from funduslab.runs import RunFolder, clean_up_failed_run, find_run_folders

LABELS = ["D", "G", "A"]


@pytest.fixture(scope="module")
def tiny_run(synth_course: Path, tmp_path_factory) -> Path:
    return train_tiny(synth_course, tmp_path_factory.mktemp("runs"))


def _folder(tmp_path: Path, config: object = None, files: tuple[str, ...] = ()) -> Path:
    """A hand-made folder: ``config`` dumped as config.yaml (a str is written as it is)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        (tmp_path / "config.yaml").write_text(text)
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"weights")
    return tmp_path


def test_every_property_of_a_real_run(tiny_run: Path):
    folder = RunFolder(tiny_run)
    assert folder.path == tiny_run
    raw = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert folder.config == raw
    assert folder.provenance == raw["provenance"] and folder.provenance["seed"] == 0
    assert isinstance(folder.run_config, RunConfig) and folder.run_config.output.task == "1-3"
    assert folder.label_names == LABELS
    assert folder.metrics == json.loads((tiny_run / "metrics.json").read_text())
    assert folder.prediction_splits == ["offsite_test", "onsite_test", "train", "val"]
    ids, probs = folder.predictions("val")
    frame = pd.read_csv(tiny_run / "predictions" / "val.csv")
    assert ids == frame["id"].astype(str).tolist()
    np.testing.assert_array_equal(probs, frame[["p_D", "p_G", "p_A"]].to_numpy())
    _, reordered = folder.predictions("val", ["A", "D"])
    np.testing.assert_array_equal(reordered, frame[["p_A", "p_D"]].to_numpy())
    history = folder.history
    assert isinstance(history, pd.DataFrame) and len(history) == 1
    assert folder.weights == tiny_run / "unit_task1-3.pt" == folder.require_weights()
    assert folder.bundle is None
    assert folder.is_finished and not folder.is_ensemble and not folder.is_record
    assert folder.failed is None
    assert folder.bf16 is False and folder.tta is False


def test_parsed_files_are_copies(tiny_run: Path):
    folder = RunFolder(tiny_run)
    cfg, metrics = folder.config, folder.metrics
    cfg["data"]["root"] = "elsewhere"
    metrics.clear()
    assert folder.config["data"]["root"] != "elsewhere" and folder.metrics


def test_a_record_reads_like_its_run(tiny_run: Path, tmp_path: Path):
    from funduslab.reporting.record import write_record

    record = RunFolder(write_record(tiny_run, tmp_path / "results" / "tiny"))
    original = RunFolder(tiny_run)
    assert record.is_record and record.is_finished and not original.is_record
    assert record.weights is None and record.bundle is None
    assert record.config == original.config and record.metrics == original.metrics
    assert record.label_names == LABELS
    ids, probs = record.predictions("offsite_test")
    ref_ids, ref_probs = original.predictions("offsite_test")
    assert ids == ref_ids
    np.testing.assert_array_equal(probs, ref_probs)
    pd.testing.assert_frame_equal(record.history, original.history)
    with pytest.raises(FileNotFoundError, match="has no weights file"):
        record.require_weights()


def test_bad_config_names_the_file(tmp_path: Path):
    bad = RunFolder(_folder(tmp_path / "bad", "data: [unclosed\n"))
    with pytest.raises(ValueError, match=r"bad/config.yaml is not valid YAML"):
        bad.config
    listed = RunFolder(_folder(tmp_path / "list", "- a\n- b\n"))
    with pytest.raises(ValueError, match=r"list/config.yaml holds no mapping"):
        listed.config
    invalid = RunFolder(_folder(tmp_path / "invalid", {"train": {"epochs": -3}}))
    with pytest.raises(ValueError, match=r"invalid/config.yaml.*train.epochs"):
        invalid.run_config
    empty = RunFolder(_folder(tmp_path / "empty", ""))
    assert empty.config == {} and empty.provenance == {}
    missing = RunFolder(_folder(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="none has no config.yaml"):
        missing.config
    with pytest.raises(FileNotFoundError, match="none has no metrics.json"):
        missing.metrics
    assert not missing.is_finished and not missing.is_ensemble and missing.history is None


def test_weights_are_the_one_funduslab_file(tmp_path: Path):
    course = {"output": {"team": "team", "task": "1-3"}}
    assert RunFolder(_folder(tmp_path / "a", course, ("team_task1-3.pt",))).weights.name == \
        "team_task1-3.pt"
    # the configured name wins over other .pt files
    both = _folder(tmp_path / "b", course, ("team_task1-3.pt", "model.pt"))
    assert RunFolder(both).weights == both / "team_task1-3.pt"
    # no configured name on disk: the only .pt, whatever the config says
    assert RunFolder(_folder(tmp_path / "c", course, ("model.pt",))).weights.name == "model.pt"
    assert RunFolder(_folder(tmp_path / "d", None, ("x_task2-1.pt",))).weights.name == \
        "x_task2-1.pt"
    two = RunFolder(_folder(tmp_path / "e", {}, ("a_task1-1.pt", "b_task1-1.pt")))
    with pytest.raises(ValueError, match=r"a_task1-1.pt.*b_task1-1.pt.*none is model.pt"):
        two.weights
    assert RunFolder(_folder(tmp_path / "f", {})).weights is None


def test_ensemble_bundle_and_checkpoints_are_never_weights(tmp_path: Path):
    ens = _folder(tmp_path / "ens", {"ensemble": {"method": "soft_voting"}}, ("ensemble.pt",))
    folder = RunFolder(ens)
    assert folder.is_ensemble and folder.weights is None and folder.bundle == ens / "ensemble.pt"
    with pytest.raises(FileNotFoundError, match="ens has no weights file"):
        folder.require_weights()
    single = _folder(tmp_path / "single", {}, ("ensemble.pt", "model.pt"))
    assert RunFolder(single).weights == single / "model.pt"
    ckpt = _folder(tmp_path / "ckpt", {}, ("checkpoints/last.ckpt", "checkpoints/best.pt"))
    assert RunFolder(ckpt).weights is None


def test_label_names_fall_back_to_the_prediction_columns(tmp_path: Path):
    old = _folder(tmp_path / "old", {"data": {}})
    (old / "predictions").mkdir()
    pd.DataFrame({"id": ["a"], "p_X": [0.1], "p_Y": [0.9], "X": [0], "Y": [1]}).to_csv(
        old / "predictions" / "val.csv", index=False)
    assert RunFolder(old).label_names == ["X", "Y"]
    with pytest.raises(FileNotFoundError, match="predictions has no <split>.csv"):
        RunFolder(_folder(tmp_path / "bare", {"data": {}})).label_names
    with pytest.raises(FileNotFoundError, match="no predictions for split 'test'"):
        RunFolder(old).predictions("test")


def test_failed_runs_say_why(tmp_path: Path):
    stopped = _folder(tmp_path / "stopped", {}, ("checkpoints/last.ckpt",))
    clean_up_failed_run(stopped, created=True, error=RuntimeError("out of memory"))
    folder = RunFolder(stopped)
    assert folder.failed["error"] == "RuntimeError: out of memory"
    assert "resumes from checkpoints/last.ckpt" in folder.failed["resume"]
    assert not folder.is_finished
    (stopped / "failed.json").write_text("{not json")
    with pytest.raises(ValueError, match="failed.json is unreadable"):
        RunFolder(stopped).failed
    with pytest.raises(FileNotFoundError, match=r"stopped: failed \(unreadable failed.json\)"):
        find_run_folders([tmp_path])


def test_reporting_run_folder_re_exports_the_same_objects():
    import funduslab.reporting.run_folder as old
    import funduslab.runs as runs

    for name in old.__all__:
        assert getattr(old, name) is getattr(runs, name), name


def test_runs_imports_nothing_above_its_layer():
    allowed = {"config", "registry", "metrics", "runs"}
    package = Path(__file__).parents[2] / "src" / "funduslab" / "runs"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("funduslab"):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "funduslab":
                    assert len(parts) > 1 and parts[1] in allowed, f"{path.name} imports {name}"
