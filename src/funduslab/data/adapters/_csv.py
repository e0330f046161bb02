"""Shared helpers for the dataset adapters: read CSVs, validate labels, resolve image paths.

Every check raises an error that names the file, the row (1-based data row and the line in the
file, the header being line 1), the column and the offending value, plus what to do about it, so
a user with a hand-made CSV can fix it without reading a stack trace. Nothing here decodes an
image: paths are resolved from one directory listing per folder (existence checks only).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "check_unique_ids",
    "eye_from_id",
    "first_line",
    "parse_labels",
    "patient_from_id",
    "read_csv",
    "require_columns",
    "row_ref",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
_EYE_PATTERN = re.compile(r"^(?P<patient>.+?)_(?P<eye>left|right)(?:\.[A-Za-z0-9]+)?$", re.I)


def first_line(path: Path) -> str:
    """The first line of a text file (BOM dropped), or ``""`` when it cannot be read."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            return fh.readline()
    except OSError:
        return ""


def row_ref(row: int) -> str:
    """Human reference of a 0-based data row: ``"row 3 (line 4)"`` (header is line 1)."""
    return f"row {row + 1} (line {row + 2})"


def read_csv(path: Path, what: str = "CSV file") -> pd.DataFrame:
    """Read a CSV with every cell as a stripped string (no NaN guessing).

    Args:
        path: CSV file.
        what: What the file is, for the error message (``"DeepDRiD label file"``).

    Returns:
        The frame, columns stripped of surrounding spaces, cells as ``str`` ("" where empty).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it cannot be parsed or has no header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}; check the dataset root and layout")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what} {path} is empty; it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot parse {what} {path}: {err}") from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    return frame.apply(lambda col: col.str.strip()) if len(frame.columns) else frame


def require_columns(frame: pd.DataFrame, columns: Iterable[str], path: Path | str) -> None:
    """Raise ``ValueError`` naming the file and the missing columns if any is absent."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; columns present: {list(frame.columns)}. "
            "Rename the columns or choose the right adapter/options."
        )


def parse_labels(
    frame: pd.DataFrame,
    columns: Sequence[str],
    path: Path | str,
    *,
    num_values: int = 2,
    allowed_extra: Sequence[int] = (),
    missing_value: int | None = None,
) -> pd.DataFrame:
    """Convert label columns of strings to integers in ``0 … num_values-1``.

    Args:
        frame: Frame read by :func:`read_csv` (string cells).
        columns: Label columns to convert.
        path: Source file, for error messages.
        num_values: 2 for 0/1 labels, K for grades ``0 … K-1``.
        allowed_extra: Further accepted integers (``-1`` for "grade unknown").
        missing_value: If given, empty cells become this value instead of an error.

    Returns:
        Frame of the label columns as ``int64``, same index as ``frame``.

    Raises:
        ValueError: naming file, row, column and value of the first non-numeric, non-integer,
            empty or out-of-range cell.
    """
    require_columns(frame, columns, path)
    allowed = set(range(num_values)) | set(allowed_extra)
    kind = "0/1" if num_values == 2 else f"integer grades 0..{num_values - 1}"
    out = {}
    for col in columns:
        raw = frame[col].astype(str).str.strip()
        values = pd.to_numeric(raw.where(raw != ""), errors="coerce")
        ok = np.isin(values.to_numpy(dtype=float), sorted(allowed))
        if missing_value is not None:
            ok |= (raw == "").to_numpy()
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            text, value = raw.iloc[row], values.iloc[row]
            where = f"{path}: {row_ref(row)}, column {col!r}"
            if text == "":
                raise ValueError(f"{where}: empty label; every labelled row needs {kind}")
            if pd.isna(value) or not math.isfinite(value):
                raise ValueError(f"{where}: value {text!r} is not a number; labels must be {kind}")
            raise ValueError(f"{where}: value {text!r} is not a valid label; expected {kind}")
        filled = values.fillna(missing_value if missing_value is not None else 0)
        out[col] = filled.astype("int64")
    return pd.DataFrame(out, index=frame.index)


def check_unique_ids(ids: pd.Series, path: Path | str, column: str = "id") -> None:
    """Raise ``ValueError`` naming the first duplicated id and both rows where it appears."""
    dup = ids.duplicated(keep=False)
    if dup.any():
        first = ids[dup].iloc[0]
        rows = [i for i, v in enumerate(ids) if v == first]
        refs = " and ".join(row_ref(r) for r in rows[:3])
        raise ValueError(
            f"{path}: duplicate {column} {first!r} at {refs}; ids must be unique "
            f"({int(dup.sum())} rows share an id)"
        )


def patient_from_id(image_id: str) -> str:
    """Patient of a ``<patient>_<left|right>[.ext]`` id (``"913_right.jpg"`` → ``"913"``).

    Ids without the eye suffix are their own patient (``Path(id).stem``).
    """
    match = _EYE_PATTERN.match(image_id)
    return match["patient"] if match else Path(image_id).stem


def eye_from_id(image_id: str) -> str:
    """``"left"``/``"right"`` from a ``<patient>_<left|right>[.ext]`` id, else ``""``."""
    match = _EYE_PATTERN.match(image_id)
    return match["eye"].lower() if match else ""


class ImageFolder:
    """One image folder, listed once, resolving names with or without extension.

    Args:
        folder: Directory holding the images (recursion is not needed by any layout).
        what: Description for errors (``"train images"``).

    Raises:
        FileNotFoundError: if ``folder`` is not a directory.
    """

    def __init__(self, folder: Path, what: str = "image folder") -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{what} not found: {self.folder}; check the dataset root")
        with os.scandir(self.folder) as entries:
            names = [e.name for e in entries if not e.is_dir()]
        self._exact = set(names)
        self._lower: dict[str, str] = {n.lower(): n for n in names}
        self._by_stem: dict[str, str] = {}
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                self._by_stem.setdefault(stem, name)

    def find(self, name: str) -> Path | None:
        """Path of image ``name`` (exact, then case-insensitive, then any image extension)."""
        if name in self._exact:
            return self.folder / name
        if name.lower() in self._lower:
            return self.folder / self._lower[name.lower()]
        if Path(name).suffix.lower() not in IMAGE_EXTENSIONS and name in self._by_stem:
            return self.folder / self._by_stem[name]
        return None

    def resolve(
        self,
        names: Iterable[str],
        csv_path: Path | str,
        column: str | Sequence[str] = "id",
        rows: Sequence[int] | None = None,
    ) -> list[str]:
        """Absolute paths of ``names``; the first missing one raises.

        Args:
            names: Image names, one per CSV row.
            csv_path: The CSV they come from (for errors).
            column: Column holding the names, or one column name per name.
            rows: 0-based CSV row of each name (default: their position).

        Raises:
            FileNotFoundError: naming the CSV, its row and column, and the missing image path.
        """
        paths = []
        for i, name in enumerate(names):
            found = self.find(str(name))
            if found is None:
                tried = self.folder / str(name)
                hint = "" if Path(str(name)).suffix else f" (tried extensions {IMAGE_EXTENSIONS})"
                col = column if isinstance(column, str) else column[i]
                row = i if rows is None else rows[i]
                raise FileNotFoundError(
                    f"{csv_path}: {row_ref(row)}, column {col!r}: image not found: "
                    f"{tried}{hint}; fix the CSV or put the image there"
                )
            paths.append(str(found.resolve()))
        return paths
