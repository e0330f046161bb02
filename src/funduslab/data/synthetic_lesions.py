"""Disease findings for the synthetic fundus generator, drawn in retina units (see
:mod:`funduslab.data.synthetic_anatomy`).

Diabetic retinopathy follows the International Clinical DR severity scale (Wilkinson et al.,
*Ophthalmology* 2003): grade 1 microaneurysms only; 2 microaneurysms, dot/blot haemorrhages and
hard exudates; 3 many haemorrhages, cotton-wool spots, venous beading; 4 neovascularisation. AMD
shows drusen around the macula and, in some eyes, geographic atrophy (AREDS grading). Myopia
shows choroidal tessellation, a temporal peripapillary atrophy crescent and, when pathological,
chorioretinal atrophy patches. Hypertensive retinopathy narrows arterioles and adds flame
haemorrhages (Keith–Wagener–Barker). Lesion sizes are exaggerated so that a microaneurysm spans
≥ 2.5 px at 256 px: the point is learnable data, not photorealism.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from funduslab.data.synthetic_anatomy import (
    SHIFT,
    Anatomy,
    Canvas,
    VesselSet,
    draw_polylines,
    walk,
)

__all__ = [
    "DR_LESION_COUNTS",
    "draw_amd",
    "draw_dr",
    "draw_flame_haemorrhages",
    "draw_hard_drusen",
    "draw_myopia",
    "tessellation_layer",
]

# grade -> (MA, HE, EX clusters, SE) count ranges [low, high] inclusive
DR_LESION_COUNTS: dict[int, tuple[tuple[int, int], ...]] = {
    0: ((0, 0), (0, 0), (0, 0), (0, 0)),
    1: ((4, 10), (0, 0), (0, 0), (0, 0)),
    2: ((6, 16), (3, 8), (1, 3), (0, 1)),
    3: ((10, 24), (12, 28), (1, 4), (3, 7)),
    4: ((10, 24), (10, 28), (1, 4), (2, 6)),
}


def _count(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def _points(
    rng: np.random.Generator,
    n: int,
    centre: np.ndarray,
    spread: tuple[float, float],
    avoid: np.ndarray,
    avoid_r: float,
    max_r: float = 0.9,
) -> np.ndarray:
    """``n`` points ~ N(centre, spread) inside radius ``max_r``, away from ``avoid``.

    Always draws a fixed batch of candidates so the rng stream does not depend on geometry.
    """
    cand = centre + rng.normal(0.0, 1.0, (4 * n + 8, 2)) * np.asarray(spread)
    ok = (np.hypot(*cand.T) < max_r) & (np.hypot(*(cand - avoid).T) > avoid_r)
    return cand[ok][:n]


def draw_dr(canvas: Canvas, rng: np.random.Generator, anat: Anatomy, grade: int) -> VesselSet:
    """Draw DR lesions for ``grade`` (0–4) onto layers ``red``, ``exudate``, ``cotton``, ``nv``.

    Masks: ``MA``, ``HE``, ``EX``, ``SE``, ``NV`` (grade ≥ 3 flame haemorrhages also ``FH``).
    Returns bead-like vein segments for grade ≥ 3 (venous beading) to be drawn with the veins.
    """
    n_ma, n_he, n_ex, n_se = (_count(rng, r) for r in DR_LESION_COUNTS[grade])
    mac, disc, avoid = anat.macula, anat.disc, anat.disc_radius * 1.25
    post = (mac + disc) / 2 - np.array([0.1, 0.0])
    # microaneurysms: small dark red dots, concentrated around the macula
    p = _points(rng, n_ma, post, (0.32, 0.28), disc, avoid)
    r = rng.uniform(0.011, 0.016, len(p))
    canvas.ellipses("red", "MA", p, np.stack([r, r], 1), np.zeros(len(p)),
                    rng.uniform(215, 250, len(p)))
    # dot/blot haemorrhages: larger irregular dark blotches
    p = _points(rng, n_he, post, (0.4, 0.35), disc, avoid)
    a = rng.uniform(0.022, 0.05, len(p))
    ax = np.stack([a, a * rng.uniform(0.6, 1.0, len(p))], 1)
    canvas.ellipses("red", "HE", p, ax, rng.uniform(0, 180, len(p)), rng.uniform(190, 235, len(p)))
    if grade >= 3:
        draw_flame_haemorrhages(canvas, rng, anat, int(rng.integers(2, 6)))
    # hard exudates: bright yellow flecks in clusters / circinate rings near the macula
    for _ in range(n_ex):
        ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.08, 0.3)
        c = mac + dist * np.array([math.cos(ang), math.sin(ang)])
        k = int(rng.integers(4, 13))
        t = rng.uniform(0, 2 * math.pi, k)
        ring = rng.uniform(0.03, 0.08)
        q = c + np.stack([np.cos(t), np.sin(t)], 1) * ring * rng.uniform(0.6, 1.2, (k, 1))
        e = rng.uniform(0.008, 0.019, k)
        ax = np.stack([e, e * rng.uniform(0.6, 1.0, k)], 1)
        keep = np.hypot(*q.T) < 0.92
        canvas.ellipses("exudate", "EX", q[keep], ax[keep], rng.uniform(0, 180, k)[keep],
                        rng.uniform(200, 250, k)[keep])
    # cotton-wool spots: fluffy white patches along the temporal arcades near the disc
    main = anat.vessels[0]
    n_pts = main.points.shape[1]
    v = rng.integers(0, 4, n_se)
    c = main.points[v, rng.integers(2, n_pts // 2, n_se)] + rng.normal(0.0, 0.05, (n_se, 2))
    s = rng.uniform(0.03, 0.055, n_se)
    canvas.ellipses("cotton", "SE", c, np.stack([s, s * rng.uniform(0.6, 0.9, n_se)], 1),
                    rng.uniform(0, 180, n_se), rng.uniform(200, 240, n_se))
    beads = VesselSet(np.zeros((0, 2, 2)), np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(0, bool))
    if grade >= 3:  # venous beading: short swollen stretches along the main veins
        veins = np.flatnonzero(main.vein)
        k = np.repeat(veins, 3)
        i = rng.integers(3, main.widths.shape[1] - 3, len(k))
        pts = np.stack([main.points[k, i], main.points[k, i + 1]], axis=1)
        beads = VesselSet(pts, main.headings[k, i][:, None], main.widths[k, i][:, None] * 1.9,
                          np.ones(len(k), bool))
    if grade >= 4:
        _draw_nv(canvas, rng, anat)
    return beads


def draw_flame_haemorrhages(
    canvas: Canvas, rng: np.random.Generator, anat: Anatomy, n: int
) -> None:
    """Flame-shaped haemorrhages, elongated along the nerve fibres (radial to the disc).

    Masks ``HE`` (every haemorrhage) and ``FH`` (flame-shaped ones only, the sign that supports
    hypertensive retinopathy)."""
    t = rng.uniform(0, 2 * math.pi, n)
    dist = rng.uniform(anat.disc_radius * 1.6, 0.55, n)
    p = anat.disc + np.stack([np.cos(t), np.sin(t)], 1) * dist[:, None]
    keep = np.hypot(*p.T) < 0.9
    ax = np.stack([rng.uniform(0.045, 0.08, n), rng.uniform(0.012, 0.02, n)], 1)
    canvas.ellipses("red", ("HE", "FH"), p[keep], ax[keep], np.degrees(t)[keep],
                    rng.uniform(180, 225, n)[keep])


def _draw_nv(canvas: Canvas, rng: np.random.Generator, anat: Anatomy) -> None:
    """New vessels: tortuous fine loops on/near the disc (NVD) and along an arcade (NVE)."""
    main = anat.vessels[0]
    k = int(rng.integers(0, 3))
    nve = main.points[rng.integers(0, 4, k), rng.integers(4, main.points.shape[1] - 2, k)]
    centres = np.vstack([anat.disc + rng.normal(0.0, anat.disc_radius * 0.7, (1, 2)), nve])
    starts = np.repeat(centres, rng.integers(5, 9, len(centres)), axis=0)
    m = len(starts)
    curl = rng.choice([-1.0, 1.0], m) * rng.uniform(10.0, 25.0, m)  # tight loops
    pts, ang = walk(rng, starts, rng.uniform(0, 2 * math.pi, m), rng.uniform(0.1, 0.22, m),
                    curl, 3.0, 16)
    nv = VesselSet(pts, ang, np.full(ang.shape, 0.0065), np.ones(m, bool))
    draw_polylines(canvas, [nv], {True: 1.0, False: 1.0}, {True: "nv", False: "nv"}, mask="NV")


def draw_amd(canvas: Canvas, rng: np.random.Generator, anat: Anatomy) -> None:
    """Soft drusen around the macula (mask ``drusen``); geographic atrophy in ~40 % (``GA``)."""
    n = int(rng.integers(18, 50))
    p = _points(rng, n, anat.macula, (0.15, 0.13), anat.disc, anat.disc_radius * 1.5)
    s = rng.uniform(0.013, 0.032, len(p))
    ax = np.stack([s, s * rng.uniform(0.7, 1.0, len(p))], 1)
    canvas.ellipses("drusen", "drusen", p, ax, rng.uniform(0, 180, len(p)),
                    rng.uniform(180, 245, len(p)))
    if rng.random() < 0.4:
        c = anat.macula + rng.normal(0.0, 0.03, 2)
        k = int(rng.integers(1, 4))
        q = c + rng.normal(0.0, 0.04, (k, 2))
        a = rng.uniform(0.05, 0.11, k)
        ax = np.stack([a, a * rng.uniform(0.6, 1.0, k)], 1)
        canvas.ellipses("atrophy", "GA", q, ax, rng.uniform(0, 180, k), np.full(k, 230.0))
    else:  # pigment clumps instead
        k = int(rng.integers(2, 7))
        q = anat.macula + rng.normal(0.0, 0.08, (k, 2))
        r = rng.uniform(0.008, 0.016, k)
        canvas.ellipses("pigment", None, q, np.stack([r, r], 1), np.zeros(k), np.full(k, 200.0))


def draw_hard_drusen(canvas: Canvas, rng: np.random.Generator, anat: Anatomy) -> None:
    """A few small scattered drusen (ageing, not AMD): mask ``drusen``."""
    n = int(rng.integers(5, 12))
    p = _points(rng, n, anat.macula, (0.3, 0.3), anat.disc, anat.disc_radius * 1.5)
    s = rng.uniform(0.008, 0.013, len(p))
    canvas.ellipses("drusen", "drusen", p, np.stack([s, s], 1), np.zeros(len(p)),
                    rng.uniform(150, 200, len(p)))


def tessellation_layer(canvas: Canvas, rng: np.random.Generator, anat: Anatomy) -> None:
    """Broad choroidal vessels (layer ``choroid``) seen through a thin RPE (tigroid fundus)."""
    k = 40
    pts, _ = walk(rng, anat.macula + rng.normal(0.0, 0.25, (k, 2)), rng.uniform(0, 2 * math.pi, k),
                  rng.uniform(0.6, 1.2, k), 0.0, 0.7, 20)
    thick = max(2, int(round(canvas.frame.px(0.035))))
    cv2.polylines(canvas.layer("choroid"), list(canvas.frame.fixed(pts)), False, 255, thick,
                  cv2.LINE_AA, SHIFT)


def draw_myopia(
    canvas: Canvas, rng: np.random.Generator, anat: Anatomy, pathological: bool
) -> None:
    """Temporal peripapillary atrophy crescent (layer ``atrophy``) and, when pathological,
    chorioretinal atrophy patches near the posterior pole; both in mask ``myopic_atrophy``
    (not ``GA``, which is AMD's)."""
    w = anat.disc_radius * rng.uniform(1.15, 1.45)
    c = anat.disc - np.array([anat.disc_radius * rng.uniform(0.25, 0.45), 0.0])
    h = anat.disc_radius * anat.disc_aspect * 1.05
    canvas.ellipses("atrophy", "myopic_atrophy", c[None], np.array([[w, h]]), np.zeros(1),
                    np.array([235.0]))
    if pathological:
        k = int(rng.integers(1, 4))
        q = (anat.macula + anat.disc) / 2 + rng.normal(0.0, 0.12, (k, 2))
        a = rng.uniform(0.04, 0.09, k)
        canvas.ellipses("atrophy", "myopic_atrophy", q,
                        np.stack([a, a * rng.uniform(0.6, 1.0, k)], 1),
                        rng.uniform(0, 180, k), np.full(k, 220.0))
