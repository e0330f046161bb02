"""Write synthetic datasets in the on-disk layouts the adapters read (``docs/layouts.md``).

``write_layout("odir-course", out)`` writes the course's Kaggle layout, ``"odir5k"`` the per-eye
ODIR-5K ``labels.csv``, ``"deepdrid"`` DeepDRiD's regular fundus set (two photographs per eye),
``"aptos"`` APTOS 2019, ``"rfmid"`` RFMiD-like multi-disease sets and ``"idrid"`` the IDRiD lesion
segmentation part (images + per-lesion ``.tif`` masks). Labels are exact functions of the
rendered :class:`~funduslab.data.synthetic.FundusSpec`. Each image's generator comes from
``image_rng(seed, patient, eye[, photo])``, so images do not depend on generation order, and every
file is written atomically (temporary file, then ``os.replace``): same seed, same bytes.

With ``masks=True`` the multi-label layouts also write ``masks/``: one mask per (image, positive
label) and an index (format: :mod:`funduslab.data.mask_index`; which findings back which label:
:mod:`funduslab.data.synthetic_masks`). Masks and landmarks draw no random numbers, so the
images are the same bytes with or without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from funduslab.config import atomic_write_bytes
from funduslab.data.mask_index import MaskIndexWriter
from funduslab.data.synthetic import (
    FundusSpec,
    Landmarks,
    image_rng,
    render_fundus,
    sample_camera,
    sample_course_spec,
    sample_many_label_spec,
)
from funduslab.data.synthetic_masks import LABEL_FINDINGS, label_masks
from funduslab.registry import Registry

__all__ = ["LAYOUTS", "odir5k_keywords", "write_layout"]

log = logging.getLogger(__name__)

#: ``(out, n, seed, size) -> summary``; writers of :data:`LABEL_FINDINGS` layouts also take
#: ``masks=`` (a :class:`MaskIndexWriter`, or ``None``)
Writer = Callable[..., str]
LAYOUTS: Registry[Writer] = Registry("synthetic layout")

_EYES = ("left", "right")
_DR_KEYWORDS = {
    1: "mild nonproliferative retinopathy",
    2: "moderate non proliferative retinopathy",
    3: "severe nonproliferative retinopathy",
    4: "proliferative diabetic retinopathy",
}
_IDRID_MASKS = (("MA", "1. Microaneurysms"), ("HE", "2. Haemorrhages"),
                ("EX", "3. Hard Exudates"), ("SE", "4. Soft Exudates"), ("OD", "5. Optic Disc"))
_RFMID_SETS = (("Training_Set", "RFMiD_Training_Labels.csv", "Training", "train"),
               ("Evaluation_Set", "RFMiD_Validation_Labels.csv", "Validation", "val"),
               ("Test_Set", "RFMiD_Testing_Labels.csv", "Test", "test"))  # 4th: the adapter's split
_DEEPDRID_SETS = ("training", "validation", "testing")


def write_layout(
    layout: str, out: Path, n: int | None = None, seed: int = 0, size: int | None = None,
    masks: bool = False,
) -> Path:
    """Write a synthetic dataset in one of the documented layouts.

    Args:
        layout: One of ``LAYOUTS.names()``: aptos, deepdrid, idrid, odir-course, odir5k, rfmid.
        out: Root folder (created; existing files of the same names are replaced).
        n: Number of images (``None``: a small default per layout, e.g. 145 for odir-course).
        seed: Seed of every random draw.
        size: Image side in px (``None``: 256; 512 for idrid, whose lesions are cut into patches).
        masks: Also write ``masks/`` (per-label masks, ``masks.csv``, ``landmarks.csv``; see
            :mod:`funduslab.data.mask_index`). Multi-label layouts only: odir-course, odir5k,
            rfmid, idrid.

    Returns:
        ``out``, the dataset root to hand to the adapter.

    Raises:
        ValueError: unknown layout, ``n`` too small for the layout's splits, bad seed or size,
            ``masks`` for a grading layout (aptos, deepdrid).
    """
    writer = LAYOUTS.get(layout)
    if not isinstance(masks, bool):
        raise TypeError(f"masks must be True or False, got {masks!r}")
    if masks and layout not in LABEL_FINDINGS:
        raise ValueError(f"masks=True: layout {layout!r} is graded (one DR grade, no per-label "
                         f"explanation to check); masks are written for {sorted(LABEL_FINDINGS)}")
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"n must be a positive integer number of images, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    size = int(size) if size is not None else (512 if layout == "idrid" else 256)
    if not 32 <= size <= 8192:
        raise ValueError(f"size must be 32-8192 px, got {size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if masks:
        sink = MaskIndexWriter(out / "masks", _write_image)
        summary = writer(out, n, int(seed), size, masks=sink)
        summary += f"; {sink.close()} label masks in masks/"
    else:
        summary = writer(out, n, int(seed), size)
    log.info("wrote synthetic %s layout (seed %d, %d px) to %s: %s",
             layout, seed, size, out, summary)
    return out


# ----------------------------------------------------------------------------- file helpers
def _write_image(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Encode by extension: JPEG at ``quality``, PNG (level 3) or TIFF; RGB or single channel."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ext = path.suffix.lower()
    params = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, int(quality)],
              ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3]}.get(ext, [])
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {path} as {ext}")
    atomic_write_bytes(path, buf.tobytes())


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_bytes(path, frame.to_csv(index=False, lineterminator="\n").encode())


def _split_counts(n: int, weights: tuple[float, ...], layout: str) -> list[int]:
    """Split ``n`` by ``weights`` (largest remainder), every split ≥ 1."""
    if n < len(weights):
        raise ValueError(f"layout {layout!r} has {len(weights)} splits: n must be ≥ "
                         f"{len(weights)}, got {n}")
    w = np.asarray(weights, float) / sum(weights)
    base = np.maximum(1, np.floor(w * n).astype(int))
    while base.sum() > n:
        base[int(np.argmax(base))] -= 1
    order = np.argsort(-(w * n - base), kind="stable")
    for i in range(n - int(base.sum())):
        base[order[i % len(base)]] += 1
    return base.tolist()


def _render(seed: int, sampler: Callable[..., FundusSpec], size: int, patient: int, eye: int,
            **kw: object) -> tuple[FundusSpec, np.ndarray, dict[str, np.ndarray], Landmarks]:
    rng = image_rng(seed, patient, eye)
    spec = sampler(rng, size, eye=_EYES[eye], **kw)
    img, masks, landmarks = render_fundus(spec, rng, return_landmarks=True)
    return spec, img, masks, landmarks


def _patient_ids(seed: int, count: int, low: int = 0, spread: int = 5000) -> list[int]:
    """``count`` distinct patient numbers in random order (ODIR-like, 0 … ≥ 5000)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    high = max(spread, 4 * count)
    return (low + rng.choice(high, size=count, replace=False)).tolist()


