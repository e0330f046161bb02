"""Lesion patches: cut fundus photographs with per-lesion masks into labelled square patches.

Patch-level training is how lesion detectors are usually built from pixel-annotated sets such as
IDRiD (Porwal et al., *Data* 3(3):25, 2018): a whole 4288×2848 photograph is far too large for a
CNN at full resolution, while a microaneurysm is ~10 px across, so the image is cut into patches
whose label says which lesions they contain (e.g. van Grinsven et al., *IEEE TMI* 35(5), 2016,
sample patches around lesions and rebalance them against healthy background).

Geometry (all in pixels, ``(y, x)`` = top-left corner of a ``size × size`` patch):

* ``grid`` — origins ``0, stride, 2·stride, …`` up to ``H - size`` (and ``W - size``); no
  padding, so a 1024-px side with 128-px patches and stride 128 gives 8 rows.
* ``lesion_centred`` — for each lesion type, up to ``centres_per_lesion`` centres sampled (seeded)
  on the mask's connected components (their centroids; ``centre_on="pixel"``: on lesion pixels),
  shifted by a uniform jitter of ±``jitter·size``; plus ``background_per_image`` uniformly random
  origins (healthy candidates). Origins are clipped into the image and de-duplicated.

A patch is positive for a lesion when the lesion mask covers ≥ ``min_pixels`` of its pixels
(counts come from integral images, so any number of patches costs O(1) each). Patches whose
field-of-view fraction (pixels with max channel > ``fov_threshold``) is below
``min_fov_fraction`` are dropped: the black corners around the fundus circle carry no retina.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "LESIONS",
    "ImagePatches",
    "PatchOptions",
    "extract_image_patches",
    "fov_mask",
    "grid_origins",
    "lesion_centred_origins",
    "window_counts",
]

#: Lesion label columns in model-output order (IDRiD: microaneurysms, haemorrhages, hard and
#: soft exudates).
LESIONS: tuple[str, ...] = ("MA", "HE", "EX", "SE")


@dataclass(frozen=True)
class PatchOptions:
    """How patches are cut and labelled.

    Args:
        size: Patch side in px.
        mode: ``"grid"`` or ``"lesion_centred"`` (see the module docstring).
        stride: Grid step in px (default ``size``: non-overlapping).
        min_pixels: Mask pixels a patch must contain to be positive for a lesion; one int for
            all lesions or ``{"MA": 2, "HE": 20, …}`` (missing lesions use 1).
        min_fov_fraction: Patches with a smaller fraction of field-of-view pixels are dropped.
        fov_threshold: Grey level (0–255) of the brightest channel above which a pixel is in the
            field of view.
        centres_per_lesion: ``lesion_centred``: at most this many centres per lesion type and
            image.
        centre_on: ``"component"`` (connected-component centroids) or ``"pixel"``.
        jitter: ``lesion_centred``: centre shift, uniform in ±``jitter × size`` px per axis.
        background_per_image: ``lesion_centred``: random origins added per image.
    """

    size: int = 128
    mode: Literal["grid", "lesion_centred"] = "grid"
    stride: int | None = None
    min_pixels: int | Mapping[str, int] = 1
    min_fov_fraction: float = 0.5
    fov_threshold: int = 20
    centres_per_lesion: int = 10
    centre_on: Literal["component", "pixel"] = "component"
    jitter: float = 0.25
    background_per_image: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) \
                or self.size < 4:
            raise ValueError(f"patch size must be an integer ≥ 4 px, got {self.size!r}")
        if self.mode not in ("grid", "lesion_centred"):
            raise ValueError(f"patch mode must be 'grid' or 'lesion_centred', got {self.mode!r}")
        if self.stride is not None and (not isinstance(self.stride, (int, np.integer))
                                        or self.stride < 1):
            raise ValueError(f"stride must be a positive integer (px), got {self.stride!r}")
        for name, value in self.min_pixels_by_lesion().items():
            if value < 1:
                raise ValueError(f"min_pixels for {name} must be ≥ 1 mask pixel, got {value}")
        if not 0.0 <= self.min_fov_fraction <= 1.0:
            raise ValueError(f"min_fov_fraction must be in [0, 1], got {self.min_fov_fraction}")
        if self.centre_on not in ("component", "pixel"):
            raise ValueError(f"centre_on must be 'component' or 'pixel', got {self.centre_on!r}")
        if self.centres_per_lesion < 0 or self.background_per_image < 0 or self.jitter < 0:
            raise ValueError("centres_per_lesion, background_per_image and jitter must be ≥ 0")

    @property
    def step(self) -> int:
        """Grid stride in px."""
        return int(self.stride or self.size)

    def min_pixels_by_lesion(self) -> dict[str, int]:
        """``{lesion: min_pixels}`` for every lesion in :data:`LESIONS`."""
        if isinstance(self.min_pixels, Mapping):
            unknown = set(self.min_pixels) - set(LESIONS)
            if unknown:
                raise ValueError(f"min_pixels names unknown lesion(s) {sorted(unknown)}; "
                                 f"valid: {', '.join(LESIONS)}")
            return {k: int(self.min_pixels.get(k, 1)) for k in LESIONS}
        return {k: int(self.min_pixels) for k in LESIONS}


@dataclass
class ImagePatches:
    """Patches of one image (geometry and labels; pixels are cut by the writer).

    Attributes:
        origins: ``(N, 2)`` int64 top-left corners ``(y, x)`` in px, sorted row-major.
        labels: ``(N, 4)`` int64 multi-hot ``[MA, HE, EX, SE]``.
        fov_fraction: ``(N,)`` float64 fraction of field-of-view pixels.
    """

    origins: np.ndarray
    labels: np.ndarray
    fov_fraction: np.ndarray


def fov_mask(rgb: np.ndarray, threshold: int = 20) -> np.ndarray:
    """Field of view: pixels whose brightest channel exceeds ``threshold``.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        threshold: Grey level 0–255.

    Returns:
        ``(H, W)`` bool.
    """
    return np.asarray(rgb).max(axis=2) > threshold


def grid_origins(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """Top-left corners of a regular grid of ``size`` px patches inside an ``H × W`` image.

    Returns:
        ``(rows · cols, 2)`` int64 ``(y, x)``, row-major; rows = ``(H - size) // stride + 1``.
    """
    ys = np.arange(0, height - size + 1, stride, dtype=np.int64)
    xs = np.arange(0, width - size + 1, stride, dtype=np.int64)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def window_counts(mask: np.ndarray, origins: np.ndarray, size: int) -> np.ndarray:
    """Number of set pixels of ``mask`` in each ``size × size`` window.

    Args:
        mask: ``(H, W)`` bool or 0/1.
        origins: ``(N, 2)`` ``(y, x)`` corners with ``y + size ≤ H`` and ``x + size ≤ W``.
        size: Window side in px.

    Returns:
        ``(N,)`` int64 counts (from one integral image, O(1) per window).
    """
    integral = cv2.integral(np.ascontiguousarray(mask, dtype=np.uint8), sdepth=cv2.CV_32S)
    y, x = origins[:, 0], origins[:, 1]
    return (integral[y + size, x + size] - integral[y, x + size]
            - integral[y + size, x] + integral[y, x]).astype(np.int64)


def _clip_origins(centres: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """``(N, 2)`` float centres ``(y, x)`` → integer origins kept inside the image."""
    origins = np.rint(centres - size / 2.0).astype(np.int64)
    origins[:, 0] = np.clip(origins[:, 0], 0, height - size)
    origins[:, 1] = np.clip(origins[:, 1], 0, width - size)
    return origins


def lesion_centred_origins(
    masks: Mapping[str, np.ndarray], shape: tuple[int, int], options: PatchOptions,
    rng: np.random.Generator,
) -> np.ndarray:
    """Origins of patches centred on lesions, plus random background origins.

    Draws happen in a fixed order (lesions in :data:`LESIONS` order, then background), all from
    ``rng``, so the same seed gives the same patches.

    Args:
        masks: ``{lesion: (H, W) bool}``; absent lesions may be missing.
        shape: ``(H, W)`` of the image.
        options: Patch options (size, centres_per_lesion, centre_on, jitter,
            background_per_image).
        rng: Seeded generator.

    Returns:
        ``(N, 2)`` int64 ``(y, x)`` origins (not yet de-duplicated or FOV-filtered).
    """
    height, width = shape
    size, k = options.size, options.centres_per_lesion
    parts = [np.zeros((0, 2))]
    for name in LESIONS:
        mask = masks.get(name)
        if mask is None or k == 0 or not mask.any():
            continue
        if options.centre_on == "component":
            _, _, _, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
            points = centroids[1:, ::-1]  # drop background; (x, y) → (y, x)
        else:
            points = np.argwhere(mask).astype(np.float64)
        pick = rng.permutation(len(points))[:k]
        shift = rng.uniform(-options.jitter, options.jitter, (len(pick), 2)) * size
        parts.append(points[np.sort(pick)] + shift)
    if options.background_per_image:
        n = options.background_per_image
        parts.append(rng.uniform(0, 1, (n, 2)) * [height, width])
    return _clip_origins(np.concatenate(parts), height, width, size)


def extract_image_patches(
    rgb: np.ndarray, masks: Mapping[str, np.ndarray], options: PatchOptions,
    rng: np.random.Generator | None = None, image_id: str = "image",
) -> ImagePatches:
    """Patch origins and multi-hot labels of one image.

    Args:
        rgb: ``(H, W, 3)`` uint8 photograph.
        masks: ``{lesion: (H, W) bool}`` for the lesions present (missing = no lesion).
        options: Patch options.
        rng: Seeded generator (``lesion_centred`` only; default seed 0).
        image_id: Name used in error messages.

    Returns:
        :class:`ImagePatches`, FOV-filtered, de-duplicated and sorted row-major.

    Raises:
        ValueError: patch larger than the image, or a mask whose shape differs from the image.
    """
    height, width = rgb.shape[:2]
    size = options.size
    if size > height or size > width:
        raise ValueError(f"patch size {size} px is larger than image {image_id} "
                         f"({width}×{height} px); choose --size ≤ {min(height, width)}")
    for name, mask in masks.items():
        if mask.shape != (height, width):
            raise ValueError(f"{image_id}: {name} mask is {mask.shape[1]}×{mask.shape[0]} px but "
                             f"the image is {width}×{height} px; masks must match their image")
    if options.mode == "grid":
        origins = grid_origins(height, width, size, options.step)
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        origins = np.unique(lesion_centred_origins(masks, (height, width), options, rng), axis=0)
    fov = window_counts(fov_mask(rgb, options.fov_threshold), origins, size) / float(size * size)
    keep = fov >= options.min_fov_fraction
    origins, fov = origins[keep], fov[keep]
    thresholds = options.min_pixels_by_lesion()
    labels = np.zeros((len(origins), len(LESIONS)), dtype=np.int64)
    for c, name in enumerate(LESIONS):
        mask = masks.get(name)
        if mask is not None and len(origins):
            labels[:, c] = window_counts(mask, origins, size) >= thresholds[name]
    return ImagePatches(origins=origins, labels=labels, fov_fraction=fov)
