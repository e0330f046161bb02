"""Helpers shared by the benchmark scripts: locating ../shared data and printing a verdict."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def course_root(arg: str | None) -> Path:
    """The course folder from ``--data`` or ``../shared/data/odir-course``; exit 2 if absent."""
    root = Path(arg) if arg else SHARED / "odir-course"
    if not (root / "train.csv").is_file():
        print(f"course data not found at {root}; pass --data", file=sys.stderr)
        raise SystemExit(2)
    return root


def verdict(ok: bool, message: str) -> int:
    """Print PASS/FAIL with ``message``; return the exit status."""
    print(("PASS: " if ok else "FAIL: ") + message, flush=True)
    return 0 if ok else 1
