"""Overlays and panel figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from funduslab.explain.panels import PanelEntry, overlay, panel_filename, save_panel


def _entry(attention: bool = False) -> PanelEntry:
    rng = np.random.default_rng(0)
    return PanelEntry(
        image_id="913_right.jpg", image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        cams=rng.random((3, 32, 32)).astype(np.float32), probabilities=np.array([0.9, 0.2, 0.5]),
        predicted=np.array([1, 0, 1]), truth=np.array([1, 0, 0]),
        attention=rng.random((2, 32, 32)).astype(np.float32) if attention else None,
    )


def test_overlay_is_rgb_uint8_and_hot_where_the_map_is_high():
    image = np.full((16, 16, 3), 128, np.uint8)
    heat = np.zeros((16, 16), np.float32)
    heat[:, 8:] = 1.0
    out = overlay(image, heat)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    # jet colour map: 0 → blue, 1 → red (RGB order)
    assert out[0, 0, 2] > out[0, 0, 0] and out[0, 15, 0] > out[0, 15, 2]


def test_overlay_checks_its_input():
    with pytest.raises(ValueError, match="does not match"):
        overlay(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 2.0))


def test_panel_filename_is_safe():
    assert panel_filename("913_right.jpg", "gradcam++") == "913_right_gradcampp.png"
    assert panel_filename("../x y/ä.png", "gradcam") == "image_gradcam.png"
    assert panel_filename("a b#c.jpg", "eigencam") == "a_b_c_eigencam.png"


def test_save_panel_writes_a_png_and_an_attention_row_adds_height(tmp_path: Path):
    one = save_panel(_entry(), ["D", "G", "A"], "gradcam", tmp_path / "one.png")
    two = save_panel(_entry(attention=True), ["D", "G", "A"], "gradcam", tmp_path / "two.png")
    w1, h1 = Image.open(one).size
    w2, h2 = Image.open(two).size
    assert w1 == w2 and h2 > 1.8 * h1
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="3 heat maps for 2 labels"):
        save_panel(_entry(), ["D", "G"], "gradcam", tmp_path / "bad.png")
