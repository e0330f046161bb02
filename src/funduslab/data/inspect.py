"""What ``funduslab data check`` says about each image: errors, and the odd ones that still decode.

Decoding is :func:`funduslab.data.imageio.read_rgb`'s job; this module adds the warnings a
silent decode would hide: an image smaller than the training resolution is upscaled (detail is
interpolated, not seen — a 10×10 thumbnail becomes a 256-px blur), and 16-bit input is scaled by
the fixed full-range rule (sensor data that uses 10–14 of the 16 bits comes out dark).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from funduslab.data.imageio import FULL_RANGE_16BIT, read_rgb

__all__ = ["ImageFinding", "inspect_images"]


@dataclass(frozen=True)
class ImageFinding:
    """One thing to tell the user about one image.

    Attributes:
        path: The image file.
        kind: ``"error"`` (does not decode), ``"small"`` (upscaled to the training resolution)
            or ``"high_bit_depth"`` (16-bit input, scaled by the fixed rule).
        message: One line that says what is wrong and by how much.
    """

    path: Path
    kind: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.kind == "error"


def _header(path: Path) -> tuple[int, int, bool]:
    """``(width, height, wider_than_8_bits)`` from the file header (no pixel decode)."""
    with Image.open(path) as im:
        raw = im.tile[0][3] if im.tile else ""
        raw = raw[0] if isinstance(raw, tuple) and raw and isinstance(raw[0], str) else raw
        wide = im.mode.startswith("I") or im.mode == "F" or ";16" in str(raw)
        return im.width, im.height, wide


def _largest_value(path: Path) -> float | None:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    return None if data is None else float(np.max(data))


def _warnings(path: Path, image_size: int) -> list[ImageFinding]:
    width, height, wide = _header(path)
    found = []
    if min(width, height) < image_size:
        factor = image_size / min(width, height)
        found.append(ImageFinding(path, "small", (
            f"{width}×{height} px, smaller than the training resolution {image_size} px: "
            f"upscaled {factor:.1f}× (detail is interpolated, not seen)")))
    if wide:
        top = _largest_value(path)
        bits = "" if not top else f" (≈{int(np.ceil(np.log2(top + 1)))}-bit data)"
        largest = "unknown" if top is None else f"{top:g}{bits}"
        found.append(ImageFinding(path, "high_bit_depth", (
            f"16-bit input, largest value {largest} of {FULL_RANGE_16BIT:g}: scaled by the fixed "
            "rule value × 255 / 65535 (docs: data/imageio.py); if it looks dark, rescale the "
            "whole dataset to 8 bits with one factor")))
    return found


def inspect_images(
    paths: Iterable[str | os.PathLike[str]],
    image_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[ImageFinding]:
    """Decode every image once; report the ones that fail and warn on the odd ones.

    Args:
        paths: Image files.
        image_size: The training resolution (px) the images will be resized to.
        progress: Optional ``callback(done, total)`` after each file.

    Returns:
        Findings in input order; errors and warnings alike (see :class:`ImageFinding`).
    """
    items = [Path(p) for p in paths]
    findings: list[ImageFinding] = []
    for done, path in enumerate(items, start=1):
        try:
            read_rgb(path)
        except (FileNotFoundError, PermissionError, ValueError) as err:
            findings.append(ImageFinding(path, "error", str(err)))
        else:
            findings.extend(_warnings(path, image_size))
        if progress is not None:
            progress(done, len(items))
    return findings
