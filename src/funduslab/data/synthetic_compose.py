"""Compositing and camera simulation for the synthetic fundus generator.

Images are planar float32 ``(3, H, W)`` RGB in grey levels (0–255) while being composed, so every
operation runs on contiguous planes. Layers (uint8 alpha maps from
:class:`funduslab.data.synthetic_anatomy.Canvas`) are blended only inside their bounding box.
The camera model is deliberately simple: multiplicative illumination (gain × vignetting × linear
ramp) with a soft FOV edge, per-channel colour cast, an additive rim flare, Gaussian blur and
Gaussian sensor noise (drawn as bytes mapped through a normal quantile table, which is several
times faster than ``Generator.standard_normal`` and indistinguishable at 8 bits).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TYPE_CHECKING

import cv2
import numpy as np

from funduslab.data.synthetic_anatomy import Canvas, Frame

if TYPE_CHECKING:
    from funduslab.data.synthetic import CameraSpec

__all__ = [
    "apply_camera",
    "darken_spot",
    "fov_mask",
    "layer_alpha",
    "paint",
    "radius_map",
    "smooth_noise",
    "tint",
]

RGB = tuple[float, float, float]
_NORMAL_TABLE = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)


def radius_map(frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets x ``(1, W)``, y ``(H, 1)`` from the FOV centre and radius ``(H, W)``, FOV radii."""
    ax = (np.arange(frame.size, dtype=np.float32) - np.float32(frame.centre[0])) / frame.radius_px
    ay = (np.arange(frame.size, dtype=np.float32) - np.float32(frame.centre[1])) / frame.radius_px
    x, y = ax[None, :], ay[:, None]
    return x, y, np.sqrt(x * x + y * y)


def smooth_noise(
    rng: np.random.Generator, size: int, octaves: tuple[tuple[int, float], ...]
) -> np.ndarray:
    """Smooth noise ``(size, size)`` float32: a sum of ``amplitude × upsampled cells × cells``
    Gaussian grids (size-free draws), built at ≤ 64 px and upsampled once."""
    work = min(size, 64)
    acc = np.zeros((work, work), np.float32)
    for cells, amp in octaves:
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        acc += cv2.resize(grid, (work, work), interpolation=cv2.INTER_CUBIC) * np.float32(amp)
    return acc if work == size else cv2.resize(acc, (size, size), interpolation=cv2.INTER_LINEAR)


def tint(img: np.ndarray, alpha: np.ndarray, factor: RGB) -> None:
    """Darken planar ``img`` toward ``img * factor`` by ``alpha`` (0–1), in place."""
    for c in range(3):
        m = alpha * np.float32(factor[c] - 1.0)
        m += 1.0
        img[c] *= m


def paint(img: np.ndarray, alpha: np.ndarray, colour: RGB) -> None:
    """Blend planar ``img`` toward ``colour`` by ``alpha`` (0–1), in place."""
    for c in range(3):
        d = np.float32(colour[c]) - img[c]
        d *= alpha
        img[c] += d


def layer_alpha(
    canvas: Canvas, name: str, blur: float = 0.0, gain: float = 1.0
) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """Layer ``name`` as float alpha (0–``gain``) cropped to its bounding box, blurred.

    Args:
        blur: Gaussian sigma in FOV radii.

    Returns:
        ``(alpha (h, w), (rows, cols))`` or ``None`` when the layer is absent or empty.
    """
    layer = canvas.layers.get(name)
    if layer is None:
        return None
    x, y, w, h = cv2.boundingRect(layer)
    if w == 0 or h == 0:
        return None
    sigma = float(canvas.frame.px(blur))
    pad = int(math.ceil(3 * sigma)) + 1 if sigma >= 0.3 else 0
    n = canvas.frame.size
    rows = slice(max(0, y - pad), min(n, y + h + pad))
    cols = slice(max(0, x - pad), min(n, x + w + pad))
    a = layer[rows, cols].astype(np.float32)
    a *= np.float32(gain / 255.0)
    if pad:
        a = cv2.GaussianBlur(a, (0, 0), sigma)
    return a, (rows, cols)


