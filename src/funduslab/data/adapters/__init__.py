"""Dataset adapters: each turns one on-disk layout (see ``docs/layouts.md``) into a SampleTable.

An adapter is a function ``(root: Path, **options) -> SampleTable`` registered in
:data:`ADAPTERS` under its layout name. Adapters read CSVs and check that images exist; they never
decode images, so loading a table of thousands of images takes well under a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from funduslab.data.table import SampleTable
from funduslab.registry import Registry

__all__ = ["ADAPTERS", "Adapter", "detect_layout", "load_table"]

log = logging.getLogger(__name__)

Adapter = Callable[..., SampleTable]
ADAPTERS: Registry[Adapter] = Registry("dataset adapter")


def load_table(adapter: str, root: Path | str, **options: Any) -> SampleTable:
    """Load a dataset with the named adapter.

    Args:
        adapter: Adapter name (``odir_course``; the layout spelling ``odir-course`` works too),
            or ``"auto"`` to guess it with :func:`detect_layout`.
        root: Dataset root folder (``generic_csv`` also accepts the CSV file itself).
        **options: Adapter-specific options (see each adapter's docstring).

    Raises:
        ValueError: unknown adapter name (the message lists the valid ones).
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    name = detect_layout(root) if adapter == "auto" else adapter.replace("-", "_")
    return ADAPTERS.get(name)(root, **options)


def _header(path: Path) -> str:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            return fh.readline()
    except OSError:
        return ""


def detect_layout(root: Path | str) -> str:
    """Guess the adapter name from the files present under ``root``.

    Raises:
        ValueError: if no known layout matches; the message lists what was looked for.
    """
    root = Path(root)
    if root.is_file():
        if "Left-Diagnostic Keywords" in _header(root) or root.suffix.lower() == ".xlsx":
            return "odir5k"
        if root.suffix.lower() == ".csv":
            return "generic_csv"
    checks: list[tuple[str, Callable[[Path], bool]]] = [
        ("odir_course", lambda r: (r / "train.csv").is_file() and (r / "images/train").is_dir()),
        ("deepdrid", lambda r: (r / "regular-fundus-training").is_dir()),
        ("aptos", lambda r: (r / "train.csv").is_file() and (r / "train_images").is_dir()),
        ("rfmid", lambda r: (r / "Training_Set").is_dir()),
        ("idrid", lambda r: (r / "A. Segmentation").is_dir()),
        ("odir5k", lambda r: "keywords" in _header(r / "labels.csv")),
        (
            "odir5k",
            lambda r: any("Left-Diagnostic Keywords" in _header(p) for p in r.glob("*.csv"))
            or any(r.glob("*.xlsx")),
        ),
    ]
    for name, test in checks:
        if root.is_dir() and test(root):
            log.info("detected layout %s at %s", name, root)
            return name
    if root.is_dir() and len(list(root.glob("*.csv"))) == 1:
        return "generic_csv"
    raise ValueError(
        f"cannot tell the dataset layout of {root}: expected train.csv + images/train "
        "(odir_course), regular-fundus-training/ (deepdrid), train.csv + train_images/ (aptos), "
        "Training_Set/ (rfmid), 'A. Segmentation/' (idrid), labels.csv with a keywords column "
        "or the ODIR-5K annotation sheet (odir5k); pass the adapter name explicitly "
        "(generic_csv for your own CSV)"
    )


# Registration: importing the modules registers their adapters (kept last: they import ADAPTERS).
from funduslab.data.adapters import (  # noqa: E402, F401
    aptos,
    deepdrid,
    generic_csv,
    idrid,
    odir5k,
    odir_course,
    patches,
    rfmid,
)
