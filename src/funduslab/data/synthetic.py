"""The synthetic fundus generator: colour fundus photographs whose answer is known.

:func:`render_fundus` draws one photograph from a :class:`FundusSpec` (what the eye has) and a
seeded ``numpy.random.Generator`` (where things are): a circular field of view on black, an
orange-red retina with choroidal mottling, the optic disc and cup, a vessel tree, the macula, and
the findings of diabetic retinopathy (DR grades 0–4), glaucoma (large cup-to-disc ratio), AMD
(drusen, geographic atrophy), cataract (haze), myopia (tessellation, peripapillary atrophy) and
hypertensive retinopathy (narrow arterioles, flame haemorrhages), then camera variation
(illumination, vignetting, colour cast, flare, blur, noise; JPEG quality is applied at write time).
It also returns a binary mask per lesion type, in the IDRiD convention (Porwal et al., *Data* 2018),
and, on request, the fovea and disc centres in pixels (IDRiD's localisation part gives the same), so
an explanation can be checked against where the findings and landmarks really are.

Every random draw comes from the generator passed in; :func:`image_rng` derives one generator per
image from ``(seed, index, ...)`` with :class:`numpy.random.SeedSequence`, so an image does not
depend on the order images are generated in, and the same seed gives the same bytes.
Anatomy is drawn in size-free units before any camera draw, so one eye photographed twice (same
rng seed, different :class:`CameraSpec`) keeps its vessels and lesions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, overload

import cv2
import numpy as np

from funduslab.data.synthetic_anatomy import (
    Anatomy,
    Canvas,
    Frame,
    draw_polylines,
    sample_anatomy,
)
from funduslab.data.synthetic_compose import (
    RetinaShading,
    apply_camera,
    composite_fundus,
    smooth_noise,
)
from funduslab.data.synthetic_lesions import (
    draw_amd,
    draw_dr,
    draw_flame_haemorrhages,
    draw_hard_drusen,
    draw_myopia,
    tessellation_layer,
)

__all__ = [
    "DR_MASKS",
    "MASK_NAMES",
    "Landmarks",
    "CameraSpec",
    "FundusSpec",
    "image_rng",
    "render_fundus",
    "sample_camera",
    "sample_course_spec",
    "sample_many_label_spec",
]

#: FH (flame haemorrhages, also in HE) and myopic_atrophy came after the IDRiD-like nine; adding a
#: mask draws no random numbers, so images stay the same.
MASK_NAMES: tuple[str, ...] = ("MA", "HE", "EX", "SE", "NV", "OD", "drusen", "cup", "GA", "FH",
                               "myopic_atrophy")
DR_MASKS: tuple[str, ...] = ("MA", "HE", "EX", "SE", "NV")

RGB = tuple[float, float, float]
#: ``{"fovea": (x, y), "disc": (x, y)}``: centres in pixel coordinates of the returned image
#: (column, row; pixel centres at integers), after mirroring a left eye.
Landmarks = dict[str, tuple[float, float]]
_Masks = dict[str, np.ndarray]


@dataclass(frozen=True)
class CameraSpec:
    """How the photograph was taken. Lengths are fractions of the image side unless noted.

    Args:
        fov_radius: FOV radius / image side.
        centre_offset: FOV centre shift ``(dx, dy)`` / image side.
        rotation_deg: Rotation of the anatomy, degrees.
        fov_clip: Fraction of the image side cut off at top and bottom (0 = full circle).
        gain: Global brightness multiplier.
        gradient: Strength of a linear illumination ramp (0–0.4) at ``gradient_angle`` radians.
        vignetting: Brightness loss at the FOV rim (0–0.7).
        colour_cast: Per-channel RGB multipliers.
        flare: Strength of a whitish rim flare (0 = none) at ``flare_angle`` radians.
        blur_sigma: Gaussian blur sigma in px at 256 px (scaled with size).
        noise_sigma: Gaussian sensor noise, grey levels (0–255).
        jpeg_quality: JPEG quality used when the image is written (1–100).
    """

    fov_radius: float = 0.47
    centre_offset: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = 0.0
    fov_clip: float = 0.0
    gain: float = 1.0
    gradient: float = 0.0
    gradient_angle: float = 0.0
    vignetting: float = 0.35
    colour_cast: RGB = (1.0, 1.0, 1.0)
    flare: float = 0.0
    flare_angle: float = 0.0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int = 95


@dataclass(frozen=True)
class FundusSpec:
    """What one synthetic eye has. Labels are exact functions of these fields.

    Args:
        size: Image side, px.
        eye: ``"left"`` or ``"right"``; the disc is on the image's right for a right eye.
        dr_grade: Diabetic retinopathy grade 0–4 (0 = none, 4 = proliferative).
        glaucoma: Glaucomatous cupping; draws ``cup_to_disc_ratio`` ≈ 0.7 ± 0.08 when unset.
        amd: Age-related macular degeneration (drusen, sometimes geographic atrophy).
        cataract: Media haze (blur + veil).
        myopia: Pathological myopia (tessellation, peripapillary and chorioretinal atrophy).
        hypertensive: Hypertensive retinopathy (narrow, tortuous arterioles; flame haemorrhages).
        hard_drusen: A few small drusen without AMD.
        tessellation: Extra choroidal tessellation strength 0–1 (myopia implies ≥ 0.6).
        pigment: Fundus pigmentation 0 (blond, orange) … 1 (dark, brown-red).
        cup_to_disc_ratio: Vertical cup/disc ratio; ``None`` draws 0.3 ± 0.05 (0.7 ± 0.08 glaucoma).
        camera: Camera variation.
    """

    size: int = 256
    eye: Literal["left", "right"] = "right"
    dr_grade: int = 0
    glaucoma: bool = False
    amd: bool = False
    cataract: bool = False
    myopia: bool = False
    hypertensive: bool = False
    hard_drusen: bool = False
    tessellation: float = 0.0
    pigment: float = 0.5
    cup_to_disc_ratio: float | None = None
    camera: CameraSpec = field(default_factory=CameraSpec)

    def __post_init__(self) -> None:
        if self.eye not in ("left", "right"):
            raise ValueError(f"FundusSpec.eye must be 'left' or 'right', got {self.eye!r}")
        if self.dr_grade not in (0, 1, 2, 3, 4):
            raise ValueError(f"FundusSpec.dr_grade must be an integer 0-4, got {self.dr_grade!r}")
        if not 32 <= int(self.size) <= 8192:
            raise ValueError(f"FundusSpec.size must be 32-8192 px, got {self.size!r}")
        if self.cup_to_disc_ratio is not None and not 0.05 <= self.cup_to_disc_ratio <= 0.95:
            raise ValueError(
                "FundusSpec.cup_to_disc_ratio must be in [0.05, 0.95], "
                f"got {self.cup_to_disc_ratio}"
            )

    def course_labels(self) -> dict[str, int]:
        """The course's labels: ``D`` (any DR), ``G`` (glaucoma), ``A`` (AMD)."""
        return {"D": int(self.dr_grade >= 1), "G": int(self.glaucoma), "A": int(self.amd)}


