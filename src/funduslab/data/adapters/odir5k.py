"""Adapter for ODIR-5K (Ocular Disease Intelligent Recognition, Peking University, 2019).

Reads either the per-eye ``labels.csv`` (``id, patient_id, eye, age, sex, D, G, A, C, H, M, N,
dr_grade, keywords`` + ``images/``) or the per-patient annotation sheet of the original release
(``ID, Patient Age, Patient Sex, Left-Fundus, Right-Fundus, Left-Diagnostic Keywords,
Right-Diagnostic Keywords, N, D, G, C, A, H, M, O``; ``.csv``, or ``.xlsx`` when ``openpyxl`` is
installed). The original sheet labels the *patient*; per-eye labels come from each eye's
diagnostic keywords by :func:`labels_from_keywords`, the rule that reproduces every row of the
per-eye ``labels.csv``:

- keywords are separated by ``,`` or the full-width ``，``; case, spaces and the spelling
  ``non proliferative``/``non-proliferative`` are normalised; a leading ``suspected`` counts
  as the finding itself (``suspected glaucoma`` → G);
- D: any diabetic-retinopathy keyword; ``dr_grade`` = the highest stage named (mild 1, moderate 2,
  severe non-proliferative 3, proliferative 4), −1 when only ``diabetic retinopathy`` without a
  stage is given, 0 without DR;
- G: glaucoma; A: dry/wet age-related macular degeneration only (drusen alone is *not* A);
  C: cataract; H: hypertensive retinopathy; M: pathological myopia;
- N: ``normal fundus`` and nothing but image-quality remarks (lens dust, low image quality …);
- O: any other finding (epiretinal membrane, drusen, laser spots …).

Splits are drawn by patient with :func:`funduslab.data.splits.patient_split`. The ``pair`` column
is the patient id, so a dual-image model (``model.dual``) sees each eye with its fellow eye: DR
is mostly bilateral (on ``odir5k-source`` the two eyes' grades agree with quadratic κ ≈ 0.67).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from funduslab.data.adapters import ADAPTERS, layout_sign
from funduslab.data.adapters._csv import (
    first_line,
    ImageFolder,
    check_unique_ids,
    parse_labels,
    read_csv,
    require_columns,
)
from funduslab.data.splits import patient_split, sort_by_split
from funduslab.data.table import SampleTable

__all__ = ["ODIR_LABELS", "SHEET_COLUMNS", "labels_from_keywords", "load_odir5k", "split_keywords"]

log = logging.getLogger(__name__)

ODIR_LABELS: tuple[str, ...] = ("N", "D", "G", "C", "A", "H", "M", "O")
SHEET_COLUMNS: tuple[str, ...] = (
    "ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus",
    "Left-Diagnostic Keywords", "Right-Diagnostic Keywords",
)  # fmt: skip
_DR_STAGES: dict[str, int] = {
    "mild nonproliferative retinopathy": 1,
    "mild nonproliferative diabetic retinopathy": 1,
    "moderate nonproliferative retinopathy": 2,
    "moderate nonproliferative diabetic retinopathy": 2,
    "severe nonproliferative retinopathy": 3,
    "severe nonproliferative diabetic retinopathy": 3,
    "proliferative retinopathy": 4,
    "proliferative diabetic retinopathy": 4,
    "severe proliferative diabetic retinopathy": 4,
}
_DR_UNSTAGED = {"diabetic retinopathy", "nonproliferative retinopathy"}
_DISEASES: dict[str, set[str]] = {
    "G": {"glaucoma"},
    "A": {"dry age-related macular degeneration", "wet age-related macular degeneration",
          "age-related macular degeneration"},
    "C": {"cataract"},
    "H": {"hypertensive retinopathy"},
    "M": {"pathological myopia"},
}  # fmt: skip
_NORMAL = "normal fundus"
_QUALITY_REMARKS = {
    "lens dust", "low image quality", "image offset", "no fundus image",
    "optic disk photographically invisible", "anterior segment image",
}  # fmt: skip


def split_keywords(keywords: str) -> list[str]:
    """Normalised keywords of one eye (lower case, single spaces, ``nonproliferative``)."""
    out = []
    for part in re.split(r"[，,;；]", str(keywords)):
        word = re.sub(r"\s+", " ", part.strip().lower())
        word = re.sub(r"\bnon[\s-]+proliferative", "nonproliferative", word)
        if word:
            out.append(word)
    return out


def labels_from_keywords(keywords: str) -> dict[str, int]:
    """Per-eye ODIR labels from one eye's diagnostic keywords.

    Args:
        keywords: The eye's keywords, e.g. ``"moderate non proliferative retinopathy，cataract"``.

    Returns:
        ``{"N", "D", "G", "C", "A", "H", "M", "O": 0/1, "dr_grade": -1..4}``.
    """
    words = [re.sub(r"^suspected\s+", "", w) for w in split_keywords(keywords)]
    out = dict.fromkeys(ODIR_LABELS, 0)
    stages = [_DR_STAGES[w] for w in words if w in _DR_STAGES]
    unstaged = any(w in _DR_UNSTAGED for w in words)
    out["D"] = int(bool(stages) or unstaged)
    out["dr_grade"] = max(stages) if stages else (-1 if unstaged else 0)
    known = set(_DR_STAGES) | _DR_UNSTAGED | {_NORMAL} | _QUALITY_REMARKS
    for label, names in _DISEASES.items():
        out[label] = int(any(w in names for w in words))
        known |= names
    out["O"] = int(any(w not in known for w in words))
    findings = [w for w in words if w not in _QUALITY_REMARKS and w != _NORMAL]
    out["N"] = int(_NORMAL in words and not findings)
    return out


def _find_annotations(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / "labels.csv").is_file():
        return root / "labels.csv"
    for pattern in ("*.csv", "*.xlsx"):
        for path in sorted(root.glob(pattern)):
            if path.suffix == ".xlsx":
                return path
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                if "Left-Diagnostic Keywords" in fh.readline():
                    return path
    raise FileNotFoundError(
        f"no ODIR-5K annotations in {root}: expected labels.csv (per-eye) or the per-patient "
        "sheet (.csv/.xlsx with 'Left-Diagnostic Keywords'); pass annotations=<file>"
    )


def _read_sheet(path: Path) -> pd.DataFrame:
    """The per-patient sheet as string cells (xlsx needs openpyxl)."""
    if path.suffix.lower() in (".xlsx", ".xls"):
        if importlib.util.find_spec("openpyxl") is None:
            raise ValueError(
                f"{path} is an Excel file and openpyxl is not installed; install openpyxl or "
                "export the sheet to CSV and pass annotations=<file.csv>"
            )
        frame = pd.read_excel(path, dtype=str).fillna("")
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame.apply(lambda col: col.str.strip())
    return read_csv(path, what="ODIR-5K annotation sheet")


def _per_eye_from_sheet(sheet: pd.DataFrame, path: Path) -> pd.DataFrame:
    require_columns(sheet, SHEET_COLUMNS, path)
    rows = []
    for sheet_row, (_, rec) in enumerate(sheet.iterrows()):
        for eye, side in (("left", "Left"), ("right", "Right")):
            labels = labels_from_keywords(rec[f"{side}-Diagnostic Keywords"])
            rows.append(
                {
                    "id": rec[f"{side}-Fundus"],
                    "sheet_row": sheet_row,
                    "sheet_column": f"{side}-Fundus",
                    "patient": str(rec["ID"]),
                    "eye": eye,
                    "age": rec["Patient Age"],
                    "sex": rec["Patient Sex"],
                    "keywords": rec[f"{side}-Diagnostic Keywords"],
                    **labels,
                }
            )
    return pd.DataFrame(rows)


def _per_eye_from_labels_csv(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    require_columns(raw, ["id", "patient_id", "eye", "keywords"], path)
    derived = pd.DataFrame([labels_from_keywords(k) for k in raw["keywords"]], index=raw.index)
    given = [c for c in ODIR_LABELS if c in raw.columns]
    out = raw.rename(columns={"patient_id": "patient"}).copy()
    out[given] = parse_labels(raw, given, path)
    out["dr_grade"] = (
        parse_labels(raw, ["dr_grade"], path, num_values=5, allowed_extra=(-1,))["dr_grade"]
        if "dr_grade" in raw.columns
        else derived["dr_grade"]
    )
    for col in [c for c in ODIR_LABELS if c not in given]:
        out[col] = derived[col]
    return out


@layout_sign("odir5k", "labels.csv with a keywords column, or the ODIR-5K annotation sheet")
def _looks_like_odir5k(root: Path) -> bool:
    if root.is_file():
        return "Left-Diagnostic Keywords" in first_line(root) or root.suffix.lower() == ".xlsx"
    return root.is_dir() and (
        "keywords" in first_line(root / "labels.csv")
        or any("Left-Diagnostic Keywords" in first_line(p) for p in root.glob("*.csv"))
        or any(root.glob("*.xlsx")))


@ADAPTERS.register("odir5k")
def load_odir5k(
    root: Path,
    *,
    labels: Sequence[str] = ODIR_LABELS,
    task: str = "multilabel",
    annotations: str | Path | None = None,
    images: str | Path = "images",
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
) -> SampleTable:
    """Read ODIR-5K per eye and split it by patient.

    Args:
        root: Dataset folder (or the annotation file itself).
        labels: Label columns for ``task="multilabel"`` (any of ``N D G C A H M O``; e.g.
            ``("D", "G", "A")`` for the course's three diseases).
        task: ``"multilabel"`` or ``"grading"`` (label ``dr_grade`` 0–4; rows with unknown
            grade −1 are dropped and logged).
        annotations: Annotation file (default: ``labels.csv`` or the sheet found in ``root``).
        images: Image folder, relative to ``root`` (or the annotation file's folder).
        fractions: Split fractions by patient (default train/val/test 0.7/0.15/0.15).
        seed: Split seed.

    Raises:
        ValueError: unknown label/task, bad annotation columns or values, duplicate ids.
        FileNotFoundError: annotations, image folder or an image missing.
    """
    root = Path(root)
    base = root.parent if root.is_file() else root
    path = _annotation_path(root, base, annotations)
    _check_task_and_labels(task, labels)
    eyes, is_sheet = _read_eyes(path)
    _add_image_paths(eyes, ImageFolder(base / images, what="ODIR-5K image folder"), path, is_sheet)
    eyes["patient"] = eyes["patient"].astype(str)
    if "age" in eyes.columns:
        eyes["age"] = pd.to_numeric(eyes["age"], errors="coerce")
    eyes["labelled"] = True
    label_names = ["dr_grade"] if task == "grading" else list(labels)
    if task == "grading":
        eyes = _drop_unstaged(eyes)
    eyes["split"] = patient_split(
        eyes, label_names, fractions, seed, grading=task == "grading", num_grades=5
    )
    eyes["pair"] = eyes["patient"]  # both eyes of a patient: partners for model.dual
    first = ["id", "path", "patient", "eye", "split", "labelled", *label_names]
    frame = sort_by_split(eyes[first + [c for c in eyes.columns if c not in first]], fractions)
    return SampleTable(
        frame=frame,
        label_names=label_names,
        task="grading" if task == "grading" else "multilabel",
        num_grades=5 if task == "grading" else 0,
        source=f"odir5k:{path}",
        submission_columns=[],
    )


def _annotation_path(root: Path, base: Path, annotations: str | Path | None) -> Path:
    """The annotation file: ``annotations`` (relative to ``base`` unless it exists) or found."""
    path = Path(annotations) if annotations is not None else _find_annotations(root)
    if not path.is_absolute() and not path.exists():
        path = base / path
    return path


def _check_task_and_labels(task: str, labels: Sequence[str]) -> None:
    if task not in ("multilabel", "grading"):
        raise ValueError(f"task must be 'multilabel' or 'grading', got {task!r}")
    unknown = [lab for lab in labels if lab not in ODIR_LABELS]
    if unknown:
        raise ValueError(f"unknown ODIR-5K label(s) {unknown}; valid: {list(ODIR_LABELS)}")


def _read_eyes(path: Path) -> tuple[pd.DataFrame, bool]:
    """One row per eye from either annotation format, and whether it was the per-patient sheet."""
    raw = _read_sheet(path)
    if raw.empty:
        raise ValueError(f"{path}: no data rows (only a header); add one row per eye or patient")
    is_sheet = "Left-Diagnostic Keywords" in raw.columns
    eyes = _per_eye_from_sheet(raw, path) if is_sheet else _per_eye_from_labels_csv(raw, path)
    check_unique_ids(eyes["id"], path, "id" if not is_sheet else "Left-/Right-Fundus")
    return eyes, is_sheet


def _add_image_paths(eyes: pd.DataFrame, folder: ImageFolder, path: Path, is_sheet: bool) -> None:
    """Resolve each eye's image into column ``path``; drops the sheet's row/column bookkeeping."""
    if is_sheet:  # errors point at the sheet's row and Left-/Right-Fundus column
        eyes["path"] = folder.resolve(eyes["id"], path, eyes.pop("sheet_column").tolist(),
                                      eyes.pop("sheet_row").tolist())  # fmt: skip
    else:
        eyes["path"] = folder.resolve(eyes["id"], path)


def _drop_unstaged(eyes: pd.DataFrame) -> pd.DataFrame:
    """Eyes without a DR stage (``dr_grade`` -1) cannot be graded; drop them and say how many."""
    unknown_grade = eyes["dr_grade"] < 0
    if unknown_grade.any():
        log.info("dropping %d eye(s) with unstaged DR (dr_grade -1)", int(unknown_grade.sum()))
        eyes = eyes.loc[~unknown_grade].reset_index(drop=True)
    return eyes
