"""A synthetic IDRiD-style set with every DR grade, for image-level lesion-presence experiments.

The ``idrid`` layout of :func:`funduslab.data.synthetic_layouts.write_layout` draws DR grades 2–4
only, like the real IDRiD segmentation set, so microaneurysms, haemorrhages and hard exudates are
present in (nearly) every image and image-level presence cannot be scored. This writer uses the
same generator (:func:`funduslab.data.synthetic.render_fundus`) and folder layout but draws the
grade uniformly from ``grades`` (default 0–4): grade 0 has no lesion, grade 1 microaneurysms only,
grades ≥ 2 add haemorrhages, exudates and (sometimes) cotton-wool spots. Same seed, same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from funduslab.data.imageio import write_image_atomic
from funduslab.data.synthetic import FundusSpec, image_rng, render_fundus, sample_camera

__all__ = ["write_graded_idrid"]

_MASK_FOLDERS = (("MA", "1. Microaneurysms"), ("HE", "2. Haemorrhages"),
                 ("EX", "3. Hard Exudates"), ("SE", "4. Soft Exudates"))
_SETS = ("a. Training Set", "b. Testing Set")


def write_graded_idrid(out: Path | str, n: int = 30, seed: int = 0, size: int = 256,
                       grades: Sequence[int] = (0, 1, 2, 3, 4),
                       test_fraction: float = 1 / 3) -> Path:
    """Write ``n`` IDRiD-layout images (JPEG + non-empty ``.tif`` lesion masks).

    Args:
        out: Dataset root (``A. Segmentation/`` is created inside).
        n: Number of images; the last ``round(test_fraction · n)`` form the testing set.
        seed: Seed of every draw (image ``k`` uses ``image_rng(seed, k, 0x1D)``).
        size: Image side in px.
        grades: DR grades drawn uniformly per image.
        test_fraction: Share of images in ``b. Testing Set``.

    Returns:
        ``out``.

    Raises:
        ValueError: ``n < 2``, a grade outside 0–4 or a bad fraction.
    """
    if n < 2:
        raise ValueError(f"n must be ≥ 2 images (one per set), got {n}")
    if not grades or any(g not in (0, 1, 2, 3, 4) for g in grades):
        raise ValueError(f"grades must be DR grades 0-4, got {list(grades)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    out = Path(out)
    seg = out / "A. Segmentation"
    n_test = min(n - 1, max(1, round(test_fraction * n)))
    for k in range(1, n + 1):
        rng = image_rng(seed, k, 0x1D)
        spec = FundusSpec(size=size, eye="left" if k % 2 else "right",
                          dr_grade=int(rng.choice(np.asarray(grades))),
                          pigment=rng.uniform(0.0, 1.0), camera=sample_camera(rng))
        img, masks = render_fundus(spec, rng)
        part = _SETS[int(k > n - n_test)]
        name = f"IDRiD_{k:02d}"
        write_image_atomic(seg / "1. Original Images" / part / f"{name}.jpg", img,
                           quality=spec.camera.jpeg_quality)
        for lesion, folder in _MASK_FOLDERS:
            if masks[lesion].any():
                write_image_atomic(seg / "2. All Segmentation Groundtruths" / part / folder /
                                   f"{name}_{lesion}.tif", masks[lesion])
    return out
