"""Carry masks and points through a preprocessing pipeline, so they stay on the pixels they mark.

Only two steps move pixels: ``circle_crop`` (crop to the field of view, pad to a square, black
out the corners) and ``resize`` (pad to a square, scale). Every other registered step changes
values, not places. :func:`preprocess_with_masks` runs the pipeline on the image exactly as the
image cache does (:func:`funduslab.data.cache.decode_preprocessed`, a test checks it) and applies
each geometric step's crop, pad and scale to the masks and, as a :class:`Placement`, to points.
Masks are carried as coverage and kept where any part of a model pixel is covered, so a lesion
smaller than a pixel of the model's input (a microaneurysm at 64 px) does not vanish.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from funduslab.preprocess.ops import _disc_mask, find_fov
from funduslab.preprocess.pipeline import Pipeline
from funduslab.preprocess.registry import PREPROCESS

__all__ = ["GEOMETRIC_STEPS", "Placement", "preprocess_with_masks"]

GEOMETRIC_STEPS = ("circle_crop", "resize")


@dataclass(frozen=True)
class Placement:
    """Where an input pixel lands: ``x' = sx·x + dx``, ``y' = sy·y + dy``.

    Coordinates are (column, row) with pixel centres at integers, as in ``cv2`` and the
    generator's landmarks.
    """

    sx: float = 1.0
    sy: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def then(self, after: Placement) -> Placement:
        """This placement followed by ``after``."""
        return Placement(after.sx * self.sx, after.sy * self.sy,
                         after.sx * self.dx + after.dx, after.sy * self.dy + after.dy)

    def point(self, x: float, y: float) -> tuple[float, float]:
        """Map one point ``(x, y)``."""
        return self.sx * x + self.dx, self.sy * y + self.dy


def _pad_square(cover: np.ndarray, oy: int, ox: int, side: int) -> np.ndarray:
    out = np.zeros((cover.shape[0], side, side), np.float32)
    out[:, oy:oy + cover.shape[1], ox:ox + cover.shape[2]] = cover
    return out


def _circle_crop(rgb: np.ndarray, cover: np.ndarray, threshold: float = 10.0,
                 mask_outside: bool = True) -> tuple[np.ndarray, Placement]:
    """The crop, pad and corner blackout of :func:`~funduslab.preprocess.ops.circle_crop`."""
    fov = find_fov(rgb, threshold)
    if fov is None:  # the step leaves the image as it is
        return cover, Placement()
    x0, y0, x1, y1 = fov.bbox
    h, w = y1 - y0, x1 - x0
    side = max(h, w)
    oy, ox = (side - h) // 2, (side - w) // 2
    out = _pad_square(cover[:, y0:y1, x0:x1], oy, ox, side)
    if mask_outside:
        out *= _disc_mask((side, side), side / 2.0, side / 2.0, side / 2.0)[None]
    return out, Placement(dx=float(ox - x0), dy=float(oy - y0))


def _resize(rgb: np.ndarray, cover: np.ndarray, size: int = 224,
            pad_to_square: bool = True) -> tuple[np.ndarray, Placement]:
    """The pad and scale of :func:`~funduslab.preprocess.ops.resize`; coverage by area."""
    h, w = rgb.shape[:2]
    place = Placement()
    if pad_to_square and h != w:
        side = max(h, w)
        oy, ox = (side - h) // 2, (side - w) // 2
        cover, h, w = _pad_square(cover, oy, ox, side), side, side
        place = Placement(dx=float(ox), dy=float(oy))
    if (h, w) == (size, size):
        return cover, place
    # INTER_AREA averages coverage when shrinking; growing keeps each pixel's own value
    how = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_NEAREST
    out = np.zeros((len(cover), size, size), np.float32)
    for i, c in enumerate(cover):
        out[i] = cv2.resize(c, (size, size), interpolation=how)
    sx, sy = size / w, size / h  # pixel centres: x' = (x + 0.5)·sx − 0.5
    return out, place.then(Placement(sx, sy, 0.5 * sx - 0.5, 0.5 * sy - 0.5))


_MOVES = {"circle_crop": _circle_crop, "resize": _resize}


def preprocess_with_masks(
    rgb: np.ndarray, masks: np.ndarray, pipeline: Pipeline, size: int
) -> tuple[np.ndarray, np.ndarray, Placement]:
    """Preprocess an image as for training and move its masks with it.

    Args:
        rgb: ``(H, W, 3)`` uint8, the image as read from disk.
        masks: ``(N, H, W)`` bool, on the pixels of ``rgb``.
        pipeline: The run's pipeline (:func:`~funduslab.preprocess.build_pipeline`).
        size: The model's input side; a pipeline ending elsewhere is resized to it, as the image
            cache does.

    Returns:
        ``(image, masks, placement)``: ``(size, size, 3)`` uint8, ``(N, size, size)`` bool (a
        pixel is in a mask when any part of it was) and the map of input points to output points.

    Raises:
        ValueError: masks not ``(N, H, W)`` of the image's size, or a non-geometric step that
            changes the image size (masks cannot follow it).
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != rgb.shape[:2]:
        raise ValueError(f"masks must be (N, H, W) with (H, W) = {rgb.shape[:2]} of the image, "
                         f"got {masks.shape}")
    cover = masks.astype(np.float32)
    place = Placement()
    steps = [(s["name"], {k: v for k, v in s.items() if k != "name"}) for s in pipeline.spec()]
    # the image cache resizes a pipeline's output that is not size × size; a no-op otherwise
    steps.append(("resize", {"size": size}))
    img = rgb
    for name, params in steps:
        move = _MOVES.get(name)
        if move is not None:
            cover, step_place = move(img, cover, **params)
            place = place.then(step_place)
        out = PREPROCESS.get(name)(img, **params)
        if move is None and out.shape[:2] != img.shape[:2]:
            raise ValueError(f"preprocessing step {name!r} changes the image size from "
                             f"{img.shape[:2]} to {out.shape[:2]}; masks can only follow "
                             f"{list(GEOMETRIC_STEPS)}")
        img = out
    return img, cover > 1e-6, place
