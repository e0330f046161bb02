"""Every synthetic layout loads with its adapter: counts, columns and labels agree with the files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from funduslab.data.adapters import detect_layout, load_table
from funduslab.data.summary import summarize
from funduslab.data.synthetic_layouts import LAYOUTS, write_layout
from funduslab.data.table import REQUIRED_COLUMNS

#: layout → (n images, expected splits, expected label names or None to skip the check)
CASES: dict[str, tuple[int, list[str], list[str] | None]] = {
    "odir-course": (8, ["train", "val", "offsite_test", "onsite_test"], ["D", "G", "A"]),
    "odir5k": (12, ["train", "val", "test"], ["N", "D", "G", "C", "A", "H", "M", "O"]),
    "deepdrid": (12, ["train", "val", "test"], ["dr_grade"]),
    "aptos": (10, ["train", "val", "test", "kaggle_test"], ["dr_grade"]),
    "rfmid": (5, ["train", "val", "test"], None),
    "idrid": (3, ["train", "test"], ["MA", "HE", "EX", "SE"]),
}


def test_every_synthetic_layout_has_a_case() -> None:
    assert sorted(CASES) == LAYOUTS.names()


@pytest.mark.parametrize("layout", sorted(CASES))
def test_synthetic_layout_roundtrip(layout: str, tmp_path: Path) -> None:
    n, splits, labels = CASES[layout]
    root = write_layout(layout, tmp_path / layout, n=n, seed=0, size=64)
    adapter = layout.replace("-", "_")
    assert detect_layout(root) == adapter
    table = load_table(layout, root)
    frame = table.frame
    assert len(frame) == n
    assert table.splits == splits
    assert list(frame.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    if labels is not None:
        assert table.label_names == labels
    assert frame["path"].map(lambda p: Path(p).is_file()).all()
    assert frame[table.label_names].isin(range(max(table.num_grades, 2))).all().all()
    summary = summarize(table)
    assert summary.loc["all", "images"] == n
    if layout not in ("odir-course", "rfmid", "deepdrid"):  # those keep the files' own splits
        assert frame.groupby("patient")["split"].nunique().max() == 1


def test_synthetic_course_labels_match_csv(tmp_path: Path) -> None:
    root = write_layout("odir-course", tmp_path / "c", n=8, seed=1, size=64)
    table = load_table("odir_course", root)
    train = pd.read_csv(root / "train.csv")
    loaded = table.split("train")
    assert loaded["id"].tolist() == train["id"].tolist()
    assert (loaded[["D", "G", "A"]].to_numpy() == train[["D", "G", "A"]].to_numpy()).all()
    assert table.submission_columns == ["id", "D", "G", "A"]


def test_synthetic_odir5k_keywords_agree_with_labels(tmp_path: Path) -> None:
    """The generator's keywords and label columns follow the adapter's keyword rule."""
    from funduslab.data.adapters.odir5k import labels_from_keywords

    root = write_layout("odir5k", tmp_path / "o", n=12, seed=2, size=64)
    source = pd.read_csv(root / "labels.csv", keep_default_na=False)
    cols = ["D", "G", "A", "C", "H", "M", "N", "dr_grade"]
    derived = pd.DataFrame([labels_from_keywords(k) for k in source["keywords"]])[cols]
    assert (derived.to_numpy() == source[cols].to_numpy()).all()


def test_synthetic_idrid_masks_match_labels(tmp_path: Path) -> None:
    root = write_layout("idrid", tmp_path / "i", n=3, seed=0, size=64)
    quick = load_table("idrid", root).frame
    checked = load_table("idrid", root, check_mask_content=True).frame
    pd.testing.assert_frame_equal(quick, checked)
