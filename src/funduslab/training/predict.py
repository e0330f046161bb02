"""Batch inference on decoded images, with optional flip test-time augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["predict_logits", "predict_probabilities"]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int = 32,
    tta: bool = False,
    bf16: bool = False,
    device: str | torch.device = "cpu",
    partners: np.ndarray | None = None,
) -> np.ndarray:
    """Logits ``(N, K)`` for ``(N, S, S, 3)`` uint8 images.

    Args:
        model: Maps ``(B, 3, S, S)`` floats in [0, 1] to logits — or, with ``partners``,
            ``(B, 2, 3, S, S)`` anchor/partner pairs
            (:class:`~funduslab.models.dual.DualFundusModel`).
        images: Decoded images.
        batch_size: Images (anchors) per forward pass.
        tta: Average logits over the image and its horizontal and vertical flips (both views of
            a pair flipped alike).
        bf16: Run under bfloat16 autocast (the precision the model was trained in).
        device: Where to run.
        partners: ``(N,)`` index into ``images`` of each image's partner, or ``None``.
    """
    model.eval().to(device)
    device = torch.device(device)
    if partners is not None and len(partners) != len(images):
        raise ValueError(f"{len(partners)} partners for {len(images)} images")
    out = []
    for start in range(0, len(images), batch_size):
        x = _batch(images[start : start + batch_size], device)  # (B, 3, S, S)
        if partners is not None:
            rows = np.asarray(partners[start : start + batch_size], dtype=np.int64)
            x = torch.stack([x, _batch(images[rows], device)], dim=1)  # (B, 2, 3, S, S)
        views = [x, x.flip(-1), x.flip(-2)] if tta else [x]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = torch.stack([model(v).float() for v in views]).mean(0)
        out.append(logits.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def _batch(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 → ``(B, 3, S, S)`` float in [0, 1] on ``device``."""
    x = torch.from_numpy(np.array(images)).to(device)  # copy: cache is read-only
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def predict_probabilities(model: nn.Module, images: np.ndarray, **kwargs) -> np.ndarray:
    """Sigmoid probabilities ``(N, K)`` (multi-label); see :func:`predict_logits`."""
    return 1.0 / (1.0 + np.exp(-predict_logits(model, images, **kwargs)))
