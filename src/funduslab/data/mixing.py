"""Mixing generated images into the training split (``data.extra_train``).

:func:`funduslab.training.runner.decode_splits` calls :func:`mix_generated` when
``data.extra_train`` names a folder written by :func:`funduslab.generate.sample.write_generated`.
Rules:

* only the training split grows; validation and test splits are never touched, so every reported
  metric is still measured on real images only;
* ``round(data.extra_train_ratio × n_real)`` generated images are appended (ratio = generated :
  real; 0.5 adds one generated image per two real ones); asking for more than the folder holds is
  an error rather than a silent shortfall;
* the images are taken class by class in turn (round robin over the label vectors in the folder,
  each class shuffled with ``train.seed``), so a partial draw stays class-balanced;
* generated images are already in the preprocessed domain of the data the VAE was fitted on, so
  they are only resized to ``data.image_size`` (no second pass of ``data.preprocess``); a
  preprocess different from the one recorded in ``generated.json`` is logged as a warning;
* their ids are prefixed ``generated/`` so they are recognisable in ``predictions/train.csv``;
  each is its own patient (patient id = its id), so a patient-level sampler keeps the real
  patients' images together and never groups a generated image with a real one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from funduslab.config import RunConfig
from funduslab.data.cache import ImageCache
from funduslab.data.split_data import SplitData
from funduslab.data.table import SampleTable

__all__ = [
    "GENERATED_CSV", "GENERATED_META", "GENERATED_PREFIX", "mix_generated", "read_generated",
    "select_generated",
]

log = logging.getLogger(__name__)

GENERATED_PREFIX = "generated/"
#: The files :func:`funduslab.generate.sample.write_generated` writes into a generated folder.
GENERATED_CSV = "labels.csv"
GENERATED_META = "generated.json"


def read_generated(folder: str | Path, label_names: Sequence[str]) -> pd.DataFrame:
    """Read a generated-image folder → frame with ``id, path, <label names>``.

    Raises:
        FileNotFoundError: the folder, its ``labels.csv`` or an image is missing.
        ValueError: its label columns differ from ``label_names``.
    """
    folder = Path(folder)
    csv = folder / GENERATED_CSV
    if not csv.is_file():
        raise FileNotFoundError(f"data.extra_train: {csv} not found; point it at a folder written "
                                "by `funduslab generate`")
    frame = pd.read_csv(csv, dtype={"id": str})
    names = list(label_names)
    columns = [c for c in frame.columns if c != "id"]
    if "id" not in frame.columns or columns != names:
        raise ValueError(f"label size mismatch: {csv} has label columns {columns}, the dataset "
                         f"has {names}; generate images with the same labels")
    paths = [folder / "images" / i for i in frame["id"]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"data.extra_train: {len(missing)} image(s) listed in {csv} are "
                                f"missing, e.g. {missing[0]}")
    frame.insert(1, "path", [str(p) for p in paths])
    return frame


def select_generated(targets: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Row indices of ``n`` images taken round robin over the distinct label vectors.

    Args:
        targets: ``(M, K)`` labels of the generated images.
        n: How many to take (``<= M``).
        seed: Seed of the within-class shuffles.

    Returns:
        ``(n,)`` int indices, in draw order.
    """
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n > len(targets):
        raise ValueError(f"asked for {n} generated images but only {len(targets)} exist")
    rng = np.random.default_rng(seed)
    _, group = np.unique(np.asarray(targets), axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    queues = [list(rng.permutation(np.flatnonzero(group == g))) for g in range(group.max() + 1)]
    picked: list[int] = []
    while len(picked) < n:
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(int(queue.pop(0)))
    return np.asarray(picked, dtype=np.int64)


def mix_generated(
    train: SplitData, cfg: RunConfig, table: SampleTable, cache: ImageCache
) -> tuple[SplitData, str]:
    """Append generated images to the training split at ``cfg.data.extra_train_ratio``.

    Args:
        train: The decoded real training split.
        cfg: Run config (``data.extra_train``, ``data.extra_train_ratio``, ``data.image_size``,
            ``train.seed``).
        table: The dataset table (its label names and task kind).
        cache: Decoded-image cache the generated images go through (resize only).

    Returns:
        ``(train split with generated rows appended, fingerprint key of the added images)``.

    Raises:
        ValueError: a grading dataset, label mismatch, or fewer generated images than asked for.
        FileNotFoundError: the folder or its files are missing.
    """
    folder = Path(cfg.data.extra_train)
    if table.task != "multilabel":
        raise ValueError(f"data.extra_train needs a multi-label dataset; {table.source} is "
                         f"{table.task}")
    frame = read_generated(folder, table.label_names)
    n_real = len(train.ids)
    n_extra = int(round(cfg.data.extra_train_ratio * n_real))
    if n_extra > len(frame):
        raise ValueError(f"data.extra_train_ratio={cfg.data.extra_train_ratio} asks for {n_extra} "
                         f"generated images ({n_real} real in {train.name}) but {folder} holds "
                         f"{len(frame)}; generate more (--per-class) or lower the ratio")
    meta_path = folder / GENERATED_META
    if meta_path.is_file():
        recorded = json.loads(meta_path.read_text()).get("preprocess")
        if recorded is not None and recorded != cfg.data.preprocess:
            log.warning("generated images in %s were made from preprocess %r, this run uses %r",
                        folder, recorded, cfg.data.preprocess)
    targets = frame[table.label_names].to_numpy(dtype=np.float32)
    if n_extra == 0:
        return train, "none"
    rows = select_generated(targets, n_extra, cfg.train.seed)
    paths = [Path(frame["path"].iloc[i]) for i in rows]
    size = cfg.data.image_size
    images = cache.get(paths, None, size, workers=cfg.data.num_workers)
    key = f"{cache.fingerprint(paths, None, size)}:{n_extra}"
    ids = [GENERATED_PREFIX + frame["id"].iloc[i] for i in rows]
    log.info("train split: %d real + %d generated images from %s", n_real, n_extra, folder)
    mixed = SplitData(
        train.name,
        list(train.ids) + ids,
        np.concatenate([np.asarray(train.images), np.asarray(images)]),
        np.concatenate([train.targets, targets[rows]]).astype(train.targets.dtype),
        train.labelled,
        patients=None if train.patients is None else list(train.patients) + ids,
    )
    return mixed, key