def image_rng(seed: int, *index: int) -> np.random.Generator:
    """An independent generator for one image, from ``(seed, *index)``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(i) for i in index)]))


def sample_camera(rng: np.random.Generator) -> CameraSpec:
    """Draw camera variation resembling ODIR-5K's mix of fundus cameras."""
    u = rng.uniform
    return CameraSpec(
        fov_radius=u(0.44, 0.49),
        centre_offset=(u(-0.015, 0.015), u(-0.015, 0.015)),
        rotation_deg=u(-8.0, 8.0),
        fov_clip=u(0.04, 0.11) if rng.random() < 0.25 else 0.0,
        gain=u(0.72, 1.12),
        gradient=u(0.0, 0.3),
        gradient_angle=u(0.0, 2 * math.pi),
        vignetting=u(0.2, 0.55),
        colour_cast=(u(0.9, 1.08), u(0.85, 1.15), u(0.75, 1.2)),
        flare=u(0.1, 0.35) if rng.random() < 0.25 else 0.0,
        flare_angle=u(0.0, 2 * math.pi),
        blur_sigma=u(0.0, 1.0),
        noise_sigma=u(0.5, 4.0),
        jpeg_quality=int(rng.integers(75, 98)),
    )


def _eye(rng: np.random.Generator, eye: str | None) -> str:
    return eye if eye is not None else ("left" if rng.random() < 0.5 else "right")


