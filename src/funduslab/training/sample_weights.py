"""Per-sample training weights read from a file: the ``weighted_file`` sampler.

Resampling ensembles (:mod:`funduslab.ensemble.resampled`) steer what each member sees through
one CSV per member, ``id,weight`` over the training split, named by ``train.sample_weights``
with ``train.sampler: weighted_file``:

* bagging (Breiman, Machine Learning 1996): integer bootstrap counts, so out-of-bag images have
  weight 0 and are never drawn;
* boosting (Freund & Schapire, J. Comput. Syst. Sci. 1997): AdaBoost sample weights, i.e.
  "boosting by resampling" rather than by reweighting the loss.

Each epoch draws ``N`` indices with replacement with probability ``w_i / sum(w)``
(:class:`torch.utils.data.WeightedRandomSampler`), from a generator seeded with
``train.seed`` — same file and seed, same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from funduslab.config import TrainConfig, atomic_write_text
from funduslab.data.split_data import SplitData
from funduslab.training.samplers import SAMPLERS, build_sampler

__all__ = [
    "build_train_sampler",
    "read_sample_weights",
    "weighted_file_sampler",
    "write_sample_weights",
]


def write_sample_weights(path: Path, ids: Sequence[str], weights: np.ndarray) -> None:
    """Atomically write ``id,weight`` rows (weights ``(N,)``, non-negative)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(ids),):
        raise ValueError(f"{len(ids)} ids but weights of shape {weights.shape}")
    frame = pd.DataFrame({"id": [str(i) for i in ids], "weight": weights})
    atomic_write_text(Path(path), frame.to_csv(index=False, float_format="%.10g"))


def read_sample_weights(path: Path, ids: Sequence[str]) -> np.ndarray:
    """Weights ``(N,)`` float64 aligned to ``ids`` (rows of the file for other ids are ignored).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if columns ``id,weight`` are missing, an id of ``ids`` has no row, an id is
            repeated, or a weight is negative/non-finite, or all weights are 0.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample weights file not found: {path} (train.sample_weights)")
    frame = pd.read_csv(path, dtype={"id": str})
    if not {"id", "weight"} <= set(frame.columns):
        raise ValueError(f"{path} needs columns id,weight; found {list(frame.columns)}")
    if frame["id"].duplicated().any():
        dups = frame.loc[frame["id"].duplicated(), "id"].head(5).tolist()
        raise ValueError(f"{path} repeats ids {dups}; give one weight per training image")
    by_id = frame.set_index("id")["weight"]
    missing = [i for i in ids if i not in by_id.index]
    if missing:
        raise ValueError(
            f"{path} has no weight for {len(missing)} training ids, e.g. {missing[:5]}"
        )
    weights = np.array(by_id.loc[list(ids)], dtype=np.float64)  # a writable copy
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{path}: weights must be finite and >= 0")
    if weights.sum() <= 0:
        raise ValueError(f"{path}: all weights are 0; at least one image must be drawable")
    return weights


@SAMPLERS.register("weighted_file")
def weighted_file_sampler(split: SplitData, seed: int, path: Path | None = None) -> Sampler:
    """Draw ``len(split)`` training images per epoch with probability ∝ the file's weights.

    Args:
        split: The training split (its ``ids`` index the weights file).
        seed: Generator seed (``train.seed``).
        path: The ``id,weight`` CSV (``train.sample_weights``).
    """
    if path is None:
        raise ValueError(
            "sampler 'weighted_file' reads train.sample_weights: set it to a CSV with columns "
            "id,weight over the training split"
        )
    weights = read_sample_weights(path, split.ids)
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double), len(weights), replacement=True,
        generator=generator,
    )


def build_train_sampler(train: TrainConfig, split: SplitData) -> Sampler | None:
    """The training sampler ``train`` asks for (the one place that passes ``sample_weights``).

    Raises:
        ValueError: if ``train.sample_weights`` is set with a sampler other than
            ``weighted_file`` (it would be silently ignored), or the reverse.
    """
    if train.sampler == "weighted_file":
        return weighted_file_sampler(split, train.seed, train.sample_weights)
    if train.sample_weights is not None:
        raise ValueError(
            f"train.sample_weights is set ({train.sample_weights}) but train.sampler is "
            f"{train.sampler!r}; use sampler 'weighted_file' or drop sample_weights"
        )
    return build_sampler(train.sampler, split, seed=train.seed)
