"""Adapter for DeepDRiD regular fundus images (Liu et al., "DeepDRiD: Diabetic Retinopathy —
Grading and Image Quality Estimation Challenge", Patterns 3(6), 2022).

::

    regular-fundus-{training,validation,testing}/regular-fundus-{...}.csv
    regular-fundus-{...}/Images/<patient_id>/<image_id>.jpg

Each patient has two images per eye (``<patient>_l1``, ``_l2``, ``_r1``, ``_r2``); an image's grade
is its eye's level (``left_eye_DR_Level`` / ``right_eye_DR_Level``, falling back to
``patient_DR_Level`` when the eye's cell is empty). Level 5 ("ungradable" in the challenge
data) is dropped and logged. The ``pair`` column (``<patient>_<l|r>``) groups the two images of
one eye for dual-image models. Testing rows without any level are unlabelled.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from funduslab.data.adapters import ADAPTERS, layout_sign
from funduslab.data.adapters._csv import (
    ImageFolder,
    check_unique_ids,
    parse_labels,
    read_csv,
    require_columns,
    row_ref,
)
from funduslab.data.table import SampleTable

__all__ = ["DEEPDRID_SPLITS", "load_deepdrid"]

log = logging.getLogger(__name__)

#: split name → folder/CSV stem
DEEPDRID_SPLITS: dict[str, str] = {
    "train": "regular-fundus-training",
    "val": "regular-fundus-validation",
    "test": "regular-fundus-testing",
}
_LEVELS = ["left_eye_DR_Level", "right_eye_DR_Level", "patient_DR_Level"]
_IMAGE_ID = re.compile(r"^(?P<patient>.+)_(?P<eye>[lr])(?P<shot>\d*)$", re.I)
_UNGRADABLE = 5


def _read_split(root: Path, split: str, stem: str) -> pd.DataFrame:
    csv_path = root / stem / f"{stem}.csv"
    raw = read_csv(csv_path, what=f"DeepDRiD {split} CSV")
    require_columns(raw, ["patient_id", "image_id"], csv_path)
    check_unique_ids(raw["image_id"], csv_path, "image_id")
    for col in _LEVELS:
        if col not in raw.columns:
            raw[col] = ""
    levels = parse_labels(raw, _LEVELS, csv_path, num_values=6, missing_value=-1)
    eyes, pairs, grades = [], [], []
    for row, (image_id, patient) in enumerate(zip(raw["image_id"], raw["patient_id"])):
        match = _IMAGE_ID.match(image_id)
        if match is None:
            raise ValueError(
                f"{csv_path}: {row_ref(row)}, column 'image_id': {image_id!r} is not "
                "'<patient>_<l|r><n>'; cannot tell the eye"
            )
        side = match["eye"].lower()
        eye_level = levels.iloc[row, 0 if side == "l" else 1]
        grade = eye_level if eye_level >= 0 else levels.iloc[row, 2]
        eyes.append("left" if side == "l" else "right")
        pairs.append(f"{patient}_{side}")
        grades.append(int(grade))
    paths = []
    images = root / stem / "Images"
    folders: dict[str, ImageFolder] = {}
    for row, (image_id, patient) in enumerate(zip(raw["image_id"], raw["patient_id"])):
        if patient not in folders:
            sub = images / patient
            where = sub if sub.is_dir() else images
            folders[patient] = ImageFolder(where, f"DeepDRiD {split} images")
        found = folders[patient].find(image_id)
        if found is None:
            raise FileNotFoundError(
                f"{csv_path}: {row_ref(row)}, column 'image_id': image not found: "
                f"{images / patient / image_id}.jpg; fix the CSV or put the image there"
            )
        paths.append(str(found.resolve()))
    frame = pd.DataFrame(
        {
            "id": raw["image_id"],
            "path": paths,
            "patient": raw["patient_id"],
            "eye": eyes,
            "split": split,
            "labelled": [g >= 0 for g in grades],
            "dr_grade": [max(g, 0) for g in grades],
            "pair": pairs,
        }
    )
    if "Overall quality" in raw.columns:
        frame["quality"] = raw["Overall quality"].to_numpy()
    ungradable = frame["dr_grade"] == _UNGRADABLE
    if ungradable.any():
        log.info("%s: dropping %d ungradable image(s) (level 5)", csv_path, int(ungradable.sum()))
        frame = frame.loc[~ungradable]
    return frame


@layout_sign("deepdrid", "regular-fundus-training/")
def _looks_like_deepdrid(root: Path) -> bool:
    return (root / "regular-fundus-training").is_dir()


@ADAPTERS.register("deepdrid")
def load_deepdrid(root: Path) -> SampleTable:
    """Read the DeepDRiD regular-fundus sets as a grading table (label ``dr_grade``, 5 grades).

    Args:
        root: Folder holding ``regular-fundus-training/`` (validation and testing optional).

    Returns:
        Splits ``train``, ``val``, ``test`` (those present); submission format ``ID,TARGET``.

    Raises:
        FileNotFoundError: the training CSV, an image folder or an image is missing.
        ValueError: bad columns, levels outside 0–5, duplicate or malformed image ids.
    """
    root = Path(root)
    parts = [
        _read_split(root, split, stem)
        for split, stem in DEEPDRID_SPLITS.items()
        if split == "train" or (root / stem).is_dir()
    ]
    seen: set[str] = set()
    for part in parts:
        if part["id"].isin(seen).any():  # sets numbered from 1 each: keep ids and patients apart
            split = part["split"].iloc[0]
            log.info("DeepDRiD %s ids repeat earlier sets; prefixing them with %r", split, split)
            for col in ("id", "patient", "pair"):
                part[col] = f"{split}-" + part[col]
        seen |= set(part["id"])
    frame = pd.concat(parts, ignore_index=True)
    return SampleTable(
        frame=frame,
        label_names=["dr_grade"],
        task="grading",
        num_grades=5,
        source=f"deepdrid:{root}",
        submission_columns=["ID", "TARGET"],
    )
