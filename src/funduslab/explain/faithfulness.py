"""Does the model need what the map points at? Remove the top-ranked pixels and watch the score.

The pointing game asks whether a map lies on the lesion; these metrics ask whether the model's
probability for the label depends on the pixels the map ranks first. Registered in
:data:`FAITHFULNESS`:

* ``deletion`` (Petsiuk et al., "RISE", BMVC 2018): replace the top 0, 1/k, …, k/k of the pixels
  (by map value) with a blurred copy of the image (Gaussian, sigma = side/16: lesions vanish, the
  colours stay, so the model is not shown black holes it never saw in training) and record the
  label's probability; the score is the area under that curve over the removed fraction (0–1,
  lower = the map found what the model uses). It costs k + 1 forward passes per map, batched
  (k = 8 by default), and no solver, so it is the default.
* ``road`` (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution
  Methods", ICML 2022) through pytorch-grad-cam's ``ROADCombined``: removed pixels are filled by
  noisy linear imputation from their neighbours, and the score is (LeRF − MoRF) / 2 of the
  probability change averaged over percentiles 20/40/60/80 (higher = better). Each imputation
  solves a sparse linear system over the removed pixels (8 per map); on two CPU cores that is
  far slower than deletion at 256 px, so it is opt-in. Its noise is seeded.

Every metric is ``(model, image (3, H, W) in [0, 1], maps (M, H, W), label index, seed,
within) -> (M,)``; ``within`` (``(H, W)`` bool, the field of view, or ``None``) limits what is
removed: pixels outside it are never removed (deletion) or rank last (ROAD).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from funduslab.registry import Registry

__all__ = ["FAITHFULNESS", "FaithfulnessMetric", "deletion_curves"]

DELETION_STEPS = 8
_ROAD_PERCENTILES = (20, 40, 60, 80)


@dataclass(frozen=True)
class FaithfulnessMetric:
    """A registered metric: its table column, its direction and the function."""

    column: str
    higher_is_better: bool
    score: Callable[[nn.Module, torch.Tensor, np.ndarray, int, int, np.ndarray | None],
                    np.ndarray]


FAITHFULNESS: Registry[FaithfulnessMetric] = Registry("faithfulness metric")


def _probabilities(model: nn.Module, images: torch.Tensor, label: int,
                   batch_size: int = 32) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size])
            out.append(torch.sigmoid(logits[:, label].float()).cpu())
    return torch.cat(out).numpy()


def deletion_curves(model: nn.Module, image: torch.Tensor, maps: np.ndarray, label: int,
                    steps: int = DELETION_STEPS,
                    within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The label's probability as the top-ranked pixels of each map are blurred away.

    Args:
        image: ``(3, H, W)`` in [0, 1], on the model's device.
        maps: ``(M, H, W)`` pixel rankings (higher = removed first; ties in raster order).
        label: Model output index.
        steps: ``k``: removed fractions 0, 1/k, …, 1.
        within: ``(H, W)`` bool: only these pixels are removed, and fractions are of them.

    Returns:
        ``(fractions (k + 1,), probabilities (M, k + 1))``.
    """
    if steps < 1:
        raise ValueError(f"deletion steps must be ≥ 1, got {steps}")
    c, h, w = image.shape
    if maps.ndim != 3 or maps.shape[1:] != (h, w):
        raise ValueError(f"maps must be (M, {h}, {w}), got {maps.shape}")
    hwc = image.permute(1, 2, 0).cpu().numpy()
    blurred = cv2.GaussianBlur(hwc, (0, 0), max(h, w) / 16.0)
    flat = image.reshape(c, -1)
    flat_blur = torch.from_numpy(blurred).permute(2, 0, 1).reshape(c, -1).to(image)
    region = np.ones((h, w), bool) if within is None else np.asarray(within, bool)
    if region.shape != (h, w):
        raise ValueError(f"within must be ({h}, {w}), got {region.shape}")
    movable = np.flatnonzero(region.ravel())
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.rint(fractions * len(movable)).astype(np.int64)
    batch = []
    for m in maps:
        order = movable[np.argsort(-m.ravel()[movable], kind="stable")]
        rank = torch.full((h * w,), len(movable), dtype=torch.long)  # outside: never removed
        rank[torch.from_numpy(order)] = torch.arange(len(movable))
        rank = rank.to(image.device)
        batch += [torch.where(rank >= k, flat, flat_blur).reshape(c, h, w) for k in counts]
    probs = _probabilities(model, torch.stack(batch), label).reshape(len(maps), steps + 1)
    return fractions, probs


def _deletion(model: nn.Module, image: torch.Tensor, maps: np.ndarray, label: int,
              seed: int, within: np.ndarray | None = None) -> np.ndarray:
    fractions, probs = deletion_curves(model, image, maps, label, within=within)
    widths = np.diff(fractions)
    return ((probs[:, 1:] + probs[:, :-1]) / 2 * widths).sum(axis=1)


class _Probability:
    """pytorch-grad-cam target: the sigmoid probability of one label (multi-label model)."""

    def __init__(self, label: int) -> None:
        self.label = label

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output[..., self.label])


def _road(model: nn.Module, image: torch.Tensor, maps: np.ndarray, label: int,
          seed: int, within: np.ndarray | None = None) -> np.ndarray:
    from pytorch_grad_cam.metrics.road import ROADCombined

    if within is not None:  # outside ranks last: a map's value there is the lowest possible
        maps = np.where(within, maps - maps.min(axis=(1, 2), keepdims=True), 0.0)
    x = image[None].expand(len(maps), -1, -1, -1).contiguous()
    targets = [_Probability(label)] * len(maps)
    with torch.random.fork_rng(devices=[]):  # the imputer's noise uses torch's global stream
        torch.manual_seed(seed)
        scores = ROADCombined(percentiles=list(_ROAD_PERCENTILES))(
            x, np.ascontiguousarray(maps, dtype=np.float32), targets, model)
    return np.asarray(scores, dtype=np.float64)


FAITHFULNESS.register("deletion")(FaithfulnessMetric("deletion_auc", False, _deletion))
FAITHFULNESS.register("road")(FaithfulnessMetric("road", True, _road))
