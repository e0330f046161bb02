"""``write_layout(masks=True)`` / ``funduslab synth --masks``: per-label lesion masks beside the
images, aligned with the rendered findings, and images unchanged by writing them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from funduslab.data.adapters import load_table
from funduslab.data.imageio import read_mask, read_rgb
from funduslab.data.mask_index import read_landmarks, read_mask_index
from funduslab.data.synthetic import (
    MASK_NAMES,
    FundusSpec,
    image_rng,
    render_fundus,
    sample_course_spec,
    sample_many_label_spec,
)
from funduslab.data.synthetic_layouts import write_layout
from funduslab.data.synthetic_masks import LABEL_FINDINGS

SMALL_N = {"odir-course": 12, "odir5k": 16, "rfmid": 12, "idrid": 4}
SEED, SIZE = 5, 64
#: labels whose finding is always drawn (hypertensive flame haemorrhages may all fall outside)
ALWAYS_DRAWN = {"D", "G", "A", "M", "DR", "ARMD", "DN", "MYA", "ODC", "CWS", "MA", "HE", "EX",
                "SE"}


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each layout written twice with the same seed: without and with masks."""
    base = tmp_path_factory.mktemp("masks")
    return {layout: (write_layout(layout, base / f"{layout}-plain", n=n, seed=SEED, size=SIZE),
                     write_layout(layout, base / f"{layout}-masks", n=n, seed=SEED, size=SIZE,
                                  masks=True))
            for layout, n in SMALL_N.items()}


def test_every_multilabel_layout_has_rules():
    assert sorted(LABEL_FINDINGS) == sorted(SMALL_N)
    for rules in LABEL_FINDINGS.values():
        assert all(set(names) <= set(MASK_NAMES) for names in rules.values())


@pytest.mark.parametrize("layout", sorted(SMALL_N))
def test_masks_change_no_byte_of_the_dataset(written, layout):
    plain, masked = (_hashes(root) for root in written[layout])
    extra = {k: v for k, v in masked.items() if not k.startswith("masks/")}
    assert extra == plain
    assert "masks/masks.csv" in masked and "masks/landmarks.csv" in masked
    assert not (written[layout][0] / "masks").exists()


def test_the_generator_stream_is_unchanged():
    """Digest of rendered pixels (before JPEG) taken with the generator as it was before masks
    and landmarks were added; it must only change when the images are meant to change."""
    digest = hashlib.sha256()
    specs = [FundusSpec(size=64, eye="left", dr_grade=3, hypertensive=True, myopia=True),
             FundusSpec(size=64, amd=True, glaucoma=True, cataract=True, hard_drusen=True)]
    for i in range(6):
        rng = image_rng(11, i)
        spec = specs[i] if i < len(specs) else sample_many_label_spec(rng, 64)
        img, masks, _ = render_fundus(spec, rng, return_landmarks=True)
        digest.update(img.tobytes())
        for name in MASK_NAMES[:9]:  # the nine masks that existed then
            digest.update(np.packbits(masks[name]).tobytes())
    assert digest.hexdigest() == GOLDEN


@pytest.mark.parametrize("layout", sorted(SMALL_N))
def test_index_matches_the_adapter_table(written, layout):
    root = written[layout][1]
    index = read_mask_index(root / "masks")
    frame = load_table(layout, root).frame.set_index("id")
    assert list(index.columns) == ["id", "image", "label", "path", "findings"]
    assert index["id"].isin(frame.index).all()
    assert index["label"].isin(list(LABEL_FINDINGS[layout])).all()
    assert all(frame.at[i, lab] == 1 for i, lab in zip(index["id"], index["label"]))
    for row in index.itertuples():
        mask, image = read_mask(row.path), read_rgb(root / row.image)
        assert Path(frame.at[row.id, "path"]).resolve() == (root / row.image).resolve()
        assert mask.shape == image.shape[:2] and mask.any()
        assert row.findings == "+".join(LABEL_FINDINGS[layout][row.label])
    labelled = frame[frame["labelled"]]
    due = {(i, lab) for lab in LABEL_FINDINGS[layout] if lab in ALWAYS_DRAWN
           for i in labelled.index[labelled[lab] == 1]}
    assert due, "the sample has no positive label to check"
    assert due <= set(zip(index["id"], index["label"]))


