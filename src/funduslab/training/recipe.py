"""``train.recipe``: the fast fine-tuning schedule a pretrained CNN gets unless told otherwise.

``fast`` (the default) fills the speed knobs a config leaves unset, for a full or two-stage
fine-tune of a CNN that starts from pretrained weights on one device: the stem and the first two
stages stay frozen for the whole run (``freeze_stages: 2``, ``freeze_epochs: null``; 0.5 % of
Lite0's weights), everything after them trains. On the course split (Lite0, 8 epochs, seeds
0–2) this beat releasing them after half the epochs on val (.8133 against .8017 mean best-epoch
course F1) and trains at 1.9× its rate (docs/results.md, "Training speed on a 2-core CPU").
Progressive resizing (``progressive_size``) stays off: epochs at 192 px before 256 px bought
speed but no recipe with them reached the reference's offsite F-score. ``plain`` leaves every
knob at 0, so every weight trains. Values set explicitly win over the recipe;
:func:`resolve_recipe` writes the result into ``config.yaml``.
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
    fill = {"freeze_stages": 2, "freeze_epochs": None}
    update = {k: v for k, v in fill.items() if k not in t.model_fields_set}
    return cfg.model_copy(update={"train": t.model_copy(update=update)})


def _fast_applies(cfg: RunConfig) -> bool:
    """A pretrained CNN, fine-tuned in full on one device, for at least 4 epochs.

    Several devices (DDP) are left alone: the recipe was chosen and measured on one CPU.
    """
    t, m = cfg.train, cfg.model
    if t.setup not in ("full", "two-stage") or t.epochs < 4 or m.weights == "none":
        return False
    if t.devices > 1:
        return False
    return BACKBONES.get(m.backbone).family == "cnn"