def darken_spot(
    img: np.ndarray, frame: Frame, centre: np.ndarray, sigma: float, amp: float, factor: RGB
) -> None:
    """Darken a Gaussian spot (``sigma`` FOV radii, peak ``amp``) toward ``img * factor``."""
    cx, cy = frame.to_px(centre)
    s = float(frame.px(sigma))
    r = int(3 * s) + 1
    x0, x1 = max(0, int(cx) - r), min(frame.size, int(cx) + r + 1)
    y0, y1 = max(0, int(cy) - r), min(frame.size, int(cy) + r + 1)
    if x0 >= x1 or y0 >= y1:
        return
    gx = np.exp(-((np.arange(x0, x1, dtype=np.float32) - cx) ** 2) / (2 * s * s))
    gy = np.exp(-((np.arange(y0, y1, dtype=np.float32) - cy) ** 2) / (2 * s * s))
    tint(img[:, y0:y1, x0:x1], (amp * gy[:, None] * gx[None, :]).astype(np.float32), factor)


def fov_mask(frame: Frame, fov_clip: float) -> np.ndarray:
    """Bool ``(H, W)``: inside the circular FOV and not cut off at top/bottom."""
    fov = radius_map(frame)[2] <= 1.0
    cut = int(round(fov_clip * frame.size))
    if cut > 0:
        fov[:cut] = False
        fov[frame.size - cut :] = False
    return fov


def apply_camera(
    img: np.ndarray, frame: Frame, cam: CameraSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Illumination, vignetting, colour cast, flare, FOV cut-out, blur, noise.

    Args:
        img: Planar float32 ``(3, H, W)`` RGB; modified in place.

    Returns:
        ``(H, W, 3)`` uint8 RGB image and the bool ``(H, W)`` FOV mask (see :func:`fov_mask`).
    """
    x, y, r = radius_map(frame)
    gx, gy = math.cos(cam.gradient_angle), math.sin(cam.gradient_angle)
    ramp = 1.0 + cam.gradient * (x * gx + y * gy)
    light = r * r
    light *= r
    light *= np.float32(-cam.vignetting)
    light += 1.0
    light *= ramp
    edge = (1.0 - r) * frame.radius_px + 0.5  # ~1 px anti-aliased rim
    np.clip(edge, 0.0, 1.0, out=edge)
    cut = int(round(cam.fov_clip * frame.size))
    if cut > 0:
        edge[:cut] = 0.0
        edge[frame.size - cut :] = 0.0
    light *= edge
    for c in range(3):
        img[c] *= light * np.float32(cam.gain * cam.colour_cast[c])
    if cam.flare > 0:
        fx, fy = math.cos(cam.flare_angle), math.sin(cam.flare_angle)
        glow = np.exp(-((x - fx) ** 2 + (y - fy) ** 2) / 0.08) * np.float32(cam.flare * 255.0)
        glow *= edge
        for c, k in enumerate((1.0, 0.95, 0.9)):
            img[c] += glow * np.float32(k)
    sigma = cam.blur_sigma * frame.size / 256.0
    if sigma >= 0.3:
        for c in range(3):
            img[c] = cv2.GaussianBlur(img[c], (0, 0), sigma)
    if cam.noise_sigma > 0:
        n = frame.size
        raw = np.frombuffer(rng.bytes(n * n), np.uint8).reshape(n, n)
        noise = cv2.LUT(raw, _NORMAL_TABLE * np.float32(cam.noise_sigma))
        # transposed / flipped copies serve as spatially unrelated noise for the other channels
        for c, plane in enumerate((noise, noise.T, noise[::-1, ::-1])):
            img[c] += plane * edge
    img += 0.5
    np.clip(img, 0.0, 255.0, out=img)
    fov = fov_mask(frame, cam.fov_clip)
    rgb = cv2.merge([img[0].astype(np.uint8), img[1].astype(np.uint8), img[2].astype(np.uint8)])
    return rgb, fov
