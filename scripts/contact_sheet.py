"""Render synthetic fundus photographs with their labels as captions, to eyeball the generator.

Usage: python scripts/contact_sheet.py --out sheet.png --n 24 --seed 0 [--sampler course|many]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2

from funduslab.data.contact_sheet import contact_sheet
from funduslab.data.synthetic import (
    image_rng,
    render_fundus,
    sample_course_spec,
    sample_many_label_spec,
)

SAMPLERS = {"course": sample_course_spec, "many": sample_many_label_spec}


def caption(spec) -> str:  # noqa: ANN001 - FundusSpec
    """Short label string: eye, DR grade, G/A and extras, e.g. ``R D2 G``."""
    parts = [spec.eye[0].upper()]
    if spec.dr_grade:
        parts.append(f"D{spec.dr_grade}")
    parts += [k for k, on in (("G", spec.glaucoma), ("A", spec.amd), ("C", spec.cataract),
                              ("M", spec.myopia), ("H", spec.hypertensive)) if on]
    if len(parts) == 1:
        parts.append("N")
    return " ".join(parts) + f" cdr{spec.cup_to_disc_ratio:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sheet.png"))
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cols", type=int, default=6)
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="course")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    images, captions = [], []
    for i in range(args.n):
        rng = image_rng(args.seed, i)
        spec = SAMPLERS[args.sampler](rng, args.size)
        img, _ = render_fundus(spec, rng)
        images.append(img)
        captions.append(caption(spec))
    sheet = contact_sheet(images, captions, args.cols)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"could not write {args.out}")
    logging.info("wrote %s (%d images)", args.out, args.n)


if __name__ == "__main__":
    main()
