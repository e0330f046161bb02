"""Lightning checkpoints (``checkpoints/best.ckpt``, ``last.ckpt``) written atomically beside
themselves.

Lightning's :class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` writes through an
``fsspec`` transaction: a temporary file in the *system* temp folder, then ``shutil.move``. When
that folder is on another file system (``/tmp`` as tmpfs, runs on a data disk) the move is a copy
into the final name, so a full disk leaves a truncated ``last.ckpt`` that the next run would try to
resume from. Here the bytes go to a temporary file in the checkpoint folder and are renamed into
place (:func:`funduslab.models.checkpoints.save_torch_atomic`); a failed write raises
:class:`~funduslab.errors.DiskWriteError` naming the checkpoint and keeps the previous one.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from funduslab.models.checkpoints import save_torch_atomic

__all__ = ["AtomicCheckpointIO", "use_atomic_checkpoints"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose save is one atomic write in the checkpoint's own folder."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_torch_atomic(checkpoint, path)


def use_atomic_checkpoints(trainer: L.Trainer) -> None:
    """Give ``trainer`` :class:`AtomicCheckpointIO` where it would use Lightning's plain torch
    writer (single device, DDP); strategies with their own writer (XLA, DeepSpeed) keep it."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
