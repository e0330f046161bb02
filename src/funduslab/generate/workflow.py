"""Dataset → fitted conditional VAE → generated folder → contact sheet (``funduslab generate``).

The VAE (Kingma & Welling, 2014; Sohn et al., 2015) is fitted on the real training split, decoded
with the same preprocessing pipeline and cache as training runs (:mod:`funduslab.data.cache`), so
the generated images live in the same domain the classifier sees. The output folder::

    <out>/vae.pt              VAE checkpoint (funduslab format, weights_only loadable)
    <out>/vae_history.csv     per-epoch loss, reconstruction, KL, KL weight, MSE per pixel
    <out>/labels.csv          generated images' labels (see funduslab.generate.sample)
    <out>/images/*.png
    <out>/generated.json
    <out>/contact_sheet.png   real vs generated, per class

Use it in a training run with ``data.extra_train: <out>`` (and ``data.extra_train_ratio``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funduslab.config import atomic_write_text
from funduslab.data.adapters import load_table
from funduslab.data.cache import ImageCache
from funduslab.data.table import SampleTable
from funduslab.generate.sample import class_vectors, sample_per_class, write_generated
from funduslab.generate.sheet import real_vs_generated_sheet
from funduslab.generate.train_vae import VAEFit, VAETraining, fit_vae, save_vae, training_dict
from funduslab.generate.vae import ConditionalVAE, VAEArchitecture
from funduslab.preprocess import build_pipeline

__all__ = ["GenerateResult", "generate_from_dataset"]

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    """Paths written by :func:`generate_from_dataset` and the final training losses."""

    out: Path
    checkpoint: Path
    contact_sheet: Path
    num_images: int
    history: list[dict[str, float]]


def generate_from_dataset(
    data: str | Path,
    out: str | Path,
    adapter: str = "odir_course",
    image_size: int = 64,
    per_class: int = 50,
    classes: str | Sequence[str] | None = None,
    preprocess: str = "none",
    train_split: str = "train",
    cache_dir: str | Path | None = None,
    arch_options: dict[str, Any] | None = None,
    training: VAETraining = VAETraining(),
    temperature: float = 1.0,
    adapter_options: dict[str, Any] | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> GenerateResult:
    """Fit a conditional VAE on a dataset's training split, sample per class, draw the sheet.

    Args:
        data: Dataset root.
        out: Output folder (see the module docstring).
        adapter: Dataset adapter name.
        image_size: VAE resolution in px (4·2^k: 32, 64, 128, 256).
        per_class: Images generated per class.
        classes: Class names (``"D,G,A,normal,D+A"``); default one class per label.
        preprocess: Preprocessing pipeline applied before the VAE (as ``data.preprocess``).
        train_split: Split the VAE learns from.
        cache_dir: Decoded-image cache (default ``<out>/.cache``).
        arch_options: :class:`VAEArchitecture` fields other than size and label count.
        training: Fitting settings (epochs, seed …).
        temperature: Latent prior scale when sampling.
        adapter_options: Adapter keyword options.
        progress: ``callback(epoch, history_row)``.

    Raises:
        ValueError / FileNotFoundError: bad dataset, a grading dataset, unknown class names.
    """
    out = Path(out)
    table = _multilabel_table(adapter, Path(data), adapter_options)
    wanted = class_vectors(classes, table.label_names)
    images, targets = _training_images(
        table, train_split, preprocess, image_size, cache_dir or out / ".cache"
    )
    arch = VAEArchitecture(image_size=image_size, num_labels=len(table.label_names),
                           **(arch_options or {}))
    fit, fit_seconds = _timed_fit(images, targets, arch, training, train_split, progress)
    provenance = {"data_source": table.source, "train_split": train_split,
                  "preprocess": preprocess, "training": training_dict(training)}
    checkpoint = _save_fit(out, fit, table.label_names, provenance)
    meta = {**provenance, "seed": training.seed, "temperature": temperature,
            "checkpoint": checkpoint.name}
    gen_images, gen_targets = _sample_and_write(
        out, fit.model, wanted, per_class, table.label_names, meta, fit_seconds
    )
    sheet = real_vs_generated_sheet(out / "contact_sheet.png", images, targets, gen_images,
                                    gen_targets, wanted)
    return GenerateResult(out, checkpoint, sheet, len(gen_images), fit.history)


def _multilabel_table(
    adapter: str, data: Path, adapter_options: dict[str, Any] | None
) -> SampleTable:
    """The dataset's table, which must be multi-label: the VAE is conditioned on a label vector."""
    table = load_table(adapter, data, **(adapter_options or {}))
    if table.task != "multilabel":
        raise ValueError(f"funduslab generate needs multi-label data; {table.source} is "
                         f"{table.task} (the VAE is conditioned on a multi-hot label vector)")
    return table


def _training_images(
    table: SampleTable, split: str, preprocess: str, image_size: int, cache_dir: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """The split's images, preprocessed and decoded through the cache, and their label vectors."""
    rows = table.split(split)
    pipeline = build_pipeline(preprocess, image_size)
    cache = ImageCache(cache_dir)
    images = cache.get([Path(p) for p in rows["path"]], pipeline, image_size)
    return images, rows[table.label_names].to_numpy(dtype=np.float32)


def _timed_fit(
    images: np.ndarray,
    targets: np.ndarray,
    arch: VAEArchitecture,
    training: VAETraining,
    train_split: str,
    progress: Callable[[int, dict[str, float]], None] | None,
) -> tuple[VAEFit, float]:
    """The fitted VAE and the seconds the fit took (recorded in ``generated.json``)."""
    log.info("fitting a conditional VAE on %d %s images (%d px, %d epochs)", len(images),
             train_split, arch.image_size, training.epochs)
    started = time.perf_counter()
    fit = fit_vae(images, targets, arch, training, progress=progress)
    return fit, time.perf_counter() - started


def _save_fit(out: Path, fit: VAEFit, label_names: list[str], provenance: dict[str, Any]) -> Path:
    """Write the VAE checkpoint and its per-epoch history; return the checkpoint's path."""
    checkpoint = save_vae(out / "vae.pt", fit.model, label_names, provenance)
    if fit.history:
        atomic_write_text(out / "vae_history.csv", pd.DataFrame(fit.history).to_csv(index=False))
    return checkpoint


def _sample_and_write(
    out: Path,
    model: ConditionalVAE,
    wanted: dict[str, np.ndarray],
    per_class: int,
    label_names: list[str],
    meta: dict[str, Any],
    fit_seconds: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``per_class`` images per class (seed and temperature in ``meta``) and write them."""
    started = time.perf_counter()
    gen_images, gen_targets, tags = sample_per_class(model, wanted, per_class, meta["seed"],
                                                     meta["temperature"])
    seconds = {"fit": round(fit_seconds, 1), "sample": round(time.perf_counter() - started, 1)}
    write_generated(out, gen_images, gen_targets, label_names, tags, {**meta, "seconds": seconds})
    return gen_images, gen_targets
