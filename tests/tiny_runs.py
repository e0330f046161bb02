"""One builder of tiny run configs for tests that need a trained run folder (tiny_cnn, fp32).

Tests import it directly (``from tiny_runs import tiny_config``); the ``tests`` folder is on
``sys.path`` because it holds the root ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from funduslab.config import RunConfig, config_from_dict

__all__ = ["tiny_config", "train_tiny"]


def tiny_config(data: Path, out: Path, name: str = "tiny", *, image_size: int = 32,
                task: str = "1-3", figures: bool = False, **train: Any) -> RunConfig:
    """A validated config: ``tiny_cnn`` from scratch, full setup, 1 epoch unless ``train`` says.

    ``train`` overrides the ``train`` section (``epochs=2``, ``freeze_stages=1`` …).
    """
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32",
                "warmup_epochs": 0, **train}
    return config_from_dict({
        "data": {"root": str(data), "image_size": image_size, "cache_dir": str(out / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": settings,
        "output": {"out": str(out), "name": name, "team": "unit", "task": task,
                   "figures": figures},
    })


def train_tiny(data: Path, out: Path, name: str = "tiny", **kwargs: Any) -> Path:
    """Train :func:`tiny_config` and return the run folder."""
    from funduslab.training.runner import run

    return run(tiny_config(data, out, name, **kwargs), progress=False)
