"""What a setup needs to fit a model: the config, the decoded splits and a model factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from funduslab.config import RunConfig
from funduslab.data.table import SampleTable

__all__ = ["RunContext", "SplitData"]


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


@dataclass
class RunContext:
    """Inputs shared by every setup of one run."""

    cfg: RunConfig
    table: SampleTable
    splits: dict[str, SplitData]
    run_dir: Path
    cache_dir: Path
    data_fingerprint: str
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def train(self) -> SplitData:
        return self.splits[self.cfg.data.train_split]

    @property
    def val(self) -> SplitData | None:
        return self.splits.get(self.cfg.data.val_split)