def _rerender(layout: str, root: Path, image_id: str):
    """The image's findings and landmarks from the generator's documented seeding."""
    if layout in ("odir-course", "odir5k"):
        pid, eye = Path(image_id).stem.split("_")
        rng = image_rng(SEED, int(pid), ("left", "right").index(eye))
        sampler = sample_course_spec if layout == "odir-course" else sample_many_label_spec
        spec = sampler(rng, SIZE, eye=eye)
    else:  # rfmid: one global image counter over the sets, all drawn as left eyes
        split, number = image_id.split("-")
        before = {"train": [], "val": ["Training_Set/RFMiD_Training_Labels.csv"],
                  "test": ["Training_Set/RFMiD_Training_Labels.csv",
                           "Evaluation_Set/RFMiD_Validation_Labels.csv"]}[split]
        k = sum(len(pd.read_csv(root / csv)) for csv in before) + int(number) - 1
        rng = image_rng(SEED, k, 0)
        spec = sample_many_label_spec(rng, SIZE, eye="left")
    _, masks, marks = render_fundus(spec, rng, return_landmarks=True)
    return masks, marks


@pytest.mark.parametrize("layout", ["odir-course", "odir5k", "rfmid"])
def test_masks_are_the_rendered_findings(written, layout):
    root = written[layout][1]
    index = read_mask_index(root / "masks")
    landmarks = read_landmarks(root / "masks")
    assert set(landmarks.index) >= set(index["id"])
    for row in index.itertuples():
        masks, marks = _rerender(layout, root, row.id)
        union = np.logical_or.reduce([masks[n] for n in LABEL_FINDINGS[layout][row.label]])
        np.testing.assert_array_equal(read_mask(row.path), union, err_msg=f"{row.id} {row.label}")
        fx, fy = landmarks.loc[row.id, ["fovea_x", "fovea_y"]]
        assert (fx, fy) == pytest.approx(marks["fovea"], abs=0.006)
        dx, dy = marks["disc"]
        assert masks["OD"][round(dy), round(dx)]  # the disc landmark is on the disc
        assert not masks["OD"][round(fy), round(fx)]  # the fovea is not
        assert (dx - SIZE / 2) * (fx - SIZE / 2) < 0  # on opposite sides of the centre


def test_idrid_masks_equal_its_ground_truth_files(written):
    root = written["idrid"][1]
    index = read_mask_index(root / "masks")
    frame = load_table("idrid", root).frame.set_index("id")
    assert len(index) and set(index["label"]) <= {"MA", "HE", "EX", "SE"}
    for row in index.itertuples():
        truth = read_mask(frame.at[row.id, f"mask_{row.label}"])
        np.testing.assert_array_equal(read_mask(row.path), truth)


@pytest.mark.parametrize("layout", ["aptos", "deepdrid"])
def test_grading_layouts_refuse_masks(tmp_path: Path, layout: str):
    with pytest.raises(ValueError, match="graded"):
        write_layout(layout, tmp_path / layout, n=10, size=SIZE, masks=True)
    assert not (tmp_path / layout).exists()


def test_cli_synth_masks(tmp_path: Path):
    from funduslab.cli import app

    out = tmp_path / "o5k"
    result = CliRunner().invoke(app, ["synth", "--layout", "odir5k", "--out", str(out), "--n", "8",
                                      "--image-size", "48", "--masks"])
    assert result.exit_code == 0, result.output
    assert len(read_mask_index(out / "masks")) >= 1
    result = CliRunner().invoke(app, ["synth", "--layout", "aptos", "--out", str(tmp_path / "a"),
                                      "--n", "5", "--masks"])
    assert result.exit_code == 2 and "graded" in result.output


GOLDEN = "925a19a8191f9cf42a89e106425ab67de9f1114ee0052ebb5b41caf88941a6e1"
