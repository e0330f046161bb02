"""Cache entries under faults (issue 33, items 3 and 4): a second process waits for the first
one's build and reuses it; a truncated, altered or unsealed entry is rebuilt with a warning that
names it, never used; a record that changed is reported by name."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from funduslab.config import config_from_dict
from funduslab.data import cache as cache_module
from funduslab.data import cache_guard
from funduslab.data.cache import ImageCache, cached_images, decode_preprocessed
from funduslab.data.cache_guard import lock_path
from funduslab.models.factory import build_model
from funduslab.preprocess import Pipeline
from funduslab.training import features
from funduslab.data.split_data import SplitData

SIZE = 24

# Builds an image cache entry in another process, pausing a second inside the build (the entry
# lock held) so that the test process asks for the same entry meanwhile.
_SLOW_BUILD = textwrap.dedent("""
    import sys, time
    from funduslab.data import cache
    real = cache.read_rgb
    def slow(path):
        if not getattr(slow, "said", False):
            slow.said = True
            print("building", flush=True)
            time.sleep(1.0)
        return real(path)
    cache.read_rgb = slow
    cache.cached_images(sys.argv[3:], "none", int(sys.argv[2]), sys.argv[1])
""")

# Holds a feature entry's lock for a second, then writes it as training does (torch.save, then
# the seal in the sidecar); imports only torch and the cache guard, to start fast.
_SLOW_FEATURES = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    from funduslab.data.cache_guard import entry_lock, read_seal, write_sidecar
    target, made = Path(sys.argv[1]), Path(sys.argv[2])
    with entry_lock(target):
        print("held", flush=True)
        time.sleep(1.0)
        shutil.copyfile(made, target)
        write_sidecar(target.with_suffix(".json"), {"seal": read_seal(made.with_suffix(".json"))})
""")


def _write_images(folder: Path, n: int = 4) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        paths.append(folder / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    return _write_images(folder)


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the images the cache decodes in this process."""
    calls: list[str] = []
    real = cache_module.read_rgb

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(cache_module, "read_rgb", counting)
    return calls


def _start(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    """Read the helper's stdout up to the line ``word``; fail with its stderr if it ends first."""
    for line in proc.stdout:
        if line.strip() == word:
            return
    proc.kill()
    raise AssertionError(f"helper process ended before {word!r}: {proc.stderr.read()[-3000:]}")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _alter(path: Path) -> None:
    """Flip one byte near the end, in place: same size, same file."""
    with open(path, "r+b") as fh:
        fh.seek(-7, os.SEEK_END)
        byte = fh.read(1)[0]
        fh.seek(-7, os.SEEK_END)
        fh.write(bytes([byte ^ 0xFF]))


def _unseal(path: Path) -> None:
    path.with_suffix(".json").unlink()


DAMAGE = {"truncated": (_truncate, "bytes"), "altered": (_alter, "SHA-256"),
          "unsealed": (_unseal, "no checksum")}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_image_entry_is_rebuilt_with_a_warning_naming_it(
        images, tmp_path, count_reads, caplog, damage) -> None:
    store = ImageCache(tmp_path / "cache")
    good = np.array(store.get(images, "none", SIZE))
    target = store.path_for(store.fingerprint(images, "none", SIZE))
    spoil, why = DAMAGE[damage]
    spoil(target)
    count_reads.clear()
    with caplog.at_level(logging.WARNING, logger="funduslab.data.cache"):
        again = store.get(images, "none", SIZE)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(target) in warned[0] and why in warned[0], warned
    assert len(count_reads) == len(images)  # decoded again
    np.testing.assert_array_equal(again, good)
    caplog.clear()
    count_reads.clear()
    with caplog.at_level(logging.WARNING, logger="funduslab.data.cache"):
        np.testing.assert_array_equal(store.get(images, "none", SIZE), good)
    assert count_reads == [] and not caplog.records  # the rebuilt entry is sealed again


def test_large_entry_trusts_its_stat_until_the_file_changes(
        images, tmp_path, count_reads, caplog, monkeypatch) -> None:
    monkeypatch.setattr(cache_guard, "ALWAYS_HASH_BELOW", 0)  # every entry counts as large
    hashed: list[str] = []
    real_hash = cache_guard.file_sha256
    monkeypatch.setattr(cache_guard, "file_sha256",
                        lambda p: hashed.append(str(p)) or real_hash(p))
    store = ImageCache(tmp_path / "cache")
    good = np.array(store.get(images, "none", SIZE))
    target = store.path_for(store.fingerprint(images, "none", SIZE))
    hashed.clear()
    store.get(images, "none", SIZE)
    assert hashed == []  # unchanged stat: no hash on use

    altered = target.with_name("altered.npy")  # an edited copy moved over the entry
    altered.write_bytes(target.read_bytes())
    _alter(altered)
    os.replace(altered, target)
    count_reads.clear()
    with caplog.at_level(logging.WARNING, logger="funduslab.data.cache"):
        again = store.get(images, "none", SIZE)
    assert str(target) in caplog.text and "SHA-256" in caplog.text
    assert len(count_reads) == len(images)
    np.testing.assert_array_equal(again, good)

    copied = target.with_name("copied.npy")  # an intact copy (new inode): checked once, resealed
    copied.write_bytes(target.read_bytes())
    os.replace(copied, target)
    hashed.clear()
    store.get(images, "none", SIZE)
    store.get(images, "none", SIZE)
    assert hashed == [str(target)]
    sealed = json.loads(target.with_suffix(".json").read_text())["seal"]
    assert sealed["stat"] == cache_guard.stat_stamp(target)


def test_second_process_waits_for_the_first_build_and_reuses_it(
        images, tmp_path, count_reads) -> None:
    cache_dir = tmp_path / "cache"
    first = _start(_SLOW_BUILD, str(cache_dir), str(SIZE), *map(str, images))
    try:
        _wait_for(first, "building")  # the other process holds the entry's lock now
        out = cached_images(images, "none", SIZE, cache_dir)
        assert first.wait(timeout=60) == 0, first.stderr.read()[-3000:]
    finally:
        first.kill()
    assert count_reads == []  # waited, then reused the other process's entry
    for row, path in zip(out, images):
        np.testing.assert_array_equal(row, decode_preprocessed(path, Pipeline("none"), SIZE))
    assert len(list(cache_dir.glob("*.npy"))) == 1 and not list(cache_dir.glob("*.tmp"))
    assert lock_path(list(cache_dir.glob("*.npy"))[0]).is_file()


def _feature_setup(tmp_path: Path, cache: str = "cache"):
    cfg = config_from_dict({
        "data": {"root": str(tmp_path), "image_size": 32},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "frozen", "precision": "32", "batch_size": 4, "accelerator": "cpu"},
        "output": {"out": str(tmp_path)},
    })
    torch.manual_seed(0)
    model = build_model(cfg.model, 3, image_size=32)
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    split = SplitData("train", [str(i) for i in range(6)], images, np.zeros((6, 3)), True)
    ctx = SimpleNamespace(cfg=cfg, data_fingerprint="f" * 16, cache_dir=tmp_path / cache)
    return ctx, model, split


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_feature_entry_is_extracted_again_with_a_warning_naming_it(
        tmp_path, caplog, monkeypatch, damage) -> None:
    ctx, model, split = _feature_setup(tmp_path)
    good = features._cached(ctx, model, split, False)
    (entry,) = ctx.cache_dir.glob("features-*.pt")
    spoil, why = DAMAGE[damage]
    spoil(entry)
    extracted = []
    real = features.extract_features
    monkeypatch.setattr(features, "extract_features",
                        lambda *a, **k: extracted.append(1) or real(*a, **k))
    with caplog.at_level(logging.WARNING, logger="funduslab.training.features"):
        again = features._cached(ctx, model, split, False)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(entry) in warned[0] and why in warned[0], warned
    assert extracted == [1]
    torch.testing.assert_close(again, good, rtol=0, atol=0)
    torch.testing.assert_close(torch.load(entry, weights_only=True), good, rtol=0, atol=0)
    extracted.clear()
    features._cached(ctx, model, split, False)
    assert extracted == []  # sealed again: loaded, not extracted


