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
    root = Path(root)
    csv_path = _locate_csv(root, csv)
    raw = read_csv(csv_path)
    base = csv_path.parent
    if task not in ("multilabel", "grading"):
        raise ValueError(f"task must be 'multilabel' or 'grading', got {task!r}")
    meta = [c for c in (id_column, split_column, patient_column, eye_column) if c]
    require_columns(raw, meta, csv_path)
    label_names = _as_list(labels)
    if label_names is None:
        label_names = [c for c in raw.columns if c not in meta]
    if not label_names:
        raise ValueError(f"{csv_path}: no label columns; pass labels=<columns>")
    if task == "grading" and len(label_names) != 1:
        raise ValueError(f"grading needs one label column, got {label_names}; pass labels=<col>")
    require_columns(raw, label_names, csv_path)
    check_unique_ids(raw[id_column], csv_path, id_column)

    ids = raw[id_column]
    if patient_column:
        patient = raw[patient_column]
    elif len(ids) and (ids.map(eye_from_id) != "").all():
        patient = ids.map(patient_from_id)
    else:
        log.info("%s: no patient column; each image is its own patient", csv_path)
        patient = ids
    eye = raw[eye_column].str.lower() if eye_column else ids.map(eye_from_id)

    unlabelled = set(_as_list(unlabelled_splits) or [])
    k = 2 if task == "multilabel" else (num_grades or 1000)
    values = parse_labels(raw, label_names, csv_path, num_values=k, missing_value=_MISSING)
    labelled = raw[split_column].isin(unlabelled) if split_column else pd.Series(False, raw.index)
    labelled = ~labelled
    empty = (values == _MISSING).any(axis=1) & labelled
    if empty.any():
        row = int(empty.to_numpy().nonzero()[0][0])
        col = next(c for c in label_names if values.iloc[row][c] == _MISSING)
        raise ValueError(f"{csv_path}: {row_ref(row)}, column {col!r}: empty label")
    values = values.where(values != _MISSING, 0)
    if task == "grading" and not num_grades:
        num_grades = int(values[label_names[0]].max()) + 1

    if images is None:
        images = "images" if (base / "images").is_dir() else "."
    image_dir = base / images
    if not image_dir.is_dir() and Path(images).is_dir():  # relative to the working directory
        image_dir = Path(images)
    folder = ImageFolder(image_dir, what="image folder")
    frame = pd.DataFrame(
        {
            "id": ids,
            "path": folder.resolve(ids, csv_path, id_column),
            "patient": patient.astype(str),
            "eye": eye,
            "split": "",
            "labelled": labelled.to_numpy(),
        }
    )
    frame = pd.concat([frame, values], axis=1)
    if split_column:
        blank = (raw[split_column] == "").to_numpy()
        if blank.any():
            row = int(blank.nonzero()[0][0])
            raise ValueError(f"{csv_path}: {row_ref(row)}, column {split_column!r}: empty split")
        frame["split"] = raw[split_column]
    else:
        frame["split"] = patient_split(
            frame, label_names, fractions, seed, grading=task == "grading", num_grades=num_grades
        )
        frame = sort_by_split(frame, fractions)
    wanted = _as_list(splits)
    if wanted is not None:
        for name in wanted:
            if not (frame["split"] == name).any():
                raise ValueError(
                    f"{csv_path}: requested split {name!r} has no rows; splits present: "
                    f"{list(dict.fromkeys(frame['split']))}"
                )
        frame = frame.loc[frame["split"].isin(wanted)].reset_index(drop=True)
    return SampleTable(
        frame=frame,
        label_names=label_names,
        task="grading" if task == "grading" else "multilabel",
        num_grades=num_grades if task == "grading" else 0,
        source=f"generic_csv:{csv_path}",
        submission_columns=[id_column, *label_names],
    )
