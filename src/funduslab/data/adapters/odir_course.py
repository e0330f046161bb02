"""Adapter for the course's ODIR download (``odir-course`` layout in ``docs/layouts.md``).

The course data is a subset of ODIR-5K (Peking University, "Ocular Disease Intelligent
Recognition", 2019) relabelled to three diseases: D (diabetic retinopathy), G (glaucoma) and
A (age-related macular degeneration)::

    train.csv val.csv offsite_test.csv        id,D,G,A   (id = "<patient>_<left|right>.jpg")
    onsite_test_submission.csv                template to fill (labels all 0, unlabelled)
    images/<split>/<id>
    pretrained_backbone/ckpt_*.pt             optional course checkpoints

The course's own splits are kept as given. They share some patients between splits (the course
split by image, not by patient); the adapter logs how many so the user knows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from funduslab.data.adapters import ADAPTERS, layout_sign
from funduslab.data.adapters._csv import (
    ImageFolder,
    check_unique_ids,
    eye_from_id,
    parse_labels,
    patient_from_id,
    read_csv,
    require_columns,
)
from funduslab.data.splits import patient_overlap
from funduslab.data.table import SampleTable

__all__ = ["COURSE_LABELS", "COURSE_SPLITS", "find_course_checkpoints", "load_odir_course"]

log = logging.getLogger(__name__)

COURSE_LABELS: tuple[str, ...] = ("D", "G", "A")
#: split name → (CSV file, labelled)
COURSE_SPLITS: dict[str, tuple[str, bool]] = {
    "train": ("train.csv", True),
    "val": ("val.csv", True),
    "offsite_test": ("offsite_test.csv", True),
    "onsite_test": ("onsite_test_submission.csv", False),
}
_CKPT_NAME = re.compile(r"^ckpt_(?P<arch>.+?)(?:_ep\d+)?$")


def find_course_checkpoints(root: Path | str) -> dict[str, Path]:
    """Course checkpoints under ``root/pretrained_backbone`` keyed by architecture.

    ``ckpt_resnet18_ep50.pt`` → ``{"resnet18": Path(...)}``; empty if the folder is absent.
    """
    folder = Path(root) / "pretrained_backbone"
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth")):
        match = _CKPT_NAME.match(path.stem)
        found.setdefault(match["arch"] if match else path.stem, path.resolve())
    return found


@layout_sign("odir_course", "train.csv + images/train")
def _looks_like_odir_course(root: Path) -> bool:
    return (root / "train.csv").is_file() and (root / "images" / "train").is_dir()


@ADAPTERS.register("odir_course")
def load_odir_course(
    root: Path,
    *,
    labels: Sequence[str] = COURSE_LABELS,
    images: str = "images",
    splits: Sequence[str] | None = None,
) -> SampleTable:
    """Read the course folder into a SampleTable.

    Args:
        root: Folder holding ``train.csv`` … and ``images/``.
        labels: Label columns to read (the course's ``D, G, A``).
        images: Image folder under ``root`` with one sub-folder per split.
        splits: Splits to read (default: every one whose CSV exists; ``train.csv`` is required).

    Returns:
        Table with splits ``train, val, offsite_test`` (labelled) and ``onsite_test``
        (``labelled=False``, labels 0, rows in template order); ``submission_columns`` are
        ``["id", *labels]``; ``frame.attrs["checkpoints"]`` maps architecture → checkpoint path.

    Raises:
        FileNotFoundError: a required CSV or a listed image is missing.
        ValueError: bad columns, labels, duplicate ids, or an unknown split name.
    """
    root = Path(root)
    labels = list(labels)
    wanted = _wanted_splits(root, splits)
    parts = [_read_course_split(root, split, labels, images) for split in wanted]
    frame = pd.concat(parts, ignore_index=True)
    _check_ids_across_splits(frame, root)
    shared = {f"{a}/{b}": n for (a, b), n in patient_overlap(frame).items() if n}
    if shared:
        log.info("course splits share patients (as distributed by the course): %s", shared)
    frame.attrs["checkpoints"] = {k: str(v) for k, v in find_course_checkpoints(root).items()}
    return SampleTable(
        frame=frame,
        label_names=labels,
        task="multilabel",
        source=f"odir_course:{root}",
        submission_columns=["id", *labels],
    )


def _wanted_splits(root: Path, splits: Sequence[str] | None) -> list[str]:
    """The splits to read: those asked for (each a course split), else every CSV present."""
    if splits is None:
        return [s for s, (f, _) in COURSE_SPLITS.items() if s == "train" or (root / f).is_file()]
    unknown = [s for s in splits if s not in COURSE_SPLITS]
    if unknown:
        raise ValueError(f"unknown course split(s) {unknown}; valid: {list(COURSE_SPLITS)}")
    return list(splits)


def _read_course_split(root: Path, split: str, labels: list[str], images: str) -> pd.DataFrame:
    """The rows of one course CSV with resolved image paths (an unlabelled split's labels are 0)."""
    filename, labelled = COURSE_SPLITS[split]
    csv_path = root / filename
    raw = read_csv(csv_path, what=f"course {split} CSV")
    require_columns(raw, ["id", *labels], csv_path)
    if raw.empty:
        raise ValueError(f"{csv_path}: the {split} split has no rows (only a header)")
    check_unique_ids(raw["id"], csv_path)
    if labelled:
        values = parse_labels(raw, labels, csv_path)
    else:  # the template's zeros are placeholders; accept blanks too
        values = parse_labels(raw, labels, csv_path, missing_value=0) * 0
    folder = ImageFolder(root / images / split, what=f"course {split} image folder")
    part = pd.DataFrame(
        {
            "id": raw["id"],
            "path": folder.resolve(raw["id"], csv_path),
            "patient": raw["id"].map(patient_from_id),
            "eye": raw["id"].map(eye_from_id),
            "split": split,
            "labelled": labelled,
        }
    )
    return pd.concat([part, values], axis=1)


def _check_ids_across_splits(frame: pd.DataFrame, root: Path) -> None:
    """Raise if an id is listed in more than one course CSV: ids must be unique in the table."""
    dup = frame.loc[frame["id"].duplicated(keep=False)]
    if not dup.empty:
        first = dup["id"].iloc[0]
        where = frame.loc[frame["id"] == first, "split"].tolist()
        raise ValueError(f"{root}: id {first!r} appears in several course CSVs: {where}")
