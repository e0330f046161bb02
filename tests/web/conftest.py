"""Web fixtures: one tiny trained run (tiny_cnn, 32 px, 1 epoch) served for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

from funduslab.config import config_from_dict


@pytest.fixture(scope="session")
def web_run(synth_course: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run folder with val-tuned thresholds (so decisions are not all at 0.5)."""
    from funduslab.training.runner import run

    out = tmp_path_factory.mktemp("web_runs")
    cfg = config_from_dict({
        "data": {"root": str(synth_course), "image_size": 32, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "lr": 3e-3,
                  "backbone_lr": 3e-3, "precision": "32", "warmup_epochs": 0,
                  "tune_thresholds": True},
        "output": {"out": str(out), "name": "tiny", "team": "web", "task": "1-3",
                   "figures": False},
    })
    return run(cfg, progress=False)


@pytest.fixture(scope="session")
def web_service(web_run: Path):
    """The run behind the service's lock, as ``funduslab serve`` loads it."""
    from funduslab.web.service import ModelService, load_models

    return ModelService(load_models([web_run]))


@pytest.fixture(scope="session")
def sample_images(synth_course: Path) -> list[Path]:
    """Real synthetic fundus JPEGs of the unlabelled split, sorted by name."""
    return sorted((synth_course / "images" / "onsite_test").glob("*.jpg"))
