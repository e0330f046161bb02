"""A contact sheet: many images in a grid with a caption under each, for looking at data."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["contact_sheet"]


def contact_sheet(
    images: list[np.ndarray],
    captions: list[str],
    cols: int,
    tile: int | None = None,
    background: int = 32,
) -> np.ndarray:
    """Lay images out in a grid with a text strip under each.

    Args:
        images: ``(H, W, 3)`` uint8 images (any sizes; each is resized to ``tile``) or ``(H, W)``.
        captions: One caption per image (drawn with ``cv2.putText``; ASCII).
        cols: Images per row.
        tile: Side of each tile in px (default: the first image's height).
        background: Grey level of the sheet.

    Returns:
        ``(rows * (tile + strip), cols * tile, 3)`` uint8 image, same channel order as the input.

    Raises:
        ValueError: if the lists differ in length, are empty, or ``cols < 1``.
    """
    if len(images) != len(captions):
        raise ValueError(f"contact_sheet got {len(images)} images but {len(captions)} captions")
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if cols < 1:
        raise ValueError(f"contact_sheet cols must be >= 1, got {cols}")
    tile = int(tile or images[0].shape[0])
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.3, tile / 400.0)
    (_, text_h), base = cv2.getTextSize("Ag", font, scale, 1)
    strip = text_h + base + 6
    rows = -(-len(images) // cols)
    sheet = np.full((rows * (tile + strip), cols * tile, 3), background, np.uint8)
    for k, (im, cap) in enumerate(zip(images, captions)):
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        if im.shape[:2] != (tile, tile):
            im = cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        y, x = r * (tile + strip), c * tile
        sheet[y : y + tile, x : x + tile] = im[..., :3]
        cv2.putText(sheet, cap, (x + 4, y + tile + 3 + text_h), font, scale, (235, 235, 235), 1,
                    cv2.LINE_AA)
    return sheet
