"""docs/reliability.md is generated from src/funduslab/reporting/reliability.py and cannot drift
from the code or the tests it names (issue 33, item 6)."""

from __future__ import annotations

import re
from pathlib import Path

from funduslab.reporting.reliability import CASES, COMMAND, DOC, render

ROOT = Path(__file__).resolve().parents[1]


def test_every_named_test_exists() -> None:
    missing = []
    for case in CASES:
        path, _, name = case.test.partition("::")
        source = ROOT / path
        if not source.is_file() or not re.search(rf"^(async )?def {re.escape(name)}\(",
                                                 source.read_text(encoding="utf-8"), re.M):
            missing.append(case.test)
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_every_row_says_what_was_lost() -> None:
    assert CASES
    assert all(case.lost.strip() for case in CASES), [c.case for c in CASES if not c.lost.strip()]
    for line in (ROOT / DOC).read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("| case |"):
            assert line.rstrip().rsplit("|", 2)[1].strip(), f"row without 'lost': {line}"


def test_the_committed_table_is_what_the_code_gives_today() -> None:
    assert render() == (ROOT / DOC).read_text(encoding="utf-8"), (
        f"{DOC} is out of date; regenerate with `{COMMAND}`")
