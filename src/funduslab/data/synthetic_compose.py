"""Compositing and camera simulation for the synthetic fundus generator.

:func:`composite_fundus` lays the retina, macula, choroid, disc, vessels and findings back to
front. Images are planar float32 ``(3, H, W)`` RGB in grey levels (0–255) while being composed, so
every operation runs on contiguous planes. Layers (uint8 alpha maps from
:class:`funduslab.data.synthetic_anatomy.Canvas`) are blended only inside their bounding box.
The camera model is deliberately simple: multiplicative illumination (gain × vignetting × linear
ramp) with a soft FOV edge, per-channel colour cast, an additive rim flare, Gaussian blur and
Gaussian sensor noise (drawn as bytes mapped through a normal quantile table, which is several
times faster than ``Generator.standard_normal`` and indistinguishable at 8 bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import cv2
import numpy as np

from funduslab.data.synthetic_anatomy import Anatomy, Canvas, Frame, draw_disc

if TYPE_CHECKING:
    from funduslab.data.synthetic import CameraSpec

__all__ = [
    "RetinaShading",
    "apply_camera",
    "composite_fundus",
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
# (layer, blur in FOV radii, alpha gain, colour): bright findings painted toward a colour
_UNDER_DISC = (("atrophy", 0.01, 0.85, (228.0, 190.0, 145.0)),)
_OVER_DISC = (("drusen", 0.008, 0.85, (242.0, 212.0, 120.0)),)
_BRIGHT_LESIONS = (
    ("exudate", 0.003, 1.0, (252.0, 236.0, 140.0)),
    ("cotton", 0.02, 1.4, (234.0, 222.0, 196.0)),
)
# (layer, blur in FOV radii, alpha gain, factor): dark layers tinted toward ``img * factor``
_DARK_LAYERS = (
    ("pigment", 0.004, 1.0, (0.35, 0.3, 0.3)),
    ("vein", 0.003, 0.9, (0.58, 0.3, 0.36)),
    ("artery", 0.003, 0.8, (0.8, 0.52, 0.55)),
    ("nv", 0.0, 0.8, (0.55, 0.25, 0.3)),
    ("red", 0.004, 1.0, (0.45, 0.16, 0.2)),
)
_NARROW_ARTERY = (0.88, 0.66, 0.58)  # hypertensive arterioles: paler, less contrast


@dataclass(frozen=True)
class RetinaShading:
    """The eye's own draws that shade the retina; every finding is a layer of the canvas.

    Attributes:
        base: Retina colour before mottling, RGB grey levels.
        mottle: ``(H, W)`` float32 choroidal mottling factor around 1.
        macula_sigma: Width of the macular darkening, FOV radii.
        macula_amp: Peak of the macular darkening (0–1).
        tessellation: Choroidal tessellation strength (0 = none).
        haze: Cataract veil strength (0 = clear media).
    """

    base: RGB
    mottle: np.ndarray
    macula_sigma: float
    macula_amp: float
    tessellation: float
    haze: float


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


def composite_fundus(
    canvas: Canvas, anat: Anatomy, shading: RetinaShading, hypertensive: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Composite the retina, disc, vessels and findings back to front, before the camera.

    Returns:
        Planar float32 ``(3, H, W)`` RGB and the masks drawn with the disc (``OD``, ``cup``).
    """
    frame = canvas.frame
    img = np.stack([shading.mottle * np.float32(b) for b in shading.base])
    sigma, amp = shading.macula_sigma, shading.macula_amp
    darken_spot(img, frame, anat.macula, sigma, amp, (0.5, 0.42, 0.5))  # macula
    darken_spot(img, frame, anat.macula, 0.03, 0.45, (0.55, 0.45, 0.55))  # fovea
    _shade_choroid(img, canvas, shading.tessellation)
    _paint_layers(img, canvas, _UNDER_DISC)
    masks: dict[str, np.ndarray] = {}
    draw_disc(img, frame, anat, masks)
    _paint_layers(img, canvas, _OVER_DISC)
    for name, blur, gain, factor in _DARK_LAYERS:
        got = layer_alpha(canvas, name, blur, gain)
        if got is not None:
            a, (rows, cols) = got
            if hypertensive and name == "artery":
                factor = _NARROW_ARTERY
            tint(img[:, rows, cols], a, factor)
    _paint_layers(img, canvas, _BRIGHT_LESIONS)
    if shading.haze > 0:
        _cataract_veil(img, frame, shading.haze)
    return img, masks


def _shade_choroid(img: np.ndarray, canvas: Canvas, tessellation: float) -> None:
    """Darken the interstitial spaces between the broad orange choroidal vessels."""
    got = layer_alpha(canvas, "choroid", 0.02)
    if got is not None:
        a, (rows, cols) = got
        inv = np.full((canvas.frame.size, canvas.frame.size), np.float32(tessellation))
        inv[rows, cols] *= 1.0 - a
        tint(img, inv, (0.58, 0.47, 0.52))


def _cataract_veil(img: np.ndarray, frame: Frame, haze: float) -> None:
    """Cataract: blur the image and lay a yellow-white veil of strength ``haze`` over it."""
    sigma = float(frame.px(0.02 + 0.03 * haze))
    for c in range(3):
        img[c] = cv2.GaussianBlur(img[c], (0, 0), sigma)
    paint(img, np.full((frame.size, frame.size), np.float32(haze)), (205.0, 175.0, 135.0))


def _paint_layers(
    img: np.ndarray, canvas: Canvas, styles: tuple[tuple[str, float, float, RGB], ...]
) -> None:
    """Blend each bright layer of ``styles`` toward its colour, in place."""
    for name, blur, gain, colour in styles:
        got = layer_alpha(canvas, name, blur, gain)
        if got is not None:
            a, (rows, cols) = got
            if gain > 1.0:
                np.minimum(a, 1.0, out=a)
            paint(img[:, rows, cols], a, colour)
