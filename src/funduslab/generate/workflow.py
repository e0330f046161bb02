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
from funduslab.generate.sample import class_vectors, sample_per_class, write_generated
from funduslab.generate.sheet import real_vs_generated_sheet
from funduslab.generate.train_vae import VAETraining, fit_vae, save_vae, training_dict
from funduslab.generate.vae import VAEArchitecture
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
    table = load_table(adapter, Path(data), **(adapter_options or {}))
    if table.task != "multilabel":
        raise ValueError(f"funduslab generate needs multi-label data; {table.source} is "
                         f"{table.task} (the VAE is conditioned on a multi-hot label vector)")
    wanted = class_vectors(classes, table.label_names)
    rows = table.split(train_split)
    pipeline = build_pipeline(preprocess, image_size)
    cache = ImageCache(cache_dir or out / ".cache")
    images = cache.get([Path(p) for p in rows["path"]], pipeline, image_size)
    targets = rows[table.label_names].to_numpy(dtype=np.float32)
    arch = VAEArchitecture(image_size=image_size, num_labels=len(table.label_names),
                           **(arch_options or {}))
    log.info("fitting a conditional VAE on %d %s images (%d px, %d epochs)", len(images),
             train_split, image_size, training.epochs)
    started = time.perf_counter()
    fit = fit_vae(images, targets, arch, training, progress=progress)
    fit_seconds = time.perf_counter() - started
    provenance = {"data_source": table.source, "train_split": train_split,
                  "preprocess": preprocess, "training": training_dict(training)}
    checkpoint = save_vae(out / "vae.pt", fit.model, table.label_names, provenance)
    if fit.history:
        atomic_write_text(out / "vae_history.csv", pd.DataFrame(fit.history).to_csv(index=False))
    started = time.perf_counter()
    gen_images, gen_targets, tags = sample_per_class(fit.model, wanted, per_class,
                                                     training.seed, temperature)
    seconds = {"fit": round(fit_seconds, 1), "sample": round(time.perf_counter() - started, 1)}
    write_generated(out, gen_images, gen_targets, table.label_names, tags,
                    {**provenance, "seed": training.seed, "temperature": temperature,
                     "checkpoint": checkpoint.name, "seconds": seconds})
    sheet = real_vs_generated_sheet(out / "contact_sheet.png", images, targets, gen_images,
                                    gen_targets, wanted)
    return GenerateResult(out, checkpoint, sheet, len(gen_images), fit.history)
