"""Tensors for fitting: cached uint8 images → augmented float batches.

Images arrive already decoded and preprocessed (:mod:`funduslab.data.cache`), so an epoch costs
only augmentation. Augmentations are fundus-aware: a fundus has no canonical orientation beyond
left/right mirroring, so flips and full rotations are safe; colour jitter mimics camera variation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from funduslab.registry import Registry
from funduslab.training.batch_augment import BatchFundusAugment

__all__ = ["AUGMENTATIONS", "ArrayDataset", "build_augmentation", "is_batch_augmentation"]

AUGMENTATIONS: Registry = Registry("augmentation")


@AUGMENTATIONS.register("none")
def _no_augmentation(size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    return None


@AUGMENTATIONS.register("light")
def _light(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Horizontal flip only (the course template's augmentation)."""
    return v2.RandomHorizontalFlip()


@AUGMENTATIONS.register("fundus")
def _fundus(size: int) -> BatchFundusAugment:
    """Flips, rotation, mild zoom and camera-like colour jitter, on whole batches.

    Same distribution as ``fundus_per_image`` at a fraction of its cost (7.5 ms per 256-px
    image in Python); see :mod:`funduslab.training.batch_augment` for what differs.
    """
    return BatchFundusAugment()


@AUGMENTATIONS.register("fundus_per_image")
def _fundus_per_image(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fundus`` image by image with torchvision (the default before 2026-12-05)."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomAffine(degrees=25, scale=(0.92, 1.08)),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.02),
        ]
    )


def build_augmentation(name: str, size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Registered augmentation for ``size``-px images (``None`` = identity).

    Either a per-image transform of uint8 ``(3, H, W)`` tensors (the dataset applies it) or a
    :class:`BatchFundusAugment` of float batches (the training module applies it after the batch
    reaches its device): :func:`is_batch_augmentation` tells which.
    """
    return AUGMENTATIONS.get(name)(size)


def is_batch_augmentation(augmentation: object) -> bool:
    """Whether ``augmentation`` works on whole float batches rather than on single images."""
    return isinstance(augmentation, BatchFundusAugment)


class ArrayDataset(Dataset):
    """Samples from an ``(N, H, W, 3)`` uint8 array (memory-mapped is fine) and targets.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB.
        targets: ``(N, K)`` float multi-label targets, or ``(N,)`` int grades.
        transform: Augmentation applied to the uint8 ``(3, H, W)`` tensor, or ``None``.
        partners: ``(N,)`` index of each image's partner (dual-image models), or ``None``.

    Returns ``(image float (3, H, W) in [0, 1], target)`` per item; with ``partners``,
    ``(images float (2, 3, H, W), target)`` — anchor then partner, each augmented independently —
    with the anchor's target.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        partners: np.ndarray | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        if partners is not None:
            partners = np.asarray(partners, dtype=np.int64)
            if partners.shape != (len(images),) or (
                len(partners) and (partners.min() < 0 or partners.max() >= len(images))
            ):
                raise ValueError(f"partners must be {len(images)} indices in 0..{len(images) - 1}, "
                                 f"got shape {partners.shape}")
        self.images = images
        self.targets = torch.tensor(np.asarray(targets))
        self.transform = transform
        self.partners = partners

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, index: int) -> torch.Tensor:
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)  # copy: cache is read-only
        if self.transform is not None:
            image = self.transform(image)
        return image.float().div_(255.0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.partners is None:
            return self._image(index), self.targets[index]
        pair = torch.stack([self._image(index), self._image(int(self.partners[index]))])
        return pair, self.targets[index]
