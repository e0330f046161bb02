"""Freezing the stem and first stages of a backbone during a fine-tune (all epochs or the first).

On a 2-core CPU the backward pass through the high-resolution early blocks is the costliest
part of a Lite0 training step: with the stem and two stages frozen, 256-px training on the
course images ran at 35.7 images/s instead of 19.0 (``benchmarks/bench_throughput.py``,
2-core Intel Xeon, 2026-12-05). Early ImageNet features (edges, colour blobs) need little
adaptation and hold 0.5 % of Lite0's weights, so the default recipe keeps them fixed for the
whole run; ``freeze_epochs`` releases them after that many epochs instead.
"""

from __future__ import annotations

from torch import nn

from funduslab.models.classifier import FundusModel
from funduslab.models.factory import early_stage_parameters

__all__ = ["EarlyStageFreeze"]


class EarlyStageFreeze:
    """Stem + first ``stages`` stages frozen (BatchNorm statistics too) while epoch < ``epochs``.

    Call :meth:`apply` at the start of every training epoch (the model in train mode). The
    optimiser must hold the frozen parameters from the start (they get no gradient while
    frozen, so AdamW leaves them and their weight decay alone).

    Args:
        model: The model being fitted.
        stages: Leading backbone stages frozen with the stem (``ValueError`` when the backbone
            has no stage left to train).
        epochs: Epochs they stay frozen; ``None`` = the whole run.
    """

    def __init__(self, model: FundusModel, stages: int, epochs: int | None = None) -> None:
        self.stages, self.epochs = stages, epochs
        self.params = early_stage_parameters(model, stages)
        ids = {id(p) for p in self.params}
        self.batchnorms = [
            m for m in model.backbone.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and any(True for _ in m.parameters(recurse=False))
            and all(id(p) in ids for p in m.parameters(recurse=False))
        ]

    def frozen_at(self, epoch: int) -> bool:
        return self.epochs is None or epoch < self.epochs

    def apply(self, epoch: int) -> None:
        """Freeze or release the stages for ``epoch`` (0-based)."""
        frozen = self.frozen_at(epoch)
        for p in self.params:
            p.requires_grad_(not frozen)
        for m in self.batchnorms:  # Lightning restores each module's own mode after validation
            m.train(not frozen)

    def describe(self) -> str:
        """What :meth:`apply` freezes, for ``metrics.json``."""
        what = f"stem + {self.stages} stage{'s' if self.stages > 1 else ''}"
        return f"{what} frozen " + ("throughout" if self.epochs is None
                                   else f"for the first {self.epochs} epochs")
