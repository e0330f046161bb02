"""Sampling the conditional VAE per class and writing a synthetic-image folder.

Images are drawn as ``x = sigmoid(decoder(z, y))`` with ``z ~ N(0, τ² I)`` (Kingma & Welling,
2014; conditional decoder as in Sohn et al., 2015) for a chosen label vector ``y``. The folder
written by :func:`write_generated` is what ``data.extra_train`` reads
(:mod:`funduslab.data.mixing`) and what the ``generic_csv`` adapter reads as a dataset::

    <out>/labels.csv        id,<label names…>      (id = file name under images/)
    <out>/images/<id>       PNG, S × S RGB, already in the preprocessed domain of the VAE's data
    <out>/generated.json    label names, image size, preprocess, seed, per-class counts

A "class" is a label vector named by its labels: ``"D"`` (one-hot), ``"D+A"`` (multi-hot) or
``"normal"`` (all zeros). Each class draws its latents from its own seed
``SeedSequence([seed, code(y)])``, so a class's images do not depend on which other classes are
sampled or in which order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from funduslab.config import atomic_write_text
from funduslab.data.imageio import write_image_atomic
from funduslab.data.mixing import GENERATED_CSV, GENERATED_META
from funduslab.generate.train_vae import to_tensor
from funduslab.generate.vae import ConditionalVAE

__all__ = [
    "class_vectors",
    "reconstruct",
    "sample_images",
    "sample_per_class",
    "write_generated",
]

log = logging.getLogger(__name__)

NORMAL = "normal"


def class_vectors(
    classes: str | Sequence[str] | None, label_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Parse class names into ``{name: (K,) float32 multi-hot vector}``.

    Args:
        classes: ``"D,G,A,normal,D+A"`` or a list of such names; ``None``: one class per label.
        label_names: The ``K`` label names in model order.

    Raises:
        ValueError: an unknown label name, an empty or repeated class.
    """
    names = list(label_names)
    if classes is None:
        items = names
    elif isinstance(classes, str):
        items = [c.strip() for c in classes.split(",") if c.strip()]
    else:
        items = [str(c).strip() for c in classes]
    if not items:
        raise ValueError(f"no classes given; use label names {names}, '{NORMAL}' or 'X+Y'")
    out: dict[str, np.ndarray] = {}
    for item in items:
        vec = np.zeros(len(names), np.float32)
        if item != NORMAL:
            for part in item.split("+"):
                if part not in names:
                    raise ValueError(f"unknown class {item!r}: {part!r} is not a label; valid: "
                                     f"{names}, '{NORMAL}' or combinations such as "
                                     f"'{names[0]}+{names[-1]}'")
                vec[names.index(part)] = 1.0
        if item in out:
            raise ValueError(f"class {item!r} is listed twice")
        out[item] = vec
    return out


