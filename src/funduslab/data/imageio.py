"""Reading and writing fundus images and lesion masks, with clear errors and explicit conversions.

Every image enters funduslab through :func:`read_rgb`, which returns an ``(H, W, 3)`` ``uint8`` RGB
array or raises an error naming the file:

* a missing file raises :class:`FileNotFoundError`;
* a corrupt or **truncated** JPEG/PNG/TIFF raises :class:`ValueError`. Pillow decodes lazily and,
  with ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` (its default), ``Image.load()`` raises on a
  file that ends early; OpenCV's ``imread`` instead pads a truncated JPEG with grey and only
  prints a libjpeg warning, so it is never the primary decoder here. If some other code has set
  the Pillow flag to ``True`` we still check that a JPEG ends with its EOI marker (``FF D9``) and
  a PNG with its ``IEND`` chunk.

Conversions to 8-bit RGB are explicit and logged once per kind (INFO the first time, DEBUG after):

* grayscale (``L``, ``1``) → the gray value replicated into R, G and B;
* with alpha (``RGBA``, ``LA``, ``PA``, palette with transparency) → composited on black, i.e.
  ``rgb * alpha / max_alpha`` — transparent regions become black like the area outside a fundus
  field of view;
* palette (``P``) and other colour spaces (``CMYK``, ``YCbCr`` …) → RGB via Pillow;
* 16-bit and wider (``I;16`` PNG/TIFF, 16-bit RGB PNG/TIFF, ``I``, ``F``) → 8-bit by one fixed
  rule, the same for every image of a dataset: integer data is read as a 16-bit container,
  ``round(value × 255 / 65535)`` (values above 65535 clip), float data as ``[0, 1]``
  (``round(value × 255)``, clipped). A per-image stretch would give two photographs of one eye
  different scalings. Cameras that store 10–14-bit sensor data in 16-bit containers then look
  dark: ``funduslab data check`` warns on 16-bit input and prints its largest value, so such a
  dataset can be rescaled once, with one factor, before training. Pillow silently keeps only the
  high byte of 16-bit *colour* files, so those are re-decoded with OpenCV (after Pillow has
  checked them for truncation).

An image over Pillow's ``Image.MAX_IMAGE_PIXELS`` (89.5 MP by default; a fundus photograph has
about 5–20 MP) raises :class:`ValueError` before any pixel is decoded: Pillow itself only warns up
to twice that limit, and one such file would take gigabytes in every decoding worker (a
"decompression bomb" is a few kilobytes on disk).

EXIF orientation is not applied: fundus cameras do not rotate their output, and left/right eye
orientation must stay as stored.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = ["FULL_RANGE_16BIT", "read_mask", "read_rgb", "verify_images", "write_image_atomic"]

logger = logging.getLogger(__name__)

_ANNOUNCED: set[str] = set()
_TAIL_BYTES = 1024
FULL_RANGE_16BIT = 65535.0  # integer images wider than 8 bits are read as 16-bit containers


def _note_conversion(kind: str, message: str, path: Path) -> None:
    """Log a conversion at INFO the first time its kind is met in this process, DEBUG after."""
    if kind in _ANNOUNCED:
        logger.debug("%s: %s", path, message)
        return
    _ANNOUNCED.add(kind)
    logger.info(
        "%s (first seen in %s; further %s conversions logged at DEBUG)", message, path, kind
    )


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file; expected an image file (JPEG/PNG/TIFF)")


def _rawmode(im: Image.Image) -> str:
    """Pillow's raw (on-disk) mode of the first tile, e.g. ``'RGB;16B'``; ``''`` if unknown."""
    if not im.tile:
        return ""
    args = im.tile[0][3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return ""


def _ends_properly(path: Path, fmt: str | None) -> bool:
    """Whether a JPEG has its EOI marker / a PNG its IEND chunk near the end of the file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - _TAIL_BYTES))
        tail = fh.read()
    if fmt == "JPEG":
        return b"\xff\xd9" in tail
    if fmt == "PNG":
        return b"IEND" in tail
    return True


def _open_loaded(path: Path) -> tuple[Image.Image, str]:
    """Open and fully decode an image with Pillow, turning decoder failures into ValueError.

    Returns:
        The loaded image and its raw mode (needed to spot 16-bit colour files).
    """
    _check_exists(path)
    try:
        with warnings.catch_warnings():  # over MAX_IMAGE_PIXELS Pillow only warns: refuse
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except PermissionError:
        raise
    except UnidentifiedImageError as err:
        raise ValueError(
            f"cannot read image {path}: not a recognised image format (corrupt or not an image); "
            "re-export or remove the file"
        ) from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(
            f"cannot open image {path}: {err} (over PIL.Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS}); shrink the file, or raise that limit if it is genuine"
        ) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(
            f"cannot open image {path}: {err}; re-download or remove the file"
        ) from err
    try:
        rawmode = _rawmode(im)
        im.load()
        if ImageFile.LOAD_TRUNCATED_IMAGES and not _ends_properly(path, im.format):
            raise OSError("image file is truncated (no end-of-image marker)")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        im.close()
        raise ValueError(
            f"cannot decode image {path}: {err} (corrupt or truncated file); "
            "re-download or remove the file"
        ) from err
    return im, rawmode


def _scale_to_uint8(values: np.ndarray, path: Path) -> np.ndarray:
    """The fixed 16-bit rule of the module docstring: full container range → ``[0, 255]``."""
    _note_conversion(
        "high-bit-depth",
        f"{values.dtype} image scaled to 8 bits by the fixed full-range rule "
        "(integers: value × 255 / 65535; floats: [0, 1] → [0, 255])",
        path,
    )
    arr = values.astype(np.float64)
    if values.dtype.kind == "f":
        arr = np.nan_to_num(arr, nan=0.0) * 255.0
    else:
        arr = arr * (255.0 / FULL_RANGE_16BIT)
    return np.rint(np.clip(arr, 0.0, 255.0)).astype(np.uint8)


def _composite_on_black(color: np.ndarray, alpha: np.ndarray, alpha_max: float) -> np.ndarray:
    """``color * alpha / alpha_max`` rounded to uint8; ``color`` is (H, W, C), ``alpha`` (H, W)."""
    weight = alpha.astype(np.float64)[..., None] / alpha_max
    return np.rint(color.astype(np.float64) * weight).clip(0, 255).astype(np.uint8)


def _read_16bit_color(path: Path) -> np.ndarray | None:
    """Decode a 16-bit RGB(A) file with OpenCV as (H, W, 3|4) uint16 RGB(A); None if it cannot."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.ndim != 3 or data.dtype != np.uint16 or data.shape[2] not in (3, 4):
        return None
    code = cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(data, code)


def _to_rgb(im: Image.Image, rawmode: str, path: Path) -> np.ndarray:
    """Convert a loaded Pillow image to (H, W, 3) uint8 RGB, logging the conversion kind."""
    mode = im.mode
    if mode in ("RGB", "RGBA") and ";16" in rawmode:
        wide = _read_16bit_color(path)
        if wide is not None:
            rgb = _scale_to_uint8(wide[..., :3], path)
            if wide.shape[2] == 4:
                _note_conversion("alpha", "alpha channel composited on black", path)
                rgb = _composite_on_black(rgb, wide[..., 3], 65535.0)
            return rgb
        logger.warning("%s: 16-bit colour file read as 8 bits by Pillow (high byte only)", path)
    if mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if mode == "P":
        has_alpha = "transparency" in im.info
        _note_conversion("palette", "palette image converted to RGB", path)
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return np.array(im, dtype=np.uint8)
    if mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA"):
        arr = np.array(im)
        _note_conversion("alpha", "alpha channel composited on black", path)
        color = arr[..., :3] if mode == "RGBA" else np.repeat(arr[..., :1], 3, axis=2)
        if mode == "LA":
            _note_conversion("grayscale", "grayscale image replicated into R, G and B", path)
        return _composite_on_black(color, arr[..., -1], 255.0)
    if mode in ("L", "1"):
        gray = np.array(im.convert("L"), dtype=np.uint8)
        _note_conversion("grayscale", "grayscale image replicated into R, G and B", path)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode.startswith("I") or mode == "F":
        gray = _scale_to_uint8(np.array(im), path)
        _note_conversion("grayscale", "grayscale image replicated into R, G and B", path)
        return np.repeat(gray[..., None], 3, axis=2)
    _note_conversion(f"mode-{mode}", f"{mode} image converted to RGB by Pillow", path)
    return np.array(im.convert("RGB"), dtype=np.uint8)


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as 8-bit RGB.

    Args:
        path: JPEG, PNG, TIFF, BMP … file.

    Returns:
        ``(H, W, 3)`` ``uint8`` C-contiguous array, RGB order. Conversions (grayscale, alpha,
        palette, 16-bit) follow the module docstring.

    Raises:
        FileNotFoundError: if ``path`` does not exist (the message names it).
        ValueError: if the file is not a regular file, is corrupt, truncated or not an image.
    """
    path = Path(path)
    im, rawmode = _open_loaded(path)
    with im:
        rgb = _to_rgb(im, rawmode, path)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:  # pragma: no cover - guard
        raise ValueError(f"{path}: decoded to unexpected shape {rgb.shape} / dtype {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a lesion/segmentation mask as a boolean array (any colour channel > 0).

    Alpha channels are ignored (an opaque alpha would otherwise mark everything); palette masks
    are converted to RGB first so that a palette index 0 that is not black still counts.

    Args:
        path: Mask file (TIFF, PNG, …), binary or 0/255 or any non-zero label value.

    Returns:
        ``(H, W)`` ``bool`` array, ``True`` where the mask is set.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is corrupt, truncated or not an image.
    """
    path = Path(path)
    im, _ = _open_loaded(path)
    with im:
        if im.mode in ("P", "PA"):
            im = im.convert("RGB")
        arr = np.array(im)
        mode = im.mode
    if mode in ("RGBA", "LA"):
        arr = arr[..., :-1]
    if arr.ndim == 3:
        return np.ascontiguousarray((arr > 0).any(axis=2))
    return np.ascontiguousarray(arr > 0)


def write_image_atomic(
    path: str | os.PathLike[str], rgb: np.ndarray, quality: int = 95
) -> Path:
    """Write an image so that readers never see a partial file (temporary file + ``os.replace``).

    Args:
        path: Destination; the format follows the suffix (``.jpg``, ``.png``, ``.tif`` …).
            Parent folders are created.
        rgb: ``(H, W, 3)`` uint8 RGB, or ``(H, W)`` uint8/bool (a mask; ``True`` → 255).
        quality: JPEG/WebP quality, 1–100 (ignored by lossless formats).

    Returns:
        The destination path.

    Raises:
        TypeError: if ``rgb`` is not a uint8 (or bool 2-D) array.
        ValueError: if the shape, suffix or quality is not supported.
        DiskWriteError: the folder cannot take the file; an older file there stays.
    """
    path = Path(path)
    arr = np.asarray(rgb)
    if arr.ndim == 2 and arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise TypeError(f"write_image_atomic({path}): expected uint8 pixels, got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(
            f"write_image_atomic({path}): expected shape (H, W, 3) or (H, W), got {arr.shape}"
        )
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(
            f"write_image_atomic({path}): quality must be an int in 1..100, got {quality!r}"
        )
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot write {path}: unknown image suffix {path.suffix!r}; use .jpg, .png or .tif"
        )
    from funduslab.config import atomic_path  # here: decoding workers start without pydantic

    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(arr)).save(fh, format=fmt, **options)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def verify_images(
    paths: Iterable[str | os.PathLike[str]],
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[Path, str]]:
    """Decode every image and collect the failures (for a ``data check`` command).

    Args:
        paths: Image files to check.
        progress: Optional ``callback(done, total)`` after each file.

    Returns:
        ``[(path, error message), ...]`` for files that are missing, corrupt or truncated; empty
        when all decode.
    """
    items = [Path(p) for p in paths]
    failures: list[tuple[Path, str]] = []
    for done, path in enumerate(items, start=1):
        try:
            read_rgb(path)
        except (FileNotFoundError, PermissionError, ValueError) as err:
            failures.append((path, str(err)))
        if progress is not None:
            progress(done, len(items))
    return failures
