"""Tests for funduslab.data.imageio: decoding, conversions, errors, atomic writes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from funduslab.data import imageio
from funduslab.data.imageio import read_mask, read_rgb, verify_images, write_image_atomic


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack(
        [40 + 3 * xx, 20 + 2 * yy, np.full_like(xx, 90)], axis=-1
    ).clip(0, 255).astype(np.uint8)


def _jpeg(tmp_path: Path, name: str = "a.jpg") -> Path:
    rng = np.random.default_rng(0)
    arr = (_smooth_rgb(96, 128).astype(int) + rng.integers(-20, 20, (96, 128, 3))).clip(0, 255)
    path = tmp_path / name
    Image.fromarray(arr.astype(np.uint8)).save(path, quality=90)
    return path


@pytest.fixture(autouse=True)
def _fresh_conversion_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "_ANNOUNCED", set())


def test_reads_rgb_png_exactly(tmp_path: Path) -> None:
    arr = _smooth_rgb()
    Image.fromarray(arr).save(tmp_path / "x.png")
    out = read_rgb(tmp_path / "x.png")
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_reads_jpeg_close_to_source(tmp_path: Path) -> None:
    path = _jpeg(tmp_path)
    out = read_rgb(str(path))
    assert out.shape == (96, 128, 3)
    assert abs(float(out[..., 0].mean()) - float(out[..., 2].mean())) > 5  # channels not swapped


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "913_right.jpg"
    with pytest.raises(FileNotFoundError, match="913_right.jpg"):
        read_rgb(missing)


def test_directory_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a regular file"):
        read_rgb(tmp_path)


def test_random_bytes_jpg_is_a_value_error(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="corrupt.jpg"):
        read_rgb(bad)


def test_truncated_jpeg_is_caught(tmp_path: Path) -> None:
    data = _jpeg(tmp_path).read_bytes()
    half = tmp_path / "half.jpg"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="half.jpg.*truncated"):
        read_rgb(half)


def test_truncated_jpeg_caught_even_if_pillow_is_lenient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _jpeg(tmp_path).read_bytes()
    half = tmp_path / "half.jpg"
    half.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match="half.jpg"):
        read_rgb(half)
    np.testing.assert_equal(read_rgb(tmp_path / "a.jpg").shape, (96, 128, 3))  # intact still ok


def test_truncated_png_is_caught(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "f.png")
    data = (tmp_path / "f.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.png"):
        read_rgb(tmp_path / "cut.png")


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 256
    Image.fromarray(gray.astype(np.uint8), mode="L").save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_and_la_are_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[0, :, 3] = (255, 128, 0)
    rgba[1, :, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], (200, 100, 50))
    np.testing.assert_array_equal(out[0, 1], (100, 50, 25))  # round(x * 128 / 255)
    np.testing.assert_array_equal(out[0, 2], (0, 0, 0))
    np.testing.assert_array_equal(out[1], np.tile([200, 100, 50], (3, 1)))
    la = np.stack([np.full((2, 2), 100, np.uint8), np.array([[255, 51], [0, 255]], np.uint8)], -1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = read_rgb(tmp_path / "la.png")
    np.testing.assert_array_equal(out[..., 0], [[100, 20], [0, 100]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_palette_is_expanded(tmp_path: Path) -> None:
    im = Image.new("P", (4, 2))
    im.putpalette([0, 0, 0, 250, 10, 20, 5, 6, 7] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2, 1, 1, 1, 2, 0])
    im.save(tmp_path / "p.png")
    out = read_rgb(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 1], (250, 10, 20))
    np.testing.assert_array_equal(out[0, 2], (5, 6, 7))
    np.testing.assert_array_equal(out[1, 3], (0, 0, 0))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_scaled_by_the_fixed_full_range_rule(tmp_path: Path, suffix: str) -> None:
    g16 = np.full((4, 5), 1000, dtype=np.uint16)
    g16[0, 0], g16[1, 1], g16[2, 2] = 65535, 32768, 257 * 64
    Image.fromarray(g16).save(tmp_path / f"g16{suffix}")
    out = read_rgb(tmp_path / f"g16{suffix}")
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 255 and out[3, 4, 0] == 4  # 1000 / 257 = 3.9 -> 4
    assert out[1, 1, 0] == 128  # 32768 / 257 = 127.5 -> 128
    assert out[2, 2, 0] == 64
    np.testing.assert_array_equal(out[..., 0], out[..., 1])


def test_16bit_scaling_does_not_depend_on_the_image(tmp_path: Path) -> None:
    """Two photographs of one eye keep their relative brightness (no per-image stretch)."""
    bright = np.full((4, 4), 20000, dtype=np.uint16)
    bright[0, 0] = 40000
    dim = bright // 2
    Image.fromarray(bright).save(tmp_path / "bright.png")
    Image.fromarray(dim).save(tmp_path / "dim.png")
    a, b = read_rgb(tmp_path / "bright.png"), read_rgb(tmp_path / "dim.png")
    assert a[1, 1, 0] == 78 and b[1, 1, 0] == 39  # 20000 / 257, 10000 / 257
    assert a[0, 0, 0] != b[0, 0, 0]


def test_16bit_colour_png_uses_full_precision_and_rgb_order(tmp_path: Path) -> None:
    rgb16 = np.zeros((3, 3, 3), dtype=np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 65280  # 65280 / 257 = 254.0; Pillow's high byte alone would give 255
    rgb16[1, 1] = (0, 0, 0)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    out = read_rgb(tmp_path / "c16.png")
    np.testing.assert_array_equal(out[0, 0], (255, 254, 0))
    np.testing.assert_array_equal(out[1, 1], (0, 0, 0))


def test_conversions_are_logged_once_per_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(3):
        Image.fromarray(np.full((4, 4), 10 * i, np.uint8), mode="L").save(tmp_path / f"{i}.png")
    with caplog.at_level(logging.INFO, logger="funduslab.data.imageio"):
        for i in range(3):
            read_rgb(tmp_path / f"{i}.png")
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "grayscale" in r.message]
    assert len(infos) == 1


def test_read_mask_variants(tmp_path: Path) -> None:
    m = np.zeros((6, 8), dtype=np.uint8)
    m[1:3, 2:5] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), m > 0)
    red = np.zeros((6, 8, 3), dtype=np.uint8)
    red[4, 1, 0] = 1
    Image.fromarray(red).save(tmp_path / "m.tif")
    mask = read_mask(tmp_path / "m.tif")
    assert mask.dtype == np.bool_ and mask.shape == (6, 8) and mask.sum() == 1 and mask[4, 1]
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque alpha must not mark everything
    rgba[0, 0, 1] = 9
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert read_mask(tmp_path / "a.png").sum() == 1
    with pytest.raises(FileNotFoundError, match="gone.tif"):
        read_mask(tmp_path / "gone.tif")


def test_write_image_atomic_round_trip_and_cleanup(tmp_path: Path) -> None:
    arr = _smooth_rgb()
    out = write_image_atomic(tmp_path / "sub" / "x.png", arr)
    np.testing.assert_array_equal(read_rgb(out), arr)
    jpg = write_image_atomic(tmp_path / "x.jpg", arr, quality=80)
    assert np.abs(read_rgb(jpg).astype(int) - arr).mean() < 4
    write_image_atomic(tmp_path / "mask.png", arr[..., 0] > 100)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), arr[..., 0] > 100)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "mask.png", "x.jpg", "x.png"
    ]


def test_write_image_atomic_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _smooth_rgb()
    target = write_image_atomic(tmp_path / "x.png", old)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_image_atomic(target, 255 - old)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_rgb(target), old)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_write_image_atomic_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="uint8"):
        write_image_atomic(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_image_atomic(tmp_path / "x.png", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="suffix"):
        write_image_atomic(tmp_path / "x.xyz", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="quality"):
        write_image_atomic(tmp_path / "x.jpg", np.zeros((4, 4, 3), np.uint8), quality=0)


def test_verify_images_collects_failures(tmp_path: Path) -> None:
    good = _jpeg(tmp_path, "good.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    missing = tmp_path / "missing.png"
    seen: list[tuple[int, int]] = []
    failures = verify_images([good, bad, missing], progress=lambda d, t: seen.append((d, t)))
    assert [p for p, _ in failures] == [bad, missing]
    assert "bad.jpg" in failures[0][1] and "missing.png" in failures[1][1]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert verify_images([good]) == []


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_image_atomic(tmp_path / "x.png", _smooth_rgb())
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
