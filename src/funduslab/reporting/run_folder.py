"""The run folder: the one on-disk shape every stage writes and every later tool reads.

```
runs/<name>/config.yaml  metrics.json  predictions/<split>.csv  submission.csv  history.csv
            <team>_task<k>-<j>.pt  figures/
```
All writes are atomic (temporary file + ``os.replace``), so an interrupted run never leaves a
half-written file that a later tool would trust.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funduslab.config import atomic_write_text

__all__ = [
    "environment_info",
    "read_metrics",
    "read_predictions",
    "weights_filename",
    "write_json",
    "write_predictions",
    "write_submission",
]

_PACKAGES = ("funduslab", "torch", "torchvision", "timm", "lightning", "numpy", "pandas",
             "scikit-learn", "opencv-python-headless", "grad-cam")


def environment_info() -> dict[str, Any]:
    """Python, platform, CPU count, package versions and the git commit (if any)."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import os

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": commit,
    }


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars → Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomically write ``doc`` as indented JSON (NaN written as null)."""
    atomic_write_text(path, json.dumps(_clean(doc), indent=2) + "\n")


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """``metrics.json`` of a run folder (``FileNotFoundError`` names the folder)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.json: is it a finished funduslab run?")
    return json.loads(path.read_text())


def write_predictions(
    path: Path, ids: list[str], probs: np.ndarray, preds: np.ndarray, label_names: list[str]
) -> None:
    """``id, p_<label>…, <label>…`` per image: probabilities and thresholded labels."""
    frame = pd.DataFrame({"id": ids})
    for k, name in enumerate(label_names):
        frame[f"p_{name}"] = np.round(probs[:, k], 6)
    for k, name in enumerate(label_names):
        frame[name] = preds[:, k].astype(int)
    atomic_write_text(path, frame.to_csv(index=False))


def read_predictions(run_dir: Path, split: str, label_names: list[str]) -> tuple[list[str], np.ndarray]:
    """Ids and ``(N, K)`` probabilities saved by :func:`write_predictions`."""
    path = Path(run_dir) / "predictions" / f"{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run has no predictions for split {split!r}")
    frame = pd.read_csv(path)
    missing = [f"p_{n}" for n in label_names if f"p_{n}" not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks probability columns {missing}")
    return frame["id"].astype(str).tolist(), frame[[f"p_{n}" for n in label_names]].to_numpy()


def write_submission(
    path: Path, ids: list[str], preds: np.ndarray, columns: list[str]
) -> None:
    """Kaggle submission: ``columns[0]`` holds ids, the rest the predicted labels, in ``ids`` order."""
    id_col, *label_cols = columns
    if preds.ndim == 1:
        preds = preds[:, None]
    if preds.shape[1] != len(label_cols):
        raise ValueError(f"{preds.shape[1]} predicted columns for submission columns {label_cols}")
    frame = pd.DataFrame({id_col: ids})
    for k, name in enumerate(label_cols):
        frame[name] = preds[:, k].astype(int)
    atomic_write_text(path, frame.to_csv(index=False))


def weights_filename(team: str | None, task: str | None) -> str:
    """``<team>_task<k>-<j>.pt`` for a course task, else ``model.pt``."""
    if team and task:
        return f"{team}_task{task}.pt"
    return "model.pt"
