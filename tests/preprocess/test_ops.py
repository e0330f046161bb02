"""Tests for funduslab.preprocess.ops: each fundus operation on small synthetic images."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from funduslab.preprocess import PREPROCESS
from funduslab.preprocess.ops import (
    ben_graham,
    circle_crop,
    clahe,
    find_fov,
    gaussian_blur,
    resize,
    sharpen,
)


def _disc_on_black(
    h: int = 120, w: int = 160, cx: float = 90, cy: float = 60, r: float = 40
) -> np.ndarray:
    """A smooth orange disc (a field of view) on black."""
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2
    img = np.zeros((h, w, 3), dtype=np.uint8)
    shade = 150 + 30 * (xx - cx) / r
    img[..., 0] = np.where(inside, shade, 0)
    img[..., 1] = np.where(inside, 80, 0)
    img[..., 2] = np.where(inside, 40, 0)
    return img


def _high_freq_energy(rgb: np.ndarray) -> float:
    gray = rgb.astype(np.float64).mean(axis=2)
    return float((cv2.Laplacian(gray, cv2.CV_64F) ** 2).mean())


def _textured(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.full((size, size, 3), (150, 90, 60), dtype=np.float64)
    return (base + rng.normal(0, 12, (size, size, 3))).clip(0, 255).astype(np.uint8)


def test_all_steps_registered() -> None:
    assert set(PREPROCESS.names()) >= {
        "circle_crop", "ben_graham", "clahe", "gaussian_blur", "sharpen", "resize"
    }


@pytest.mark.parametrize("name", PREPROCESS.names())
def test_every_step_returns_uint8_rgb(name: str) -> None:
    out = PREPROCESS.get(name)(_disc_on_black())
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


def test_find_fov_locates_disc() -> None:
    fov = find_fov(_disc_on_black())
    assert fov is not None
    assert abs(fov.cx - 90) <= 1.5 and abs(fov.cy - 60) <= 1.5 and abs(fov.radius - 40) <= 1.5


def test_circle_crop_removes_black_border() -> None:
    img = _disc_on_black()
    img[2:8, 2:30] = 255  # a caption in the border must not widen the crop
    out = circle_crop(img)
    assert out.shape[0] == out.shape[1] and abs(out.shape[0] - 80) <= 2
    # the disc now touches all four sides, centred
    mid = out.shape[0] // 2
    for edge in (out[mid, :3], out[mid, -3:], out[:3, mid], out[-3:, mid]):
        assert edge.max() > 60
    assert out[:4, :4].max() == 0 and out[-4:, -4:].max() == 0  # corners outside the circle
    np.testing.assert_array_equal(out[mid, mid], img[60, 90])


def test_circle_crop_pads_a_clipped_circle_to_square() -> None:
    img = _disc_on_black(h=70, w=160, cx=80, cy=35, r=50)  # clipped at top and bottom
    out = circle_crop(img, mask_outside=False)
    assert out.shape == (100, 100, 3)
    assert out[:15].max() == 0 and out[-15:].max() == 0  # padding rows above and below
    assert out[50, 50].max() > 0


def test_circle_crop_all_black_returned_as_is(caplog: pytest.LogCaptureFixture) -> None:
    black = np.zeros((30, 40, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="funduslab.preprocess.ops"):
        out = circle_crop(black)
    np.testing.assert_array_equal(out, black)
    assert out is not black
    assert any("no field of view" in r.message for r in caplog.records)


def test_ben_graham_mean_128_inside_fov_on_smooth_image() -> None:
    yy, xx = np.mgrid[0:128, 0:128]
    smooth = np.stack([80 + xx * 0.5, 60 + yy * 0.3, np.full_like(xx, 40.0)], -1).astype(np.uint8)
    out = ben_graham(smooth)
    fov_mask = (xx + 0.5 - 64) ** 2 + (yy + 0.5 - 64) ** 2 <= (0.9 * 64) ** 2
    inside = out[fov_mask].astype(np.float64)
    assert abs(inside.mean() - 128) < 3
    assert np.all(out[~fov_mask] == 128)  # the original's grey surround


def test_ben_graham_enhances_local_detail_and_masks_border() -> None:
    img = _disc_on_black(h=100, w=100, cx=50, cy=50, r=48)
    img[50, 30:70, 1] -= 40  # a thin dark "vessel" in the green channel
    out = ben_graham(img, outside=0)
    assert out[0, 0].max() == 0 and out[50, 3].max() == 0  # beyond 0.9 r
    dip_out = float(out[44, 40:60, 1].mean()) - float(out[50, 40:60, 1].mean())
    assert dip_out > 80  # a 40-level dip, thinner than sigma = r/30, amplified about 3x
    assert abs(float(out[30:40, 40:60].mean()) - 128) < 4  # flat background -> 128


def test_clahe_raises_local_contrast() -> None:
    rng = np.random.default_rng(3)
    low = np.full((64, 64, 3), (120, 80, 60), dtype=np.int64)
    low += rng.integers(-4, 5, (64, 64, 1))
    low = low.clip(0, 255).astype(np.uint8)
    out = clahe(low, clip_limit=3.0, tile_grid=4)
    lab_in = cv2.cvtColor(low, cv2.COLOR_RGB2LAB)[..., 0].std()
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)[..., 0].std()
    assert lab_out > 1.5 * lab_in
    assert out.shape == low.shape


def test_sharpen_increases_and_blur_decreases_high_frequency_energy() -> None:
    img = _textured()
    base = _high_freq_energy(img)
    assert _high_freq_energy(sharpen(img, amount=1.0, sigma=1.0)) > 1.5 * base
    assert _high_freq_energy(gaussian_blur(img, sigma=1.5)) < 0.5 * base
    np.testing.assert_array_equal(gaussian_blur(img, sigma=0), img)
    np.testing.assert_array_equal(sharpen(img, amount=0), img)


def test_sharpen_matches_independent_unsharp_mask() -> None:
    img = _textured(seed=5)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0).astype(np.float64)
    expected = np.clip(np.rint(2.0 * img - blurred), 0, 255)
    got = sharpen(img, amount=1.0, sigma=2.0).astype(np.float64)
    assert np.abs(got - expected).max() <= 1


def test_resize_square_and_padding() -> None:
    down = resize(_textured(size=64), size=32)
    assert down.shape == (32, 32, 3)
    wide = np.full((20, 40, 3), 200, dtype=np.uint8)
    out = resize(wide, size=80)
    assert out.shape == (80, 80, 3)
    assert out[:15].max() == 0 and out[-15:].max() == 0  # black bands from padding
    assert out[40, 40].min() >= 195
    stretched = resize(wide, size=80, pad_to_square=False)
    assert stretched[2:-2, 2:-2].min() >= 195


def test_resize_downscale_averages_with_inter_area() -> None:
    checker = np.indices((64, 64)).sum(axis=0) % 2 * 255
    img = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    out = resize(img, size=16)
    assert np.abs(out.astype(int) - 128).max() <= 1


@pytest.mark.parametrize(
    ("fn", "params", "err", "match"),
    [
        (clahe, {"clip_limit": -1.0}, ValueError, "clip_limit"),
        (clahe, {"tile_grid": (2, 2, 2)}, ValueError, "tile_grid"),
        (resize, {"size": 0}, ValueError, "size"),
        (resize, {"size": 12.5}, TypeError, "size"),
        (gaussian_blur, {"sigma": -1}, ValueError, "sigma"),
        (sharpen, {"sigma": 0}, ValueError, "sigma"),
        (ben_graham, {"outside": 300}, ValueError, "outside"),
        (circle_crop, {"mask_outside": "yes"}, TypeError, "mask_outside"),
    ],
)
def test_bad_parameters_are_named(fn, params, err, match) -> None:  # noqa: ANN001
    with pytest.raises(err, match=match):
        fn(_textured(), **params)


def test_bad_input_image_rejected() -> None:
    with pytest.raises(TypeError, match="uint8"):
        clahe(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        resize(np.zeros((8, 8), np.uint8), size=4)


def test_disc_mask_matches_distance_formula() -> None:
    from funduslab.preprocess.ops import _disc_mask

    rng = np.random.default_rng(7)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        cx, cy = rng.uniform(-3, 43, 2)
        r = rng.uniform(0, 30)
        yy, xx = np.ogrid[:h, :w]
        expected = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2
        np.testing.assert_array_equal(_disc_mask((h, w), cx, cy, r).astype(bool), expected)


def test_ben_graham_reduced_blur_close_to_exact_on_large_image() -> None:
    rng = np.random.default_rng(11)
    img = np.zeros((1040, 1040, 3), dtype=np.uint8)
    cv2.circle(img, (520, 520), 515, (170, 85, 45), -1)
    for _ in range(15):
        p, q = rng.integers(200, 840, 2), rng.integers(200, 840, 2)
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), (120, 40, 20), 5)
    out = ben_graham(img)  # sigma = 520 / 30 > 16 px: reduced-resolution background
    fov = find_fov(img)
    assert fov is not None
    exact = cv2.addWeighted(img, 4.0, cv2.GaussianBlur(img, (0, 0), fov.radius / 30), -4.0, 128.0)
    yy, xx = np.ogrid[:1040, :1040]
    inside = (xx + 0.5 - fov.cx) ** 2 + (yy + 0.5 - fov.cy) ** 2 <= (0.9 * fov.radius) ** 2
    diff = np.abs(out.astype(int) - exact.astype(int))[inside]
    assert diff.mean() < 1.0 and diff.max() <= 8
