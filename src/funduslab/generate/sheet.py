"""Contact sheet of real versus VAE-generated images, one pair of rows per class.

For each class (label vector) the sheet shows a row of real training images with exactly that
label vector (or, when there are none, images that carry all of its labels) and, under it, a row
of generated images of that class. Built with :func:`funduslab.data.contact_sheet.contact_sheet`
and written atomically as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funduslab.data.contact_sheet import contact_sheet
from funduslab.data.imageio import write_image_atomic

__all__ = ["real_vs_generated_sheet"]


def _real_rows(targets: np.ndarray, vector: np.ndarray) -> np.ndarray:
    exact = np.flatnonzero((targets == vector).all(axis=1))
    if len(exact) or not vector.any():
        return exact
    return np.flatnonzero((targets[:, vector > 0.5] > 0.5).all(axis=1))


def real_vs_generated_sheet(
    path: str | Path,
    real_images: np.ndarray,
    real_targets: np.ndarray,
    generated_images: np.ndarray,
    generated_targets: np.ndarray,
    classes: dict[str, np.ndarray],
    per_row: int = 8,
    tile: int | None = None,
) -> Path:
    """Write the real-vs-generated sheet.

    Args:
        path: Output PNG.
        real_images: ``(N, S, S, 3)`` uint8 real (preprocessed) images.
        real_targets: ``(N, K)`` their labels.
        generated_images: ``(M, S', S', 3)`` uint8 generated images.
        generated_targets: ``(M, K)`` their labels.
        classes: ``{class name: (K,) label vector}`` in row order.
        per_row: Images per row (the first ``per_row`` of each kind, in array order).
        tile: Tile side in px (default: the generated image size, at least 64).

    Returns:
        ``path``. Missing real images of a class leave blank tiles captioned ``no real``.
    """
    size = int(tile or max(64, generated_images.shape[1]))
    blank = np.zeros((size, size, 3), np.uint8)
    images: list[np.ndarray] = []
    captions: list[str] = []
    real_t = np.asarray(real_targets) > 0.5
    gen_t = np.asarray(generated_targets) > 0.5
    for name, vector in classes.items():
        v = np.asarray(vector) > 0.5
        for kind, pool in (("real", real_images), ("gen", generated_images)):
            if kind == "real":
                rows = _real_rows(real_t, v)
            else:
                rows = np.flatnonzero((gen_t == v).all(axis=1))
            rows = rows[:per_row]
            images += [np.asarray(pool[i]) for i in rows] + [blank] * (per_row - len(rows))
            captions += [f"{kind} {name}"] * len(rows) + [f"no {kind}"] * (per_row - len(rows))
    sheet = contact_sheet(images, captions, cols=per_row, tile=size)
    return write_image_atomic(Path(path), sheet)