def _cdr(rng: np.random.Generator, glaucoma: bool) -> float:
    if glaucoma:
        return float(np.clip(rng.normal(0.7, 0.08), 0.55, 0.9))
    return float(np.clip(rng.normal(0.3, 0.05), 0.15, 0.42))


def _dr_grade(rng: np.random.Generator) -> int:
    return int(rng.choice([1, 2, 3, 4], p=[0.25, 0.5, 0.15, 0.1]))


def sample_course_spec(
    rng: np.random.Generator, size: int = 256, eye: str | None = None, normal_fraction: float = 0.0
) -> FundusSpec:
    """A spec with the course's label mix (train split: D 65 %, G 20 %, A 18 %, few overlaps).

    The course data have no all-negative images; ``normal_fraction`` adds some.
    D ⇔ ``dr_grade ≥ 1`` (visible lesions), G ⇔ cup-to-disc ratio ≥ 0.55, A ⇔ drusen/atrophy.
    """
    combos = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 0), (0, 1, 1)]
    d, g, a = combos[int(rng.choice(6, p=[0.6, 0.18, 0.155, 0.025, 0.025, 0.015]))]
    if rng.random() < normal_fraction:
        d, g, a = 0, 0, 0
    grade = _dr_grade(rng) if d else 0
    tess = rng.uniform(0.2, 0.4) if rng.random() < 0.08 else 0.0
    return FundusSpec(
        size=size,
        eye=_eye(rng, eye),  # type: ignore[arg-type]
        dr_grade=grade,
        glaucoma=bool(g),
        amd=bool(a),
        tessellation=tess,
        pigment=rng.uniform(0.0, 1.0),
        cup_to_disc_ratio=_cdr(rng, bool(g)),
        camera=sample_camera(rng),
    )


def sample_many_label_spec(
    rng: np.random.Generator, size: int = 256, eye: str | None = None
) -> FundusSpec:
    """A spec for many-label data (ODIR-5K / RFMiD-like): conditions drawn independently.

    Prevalences: DR 30 %, glaucoma 12 %, AMD 10 %, cataract 8 %, myopia 8 %, hypertensive 7 %,
    small drusen 5 %, mild tessellation 8 %; the rest are normal.
    """
    r = rng.random(8)
    myopia = bool(r[4] < 0.08)
    glaucoma = bool(r[1] < 0.12)
    return FundusSpec(
        size=size,
        eye=_eye(rng, eye),  # type: ignore[arg-type]
        dr_grade=_dr_grade(rng) if r[0] < 0.3 else 0,
        glaucoma=glaucoma,
        amd=bool(r[2] < 0.1),
        cataract=bool(r[3] < 0.08),
        myopia=myopia,
        hypertensive=bool(r[5] < 0.07),
        hard_drusen=bool(r[6] < 0.05),
        tessellation=rng.uniform(0.3, 0.6) if (r[7] < 0.08 and not myopia) else 0.0,
        pigment=rng.uniform(0.0, 1.0),
        cup_to_disc_ratio=_cdr(rng, glaucoma),
        camera=sample_camera(rng),
    )


def _frame(spec: FundusSpec) -> Frame:
    cam, s = spec.camera, spec.size
    centre = (s / 2 + cam.centre_offset[0] * s - 0.5, s / 2 + cam.centre_offset[1] * s - 0.5)
    return Frame(s, centre, cam.fov_radius * s, math.radians(cam.rotation_deg))


