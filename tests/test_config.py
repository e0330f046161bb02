"""Config helpers: atomic writes leave no temporary file and give the usual file mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from funduslab.config import (FILE_MODE, atomic_write_text, config_from_dict, load_config,
                              save_config)


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


def test_a_run_folders_saved_config_loads_back_unchanged(tmp_path: Path):
    """config.yaml in a run folder carries a provenance record; it must re-run as it is."""
    cfg = config_from_dict({"data": {"root": str(tmp_path), "image_size": 64},
                            "train": {"epochs": 3, "loss": "focal", "seed": 7},
                            "output": {"out": str(tmp_path), "name": "r"}})
    path = tmp_path / "config.yaml"
    save_config(cfg, path, {"seed": 7, "data_fingerprint": "abc", "environment": {"torch": "x"}})
    assert "provenance" in path.read_text()
    assert load_config(path) == cfg
    assert load_config(path, {"train.tta": True}).train.tta is True
    with pytest.raises(ValueError, match="proveance"):  # other unknown sections still fail
        config_from_dict({"proveance": {}})
