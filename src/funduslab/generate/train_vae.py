"""Fitting the conditional VAE (plain PyTorch loop) and its checkpoint file.

The loop minimises the β-weighted negative ELBO of :mod:`funduslab.generate.vae` (Kingma &
Welling, 2014; Sohn et al., 2015) with AdamW, a linear KL warm-up and optional horizontal flips
(a left fundus mirrored is a plausible right fundus with the same labels). All randomness — the
initial weights, batch order, flips and the reparameterisation noise — comes from ``seed`` inside
:func:`torch.random.fork_rng`, so a fit is repeatable and leaves the caller's RNG untouched.

Checkpoints use the funduslab format
(:func:`funduslab.models.funduslab_checkpoints.save_funduslab_checkpoint`): a plain state dict plus
primitive metadata, written atomically and read with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from funduslab.generate.vae import (
    ConditionalVAE,
    Reconstruction,
    VAEArchitecture,
    kl_weight,
    vae_loss,
)
from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint, save_funduslab_checkpoint

__all__ = [
    "VAE_KIND", "VAEFit", "VAETraining", "fit_vae", "load_vae", "save_vae", "to_tensor",
    "training_dict",
]

log = logging.getLogger(__name__)

VAE_KIND = "conditional_vae"


@dataclass(frozen=True)
class VAETraining:
    """How the VAE is fitted.

    Args:
        epochs: Passes over the images.
        batch_size: Images per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        beta: Final KL weight β (1 = the plain ELBO; 0.05 suits ``"mse"`` on [0, 1] pixels).
        kl_warmup_epochs: Epochs over which the KL weight ramps linearly from 0 to β.
        reconstruction: ``"mse"`` or ``"bce"``
            (see :func:`~funduslab.generate.vae.reconstruction_loss`).
        hflip: Randomly mirror training images left/right.
        seed: Seed of every random draw of the fit.
        bf16: Run the network under CPU/GPU bf16 autocast (losses stay float32).
        device: ``"cpu"``, ``"cuda"`` … (default CPU).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    beta: float = 0.05
    kl_warmup_epochs: float = 5.0
    reconstruction: Reconstruction = "mse"
    hflip: bool = True
    seed: int = 0
    bf16: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"VAE epochs must be >= 0 and batch_size >= 1, got {self.epochs}, "
                             f"{self.batch_size}")
        if not self.lr > 0 or self.beta < 0 or self.kl_warmup_epochs < 0:
            raise ValueError(f"VAE lr must be > 0, beta and kl_warmup_epochs >= 0; got "
                             f"lr={self.lr}, beta={self.beta}, "
                             f"kl_warmup_epochs={self.kl_warmup_epochs}")
        if self.reconstruction not in ("bce", "mse"):
            raise ValueError(f"reconstruction must be 'bce' or 'mse', got {self.reconstruction!r}")


