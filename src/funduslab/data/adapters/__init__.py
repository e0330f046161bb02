"""Dataset adapters: each turns one on-disk layout (see ``docs/layouts.md``) into a SampleTable.

An adapter is a function ``(root: Path, **options) -> SampleTable`` registered in
:data:`ADAPTERS` under its layout name, in its own module of this package; a module beside it
that is not private (``_csv.py``) is imported, and so registered, by this package. An adapter
whose layout can be recognised from its files also registers a :func:`layout_sign`, which
``--adapter auto`` (:func:`detect_layout`) tries. Adapters read CSVs and check that images exist;
they never decode images, so loading a table of thousands of images takes well under a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funduslab.data.table import SampleTable
from funduslab.registry import Registry, import_modules_of

__all__ = ["ADAPTERS", "Adapter", "LayoutSign", "detect_layout", "layout_sign", "load_table"]

log = logging.getLogger(__name__)

Adapter = Callable[..., SampleTable]
ADAPTERS: Registry[Adapter] = Registry("dataset adapter")


@dataclass(frozen=True)
class LayoutSign:
    """How :func:`detect_layout` recognises a layout: a test on the root and its description."""

    adapter: str
    looks_like: str
    test: Callable[[Path], bool]


#: Every registered sign, in registration order (a layout may have several).
SIGNS: list[LayoutSign] = []


def layout_sign(adapter: str, looks_like: str) -> Callable[[Callable[[Path], bool]],
                                                           Callable[[Path], bool]]:
    """Register ``test(root) -> bool`` as a sign of ``adapter``'s layout (a dataset folder).

    Args:
        adapter: The adapter's registry name.
        looks_like: What the test looks for, for the error when nothing matches
            (``"train.csv + train_images/"``).
    """
    def decorator(test: Callable[[Path], bool]) -> Callable[[Path], bool]:
        SIGNS.append(LayoutSign(adapter, looks_like, test))
        return test
    return decorator


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


def detect_layout(root: Path | str) -> str:
    """Guess the adapter name from the files present under ``root``.

    A folder is tried against every registered :func:`layout_sign`; a lone CSV file (or a folder
    holding exactly one) falls back to ``generic_csv``.

    Raises:
        ValueError: if no known layout matches; the message lists what was looked for.
    """
    root = Path(root)
    for sign in SIGNS:
        if sign.test(root):
            log.info("detected layout %s at %s", sign.adapter, root)
            return sign.adapter
    if root.is_file() and root.suffix.lower() == ".csv":
        return "generic_csv"
    if root.is_dir() and len(list(root.glob("*.csv"))) == 1:
        return "generic_csv"
    expected = ", ".join(f"{s.looks_like} ({s.adapter})" for s in SIGNS)
    raise ValueError(f"cannot tell the dataset layout of {root}: expected {expected}; pass the "
                     "adapter name explicitly (generic_csv for your own CSV)")


# Registration: importing every public module of this package registers its adapter and signs
# (kept last: they import ADAPTERS and layout_sign from here).
import_modules_of(__name__, __path__)
