"""``funduslab pretrain``: fit a D/G/A source model so "no fine-tuning" can be reproduced.

The course's Task 1.1 evaluates checkpoints trained on other datasets (ADAM, REFUGE2, APTOS)
without touching the course data. Without those files, this fits the same kind of model on a
source dataset disjoint from the course (by default ODIR-5K eyes of other patients, split by
patient) and saves it:

* ``resnet18`` — in the course's torchvision format (``ckpt_resnet18_ep<E>.pt``: a full
  torchvision ``resnet18`` state dict with a 3-output ``fc``), since timm's ResNet-18 uses
  torchvision's parameter names;
* other backbones — as a funduslab checkpoint (state dict + metadata), which the ``none`` setup
  loads the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from funduslab.config import atomic_write_bytes, config_from_dict
from funduslab.models.checkpoints import save_torch_atomic
from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint
from funduslab.training.runner import run

__all__ = ["pretrain_source_model", "to_torchvision_resnet18"]

log = logging.getLogger(__name__)

COURSE_LABELS = ["D", "G", "A"]


def to_torchvision_resnet18(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FundusModel(resnet18 + linear head) state dict → torchvision ``resnet18`` keys."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out[key[len("backbone."):]] = value
        elif key.startswith("head.fc."):
            out["fc." + key[len("head.fc."):]] = value
    return out


def pretrain_source_model(
    source: Path, adapter: str = "odir5k", backbone: str = "resnet18", weights: str = "none",
    out: Path = Path("pretrained_backbone"), epochs: int = 10, image_size: int = 256,
    seed: int = 0, quick: bool = False,
) -> Path:
    """Fit ``backbone`` on the source's D/G/A labels and save the checkpoint; return its path.

    An existing checkpoint of the same name is reused (delete it to refit).
    """
    out = Path(out)
    name = "resnet18" if backbone == "resnet18" else backbone
    target = out / f"ckpt_{name}_ep{epochs}.pt"
    if target.is_file():
        log.info("reusing source model %s", target)
        return target
    cfg = config_from_dict({
        "data": {"adapter": adapter, "root": str(source), "image_size": image_size,
                 "options": {"labels": COURSE_LABELS, "seed": seed}},
        "model": {"backbone": backbone, "weights": weights},
        "train": {"setup": "full", "epochs": epochs, "seed": seed,
                  "batch_size": 8 if quick else 32, "sampler": "class_aware",
                  "lr": 1e-3, "backbone_lr": 1e-3 if weights == "none" else 3e-4},
        "output": {"out": str(out / "runs"), "name": f"pretrain_{name}_ep{epochs}",
                   "figures": not quick},
    })
    run_dir = run(cfg, progress=not quick)
    state, _ = load_funduslab_checkpoint(run_dir / "model.pt")
    if backbone == "resnet18":
        save_torch_atomic(to_torchvision_resnet18(state), target)
    else:
        atomic_write_bytes(target, (run_dir / "model.pt").read_bytes())
    log.info("source model saved to %s", target)
    return target
