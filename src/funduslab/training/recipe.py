"""``train.recipe``: the fast fine-tuning schedule a pretrained CNN gets unless told otherwise.

``fast`` (the default) fills the speed knobs a config leaves unset, for a full or two-stage
fine-tune of a CNN that starts from pretrained weights on one device: during the first half of
the epochs the stem and the first two stages are frozen, then every weight trains
(``freeze_stages``, ``freeze_epochs``), so the run remains a full fine-tune. Progressive
resizing (``progressive_size``) stays off: in trials on the course split, epochs at 192 px
before 256 px bought speed but no recipe with them reached the reference's offsite F-score
(docs/results.md, "Training speed on a 2-core CPU"). ``plain`` leaves every knob at 0. Values
set explicitly win over the recipe; :func:`resolve_recipe` writes the result into
``config.yaml``.
"""

from __future__ import annotations

from funduslab.config import RunConfig
from funduslab.models.backbones import BACKBONES

__all__ = ["resolve_recipe"]


def resolve_recipe(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the recipe's knobs filled in (explicitly set ones are kept)."""
    t = cfg.train
    if t.recipe != "fast" or not _fast_applies(cfg):
        return cfg
    fill = {"freeze_stages": 2, "freeze_epochs": t.epochs // 2}
    update = {k: v for k, v in fill.items() if k not in t.model_fields_set}
    return cfg.model_copy(update={"train": t.model_copy(update=update)})


def _fast_applies(cfg: RunConfig) -> bool:
    """A pretrained CNN, fine-tuned in full on one device, for enough epochs to split.

    Several devices (DDP) are left alone: DDP fixes the set of trainable parameters when it wraps
    the model, so stages cannot be released mid-run.
    """
    t, m = cfg.train, cfg.model
    if t.setup not in ("full", "two-stage") or t.epochs < 4 or m.weights == "none":
        return False
    if t.devices > 1:
        return False
    return BACKBONES.get(m.backbone).family == "cnn"