def _class_seed(seed: int, vector: np.ndarray) -> int:
    code = int(sum(1 << i for i, v in enumerate(vector) if v > 0.5))
    return int(np.random.SeedSequence([int(seed), code]).generate_state(1)[0])


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    """``(B, 3, S, S)`` in [0, 1] → ``(B, S, S, 3)`` uint8 (rounded)."""
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def sample_images(
    model: ConditionalVAE,
    label_vector: Sequence[float] | np.ndarray,
    n: int,
    seed: int,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> np.ndarray:
    """Draw ``n`` images for one label vector.

    Args:
        model: A fitted :class:`ConditionalVAE` (used in eval mode on CPU).
        label_vector: ``(K,)`` multi-hot labels, ``K == model.arch.num_labels``.
        n: Number of images.
        seed: Seed of the latent draws (same seed, same images).
        temperature: Scale ``τ`` of the latent prior (< 1 gives cleaner, less varied images).
        batch_size: Images decoded at once.

    Returns:
        ``(n, S, S, 3)`` uint8 RGB.

    Raises:
        ValueError: label vector of the wrong size, ``n < 0`` or ``temperature <= 0``.
    """
    y = torch.tensor(np.asarray(label_vector, np.float32)).flatten()
    if y.numel() != model.arch.num_labels:
        raise ValueError(f"label size mismatch: VAE has {model.arch.num_labels} labels, got a "
                         f"vector of {y.numel()}")
    if n < 0 or not temperature > 0:
        raise ValueError(
            f"n must be >= 0 and temperature > 0, got n={n}, temperature={temperature}")
    model = model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn((n, model.arch.latent_dim), generator=gen) * float(temperature)
    size = model.arch.image_size
    chunks = [np.zeros((0, size, size, 3), np.uint8)]
    for start in range(0, n, batch_size):
        zb = z[start : start + batch_size]
        chunks.append(_as_uint8(model.decode(zb, y.expand(len(zb), -1))))
    return np.concatenate(chunks)


@torch.no_grad()
def reconstruct(
    model: ConditionalVAE, images: np.ndarray, targets: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Posterior-mean reconstructions ``decode(μ(x, y), y)`` → ``(N, S, S, 3)`` float32, [0, 1]."""
    model = model.eval()
    outs = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(np.asarray(images[start : start + batch_size]))
        y = torch.tensor(np.asarray(targets[start : start + batch_size], np.float32))
        mu, _ = model.encode(x, y)
        outs.append(model.decode(mu, y).permute(0, 2, 3, 1).numpy())
    return np.concatenate(outs).astype(np.float32)


def sample_per_class(
    model: ConditionalVAE,
    classes: dict[str, np.ndarray],
    per_class: int,
    seed: int,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``per_class`` images per class → ``(images (N, S, S, 3) uint8, targets (N, K), tags)``."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    images, targets, tags = [], [], []
    for name, vec in classes.items():
        images.append(sample_images(model, vec, per_class, _class_seed(seed, vec), temperature))
        targets.append(np.repeat(vec[None, :], per_class, axis=0))
        tags += [name] * per_class
    return np.concatenate(images), np.concatenate(targets).astype(np.float32), tags


def write_generated(
    out: str | Path,
    images: np.ndarray,
    targets: np.ndarray,
    label_names: Sequence[str],
    tags: Sequence[str],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write generated images as PNGs plus ``labels.csv`` and ``generated.json`` (all atomic).

    Args:
        out: Folder (created).
        images: ``(N, S, S, 3)`` uint8.
        targets: ``(N, K)`` 0/1 labels.
        label_names: The ``K`` label names (CSV columns).
        tags: Class name per image (used in file names: ``gen_<class>_<k>.png``).
        metadata: Extra primitives for ``generated.json`` (preprocess, seed, checkpoint …).

    Returns:
        ``out``.
    """
    out = Path(out)
    names = list(label_names)
    targets = np.asarray(targets)
    if not (len(images) == len(targets) == len(tags)) or targets.shape[1:] != (len(names),):
        raise ValueError(f"write_generated: {len(images)} images, targets {targets.shape}, "
                         f"{len(tags)} tags and {len(names)} label names do not match")
    counters: dict[str, int] = {}
    ids = []
    for image, tag in zip(images, tags):
        k = counters.get(tag, 0)
        counters[tag] = k + 1
        image_id = f"gen_{tag.replace('+', '-')}_{k:04d}.png"
        write_image_atomic(out / "images" / image_id, image)
        ids.append(image_id)
    frame = pd.DataFrame(targets.round().astype(int), columns=names)
    frame.insert(0, "id", ids)
    atomic_write_text(out / GENERATED_CSV, frame.to_csv(index=False))
    meta = {"label_names": names, "image_size": int(images.shape[1]) if len(images) else 0,
            "per_class": counters, **(metadata or {})}
    atomic_write_text(out / GENERATED_META, json.dumps(meta, indent=2, default=str))
    log.info("wrote %d generated images to %s", len(ids), out)
    return out
