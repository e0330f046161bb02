"""Training-order samplers, registered by name (``random`` = plain shuffling).

A sampler factory takes the training split and a seed and returns a ``torch`` sampler, or
``None`` to let the loader shuffle.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from funduslab.registry import Registry
from funduslab.training.context import SplitData

__all__ = ["SAMPLERS", "build_sampler"]

SAMPLERS: Registry = Registry("sampler")


@SAMPLERS.register("random")
def _random(split: SplitData, seed: int) -> Sampler | None:
    return None


@SAMPLERS.register("class_aware")
def class_aware(split: SplitData, seed: int) -> Sampler:
    """Oversample rare labels: a sample's weight is the largest inverse frequency of its labels.

    Multi-label: ``w_i = max_c [y_ic / n_c]`` (samples with no positive label get the weight of
    the most common "all negative" pattern, ``1 / n_neg``), so every class — and the
    all-negative group — is drawn about equally often per epoch.
    """
    y = np.asarray(split.targets)
    if y.ndim == 1:  # grades → one-hot
        y = np.eye(int(y.max()) + 1)[y.astype(int)]
    counts = y.sum(axis=0).clip(min=1)
    weights = (y / counts).max(axis=1)
    none = y.sum(axis=1) == 0
    if none.any():
        weights[none] = 1.0 / none.sum()
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double), len(y), replacement=True, generator=generator
    )


def build_sampler(name: str, split: SplitData, seed: int) -> Sampler | None:
    """Registered sampler for ``split`` (``ValueError`` lists the valid names)."""
    return SAMPLERS.get(name)(split, seed)
