"""The LightningModule every setup fits: loss, optimiser, schedule and validation metrics.

It wraps any ``nn.Module`` mapping a batch to logits — a whole :class:`FundusModel` for
full/partial fine-tuning, or just the head when a frozen backbone's features are cached.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from torch import nn

from funduslab.metrics import multilabel_metrics

if TYPE_CHECKING:
    from funduslab.training.freezing import EarlyStageFreeze

__all__ = ["FitOptions", "FundusTask", "lr_lambda", "resize_images"]

log = logging.getLogger(__name__)


@dataclass
class FitOptions:
    """Optimisation settings the module needs (a subset of ``TrainConfig``).

    ``layer_decay < 1`` switches the optimiser to layer-wise learning-rate decay
    (:func:`funduslab.training.layer_decay.layer_decay_groups`). ``progressive_size`` > 0 trains
    the first ``progressive_epochs`` epochs on batches resized to that side; ``batch_augment``
    augments each training batch of images as a whole (after any resize), on the batch's device;
    ``freeze`` freezes the backbone's early stages at the start of the epochs it covers.
    """

    lr: float = 1e-3
    backbone_lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    epochs: int = 10
    channels_last: bool = False
    layer_decay: float = 1.0
    progressive_size: int = 0
    progressive_epochs: int = 0
    batch_augment: nn.Module | None = None
    freeze: EarlyStageFreeze | None = None


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(…, C, H, W)`` float images resized to ``size``×``size`` (bilinear, antialiased)."""
    if x.shape[-2:] == (size, size):
        return x
    lead = x.shape[:-3]
    out = nn.functional.interpolate(x.reshape(-1, *x.shape[-3:]), size=(size, size),
                                    mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(*lead, *out.shape[-3:])


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    """Multiplier of the base learning rate at optimiser step ``s``.

    Linear warm-up for ``warmup_steps``, then ``cosine`` decay to 0, ``step`` decay (×0.1 at 60 %
    and 85 % of training) or ``constant``.
    """
    if schedule not in {"cosine", "step", "constant"}:
        raise ValueError(f"unknown schedule {schedule!r}; valid: constant, cosine, step")

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if schedule == "step":
            return 0.1 ** (int(progress >= 0.6) + int(progress >= 0.85))
        return 1.0

    return factor


class FundusTask(L.LightningModule):
    """Multi-label fitting of ``net`` with ``loss``.

    Args:
        net: Module mapping a batch of inputs to logits ``(B, K)``.
        loss: Module mapping ``(logits, targets)`` to a scalar.
        label_names: Names of the K outputs, for logged metrics.
        options: Optimisation settings.
        head_params: Parameters that get ``options.lr``; every other trainable parameter is
            "backbone" and gets ``options.backbone_lr``. ``None`` → all at ``options.lr``.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        label_names: list[str],
        options: FitOptions,
        head_params: Iterable[nn.Parameter] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.label_names = list(label_names)
        self.options = options
        self._head_ids = {id(p) for p in head_params} if head_params is not None else None
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def on_train_epoch_start(self) -> None:
        if self.options.freeze is not None:  # after Lightning's model.train()
            self.options.freeze.apply(self.current_epoch)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Training image batches: progressive resize, then batch augmentation."""
        trainer = self._trainer
        if trainer is None or not trainer.training or not isinstance(batch, (tuple, list)):
            return batch
        x, *rest = batch
        if x.ndim < 4:  # cached features (frozen setup), not images
            return batch
        o = self.options
        if o.progressive_size and self.current_epoch < o.progressive_epochs:
            x = resize_images(x, o.progressive_size)
        if o.batch_augment is not None:
            x = o.batch_augment(x)
        return (x, *rest)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x).float(), y.float())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        self.log("val_loss", self.loss(logits, y.float()), on_epoch=True, batch_size=len(x),
                 sync_dist=True)
        self._val_logits.append(logits.detach())
        self._val_targets.append(y.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits = torch.cat(self._val_logits)
        targets = torch.cat(self._val_targets)
        self._val_logits.clear()
        self._val_targets.clear()
        if self.trainer.world_size > 1:  # every rank scores the whole validation split
            logits = self.all_gather(logits).flatten(0, 1)
            targets = self.all_gather(targets).flatten(0, 1)
        probs = torch.sigmoid(logits).cpu().numpy()
        scores = multilabel_metrics(
            targets.cpu().numpy().astype(np.int64), probs, 0.5, self.label_names
        )
        self.log("val_course_average_f1", scores["course_average_f1"], sync_dist=False)
        auroc = scores.get("macro_auroc", float("nan"))
        self.log("val_macro_auroc", 0.0 if auroc != auroc else auroc, sync_dist=False)

    def _parameter_groups(self) -> list[dict]:
        """Head at ``lr``, backbone at ``backbone_lr``; per-layer groups if ``layer_decay < 1``."""
        o = self.options
        if o.layer_decay < 1.0:
            from funduslab.training.layer_decay import layer_decay_groups

            head = None
            if self._head_ids is not None:
                head = [p for p in self.net.parameters() if id(p) in self._head_ids]
            return layer_decay_groups(self.net, head, o.lr, o.backbone_lr, o.weight_decay,
                                      o.layer_decay)
        head, backbone = [], []
        for p in self.net.parameters():
            if not p.requires_grad:
                continue
            is_head = self._head_ids is None or id(p) in self._head_ids
            (head if is_head else backbone).append(p)
        groups = [{"params": head, "lr": o.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": o.backbone_lr})
        return groups

    def configure_optimizers(self):
        """AdamW over :meth:`_parameter_groups`; LambdaLR scales every group's own initial lr."""
        groups = self._parameter_groups()
        optimizer = torch.optim.AdamW(groups, weight_decay=self.options.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = total / max(1, self.options.epochs)
        warmup = int(round(self.options.warmup_epochs * per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.options.schedule, warmup, total)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
