"""Write a lesion patch set (PNG patches + ``patches.csv``) from an IDRiD-style dataset, atomically.

The folder written::

    <out>/patches.csv        id, path, source_id, patient, x, y, MA, HE, EX, SE, split, fov_fraction
    <out>/patches/<id>.png   size × size RGB patches
    <out>/manifest.json      options, seed, counts per split and lesion

Splits follow the **source image**, so no photograph contributes patches to two splits: the
dataset's ``test`` images stay ``test``; its ``train`` images are split into ``train``/``val``
(patient-level stratified split, :func:`funduslab.data.splits.patient_split`). Rebalancing is
applied to the ``train`` split only; ``val``/``test`` keep every extracted patch so that their
metrics describe the data as extracted. The folder is built beside ``out`` and renamed into
place, so a reader never sees half a patch set and a failed run leaves the old one intact.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from funduslab.data.imageio import read_mask, read_rgb
from funduslab.data.patches import LESIONS, PatchOptions, extract_image_patches
from funduslab.data.patches_rebalance import REBALANCERS, rebalance
from funduslab.data.splits import patient_split
from funduslab.data.table import SampleTable

__all__ = [
    "PATCHES_CSV", "assign_image_splits", "check_lesion_masks", "patch_counts", "write_patch_set",
]

log = logging.getLogger(__name__)

PATCHES_CSV = "patches.csv"
_MASK_HINT = ("'A. Segmentation/2. All Segmentation Groundtruths/<set>/1. Microaneurysms/"
              "<image>_MA.tif' (and Haemorrhages, Hard Exudates, Soft Exudates)")


def check_lesion_masks(table: SampleTable, root: Path | str) -> None:
    """Raise when a split has no lesion mask at all (the ground-truth folder is missing).

    Raises:
        ValueError: the table has no ``mask_<lesion>`` columns (not an IDRiD-style table).
        FileNotFoundError: a split whose images have no mask file of any lesion.
    """
    cols = [f"mask_{k}" for k in LESIONS]
    missing = [c for c in cols if c not in table.frame.columns]
    if missing:
        raise ValueError(f"{root}: the table lacks mask columns {missing}; patches need an "
                         "IDRiD-style dataset with per-lesion masks (adapter 'idrid')")
    for split in table.splits:
        rows = table.split(split)
        if not (rows[cols] != "").to_numpy().any():
            raise FileNotFoundError(
                f"{root}: no lesion masks found for the {split!r} images; expected {_MASK_HINT}")


def assign_image_splits(table: SampleTable, val_fraction: float = 0.2,
                        seed: int = 0) -> pd.Series:
    """Split of each source image: ``test`` stays ``test``; ``train`` → ``train``/``val``.

    Returns:
        Split name per table row (index like ``table.frame``).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    frame = table.frame
    out = frame["split"].astype(str).copy()
    train = frame[frame["split"] == "train"]
    if val_fraction > 0 and train["patient"].nunique() >= 2:
        fractions = {"train": 1.0 - val_fraction, "val": val_fraction}
        out.loc[train.index] = patient_split(train, list(table.label_names), fractions, seed)
    return out


def _masks_of(row: pd.Series) -> dict[str, np.ndarray]:
    return {k: read_mask(row[f"mask_{k}"]) for k in LESIONS if row.get(f"mask_{k}", "")}


