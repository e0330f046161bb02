"""Drawing primitives and normal anatomy for the synthetic fundus generator.

Geometry lives in *retina units*: the field of view (FOV) has radius 1, ``u`` points right (nasal
for a right eye, whose disc sits right of centre) and ``v`` points down. :class:`Frame` maps retina
units to pixels (FOV centre, radius, a small rotation), so every random draw is independent of
image size and camera, and two photographs of one eye share their anatomy. Left eyes are drawn as
right eyes and mirrored at the end (:func:`funduslab.data.synthetic.render_fundus`).

Shapes are drawn with OpenCV onto uint8 *layers* (alpha 0–255, anti-aliased) and, for lesions,
onto binary *masks* with the same geometry; :mod:`funduslab.data.synthetic` composites the layers.
Images are planar float32 ``(3, H, W)`` RGB while being drawn. Vessels are generated level by
level as batches of smooth random walks (:class:`VesselSet`) so the tree costs a few NumPy calls.
Proportions follow common fundus anatomy: disc diameter (DD) ≈ 1.8 mm, fovea ≈ 2.5 DD temporal to
the disc and slightly below it, temporal arcades curving around the macula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "SHIFT",
    "Anatomy",
    "Canvas",
    "Frame",
    "VesselSet",
    "branch",
    "draw_disc",
    "draw_polylines",
    "sample_anatomy",
    "walk",
]

SHIFT = 4  # OpenCV fixed-point bits for sub-pixel drawing
_ONE = 1 << SHIFT


@dataclass(frozen=True)
class Frame:
    """Maps retina units to pixels for one image.

    Args:
        size: Image side in px.
        centre: FOV centre in px, ``(x, y)``.
        radius_px: FOV radius in px (one retina unit).
        rotation: Rotation of the anatomy about the FOV centre, radians.
    """

    size: int
    centre: tuple[float, float]
    radius_px: float
    rotation: float = 0.0

    def to_px(self, uv: np.ndarray) -> np.ndarray:
        """Retina units ``(..., 2)`` → pixel coordinates ``(..., 2)`` float."""
        c, s = math.cos(self.rotation) * self.radius_px, math.sin(self.rotation) * self.radius_px
        m = np.array([[c, s], [-s, c]])  # row vectors: [x, y] = [u, v] @ m
        return np.asarray(uv, dtype=np.float64) @ m + np.asarray(self.centre)

    def fixed(self, uv: np.ndarray) -> np.ndarray:
        """Retina units ``(..., 2)`` → OpenCV fixed-point int32 points ``(..., 2)``."""
        return np.rint(self.to_px(uv) * _ONE).astype(np.int32)

    def px(self, length: float | np.ndarray) -> float | np.ndarray:
        """A length in retina units → px."""
        return length * self.radius_px


@dataclass
class Canvas:
    """uint8 layers and masks (both ``(H, W)``), allocated on first use."""

    frame: Frame
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def layer(self, name: str) -> np.ndarray:
        """The uint8 alpha layer ``name`` (0 = transparent, 255 = opaque)."""
        if name not in self.layers:
            self.layers[name] = np.zeros((self.frame.size, self.frame.size), np.uint8)
        return self.layers[name]

    def mask(self, name: str) -> np.ndarray:
        """The uint8 0/1 mask ``name``."""
        if name not in self.masks:
            self.masks[name] = np.zeros((self.frame.size, self.frame.size), np.uint8)
        return self.masks[name]

    def ellipses(
        self,
        layer: str,
        mask: str | tuple[str, ...] | None,
        centres: np.ndarray,
        axes: np.ndarray,
        angles_deg: np.ndarray,
        alphas: np.ndarray,
    ) -> None:
        """Fill ellipses on a layer (anti-aliased) and, optionally, on one or more masks.

        Args:
            mask: Mask name(s) that also get the ellipses; a tuple marks one finding in a broad
                mask and a narrow one (flame haemorrhages are ``HE`` and ``FH``).
            centres: ``(N, 2)`` retina units.
            axes: ``(N, 2)`` semi-axes in retina units.
            angles_deg: ``(N,)`` ellipse rotation in degrees (before the frame rotation).
            alphas: ``(N,)`` layer values 0–255.
        """
        if len(centres) == 0:
            return
        img = self.layer(layer)
        names = (mask,) if isinstance(mask, str) else (mask or ())
        msks = [self.mask(name) for name in names]
        pts = self.frame.fixed(np.asarray(centres).reshape(-1, 2))
        ax = np.maximum(np.rint(self.frame.px(np.asarray(axes)) * _ONE), _ONE // 2).astype(int)
        ang = np.asarray(angles_deg) + math.degrees(self.frame.rotation)
        for (x, y), (a, b), t, al in zip(pts.tolist(), ax.tolist(), ang.tolist(), alphas.tolist()):
            cv2.ellipse(img, (x, y), (a, b), t, 0, 360, int(al), -1, cv2.LINE_AA, SHIFT)
            for msk in msks:
                cv2.ellipse(msk, (x, y), (a, b), t, 0, 360, 1, -1, cv2.LINE_8, SHIFT)


@dataclass
class VesselSet:
    """``K`` vessels of ``N`` segments each, in retina units.

    Attributes:
        points: ``(K, N + 1, 2)`` centre lines.
        headings: ``(K, N)`` segment directions, radians.
        widths: ``(K, N)`` segment widths.
        vein: ``(K,)`` bool, vein (True) or artery.
    """

    points: np.ndarray
    headings: np.ndarray
    widths: np.ndarray
    vein: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class Anatomy:
    """Normal anatomy of one eye in retina units (before any disease is drawn).

    ``vessels[0]`` holds the eight main vessels: (vein, artery) × (superior temporal,
    inferior temporal, superior nasal, inferior nasal).
    """

    disc: np.ndarray  # (2,) disc centre
    disc_radius: float  # horizontal semi-axis
    disc_aspect: float  # vertical / horizontal semi-axis
    macula: np.ndarray  # (2,) fovea centre
    cup_to_disc_ratio: float
    vessels: list[VesselSet]


def walk(
    rng: np.random.Generator,
    starts: np.ndarray,
    headings: np.ndarray,
    lengths: np.ndarray,
    curvature: np.ndarray | float,
    wiggle: float,
    steps: int,
    decay: float = 1e9,
) -> tuple[np.ndarray, np.ndarray]:
    """``K`` smooth random walks of ``steps`` segments each (vessel centre lines).

    Args:
        starts: ``(K, 2)`` start points, retina units.
        headings: ``(K,)`` initial directions, radians (0 = +u, π/2 = +v, i.e. down).
        lengths: ``(K,)`` path lengths, retina units.
        curvature: Turn rate, radians per retina unit, decaying as ``exp(-t / decay)``.
        wiggle: Random turning, radians per sqrt(retina unit).

    Returns:
        ``(K, steps + 1, 2)`` points and ``(K, steps)`` headings.
    """
    k = len(starts)
    step = (np.asarray(lengths, np.float64) / steps)[:, None]  # (K, 1)
    t = np.arange(steps)[None, :] * step
    curv = np.broadcast_to(np.asarray(curvature, np.float64), (k,))[:, None]
    turn = curv * step * np.exp(-t / decay)
    turn += wiggle * np.sqrt(step) * rng.standard_normal((k, steps))
    ang = np.asarray(headings, np.float64)[:, None] + np.cumsum(turn, axis=1)
    d = np.stack([np.cos(ang), np.sin(ang)], axis=-1) * step[..., None]
    pts = np.concatenate([np.zeros((k, 1, 2)), np.cumsum(d, axis=1)], axis=1)
    return pts + np.asarray(starts)[:, None, :], ang


def branch(
    rng: np.random.Generator,
    parent: VesselSet,
    counts: np.ndarray,
    lengths: tuple[float, float],
    steps: int,
) -> VesselSet:
    """Children sprouting from ``parent``: ``counts[k]`` per parent vessel, 72 % of its width."""
    idx = np.repeat(np.arange(len(parent)), counts)
    m, n = len(idx), parent.widths.shape[1]
    at = (rng.uniform(0.12, 0.9, m) * n).astype(int)
    side = rng.choice([-1.0, 1.0], m)
    heading = parent.headings[idx, at] + side * rng.uniform(0.45, 0.95, m)
    pts, ang = walk(rng, parent.points[idx, at], heading, rng.uniform(*lengths, m), side * 0.5,
                    0.3, steps)
    w = parent.widths[idx, at][:, None] * 0.72 * np.linspace(1.0, 0.45, steps)[None, :]
    return VesselSet(pts, ang, w, parent.vein[idx])


def vessel_tree(
    rng: np.random.Generator, disc: np.ndarray, disc_radius: float, tortuosity: float = 1.0
) -> list[VesselSet]:
    """Retinal arteries and veins leaving the disc (canonical right eye: temporal = −u).

    Four arcades (superior/inferior × temporal/nasal), each an artery–vein pair with two levels
    of branches, plus thin macular twigs. Widths: main veins ≈ 0.022 FOV radii, arteries ≈ 0.017.
    """
    # (initial heading, curvature, length) per arcade; v is down, so "superior" heads to −π/2.
    arc = np.array([
        (-math.pi / 2 - 0.1, -1.9, 1.5),  # superior temporal
        (math.pi / 2 + 0.1, 1.9, 1.5),  # inferior temporal
        (-math.pi / 4 + 0.1, 0.5, 0.75),  # superior nasal
        (math.pi / 4 - 0.1, -0.5, 0.75),  # inferior nasal
    ]).repeat(2, axis=0)  # (vein, artery) per arcade
    vein = np.tile([True, False], 4)
    temporal = np.arange(8) < 4
    sign = np.sign(arc[:, 1])
    heading = arc[:, 0] + rng.normal(0.0, 0.12, 8) + np.where(vein, 0.12, -0.12) * sign
    starts = disc + rng.normal(0.0, 0.25 * disc_radius, (8, 2))
    lengths = arc[:, 2] * rng.uniform(0.9, 1.1, 8)
    pts, ang = walk(rng, starts, heading, lengths, arc[:, 1] * rng.uniform(0.8, 1.2, 8),
                    0.25 * tortuosity, 48, decay=0.9)
    w0 = np.where(vein, 0.022, 0.017) * np.where(temporal, 1.0, 0.8) * rng.uniform(0.9, 1.1, 8)
    main = VesselSet(pts, ang, w0[:, None] * np.linspace(1.0, 0.35, 48)[None, :], vein)
    kids = branch(rng, main, np.where(temporal, rng.integers(3, 6, 8), rng.integers(2, 4, 8)),
                  (0.15, 0.33), 14)
    grandkids = branch(rng, kids, rng.integers(1, 3, len(kids)), (0.25, 0.55), 10)
    k = int(rng.integers(2, 5))  # small twigs toward the macula
    pts, ang = walk(rng, disc + rng.normal(0.0, 0.3 * disc_radius, (k, 2)),
                    math.pi + rng.uniform(-0.5, 0.5, k), rng.uniform(0.2, 0.4, k), 0.0, 0.3, 10)
    twigs = VesselSet(pts, ang, np.full((k, 10), 0.007) * np.linspace(1.0, 0.5, 10),
                      rng.random(k) < 0.5)
    return [main, kids, grandkids, twigs]


def draw_polylines(
    canvas: Canvas,
    sets: list[VesselSet],
    width_scale: dict[bool, float],
    layer_of: dict[bool, str],
    dim_near: tuple[np.ndarray, float] | None = None,
    mask: str | None = None,
) -> None:
    """Draw vessel sets as anti-aliased polylines; widths < 1 px become fainter 1-px lines.

    Segments are grouped by (thickness, alpha) so OpenCV draws each group in one call.

    Args:
        width_scale: Width multiplier for veins (``True``) and arteries (``False``).
        layer_of: Layer name for veins / arteries.
        dim_near: ``(centre, radius)``: halve the alpha of segments within ``radius`` (the disc,
            where vessels look fainter against the bright tissue).
        mask: Also draw (1 px wider, binary) onto this mask.
    """
    f = canvas.frame
    groups: dict[tuple[str, int, int], list[np.ndarray]] = {}
    for vs in sets:
        if len(vs) == 0:
            continue
        scale = np.where(vs.vein, width_scale[True], width_scale[False])[:, None]
        w = f.px(vs.widths * scale)  # (K, N) px
        thick = np.maximum(1, np.rint(w)).astype(np.int64)
        alpha = (np.clip(w, 0.25, 1.0) * 4).round().astype(np.int64) * 60 + 15  # <= 255
        if dim_near is not None:
            mid = (vs.points[:, 1:] + vs.points[:, :-1]) / 2
            near = np.hypot(*(mid - dim_near[0]).transpose(2, 0, 1)) < dim_near[1]
            alpha = np.where(near, alpha // 2, alpha)
        key = thick * 1000 + alpha
        k, n = key.shape
        change = np.ones((k, n), bool)
        change[:, 1:] = key[:, 1:] != key[:, :-1]
        rows, cols = np.nonzero(change)
        ends = np.r_[cols[1:], n]
        ends[np.r_[rows[1:] != rows[:-1], True]] = n
        fixed = f.fixed(vs.points)
        for r, a, b in zip(rows.tolist(), cols.tolist(), ends.tolist()):
            name = layer_of[bool(vs.vein[r])]
            groups.setdefault((name, int(thick[r, a]), int(alpha[r, a])), []).append(
                fixed[r, a : b + 1]
            )
    for (name, thick, alpha), lines in sorted(groups.items(), key=lambda kv: kv[0][1]):
        cv2.polylines(canvas.layer(name), lines, False, alpha, thick, cv2.LINE_AA, SHIFT)
        if mask is not None:
            cv2.polylines(canvas.mask(mask), lines, False, 1, thick + 1, cv2.LINE_8, SHIFT)


def sample_anatomy(
    rng: np.random.Generator, cup_to_disc_ratio: float, tortuosity: float = 1.0
) -> Anatomy:
    """Draw disc/macula positions and the vessel tree of a canonical right eye."""
    disc_radius = rng.uniform(0.125, 0.15)
    disc = np.array([rng.uniform(0.36, 0.44), rng.uniform(-0.06, 0.03)])
    dd = 2 * disc_radius
    macula = disc + np.array([-rng.uniform(2.3, 2.7) * dd, rng.uniform(0.03, 0.1)])
    aspect = rng.uniform(1.0, 1.12)
    vessels = vessel_tree(rng, disc, disc_radius, tortuosity)
    return Anatomy(disc, disc_radius, aspect, macula, cup_to_disc_ratio, vessels)


def draw_disc(img: np.ndarray, frame: Frame, anat: Anatomy, masks: dict[str, np.ndarray]) -> None:
    """Paint the optic disc (yellow-orange rim, pale cup) into planar ``img`` ``(3, H, W)``.

    Writes bool masks ``OD`` and ``cup``. The cup is the disc ellipse scaled by the cup-to-disc
    ratio and shifted slightly temporally, as in a normal disc.
    """
    rx = frame.px(anat.disc_radius)
    ry = rx * anat.disc_aspect
    cx, cy = frame.to_px(anat.disc)
    r = int(math.ceil(max(rx, ry) * 1.8)) + 2
    x0, x1 = max(0, int(cx) - r), min(frame.size, int(cx) + r + 1)
    y0, y1 = max(0, int(cy) - r), min(frame.size, int(cy) + r + 1)
    masks["OD"] = np.zeros((frame.size, frame.size), bool)
    masks["cup"] = np.zeros((frame.size, frame.size), bool)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    c, s = math.cos(frame.rotation), math.sin(frame.rotation)
    dx, dy = xx - cx, yy - cy
    du, dv = dx * c + dy * s, -dx * s + dy * c  # back into the disc's own axes
    d = np.sqrt((du / rx) ** 2 + (dv / ry) ** 2)
    cdr = anat.cup_to_disc_ratio
    dc = np.sqrt(((du + 0.12 * rx) / (cdr * rx)) ** 2 + (dv / (cdr * ry)) ** 2)
    halo = np.clip(1.6 - d, 0.0, 0.6) * 0.35
    rim = np.clip((1.0 - d) / 0.1 + 0.5, 0.0, 1.0) * 0.97
    cup = np.clip((1.0 - dc) / 0.12 + 0.5, 0.0, 1.0) * 0.97
    for ch, (h, rm, cp) in enumerate(((240.0, 238.0, 255.0), (160.0, 158.0, 242.0),
                                      (90.0, 92.0, 200.0))):
        p = img[ch, y0:y1, x0:x1]
        p += halo * (h - p)
        p += rim * (rm - p)
        p += cup * (cp - p)
    masks["OD"][y0:y1, x0:x1] = d <= 1.0
    masks["cup"][y0:y1, x0:x1] = (dc <= 1.0) & (d <= 1.0)
