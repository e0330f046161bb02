"""Pointing game, energy and baselines on hand-made maps whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from funduslab.explain.localisation import (
    area_fraction,
    centre_bias_map,
    default_tolerance_px,
    energy_in_mask,
    grow_mask,
    peak_location,
    pointing_game,
    random_map,
)


def _mask() -> np.ndarray:
    mask = np.zeros((40, 50), bool)
    mask[10:16, 30:38] = True  # 48 px of 2000
    return mask


def _bump(x: float, y: float, shape=(40, 50), sigma: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_map_peaked_inside_the_mask_hits_with_energy_near_one():
    cam = _bump(33.5, 12.5, sigma=1.2)
    assert pointing_game(cam, _mask(), tolerance_px=0) == 1.0
    assert energy_in_mask(cam, _mask()) > 0.97


def test_map_peaked_outside_misses_unless_within_the_tolerance():
    cam = _bump(5, 30)
    assert pointing_game(cam, _mask(), tolerance_px=3) == 0.0
    assert energy_in_mask(cam, _mask()) < 0.01
    near = _bump(41, 12)  # 4 px right of the mask's last column (37)
    assert pointing_game(near, _mask(), tolerance_px=3) == 0.0
    assert pointing_game(near, _mask(), tolerance_px=4) == 1.0


def test_uniform_map_energy_is_the_mask_area_fraction_and_points_nowhere():
    flat = np.full((40, 50), 0.3, np.float32)
    assert energy_in_mask(flat, _mask()) == pytest.approx(48 / 2000)
    assert np.isnan(pointing_game(flat, _mask(), 2))
    assert np.isnan(energy_in_mask(np.zeros((40, 50), np.float32), _mask()))


def test_a_region_limits_the_maximum_the_mass_and_the_chance_level():
    fov = np.zeros((40, 50), bool)
    fov[:, 20:] = True  # 1200 px
    cam = _bump(33.5, 12.5, sigma=1.2) * 0.5
    cam[30, 5] = 1.0  # the global maximum, outside the region
    assert pointing_game(cam, _mask(), 0) == 0.0
    assert pointing_game(cam, _mask(), 0, within=fov) == 1.0
    assert peak_location(cam, fov) == (pytest.approx(33.5, abs=0.5), pytest.approx(12.5, abs=0.5))
    flat = np.full((40, 50), 0.3, np.float32)
    assert energy_in_mask(flat, _mask(), within=fov) == pytest.approx(48 / 1200)
    assert area_fraction(_mask(), fov) == pytest.approx(48 / 1200)
    assert area_fraction(_mask()) == pytest.approx(48 / 2000)
    with pytest.raises(ValueError, match="empty"):
        pointing_game(cam, _mask(), 0, within=~fov)


def test_tied_maxima_count_in_proportion():
    cam = np.zeros((40, 50), np.float32)
    cam[12, 33] = cam[30, 5] = cam[31, 5] = cam[35, 45] = 1.0  # one inside, three outside
    assert pointing_game(cam, _mask(), 0) == pytest.approx(0.25)


def test_grow_mask_is_a_disc_dilation():
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    grown = grow_mask(mask, 3)
    yy, xx = np.mgrid[0:21, 0:21]
    dist = np.hypot(xx - 10, yy - 10)
    assert grown[dist <= 2.9].all() and not grown[dist > 3.5].any()
    assert np.array_equal(grow_mask(mask, 0), mask)


def test_default_tolerance_is_15_px_at_224():
    assert default_tolerance_px(224) == 15
    assert default_tolerance_px(64) == 4
    assert default_tolerance_px(8) == 1


def test_random_map_energy_is_about_the_area_fraction():
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), bool)
    mask[:16] = True  # a quarter
    energies = [energy_in_mask(random_map(mask.shape, rng), mask) for _ in range(20)]
    assert np.mean(energies) == pytest.approx(0.25, abs=0.01)
    a = random_map((8, 8), np.random.default_rng(3))
    assert np.array_equal(a, random_map((8, 8), np.random.default_rng(3)))


def test_centre_bias_peaks_at_the_given_point():
    cam = centre_bias_map((40, 50), (12.0, 30.0))
    assert peak_location(cam) == (12.0, 30.0)
    assert cam.max() == pytest.approx(1.0) and cam.min() > 0
    # sigma is a share of the longer side (0.125 × 48 = 6 px): one sigma away, exp(-1/2)
    wide = centre_bias_map((40, 48), (12.0, 30.0))
    assert wide[30, 18] == pytest.approx(np.exp(-0.5), rel=1e-5)
    assert wide[24, 12] == pytest.approx(np.exp(-0.5), rel=1e-5)


@pytest.mark.parametrize(("cam", "mask", "message"), [
    (np.ones((4, 4)), np.ones((4, 5), bool), "same"),
    (np.ones((4, 4)), np.zeros((4, 4), bool), "empty"),
    (-np.ones((4, 4)), np.ones((4, 4), bool), "≥ 0"),
])
def test_bad_input_is_refused(cam, mask, message):
    with pytest.raises(ValueError, match=message):
        energy_in_mask(cam, mask)
