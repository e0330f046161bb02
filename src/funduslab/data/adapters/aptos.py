"""Adapter for APTOS 2019 Blindness Detection (Kaggle; Aravind Eye Hospital, 2019).

::

    train.csv  (id_code, diagnosis 0–4)   train_images/<id_code>.png
    test.csv   (id_code)                  test_images/<id_code>.png   (optional, unlabelled)

APTOS publishes no patient ids, so each image is its own "patient" for splitting (both eyes of a
person may therefore land in different splits; nothing in the release allows better). The
labelled ``train.csv`` is split into train/val/test, stratified on the grade; the Kaggle test set
becomes the unlabelled split ``kaggle_test`` whose submission format is ``id_code,diagnosis``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from funduslab.data.adapters import ADAPTERS, layout_sign
from funduslab.data.adapters._csv import (
    ImageFolder,
    check_unique_ids,
    parse_labels,
    read_csv,
    require_columns,
)
from funduslab.data.splits import patient_split, sort_by_split
from funduslab.data.table import SampleTable

__all__ = ["APTOS_GRADES", "load_aptos"]

APTOS_GRADES = 5


@layout_sign("aptos", "train.csv + train_images/")
def _looks_like_aptos(root: Path) -> bool:
    return (root / "train.csv").is_file() and (root / "train_images").is_dir()


@ADAPTERS.register("aptos")
def load_aptos(
    root: Path,
    *,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    unlabelled_split: str = "kaggle_test",
) -> SampleTable:
    """Read APTOS 2019 as a grading table (label column ``dr_grade``, 5 grades).

    Args:
        root: Folder holding ``train.csv`` and ``train_images/``.
        fractions: Split of ``train.csv`` (default train/val/test 0.7/0.15/0.15;
            ``{"train": 1.0}`` keeps it whole).
        seed: Split seed.
        unlabelled_split: Name of the split made from ``test.csv`` when present.

    Raises:
        FileNotFoundError: CSV, image folder or an image missing.
        ValueError: bad columns, grades outside 0–4, duplicate ids.
    """
    root = Path(root)
    csv_path = root / "train.csv"
    raw = _read_aptos_csv(csv_path, "APTOS train CSV", ["id_code", "diagnosis"])
    grades = parse_labels(raw, ["diagnosis"], csv_path, num_values=APTOS_GRADES)["diagnosis"]
    folder = ImageFolder(root / "train_images", what="APTOS train image folder")
    frame = _image_rows(raw, csv_path, folder, split="", labelled=True, grades=grades)
    frame["split"] = patient_split(
        frame, ["dr_grade"], fractions, seed, grading=True, num_grades=APTOS_GRADES
    )
    frame = sort_by_split(frame, fractions)
    test_csv = root / "test.csv"
    if test_csv.is_file():
        test = _read_aptos_csv(test_csv, "APTOS test CSV", ["id_code"])
        test_folder = ImageFolder(root / "test_images", what="APTOS test image folder")
        unlabelled = _image_rows(
            test, test_csv, test_folder, split=unlabelled_split, labelled=False, grades=0
        )
        frame = pd.concat([frame, unlabelled], ignore_index=True)
    return SampleTable(
        frame=frame,
        label_names=["dr_grade"],
        task="grading",
        num_grades=APTOS_GRADES,
        source=f"aptos:{root}",
        submission_columns=["id_code", "diagnosis"],
    )


def _read_aptos_csv(csv_path: Path, what: str, columns: list[str]) -> pd.DataFrame:
    """An APTOS CSV holding ``columns``, with unique ``id_code`` values."""
    raw = read_csv(csv_path, what=what)
    require_columns(raw, columns, csv_path)
    check_unique_ids(raw["id_code"], csv_path, "id_code")
    return raw


def _image_rows(
    raw: pd.DataFrame,
    csv_path: Path,
    folder: ImageFolder,
    *,
    split: str,
    labelled: bool,
    grades: pd.Series | int,
) -> pd.DataFrame:
    """Table rows of an APTOS CSV; with no patient ids, each image is its own patient."""
    return pd.DataFrame(
        {
            "id": raw["id_code"],
            "path": folder.resolve(raw["id_code"], csv_path, "id_code"),
            "patient": raw["id_code"],
            "eye": "",
            "split": split,
            "labelled": labelled,
            "dr_grade": grades,
        }
    )
