"""Adapter for any CSV of labelled images: your own data in the shape funduslab expects.

One row per image: an id column (the image file name, with or without extension), the label
columns you choose, and optionally split, patient and eye columns. Without a split column the
rows are split by patient (:func:`funduslab.data.splits.patient_split`); without a patient column
the patient is read from ``<patient>_<left|right>`` ids when every id has that form, else each
image is its own patient.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from funduslab.data.adapters import ADAPTERS
from funduslab.data.adapters._csv import (
    ImageFolder,
    check_unique_ids,
    eye_from_id,
    parse_labels,
    patient_from_id,
    read_csv,
    require_columns,
    row_ref,
)
from funduslab.data.splits import patient_split, sort_by_split
from funduslab.data.table import SampleTable

__all__ = ["load_generic_csv"]

log = logging.getLogger(__name__)

_MISSING = -999  # sentinel for empty label cells (allowed only in unlabelled splits)


def _as_list(value: Sequence[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _locate_csv(root: Path, csv: str | Path | None) -> Path:
    if root.is_file():
        return root
    if csv is not None:
        path = Path(csv)
        return path if path.is_absolute() else root / path
    found = sorted(root.glob("*.csv"))
    if len(found) != 1:
        raise ValueError(
            f"{root} holds {len(found)} CSV files ({[p.name for p in found]}); "
            "pass csv=<file> to choose one"
        )
    return found[0]


@ADAPTERS.register("generic_csv")
def load_generic_csv(
    root: Path,
    *,
    csv: str | Path | None = None,
    images: str | Path | None = None,
    labels: Sequence[str] | str | None = None,
    id_column: str = "id",
    split_column: str | None = None,
    patient_column: str | None = None,
    eye_column: str | None = None,
    task: str = "multilabel",
    num_grades: int = 0,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    unlabelled_splits: Sequence[str] | str = (),
    splits: Sequence[str] | str | None = None,
) -> SampleTable:
    """Read a user CSV.

    Args:
        root: The CSV file, or a folder holding it (then ``csv`` names it unless it is alone).
        csv: CSV file name, relative to ``root``.
        images: Image folder, relative to the CSV's folder (or else to the working directory);
            default ``images/`` when it exists, else the CSV's folder.
        labels: Label columns (list or ``"D,G,A"``); default every column that is not the id,
            split, patient or eye column.
        id_column: Column with image ids / file names.
        split_column: Column with split names; without it, rows are split by patient.
        patient_column: Column with patient ids.
        eye_column: Column with ``left``/``right``.
        task: ``"multilabel"`` (0/1 labels) or ``"grading"`` (one label column of grades).
        num_grades: Number of grades for grading (0: max grade + 1).
        fractions: Split fractions when there is no split column (default 0.7/0.15/0.15).
        seed: Split seed.
        unlabelled_splits: Splits whose labels are placeholders (may be empty cells).
        splits: Keep only these splits; each must have rows.

    Raises:
        FileNotFoundError: CSV, image folder or an image is missing.
        ValueError: missing columns, bad labels, duplicate ids, requested split with no rows.
    """
    csv_path = _locate_csv(Path(root), csv)
    columns = _Columns(id_column, split_column, patient_column, eye_column)
    raw, label_names = _read_checked_csv(csv_path, columns, _as_list(labels), task)
    frame, num_grades = _sample_frame(
        raw, csv_path, columns, label_names, task, num_grades, images, unlabelled_splits
    )
    frame = _assign_splits(
        frame, raw, csv_path, columns.split, label_names, fractions, seed, task, num_grades
    )
    frame = _keep_splits(frame, csv_path, _as_list(splits))
    return SampleTable(
        frame=frame,
        label_names=label_names,
        task="grading" if task == "grading" else "multilabel",
        num_grades=num_grades if task == "grading" else 0,
        source=f"generic_csv:{csv_path}",
        submission_columns=[id_column, *label_names],
    )


class _Columns(NamedTuple):
    """The CSV's id column and its optional split, patient and eye columns."""

    id: str
    split: str | None
    patient: str | None
    eye: str | None


def _read_checked_csv(
    csv_path: Path, columns: _Columns, labels: list[str] | None, task: str
) -> tuple[pd.DataFrame, list[str]]:
    """The CSV and its label columns, after checking the task, the named columns and the ids."""
    raw = read_csv(csv_path)
    if task not in ("multilabel", "grading"):
        raise ValueError(f"task must be 'multilabel' or 'grading', got {task!r}")
    meta = [c for c in columns if c]
    require_columns(raw, meta, csv_path)
    label_names = labels if labels is not None else [c for c in raw.columns if c not in meta]
    if not label_names:
        raise ValueError(f"{csv_path}: no label columns; pass labels=<columns>")
    if task == "grading" and len(label_names) != 1:
        raise ValueError(f"grading needs one label column, got {label_names}; pass labels=<col>")
    require_columns(raw, label_names, csv_path)
    check_unique_ids(raw[columns.id], csv_path, columns.id)
    return raw, label_names


