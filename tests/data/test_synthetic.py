"""Tests of the synthetic fundus generator and the dataset layouts it writes."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from funduslab.data.contact_sheet import contact_sheet
from funduslab.data.synthetic import (
    MASK_NAMES,
    CameraSpec,
    FundusSpec,
    image_rng,
    render_fundus,
    sample_course_spec,
    sample_many_label_spec,
)
from funduslab.data.synthetic_layouts import LAYOUTS, odir5k_keywords, write_layout

DR_MASKS = ("MA", "HE", "EX", "SE", "NV")
SMALL_N = {"odir-course": 8, "odir5k": 6, "deepdrid": 10, "aptos": 6, "rfmid": 6, "idrid": 3}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _render(spec: FundusSpec, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return render_fundus(spec, image_rng(seed, 1))


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("layout", sorted(SMALL_N))
def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path, layout: str) -> None:
    a = _hashes(write_layout(layout, tmp_path / "a", n=SMALL_N[layout], seed=3, size=64))
    b = _hashes(write_layout(layout, tmp_path / "b", n=SMALL_N[layout], seed=3, size=64))
    c = _hashes(write_layout(layout, tmp_path / "c", n=SMALL_N[layout], seed=4, size=64))
    assert a and a == b
    images = [k for k in a if k.endswith((".jpg", ".png"))]
    assert images
    assert sum(a[k] != c.get(k) for k in images) >= len(images) // 2 + 1


def test_image_does_not_depend_on_generation_order() -> None:
    def draw(i: int) -> np.ndarray:
        rng = image_rng(7, i)
        return render_fundus(sample_course_spec(rng, 64), rng)[0]

    forward = [draw(i) for i in range(4)]
    backward = [draw(i) for i in reversed(range(4))][::-1]
    for f, b in zip(forward, backward):
        np.testing.assert_array_equal(f, b)
    assert not np.array_equal(forward[0], forward[1])


def test_same_eye_other_camera_keeps_anatomy() -> None:
    spec = FundusSpec(size=96, dr_grade=3)
    cam = replace(spec, camera=CameraSpec(gain=0.8, colour_cast=(1.0, 0.9, 1.2), noise_sigma=3))
    _, m1 = render_fundus(spec, image_rng(5, 0))
    img2, m2 = render_fundus(cam, image_rng(5, 0), image_rng(5, 1))
    img1, _ = render_fundus(spec, image_rng(5, 0))
    for name in ("MA", "HE", "OD"):
        np.testing.assert_array_equal(m1[name], m2[name])
    assert not np.array_equal(img1, img2)


# ----------------------------------------------------------------------------- one image
def test_render_returns_rgb_image_and_all_masks_inside_fov() -> None:
    spec = FundusSpec(size=128, dr_grade=4, amd=True, camera=CameraSpec(fov_clip=0.08))
    img, masks = _render(spec)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert set(masks) == set(MASK_NAMES)
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(xx - 63.5, yy - 63.5) / (0.47 * 128)
    outside = (r > 1.02) | (yy < round(0.08 * 128))
    assert img[outside].max() <= 2  # black outside the field of view
    assert img[r < 0.8].mean() > 40  # retina is lit
    for name, m in masks.items():
        assert m.shape == (128, 128) and m.dtype == bool, name
        assert not m[outside].any(), f"{name} mask leaks outside the FOV"
    assert masks["NV"].any() and masks["drusen"].any()


def test_grade_zero_has_no_dr_lesions_and_grades_add_lesions() -> None:
    for seed in range(3):
        _, m0 = _render(FundusSpec(size=96, dr_grade=0), seed)
        assert not any(m0[k].any() for k in DR_MASKS)
        _, m1 = _render(FundusSpec(size=96, dr_grade=1), seed)
        assert m1["MA"].any() and not m1["HE"].any() and not m1["NV"].any()
        _, m2 = _render(FundusSpec(size=96, dr_grade=2), seed)
        assert m2["MA"].any() and m2["HE"].any() and m2["EX"].any() and not m2["NV"].any()
        _, m3 = _render(FundusSpec(size=96, dr_grade=3), seed)
        assert m3["SE"].any() and m3["HE"].sum() > m2["HE"].sum() / 2
        _, m4 = _render(FundusSpec(size=96, dr_grade=4), seed)
        assert m4["NV"].any()


def test_microaneurysms_are_visible_at_256px() -> None:
    img, m = _render(FundusSpec(size=256, dr_grade=1))
    n, _, stats, _ = cv2.connectedComponentsWithStats(m["MA"].astype(np.uint8))
    widths = stats[1:, cv2.CC_STAT_WIDTH]
    assert n - 1 >= 3 and np.median(widths) >= 2.5
    green = img[..., 1].astype(float)
    retina = green[m["OD"] == 0][green[m["OD"] == 0] > 20]
    assert green[m["MA"]].mean() < 0.8 * np.median(retina)  # darker than the background


def test_bright_lesions_are_brighter_than_retina() -> None:
    img, m = _render(FundusSpec(size=128, dr_grade=2, amd=True))
    g = img[..., 1].astype(float)
    bg = np.median(g[g > 20])
    assert g[m["EX"]].mean() > 1.3 * bg
    assert g[m["drusen"]].mean() > 1.15 * bg
    assert g[m["HE"]].mean() < 0.8 * bg


def test_glaucoma_has_a_larger_cup() -> None:
    ratios = {}
    for glaucoma in (False, True):
        vals = []
        for seed in range(4):
            spec = FundusSpec(size=128, glaucoma=glaucoma)
            _, m = _render(spec, seed)
            vals.append(np.sqrt(m["cup"].sum() / m["OD"].sum()))
        ratios[glaucoma] = np.array(vals)
    assert ratios[True].min() > ratios[False].max() + 0.15
    assert 0.2 < ratios[False].mean() < 0.4 and 0.55 < ratios[True].mean() < 0.85
    _, m = _render(FundusSpec(size=128, cup_to_disc_ratio=0.5))
    assert abs(np.sqrt(m["cup"].sum() / m["OD"].sum()) - 0.5) < 0.06


def test_disc_is_on_the_nasal_side() -> None:
    for eye, side in (("right", 1), ("left", -1)):
        _, m = _render(FundusSpec(size=96, eye=eye))
        x = np.nonzero(m["OD"])[1].mean()
        assert side * (x - 47.5) > 0.25 * 96 * 0.47, (eye, x)


def test_extras_render_and_change_the_image() -> None:
    base = _render(FundusSpec(size=64))[0].astype(int)
    for extra, change in (("cataract", 5.0), ("myopia", 5.0), ("hypertensive", 1.0),
                          ("hard_drusen", 0.2)):
        img = _render(FundusSpec(size=64, **{extra: True}))[0].astype(int)
        assert np.abs(img - base).mean() > change, extra
    def sharpness(img: np.ndarray) -> float:  # inside the FOV, away from its rim
        return float(cv2.Laplacian(img[16:48, 16:48, 1].astype(np.uint8), cv2.CV_64F).var())

    assert sharpness(_render(FundusSpec(size=64, cataract=True))[0]) < 0.5 * sharpness(base)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="eye"):
        FundusSpec(eye="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dr_grade"):
        FundusSpec(dr_grade=5)
    with pytest.raises(ValueError, match="cup_to_disc_ratio"):
        FundusSpec(cup_to_disc_ratio=1.2)


def test_course_sampler_label_mix() -> None:
    specs = [sample_course_spec(image_rng(0, i)) for i in range(400)]
    labels = pd.DataFrame([s.course_labels() for s in specs])
    assert 0.55 < labels["D"].mean() < 0.75
    assert 0.12 < labels["G"].mean() < 0.3 and 0.1 < labels["A"].mean() < 0.28
    assert labels.sum(axis=1).min() >= 1  # the course data has no all-negative images
    cdr = np.array([s.cup_to_disc_ratio for s in specs])
    g = labels["G"].to_numpy().astype(bool)
    assert cdr[g].min() >= 0.55 > cdr[~g].max()
    many = [sample_many_label_spec(image_rng(1, i)) for i in range(200)]
    assert any(s.cataract for s in many) and any(s.myopia for s in many)


# ----------------------------------------------------------------------------- layouts
def _readable(path: Path, size: int) -> None:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    assert img.shape[:2] == (size, size), path


def test_odir_course_layout(tmp_path: Path) -> None:
    root = write_layout("odir-course", tmp_path, n=12, seed=0, size=64)
    csvs = {"train": "train.csv", "val": "val.csv", "offsite_test": "offsite_test.csv",
            "onsite_test": "onsite_test_submission.csv"}
    patients: dict[str, set[str]] = {}
    total = 0
    for split, name in csvs.items():
        df = pd.read_csv(root / name)
        assert list(df.columns) == ["id", "D", "G", "A"] and len(df) >= 1
        total += len(df)
        assert df["id"].str.fullmatch(r"\d+_(left|right)\.jpg").all()
        for image_id in df["id"]:
            _readable(root / "images" / split / image_id, 64)
        patients[split] = set(df["id"].str.split("_").str[0])
        if split == "onsite_test":
            assert (df[["D", "G", "A"]] == 0).all().all()
        else:
            assert df[["D", "G", "A"]].isin([0, 1]).all().all()
    assert total == 12
    splits = list(patients)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not patients[a] & patients[b], f"patient in both {a} and {b}"
    default = write_layout("odir-course", tmp_path / "default", size=32)
    assert [len(pd.read_csv(default / n)) for n in csvs.values()] == [80, 20, 20, 25]


def test_odir5k_layout_keywords_imply_labels(tmp_path: Path) -> None:
    root = write_layout("odir5k", tmp_path, n=30, seed=1, size=48)
    df = pd.read_csv(root / "labels.csv")
    assert list(df.columns) == ["id", "patient_id", "eye", "age", "sex", "D", "G", "A", "C", "H",
                                "M", "N", "dr_grade", "keywords"]
    assert len(df) == 30 and df["id"].is_unique
    for _, row in df.iterrows():
        _readable(root / "images" / row["id"], 48)
        kw = row["keywords"].split(",")
        assert row["N"] == int(kw == ["normal fundus"])
        assert row["G"] == int("glaucoma" in kw)
        assert row["C"] == int("cataract" in kw)
        assert row["A"] == int(any("age-related macular degeneration" in k for k in kw))
        diabetic = any("retinopathy" in k and "hypertensive" not in k for k in kw)
        assert row["D"] == int(row["dr_grade"] > 0) == int(diabetic)
    assert df.groupby("patient_id")["eye"].nunique().max() == 2
    assert odir5k_keywords(FundusSpec()) == ["normal fundus"]


def test_deepdrid_layout(tmp_path: Path) -> None:
    root = write_layout("deepdrid", tmp_path, n=12, seed=0, size=48)
    seen = 0
    for split in ("training", "validation", "testing"):
        folder = root / f"regular-fundus-{split}"
        df = pd.read_csv(folder / f"regular-fundus-{split}.csv")
        assert list(df.columns)[:6] == ["patient_id", "image_id", "image_path", "left_eye_DR_Level",
                                        "right_eye_DR_Level", "patient_DR_Level"]
        for _, row in df.iterrows():
            assert re.fullmatch(rf"{row['patient_id']}_[lr][12]", row["image_id"])
            _readable(folder / "Images" / str(row["patient_id"]) / f"{row['image_id']}.jpg", 48)
            side = "left" if row["image_id"].split("_")[1][0] == "l" else "right"
            own = f"{side}_eye_DR_Level"
            assert 0 <= row[own] <= 4 and row["patient_DR_Level"] >= row[own]
        seen += len(df)
    assert seen == 12
    with pytest.raises(ValueError, match="deepdrid"):
        write_layout("deepdrid", tmp_path / "tiny", n=4, size=48)


def test_aptos_layout(tmp_path: Path) -> None:
    root = write_layout("aptos", tmp_path, n=10, seed=0, size=48)
    train = pd.read_csv(root / "train.csv", dtype=str)
    test = pd.read_csv(root / "test.csv", dtype=str)
    assert list(train.columns) == ["id_code", "diagnosis"] and list(test.columns) == ["id_code"]
    assert len(train) + len(test) == 10 and set(train["diagnosis"].astype(int)) == set(range(5))
    for code in train["id_code"]:
        _readable(root / "train_images" / f"{code}.png", 48)
    for code in test["id_code"]:
        _readable(root / "test_images" / f"{code}.png", 48)


def test_rfmid_layout(tmp_path: Path) -> None:
    root = write_layout("rfmid", tmp_path, n=10, seed=0, size=48)
    sets = [("Training_Set", "RFMiD_Training_Labels.csv", "Training"),
            ("Evaluation_Set", "RFMiD_Validation_Labels.csv", "Validation"),
            ("Test_Set", "RFMiD_Testing_Labels.csv", "Test")]
    for folder, csv, sub in sets:
        df = pd.read_csv(root / folder / csv)
        assert list(df.columns[:3]) == ["ID", "Disease_Risk", "DR"] and df.shape[1] >= 8
        diseases = df.columns[2:]
        assert (df["Disease_Risk"] >= df[diseases].max(axis=1)).all()
        for i in df["ID"]:
            _readable(root / folder / sub / f"{i}.png", 48)


def test_idrid_layout_writes_nonempty_binary_masks(tmp_path: Path) -> None:
    root = write_layout("idrid", tmp_path, n=3, seed=0, size=96)
    seg = root / "A. Segmentation"
    images = sorted((seg / "1. Original Images").rglob("IDRiD_*.jpg"))
    assert [p.name for p in images] == ["IDRiD_01.jpg", "IDRiD_02.jpg", "IDRiD_03.jpg"]
    assert {p.parent.name for p in images} == {"a. Training Set", "b. Testing Set"}
    masks = sorted((seg / "2. All Segmentation Groundtruths").rglob("*.tif"))
    assert len([m for m in masks if m.name.endswith("_OD.tif")]) == 3
    assert any(m.parent.name == "1. Microaneurysms" for m in masks)
    for m in masks:
        arr = cv2.imread(str(m), cv2.IMREAD_UNCHANGED)
        assert arr.shape == (96, 96) and set(np.unique(arr)) == {0, 255}, m
        lesion = m.stem.split("_")[-1]
        assert lesion in {"MA", "HE", "EX", "SE", "OD"}
        assert m.parent.parent.name in {"a. Training Set", "b. Testing Set"}


def test_write_layout_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid names: aptos, deepdrid"):
        write_layout("odir-kaggle", tmp_path)
    with pytest.raises(ValueError, match="n must be"):
        write_layout("odir-course", tmp_path, n=0)
    with pytest.raises(ValueError, match="odir-course"):
        write_layout("odir-course", tmp_path, n=3, size=32)
    assert set(LAYOUTS.names()) == set(SMALL_N)


def test_contact_sheet() -> None:
    imgs = [np.full((32, 32, 3), v, np.uint8) for v in (50, 100, 150)]
    sheet = contact_sheet(imgs, ["a", "b", "c"], cols=2)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 64 and sheet.shape[0] > 64
    assert (sheet[:32, :32] == 50).all() and (sheet[:32, 32:] == 100).all()
    with pytest.raises(ValueError, match="captions"):
        contact_sheet(imgs, ["a"], cols=2)
