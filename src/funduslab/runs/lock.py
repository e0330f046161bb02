"""One writer per run folder: an OS-level lock on ``<run_dir>/.lock`` for the whole run.

Two ``funduslab train`` commands aimed at the same folder (two terminals, a suite started twice,
a scheduler retrying a job that still runs) would both write ``checkpoints/last.ckpt``,
``metrics.json`` and the weights, leaving one run's weights beside the other's metrics — or one
resuming from the other's half-written checkpoint. :func:`run_folder_lock` takes an exclusive
lock (``filelock``: ``flock`` on POSIX, ``msvcrt.locking`` on Windows) without waiting: the
second process stops at once with :class:`RunFolderBusy`, since waiting would only make it
redo or overwrite the first one's work.

The operating system releases the lock when its holder exits or is killed, so a lock left by a
crashed run never blocks the next one. The empty ``.lock`` may stay in the folder; no reader
looks at it (``RunFolder`` reads named files, records copy named files). Only global rank 0
locks: under DDP the other ranks are the same run, started on the same folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["LOCK_FILE", "RunFolderBusy", "run_folder_lock"]

#: The lock file inside a run folder.
LOCK_FILE = ".lock"
_RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


class RunFolderBusy(ValueError):
    """Another live funduslab process is writing the run folder."""


def _secondary_rank() -> bool:
    """A distributed worker other than global rank 0 (torchrun, Lightning, SLURM)."""
    if "RANK" in os.environ:  # torchrun: the global rank
        return os.environ["RANK"].strip() not in ("", "0")
    return any(os.environ.get(key, "0").strip() not in ("", "0") for key in _RANK_VARIABLES)


@contextmanager
def run_folder_lock(run_dir: str | os.PathLike[str], created: bool = False) -> Iterator[Path]:
    """Create ``run_dir`` if needed and hold its lock while the body writes it.

    Args:
        run_dir: The run folder.
        created: The caller created the folder. When the body's clean-up of a failed run emptied
            it, the leftover lock file and the folder go too (Windows cannot delete a lock file
            that is still open, so ``shutil.rmtree`` in the clean-up leaves it there).

    Raises:
        RunFolderBusy: another process holds the lock; the message names the folder.
    """
    run_dir = Path(run_dir)
    if _secondary_rank():
        yield run_dir
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderBusy(
            f"run folder {run_dir} is busy: another funduslab process is writing it (it holds "
            f"{run_dir / LOCK_FILE}); wait for that run to finish, or choose another output name"
        ) from None
    try:
        yield run_dir
    finally:
        lock.release()
        if created:
            _remove_if_emptied(run_dir)


def _remove_if_emptied(run_dir: Path) -> None:
    """Remove a folder that holds nothing but its lock file (best effort)."""
    with suppress(OSError):
        if {p.name for p in run_dir.iterdir()} <= {LOCK_FILE}:
            (run_dir / LOCK_FILE).unlink(missing_ok=True)
            run_dir.rmdir()
