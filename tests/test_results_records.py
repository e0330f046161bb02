"""The records in ``results/`` are intact and the tables of docs/results.md come from them.

Each record's files match the SHA-256 sums it was written with; the course records' scores are
recomputed from their saved probabilities and the course labels (``../shared/data/odir-course``,
skipped where absent) and must equal their metrics.json; the threshold-objective table of
docs/results.md is recomputed from the reference records and must be the one printed there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from funduslab.metrics import course_average_f1
from funduslab.reporting.record import check_record

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
COURSE = REPO.parent / "shared" / "data" / "odir-course"
RECORDS = sorted(p.parent for p in RESULTS.glob("*/*/record.json"))
REFERENCE = sorted((RESULTS / "course-reference").glob("*_s*"))
COURSE_RECORDS = sorted(RESULTS.glob("course-*/*_s*"))  # every study on the course split
LABELS = ["D", "G", "A"]


def test_there_are_records() -> None:
    assert REFERENCE, "results/course-reference holds no records"


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_record_is_intact_and_small(record: Path) -> None:
    assert check_record(record) == []
    assert sum(f.stat().st_size for f in record.rglob("*") if f.is_file()) < 2_000_000
    assert not list(record.rglob("*.pt")) and not list(record.rglob("*.ckpt"))


def _course_truth() -> pd.DataFrame:
    if not (COURSE / "train.csv").is_file():
        pytest.skip(f"course data not found at {COURSE}")
    from funduslab.data.adapters import load_table

    return load_table("odir_course", COURSE).frame.set_index("id")


@pytest.mark.parametrize("record", COURSE_RECORDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_course_scores_recompute_from_the_saved_probabilities(record: Path) -> None:
    truth = _course_truth()
    metrics = json.loads((record / "metrics.json").read_text())
    for split in ("val", "offsite_test"):
        frame = pd.read_csv(record / "predictions" / f"{split}.csv")
        y = truth.loc[frame["id"], LABELS].to_numpy(int)
        p = frame[[f"p_{k}" for k in LABELS]].to_numpy()
        got = course_average_f1(y, (p >= 0.5).astype(int))
        assert got == pytest.approx(metrics["splits"][split]["threshold_0.5"]["course_average_f1"],
                                    abs=1e-12)


def test_threshold_table_in_the_docs_is_recomputed_from_the_records() -> None:
    _course_truth()
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from bench_thresholds import RULES, SPLITS, _scores
    finally:
        sys.path.pop(0)
    truth = _course_truth()
    scores = [_scores(r, truth) for r in REFERENCE]
    docs = (REPO / "docs" / "results.md").read_text()
    section = docs[docs.index("### Threshold objective"):]
    section = section[:section.index("\n## ")]
    for split in SPLITS:
        for rule in RULES:
            values = [s[(split, rule)] for s in scores]
            cell = f"{np.mean(values):.4f}".lstrip("0")
            assert cell in section, f"{split} {rule}: {cell} not in the docs' threshold table"