def test_second_process_waits_for_the_feature_entry_and_loads_it(
        tmp_path, monkeypatch) -> None:
    ctx, model, split = _feature_setup(tmp_path, cache="first")
    reference = features._cached(ctx, model, split, False)
    (made,) = ctx.cache_dir.glob("features-*.pt")
    ctx.cache_dir = tmp_path / "shared"
    other = _start(_SLOW_FEATURES, str(ctx.cache_dir / made.name), str(made))
    monkeypatch.setattr(features, "extract_features",
                        lambda *a, **k: pytest.fail("extracted while another process built it"))
    try:
        _wait_for(other, "held")
        got = features._cached(ctx, model, split, False)
        assert other.wait(timeout=60) == 0, other.stderr.read()[-3000:]
    finally:
        other.kill()
    torch.testing.assert_close(got, reference, rtol=0, atol=0)


def test_an_altered_record_is_reported_by_name_when_read(tmp_path, caplog) -> None:
    from funduslab.reporting.record import write_record
    from funduslab.runs import RunFolder

    run_dir = tmp_path / "run"
    (run_dir / "predictions").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("provenance:\n  label_names: [D]\n")
    (run_dir / "metrics.json").write_text('{"splits": {}}\n')
    (run_dir / "predictions" / "val.csv").write_text("id,p_D,D\na,0.25,0\n")
    record = write_record(run_dir, tmp_path / "record")
    with caplog.at_level(logging.WARNING, logger="funduslab.runs.folder"):
        RunFolder(record).predictions("val")
    assert not caplog.records  # intact: silent
    edited = record / "predictions" / "val.csv"
    edited.write_text("id,p_D,D\na,0.95,1\n")
    with caplog.at_level(logging.WARNING, logger="funduslab.runs.folder"):
        folder = RunFolder(record)
        folder.metrics
        folder.predictions("val")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(edited) in warned[0] and "checksum" in warned[0], warned
