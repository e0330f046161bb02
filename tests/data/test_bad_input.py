"""User mistakes in dataset folders: each error names the file, row, column and value."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from funduslab.data.adapters import load_table


def edit_csv(path: Path, **cells: object) -> None:
    """Set cells ``{column: (row, value)}`` of a CSV read as strings."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column, (row, value) in cells.items():
        frame.loc[row, column] = value
    frame.to_csv(path, index=False)


def test_missing_image(course_root: Path) -> None:
    (course_root / "images" / "val" / "6_right.jpg").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_table("odir_course", course_root)
    msg = str(err.value)
    assert str(course_root / "val.csv") in msg and "row 2 (line 3)" in msg and "'id'" in msg
    assert str(course_root / "images" / "val" / "6_right.jpg") in msg


def test_missing_image_without_extension(tmp_path: Path, make_layout) -> None:
    root = make_layout("generic_csv", tmp_path / "g")
    (root / "images" / "3_right.png").unlink()
    match = r"my\.csv: row 8 \(line 9\).*3_right \(tried extensions"
    with pytest.raises(FileNotFoundError, match=match):
        load_table("generic_csv", root, labels="D,G,A")


def test_missing_image_folder(course_root: Path) -> None:
    for path in (course_root / "images" / "offsite_test").iterdir():
        path.unlink()
    (course_root / "images" / "offsite_test").rmdir()
    folder = str(course_root / "images" / "offsite_test")
    with pytest.raises(FileNotFoundError, match=re.escape(folder)):
        load_table("odir_course", course_root)


def test_csv_with_wrong_columns(course_root: Path) -> None:
    frame = pd.read_csv(course_root / "train.csv").rename(columns={"G": "glaucoma"})
    frame.to_csv(course_root / "train.csv", index=False)
    with pytest.raises(ValueError) as err:
        load_table("odir_course", course_root)
    msg = str(err.value)
    assert str(course_root / "train.csv") in msg and "['G']" in msg and "glaucoma" in msg


def test_label_2_in_binary_column(course_root: Path) -> None:
    edit_csv(course_root / "train.csv", A=(3, "2"))
    with pytest.raises(ValueError) as err:
        load_table("odir_course", course_root)
    msg = str(err.value)
    assert str(course_root / "train.csv") in msg and "row 4 (line 5), column 'A'" in msg
    assert "'2'" in msg and "0/1" in msg


def test_grade_out_of_range(tmp_path: Path, make_layout) -> None:
    root = make_layout("aptos", tmp_path / "ap")
    edit_csv(root / "train.csv", diagnosis=(6, "7"))
    match = r"train\.csv: row 7 \(line 8\), column 'diagnosis': value '7'.*0\.\.4"
    with pytest.raises(ValueError, match=match):
        load_table("aptos", root)


def test_non_numeric_label(course_root: Path) -> None:
    edit_csv(course_root / "offsite_test.csv", D=(1, "yes"))
    with pytest.raises(ValueError) as err:
        load_table("odir_course", course_root)
    msg = str(err.value)
    assert str(course_root / "offsite_test.csv") in msg and "row 2 (line 3), column 'D'" in msg
    assert "'yes' is not a number" in msg


def test_empty_label_in_labelled_split(tmp_path: Path, make_layout) -> None:
    root = make_layout("generic_csv", tmp_path / "g")
    edit_csv(root / "my.csv", G=(4, ""))
    with pytest.raises(ValueError, match=r"my\.csv: row 5 \(line 6\), column 'G': empty label"):
        load_table("generic_csv", root, labels="D,G,A")


def test_duplicate_ids(course_root: Path) -> None:
    edit_csv(course_root / "train.csv", id=(4, "1_left.jpg"))
    with pytest.raises(ValueError) as err:
        load_table("odir_course", course_root)
    msg = str(err.value)
    assert str(course_root / "train.csv") in msg and "duplicate id '1_left.jpg'" in msg
    assert "row 1 (line 2) and row 5 (line 6)" in msg


def test_duplicate_ids_across_course_csvs(course_root: Path, image_writer) -> None:
    edit_csv(course_root / "val.csv", id=(0, "2_left.jpg"))
    image_writer(course_root / "images" / "val" / "2_left.jpg")
    match = r"'2_left\.jpg' appears in several course CSVs: \['train', 'val'\]"
    with pytest.raises(ValueError, match=match):
        load_table("odir_course", course_root)


def test_empty_course_split(course_root: Path) -> None:
    (course_root / "val.csv").write_text("id,D,G,A\n")
    match = re.escape(f"{course_root / 'val.csv'}: the val split has no rows (only a header)")
    with pytest.raises(ValueError, match=match):
        load_table("odir_course", course_root)


