"""Compact records of finished runs: what a table or a vote needs, small enough to keep in git.

A run folder holds weights (MBs), checkpoints and figures and lives on one machine; a record
holds only the text files every reader of a run uses — ``config.yaml``, ``metrics.json``,
``history.csv``, ``predictions/<split>.csv``, ``submission.csv`` — plus ``record.json`` (where
it came from, when, and each file's SHA-256). A record *is* a run folder without weights, so
``funduslab report``, ``funduslab ensemble`` and the vote presets read it unchanged, and a table
or an ensemble is recomputed in seconds without retraining. Records live under ``results/``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from funduslab.runs.files import RECORD_FILE, write_json
from funduslab.runs.record_check import check_record  # the readers' check lives in runs/

__all__ = ["RECORD_FILE", "RECORD_MAX_BYTES", "check_record", "write_record"]

RECORD_MAX_BYTES = 2_000_000  # a course run is ~100 KB; screening's 4,383 eyes ~600 KB
_KEPT = ("config.yaml", "metrics.json", "history.csv", "submission.csv")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files_of(run_dir: Path) -> list[Path]:
    files = [run_dir / name for name in _KEPT if (run_dir / name).is_file()]
    files += sorted((run_dir / "predictions").glob("*.csv"))
    return files


def write_record(run_dir: Path | str, out: Path | str, note: str = "") -> Path:
    """Copy the text files of finished ``run_dir`` into the record folder ``out``.

    The record is written next to ``out`` under a temporary name and renamed into place, so a
    reader never sees half a record; an existing record at ``out`` is replaced.

    Args:
        run_dir: A finished run folder (``metrics.json`` and ``config.yaml`` present).
        out: The record folder to write, e.g. ``results/course/reference_s0``.
        note: Free text kept in ``record.json`` (the command, the machine).

    Raises:
        FileNotFoundError: ``run_dir`` is not a finished run.
        ValueError: the record would exceed :data:`RECORD_MAX_BYTES` (it names the largest file).
    """
    run_dir, out = Path(run_dir), Path(out)
    for needed in ("metrics.json", "config.yaml"):
        if not (run_dir / needed).is_file():
            raise FileNotFoundError(f"{run_dir} has no {needed}: only a finished run can be "
                                    "recorded")
    files = _files_of(run_dir)
    sizes = {f: f.stat().st_size for f in files}
    if sum(sizes.values()) > RECORD_MAX_BYTES:
        largest = max(sizes, key=sizes.get)
        raise ValueError(f"a record of {run_dir} would take {sum(sizes.values()):,} bytes (limit "
                         f"{RECORD_MAX_BYTES:,}); largest: {largest} ({sizes[largest]:,} bytes)")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for f in files:
        target = staging / f.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    write_json(staging / RECORD_FILE, {
        "source": str(run_dir.resolve()),
        "recorded": time.strftime("%Y-%m-%d"),
        "note": note,
        "sha256": {str(f.relative_to(run_dir)): _sha256(f) for f in files},
    })
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out
