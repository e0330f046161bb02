"""Records: a run's text files kept small and checked, read like the run folder (issue 29, 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.reporting.compare import compare_runs
from funduslab.reporting.record import check_record, write_record
from funduslab.training.runner import run

runner = CliRunner()


@pytest.fixture(scope="module")
def two_runs(synth_course: Path, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("rec_runs")
    dirs = []
    for seed in (0, 1):
        cfg = config_from_dict({
            "data": {"root": str(synth_course), "image_size": 32, "cache_dir": str(out / "c")},
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "train": {"setup": "frozen", "epochs": 3, "seed": seed, "precision": "32"},
            "output": {"out": str(out), "name": f"frozen_s{seed}", "figures": True},
        })
        dirs.append(run(cfg, progress=False))
    return dirs


def test_record_keeps_the_text_files_and_no_weights(two_runs: list[Path], tmp_path: Path):
    rec = write_record(two_runs[0], tmp_path / "results" / "frozen_s0", note="unit test")
    names = {str(p.relative_to(rec)) for p in rec.rglob("*") if p.is_file()}
    assert {"config.yaml", "metrics.json", "record.json", "predictions/val.csv",
            "predictions/offsite_test.csv", "submission.csv"} <= names
    assert not any(n.endswith((".pt", ".ckpt", ".png")) for n in names)
    assert sum(p.stat().st_size for p in rec.rglob("*") if p.is_file()) < 300_000
    assert check_record(rec) == []


def test_an_altered_or_truncated_record_is_detected(two_runs: list[Path], tmp_path: Path):
    rec = write_record(two_runs[0], tmp_path / "r")
    val = rec / "predictions" / "val.csv"
    val.write_text(val.read_text()[:-20])
    (rec / "history.csv").unlink(missing_ok=True)
    problems = " ".join(check_record(rec))
    assert "val.csv differs" in problems
    assert "history.csv is missing" in problems or not (two_runs[0] / "history.csv").exists()


def test_a_table_recomputed_from_records_equals_the_one_from_run_folders(
        two_runs: list[Path], tmp_path: Path):
    result = runner.invoke(app, ["record", *map(str, two_runs), "--out", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    records = [tmp_path / "res" / d.name for d in two_runs]
    assert compare_runs(records) == compare_runs(two_runs)
    result = runner.invoke(app, ["report", str(tmp_path / "res")])
    assert result.exit_code == 0 and "2 runs" in result.output


def test_recording_an_unfinished_run_is_refused(tmp_path: Path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("{}\n")
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        write_record(tmp_path / "half", tmp_path / "rec")


def test_an_ensemble_of_records_equals_the_ensemble_of_the_run_folders(
        two_runs: list[Path], tmp_path: Path):
    import pandas as pd

    records = [write_record(d, tmp_path / "res" / d.name) for d in two_runs]
    for name, members in (("from_runs", two_runs), ("from_records", records)):
        result = runner.invoke(app, ["ensemble", "soft_voting", *map(str, members),
                                     "--out", str(tmp_path / "ens"), "--name", name])
        assert result.exit_code == 0, result.output
    assert "no bundle written" in " ".join(result.output.split())  # records hold no weights
    for split in ("val", "offsite_test"):
        a = pd.read_csv(tmp_path / "ens" / "from_runs" / "predictions" / f"{split}.csv")
        b = pd.read_csv(tmp_path / "ens" / "from_records" / "predictions" / f"{split}.csv")
        pd.testing.assert_frame_equal(a, b)
