"""Tiny hand-made dataset layouts for the adapter tests (a few 8×8 images each).

Fixtures return factories ``make_<layout>(root, **kw) -> Path`` so a test can tweak a CSV before or
after writing; images are real (tiny) JPEG/PNG/TIFF files written with Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

COURSE_ROWS: dict[str, list[tuple[str, int, int, int]]] = {
    "train": [("1_left.jpg", 1, 0, 0), ("1_right.jpg", 1, 0, 0), ("2_left.jpg", 0, 1, 0),
              ("3_right.jpg", 0, 0, 1), ("4_left.jpg", 1, 1, 0)],
    "val": [("5_left.jpg", 1, 0, 0), ("6_right.jpg", 0, 1, 1)],
    "offsite_test": [("7_left.jpg", 0, 0, 1), ("8_right.jpg", 1, 0, 0)],
    "onsite_test": [("9_right.jpg", 0, 0, 0), ("9_left.jpg", 0, 0, 0), ("10_left.jpg", 0, 0, 0)],
}  # fmt: skip
COURSE_FILES = {"train": "train.csv", "val": "val.csv", "offsite_test": "offsite_test.csv",
                "onsite_test": "onsite_test_submission.csv"}  # fmt: skip


def write_image(path: Path, size: int = 8, value: int = 128) -> Path:
    """Write a tiny RGB image (format from the suffix); a ``_XX.tif`` mask is single-channel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff"):
        Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    else:
        Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def write_course(root: Path, rows: dict[str, list[tuple]] | None = None) -> Path:
    """The ``odir-course`` layout with ``rows`` per split (default :data:`COURSE_ROWS`)."""
    rows = COURSE_ROWS if rows is None else rows
    for split, items in rows.items():
        frame = pd.DataFrame(items, columns=["id", "D", "G", "A"])
        frame.to_csv(root / COURSE_FILES[split], index=False)
        for item in items:
            write_image(root / "images" / split / item[0])
    return root


def write_odir5k(root: Path, n_patients: int = 12) -> Path:
    """Per-eye ``labels.csv`` + ``images/`` with keywords rotating over a few diseases."""
    keywords = [
        "normal fundus",
        "moderate non proliferative retinopathy",
        "cataract",
        "pathological myopia",
        "normal fundus，lens dust",
        "mild nonproliferative retinopathy",
    ]
    from funduslab.data.adapters.odir5k import labels_from_keywords

    rows = []
    for p in range(n_patients):
        for j, eye in enumerate(("left", "right")):
            kw = keywords[(p + j) % len(keywords)]
            labels = {k: v for k, v in labels_from_keywords(kw).items() if k != "O"}
            rows.append({"id": f"{p}_{eye}.jpg", "patient_id": p, "eye": eye, "age": 50,
                         "sex": "Male", **labels, "keywords": kw})  # fmt: skip
            write_image(root / "images" / f"{p}_{eye}.jpg")
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def write_deepdrid(root: Path, patients: Sequence[int] = (1, 2, 3)) -> Path:
    """DeepDRiD training set: 4 images per patient, left level = p % 5, right level = (p+1) % 5."""
    stem = "regular-fundus-training"
    rows = []
    for p in patients:
        for shot in ("l1", "l2", "r1", "r2"):
            image_id = f"{p}_{shot}"
            left = shot.startswith("l")
            rows.append({"patient_id": p, "image_id": image_id,
                         "image_path": f"\\{stem}\\Images\\{p}\\{image_id}.jpg",
                         "left_eye_DR_Level": p % 5 if left else "",
                         "right_eye_DR_Level": "" if left else (p + 1) % 5,
                         "patient_DR_Level": max(p % 5, (p + 1) % 5),
                         "Overall quality": 1})  # fmt: skip
            write_image(root / stem / "Images" / str(p) / f"{image_id}.jpg")
    (root / stem).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / stem / f"{stem}.csv", index=False)
    return root


