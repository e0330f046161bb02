"""A full disk or a read-only folder: one clear line naming the file, nothing half-written left
where a reader would trust it, the previous good files still readable (issue 33, item 2).

A full disk is simulated where every funduslab writer makes its temporary file,
``tempfile.mkstemp(dir=<the target's folder>)``: the temporary name becomes a link to
``/dev/full``, so the file is created but every write into it fails with ``ENOSPC`` — what a
real full disk does. A read-only folder makes ``mkstemp`` itself fail (``EROFS``/``EACCES``); the
``chmod 0o555`` variant runs only for a non-root user (root ignores permissions).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import (
    DiskWriteError,
    atomic_write_text,
    config_from_dict,
    save_config,
)
from funduslab.runs import RunFolder
from funduslab.runs.files import write_json, write_predictions, write_submission

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")

Refuse = Callable[..., None]


@pytest.fixture
def refuse_writes(monkeypatch: pytest.MonkeyPatch) -> Refuse:
    """``refuse(code=ENOSPC, only=None)``: from now on, writes of files whose name contains
    ``only`` (every file when ``None``) fail with ``code``."""
    real_mkstemp, real_chmod, real_replace = tempfile.mkstemp, os.chmod, os.replace

    def to_full(path: object) -> bool:
        return os.path.islink(path) and os.path.realpath(path) == "/dev/full"  # type: ignore

    def chmod(path, *args, **kwargs):  # never through the link onto the device itself
        assert not to_full(path), f"chmod of {path} after a failed write"
        return real_chmod(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):  # a failed write must never be renamed into place
        assert not to_full(src), f"{src} renamed over {dst} after a failed write"
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(os, "replace", replace)

    def refuse(code: int = errno.ENOSPC, only: str | None = None) -> None:
        def mkstemp(suffix=None, prefix=None, dir=None, text=False):  # noqa: A002
            if dir is None or (only is not None and only not in (prefix or "")):
                return real_mkstemp(suffix, prefix, dir, text)
            if code != errno.ENOSPC:  # the folder refuses the new file itself
                raise OSError(code, os.strerror(code), str(dir))
            fd, name = real_mkstemp(suffix, prefix, dir, text)
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)  # created, but every write fails: a full disk
            return os.open(name, os.O_RDWR), name

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    return refuse


def _only_finished_files(folder: Path) -> list[str]:
    """Every file under ``folder``; a leftover temporary (``.<name>.*.tmp``) would show here."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() or p.is_symlink())


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(
        tmp_path: Path, refuse_writes: Refuse) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old\n")
    refuse_writes()
    with pytest.raises(DiskWriteError) as caught:
        atomic_write_text(path, "new" * 10_000)
    err = caught.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(err) == f"cannot write {path}: no space left on device"
    assert str(pickle.loads(pickle.dumps(err))) == str(err)  # crosses worker processes
    assert path.read_text() == "old\n"
    assert _only_finished_files(tmp_path) == ["metrics.json"]


@pytest.mark.parametrize("code, reason", [(errno.EROFS, "read-only file system"),
                                          (errno.EACCES, "permission denied")])