@overload
def render_fundus(
    spec: FundusSpec, rng: np.random.Generator, camera_rng: np.random.Generator | None = None,
    *, return_landmarks: Literal[False] = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


@overload
def render_fundus(
    spec: FundusSpec, rng: np.random.Generator, camera_rng: np.random.Generator | None = None,
    *, return_landmarks: Literal[True],
) -> tuple[np.ndarray, dict[str, np.ndarray], Landmarks]: ...


def render_fundus(
    spec: FundusSpec, rng: np.random.Generator, camera_rng: np.random.Generator | None = None,
    *, return_landmarks: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]] | tuple[np.ndarray, _Masks, Landmarks]:
    """Render one fundus photograph.

    Args:
        spec: What the eye has and how it was photographed.
        rng: Source of every random draw (use :func:`image_rng`).
        camera_rng: Source of the camera's draws (sensor noise) if not ``rng``: photographs of
            one eye share ``rng``'s seed (same anatomy and lesions) and differ here.
        return_landmarks: Also return the fovea and disc centres (:data:`Landmarks`); draws
            nothing more, so the image is the same either way.

    Returns:
        ``(image, masks)`` or ``(image, masks, landmarks)``: image ``(H, W, 3)`` uint8 **RGB**;
        masks ``{name: (H, W) bool}`` for every name in :data:`MASK_NAMES` (``MA HE EX SE NV OD
        drusen cup GA FH myopic_atrophy``), all inside the FOV.
    """
    cdr = spec.cup_to_disc_ratio if spec.cup_to_disc_ratio is not None else _cdr(rng, spec.glaucoma)
    frame = _frame(spec)
    anat = sample_anatomy(rng, cdr, tortuosity=1.8 if spec.hypertensive else 1.0)
    canvas = Canvas(frame)
    shading = _draw_eye(spec, rng, anat, canvas)
    img, disc_masks = composite_fundus(canvas, anat, shading, hypertensive=spec.hypertensive)
    out_img, fov = apply_camera(img, frame, spec.camera, camera_rng or rng)
    out = _masks_in_fov(canvas, disc_masks, fov)
    centres = {"fovea": frame.to_px(anat.macula), "disc": frame.to_px(anat.disc)}
    if spec.eye == "left":
        out_img, out, centres = _mirror(out_img, out, centres, spec.size)
    if return_landmarks:
        return out_img, out, {k: (float(xy[0]), float(xy[1])) for k, xy in centres.items()}
    return out_img, out


def _draw_eye(
    spec: FundusSpec, rng: np.random.Generator, anat: Anatomy, canvas: Canvas
) -> RetinaShading:
    """Make every random draw of the eye, in a fixed order, before any camera draw.

    Findings and vessels are drawn onto ``canvas``; the retina's own draws are returned.
    """
    p = spec.pigment
    base = (228 - 60 * p, 128 - 58 * p, 62 - 28 * p)
    mottle = smooth_noise(rng, spec.size, ((5, 0.06), (28, 0.012)))
    mottle += 1.0
    mac_sigma, mac_amp = rng.uniform(0.11, 0.14), rng.uniform(0.45, 0.65)
    tess = max(spec.tessellation, rng.uniform(0.6, 0.9) if spec.myopia else 0.0)
    if tess > 0:
        tessellation_layer(canvas, rng, anat)
    if spec.myopia:
        draw_myopia(canvas, rng, anat, pathological=True)
    if spec.amd:
        draw_amd(canvas, rng, anat)
    if spec.hard_drusen:
        draw_hard_drusen(canvas, rng, anat)
    beads = draw_dr(canvas, rng, anat, spec.dr_grade)
    if spec.hypertensive:
        draw_flame_haemorrhages(canvas, rng, anat, int(rng.integers(2, 6)))
    draw_polylines(canvas, [*anat.vessels, beads],
                   {True: 1.0, False: 0.6 if spec.hypertensive else 1.0},
                   {True: "vein", False: "artery"}, dim_near=(anat.disc, anat.disc_radius))
    haze = rng.uniform(0.35, 0.6) if spec.cataract else 0.0
    return RetinaShading(base, mottle, mac_sigma, mac_amp, tess, haze)


def _masks_in_fov(canvas: Canvas, disc_masks: _Masks, fov: np.ndarray) -> _Masks:
    """Every mask of :data:`MASK_NAMES` as bool ``(H, W)``, cut to the field of view."""
    out: _Masks = {}
    for name in MASK_NAMES:
        m = disc_masks.get(name)
        if m is None:
            m = canvas.masks[name].view(bool) if name in canvas.masks else np.zeros_like(fov)
        out[name] = m & fov
    return out


def _mirror(
    img: np.ndarray, masks: _Masks, centres: dict[str, np.ndarray], size: int
) -> tuple[np.ndarray, _Masks, dict[str, np.ndarray]]:
    """Image, masks and centres mirrored left-right: the eye is drawn as a right eye."""
    img = cv2.flip(img, 1)
    masks = {k: cv2.flip(v.view(np.uint8), 1).view(bool) for k, v in masks.items()}
    centres = {k: np.array([size - 1 - xy[0], xy[1]]) for k, xy in centres.items()}
    return img, masks, centres
