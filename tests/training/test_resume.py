"""A run folder is resumed only under the config that wrote its checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from funduslab.config import config_from_dict
from funduslab.training.resume import check_resumable, config_differences
from funduslab.training.runner import run


def _config(data: Path, out: Path, **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32",
                "warmup_epochs": 0, **train}
    return config_from_dict({
        "data": {"root": str(data), "image_size": 32, "cache_dir": str(out / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": settings,
        "output": {"out": str(out), "name": "r", "figures": False},
    })


def test_config_differences_names_training_fields_only(synth_course: Path, tmp_path: Path):
    base = _config(synth_course, tmp_path)
    assert config_differences(base, _config(synth_course, tmp_path)) == []
    # evaluation-only fields and output do not change the weights
    assert config_differences(base, _config(synth_course, tmp_path, tune_thresholds=True,
                                            tta=True)) == []
    assert config_differences(base, _config(synth_course, tmp_path, loss="focal")) == [
        "train.loss: 'bce' → 'focal'"]


def test_resuming_under_another_config_is_refused_and_loses_nothing(synth_course: Path,
                                                                     tmp_path: Path):
    run_dir = run(_config(synth_course, tmp_path), progress=False)
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(ValueError, match=r"train\.loss: 'bce' → 'focal'.*output\.name"):
        run(_config(synth_course, tmp_path, loss="focal"), progress=False)
    assert (run_dir / "metrics.json").read_bytes() == before  # the old run is untouched
    assert "loss: bce" in (run_dir / "config.yaml").read_text()
    # the same config resumes; resume off starts over under the new config
    run(_config(synth_course, tmp_path, tune_thresholds=True), progress=False)
    fresh = _config(synth_course, tmp_path, loss="focal")
    fresh.output.resume = False
    run(fresh, progress=False)
    assert "loss: focal" in (run_dir / "config.yaml").read_text()


def test_unreadable_saved_config_is_named(synth_course: Path, tmp_path: Path):
    cfg = _config(synth_course, tmp_path)
    (cfg.run_dir / "checkpoints").mkdir(parents=True)
    (cfg.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (cfg.run_dir / "config.yaml").write_text("train: {epochs: -3}\n")
    with pytest.raises(ValueError, match="config.yaml cannot be read"):
        check_resumable(cfg.run_dir, cfg)
