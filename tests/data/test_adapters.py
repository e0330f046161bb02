"""Adapters on tiny hand-made layouts, plus the real course / ODIR-5K folders when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from funduslab.data.adapters import ADAPTERS, detect_layout, load_table
from funduslab.data.adapters.odir5k import labels_from_keywords, split_keywords
from funduslab.data.adapters.odir_course import find_course_checkpoints
from funduslab.data.summary import render_summary, summarize
from funduslab.data.table import REQUIRED_COLUMNS

COURSE = Path("/work/shared/data/odir-course")
ODIR5K = Path("/work/shared/data/odir5k-source")
LAYOUTS = ["odir_course", "odir5k", "deepdrid", "aptos", "rfmid", "idrid", "generic_csv"]


def test_registry_lists_every_adapter() -> None:
    assert ADAPTERS.names() == sorted([*LAYOUTS, "patches"])  # patches: written, not a layout
    with pytest.raises(ValueError, match="valid names: aptos, deepdrid"):
        ADAPTERS.get("odir")


@pytest.mark.parametrize("name", LAYOUTS)
def test_detect_layout(name: str, tmp_path: Path, make_layout) -> None:
    root = make_layout(name, tmp_path / name)
    assert detect_layout(root) == name
    table = load_table("auto", root)
    assert list(table.frame.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert all(Path(p).is_file() for p in table.frame["path"])


def test_detect_layout_unknown(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the dataset layout"):
        detect_layout(tmp_path)


def test_odir_course(course_root: Path) -> None:
    table = load_table("odir-course", course_root)
    frame = table.frame
    assert table.splits == ["train", "val", "offsite_test", "onsite_test"]
    assert frame.groupby("split", sort=False).size().tolist() == [5, 2, 2, 3]
    assert table.label_names == ["D", "G", "A"]
    assert table.submission_columns == ["id", "D", "G", "A"]
    row = frame.set_index("id").loc["4_left.jpg"]
    assert (row["patient"], row["eye"], row["D"], row["G"], row["A"]) == ("4", "left", 1, 1, 0)
    onsite = table.split("onsite_test")
    assert onsite["id"].tolist() == ["9_right.jpg", "9_left.jpg", "10_left.jpg"]  # template order
    assert not onsite["labelled"].any()
    assert frame.loc[frame.split != "onsite_test", "labelled"].all()
    assert frame.attrs["checkpoints"] == {}


def test_course_checkpoints(course_root: Path) -> None:
    (course_root / "pretrained_backbone").mkdir()
    for name in ("ckpt_resnet18_ep50.pt", "ckpt_efficientnet_ep50.pt"):
        (course_root / "pretrained_backbone" / name).write_bytes(b"0")
    found = find_course_checkpoints(course_root)
    assert sorted(found) == ["efficientnet", "resnet18"]
    assert found["resnet18"].name == "ckpt_resnet18_ep50.pt"
    assert load_table("odir_course", course_root).frame.attrs["checkpoints"]["efficientnet"]


def test_odir5k_per_eye(tmp_path: Path, make_layout) -> None:
    root = make_layout("odir5k", tmp_path / "o5k", n_patients=20)
    table = load_table("odir5k", root, labels=("N", "D", "C", "M"), seed=3)
    frame = table.frame
    assert len(frame) == 40 and table.label_names == ["N", "D", "C", "M"]
    assert table.splits == ["train", "val", "test"]
    assert frame.groupby("patient")["split"].nunique().max() == 1
    assert frame.set_index("id").loc["0_left.jpg", "N"] == 1  # "normal fundus"
    assert frame["O"].sum() == 0  # O derived from keywords: none of the test keywords is "other"
    # Dual-image partners: each eye's pair is its patient, so the fellow eye is the partner.
    from funduslab.training.pairs import split_partners

    train = table.split("train")
    partners = split_partners(table, train, "odir5k", "concat")
    assert (train["patient"].to_numpy()[partners] == train["patient"].to_numpy()).all()
    assert (train["eye"].to_numpy()[partners] != train["eye"].to_numpy()).all()


def test_odir5k_grading_drops_unstaged(tmp_path: Path, make_layout) -> None:
    root = make_layout("odir5k", tmp_path / "o5k", n_patients=12)
    labels = pd.read_csv(root / "labels.csv")
    labels.loc[0, ["keywords", "D", "dr_grade"]] = ["diabetic retinopathy", 1, -1]
    labels.to_csv(root / "labels.csv", index=False)
    table = load_table("odir5k", root, task="grading")
    assert table.task == "grading" and table.num_grades == 5 and table.label_names == ["dr_grade"]
    assert len(table.frame) == 23 and labels.loc[0, "id"] not in set(table.frame["id"])
    assert set(table.frame["dr_grade"]) == {0, 1, 2}


def test_odir5k_patient_sheet(tmp_path: Path, image_writer) -> None:
    sheet = pd.DataFrame(
        {
            "ID": [0, 1, 2, 3],
            "Patient Age": [69, 57, 42, 53],
            "Patient Sex": ["Female", "Male", "Male", "Female"],
            "Left-Fundus": [f"{i}_left.jpg" for i in range(4)],
            "Right-Fundus": [f"{i}_right.jpg" for i in range(4)],
            "Left-Diagnostic Keywords": ["cataract", "normal fundus", "drusen",
                                         "mild nonproliferative retinopathy"],
            "Right-Diagnostic Keywords": ["normal fundus", "suspected glaucoma，lens dust",
                                          "wet age-related macular degeneration", "normal fundus"],
            **{k: [0, 0, 0, 0] for k in "NDGCAHMO"},
        }
    )  # fmt: skip
    sheet.to_csv(tmp_path / "full_df.csv", index=False)
    for i in range(4):
        for eye in ("left", "right"):
            image_writer(tmp_path / "Training Images" / f"{i}_{eye}.jpg")
    assert detect_layout(tmp_path) == "odir5k"
    table = load_table("odir5k", tmp_path, images="Training Images",
                       fractions={"train": 0.5, "test": 0.5})  # fmt: skip
    frame = table.frame.set_index("id")
    assert len(frame) == 8
    assert frame.loc["0_left.jpg", "C"] == 1 and frame.loc["0_right.jpg", "N"] == 1
    assert frame.loc["1_right.jpg", "G"] == 1
    assert frame.loc["2_left.jpg", ["A", "O"]].tolist() == [0, 1]  # drusen alone is not AMD
    assert frame.loc["2_right.jpg", "A"] == 1 and frame.loc["3_left.jpg", "dr_grade"] == 1
    assert frame.loc["3_left.jpg", "patient"] == "3" and frame.loc["3_left.jpg", "age"] == 53
    assert frame.groupby("patient")["split"].nunique().max() == 1


def test_odir5k_xlsx_without_openpyxl(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    (tmp_path / "images").mkdir()
    (tmp_path / "ODIR-5K_Training_Annotations.xlsx").write_bytes(b"PK")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "openpyxl" else real(n, *a)
    )
    with pytest.raises(ValueError, match="export the sheet to CSV"):
        load_table("odir5k", tmp_path)


def test_deepdrid(tmp_path: Path, make_layout) -> None:
    table = load_table("deepdrid", make_layout("deepdrid", tmp_path / "dd"))
    frame = table.frame.set_index("id")
    assert table.task == "grading" and table.submission_columns == ["ID", "TARGET"]
    assert len(frame) == 12 and table.splits == ["train"]
    assert frame.loc["3_l2", "dr_grade"] == 3 and frame.loc["3_r1", "dr_grade"] == 4
    assert frame.loc["2_r2", "pair"] == "2_r" and frame.loc["2_r2", "eye"] == "right"
    assert frame.groupby("pair").size().eq(2).all()


def test_aptos(tmp_path: Path, make_layout) -> None:
    table = load_table("aptos", make_layout("aptos", tmp_path / "ap"), seed=1)
    frame = table.frame
    assert table.splits == ["train", "val", "test", "kaggle_test"]
    sizes = frame.groupby("split").size().to_dict()
    assert sizes == {"train": 14, "val": 3, "test": 3, "kaggle_test": 3}
    assert table.submission_columns == ["id_code", "diagnosis"]
    assert not table.split("kaggle_test")["labelled"].any()
    grades = sorted(frame.loc[frame.labelled, "dr_grade"].tolist())
    assert grades == sorted(i % 5 for i in range(20))


def test_rfmid(tmp_path: Path, make_layout) -> None:
    root = make_layout("rfmid", tmp_path / "rf")
    table = load_table("rfmid", root)
    assert table.label_names == ["DR", "ARMD", "MH"] and "Disease_Risk" in table.frame
    assert table.frame["id"].tolist()[:2] == ["train-1", "train-2"] and len(table.frame) == 12
    assert table.splits == ["train", "val", "test"]
    with_risk = load_table("rfmid", root, disease_risk_label=True)
    assert with_risk.label_names == ["Disease_Risk", "DR", "ARMD", "MH"]
    assert with_risk.labels("val")["Disease_Risk"].tolist() == [1, 1, 1, 0]


def test_idrid(tmp_path: Path, make_layout) -> None:
    table = load_table("idrid", make_layout("idrid", tmp_path / "id"))
    frame = table.frame.set_index("id")
    assert table.splits == ["train", "test"] and table.label_names == ["MA", "HE", "EX", "SE"]
    assert frame.loc["IDRiD_01", ["MA", "HE", "EX", "SE"]].tolist() == [1, 1, 0, 0]
    assert frame.loc["IDRiD_03", ["MA", "HE", "EX", "SE"]].sum() == 0
    assert frame.loc["IDRiD_55", "split"] == "test" and frame.loc["IDRiD_55", "SE"] == 1
    assert frame.loc["IDRiD_02", "mask_OD"].endswith("IDRiD_02_OD.tif")
    assert frame.loc["IDRiD_02", "mask_MA"] == ""


def test_idrid_empty_mask_with_content_check(tmp_path: Path, make_layout) -> None:
    root = make_layout("idrid", tmp_path / "id")
    mask = root / "A. Segmentation/2. All Segmentation Groundtruths/a. Training Set"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mask / "1. Microaneurysms" / "IDRiD_01_MA.tif")
    assert load_table("idrid", root).frame.set_index("id").loc["IDRiD_01", "MA"] == 1
    checked = load_table("idrid", root, check_mask_content=True).frame.set_index("id")
    assert checked.loc["IDRiD_01", "MA"] == 0 and checked.loc["IDRiD_01", "HE"] == 1


def test_generic_csv_patient_split(tmp_path: Path, make_layout) -> None:
    root = make_layout("generic_csv", tmp_path / "g")
    table = load_table("generic_csv", root / "my.csv", images="images", labels="D,G,A", seed=0)
    frame = table.frame
    assert len(frame) == 20 and table.label_names == ["D", "G", "A"]
    assert frame.groupby("patient")["split"].nunique().max() == 1
    assert set(frame["eye"]) == {"left", "right"} and frame["path"].str.endswith(".png").all()


def test_generic_csv_split_column_and_unlabelled(tmp_path: Path, make_layout) -> None:
    root = make_layout("generic_csv", tmp_path / "g")
    frame = pd.read_csv(root / "my.csv", dtype=str)
    frame["part"] = ["train"] * 16 + ["hidden"] * 4
    frame.loc[16:, "D"] = ""
    frame.to_csv(root / "my.csv", index=False)
    table = load_table("generic_csv", root, labels=["D", "G", "A"],
                       split_column="part", unlabelled_splits="hidden")  # fmt: skip
    assert table.splits == ["train", "hidden"]
    hidden = table.split("hidden")
    assert not hidden["labelled"].any() and hidden["D"].tolist() == [0, 0, 0, 0]


def test_generic_csv_grading(tmp_path: Path, image_writer) -> None:
    ids = [f"img{i}" for i in range(12)]
    grades = pd.DataFrame({"name": ids, "grade": [i % 3 for i in range(12)]})
    grades.to_csv(tmp_path / "g.csv", index=False)
    for i in ids:
        image_writer(tmp_path / f"{i}.jpg")
    table = load_table("generic_csv", tmp_path, id_column="name", labels="grade", task="grading",
                       fractions={"train": 0.5, "val": 0.5})  # fmt: skip
    assert table.task == "grading" and table.num_grades == 3
    assert table.frame.groupby("split").size().to_dict() == {"train": 6, "val": 6}


def test_summary_counts(course_root: Path) -> None:
    summary = summarize(load_table("odir_course", course_root))
    assert summary.loc["train", ["images", "patients", "D", "G", "A"]].tolist() == [5, 4, 3, 2, 1]
    assert summary.loc["train", "D %"] == pytest.approx(60.0)
    assert pd.isna(summary.loc["onsite_test", "D"]) and summary.loc["onsite_test", "images"] == 3
    assert summary.loc["all", "labelled"] == 9 and summary.loc["all", "D"] == 5


def test_render_summary(course_root: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    render_summary(load_table("odir_course", course_root), console)
    text = console.export_text()
    assert "offsite_test" in text and "3 (60.0%)" in text


@pytest.mark.skipif(not (COURSE / "train.csv").is_file(), reason="course data not present")
def test_real_course_folder() -> None:
    table = load_table("odir_course", COURSE)
    counts = table.frame.groupby("split", sort=False).size().to_dict()
    assert counts == {"train": 800, "val": 200, "offsite_test": 200, "onsite_test": 250}
    summary = summarize(table)
    assert summary.loc["train", ["D", "G", "A"]].tolist() == [517, 163, 142]


@pytest.mark.skipif(not (ODIR5K / "labels.csv").is_file(), reason="ODIR-5K source not present")
def test_labels_from_keywords_reproduces_odir5k_source() -> None:
    source = pd.read_csv(ODIR5K / "labels.csv", keep_default_na=False)
    assert len(source) == 4383
    cols = ["D", "G", "A", "C", "H", "M", "N", "dr_grade"]
    derived = pd.DataFrame([labels_from_keywords(k) for k in source["keywords"]])[cols]
    mismatch = (derived.to_numpy() != source[cols].to_numpy()).any(axis=1)
    assert not mismatch.any(), source.loc[mismatch, ["id", "keywords", *cols]].head().to_string()


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        ("normal fundus", {"N": 1, "D": 0, "dr_grade": 0, "O": 0}),
        ("normal fundus，lens dust", {"N": 1, "O": 0}),
        ("epiretinal membrane,normal fundus,lens dust", {"N": 0, "O": 1}),
        ("drusen", {"A": 0, "O": 1, "N": 0}),
        ("wet age-related macular degeneration", {"A": 1, "O": 0}),
        ("suspected glaucoma，moderate non proliferative retinopathy", {"G": 1, "dr_grade": 2}),
        ("mild nonproliferative retinopathy,proliferative diabetic retinopathy", {"dr_grade": 4}),
        ("dry age-related macular degeneration,diabetic retinopathy", {"A": 1, "dr_grade": -1}),
        ("Severe Non-Proliferative Retinopathy", {"D": 1, "dr_grade": 3}),
    ],
)
def test_labels_from_keywords_rules(keywords: str, expected: dict[str, int]) -> None:
    got = labels_from_keywords(keywords)
    assert {k: got[k] for k in expected} == expected


def test_split_keywords_normalises() -> None:
    assert split_keywords(" Moderate  non proliferative retinopathy ，cataract,") == [
        "moderate nonproliferative retinopathy",
        "cataract",
    ]
