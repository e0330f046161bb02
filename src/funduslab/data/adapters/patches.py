"""Adapter for lesion patch sets written by :func:`funduslab.data.patches_write.write_patch_set`.

::

    <root>/patches.csv   id, path (relative to root, or absolute), source_id, patient, x, y,
                         MA, HE, EX, SE, split [, fov_fraction]
    <root>/patches/<id>.png

Labels are ``MA, HE, EX, SE`` (multi-hot); the patient and split columns come from the source
image, so the engine's patient-level guarantees hold. ``csv=`` reads another table of the same
shape (the lesion-patches preset writes ``whole_images.csv`` for its whole-image model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from funduslab.data.adapters import ADAPTERS
from funduslab.data.adapters._csv import (
    check_unique_ids,
    parse_labels,
    read_csv,
    require_columns,
    row_ref,
)
from funduslab.data.patches import LESIONS
from funduslab.data.table import SampleTable

__all__ = ["load_patches"]


def _resolve(paths: Sequence[str], root: Path, csv_path: Path) -> list[str]:
    """Absolute paths; each folder is listed once; the first missing file raises."""
    full = [Path(p) if Path(p).is_absolute() else root / p for p in paths]
    listed: dict[Path, set[str]] = {}
    for i, path in enumerate(full):
        parent = path.parent
        if parent not in listed:
            try:
                with os.scandir(parent) as entries:
                    listed[parent] = {e.name for e in entries}
            except (FileNotFoundError, NotADirectoryError):
                listed[parent] = set()
        if path.name not in listed[parent]:
            raise FileNotFoundError(f"{csv_path}: {row_ref(i)}, column 'path': patch image not "
                                    f"found: {path}; re-run `funduslab patches` to rebuild the set")
    return [str(p.resolve()) for p in full]


@ADAPTERS.register("patches")
def load_patches(root: Path, *, csv: str = "patches.csv",
                 splits: Sequence[str] | str | None = None) -> SampleTable:
    """Read a lesion patch set as a multi-label table.

    Args:
        root: Patch-set folder (or the CSV file itself).
        csv: Table file name inside ``root``.
        splits: Keep only these splits (list or ``"train,val"``).

    Raises:
        FileNotFoundError: the CSV or a patch image is missing.
        ValueError: missing columns, bad labels, duplicate ids, empty requested split.
    """
    root = Path(root)
    csv_path = root if root.is_file() else root / csv
    base = csv_path.parent
    raw = read_csv(csv_path, "patch table")
    require_columns(raw, ["id", "path", "patient", "split", *LESIONS], csv_path)
    check_unique_ids(raw["id"], csv_path)
    labels = parse_labels(raw, list(LESIONS), csv_path)
    frame = pd.DataFrame({
        "id": raw["id"], "path": _resolve(raw["path"].tolist(), base, csv_path),
        "patient": raw["patient"], "eye": "", "split": raw["split"], "labelled": True,
    })
    frame = pd.concat([frame, labels], axis=1)
    for extra in ("source_id", "x", "y", "fov_fraction"):
        if extra in raw.columns:
            frame[extra] = raw[extra]
    if splits is not None:
        wanted = [s.strip() for s in splits.split(",")] if isinstance(splits, str) else list(splits)
        for name in wanted:
            if not (frame["split"] == name).any():
                raise ValueError(f"{csv_path}: requested split {name!r} has no rows; splits "
                                 f"present: {list(dict.fromkeys(frame['split']))}")
        frame = frame[frame["split"].isin(wanted)].reset_index(drop=True)
    return SampleTable(frame=frame, label_names=list(LESIONS), task="multilabel",
                       source=f"patches:{csv_path}")
