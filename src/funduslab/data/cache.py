"""Decoded-image cache: preprocessed uint8 images at training resolution, keyed by a fingerprint.

Decoding a JPEG and running the fundus pipeline costs far more than a training step on a small
backbone, so every image is decoded and preprocessed once and stored in one
``(N, size, size, 3)`` ``uint8`` ``.npy`` file under ``cache_dir/<fingerprint>.npy``, which later
epochs and runs memory-map (``np.load(mmap_mode="r")``).

The fingerprint is the SHA-256 of: a cache format version, the output size, the canonical
pipeline spec, the OpenCV and Pillow versions (their resampling and JPEG decoders change pixels
between releases), and, per image in order, the file size plus a hash of its first and last
64 KiB (the whole file when smaller). Content rather than paths and modification times because:

* mtimes change when a dataset is copied, synced or checked out (``cp`` without ``-p``, a fresh
  git checkout, a container build), which would force a needless re-decode; and the same data
  moved to another folder or machine still hits the cache;
* an edited image almost always changes its size or its first/last 64 KiB (JPEG/PNG headers,
  quantisation tables, Huffman tables and the end of the entropy-coded data), and reading 128 KiB
  per file is cheap next to decoding it — fundus JPEGs at course resolution are read whole.

An edit confined to the middle of a large file that keeps its exact size would go unnoticed;
delete the cache folder after such surgery.

Writes go to a temporary file in the cache folder that is renamed (``os.replace``) into place only
when complete and flushed, so an interrupted run never leaves a half cache that a later run would
trust. Decoding errors propagate with the file named.

Each entry is checked, built and sealed under its own lock, so two processes that need the same
images decode them once; the sidecar ``<fingerprint>.json`` carries the entry's seal (size,
SHA-256, and the file stat of its last full check), and a truncated or altered ``.npy`` is
rebuilt with a warning naming it (:mod:`funduslab.data.cache_guard` says what is checked when,
and why a multi-GB memory map is not hashed on every use).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import PIL

from funduslab.data.cache_guard import (
    entry_lock,
    entry_problem,
    read_seal,
    seal,
    stat_stamp,
    write_sidecar,
)
from funduslab.data.imageio import read_rgb
from funduslab.preprocess.ops import resize
from funduslab.preprocess.pipeline import Pipeline, StepSpec

__all__ = [
    "CACHE_FORMAT_VERSION",
    "ImageCache",
    "cached_images",
    "decode_preprocessed",
    "file_digest",
    "images_fingerprint",
]

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_EDGE_BYTES = 64 * 1024
_resize_noted = False
_UMASK = os.umask(0o022)  # read the process umask once, at import
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # mkstemp creates 0600; finished files get the usual mode

ProgressFn = Callable[[int, int], None]


def file_digest(path: str | os.PathLike[str]) -> str:
    """Size plus SHA-256 of the first and last 64 KiB of a file (whole file when smaller).

    Raises:
        FileNotFoundError: naming the file if it does not exist.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size <= 2 * _EDGE_BYTES:
                data = fh.read()
            else:
                head = fh.read(_EDGE_BYTES)
                fh.seek(size - _EDGE_BYTES)
                data = head + fh.read(_EDGE_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    return f"{size}:{hashlib.sha256(data).hexdigest()}"


def images_fingerprint(
    paths: Sequence[str | os.PathLike[str]], pipeline: Pipeline, size: int
) -> str:
    """SHA-256 hex fingerprint of (format version, size, pipeline spec, library versions, files).

    See the module docstring for why file content, not path and mtime, identifies an image.
    """
    header = {
        "version": CACHE_FORMAT_VERSION,
        "size": int(size),
        "pipeline": pipeline.spec(),
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "count": len(paths),
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for path in paths:
        digest.update(file_digest(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def decode_preprocessed(
    path: str | os.PathLike[str], pipeline: Pipeline, size: int
) -> np.ndarray:
    """Read one image, apply ``pipeline`` and make it ``(size, size, 3)`` uint8.

    A pipeline that does not end at ``size × size`` is followed by :func:`resize` (noted once in
    the log).

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if the file cannot be decoded or a step fails; the message names the file.
    """
    global _resize_noted
    rgb = read_rgb(path)
    try:
        out = pipeline(rgb)
        if out.shape[:2] != (size, size):
            if not _resize_noted:
                logger.info("pipeline '%s' output resized to %dx%d", pipeline, size, size)
                _resize_noted = True
            out = resize(out, size=size)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"preprocessing {path} with pipeline '{pipeline}' failed: {err}"
        ) from err
    return out


def _decode_task(args: tuple[str, Pipeline, int]) -> np.ndarray:
    """Top-level worker entry (picklable) for the process pool."""
    return decode_preprocessed(*args)


def _coerce_pipeline(pipeline: Pipeline | str | Sequence[StepSpec] | None) -> Pipeline:
    return pipeline if isinstance(pipeline, Pipeline) else Pipeline(pipeline)


class ImageCache:
    """A folder of fingerprinted ``.npy`` image stacks.

    Args:
        root: Cache folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def fingerprint(
        self,
        paths: Sequence[str | os.PathLike[str]],
        pipeline: Pipeline | str | Sequence[StepSpec] | None,
        size: int,
    ) -> str:
        """The key under which these images, so preprocessed, are stored."""
        return images_fingerprint(paths, _coerce_pipeline(pipeline), size)

    def path_for(self, fingerprint: str) -> Path:
        """File holding the stack with this fingerprint (it may not exist yet)."""
        return self.root / f"{fingerprint}.npy"

    def get(
        self,
        paths: Sequence[str | os.PathLike[str]],
        pipeline: Pipeline | str | Sequence[StepSpec] | None,
        size: int,
        workers: int = 0,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Return the preprocessed images, building the cache entry if it is missing.

        Args:
            paths: Image files, in the row order wanted.
            pipeline: Preprocessing pipeline (or anything :class:`Pipeline` accepts).
            size: Output side in pixels.
            workers: Decoding processes; 0 decodes in this process.
            progress: Optional ``callback(done, total)`` while building.

        Returns:
            ``(N, size, size, 3)`` uint8, read-only memory map (an in-memory empty array for N=0).

        Raises:
            FileNotFoundError / ValueError: naming the image that is missing or undecodable.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"image cache: size must be a positive int, got {size!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"image cache: workers must be an int >= 0, got {workers!r}")
        pipe = _coerce_pipeline(pipeline)
        items = [str(p) for p in paths]
        if not items:
            return np.zeros((0, size, size, 3), dtype=np.uint8)
        fp = images_fingerprint(items, pipe, size)
        target = self.path_for(fp)
        shape = (len(items), size, size, 3)
        with entry_lock(target):  # a second process waits here, then reuses the entry
            cached = self._load(target, shape)
            if cached is not None:
                logger.info(
                    "image cache hit %s (%d images, %dx%d)", target.name, len(items), size, size
                )
                return cached
            logger.info(
                "building image cache %s: %d images, pipeline '%s', %dx%d, %d worker(s)",
                target.name, len(items), pipe, size, size, workers,
            )
            sealed = self._build(target, items, pipe, size, workers, progress)
            self._write_meta(target, items, pipe, size, sealed)
            loaded = self._load(target, shape)
        if loaded is None:  # pragma: no cover - only if the file vanished under us
            raise RuntimeError(f"image cache {target} disappeared right after it was written")
        return loaded

    @staticmethod
    def _load(target: Path, shape: tuple[int, int, int, int]) -> np.ndarray | None:
        """The entry as a read-only memory map, or ``None`` (missing, or failed its checks)."""
        if not target.exists():
            return None
        sidecar = target.with_suffix(".json")
        sealed = read_seal(sidecar)
        problem = entry_problem(target, sealed, trust_stat=True)
        if problem is not None:
            logger.warning("ignoring image cache %s: %s; rebuilding", target, problem)
            return None
        if sealed.get("stat") != stat_stamp(target):  # checked in full: trust this stat next time
            _reseal(sidecar, {**sealed, "stat": stat_stamp(target)})
        try:
            arr = np.load(target, mmap_mode="r")
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable image cache %s (%s); rebuilding", target, err)
            return None
        if arr.shape != shape or arr.dtype != np.uint8:
            logger.warning(
                "ignoring image cache %s with shape %s %s (expected %s uint8); rebuilding",
                target, arr.shape, arr.dtype, shape,
            )
            return None
        return arr

    def _build(
        self,
        target: Path,
        items: list[str],
        pipeline: Pipeline,
        size: int,
        workers: int,
        progress: ProgressFn | None,
    ) -> dict:
        """Decode into a temporary memmap, rename it into place only when complete; its seal."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f".{target.stem}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        total = len(items)
        images = self._decoded(items, pipeline, size, workers)
        try:
            stack = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(total, size, size, 3)
            )
            for index, image in enumerate(images):
                stack[index] = image
                if progress is not None:
                    progress(index + 1, total)
            stack.flush()
            del stack
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, _FILE_MODE)
            sealed = seal(tmp)  # the bytes just written, hashed from the page cache
            target.with_suffix(".json").unlink(missing_ok=True)  # an old seal never vouches
            os.replace(tmp, target)
            return {**sealed, "stat": stat_stamp(target)}
        except BaseException:
            images.close()  # stops a worker pool early
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _decoded(
        items: list[str], pipeline: Pipeline, size: int, workers: int
    ) -> Iterator[np.ndarray]:
        """Yield preprocessed images in order, in this process or a spawn-started pool."""
        if workers == 0:
            for path in items:
                yield decode_preprocessed(path, pipeline, size)
            return
        chunk = max(1, min(64, len(items) // (workers * 8)))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            try:
                tasks = ((path, pipeline, size) for path in items)
                yield from pool.map(_decode_task, tasks, chunksize=chunk)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _write_meta(
        self, target: Path, items: list[str], pipeline: Pipeline, size: int, sealed: dict
    ) -> None:
        """Sidecar: the entry's seal (checked on use) and a human-readable description."""
        meta = {
            "seal": sealed,
            "version": CACHE_FORMAT_VERSION,
            "count": len(items),
            "size": size,
            "pipeline": pipeline.spec(),
            "pipeline_string": str(pipeline),
            "first_paths": items[:3],
        }
        write_sidecar(target.with_suffix(".json"), meta)


def _reseal(sidecar: Path, sealed: dict) -> None:
    """Record a fully checked entry's new stat; a read-only cache is simply checked again."""
    try:
        doc = json.loads(sidecar.read_text())
        write_sidecar(sidecar, {**doc, "seal": sealed})
    except (OSError, ValueError) as err:
        logger.debug("could not update %s: %s", sidecar, err)


def cached_images(
    paths: Sequence[str | os.PathLike[str]],
    pipeline: Pipeline | str | Sequence[StepSpec] | None,
    size: int,
    cache_dir: str | os.PathLike[str],
    workers: int = 0,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Preprocessed images as an ``(N, size, size, 3)`` uint8 memory map, decoded at most once.

    Shorthand for ``ImageCache(cache_dir).get(paths, pipeline, size, workers, progress)``.
    """
    return ImageCache(cache_dir).get(paths, pipeline, size, workers=workers, progress=progress)
