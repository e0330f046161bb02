"""Tests for funduslab.data.cache: fingerprints, reuse, atomic writes, errors, workers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from funduslab.data import cache as cache_module
from funduslab.data.cache import (
    ImageCache,
    cached_images,
    decode_preprocessed,
    file_digest,
    images_fingerprint,
)
from funduslab.preprocess import Pipeline, named_pipeline

SIZE = 24


def _write_images(folder: Path, n: int = 4) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        h, w = 40 + 4 * i, 48
        yy, xx = np.mgrid[0:h, 0:w]
        inside = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 <= (0.45 * h) ** 2
        img = np.zeros((h, w, 3), dtype=np.uint8)
        img[inside] = rng.integers(60, 220, 3)
        path = folder / (f"{i}_left.jpg" if i % 2 else f"{i}_right.png")
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    return _write_images(folder)


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the cache's reader with a counting wrapper; returns the list of paths read."""
    calls: list[str] = []
    real = cache_module.read_rgb

    def counting(path: str | os.PathLike[str]) -> np.ndarray:
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(cache_module, "read_rgb", counting)
    return calls


def test_first_call_decodes_second_call_reuses(
    images: list[Path], tmp_path: Path, count_reads: list[str]
) -> None:
    pipe = named_pipeline("circle_crop", SIZE)
    first = cached_images(images, pipe, SIZE, tmp_path / "cache")
    assert len(count_reads) == len(images)
    assert isinstance(first, np.memmap) and first.dtype == np.uint8
    assert first.shape == (len(images), SIZE, SIZE, 3)
    for row, path in zip(first, images):
        np.testing.assert_array_equal(row, decode_preprocessed(path, pipe, SIZE))
    count_reads.clear()
    second = cached_images([str(p) for p in images], pipe, SIZE, tmp_path / "cache")
    assert count_reads == []
    np.testing.assert_array_equal(second, first)
    assert not second.flags.writeable
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1


def test_fingerprint_tracks_content_pipeline_size_and_order(images: list[Path]) -> None:
    pipe = Pipeline("circle_crop")
    base = images_fingerprint(images, pipe, SIZE)
    assert images_fingerprint(images, Pipeline("circle_crop:threshold=10"), SIZE) == base
    assert images_fingerprint(images, Pipeline("circle_crop,clahe"), SIZE) != base
    assert images_fingerprint(images, pipe, SIZE + 1) != base
    assert images_fingerprint(images[::-1], pipe, SIZE) != base
    os.utime(images[0], (1_000_000, 1_000_000))  # a touched/copied file keeps its key
    assert images_fingerprint(images, pipe, SIZE) == base
    Image.fromarray(np.full((40, 48, 3), 77, np.uint8)).save(images[0])  # edited content
    assert images_fingerprint(images, pipe, SIZE) != base


def test_changed_file_triggers_rebuild(
    images: list[Path], tmp_path: Path, count_reads: list[str]
) -> None:
    store = ImageCache(tmp_path / "cache")
    first = np.array(store.get(images, "circle_crop", SIZE))
    Image.fromarray(np.full((40, 48, 3), 200, np.uint8)).save(images[2])
    count_reads.clear()
    second = store.get(images, "circle_crop", SIZE)
    assert len(count_reads) == len(images)
    assert not np.array_equal(second[2], first[2])
    np.testing.assert_array_equal(second[0], first[0])


def test_file_digest_covers_head_and_tail_of_large_files(tmp_path: Path) -> None:
    data = bytearray(np.random.default_rng(3).integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(data))
    base = file_digest(path)
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert file_digest(path) != base
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        file_digest(tmp_path / "gone.jpg")


def test_interrupted_build_leaves_no_cache_file(
    images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = cache_module.read_rgb

    def interrupted(path: str | os.PathLike[str]) -> np.ndarray:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(cache_module, "read_rgb", interrupted)
    cache_dir = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        cached_images(images, "circle_crop", SIZE, cache_dir)
    left = [p for p in cache_dir.iterdir() if not p.name.endswith(".lock")]  # lock may stay
    assert left == []  # neither a final nor a temporary file
    monkeypatch.setattr(cache_module, "read_rgb", real)
    out = cached_images(images, "circle_crop", SIZE, cache_dir)
    assert out.shape == (len(images), SIZE, SIZE, 3)


def test_decode_error_names_the_file_and_writes_nothing(
    images: list[Path], tmp_path: Path
) -> None:
    bad = images[0].parent / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    cache_dir = tmp_path / "cache"
    with pytest.raises(ValueError, match="broken.jpg"):
        cached_images([*images, bad], "none", SIZE, cache_dir)
    assert not any(cache_dir.glob("*.npy"))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        cached_images([images[0], images[0].parent / "missing.png"], "none", SIZE, cache_dir)


def test_damaged_cache_file_is_rebuilt(
    images: list[Path], tmp_path: Path, count_reads: list[str]
) -> None:
    store = ImageCache(tmp_path / "cache")
    good = np.array(store.get(images, "none", SIZE))
    target = store.path_for(store.fingerprint(images, "none", SIZE))
    target.write_bytes(target.read_bytes()[:200])  # truncated by hand
    count_reads.clear()
    again = store.get(images, "none", SIZE)
    assert len(count_reads) == len(images)
    np.testing.assert_array_equal(again, good)


def test_output_resized_to_requested_size_and_progress(
    images: list[Path], tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    out = cached_images(images, Pipeline("circle_crop"), SIZE, tmp_path / "c", progress=progress)
    assert out.shape == (len(images), SIZE, SIZE, 3)
    assert seen == [(i, len(images)) for i in range(1, len(images) + 1)]


def test_empty_and_invalid_arguments(tmp_path: Path) -> None:
    empty = cached_images([], "none", SIZE, tmp_path / "c")
    assert empty.shape == (0, SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="size"):
        cached_images([], "none", 0, tmp_path / "c")
    with pytest.raises(ValueError, match="workers"):
        cached_images([], "none", SIZE, tmp_path / "c", workers=-1)


def test_parallel_decode_matches_serial(images: list[Path], tmp_path: Path) -> None:
    pipe = named_pipeline("ben_graham", SIZE)
    serial = np.array(cached_images(images, pipe, SIZE, tmp_path / "serial"))
    parallel = cached_images(images, pipe, SIZE, tmp_path / "parallel", workers=2)
    np.testing.assert_array_equal(parallel, serial)
