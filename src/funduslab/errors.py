"""Errors the command line turns into one line and exit status 2.

Kept free of imports so ``funduslab.cli`` can name them without loading the library.
"""

from __future__ import annotations

import errno
import os

__all__ = ["DISK_ERRNOS", "DiskWriteError"]

#: ``errno`` values that mean "this file system will not take the write", not a bug.
DISK_ERRNOS: frozenset[int] = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EFBIG,
                      errno.EACCES, errno.EPERM)
    if code is not None
)


class DiskWriteError(OSError):
    """A file could not be written (disk full, read-only or forbidden folder).

    The message names the file a user would look for (``cannot write runs/a/metrics.json: no
    space left on device``), not the temporary file the write went through; the previous version
    of that file, if any, is left as it was.

    Args:
        path: The file that was to be written.
        cause: The ``OSError`` the write raised; its ``errno`` is kept.
    """

    def __init__(self, path: str | os.PathLike[str], cause: OSError) -> None:
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(cause.errno, reason, os.fspath(path))

    def __reduce__(self) -> tuple:  # picklable across worker processes
        return type(self), (self.filename, OSError(self.errno, self.strerror))

    def __str__(self) -> str:
        reason = str(self.strerror)
        reason = reason[:1].lower() + reason[1:]
        return f"cannot write {self.filename}: {reason}"
