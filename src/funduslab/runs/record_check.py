"""Is a compact record still as it was written? The check every reader of a record runs.

A record (``results/…``, :mod:`funduslab.reporting.record`) keeps the SHA-256 of each of its
files in ``record.json``. It has no weights or source folder to be rebuilt from, so a truncated
or edited file cannot be repaired, only reported: :class:`~funduslab.runs.RunFolder` logs a
warning naming each such file the first time it reads a record, so a table or a vote is never
recomputed from it silently. The check lives in the ``runs`` layer so that ``RunFolder`` can use
it; ``reporting.record`` re-exports it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from funduslab.runs.files import RECORD_FILE

__all__ = ["check_record"]


def check_record(record: Path | str) -> list[str]:
    """Problems with a record folder: files missing or altered since it was written (empty when
    intact), so a table is never recomputed from a truncated or edited record."""
    record = Path(record)
    path = record / RECORD_FILE
    if not path.is_file():
        return [f"{record} has no {RECORD_FILE}"]
    try:
        digests = json.loads(path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{path} is unreadable: {err}"]
    problems = []
    for name, digest in digests.items():
        f = record / name
        if not f.is_file():
            problems.append(f"{f} is missing")
        elif hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            problems.append(f"{f} differs from the recorded checksum")
    return problems
