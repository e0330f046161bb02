"""Transfer-learning setups, registered by name: how much of a pretrained model is trained.

* ``none``      — evaluate the starting model as it is (its head must already fit the labels).
* ``frozen``    — backbone fixed (BatchNorm in eval mode); the head trains on cached features
  (dual-image models: per-image features, paired, so fusion and head train on them).
* ``full``      — every weight trains; backbone and head have separate learning rates.
* ``partial``   — only the last ``train.partial_stages`` stages and the head train.
* ``two-stage`` — full fine-tuning on ``train.source`` first, then on the target data.

Each setup is ``(ctx: RunContext) -> (FundusModel, info dict)``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from funduslab.models.backbones import backbone_info
from funduslab.models.families import family_of
from funduslab.models.classifier import FundusModel
from funduslab.models.factory import build_model, last_stage_parameters
from funduslab.registry import Registry
from funduslab.training.context import RunContext
from funduslab.training.features import fit_head_on_features
from funduslab.training.fit import fit_task
from funduslab.training.freezing import EarlyStageFreeze
from funduslab.training.loaders import batch_augmentation, eval_loader, train_loader
from funduslab.training.module import FitOptions

__all__ = ["SETUPS", "fit_model"]

log = logging.getLogger(__name__)

SETUPS: Registry = Registry("setup")


def fit_options(ctx: RunContext, epochs: int | None = None, channels_last: bool = True) -> FitOptions:
    t = ctx.cfg.train
    return FitOptions(
        lr=t.lr, backbone_lr=t.backbone_lr, weight_decay=t.weight_decay,
        warmup_epochs=t.warmup_epochs, schedule=t.schedule,
        epochs=t.epochs if epochs is None else epochs,
        channels_last=channels_last and t.channels_last, layer_decay=t.layer_decay,
        progressive_size=t.progressive_size if epochs is None else 0,
        progressive_epochs=t.progressive_epochs, batch_augment=batch_augmentation(ctx),
    )


def _finetune(ctx: RunContext, model: FundusModel, stage_dir: str = "") -> dict:
    family = family_of(backbone_info(model.backbone).family)
    if ctx.cfg.train.progressive_size and not family.stage_maps:
        raise ValueError("train.progressive_size needs a CNN backbone (ViT/Swin are built for one "
                         "input size); set it to 0")
    task_cls = ctx.kind.task_class(ctx)
    if ctx.cfg.train.attention_consistency > 0 and ctx.cfg.model.dual != "none":
        raise ValueError(f"train.attention_consistency works on single images; set it to 0 for "
                         f"model.dual={ctx.cfg.model.dual!r} (or use model.dual: none)")
    if ctx.cfg.train.attention_consistency > 0:  # flip-consistent CAMs (training/guided.py)
        from funduslab.training.guided import consistency_task

        task_cls = consistency_task(ctx.cfg.train.attention_consistency)
    options = fit_options(ctx)
    t = ctx.cfg.train
    if t.freeze_stages and t.setup != "partial":
        options.freeze = EarlyStageFreeze(model, t.freeze_stages, t.freeze_epochs)
    task = task_cls(
        model, ctx.kind.loss(ctx, ctx.train.targets), ctx.table.label_names, options,
        head_params=list(model.head.parameters()),
    )
    if ctx.cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    val = eval_loader(ctx, ctx.val) if ctx.val is not None else None
    info = fit_task(
        task, train_loader(ctx), val, ctx.cfg.train, ctx.run_dir / stage_dir if stage_dir else ctx.run_dir,
        resume=ctx.cfg.output.resume, progress=ctx.extras.get("progress", True),
    )
    return {**info, "frozen": options.freeze.describe()} if options.freeze else info


@SETUPS.register("none")
def setup_none(ctx: RunContext) -> tuple[FundusModel, dict]:
    """No training: the starting weights (with their head) are evaluated as they are."""
    model = build_model(ctx.cfg.model, ctx.kind.num_outputs(ctx), ctx.cfg.data.image_size,
                        require_head=True)
    return model, {"trained": "nothing"}


@SETUPS.register("frozen")
def setup_frozen(ctx: RunContext) -> tuple[FundusModel, dict]:
    """Backbone frozen in eval mode; the head is fitted on features computed once per image."""
    model = build_model(ctx.cfg.model, ctx.kind.num_outputs(ctx), ctx.cfg.data.image_size)
    info = fit_head_on_features(ctx, model, ctx.kind.loss(ctx, ctx.train.targets), fit_options(ctx, channels_last=False))
    return model, {"trained": "head", **info}


@SETUPS.register("full")
def setup_full(ctx: RunContext) -> tuple[FundusModel, dict]:
    """Every weight trains (backbone at ``backbone_lr``, head at ``lr``)."""
    model = build_model(ctx.cfg.model, ctx.kind.num_outputs(ctx), ctx.cfg.data.image_size)
    return model, {"trained": "all", **_finetune(ctx, model)}


@SETUPS.register("partial")
def setup_partial(ctx: RunContext) -> tuple[FundusModel, dict]:
    """Only the last ``partial_stages`` backbone stages and the head train; the rest is frozen."""
    model = build_model(ctx.cfg.model, ctx.kind.num_outputs(ctx), ctx.cfg.data.image_size)
    n = ctx.cfg.train.partial_stages
    trainable = last_stage_parameters(model, n)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    _freeze_batchnorm_outside(model.backbone, trainable)
    return model, {"trained": f"last {n} stages + head", **_finetune(ctx, model)}


@SETUPS.register("two-stage")
def setup_two_stage(ctx: RunContext) -> tuple[FundusModel, dict]:
    """Full fine-tuning on ``train.source`` for ``source_epochs``, then on the target data."""
    from funduslab.training.two_stage import fit_source_stage

    model = build_model(ctx.cfg.model, ctx.kind.num_outputs(ctx), ctx.cfg.data.image_size)
    source_info = fit_source_stage(ctx, model)
    target_info = _finetune(ctx, model)
    return model, {"trained": "source then target", "source_stage": source_info, **target_info}


def _freeze_batchnorm_outside(backbone: nn.Module, trainable: list[nn.Parameter]) -> None:
    """Keep BatchNorm statistics of frozen stages fixed by putting them in eval mode for good."""
    keep = {id(p) for p in trainable}
    for m in backbone.modules():
        frozen = not any(id(p) in keep for p in m.parameters(recurse=False))
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and frozen:
            m.eval()
            m.train = lambda mode=True, _m=m: _m  # stays in eval when Lightning calls .train()


def fit_model(ctx: RunContext) -> tuple[FundusModel, dict]:
    """Run the configured setup (``ValueError`` lists valid setups for an unknown name)."""
    return SETUPS.get(ctx.cfg.train.setup)(ctx)
