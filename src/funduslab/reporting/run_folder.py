"""Run-folder readers and writers, now in :mod:`funduslab.runs` (layer 4); re-exported here so
existing imports keep working. New code imports from :mod:`funduslab.runs`."""

from __future__ import annotations

from funduslab.runs.files import (
    FAILED_FILE,
    clean_up_failed_run,
    environment_info,
    read_metrics,
    read_predictions,
    weights_filename,
    write_json,
    write_predictions,
    write_submission,
)
from funduslab.runs.folder import find_run_folders

__all__ = [
    "FAILED_FILE",
    "clean_up_failed_run",
    "environment_info",
    "find_run_folders",
    "read_metrics",
    "read_predictions",
    "weights_filename",
    "write_json",
    "write_predictions",
    "write_submission",
]