def _prepare_out(out: Path) -> Path:
    """Check ``out`` may be (re)placed; return the temporary build folder beside it."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file; pass a folder for the patch set")
    if out.is_dir() and any(out.iterdir()) and not (out / PATCHES_CSV).is_file():
        raise ValueError(f"output folder {out} is not empty and holds no {PATCHES_CSV}; "
                         "refusing to replace it — choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "patches").mkdir(parents=True)
    return tmp


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def write_patch_set(
    table: SampleTable, out: Path | str, options: PatchOptions, *, rebalance_name: str = "none",
    rebalance_options: Mapping[str, Any] | None = None, seed: int = 0, val_fraction: float = 0.2,
    root: Path | str = "", progress: Callable[[int, int], None] | None = None,
    png_compression: int = 1,
) -> pd.DataFrame:
    """Extract, label, split, rebalance and write a patch set.

    Args:
        table: IDRiD-style table (``load_table("idrid", root)``) with ``mask_<lesion>`` columns.
        out: Destination folder (replaced atomically when it already holds a patch set).
        options: Extraction options; ``options.size`` becomes the training ``image_size``.
        rebalance_name: Strategy in :data:`~funduslab.data.patches_rebalance.REBALANCERS`,
            applied to the ``train`` split.
        rebalance_options: Strategy options (``healthy_ratio``, ``cap``).
        seed: Seed of centre sampling, the train/val split and rebalancing.
        val_fraction: Fraction of the ``train`` images moved to ``val``.
        root: Dataset root, for messages.
        progress: ``callback(done, total)`` after each image.
        png_compression: OpenCV PNG compression level 0–9.

    Returns:
        The ``patches.csv`` frame.

    Raises:
        FileNotFoundError: a split without lesion masks, or a missing image/mask file.
        ValueError: patch larger than an image, mask/image size mismatch, bad options or output.
    """
    out = Path(out)
    check_lesion_masks(table, root or table.source)
    rebalance_options = dict(rebalance_options or {})
    REBALANCERS.get(rebalance_name)  # fail before any work on a typo
    splits = assign_image_splits(table, val_fraction, seed)
    tmp = _prepare_out(out)
    try:
        frame = _extract_all(table, splits, options, tmp, seed, progress, png_compression)
        frame = _rebalance_train(frame, tmp, rebalance_name, rebalance_options, seed)
        frame.to_csv(tmp / PATCHES_CSV, index=False, lineterminator="\n")
        manifest = {
            "source": table.source, "seed": seed, "val_fraction": val_fraction,
            "options": {k: (dict(v) if isinstance(v, Mapping) else v)
                        for k, v in asdict(options).items()},
            "rebalance": {"name": rebalance_name, **rebalance_options},
            "counts": patch_counts(frame),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d patches to %s", len(frame), out)
    return frame


def _extract_all(table: SampleTable, splits: pd.Series, options: PatchOptions, tmp: Path,
                 seed: int, progress: Callable[[int, int], None] | None,
                 png_compression: int) -> pd.DataFrame:
    size, parts = options.size, []
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
    n = len(table.frame)
    for i, (index, row) in enumerate(table.frame.iterrows()):
        rgb = read_rgb(row["path"])
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9A7C, i]))
        found = extract_image_patches(rgb, _masks_of(row), options, rng, str(row["id"]))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ids = [f"{row['id']}_y{y:05d}_x{x:05d}" for y, x in found.origins.tolist()]
        for pid, (y, x) in zip(ids, found.origins.tolist()):
            ok, buf = cv2.imencode(".png", bgr[y:y + size, x:x + size], params)
            if not ok:  # pragma: no cover - OpenCV failure
                raise ValueError(f"OpenCV could not encode patch {pid} as PNG")
            (tmp / "patches" / f"{pid}.png").write_bytes(buf.tobytes())
        part = pd.DataFrame({
            "id": ids, "path": [f"patches/{p}.png" for p in ids],
            "source_id": str(row["id"]), "patient": str(row["patient"]),
            "x": found.origins[:, 1], "y": found.origins[:, 0],
        })
        for c, name in enumerate(LESIONS):
            part[name] = found.labels[:, c]
        part["split"] = splits.loc[index]
        part["fov_fraction"] = np.round(found.fov_fraction, 4)
        parts.append(part)
        if progress is not None:
            progress(i + 1, n)
    columns = ["id", "path", "source_id", "patient", "x", "y", *LESIONS, "split", "fov_fraction"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _rebalance_train(frame: pd.DataFrame, tmp: Path, name: str, options: Mapping[str, Any],
                     seed: int) -> pd.DataFrame:
    is_train = (frame["split"] == "train").to_numpy()
    train_idx = np.flatnonzero(is_train)
    keep = train_idx[rebalance(frame.loc[is_train, list(LESIONS)].to_numpy(), name, seed,
                               **options)]
    mask = ~is_train
    mask[keep] = True
    for path in frame.loc[~mask, "path"]:
        (tmp / path).unlink()
    return frame.loc[mask].reset_index(drop=True)


def patch_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{split: {"patches", "healthy", MA, HE, EX, SE, "images"}}`` positive-patch counts."""
    counts = {}
    for split, rows in frame.groupby("split", sort=False):
        labels = rows[list(LESIONS)].to_numpy()
        counts[str(split)] = {
            "patches": int(len(rows)), "images": int(rows["source_id"].nunique()),
            "healthy": int((labels.sum(axis=1) == 0).sum()),
            **{k: int(labels[:, c].sum()) for c, k in enumerate(LESIONS)},
        }
    return counts
