"""Checking a heat map against where the finding really is: pointing game, energy, baselines.

A CAM is only useful if it points at the evidence. With lesion masks (``funduslab synth
--masks``, IDRiD) that can be measured per image and label:

* **Pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", ECCV
  2016): a *hit* when the map's maximum lies inside the mask grown by a tolerance. They allowed
  15 px at 224 px; :func:`default_tolerance_px` scales that to the image side (4 px at 64 px,
  17 px at 256 px). Tied maxima count in proportion (ties broken at random, in expectation); a
  flat map points nowhere (NaN).
* **Energy-based pointing game** (Wang et al., "Score-CAM", CVPR Workshops 2020): the share of the
  map's mass inside the mask (not grown). A uniform map scores the mask's area fraction, which is
  therefore the chance level to compare with.
* **Baselines** on the same images: a seeded random map (i.i.d. uniform per pixel: its hit rate is
  the grown mask's area fraction, its energy the mask's) and a centre-bias map, an isotropic
  Gaussian centred on the fovea when the data give its place (the synthetic generator's
  ``landmarks.csv``) and on the image centre otherwise. Most DR lesions and all drusen gather
  around the macula, so a CAM should beat the fovea Gaussian, not only the random map.

Maps are ``(H, W)`` float arrays ``≥ 0`` and masks ``(H, W)`` bool of the same size. Each
measure can be limited to a region (``within``): :mod:`funduslab.explain.score` passes the field
of view, as the panels do (the network sees black outside it, and a map's corner there, where a
coarse CAM upsampled bilinearly often peaks, says nothing about the retina). Chance levels are
then shares of the field of view (:func:`area_fraction`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "CENTRE_SIGMA",
    "area_fraction",
    "centre_bias_map",
    "default_tolerance_px",
    "energy_in_mask",
    "grow_mask",
    "peak_location",
    "pointing_game",
    "random_map",
]

#: centre-bias Gaussian sigma as a share of the image side (≈ a quarter of the FOV radius)
CENTRE_SIGMA = 0.125
_FLAT = 1e-6  # a map whose range is below this points nowhere


def _check(cam: np.ndarray, mask: np.ndarray, within: np.ndarray | None) -> np.ndarray:
    """Validate shapes; returns ``within`` as bool (all True when ``None``)."""
    if cam.ndim != 2 or cam.shape != mask.shape:
        raise ValueError(f"map {cam.shape} and mask {mask.shape} must be the same (H, W)")
    region = np.ones(cam.shape, bool) if within is None else np.asarray(within, bool)
    if region.shape != cam.shape:
        raise ValueError(f"region {region.shape} must be the map's (H, W) {cam.shape}")
    if not (mask.astype(bool) & region).any():
        raise ValueError("the mask is empty: there is nothing to point at")
    return region


def default_tolerance_px(side: int) -> int:
    """Pointing-game tolerance for an image of ``side`` px: 15 px at 224 px, at least 1 px."""
    return max(1, round(15 * side / 224))


def grow_mask(mask: np.ndarray, tolerance_px: int) -> np.ndarray:
    """``mask`` dilated by a disc of radius ``tolerance_px`` (pixels within that distance)."""
    if tolerance_px < 0:
        raise ValueError(f"tolerance_px must be ≥ 0, got {tolerance_px}")
    if tolerance_px == 0:
        return mask.astype(bool)
    k = 2 * int(tolerance_px) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return cv2.dilate(mask.astype(np.uint8), disc).astype(bool)


def _peaks(cam: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """Bool ``(H, W)`` of the map's (tied) maxima in ``region``; ``None`` for a flat map."""
    values = cam[region]
    top, low = float(values.max()), float(values.min())
    if not math.isfinite(top) or top - low <= _FLAT * max(1.0, abs(top)):
        return None
    return (cam >= top - _FLAT * max(1.0, abs(top))) & region


def pointing_game(cam: np.ndarray, mask: np.ndarray, tolerance_px: int,
                  within: np.ndarray | None = None) -> float:
    """1.0 when the map's maximum falls inside ``mask`` grown by ``tolerance_px``, else 0.0.

    Args:
        within: ``(H, W)`` bool region the maximum is looked for in (the field of view: the
            model sees black outside it); default the whole map.

    Returns:
        The share of tied maxima inside (0 or 1 for a single maximum); NaN for a flat map.

    Raises:
        ValueError: shapes differ or the mask is empty (in ``within``).
    """
    region = _check(cam, mask, within)
    peaks = _peaks(cam, region)
    if peaks is None:
        return float("nan")
    return float(grow_mask(mask, tolerance_px)[peaks].mean())


def energy_in_mask(cam: np.ndarray, mask: np.ndarray, within: np.ndarray | None = None) -> float:
    """Share of the map's mass (in ``within``, default everywhere) inside ``mask``; NaN for a map
    that is zero there.

    Raises:
        ValueError: shapes differ, the mask is empty or the map has negative values.
    """
    region = _check(cam, mask, within)
    if cam.min() < 0:
        raise ValueError(f"map values must be ≥ 0 (a CAM after ReLU), got min {cam.min():.3g}")
    total = float(cam.sum(where=region, dtype=np.float64))
    if total <= 0:
        return float("nan")
    inside = mask.astype(bool) & region
    return float(cam.sum(where=inside, dtype=np.float64)) / total


def area_fraction(mask: np.ndarray, within: np.ndarray | None = None) -> float:
    """Share of ``within`` (default the image) covered by ``mask``: a uniform map's energy."""
    region = np.ones(mask.shape, bool) if within is None else np.asarray(within, bool)
    return float((mask.astype(bool) & region).sum() / max(1, region.sum()))


def peak_location(cam: np.ndarray, within: np.ndarray | None = None) -> tuple[float, float]:
    """``(x, y)`` of the map's maximum in ``within`` (mean of tied maxima); the image centre for
    a flat map."""
    region = np.ones(cam.shape, bool) if within is None else np.asarray(within, bool)
    peaks = _peaks(cam, region)
    if peaks is None:
        return (cam.shape[1] - 1) / 2.0, (cam.shape[0] - 1) / 2.0
    ys, xs = np.nonzero(peaks)
    return float(xs.mean()), float(ys.mean())


def random_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` float32, i.i.d. uniform in [0, 1): the chance-level explanation."""
    return rng.random(shape, dtype=np.float32)


def centre_bias_map(shape: tuple[int, int], centre_xy: tuple[float, float],
                    sigma: float = CENTRE_SIGMA) -> np.ndarray:
    """``(H, W)`` float32 isotropic Gaussian in [0, 1] at ``centre_xy`` (column, row).

    Args:
        sigma: Standard deviation as a share of the image side (default :data:`CENTRE_SIGMA`).
    """
    h, w = shape
    s = sigma * max(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = (xx - centre_xy[0]) ** 2 + (yy - centre_xy[1]) ** 2
    return np.exp(-d2 / (2 * s * s)).astype(np.float32)
