"""Run folders and the files in them: layer 4, below training (docs/architecture.md).

Imports only :mod:`funduslab.config`, :mod:`funduslab.registry`, :mod:`funduslab.metrics` and
third-party libraries, so every layer above can read a run folder the same way.
"""

from funduslab.runs.files import (
    BUNDLE_FILENAME,
    CONFIG_FILE,
    FAILED_FILE,
    RECORD_FILE,
    clean_up_failed_run,
    environment_info,
    read_metrics,
    read_predictions,
    weights_filename,
    write_json,
    write_predictions,
    write_submission,
)
from funduslab.runs.folder import RunFolder, find_run_folders

__all__ = [
    "BUNDLE_FILENAME",
    "CONFIG_FILE",
    "FAILED_FILE",
    "RECORD_FILE",
    "RunFolder",
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
