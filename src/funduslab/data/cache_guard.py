"""Cache entries that several processes share and that no reader trusts blindly.

Two runs often start on the same data at once (a seed sweep, a suite, a second terminal), and a
cache file can be cut short by a full disk or edited by hand. Every cache entry of funduslab —
decoded images (:mod:`funduslab.data.cache`) and frozen-backbone features
(:mod:`funduslab.training.features`) — therefore:

* **is built under a lock of its own** (:func:`entry_lock`: an OS-level ``filelock`` lock on
  ``.<entry name>.lock`` beside it). A second process waits, then finds the finished entry and
  reuses it instead of building it again over the first one's files. The operating system
  drops the lock when its holder exits or is killed, so a crashed build never blocks the next
  run. The small lock file stays: deleting it on release would race with a process that has
  just opened it.
* **carries a seal written when it is made** (:func:`seal`): its size in bytes and SHA-256, in a
  small JSON sidecar, checked before every use (:func:`entry_problem`). An entry that is
  truncated, altered or unsealed is rebuilt with a warning naming the file, never used.

What a check costs, and why it differs by entry:

* The size is compared on every use (one ``stat``): it catches truncation, the common damage.
* Where using the entry reads every byte anyway (a ``torch.load``-ed feature file), the SHA-256
  is checked on every use too: about one more pass over bytes already in the page cache.
* A decoded-image stack is a memory map of up to several GB of which a run pages in only what
  its batches touch; hashing it on every use would cost more than a short frozen run. Up to
  :data:`ALWAYS_HASH_BELOW` bytes (tens of milliseconds of hashing) it is hashed on every use
  all the same. Above that, its seal also keeps the file's ``stat`` (size, mtime, ctime, inode)
  as of its last full check, and the hash is recomputed only when that stat changed. Any write
  to the file changes its ctime (which, unlike mtime, cannot be set back), and a copy or move
  gets a new inode, so each of those is checked in full once and then trusted again. Not
  caught cheaply in a large entry: damage that leaves the stat alone (bit rot below the file
  system; an edit within one timestamp tick of the last check) — delete the cache folder if
  you suspect it. Per-chunk hashes would not help there: only hashing every chunk finds it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

__all__ = [
    "ALWAYS_HASH_BELOW",
    "ENTRY_LOCK_TIMEOUT_S",
    "CacheEntryBusy",
    "entry_lock",
    "entry_problem",
    "file_sha256",
    "lock_path",
    "read_seal",
    "seal",
    "stat_stamp",
    "write_sidecar",
]

log = logging.getLogger(__name__)

#: How long a process waits for another one to finish building the same entry (seconds).
#: Decoding a large dataset takes a while; a dead builder releases the lock at once.
ENTRY_LOCK_TIMEOUT_S = 6 * 3600.0
#: Entries up to this size (bytes) are hashed on every use even where the stat could vouch.
ALWAYS_HASH_BELOW = 64 * 1024 * 1024
_BLOCK = 8 * 1024 * 1024
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class CacheEntryBusy(ValueError):
    """Another process kept a cache entry locked for longer than :data:`ENTRY_LOCK_TIMEOUT_S`."""


def lock_path(entry: Path) -> Path:
    """The lock file of a cache entry: ``.<name>.lock`` beside it."""
    return entry.parent / f".{entry.name}.lock"


@contextmanager
def entry_lock(entry: str | os.PathLike[str],
               timeout: float = ENTRY_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the entry's lock while checking, building or sealing it; wait while another has it.

    A cache folder this process cannot write (a shared, read-only cache) is read without a lock:
    nobody can build into it anyway.

    Raises:
        CacheEntryBusy: still locked by another process after ``timeout`` seconds.
    """
    entry = Path(entry)
    lock = FileLock(lock_path(entry))
    locked = False
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another process to finish cache entry %s", entry)
            lock.acquire(timeout=timeout)
        locked = True
    except Timeout:
        raise CacheEntryBusy(
            f"cache entry {entry} was still locked by another process after {timeout:.0f} s "
            f"(lock {lock_path(entry)}): let that process finish, or pick another cache folder"
        ) from None
    except OSError as err:
        if err.errno not in _UNWRITABLE:
            raise
        log.info("cache folder %s is not writable (%s): reading %s without a lock",
                 entry.parent, err.strerror, entry.name)
    try:
        yield
    finally:
        if locked:
            lock.release()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a whole file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def stat_stamp(path: str | os.PathLike[str]) -> list[int]:
    """``[size, mtime_ns, ctime_ns, inode]``: changes on any write, copy or move of the file."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def seal(path: str | os.PathLike[str], **extra: Any) -> dict[str, Any]:
    """A finished entry's seal: ``bytes`` and ``sha256`` of the file, plus ``extra`` fields."""
    return {"bytes": os.stat(path).st_size, "sha256": file_sha256(path), **extra}


def entry_problem(path: str | os.PathLike[str], sealed: dict[str, Any] | None,
                  trust_stat: bool = False) -> str | None:
    """Why the entry at ``path`` must not be used, or ``None`` when it matches its seal.

    Args:
        path: The entry (it must exist).
        sealed: Its seal (:func:`seal`), ``None`` when none was found.
        trust_stat: Skip the hash when the file is larger than :data:`ALWAYS_HASH_BELOW` and its
            :func:`stat_stamp` equals ``sealed["stat"]`` (the last full check): for large
            memory-mapped entries, see the module docstring.
    """
    if not isinstance(sealed, dict) or not {"bytes", "sha256"} <= sealed.keys():
        return ("no checksum was recorded for it (an interrupted build, or a cache written "
                "by an older funduslab)")
    size = os.stat(path).st_size
    if size != sealed["bytes"]:
        return f"it holds {size:,} bytes, not the {sealed['bytes']:,} written (truncated?)"
    if trust_stat and size > ALWAYS_HASH_BELOW and sealed.get("stat") == stat_stamp(path):
        return None
    if file_sha256(path) != sealed["sha256"]:
        return "its SHA-256 differs from the one recorded when it was written (altered)"
    return None


def read_seal(sidecar: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``seal`` object of a JSON sidecar, or ``None`` (missing, unreadable, unsealed)."""
    try:
        doc = json.loads(Path(sidecar).read_text())
    except (OSError, ValueError):
        return None
    found = doc.get("seal") if isinstance(doc, dict) else None
    return found if isinstance(found, dict) else None


def write_sidecar(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Write a JSON sidecar atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
