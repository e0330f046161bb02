"""One writer per run folder (issue 33, item 3): a second process is refused with one clear line,
the first one's files stay as they were, and a killed holder blocks nobody."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.reporting.record import check_record, write_record
from funduslab.runs import RunFolder, find_run_folders
from funduslab.runs.lock import LOCK_FILE, RunFolderBusy, run_folder_lock
from funduslab.training import runner as runner_module
from funduslab.training.runner import run

_RANKS = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "WORLD_SIZE")

# A real run in another process that stops inside fit_model (config.yaml written, training
# begun) until the test writes a line to its stdin.
_RUN_AND_WAIT = textwrap.dedent("""
    import json, sys
    from funduslab.config import config_from_dict
    from funduslab.training import runner
    real = runner.fit_model
    def paused(ctx):
        print("training", flush=True)
        sys.stdin.readline()
        return real(ctx)
    runner.fit_model = paused
    runner.run(config_from_dict(json.loads(sys.argv[1])), progress=False)
    print("done", flush=True)
""")

# Holds a run folder's lock, nothing else, until stdin closes or the process is killed.
_HOLD = textwrap.dedent("""
    import sys
    from funduslab.runs.lock import run_folder_lock
    with run_folder_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()
""")


def _settings(data: Path, out: Path, name: str) -> dict:
    return {
        "data": {"root": str(data), "image_size": 32, "cache_dir": str(out / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32"},
        "output": {"out": str(out), "name": name, "figures": False},
    }


def _start(script: str, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in _RANKS}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    """Read the helper's stdout up to the line ``word``; fail with its stderr if it ends first."""
    for line in proc.stdout:
        if line.strip() == word:
            return
    proc.kill()
    raise AssertionError(f"helper process ended before {word!r}: {proc.stderr.read()[-3000:]}")


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the run (bytes and mtime), the lock file aside."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


@pytest.fixture(scope="module")
def finished(synth_course: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("locked_runs")
    return run(config_from_dict(_settings(synth_course, out, "done")), progress=False)


def test_second_writer_is_refused_and_the_first_run_finishes_intact(
        synth_course: Path, tmp_path: Path) -> None:
    settings = _settings(synth_course, tmp_path, "shared")
    first = _start(_RUN_AND_WAIT, json.dumps(settings))
    try:
        _wait_for(first, "training")
        folder = tmp_path / "shared"
        before = _snapshot(folder)
        assert "config.yaml" in before and (folder / LOCK_FILE).is_file()

        with pytest.raises(RunFolderBusy, match="another funduslab process is writing it") as err:
            run(config_from_dict(settings), progress=False)
        assert str(folder) in str(err.value) and "\n" not in str(err.value)
        restart = config_from_dict({**settings, "output": {**settings["output"], "resume": False}})
        with pytest.raises(RunFolderBusy):  # not even a restart may wipe a folder in use
            run(restart, progress=False)

        result = CliRunner().invoke(app, [
            "train", "--data", str(synth_course), "--backbone", "tiny_cnn", "--weights", "none",
            "--image-size", "32", "--epochs", "1", "--precision", "32",
            "--out", str(tmp_path), "--name", "shared"])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: run folder"), result.output
        assert "another funduslab process is writing it" in lines[0]
        assert _snapshot(folder) == before  # nothing of the first run touched

        first.stdin.write("go on\n")
        first.stdin.close()
        assert first.wait(timeout=240) == 0, first.stderr.read()[-3000:]
        assert "done" in first.stdout.read()
    finally:
        first.kill()
    done = RunFolder(folder)
    assert done.is_finished and done.weights is not None and not done.failed


def test_a_killed_holder_blocks_nobody_and_other_ranks_do_not_lock(
        tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "run"
    holder = _start(_HOLD, str(folder))
    try:
        _wait_for(holder, "held")
        with pytest.raises(RunFolderBusy, match=re.escape(str(folder))):
            with run_folder_lock(folder):
                pass
        monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP worker of the run that holds the lock
        with run_folder_lock(folder):
            pass
        monkeypatch.delenv("LOCAL_RANK")
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait(timeout=30)
    finally:
        holder.kill()
    assert (folder / LOCK_FILE).is_file()  # the file stays; the OS dropped the lock
    with run_folder_lock(folder):
        pass


def test_a_failed_new_run_removes_its_folder_lock_file_included(
        synth_course: Path, tmp_path: Path, monkeypatch) -> None:
    def broken(ctx):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(runner_module, "fit_model", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        run(config_from_dict(_settings(synth_course, tmp_path, "boom")), progress=False)
    assert not (tmp_path / "boom").exists()

    # Windows cannot delete a lock file that is still open: the clean-up's rmtree leaves it,
    # and the folder must go once the lock is released.
    def rmtree_all_but_the_lock(run_dir, created, err):
        for p in sorted(Path(run_dir).rglob("*"), reverse=True):
            if p.name != LOCK_FILE:
                p.rmdir() if p.is_dir() else p.unlink()

    monkeypatch.setattr(runner_module, "clean_up_failed_run", rmtree_all_but_the_lock)
    with pytest.raises(RuntimeError, match="out of memory"):
        run(config_from_dict(_settings(synth_course, tmp_path, "boom2")), progress=False)
    assert not (tmp_path / "boom2").exists()


def test_the_lock_file_changes_nothing_readers_see(
        finished: Path, synth_course: Path, tmp_path: Path) -> None:
    assert (finished / LOCK_FILE).is_file()
    folder = RunFolder(finished)
    assert folder.is_finished and folder.weights == finished / "model.pt" and not folder.failed
    found, skipped = find_run_folders([finished.parent])
    assert found == [finished] and skipped == []

    record = write_record(finished, tmp_path / "record")
    assert not (record / LOCK_FILE).exists() and check_record(record) == []

    in_making = finished.parent / "in_making"  # locked, nothing written yet
    in_making.mkdir()
    (in_making / LOCK_FILE).touch()
    found, skipped = find_run_folders([finished.parent])
    assert found == [finished]
    assert [(p.name, why) for p, why in skipped] == [("in_making", "unfinished: no metrics.json")]

    stamp = (finished / "metrics.json").stat().st_mtime_ns
    again = run(config_from_dict(_settings(synth_course, finished.parent, "done")),
                progress=False)  # finished, same config: taken, checked, released, untouched
    assert again == finished and (finished / "metrics.json").stat().st_mtime_ns == stamp
