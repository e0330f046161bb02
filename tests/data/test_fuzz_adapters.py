"""Fuzzed label CSVs for every CSV layout: each loads into a sound table or raises
``ValueError``/``FileNotFoundError`` (the CLI's exit 2) — never another exception, never a hang
(issue 33, item 5).

Each layout is written once (tiny real images, ``tests/data/conftest.py``); hypothesis then
rewrites its label CSV with hostile headers (missing, duplicated, padded, BOM, empty names),
short and long rows, and cells mixing valid values with empty, fractional, out-of-range,
non-ASCII-digit, quoted and path-like text — or with raw bytes. A table that loads must hold what
the adapters promise: unique ids, existing image files, integer labels in range.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from funduslab.data.adapters import load_table
from funduslab.data.adapters.odir5k import SHEET_COLUMNS
from funduslab.data.table import REQUIRED_COLUMNS, SampleTable

FUZZ = settings(max_examples=40, deadline=3000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

HOSTILE_CELLS = st.sampled_from([
    "", " ", "nan", "NaN", "NA", "null", "None", "1.0", "0.0", "1.5", "-1", "2", "4", "5", "6",
    "1e0", "inf", "-inf", "True", "١", "０", "\ufeff1", '"', "'", ",", ";", "\t", "#", "x" * 200,
    "0x1", "+1", " 1 ", "=1+1", "../secret", "a/b.jpg", "C:\\img.jpg", "1_left.jpg", "a000",
    "train", "val", "test", "left", "right", "１_left.jpg", "normal fundus，cataract",
])
ANY_CELL = st.one_of(HOSTILE_CELLS, HOSTILE_CELLS, st.text(max_size=10))
BINARY = ["0", "1"]
KEYWORDS = ["normal fundus", "moderate non proliferative retinopathy", "cataract",
            "suspected glaucoma", "proliferative retinopathy，lens dust", "drusen",
            "diabetic retinopathy", ""]
TWO_SPLITS = {"train": 0.5, "val": 0.5}


@dataclass
class Layout:
    """One CSV layout: the adapter, the CSV it reads, its columns and their plausible cells."""

    adapter: str
    writer: str  # make_layout name
    csv: str
    cells: dict[str, list[str]]  # column → plausible cells; the first column holds unique ids
    options: dict[str, Any] = field(default_factory=dict)
    write_options: dict[str, Any] = field(default_factory=dict)


GENERIC_IDS = [f"{p}_{e}" for p in range(10) for e in ("left", "right")] + ["3_left.png"]
LAYOUTS = {
    "odir_course": Layout("odir_course", "odir_course", "train.csv", {
        "id": ["1_left.jpg", "1_right.jpg", "2_left.jpg", "3_right", "4_left.jpg"],
        "D": BINARY, "G": BINARY, "A": BINARY}),
    "generic_csv": Layout("generic_csv", "generic_csv", "my.csv", {
        "id": GENERIC_IDS, "D": BINARY, "G": BINARY, "A": BINARY}, {"fractions": TWO_SPLITS}),
    "generic_csv split+patient": Layout("generic_csv", "generic_csv", "my.csv", {
        "id": GENERIC_IDS, "split": ["train", "val", "test", ""], "patient": ["p1", "p2", "p3"],
        "D": BINARY}, {"split_column": "split", "patient_column": "patient", "labels": "D",
                       "unlabelled_splits": "test"}),
    "generic_csv grading": Layout("generic_csv", "generic_csv", "my.csv", {
        "id": GENERIC_IDS, "grade": ["0", "1", "2", "3", "4"]},
        {"task": "grading", "labels": "grade", "fractions": TWO_SPLITS}),
    "odir5k labels.csv": Layout("odir5k", "odir5k", "labels.csv", {
        "id": [f"{p}_{e}.jpg" for p in range(4) for e in ("left", "right")],
        "patient_id": ["0", "1", "2", "3"], "eye": ["left", "right"], "keywords": KEYWORDS,
        "D": BINARY, "G": BINARY, "dr_grade": ["-1", "0", "2", "4"]},
        {"labels": ["D", "G"], "fractions": TWO_SPLITS}, {"n_patients": 4}),
    "odir5k sheet": Layout("odir5k", "odir5k", "sheet.csv", {
        "ID": ["0", "1", "2"], "Patient Age": ["55", ""], "Patient Sex": ["Male", "Female"],
        "Left-Fundus": ["0_left.jpg", "1_left.jpg", "2_left.jpg"],
        "Right-Fundus": ["0_right.jpg", "1_right.jpg", "2_right.jpg"],
        "Left-Diagnostic Keywords": KEYWORDS, "Right-Diagnostic Keywords": KEYWORDS},
        {"annotations": "sheet.csv", "task": "grading", "fractions": TWO_SPLITS},
        {"n_patients": 3}),
    "deepdrid": Layout("deepdrid", "deepdrid",
                       "regular-fundus-training/regular-fundus-training.csv", {
        "image_id": [f"{p}_{s}" for p in (1, 2, 3) for s in ("l1", "l2", "r1", "r2")],
        "patient_id": ["1", "2", "3"], "left_eye_DR_Level": ["0", "3", "5", ""],
        "right_eye_DR_Level": ["1", "4", ""], "patient_DR_Level": ["2", "5", ""]}),
    "aptos": Layout("aptos", "aptos", "train.csv", {
        "id_code": [f"a{i:03d}" for i in range(20)], "diagnosis": ["0", "1", "2", "3", "4"]},
        {"fractions": {"train": 1.0}}),
    "rfmid": Layout("rfmid", "rfmid", "Training_Set/RFMiD_Training_Labels.csv", {
        "ID": ["1", "2", "3", "4"], "Disease_Risk": BINARY, "DR": BINARY, "ARMD": BINARY,
        "MH": BINARY}),
}


@st.composite
def hostile_csv(draw: st.DrawFn, layout: Layout) -> str:
    """CSV text: a header that is usually right, rows that are usually plausible (unique ids,
    valid cells) and otherwise hostile (a cell from :data:`ANY_CELL`, a short or long row)."""
    columns = list(layout.cells)
    header = draw(st.one_of(
        st.just(columns), st.just(columns), st.just(columns),
        st.permutations(columns),
        st.lists(st.sampled_from([*columns, "", " id", "extra", "D", "Unnamed: 0"]), max_size=7),
        st.just([*columns, columns[0]]),  # a duplicated column
        st.just([f" {columns[0]} ", *columns[1:]]),  # padding
        st.just([f"\ufeff{columns[0]}", *columns[1:]]),  # a BOM pasted into the header
    ))
    ids = layout.cells[columns[0]]
    n = draw(st.integers(0, min(6, len(ids))))
    unique = iter(draw(st.lists(st.sampled_from(ids), min_size=n, max_size=n, unique=True)))
    rows = []
    for _ in range(n):
        first = next(unique)
        if draw(st.sampled_from([True, True, True, False])):  # a plausible row
            row = [first if c == columns[0] else draw(st.sampled_from(layout.cells.get(c, [""])))
                   for c in header]
        else:
            row = [draw(st.one_of(st.sampled_from(layout.cells.get(c, [""])), ANY_CELL))
                   for c in header]
            shape = draw(st.integers(0, 3))
            if shape == 0 and row:
                row = row[:-1]  # a short row
            elif shape == 1:
                row = [*row, draw(ANY_CELL)]  # a long row
        rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _sound(table: SampleTable) -> None:
    """What every adapter promises about a table that loads."""
    frame = table.frame
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)
    assert not frame["id"].duplicated().any()
    assert all(Path(p).is_file() for p in frame["path"])
    assert frame["split"].map(lambda s: isinstance(s, str) and s != "").all()
    assert frame["patient"].map(lambda s: isinstance(s, str)).all()
    assert frame["labelled"].map(lambda v: isinstance(v, (bool, np.bool_))).all()
    for name in table.label_names:
        values = frame[name]
        assert values.map(lambda v: isinstance(v, (int, np.integer))).all(), (name, values)
        top = table.num_grades if table.task == "grading" else 2
        assert values.between(0, top - 1).all(), (name, values.tolist())


def _loads_or_user_error(layout: Layout, root: Path) -> None:
    try:
        table = load_table(layout.adapter, root, **layout.options)
    except (ValueError, FileNotFoundError) as err:
        assert str(err), "an empty error message"
        event(type(err).__name__)  # --hypothesis-show-statistics: how often each outcome was drawn
        return
    event("loaded")
    _sound(table)


@pytest.fixture(params=sorted(LAYOUTS))
def layout_root(request: pytest.FixtureRequest, tmp_path: Path, make_layout) -> tuple:
    layout = LAYOUTS[request.param]
    root = make_layout(layout.writer, tmp_path / "data", **layout.write_options)
    if layout.csv == "sheet.csv":
        (root / "labels.csv").unlink()  # the per-patient sheet instead of the per-eye CSV
    return layout, root


@FUZZ
@given(data=st.data())
def test_fuzzed_label_csvs_load_or_raise_a_user_error(layout_root: tuple,
                                                      data: st.DataObject) -> None:
    layout, root = layout_root
    (root / layout.csv).write_text(data.draw(hostile_csv(layout), label="csv"),
                                   encoding="utf-8")
    _loads_or_user_error(layout, root)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=120), st.text(max_size=120).map(str.encode)))
def test_fuzzed_csv_bytes_load_or_raise_a_user_error(layout_root: tuple, raw: bytes) -> None:
    layout, root = layout_root
    (root / layout.csv).write_bytes(raw)
    _loads_or_user_error(layout, root)
