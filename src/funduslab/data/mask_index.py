"""Per-label lesion masks beside a dataset: the folder layout, its writer and its reader.

A CAM can only be checked where the place of the finding is known. ``funduslab synth --masks``
writes, beside the images, one binary mask per (image, positive label) and an index::

    masks/masks.csv         id,image,label,path,findings
    masks/landmarks.csv     id,image,fovea_x,fovea_y,disc_x,disc_y
    masks/<id stem>_<label>.png

``id`` is the adapter's sample id (``913_right.jpg``, ``test-4`` for RFMiD), ``image`` the image
file relative to the dataset root, ``path`` the mask relative to the ``masks/`` folder,
``findings`` the generator masks whose union it is (``MA+HE+EX``). As in IDRiD, masks are the
image's size, 0/255, and written only when non-empty. Landmarks are pixel coordinates
(column, row) of the image as written. Explanations read these with :func:`read_mask_index` and
:func:`read_landmarks`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from funduslab.config import atomic_write_text

__all__ = [
    "INDEX_COLUMNS",
    "LANDMARK_COLUMNS",
    "MaskIndexWriter",
    "mask_filename",
    "read_landmarks",
    "read_mask_index",
]

INDEX_FILE = "masks.csv"
LANDMARKS_FILE = "landmarks.csv"
INDEX_COLUMNS = ("id", "image", "label", "path", "findings")
LANDMARK_COLUMNS = ("id", "image", "fovea_x", "fovea_y", "disc_x", "disc_y")


def mask_filename(image_id: str, label: str) -> str:
    """``<id stem>_<label>.png`` with unsafe characters replaced (``913_right.jpg``, ``D`` →
    ``913_right_D.png``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(image_id).stem).strip("._") or "image"
    return f"{stem}_{re.sub(r'[^A-Za-z0-9_-]+', '_', label)}.png"


class MaskIndexWriter:
    """Collects per-label masks of a dataset being written and saves them with their index.

    Args:
        folder: The ``masks/`` folder (created on the first mask).
        write_png: ``(path, uint8 (H, W)) -> None``, an atomic, deterministic PNG writer (the
            generator passes its own, so same seed gives same bytes).
    """

    def __init__(self, folder: Path, write_png) -> None:
        self.folder = Path(folder)
        self.write_png = write_png
        self.rows: list[dict[str, str]] = []
        self.landmarks: list[dict[str, object]] = []

    def add(self, image_id: str, image: str, masks: Mapping[str, tuple[np.ndarray, str]],
            landmarks: Mapping[str, tuple[float, float]] | None = None) -> None:
        """Record one image: ``masks`` maps label → (``(H, W)`` bool mask, findings)."""
        for label, (mask, findings) in masks.items():
            if not mask.any():
                continue
            name = mask_filename(image_id, label)
            self.write_png(self.folder / name, mask.astype(np.uint8) * 255)
            self.rows.append({"id": image_id, "image": image, "label": label, "path": name,
                              "findings": findings})
        if landmarks is not None:
            (fx, fy), (dx, dy) = landmarks["fovea"], landmarks["disc"]
            self.landmarks.append({"id": image_id, "image": image, "fovea_x": round(fx, 2),
                                   "fovea_y": round(fy, 2), "disc_x": round(dx, 2),
                                   "disc_y": round(dy, 2)})

    def close(self) -> int:
        """Write ``masks.csv`` and ``landmarks.csv``; returns the number of masks."""
        for name, rows, cols in ((INDEX_FILE, self.rows, INDEX_COLUMNS),
                                 (LANDMARKS_FILE, self.landmarks, LANDMARK_COLUMNS)):
            frame = pd.DataFrame(rows, columns=list(cols))
            atomic_write_text(self.folder / name, frame.to_csv(index=False, lineterminator="\n"))
        return len(self.rows)


def read_mask_index(folder: Path | str) -> pd.DataFrame:
    """The ``masks.csv`` of ``folder`` with ``path`` made absolute.

    Raises:
        FileNotFoundError: no ``folder`` or no ``masks.csv`` in it (the message says how to make
            one).
        ValueError: missing columns, or a listed mask file that does not exist.
    """
    folder = Path(folder)
    index = folder / INDEX_FILE
    if not index.is_file():
        what = "masks folder" if not folder.is_dir() else "mask index"
        raise FileNotFoundError(
            f"{what} not found: {index}; write masks with `funduslab synth --masks` or pass "
            "--masks DIR (a folder holding masks.csv with columns id,label,path)"
        )
    frame = pd.read_csv(index, dtype=str, keep_default_na=False)
    missing = [c for c in ("id", "label", "path") if c not in frame.columns]
    if missing:
        raise ValueError(f"{index} lacks column(s) {missing}; expected {list(INDEX_COLUMNS)}")
    frame["path"] = [str((folder / p).resolve()) for p in frame["path"]]
    gone = [p for p in frame["path"] if not Path(p).is_file()]
    if gone:
        raise ValueError(f"{index} lists {len(gone)} mask file(s) that do not exist, "
                         f"e.g. {gone[0]}")
    return frame


def read_landmarks(folder: Path | str) -> pd.DataFrame | None:
    """``landmarks.csv`` of ``folder`` indexed by ``id`` (float coordinates), or ``None``."""
    path = Path(folder) / LANDMARKS_FILE
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    missing = [c for c in ("id", "fovea_x", "fovea_y") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; expected {list(LANDMARK_COLUMNS)}")
    return frame.set_index("id")
