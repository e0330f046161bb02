"""A failed run leaves nothing a reader would trust; ``report`` says what it skipped (issue 34, 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.training import runner as runner_module
from funduslab.training.runner import run


def _config(data: Path, out: Path, name: str):
    return config_from_dict({
        "data": {"root": str(data), "image_size": 32, "cache_dir": str(out / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32"},
        "output": {"out": str(out), "name": name, "figures": False},
    })


def test_a_run_that_fails_before_any_checkpoint_removes_its_folder(
        synth_course: Path, tmp_path: Path, monkeypatch) -> None:
    def broken(ctx):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(runner_module, "fit_model", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        run(_config(synth_course, tmp_path, "boom"), progress=False)
    assert not (tmp_path / "boom").exists()


def test_an_interrupted_run_is_marked_and_report_says_why_it_skipped_it(
        synth_course: Path, tmp_path: Path, monkeypatch) -> None:
    done = run(_config(synth_course, tmp_path, "done"), progress=False)

    def interrupted(ctx):
        (ctx.run_dir / "checkpoints").mkdir(parents=True)
        (ctx.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"resumable")
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "fit_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(_config(synth_course, tmp_path, "stopped"), progress=False)
    failed = json.loads((tmp_path / "stopped" / "failed.json").read_text())
    assert failed["error"].startswith("KeyboardInterrupt") and "resumes" in failed["resume"]
    assert (tmp_path / "stopped" / "checkpoints" / "last.ckpt").is_file()  # nothing lost

    (tmp_path / "empty").mkdir()  # e.g. a folder left by an older version
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "skipped" in out and "stopped: failed: KeyboardInterrupt" in out.replace(
        str(tmp_path) + "/", "")
    assert "empty: unfinished: no metrics.json" in out.replace(str(tmp_path) + "/", "")
    assert "cache" not in out.replace(str(tmp_path), "")  # not a run folder, not listed
    assert done.is_dir()


def test_a_failure_before_training_leaves_an_existing_finished_folder_alone(
        synth_course: Path, tmp_path: Path) -> None:
    done = run(_config(synth_course, tmp_path, "done"), progress=False)
    bad = _config(synth_course, tmp_path, "done")
    bad.train.epochs = 2  # a changed recipe: the runner refuses to resume under it
    with pytest.raises(ValueError):
        run(bad, progress=False)
    assert (done / "metrics.json").is_file() and not (done / "failed.json").exists()
