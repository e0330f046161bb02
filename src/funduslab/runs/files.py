"""The files of a run folder: their names, and the plain readers and writers of each.

```
runs/<name>/config.yaml  metrics.json  predictions/<split>.csv  submission.csv  history.csv
            <team>_task<k>-<j>.pt  figures/
```
All writes are atomic (temporary file + ``os.replace``), so an interrupted run never leaves a
half-written file that a later tool would trust. A run that fails either leaves nothing (it had
created the folder and saved no checkpoint) or a ``failed.json`` beside its checkpoints that says
what went wrong and how to resume; readers list such folders as skipped, with the reason.

This module sits in the ``runs`` layer: it imports only :mod:`funduslab.config` and third-party
libraries, so training, ensembles and reports can all use it (``reporting.run_folder``
re-exports it for older imports).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funduslab.config import atomic_write_text

__all__ = [
    "BUNDLE_FILENAME",
    "CONFIG_FILE",
    "FAILED_FILE",
    "HISTORY_FILE",
    "METRICS_FILE",
    "RECORD_FILE",
    "clean_up_failed_run",
    "environment_info",
    "read_metrics",
    "read_predictions",
    "weights_filename",
    "write_json",
    "write_predictions",
    "write_submission",
]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
FAILED_FILE = "failed.json"
#: A compact record's manifest (:mod:`funduslab.reporting.record`).
RECORD_FILE = "record.json"
#: The self-contained ensemble bundle (:mod:`funduslab.ensemble.bundle`) `funduslab ensemble`
#: keeps in an ensemble run folder; never a single model's weights.
BUNDLE_FILENAME = "ensemble.pt"

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
    path = Path(run_dir) / METRICS_FILE
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


def read_predictions(
    run_dir: Path, split: str, label_names: list[str]
) -> tuple[list[str], np.ndarray]:
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
    """Kaggle submission: ``columns[0]`` holds ids, the rest the predicted labels, in ``ids``
    order."""
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


def clean_up_failed_run(run_dir: Path, created: bool, error: BaseException) -> None:
    """After a failed run: remove the folder it created if nothing resumable is in it, otherwise
    leave ``failed.json`` (the error, the time, how to resume) so no reader takes it for done."""
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if created and not last.is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    if not run_dir.is_dir():
        return
    name = type(error).__name__
    try:
        write_json(run_dir / FAILED_FILE, {
            "error": f"{name}: {error}" if str(error) else name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resume": ("re-run the same command: it resumes from checkpoints/last.ckpt"
                       if last.is_file() else "re-run the same command"),
        })
    except OSError as err:  # the full disk that failed the run: its own error must surface
        log.warning("could not mark %s as failed: %s", run_dir, err)
