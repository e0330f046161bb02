"""Masks and points follow the crop, pad and resize of a preprocessing pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from funduslab.data.cache import decode_preprocessed
from funduslab.preprocess import build_pipeline
from funduslab.preprocess.geometry import Placement, preprocess_with_masks

LESION = (slice(20, 26), slice(40, 46))  # rows, columns of a bright yellow spot
RETINA, SPOT = (180, 90, 40), (250, 250, 120)


def _photo() -> tuple[np.ndarray, np.ndarray]:
    """A non-square photograph: an off-centre fundus disc with one lesion, and its mask."""
    rgb = np.zeros((60, 80, 3), np.uint8)
    cv2.circle(rgb, (45, 30), 26, RETINA, -1)
    rgb[LESION] = SPOT
    mask = np.zeros((60, 80), bool)
    mask[LESION] = True
    return rgb, mask


@pytest.mark.parametrize("spec", ["none", "circle_crop", "circle_crop,clahe", "ben_graham"])
def test_image_is_the_cached_one_and_mask_sits_on_the_lesion(tmp_path: Path, spec: str):
    rgb, mask = _photo()
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    pipeline = build_pipeline(spec, 32)
    img, moved, place = preprocess_with_masks(rgb, mask[None], pipeline, 32)
    np.testing.assert_array_equal(img, decode_preprocessed(path, pipeline, 32))
    assert moved.shape == (1, 32, 32) and moved.dtype == bool
    # the same geometry applied to the lesion's own pixels: a geometry-only pipeline on the photo
    plain = build_pipeline(spec.replace(",clahe", "") if "circle" in spec else "none", 32)
    _, seen, _ = preprocess_with_masks(rgb, mask[None], plain, 32)
    green = plain(rgb)[..., 1].astype(int)
    touched = green >= RETINA[1] + 2  # a visible part of the pixel is lesion
    assert (green > (RETINA[1] + SPOT[1]) / 2).any()  # some pixels are mostly lesion
    assert (moved[0] >= touched).all()  # every lesion pixel is in the moved mask …
    near = cv2.dilate(touched.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (moved[0] & ~near).any()  # … and the mask holds nothing far from the lesion
    np.testing.assert_array_equal(moved, seen)
    # the lesion centre lands on the moved mask's centre
    ys, xs = np.nonzero(moved[0])
    cx, cy = place.point(42.5, 22.5)
    assert abs(cx - xs.mean()) < 0.75 and abs(cy - ys.mean()) < 0.75


def test_upscaling_keeps_the_mask_on_the_lesion():
    rgb, mask = _photo()
    img, moved, place = preprocess_with_masks(rgb, mask[None], build_pipeline("circle_crop", 128),
                                              128)
    ys, xs = np.nonzero(moved[0])
    assert img[ys, xs, 1].mean() > 200  # under the mask: the yellow spot
    cx, cy = place.point(42.5, 22.5)
    assert abs(cx - xs.mean()) < 1 and abs(cy - ys.mean()) < 1


def test_placement_composes_like_two_affine_maps():
    a, b = Placement(2, 3, 1, -1), Placement(0.5, 0.5, 4, 2)
    x, y = b.point(*a.point(3.0, 5.0))
    assert a.then(b).point(3.0, 5.0) == pytest.approx((x, y))


def test_masks_must_match_the_image():
    rgb, mask = _photo()
    with pytest.raises(ValueError, match="masks must be"):
        preprocess_with_masks(rgb, mask[None, :, :70], build_pipeline("none", 32), 32)