def _patients_and_eyes(
    raw: pd.DataFrame, csv_path: Path, columns: _Columns
) -> tuple[pd.Series, pd.Series]:
    """Patient and eye per row: from their columns, else from ``<patient>_<eye>`` ids."""
    ids = raw[columns.id]
    if columns.patient:
        patient = raw[columns.patient]
    elif len(ids) and (ids.map(eye_from_id) != "").all():
        patient = ids.map(patient_from_id)
    else:
        log.info("%s: no patient column; each image is its own patient", csv_path)
        patient = ids
    eye = raw[columns.eye].str.lower() if columns.eye else ids.map(eye_from_id)
    return patient, eye


def _label_values(
    raw: pd.DataFrame, csv_path: Path, label_names: list[str], num_values: int, labelled: pd.Series
) -> pd.DataFrame:
    """Integer labels; an empty cell is an error in a labelled row and 0 in an unlabelled one."""
    values = parse_labels(raw, label_names, csv_path, num_values=num_values, missing_value=_MISSING)
    empty = (values == _MISSING).any(axis=1) & labelled
    if empty.any():
        row = int(empty.to_numpy().nonzero()[0][0])
        col = next(c for c in label_names if values.iloc[row][c] == _MISSING)
        raise ValueError(f"{csv_path}: {row_ref(row)}, column {col!r}: empty label")
    return values.where(values != _MISSING, 0)


def _image_folder(base: Path, images: str | Path | None) -> ImageFolder:
    """The image folder, relative to the CSV's folder ``base`` or else to the working directory."""
    if images is None:
        images = "images" if (base / "images").is_dir() else "."
    image_dir = base / images
    if not image_dir.is_dir() and Path(images).is_dir():  # relative to the working directory
        image_dir = Path(images)
    return ImageFolder(image_dir, what="image folder")


def _sample_frame(
    raw: pd.DataFrame,
    csv_path: Path,
    columns: _Columns,
    label_names: list[str],
    task: str,
    num_grades: int,
    images: str | Path | None,
    unlabelled_splits: Sequence[str] | str,
) -> tuple[pd.DataFrame, int]:
    """One row per image (no split yet) and the number of grades (inferred when 0)."""
    patient, eye = _patients_and_eyes(raw, csv_path, columns)
    unlabelled = set(_as_list(unlabelled_splits) or [])
    if columns.split:
        labelled = ~raw[columns.split].isin(unlabelled)
    else:
        labelled = ~pd.Series(False, raw.index)
    num_values = 2 if task == "multilabel" else (num_grades or 1000)
    values = _label_values(raw, csv_path, label_names, num_values, labelled)
    if task == "grading" and not num_grades:
        num_grades = int(values[label_names[0]].max()) + 1
    ids = raw[columns.id]
    folder = _image_folder(csv_path.parent, images)
    frame = pd.DataFrame(
        {
            "id": ids,
            "path": folder.resolve(ids, csv_path, columns.id),
            "patient": patient.astype(str),
            "eye": eye,
            "split": "",
            "labelled": labelled.to_numpy(),
        }
    )
    return pd.concat([frame, values], axis=1), num_grades


def _assign_splits(
    frame: pd.DataFrame,
    raw: pd.DataFrame,
    csv_path: Path,
    split_column: str | None,
    label_names: list[str],
    fractions: Mapping[str, float] | None,
    seed: int,
    task: str,
    num_grades: int,
) -> pd.DataFrame:
    """Splits from the split column (none may be empty), else drawn by patient."""
    if split_column:
        blank = (raw[split_column] == "").to_numpy()
        if blank.any():
            row = int(blank.nonzero()[0][0])
            raise ValueError(f"{csv_path}: {row_ref(row)}, column {split_column!r}: empty split")
        frame["split"] = raw[split_column]
        return frame
    frame["split"] = patient_split(
        frame, label_names, fractions, seed, grading=task == "grading", num_grades=num_grades
    )
    return sort_by_split(frame, fractions)


def _keep_splits(frame: pd.DataFrame, csv_path: Path, wanted: list[str] | None) -> pd.DataFrame:
    """The rows of the ``wanted`` splits (all rows when ``None``); each must have rows."""
    if wanted is None:
        return frame
    for name in wanted:
        if not (frame["split"] == name).any():
            raise ValueError(
                f"{csv_path}: requested split {name!r} has no rows; splits present: "
                f"{list(dict.fromkeys(frame['split']))}"
            )
    return frame.loc[frame["split"].isin(wanted)].reset_index(drop=True)