def test_requested_split_with_no_rows(tmp_path: Path, make_layout) -> None:
    root = make_layout("generic_csv", tmp_path / "g")
    frame = pd.read_csv(root / "my.csv")
    frame.assign(part=["train"] * 14 + ["val"] * 6).to_csv(root / "my.csv", index=False)
    match = r"my\.csv: requested split 'test' has no rows; splits present: \['train', 'val'\]"
    with pytest.raises(ValueError, match=match):
        load_table("generic_csv", root, labels="D,G,A", split_column="part", splits="val,test")
    table = load_table("generic_csv", root, labels="D,G,A", split_column="part")
    with pytest.raises(ValueError, match=r"split 'test' is empty or missing .*my\.csv"):
        table.split("test")


def test_unknown_course_split(course_root: Path) -> None:
    match = r"unknown course split\(s\) \['onsite'\]; valid: \['train'"
    with pytest.raises(ValueError, match=match):
        load_table("odir_course", course_root, splits=["train", "onsite"])


def test_unknown_adapter_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset adapter 'kaggle'; valid names: aptos"):
        load_table("kaggle", tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset root not found: .*nowhere"):
        load_table("odir_course", tmp_path / "nowhere")


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"course train CSV not found: .*train\.csv"):
        load_table("odir_course", tmp_path)


def test_unknown_odir5k_label(tmp_path: Path, make_layout) -> None:
    root = make_layout("odir5k", tmp_path / "o")
    with pytest.raises(ValueError, match=r"unknown ODIR-5K label\(s\) \['X'\]; valid: \['N', 'D'"):
        load_table("odir5k", root, labels=("D", "X"))


def test_deepdrid_bad_image_id(tmp_path: Path, make_layout) -> None:
    root = make_layout("deepdrid", tmp_path / "dd")
    csv = root / "regular-fundus-training" / "regular-fundus-training.csv"
    edit_csv(csv, image_id=(2, "1_x1"))
    match = r"regular-fundus-training\.csv: row 3 \(line 4\), column 'image_id': '1_x1'"
    with pytest.raises(ValueError, match=match):
        load_table("deepdrid", root)


def test_rfmid_sets_disagree(tmp_path: Path, make_layout) -> None:
    root = make_layout("rfmid", tmp_path / "rf")
    csv = root / "Test_Set" / "RFMiD_Testing_Labels.csv"
    pd.read_csv(csv).assign(ODC=0).to_csv(csv, index=False)
    match = r"RFMiD_Testing_Labels\.csv: disease column\(s\) \['ODC'\]"
    with pytest.raises(ValueError, match=match):
        load_table("rfmid", root)


def test_fractional_and_float_labels(tmp_path: Path, make_layout) -> None:
    root = make_layout("generic_csv", tmp_path / "g")
    edit_csv(root / "my.csv", D=(0, "1.0"))
    assert load_table("generic_csv", root, labels="D,G,A").frame.set_index("id").loc["0_left", "D"] == 1
    edit_csv(root / "my.csv", D=(2, "0.5"))
    with pytest.raises(ValueError, match=r"row 3 \(line 4\), column 'D': value '0\.5' is not a valid"):
        load_table("generic_csv", root, labels="D,G,A")


def test_blank_split_cell(tmp_path: Path, make_layout) -> None:
    root = make_layout("generic_csv", tmp_path / "g")
    frame = pd.read_csv(root / "my.csv", dtype=str)
    frame.assign(part=["train"] * 5 + [""] + ["val"] * 14).to_csv(root / "my.csv", index=False)
    with pytest.raises(ValueError, match=r"my\.csv: row 6 \(line 7\), column 'part': empty split"):
        load_table("generic_csv", root, labels="D,G,A", split_column="part")


def test_odir5k_sheet_missing_image_names_sheet_row(tmp_path: Path, image_writer) -> None:
    sheet = pd.DataFrame({"ID": [0, 1], "Patient Age": [60, 61], "Patient Sex": ["Male", "Male"],
                          "Left-Fundus": ["0_left.jpg", "1_left.jpg"],
                          "Right-Fundus": ["0_right.jpg", "1_right.jpg"],
                          "Left-Diagnostic Keywords": ["normal fundus"] * 2,
                          "Right-Diagnostic Keywords": ["cataract"] * 2})  # fmt: skip
    sheet.to_csv(tmp_path / "annotations.csv", index=False)
    for name in ("0_left.jpg", "0_right.jpg", "1_left.jpg"):
        image_writer(tmp_path / "images" / name)
    match = r"annotations\.csv: row 2 \(line 3\), column 'Right-Fundus': image not found: .*1_right"
    with pytest.raises(FileNotFoundError, match=match):
        load_table("odir5k", tmp_path)