@dataclass
class VAEFit:
    """Result of :func:`fit_vae`: the model (eval mode, CPU) and one history row per epoch."""

    model: ConditionalVAE
    history: list[dict[str, float]]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, S, S, 3)`` uint8 → ``(N, 3, S, S)`` float32 in ``[0, 1]``."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected (N, S, S, 3) uint8 images, got {arr.shape} {arr.dtype}")
    return torch.from_numpy(np.array(arr, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)


def fit_vae(
    images: np.ndarray,
    targets: np.ndarray,
    arch: VAEArchitecture,
    training: VAETraining = VAETraining(),
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> VAEFit:
    """Fit a conditional VAE on labelled images.

    Args:
        images: ``(N, S, S, 3)`` uint8 RGB, ``S == arch.image_size``.
        targets: ``(N, K)`` multi-hot labels, ``K == arch.num_labels``.
        arch: Network hyper-parameters.
        training: Fitting settings.
        progress: Optional ``callback(epoch, history_row)`` after each epoch.

    Returns:
        :class:`VAEFit`; history rows hold ``epoch, loss, reconstruction, kl`` (batch means of
        per-image sums), ``kl_weight`` and ``mse_per_pixel`` (of the training decodings with sampled
        ``z``, on [0, 1] pixels, over the epoch's batches).

    Raises:
        ValueError: images of another size, or a label count different from ``arch.num_labels``.
    """
    imgs = np.asarray(images)
    ys = np.asarray(targets, dtype=np.float32)
    device = _check_fit_inputs(imgs, ys, arch, training)
    x_all = torch.from_numpy(np.array(imgs, copy=True))  # uint8 (writable), converted per batch
    y_all = torch.from_numpy(np.array(ys, copy=True))
    steps_per_epoch = math.ceil(len(imgs) / training.batch_size)
    warmup = int(round(training.kl_warmup_epochs * steps_per_epoch))
    history: list[dict[str, float]] = []
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(training.seed)
        model = ConditionalVAE(arch).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=training.lr,
                                weight_decay=training.weight_decay)
        step = 0
        for epoch in range(training.epochs):
            sums, step = _train_epoch(model, opt, x_all, y_all, training, device, warmup, step)
            row = {"epoch": epoch + 1, **{k: sums[k] / len(imgs) for k in
                                          ("loss", "reconstruction", "kl")},
                   "kl_weight": kl_weight(step - 1, warmup, training.beta),
                   "mse_per_pixel": sums["sq"] / x_all.numel()}
            history.append(row)
            log.info("VAE epoch %d/%d: loss %.1f (recon %.1f, KL %.1f × %.2f)", epoch + 1,
                     training.epochs, row["loss"], row["reconstruction"], row["kl"],
                     row["kl_weight"])
            if progress is not None:
                progress(epoch + 1, row)
    model = model.cpu().eval()
    return VAEFit(model, history)


def _check_fit_inputs(
    imgs: np.ndarray, ys: np.ndarray, arch: VAEArchitecture, training: VAETraining
) -> torch.device:
    """Check the images and labels fit ``arch`` and the device exists; return the device."""
    if imgs.ndim != 4 or imgs.shape[1:] != (arch.image_size, arch.image_size, 3):
        raise ValueError(f"VAE of image_size {arch.image_size} got images of shape {imgs.shape}; "
                         "decode the data at the VAE's size")
    if ys.ndim != 2 or ys.shape != (len(imgs), arch.num_labels):
        raise ValueError(f"label size mismatch: VAE has {arch.num_labels} labels, targets are "
                         f"{ys.shape} for {len(imgs)} images")
    if len(imgs) == 0:
        raise ValueError("fit_vae needs at least one image")
    device = torch.device(training.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"VAE device {training.device!r} asked for but CUDA is not available; "
                         "use device='cpu'")
    return device


def _train_epoch(
    model: ConditionalVAE,
    opt: torch.optim.Optimizer,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    training: VAETraining,
    device: torch.device,
    warmup: int,
    step: int,
) -> tuple[dict[str, float], int]:
    """One pass in a random order: sums of the loss terms (per image) and the next step number."""
    model.train()
    sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0, "sq": 0.0}
    order = torch.randperm(len(x_all))
    for start in range(0, len(x_all), training.batch_size):
        idx = order[start : start + training.batch_size]
        x, y = _batch(x_all, y_all, idx, device, training.hflip)
        weight = kl_weight(step, warmup, training.beta)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=training.bf16):
            logits, mu, logvar = model(x, y)
        parts = vae_loss(logits, x, mu, logvar, weight, training.reconstruction)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        step += 1
        n = len(idx)
        for key in ("loss", "reconstruction", "kl"):
            sums[key] += float(parts[key].detach()) * n
        sums["sq"] += float((torch.sigmoid(logits.detach().float()) - x).pow(2).sum())
    return sums, step


def _batch(
    x_all: torch.Tensor, y_all: torch.Tensor, idx: torch.Tensor, device: torch.device, hflip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``idx`` as float images in [0, 1] on ``device``; ``hflip`` mirrors each at p = 0.5."""
    x = x_all[idx].to(device).permute(0, 3, 1, 2).float().div_(255.0)
    y = y_all[idx].to(device)
    if hflip:
        flip = torch.rand(len(idx)) < 0.5
        x[flip.to(device)] = x[flip.to(device)].flip(-1)
    return x, y


def save_vae(
    path: str | os.PathLike[str],
    model: ConditionalVAE,
    label_names: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the VAE's state dict and metadata (architecture, label names, ``extra``) atomically.

    Raises:
        ValueError: ``label_names`` does not have ``model.arch.num_labels`` entries.
    """
    names = [str(n) for n in label_names]
    if len(names) != model.arch.num_labels:
        raise ValueError(f"label size mismatch: {len(names)} label names {names} for a VAE with "
                         f"{model.arch.num_labels} labels")
    meta = {"kind": VAE_KIND, "architecture": model.arch.to_dict(), "label_names": names,
            **(extra or {})}
    return save_funduslab_checkpoint(path, model, meta)


def load_vae(path: str | os.PathLike[str]) -> tuple[ConditionalVAE, dict[str, Any]]:
    """Read a VAE checkpoint (``weights_only=True``) → ``(model in eval mode, metadata)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a funduslab VAE checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VAE checkpoint {str(path)!r} does not exist; train one with "
                                "`funduslab generate` (it writes <out>/vae.pt)")
    state, meta = load_funduslab_checkpoint(path)
    if meta.get("kind") != VAE_KIND:
        raise ValueError(f"{str(path)!r} is a funduslab checkpoint but not a VAE (kind="
                         f"{meta.get('kind')!r}); pass the vae.pt written by `funduslab generate`")
    model = ConditionalVAE(VAEArchitecture(**meta["architecture"]))
    model.load_state_dict(state, strict=True)
    return model.eval(), meta


def training_dict(training: VAETraining) -> dict[str, Any]:
    """Primitive dict of the training settings (for metadata)."""
    return asdict(training)
