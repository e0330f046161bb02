"""Hostile image files: each decodes correctly or raises ``ValueError``/``FileNotFoundError``
naming the file — through :func:`read_rgb` and through the cache's decoder
(:func:`decode_preprocessed`), never another exception, never gigabytes (issue 33, item 5).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from funduslab.data import imageio
from funduslab.data.cache import decode_preprocessed
from funduslab.data.imageio import read_rgb
from funduslab.preprocess import NAMED_PIPELINES, build_pipeline

SIZE = 16  # the cache's training size in these tests (px)


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([8 * xx % 256, 10 * yy % 256, np.full_like(xx, 120)], -1).astype(np.uint8)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (8-bit RGB) claiming ``width × height``, one empty IDAT:
    what a decompression bomb shows Pillow before any pixel is inflated (~60 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b""))


def _decodes_or_names_the_file(path: Path) -> np.ndarray | None:
    """The property every case must have, through both decoders: the decoded ``(H, W, 3)``
    uint8 RGB, or ``None`` after both raised ``ValueError``/``FileNotFoundError`` naming it."""
    decoders = {"read_rgb": read_rgb,
                "decode_preprocessed": lambda p: decode_preprocessed(
                    p, build_pipeline("none", SIZE), SIZE)}
    failed = set()
    for name, decode in decoders.items():
        try:
            out = decode(path)
        except (ValueError, FileNotFoundError) as err:
            assert path.name in str(err), f"{name}: {type(err).__name__} without the file: {err}"
            failed.add(name)
            continue
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, name
        assert out.flags.c_contiguous, name
    assert len(failed) in (0, 2), f"only {failed} refused {path.name}"
    return None if failed else read_rgb(path)


# ------------------------------------------------------------------------------ the cases
def _truncated_jpeg(tmp: Path) -> Path:
    data = _encoded(Image.fromarray(_gradient()), "JPEG", quality=90)
    (tmp / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    return tmp / "cut.jpg"


def _jpeg_without_end_marker(tmp: Path) -> Path:
    data = _encoded(Image.fromarray(_gradient()), "JPEG", quality=90)
    (tmp / "noeoi.jpg").write_bytes(data[:-2])
    return tmp / "noeoi.jpg"


def _truncated_png(tmp: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    data = _encoded(Image.fromarray(noise), "PNG")
    (tmp / "cut.png").write_bytes(data[: len(data) // 2])
    return tmp / "cut.png"


def _junk(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name
    return write


def _bomb(tmp: Path) -> Path:
    (tmp / "bomb.png").write_bytes(_png_header_only(20_000, 20_000))
    return tmp / "bomb.png"


def _lab_tiff(tmp: Path) -> Path:
    lab = Image.fromarray(_gradient()).convert("LAB")
    lab.save(tmp / "lab.tif")
    return tmp / "lab.tif"


#: case → (writer, what the ValueError says; None: may also decode, all its data being there)
HOSTILE_FILES: dict[str, tuple[Callable[[Path], Path], str | None]] = {
    "truncated JPEG": (_truncated_jpeg, "(?i)truncated"),
    "JPEG without its end marker": (_jpeg_without_end_marker, None),
    "truncated PNG": (_truncated_png, "cut.png"),
    "empty .jpg": (_junk("empty.jpg", b""), "not a recognised image"),
    "text in a .png": (_junk("notes.png", b"patient 913, right eye\n" * 20), "not a recognised"),
    "HTML saved as .jpg": (_junk("page.jpg", b"<!doctype html><html>403</html>"), "recognised"),
    "random bytes .tif": (_junk("noise.tif", np.random.default_rng(1).integers(
        0, 256, 4096, dtype=np.uint8).tobytes()), "noise.tif"),
    "PNG signature only": (_junk("sig.png", b"\x89PNG\r\n\x1a\n"), "sig.png"),
    "20000x20000 PNG header (decompression bomb)": (_bomb, "MAX_IMAGE_PIXELS"),
    "LAB TIFF": (_lab_tiff, None),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_a_hostile_file_decodes_or_is_a_value_error_naming_it(tmp_path: Path, case: str) -> None:
    make, fragment = HOSTILE_FILES[case]
    path = make(tmp_path)
    out = _decodes_or_names_the_file(path)
    if fragment is not None:
        assert out is None
        with pytest.raises(ValueError, match=fragment):
            read_rgb(path)


def test_a_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """Between ``MAX_IMAGE_PIXELS`` and twice it Pillow only warns and decodes; it is refused
    before any pixel is inflated (the limit is lowered here so the test allocates nothing)."""
    path = tmp_path / "big.png"
    Image.fromarray(_gradient(120, 120)).save(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 120 × 120 = 14 400: the warning band
        with pytest.raises(ValueError, match="big.png.*MAX_IMAGE_PIXELS"):
            read_rgb(path)
    assert read_rgb(path).shape == (120, 120, 3)  # the default limit lets it through


def _save(tmp: Path, name: str, image: Image.Image, **options: object) -> Path:
    image.save(tmp / name, **options)
    return tmp / name


def test_rgba_palette_and_16_bit_pngs_decode(tmp_path: Path) -> None:
    rgb = _gradient()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0
    out = _decodes_or_names_the_file(_save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(out[1:], rgb[1:])
    assert out[0, 0].tolist() == [0, 0, 0]  # transparent → black

    palette = Image.fromarray(rgb).quantize(16)
    out = _decodes_or_names_the_file(_save(tmp_path, "p.png", palette))
    np.testing.assert_array_equal(out, np.asarray(palette.convert("RGB")))
    palette.info["transparency"] = 0
    out = _decodes_or_names_the_file(_save(tmp_path, "pt.png", palette, transparency=0))
    assert out.shape == rgb.shape

    gray16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85)
    out = _decodes_or_names_the_file(_save(tmp_path, "g16.png", Image.fromarray(gray16)))
    expected = np.rint(gray16.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    rgb16 = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "rgb16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(_decodes_or_names_the_file(tmp_path / "rgb16.png"), rgb)


def test_cmyk_jpeg_decodes_as_pillow_converts_it(tmp_path: Path) -> None:
    cmyk = Image.fromarray(_gradient()).convert("CMYK")
    path = _save(tmp_path, "cmyk.jpg", cmyk, quality=95)
    out = _decodes_or_names_the_file(path)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
        np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))
    assert np.abs(out.astype(int) - _gradient()).mean() < 8


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
@pytest.mark.parametrize("pipeline", sorted(NAMED_PIPELINES))
def test_a_1x1_image_decodes_and_preprocesses(tmp_path: Path, fmt: str, pipeline: str) -> None:
    path = _save(tmp_path, f"one.{fmt.lower()}", Image.new("RGB", (1, 1), (200, 90, 40)),
                 format=fmt)
    assert read_rgb(path).shape == (1, 1, 3)
    out = decode_preprocessed(path, build_pipeline(pipeline, SIZE), SIZE)
    assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8


def test_exif_orientation_is_not_applied_and_the_docs_say_why(tmp_path: Path) -> None:
    """A camera or phone that stores a rotated photo with EXIF Orientation 6 (turn 90° clockwise
    to view): funduslab keeps the pixels as stored, so left/right eye orientation is what the
    camera wrote — the documented rule (module docstring of ``imageio``)."""
    stored = _gradient(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = _save(tmp_path, "rotated.jpg", Image.fromarray(stored), quality=95, exif=exif)
    with Image.open(path) as im:
        assert im.getexif().get(0x0112) == 6
    out = _decodes_or_names_the_file(path)
    assert out.shape == (20, 30, 3)  # as stored, not turned to (30, 20)
    assert np.abs(out.astype(int) - stored).mean() < 6
    assert "EXIF orientation is not applied" in imageio.__doc__


# ------------------------------------------------------------------------------ fuzzing
def _valid_files() -> dict[str, bytes]:
    rgb = Image.fromarray(_gradient(12, 16))
    return {
        "png": _encoded(rgb, "PNG"),
        "jpg": _encoded(rgb, "JPEG", quality=85),
        "tif": _encoded(rgb, "TIFF"),
        "bmp": _encoded(rgb, "BMP"),
        "gif": _encoded(rgb.quantize(8), "GIF"),
    }


VALID = _valid_files()
FUZZ = settings(max_examples=150, deadline=1000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data(), suffix=st.sampled_from(sorted(VALID)))
def test_fuzzed_image_bytes_decode_or_name_the_file(tmp_path: Path, data: st.DataObject,
                                                    suffix: str) -> None:
    """Truncations and byte flips of small valid files: a clean decode or a ValueError naming
    the file (Pillow's limit is lowered so a flipped size field cannot allocate much)."""
    raw = bytearray(VALID[suffix])
    cut = data.draw(st.integers(0, len(raw)), label="length")
    raw = raw[:cut]
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(len(raw) - 1, 0)),
                                         st.integers(0, 255)), max_size=6), label="flips")
    for position, value in flips:
        if raw:
            raw[position] = value
    path = tmp_path / f"fuzzed.{suffix}"
    path.write_bytes(bytes(raw))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)
        _decodes_or_names_the_file(path)
