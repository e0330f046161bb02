"""Stage 1 of two-stage training: full fine-tuning on a larger source dataset.

The backbone (and the head, when the label sets agree) carry over to stage 2 on the target
data; with different label sets a fresh head is used for the source stage and then discarded.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from funduslab.data.adapters import load_table
from funduslab.models.classifier import FundusModel, build_head
from funduslab.training.context import RunContext
from funduslab.training.fit import fit_task
from funduslab.training.loaders import eval_loader, train_loader
from funduslab.training.module import task_class

__all__ = ["fit_source_stage"]

log = logging.getLogger(__name__)


def fit_source_stage(ctx: RunContext, model: FundusModel) -> dict:
    """Fit ``model`` on ``ctx.cfg.train.source`` for ``source_epochs``; return the stage's info."""
    from funduslab.training.runner import decode_splits
    from funduslab.training.setups import _loss, fit_options

    source_cfg = ctx.cfg.train.source
    if source_cfg is None:
        raise ValueError("setup 'two-stage' needs train.source (the stage-1 dataset config)")
    table = load_table(source_cfg.adapter, Path(source_cfg.root), **source_cfg.options)
    cfg = ctx.cfg.model_copy(update={"data": source_cfg})
    splits, fingerprint = decode_splits(table, cfg, ctx.cache_dir)
    sctx = RunContext(cfg, table, splits, ctx.run_dir / "source_stage", ctx.cache_dir, fingerprint,
                      ctx.extras)
    target_head = model.head
    same_labels = list(table.label_names) == list(ctx.table.label_names)
    if not same_labels:
        model.head = build_head(ctx.cfg.model.head, model.num_features, len(table.label_names),
                                ctx.cfg.model.dropout, **ctx.cfg.model.head_options)
    if table.task != ctx.table.task:
        raise ValueError(f"two-stage source {table.source} is a {table.task} table but the target "
                         f"is {ctx.table.task}; use a source with the same kind of labels")
    task = task_class(sctx)(
        model,
        _loss(sctx, sctx.train.targets),
        table.label_names,
        fit_options(sctx, epochs=ctx.cfg.train.source_epochs),
        head_params=list(model.head.parameters()),
    )
    stage_train = copy.deepcopy(ctx.cfg.train).model_copy(update={"epochs": ctx.cfg.train.source_epochs})
    val = eval_loader(sctx, sctx.val) if sctx.val is not None else None
    info = fit_task(task, train_loader(sctx), val, stage_train, sctx.run_dir,
                    resume=ctx.cfg.output.resume, progress=ctx.extras.get("progress", True))
    if not same_labels:
        model.head = target_head
    log.info("source stage on %s: best %s = %.4f", table.source, info["monitor"], info["best_score"])
    return {"source": table.source, "labels": table.label_names, **info}