# ----------------------------------------------------------------------------- layouts
@LAYOUTS.register("odir-course")
def _odir_course(out: Path, n: int | None, seed: int, size: int,
                 masks: MaskIndexWriter | None = None) -> str:
    """train/val/offsite_test/onsite_test CSVs (id,D,G,A) + images/<split>/<patient>_<eye>.jpg."""
    splits = ("train", "val", "offsite_test", "onsite_test")
    counts = ([80, 20, 20, 25] if n is None
              else _split_counts(n, (800, 200, 200, 250), "odir-course"))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0]))
    plans: list[list[tuple[int, int]]] = []  # per split: (patient slot, eye) pairs
    slot = 0
    for count in counts:
        eyes: list[tuple[int, int]] = []
        while len(eyes) < count:  # ~15 % of patients contribute both eyes, as in the course data
            both = rng.random() < 0.15 and count - len(eyes) >= 2
            first = int(rng.integers(0, 2))
            eyes += [(slot, first), (slot, 1 - first)] if both else [(slot, first)]
            slot += 1
        plans.append(eyes)
    pids = _patient_ids(seed, slot)
    csv_names = ("train.csv", "val.csv", "offsite_test.csv", "onsite_test_submission.csv")
    for split, eyes, csv in zip(splits, plans, csv_names):
        rows = []
        for s, e in eyes:
            pid = pids[s]
            spec, img, found, marks = _render(seed, sample_course_spec, size, pid, e)
            image_id = f"{pid}_{_EYES[e]}.jpg"
            _write_image(out / "images" / split / image_id, img, spec.camera.jpeg_quality)
            labels = spec.course_labels() if split != "onsite_test" else {"D": 0, "G": 0, "A": 0}
            rows.append({"id": image_id, **labels})
            if masks is not None:
                masks.add(image_id, f"images/{split}/{image_id}",
                          label_masks("odir-course", labels, found), marks)
        _write_csv(out / csv, pd.DataFrame(rows, columns=["id", "D", "G", "A"]))
    return ", ".join(f"{s} {c}" for s, c in zip(splits, counts)) + " images"


