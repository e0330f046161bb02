"""DataLoaders over decoded splits (training order, augmentation and batch size in one place).

A split with ``partners`` (dual-image models) yields ``(B, 2, 3, H, W)`` anchor/partner batches.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from funduslab.data.split_data import SplitData
from funduslab.training.batch_augment import BatchFundusAugment
from funduslab.training.context import RunContext
from funduslab.training.data import ArrayDataset, build_augmentation, is_batch_augmentation
from funduslab.training.fit import resolve_accelerator
from funduslab.training.sample_weights import build_train_sampler

__all__ = ["batch_augmentation", "eval_loader", "train_loader"]


def train_loader(ctx: RunContext, split: SplitData | None = None) -> DataLoader:
    """Shuffled (or sampler-driven) loader of the training split, augmented image by image
    unless the augmentation works on batches (then :func:`batch_augmentation` gives it to the
    training module)."""
    split = split or ctx.train
    data = ctx.cfg.data
    augmentation = build_augmentation(data.augment, data.image_size)
    if is_batch_augmentation(augmentation):  # applied to whole batches by the training module
        augmentation = None
    dataset = ArrayDataset(split.images, split.targets, augmentation, partners=split.partners)
    sampler = build_train_sampler(ctx.cfg.train, split)
    return _loader(dataset, ctx, shuffle=sampler is None, sampler=sampler, drop_last=True)


def batch_augmentation(ctx: RunContext) -> BatchFundusAugment | None:
    """The run's augmentation when it works on whole batches (``None`` otherwise)."""
    augmentation = build_augmentation(ctx.cfg.data.augment, ctx.cfg.data.image_size)
    return augmentation if is_batch_augmentation(augmentation) else None


def eval_loader(ctx: RunContext, split: SplitData) -> DataLoader:
    """Unaugmented loader in table order."""
    dataset = ArrayDataset(split.images, split.targets, partners=split.partners)
    return _loader(dataset, ctx, shuffle=False)


def _loader(dataset: Dataset, ctx: RunContext, shuffle: bool, sampler=None,
            drop_last: bool = False) -> DataLoader:
    workers = ctx.cfg.data.num_workers
    batch = min(ctx.cfg.train.batch_size, len(dataset))
    generator = torch.Generator().manual_seed(ctx.cfg.train.seed)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle,
        sampler=sampler,
        drop_last=drop_last and len(dataset) > batch,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=resolve_accelerator(ctx.cfg.train.accelerator) == "gpu",  # async copies
        generator=generator,
    )
