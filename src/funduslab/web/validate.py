"""Checks on every uploaded file before a decoder touches it, with one clear message each.

An upload is untrusted bytes, so nothing is believed from the request: the type comes from the
file's first bytes (magic numbers), not its name or ``Content-Type``; the size is counted; the
pixel count is read from the header (Pillow parses it without decoding) and refused above
:data:`MAX_PIXELS`, so a small file that would unpack into gigabytes (a decompression bomb) is
never decoded. ``funduslab serve`` also lowers Pillow's own ``MAX_IMAGE_PIXELS`` to
:data:`MAX_PIXELS` (:func:`guard_pillow`), so the decoder itself refuses what might slip past.
Names are only ever shown back, never used as paths.

Every refusal is a :class:`RequestError` carrying the HTTP status the web layer answers with.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_FILES",
    "MAX_PIXELS",
    "CheckedUpload",
    "RequestError",
    "check_upload",
    "guard_pillow",
    "safe_name",
    "sniff_format",
]

MAX_FILE_BYTES = 20 * 1024 * 1024  # per uploaded file
MAX_PIXELS = 50_000_000  # width × height; a 12-MP fundus camera image is far below it
MAX_FILES = 64  # files per CSV request

#: magic bytes → format name (TIFF: classic and BigTIFF, both byte orders).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
#: what Pillow may call a file of each sniffed format (MPO: a camera JPEG with extra frames).
_PILLOW_FORMATS = {"JPEG": {"JPEG", "MPO"}, "PNG": {"PNG"}, "TIFF": {"TIFF"}}


class RequestError(Exception):
    """A refused request: ``status`` is the HTTP status, ``message`` one line for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CheckedUpload:
    """An upload that passed the checks.

    Attributes:
        name: Display name (:func:`safe_name`).
        data: The file's bytes.
        format: ``JPEG``, ``PNG`` or ``TIFF`` (from the content).
        width: Pixels, from the header.
        height: Pixels, from the header.
    """

    name: str
    data: bytes
    format: str
    width: int
    height: int


def guard_pillow() -> None:
    """Set Pillow's process-wide decompression-bomb limit to :data:`MAX_PIXELS` (a server call:
    it changes Pillow for the whole process)."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def safe_name(raw: str | None) -> str:
    """The last path component of a client's file name, printable, at most 120 characters.

    Used for display and as the CSV ``id`` only; ``../../etc/passwd`` becomes ``passwd``.
    """
    base = re.split(r"[\\/]", raw or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:120] or "upload"


def sniff_format(data: bytes) -> str | None:
    """``JPEG``, ``PNG`` or ``TIFF`` from the first bytes of ``data``, else ``None``."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def check_upload(data: bytes, filename: str | None) -> CheckedUpload:
    """Size, type (by content) and pixel count of one uploaded file.

    Raises:
        RequestError: 400 empty file; 413 over :data:`MAX_FILE_BYTES` or :data:`MAX_PIXELS`;
            415 not a JPEG/PNG/TIFF by its content; 422 a header Pillow cannot read.
    """
    name = safe_name(filename)
    if not data:
        raise RequestError(400, f"{name} is empty (0 bytes): choose a JPEG, PNG or TIFF image")
    if len(data) > MAX_FILE_BYTES:
        raise RequestError(413, f"{name} is {_megabytes(len(data))}; the limit is "
                                f"{MAX_FILE_BYTES // (1024 * 1024)} MB per file")
    fmt = sniff_format(data)
    if fmt is None:
        raise RequestError(415, f"{name} is not a JPEG, PNG or TIFF image (checked by its "
                                "content, not its name)")
    try:
        with warnings.catch_warnings():  # over Pillow's MAX_IMAGE_PIXELS it warns: we refuse
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # parses the header, decodes nothing
                width, height = im.size
                pillow_format = im.format
    except Image.DecompressionBombError as err:  # over twice Pillow's MAX_IMAGE_PIXELS
        detail = " ".join(str(err).split())[:200]
        raise RequestError(413, f"{name} is too many pixels to decode safely ({detail}); the "
                                f"limit is {MAX_PIXELS // 1_000_000} MP per image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]
        raise RequestError(422, f"{name} starts like a {fmt} file but its header cannot be "
                                f"read ({detail}): it is corrupt or truncated") from None
    if pillow_format not in _PILLOW_FORMATS[fmt]:
        raise RequestError(415, f"{name} starts like a {fmt} file but decodes as "
                                f"{pillow_format}: only JPEG, PNG or TIFF images are accepted")
    if width < 1 or height < 1:
        raise RequestError(422, f"{name} has no pixels ({width}×{height})")
    if width * height > MAX_PIXELS:
        raise RequestError(413, f"{name} is {width}×{height} pixels "
                                f"({width * height / 1e6:.0f} MP); the limit is "
                                f"{MAX_PIXELS // 1_000_000} MP per image")
    return CheckedUpload(name, data, fmt, int(width), int(height))