def odir5k_keywords(spec: FundusSpec) -> list[str]:
    """ODIR-5K diagnostic keywords for an eye (``["normal fundus"]`` when nothing is found)."""
    kw = [_DR_KEYWORDS[spec.dr_grade]] if spec.dr_grade else []
    kw += [word for word, on in (
        ("glaucoma", spec.glaucoma),
        ("dry age-related macular degeneration", spec.amd),
        ("cataract", spec.cataract),
        ("pathological myopia", spec.myopia),
        ("hypertensive retinopathy", spec.hypertensive),
        ("drusen", spec.hard_drusen and not spec.amd),
    ) if on]
    return kw or ["normal fundus"]


@LAYOUTS.register("odir5k")
def _odir5k(out: Path, n: int | None, seed: int, size: int,
            masks: MaskIndexWriter | None = None) -> str:
    """Per-eye labels.csv (id, patient_id, eye, age, sex, D … N, dr_grade, keywords) + images/."""
    n = 60 if n is None else n
    pids = _patient_ids(seed, (n + 1) // 2)
    rows = []
    for k in range(n):
        pid, e = pids[k // 2], k % 2
        spec, img, found, marks = _render(seed, sample_many_label_spec, size, pid, e)
        prng = image_rng(seed, pid, 7)  # patient-level attributes, same for both eyes
        age = int(prng.integers(30, 80)) + (10 if spec.amd else 0)
        sex = "Female" if prng.random() < 0.5 else "Male"
        kw = odir5k_keywords(spec)
        image_id = f"{pid}_{_EYES[e]}.jpg"
        _write_image(out / "images" / image_id, img, spec.camera.jpeg_quality)
        rows.append({
            "id": image_id, "patient_id": pid, "eye": _EYES[e], "age": age, "sex": sex,
            "D": int(spec.dr_grade > 0), "G": int(spec.glaucoma), "A": int(spec.amd),
            "C": int(spec.cataract), "H": int(spec.hypertensive), "M": int(spec.myopia),
            "N": int(kw == ["normal fundus"]), "dr_grade": spec.dr_grade, "keywords": ",".join(kw),
        })
        if masks is not None:
            masks.add(image_id, f"images/{image_id}", label_masks("odir5k", rows[-1], found),
                      marks)
    frame = pd.DataFrame(rows)
    _write_csv(out / "labels.csv", frame)
    prev = frame[["D", "G", "A", "C", "H", "M", "N"]].sum().to_dict()
    return f"{n} images of {len(pids)} patients, positives {prev}"


def _grading_spec(rng: np.random.Generator, size: int, eye: str = "right",
                  grade: int | None = None,
                  p: tuple[float, ...] = (0.45, 0.1, 0.25, 0.12, 0.08)) -> FundusSpec:
    """A DR-grading eye: grade drawn with probabilities ``p`` (DeepDRiD/APTOS-like)."""
    g = int(rng.choice(5, p=np.asarray(p) / sum(p)))
    return FundusSpec(
        size=size,
        eye=eye,  # type: ignore[arg-type]
        dr_grade=g if grade is None else grade,
        pigment=rng.uniform(0.0, 1.0),
        camera=sample_camera(rng),
    )


@LAYOUTS.register("deepdrid")
def _deepdrid(out: Path, n: int | None, seed: int, size: int) -> str:
    """regular-fundus-<split>/: CSV + Images/<patient>/<patient>_<l|r><1|2>.jpg (2 per eye)."""
    n = 48 if n is None else n
    if n < 9:
        raise ValueError(f"layout 'deepdrid' needs n >= 9 images (4 photographs per patient, "
                         f"at least one patient in each of 3 splits), got {n}")
    n_pat = -(-n // 4)
    per_split = _split_counts(n_pat, (3, 1, 1), "deepdrid")
    pid, done, parts = 1, 0, []
    for split, count in zip(_DEEPDRID_SETS, per_split):
        folder = f"regular-fundus-{split}"
        rows = []
        for _ in range(count):
            levels = {}
            for e in (0, 1):
                rng = image_rng(seed, pid, e)
                spec = _grading_spec(rng, size, _EYES[e])
                anatomy_seed = int(rng.integers(2**63))
                levels[e] = spec.dr_grade
                for photo in (1, 2):
                    if done >= n:
                        break
                    cam_rng = image_rng(seed, pid, e, photo)
                    shot = replace(spec, camera=sample_camera(cam_rng))
                    img, _ = render_fundus(shot, np.random.default_rng(anatomy_seed), cam_rng)
                    image_id = f"{pid}_{'lr'[e]}{photo}"
                    rel = f"{folder}/Images/{pid}/{image_id}.jpg"
                    _write_image(out / rel, img, shot.camera.jpeg_quality)
                    quality = int(shot.camera.blur_sigma < 0.8)
                    rows.append({"patient_id": pid, "image_id": image_id, "image_path": rel,
                                 "left_eye_DR_Level": spec.dr_grade if e == 0 else None,
                                 "right_eye_DR_Level": spec.dr_grade if e == 1 else None,
                                 "patient_DR_Level": 0, "Overall quality": quality})
                    done += 1
            for r in rows:
                if r["patient_id"] == pid:
                    r["patient_DR_Level"] = max(levels.values())
            pid += 1
        frame = pd.DataFrame(rows, columns=["patient_id", "image_id", "image_path",
                                            "left_eye_DR_Level", "right_eye_DR_Level",
                                            "patient_DR_Level", "Overall quality"])
        for col in ("left_eye_DR_Level", "right_eye_DR_Level"):
            frame[col] = frame[col].astype("Int64")
        _write_csv(out / folder / f"{folder}.csv", frame)
        parts.append(f"{split} {len(frame)}")
    return ", ".join(parts) + " images"


@LAYOUTS.register("aptos")
def _aptos(out: Path, n: int | None, seed: int, size: int) -> str:
    """train.csv (id_code,diagnosis) + train_images/; test.csv (id_code) + test_images/ (png)."""
    n = 40 if n is None else n
    n_train, n_test = _split_counts(n, (4, 1), "aptos")
    p = (0.49, 0.1, 0.27, 0.05, 0.08)  # APTOS 2019 training-set grade frequencies
    seen: set[str] = set()
    train, test = [], []
    for i in range(n):
        rng = image_rng(seed, i, 0)
        code = rng.bytes(6).hex()
        while code in seen:  # vanishingly rare; stays deterministic
            code = rng.bytes(6).hex()
        seen.add(code)
        is_train = i < n_train
        grade = i if (is_train and i < 5) else None  # every grade present when n_train ≥ 5
        spec = _grading_spec(rng, size, "left" if rng.random() < 0.5 else "right", grade, p)
        img, _ = render_fundus(spec, rng)
        folder = "train_images" if is_train else "test_images"
        _write_image(out / folder / f"{code}.png", img)
        (train if is_train else test).append({"id_code": code, "diagnosis": spec.dr_grade})
    _write_csv(out / "train.csv", pd.DataFrame(train, columns=["id_code", "diagnosis"]))
    _write_csv(out / "test.csv", pd.DataFrame(test, columns=["id_code", "diagnosis"])[["id_code"]])
    return f"train {n_train}, test {n_test} images"


def _rfmid_labels(spec: FundusSpec, masks: dict[str, np.ndarray]) -> dict[str, int]:
    lab = {
        "DR": int(spec.dr_grade > 0), "ARMD": int(spec.amd), "MH": int(spec.cataract),
        "DN": int(spec.amd or spec.hard_drusen), "MYA": int(spec.myopia),
        "TSLN": int(spec.myopia or spec.tessellation >= 0.3), "ODC": int(spec.glaucoma),
        "CWS": int(bool(masks["SE"].any())),
    }
    risk = int(any(lab.values()) or spec.hypertensive)
    return {"Disease_Risk": risk, **lab}


@LAYOUTS.register("rfmid")
def _rfmid(out: Path, n: int | None, seed: int, size: int,
           masks: MaskIndexWriter | None = None) -> str:
    """Training/Evaluation/Test sets: labels CSV (ID, Disease_Risk, 8 diseases) + <ID>.png."""
    n = 60 if n is None else n
    counts = _split_counts(n, (3, 1, 1), "rfmid")
    k, parts = 0, []
    for (folder, csv, sub, split), count in zip(_RFMID_SETS, counts):
        rows = []
        for i in range(1, count + 1):
            spec, img, found, marks = _render(seed, sample_many_label_spec, size, k, 0)
            k += 1
            _write_image(out / folder / sub / f"{i}.png", img)
            rows.append({"ID": i, **_rfmid_labels(spec, found)})
            if masks is not None:  # the adapter's ids are <split>-<ID>
                masks.add(f"{split}-{i}", f"{folder}/{sub}/{i}.png",
                          label_masks("rfmid", rows[-1], found), marks)
        _write_csv(out / folder / csv, pd.DataFrame(rows))
        parts.append(f"{folder} {count}")
    return ", ".join(parts) + " images"


def _idrid_spec(rng: np.random.Generator, size: int, eye: str = "right") -> FundusSpec:
    grade = int(rng.choice([2, 3, 4], p=[0.4, 0.4, 0.2]))
    return _grading_spec(rng, size, eye, grade)


@LAYOUTS.register("idrid")
def _idrid(out: Path, n: int | None, seed: int, size: int,
           masks: MaskIndexWriter | None = None) -> str:
    """A. Segmentation: IDRiD_NN.jpg + per-lesion binary .tif masks (only non-empty ones)."""
    n = 12 if n is None else n
    n_train, n_test = _split_counts(n, (2, 1), "idrid")
    seg = out / "A. Segmentation"
    n_masks = 0
    for k in range(1, n + 1):
        split = "a. Training Set" if k <= n_train else "b. Testing Set"
        spec, img, found, marks = _render(seed, _idrid_spec, size, k, k % 2)
        name = f"IDRiD_{k:02d}"
        image = seg / "1. Original Images" / split / f"{name}.jpg"
        _write_image(image, img, spec.camera.jpeg_quality)
        if masks is not None:  # labels as the adapter reads them: lesion mask non-empty
            labels = {code: int(found[code].any()) for code in LABEL_FINDINGS["idrid"]}
            masks.add(name, str(image.relative_to(out)), label_masks("idrid", labels, found),
                      marks)
        for lesion, folder in _IDRID_MASKS:
            m = found[lesion]
            if m.any():
                truth = seg / "2. All Segmentation Groundtruths" / split / folder
                _write_image(truth / f"{name}_{lesion}.tif", m.astype(np.uint8) * 255)
                n_masks += 1
    return f"training {n_train}, testing {n_test} images, {n_masks} mask files"
