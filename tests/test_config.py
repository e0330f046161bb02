"""Config helpers: atomic writes leave no temporary file and give the usual file mode."""

from __future__ import annotations

import os
from pathlib import Path

from funduslab.config import FILE_MODE, atomic_write_text


def test_atomic_write_text_replaces_whole_file_with_umask_mode(tmp_path: Path):
    path = tmp_path / "sub" / "results.md"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["results.md"]  # no .tmp left behind
    umask = os.umask(0)
    os.umask(umask)
    assert FILE_MODE == 0o666 & ~umask
    assert path.stat().st_mode & 0o777 == FILE_MODE  # not mkstemp's 0600
