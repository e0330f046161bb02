"""One decoded split — the images, targets and ids a sampler, loader or setup works on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SplitData"]


@dataclass
class SplitData:
    """One split, decoded: ``images (N, S, S, 3) uint8``, ``targets (N, K)``, ids in table order.

    ``patients`` holds each image's patient id (table order) when known, for patient-level
    samplers; ``None`` where the split was built without them. ``partners (N,) int64`` indexes,
    for dual-image models (``model.dual``), the image each image is seen with — in this split,
    see :mod:`funduslab.training.pairs`; ``None`` for single-image models.
    """

    name: str
    ids: list[str]
    images: np.ndarray
    targets: np.ndarray
    labelled: bool
    patients: list[str] | None = None
    partners: np.ndarray | None = None
