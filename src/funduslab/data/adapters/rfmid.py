"""Adapter for RFMiD, the Retinal Fundus Multi-disease Image Dataset (Pachade et al., Data 6(2):14,
2021; RIADD challenge, ISBI 2021).

::

    Training_Set/RFMiD_Training_Labels.csv      Training_Set/Training/<ID>.png
    Evaluation_Set/RFMiD_Validation_Labels.csv  Evaluation_Set/Validation/<ID>.png
    Test_Set/RFMiD_Testing_Labels.csv           Test_Set/Test/<ID>.png

Columns ``ID, Disease_Risk, DR, ARMD, MH, …``: every 0/1 disease column of the training CSV is a
label, in file order. ``Disease_Risk`` (1 when any disease is present) is a summary of the others,
so by default it is kept as an extra integer column ``Disease_Risk`` rather than a label
(filled as "any disease" when a CSV lacks it);
``disease_risk_label=True`` makes it the first label instead (the RIADD "screening" sub-task).

The three sets number their images from 1 each, so table ids are ``<split>-<ID>``
(``train-1``, ``val-1``, ``test-1``). RFMiD has no patient ids: each image is its own patient.
"""

from __future__ import annotations

import logging
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
from funduslab.data.table import SampleTable

__all__ = ["RFMID_SETS", "load_rfmid"]

log = logging.getLogger(__name__)

#: split name → (set folder, labels CSV, image sub-folder)
RFMID_SETS: dict[str, tuple[str, str, str]] = {
    "train": ("Training_Set", "RFMiD_Training_Labels.csv", "Training"),
    "val": ("Evaluation_Set", "RFMiD_Validation_Labels.csv", "Validation"),
    "test": ("Test_Set", "RFMiD_Testing_Labels.csv", "Test"),
}
_RISK = "Disease_Risk"


@layout_sign("rfmid", "Training_Set/")
def _looks_like_rfmid(root: Path) -> bool:
    return (root / "Training_Set").is_dir()


@ADAPTERS.register("rfmid")
def load_rfmid(root: Path, *, disease_risk_label: bool = False) -> SampleTable:
    """Read RFMiD as a multi-label table.

    Args:
        root: Folder holding ``Training_Set/`` (the evaluation and test sets are optional).
        disease_risk_label: Make ``Disease_Risk`` the first label instead of an extra column.

    Returns:
        Splits ``train``, ``val``, ``test`` (those present); labels = the disease columns.

    Raises:
        FileNotFoundError: the training CSV, an image folder or an image is missing.
        ValueError: bad columns or labels, duplicate ids, or a set whose disease columns differ
            from the training set's.
    """
    root = Path(root)
    labels: list[str] = []
    parts = []
    for split, (folder, csv_name, image_dir) in RFMID_SETS.items():
        csv_path = root / folder / csv_name
        if split != "train" and not csv_path.is_file():
            log.info("RFMiD %s set not found at %s; skipped", split, csv_path)
            continue
        raw = read_csv(csv_path, what=f"RFMiD {split} labels")
        labels = _check_set_columns(raw, csv_path, labels)
        parts.append(_set_rows(raw, csv_path, split, labels, root / folder / image_dir))
    frame = pd.concat(parts, ignore_index=True)
    label_names = [_RISK, *labels] if disease_risk_label else labels
    return SampleTable(
        frame=frame,
        label_names=label_names,
        task="multilabel",
        source=f"rfmid:{root}",
    )


def _check_set_columns(raw: pd.DataFrame, csv_path: Path, labels: list[str]) -> list[str]:
    """The disease columns: read from the first set (``labels`` empty), the same in every other."""
    require_columns(raw, ["ID"], csv_path)
    if not labels:
        labels = [c for c in raw.columns if c not in ("ID", _RISK)]
        if not labels:
            raise ValueError(f"{csv_path}: no disease columns after 'ID'/'Disease_Risk'")
    require_columns(raw, labels, csv_path)
    extra = [c for c in raw.columns if c not in ("ID", _RISK, *labels)]
    if extra:
        raise ValueError(
            f"{csv_path}: disease column(s) {extra} are not in the training labels; "
            "all RFMiD sets must have the same columns"
        )
    check_unique_ids(raw["ID"], csv_path, "ID")
    return labels


def _set_rows(
    raw: pd.DataFrame, csv_path: Path, split: str, labels: list[str], image_dir: Path
) -> pd.DataFrame:
    """Table rows of one set, with ``Disease_Risk`` as "any disease" when the CSV lacks it."""
    has_risk = _RISK in raw.columns
    values = parse_labels(raw, labels + ([_RISK] if has_risk else []), csv_path)
    risk = values.pop(_RISK) if has_risk else values[labels].max(axis=1)
    images = ImageFolder(image_dir, what=f"RFMiD {split} images")
    ids = f"{split}-" + raw["ID"]
    part = pd.DataFrame(
        {
            "id": ids,
            "path": images.resolve(raw["ID"], csv_path, "ID"),
            "patient": ids,
            "eye": "",
            "split": split,
            "labelled": True,
        }
    )
    part = pd.concat([part, values[labels]], axis=1)
    part.insert(6, _RISK, risk.astype("int64"))
    return part
