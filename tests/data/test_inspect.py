"""``data check`` warns on images that decode but will mislead (issue 34, finding 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.data.inspect import inspect_images

runner = CliRunner()


def test_small_and_16bit_images_are_reported_with_how_much(tmp_path: Path) -> None:
    Image.fromarray(np.full((10, 10, 3), 90, np.uint8)).save(tmp_path / "thumb.png")
    Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(tmp_path / "fine.png")
    Image.fromarray(np.full((300, 300), 4095, np.uint16)).save(tmp_path / "sensor.png")
    findings = inspect_images([tmp_path / n for n in ("thumb.png", "fine.png", "sensor.png")],
                              image_size=256)
    kinds = {(f.path.name, f.kind) for f in findings}
    assert kinds == {("thumb.png", "small"), ("sensor.png", "high_bit_depth")}
    small = next(f for f in findings if f.kind == "small")
    assert "10×10 px" in small.message and "25.6×" in small.message
    wide = next(f for f in findings if f.kind == "high_bit_depth")
    assert "4095" in wide.message and "12-bit" in wide.message
    assert not any(f.is_error for f in findings)


def test_errors_stay_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (finding,) = inspect_images([tmp_path / "broken.jpg"], image_size=32)
    assert finding.is_error and "broken.jpg" in finding.message


def test_data_check_warns_on_a_tiny_image_but_passes(course_root: Path) -> None:
    Image.fromarray(np.full((4, 4, 3), 128, np.uint8)).save(
        course_root / "images" / "train" / "2_left.jpg")
    result = runner.invoke(app, ["data", "check", str(course_root), "--image-size", "8"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "2_left.jpg" in out and "4×4 px" in out and "2.0×" in out
    assert "1 with warnings" in out