def write_aptos(root: Path, n: int = 20, n_test: int = 3) -> Path:
    """APTOS: ``train.csv`` with grades ``i % 5`` and an unlabelled ``test.csv``."""
    ids = [f"a{i:03d}" for i in range(n)]
    train = pd.DataFrame({"id_code": ids, "diagnosis": [i % 5 for i in range(n)]})
    train.to_csv(root / "train.csv", index=False)
    for i in ids:
        write_image(root / "train_images" / f"{i}.png")
    test_ids = [f"t{i:03d}" for i in range(n_test)]
    pd.DataFrame({"id_code": test_ids}).to_csv(root / "test.csv", index=False)
    for i in test_ids:
        write_image(root / "test_images" / f"{i}.png")
    return root


def write_rfmid(root: Path, n: int = 4) -> Path:
    """RFMiD: three sets numbered from 1, columns ID, Disease_Risk, DR, ARMD, MH."""
    sets = {"Training_Set": ("RFMiD_Training_Labels.csv", "Training"),
            "Evaluation_Set": ("RFMiD_Validation_Labels.csv", "Validation"),
            "Test_Set": ("RFMiD_Testing_Labels.csv", "Test")}  # fmt: skip
    for folder, (csv_name, image_dir) in sets.items():
        rows = [{"ID": i, "DR": i % 2, "ARMD": int(i == 2), "MH": 0} for i in range(1, n + 1)]
        frame = pd.DataFrame(rows)
        frame.insert(1, "Disease_Risk", frame[["DR", "ARMD", "MH"]].max(axis=1))
        (root / folder).mkdir(parents=True, exist_ok=True)
        frame.to_csv(root / folder / csv_name, index=False)
        for i in range(1, n + 1):
            write_image(root / folder / image_dir / f"{i}.png")
    return root


IDRID_FOLDERS = {"MA": "1. Microaneurysms", "HE": "2. Haemorrhages", "EX": "3. Hard Exudates",
                 "SE": "4. Soft Exudates", "OD": "5. Optic Disc"}  # fmt: skip


def write_idrid(root: Path, masks: dict[str, Sequence[str]] | None = None) -> Path:
    """IDRiD: 3 training + 1 testing images; ``masks`` maps image id → lesion codes present."""
    masks = masks or {"IDRiD_01": ["MA", "HE", "OD"], "IDRiD_02": ["EX", "OD"], "IDRiD_03": [],
                      "IDRiD_55": ["SE"]}  # fmt: skip
    seg = root / "A. Segmentation"
    for image_id, codes in masks.items():
        set_name = "b. Testing Set" if image_id == "IDRiD_55" else "a. Training Set"
        write_image(seg / "1. Original Images" / set_name / f"{image_id}.jpg")
        for code in codes:
            folder = seg / "2. All Segmentation Groundtruths" / set_name / IDRID_FOLDERS[code]
            write_image(folder / f"{image_id}_{code}.tif", value=255)
    return root


def write_generic(root: Path, n_patients: int = 10) -> Path:
    """``my.csv`` (id, D, G, A; ids ``<p>_<eye>`` without extension) + ``images/`` PNGs."""
    rows = []
    for p in range(n_patients):
        for eye in ("left", "right"):
            labels = {"D": p % 2, "G": int(p % 3 == 0), "A": int(p % 4 == 1)}
            rows.append({"id": f"{p}_{eye}", **labels})
            write_image(root / "images" / f"{p}_{eye}.png")
    pd.DataFrame(rows).to_csv(root / "my.csv", index=False)
    return root


@pytest.fixture
def make_layout() -> Callable[..., Path]:
    """``make_layout(name, root, **kw)`` writes the named tiny layout under ``root``."""
    writers = {"odir_course": write_course, "odir5k": write_odir5k, "deepdrid": write_deepdrid,
               "aptos": write_aptos, "rfmid": write_rfmid, "idrid": write_idrid,
               "generic_csv": write_generic}  # fmt: skip

    def make(name: str, root: Path, **kw: object) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        return writers[name](root, **kw)

    return make


@pytest.fixture
def image_writer() -> Callable[..., Path]:
    """:func:`write_image`, for tests that build odd layouts by hand."""
    return write_image


@pytest.fixture
def course_root(tmp_path: Path) -> Path:
    """A tiny course folder under ``tmp_path/course``."""
    root = tmp_path / "course"
    root.mkdir()
    return write_course(root)
