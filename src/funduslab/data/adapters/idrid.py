"""Adapter for the lesion-segmentation part of IDRiD, the Indian Diabetic Retinopathy Image Dataset
(Porwal et al., Data 3(3):25, 2018; ISBI 2018 challenge).

::

    A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_01.jpg
    A. Segmentation/2. All Segmentation Groundtruths/{a. Training Set,b. Testing Set}/
        1. Microaneurysms/IDRiD_01_MA.tif   2. Haemorrhages/…_HE.tif   3. Hard Exudates/…_EX.tif
        4. Soft Exudates/…_SE.tif            5. Optic Disc/…_OD.tif

A missing mask file means the lesion is absent from the image (IDRiD ships no empty masks), so the
image-level labels MA, HE, EX, SE are "mask file present" — no image is decoded. With
``check_mask_content=True`` a present mask must also have a pixel > 0 (reads every mask; slow on
the full-resolution release). Mask paths are kept in ``mask_MA`` … ``mask_OD`` (``""`` if absent).
Lesion folders are found by name (``Microaneurysms``, ``Haemorrhages``/``Hemorrhages``,
``Hard Exudates``, ``Soft Exudates``, ``Optic Disc``), whatever their number prefix.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from funduslab.data.adapters import ADAPTERS, layout_sign
from funduslab.data.adapters._csv import IMAGE_EXTENSIONS, ImageFolder
from funduslab.data.table import SampleTable

__all__ = ["IDRID_LABELS", "IDRID_MASKS", "load_idrid"]

log = logging.getLogger(__name__)

IDRID_LABELS: tuple[str, ...] = ("MA", "HE", "EX", "SE")
#: mask code → words identifying its ground-truth folder (lower case)
IDRID_MASKS: dict[str, tuple[str, ...]] = {
    "MA": ("microaneurysm",),
    "HE": ("haemorrhage", "hemorrhage"),
    "EX": ("hard exudate",),
    "SE": ("soft exudate",),
    "OD": ("optic disc",),
}
_SETS = {"train": "a. Training Set", "test": "b. Testing Set"}
_SEG = "A. Segmentation"


def _mask_folders(gt_root: Path) -> dict[str, ImageFolder]:
    """Mask code → listed folder, for the lesion folders present under ``gt_root``."""
    found: dict[str, ImageFolder] = {}
    if not gt_root.is_dir():
        return found
    for sub in sorted(p for p in gt_root.iterdir() if p.is_dir()):
        name = sub.name.lower()
        for code, words in IDRID_MASKS.items():
            if code not in found and any(w in name for w in words):
                found[code] = ImageFolder(sub, f"IDRiD {code} masks")
    return found


def _mask_has_content(path: Path) -> bool:
    import cv2  # local: only this option decodes anything

    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"cannot read IDRiD mask {path}; the file is damaged or not an image")
    return bool((mask > 0).any())


@layout_sign("idrid", "'A. Segmentation/'")
def _looks_like_idrid(root: Path) -> bool:
    return (root / "A. Segmentation").is_dir()


@ADAPTERS.register("idrid")
def load_idrid(root: Path, *, check_mask_content: bool = False) -> SampleTable:
    """Read IDRiD segmentation images as a multi-label lesion-presence table.

    Args:
        root: Folder holding ``A. Segmentation/`` (or that folder itself).
        check_mask_content: Also require a non-zero pixel for a lesion to count (decodes masks).

    Returns:
        Splits ``train`` and ``test`` (those present); labels ``MA, HE, EX, SE``; columns
        ``mask_MA`` … ``mask_OD``.

    Raises:
        FileNotFoundError: no original-image folder for any set.
    """
    root = Path(root)
    seg = root if root.name == _SEG else root / _SEG
    parts = []
    for split, set_name in _SETS.items():
        image_dir = seg / "1. Original Images" / set_name
        if not image_dir.is_dir():
            log.info("IDRiD %s images not found at %s; skipped", split, image_dir)
            continue
        masks = _mask_folders(seg / "2. All Segmentation Groundtruths" / set_name)
        if not masks:
            log.warning("IDRiD %s: no ground-truth folders found; all lesion labels are 0", split)
        rows = _set_rows(image_dir, split, masks, check_mask_content)
        if rows:
            parts.append(pd.DataFrame(rows))
    if not parts:
        raise FileNotFoundError(
            f"no IDRiD images under {seg / '1. Original Images'}: expected "
            f"'{_SETS['train']}/' and/or '{_SETS['test']}/' with IDRiD_XX.jpg files"
        )
    frame = pd.concat(parts, ignore_index=True)
    return SampleTable(
        frame=frame, label_names=list(IDRID_LABELS), task="multilabel", source=f"idrid:{root}"
    )


def _set_rows(
    image_dir: Path, split: str, masks: dict[str, ImageFolder], check_mask_content: bool
) -> list[dict[str, object]]:
    """One row per image of a set: lesion labels from its masks, and the mask paths."""
    images = ImageFolder(image_dir, f"IDRiD {split} images")
    names = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    rows = []
    for name in names:
        image_id = Path(name).stem
        row: dict[str, object] = {
            "id": image_id,
            "path": str(images.find(name).resolve()),
            "patient": image_id,
            "eye": "",
            "split": split,
            "labelled": True,
        }
        mask_paths = {}
        for code in IDRID_MASKS:
            hit = masks[code].find(f"{image_id}_{code}") if code in masks else None
            mask_paths[code] = str(hit.resolve()) if hit is not None else ""
        for code in IDRID_LABELS:
            present = bool(mask_paths[code])
            if present and check_mask_content:
                present = _mask_has_content(Path(mask_paths[code]))
            row[code] = int(present)
        row.update({f"mask_{code}": p for code, p in mask_paths.items()})
        rows.append(row)
    return rows