def test_a_read_only_folder_names_the_file(tmp_path: Path, refuse_writes: Refuse, code: int,
                                           reason: str) -> None:
    path = tmp_path / "run" / "config.yaml"
    refuse_writes(code)
    with pytest.raises(DiskWriteError, match=f"^cannot write {path}: {reason}$"):
        save_config(config_from_dict({}), path)
    assert _only_finished_files(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_a_chmod_read_only_folder_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")
    folder.chmod(0o555)
    try:
        with pytest.raises(DiskWriteError, match="cannot write .*metrics.json: permission denied"):
            write_json(folder / "metrics.json", {"a": 1})
        assert (folder / "metrics.json").read_text() == "{}"
    finally:
        folder.chmod(0o755)


def _write_every_run_file(run: Path, value: float) -> None:
    """One of each writer of a run folder (config, metrics, predictions, submission, history,
    weights, a Lightning checkpoint, a figure)."""
    import matplotlib.pyplot as plt

    from funduslab.models.funduslab_checkpoints import save_funduslab_checkpoint
    from funduslab.plots.figures import save_figure
    from funduslab.training.checkpoint_io import AtomicCheckpointIO
    from funduslab.training.fit import HistoryWriter

    save_config(config_from_dict({"train": {"lr": value}}), run / "config.yaml")
    write_json(run / "metrics.json", {"value": value})
    probs = np.full((2, 1), value)
    write_predictions(run / "predictions" / "val.csv", ["a", "b"], probs, probs > 0.5, ["D"])
    write_submission(run / "submission.csv", ["a", "b"], (probs > 0.5).astype(int), ["id", "D"])
    trainer = SimpleNamespace(global_rank=0, current_epoch=0,
                              callback_metrics={"train_loss": torch.tensor(value)})
    HistoryWriter(run / "history.csv").on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    save_funduslab_checkpoint(run / "model.pt", {"w": torch.full((3,), value)}, {"v": value})
    AtomicCheckpointIO().save_checkpoint({"w": torch.full((3,), value)},
                                         run / "checkpoints" / "last.ckpt")
    fig = plt.figure(figsize=(1, 1))
    fig.text(0.5, 0.5, str(value))
    save_figure(fig, run / "figures" / "curves.png", dpi=20)


RUN_FILES = ["checkpoints/last.ckpt", "config.yaml", "figures/curves.png", "history.csv",
             "metrics.json", "model.pt", "predictions/val.csv", "submission.csv"]


@pytest.mark.parametrize("name", RUN_FILES)
def test_every_run_folder_writer_fails_cleanly_and_keeps_the_good_file(
        tmp_path: Path, refuse_writes: Refuse, name: str) -> None:
    run = tmp_path / "run"
    _write_every_run_file(run, 0.25)
    before = {f: (run / f).read_bytes() for f in RUN_FILES}
    refuse_writes(only=Path(name).name)
    with pytest.raises(DiskWriteError) as caught:
        _write_every_run_file(run, 0.75)
    assert str(caught.value) == f"cannot write {run / name}: no space left on device"
    assert (run / name).read_bytes() == before[name]
    assert _only_finished_files(run) == RUN_FILES
    folder = RunFolder(run)  # every file still reads: the old or the new version, whole
    assert folder.metrics["value"] in (0.25, 0.75) and len(folder.history) == 1
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["w"].shape == (3,)


def test_marking_a_failed_run_on_the_full_disk_keeps_the_runs_own_error(
        tmp_path: Path, refuse_writes: Refuse, caplog: pytest.LogCaptureFixture) -> None:
    """``failed.json`` cannot be written either: the run's error (which names the file that
    filled the disk) must still be the one the user sees, not one about ``failed.json``."""
    from funduslab.runs.files import clean_up_failed_run

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"resumable")
    refuse_writes()
    error = DiskWriteError(run / "history.csv", OSError(errno.ENOSPC, "No space left on device"))
    clean_up_failed_run(run, created=False, error=error)  # no exception of its own
    assert "could not mark" in caplog.text and not (run / "failed.json").exists()
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"resumable"


def test_a_cache_on_a_full_disk_leaves_no_file(tmp_path: Path, refuse_writes: Refuse,
                                               image_png: Path) -> None:
    from funduslab.data.cache import cached_images

    refuse_writes()
    with pytest.raises(OSError) as caught:
        cached_images([image_png], "none", 16, tmp_path / "cache")
    assert caught.value.errno == errno.ENOSPC
    left = [f for f in _only_finished_files(tmp_path / "cache") if not f.endswith(".lock")]
    assert left == []  # (an empty lock file is the cache's, not data)


@pytest.fixture
def image_png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "images" / "a.png"
    path.parent.mkdir()
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(path)
    return path


def _one_error_line(output: str) -> str:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def test_cli_synth_on_a_full_disk_is_one_line_naming_the_file(
        tmp_path: Path, refuse_writes: Refuse) -> None:
    refuse_writes()
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "s"), "--n", "8",
                                      "--image-size", "32"])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith(f"error: cannot write {tmp_path / 's'}")
    assert line.endswith(": no space left on device")
    assert _only_finished_files(tmp_path) == []


def test_cli_names_a_bare_full_disk_error_in_one_line(
        tmp_path: Path, refuse_writes: Refuse, image_png: Path) -> None:
    """A writer funduslab does not wrap (the image cache) still gives one line and exit 2."""
    import typer

    from funduslab.cli.common import friendly
    from funduslab.data.cache import cached_images

    demo = typer.Typer()

    @demo.command()
    @friendly
    def cache() -> None:
        cached_images([image_png], "none", 16, tmp_path / "cache")

    refuse_writes()
    result = CliRunner().invoke(demo, [])
    assert result.exit_code == 2, result.output
    assert "no space left on device" in _one_error_line(result.output)


@pytest.mark.slow
def test_cli_train_with_a_checkpoint_on_a_full_disk_is_one_line_naming_it(
        synth_course: Path, tmp_path: Path, refuse_writes: Refuse) -> None:
    """Lightning's checkpoint goes through funduslab's atomic write (its own writes through the
    system temp folder, untouched here, and would have succeeded), so a full disk stops
    ``train`` with one line naming the checkpoint; the run folder, with nothing resumable in
    it, is removed; the image cache beside it stays."""
    out, cache = tmp_path / "runs", tmp_path / "cache"
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({
        "data": {"root": str(synth_course), "image_size": 32, "cache_dir": str(cache)},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 32, "precision": "32"},
        "output": {"out": str(out), "name": "full", "figures": False},
    }))
    refuse_writes(only=".ckpt")
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2, result.output
    line = " ".join(_one_error_line(result.output).split())
    assert line.startswith(f"error: cannot write {out / 'full' / 'checkpoints'}")
    assert line.endswith(".ckpt: no space left on device")
    assert not (out / "full").exists()
    assert list(cache.glob("*.npy"))  # the decoded images, written before training
