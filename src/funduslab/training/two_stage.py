"""Stage 1 of two-stage training: full fine-tuning on a larger source dataset.

The backbone (and the head, when the label sets agree) carry over to stage 2 on the target
data; with different label sets a fresh head is used for the source stage and then discarded.
The source may have another kind of labels than the target — e.g. D/G/A disease detection on
other patients before DR grading: only the backbone's features carry over then, and stage 1 uses
the source's own loss and selection metric.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from funduslab.config import RunConfig, TrainConfig
from funduslab.data.adapters import load_table
from funduslab.data.table import SampleTable
from funduslab.models.classifier import FundusModel, build_head
from funduslab.training.context import RunContext
from funduslab.training.fit import fit_task
from funduslab.training.loaders import eval_loader, train_loader

__all__ = ["fit_source_stage", "source_stage_config"]

log = logging.getLogger(__name__)

_COURSE_LABELS = {"D", "G", "A"}
# Options that describe the target's labels, not how to train: a source of another kind resets them.
_LABEL_KIND_FIELDS = {"task", "loss", "loss_options", "monitor", "source", "source_epochs"}


def source_stage_config(cfg: RunConfig, source: SampleTable) -> RunConfig:
    """The run config of stage 1: the target's, on the source data, with the source's task kind.

    When the source has the target's kind of labels, the training options are the target's.
    Otherwise the label-specific options (task, loss, monitor) fall back to the source kind's
    defaults — BCE and course average F1 (macro AUROC for labels other than D/G/A) for a
    multi-label source, the formulation's loss and quadratic kappa for a grading source.
    """
    from funduslab.training.grading import resolve_task

    data = cfg.train.source
    if data is None:
        raise ValueError("setup 'two-stage' needs train.source (the stage-1 dataset config)")
    if source.task == cfg.train.task:
        return cfg.model_copy(update={"data": data})
    kept = cfg.train.model_dump(exclude=_LABEL_KIND_FIELDS)
    if source.task == "multilabel" and not _COURSE_LABELS <= set(source.label_names):
        kept["monitor"] = "macro_auroc"
    model = cfg.model
    if source.task != "grading" and model.head == "coral":  # CORAL wraps a base head for grades
        options = dict(model.head_options)
        model = model.model_copy(update={"head": options.pop("base", "linear"),
                                         "head_options": options})
    stage = cfg.model_copy(update={"data": data, "train": TrainConfig(**kept), "model": model})
    return resolve_task(stage, source)


def fit_source_stage(ctx: RunContext, model: FundusModel) -> dict:
    """Fit ``model`` on ``ctx.cfg.train.source`` for ``source_epochs``; return the stage's info."""
    from funduslab.training.runner import decode_splits
    from funduslab.training.setups import fit_options

    source_cfg = ctx.cfg.train.source
    if source_cfg is None:
        raise ValueError("setup 'two-stage' needs train.source (the stage-1 dataset config)")
    table = load_table(source_cfg.adapter, Path(source_cfg.root), **source_cfg.options)
    cfg = source_stage_config(ctx.cfg, table)
    splits, fingerprint = decode_splits(table, cfg, ctx.cache_dir)
    sctx = RunContext(cfg, table, splits, ctx.run_dir / "source_stage", ctx.cache_dir, fingerprint,
                      ctx.extras)
    target_head = model.head
    same_labels = (table.task == ctx.table.task
                   and list(table.label_names) == list(ctx.table.label_names))
    if not same_labels:
        model.head = build_head(cfg.model.head, model.num_features, sctx.kind.num_outputs(sctx),
                                cfg.model.dropout, **cfg.model.head_options)
    task = sctx.kind.task_class(sctx)(
        model,
        sctx.kind.loss(sctx, sctx.train.targets),
        table.label_names,
        fit_options(sctx, epochs=ctx.cfg.train.source_epochs),
        head_params=list(model.head.parameters()),
    )
    stage_train = copy.deepcopy(cfg.train).model_copy(
        update={"epochs": ctx.cfg.train.source_epochs})
    val = eval_loader(sctx, sctx.val) if sctx.val is not None else None
    info = fit_task(task, train_loader(sctx), val, stage_train, sctx.run_dir,
                    resume=ctx.cfg.output.resume, progress=ctx.extras.get("progress", True))
    if not same_labels:
        model.head = target_head
    log.info("source stage on %s: best %s = %.4f", table.source, info["monitor"],
             info["best_score"])
    return {"source": table.source, "task": table.task, "labels": table.label_names,
            "data_fingerprint": fingerprint, **info}
