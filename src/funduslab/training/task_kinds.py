"""Task kinds: what differs between multi-label detection and DR grading, in one object each.

A dataset's table says which kind it is (``SampleTable.task``); the run asks the kind for

* its **targets** — multi-label ``(N, K)`` 0/1 (NaN where a joined source lacks a label), grading
  ``(N,)`` integer grades, as samplers and grading losses expect;
* its **outputs** — one logit per label, or the grading formulation's count (K, 1 or K − 1);
* its **loss** and its **LightningModule** class;
* its **evaluation** — probabilities, thresholds (0.5 or tuned on val), predictions, metrics and
  the submission for multi-label; decoded grades, kappas, cut points and confusion figures for
  grading (:mod:`funduslab.training.grading`).

A new kind is one :class:`TaskKind` subclass registered in :data:`TASK_KINDS` (and the adapters
that produce its tables); the runner and setups do not branch on the kind's name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from torch import nn

from funduslab.config import RunConfig
from funduslab.data.join import observed_rows
from funduslab.losses import ClassCounts, build_loss
from funduslab.metrics import multilabel_metrics, tune_thresholds
from funduslab.registry import Registry
from funduslab.runs.files import write_predictions, write_submission
from funduslab.training.context import RunContext
from funduslab.training.module import FundusTask

__all__ = ["TASK_KINDS", "GradingKind", "MultilabelKind", "TaskKind", "task_kind"]

#: Kind name (``SampleTable.task``) → :class:`TaskKind` (one instance each).
TASK_KINDS: Registry = Registry("task kind")


class TaskKind:
    """Base class; see the module docstring for what each method answers."""

    name: ClassVar[str] = ""

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """The split's targets from its label columns ``(N, K)`` float32."""
        return labels

    def num_outputs(self, ctx: RunContext) -> int:
        raise NotImplementedError

    def loss(self, ctx: RunContext, targets: np.ndarray) -> nn.Module:
        raise NotImplementedError

    def task_class(self, ctx: RunContext) -> Callable[..., FundusTask]:
        """The LightningModule class (or a partial of it) that trains this kind."""
        return FundusTask

    def evaluate(self, ctx: RunContext,
                 outputs: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
        """Write every split's predictions (and the submission); return ``metrics.json``'s
        content and the thresholds the saved model applies."""
        raise NotImplementedError

    def formulation(self, cfg: RunConfig) -> str | None:
        """The grading formulation recorded in the weights' metadata (``None``: not grading)."""
        return None


class MultilabelKind(TaskKind):
    """Independent sigmoid outputs, one per label (course D/G/A, ODIR-5K, RFMiD)."""

    name = "multilabel"

    def num_outputs(self, ctx: RunContext) -> int:
        return len(ctx.table.label_names)

    def loss(self, ctx: RunContext, targets: np.ndarray) -> nn.Module:
        return build_loss(ctx.cfg.train.loss, ClassCounts.from_labels(targets),
                          **ctx.cfg.train.loss_options)

    def evaluate(self, ctx: RunContext,
                 outputs: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
        """Probabilities, thresholds (0.5 or tuned on val), predictions, metrics, submission."""
        cfg, table, splits, run_dir = ctx.cfg, ctx.table, ctx.splits, ctx.run_dir
        probs = {name: 1.0 / (1.0 + np.exp(-out)) for name, out in outputs.items()}
        tuned = None
        val = splits.get(cfg.data.val_split)
        if val is not None and val.labelled:
            tuned = tune_thresholds(val.targets.astype(int), probs[val.name],
                                    objective=cfg.train.threshold_objective)
        chosen = (tuned if (cfg.train.tune_thresholds and tuned is not None)
                  else np.full(len(table.label_names), 0.5))
        metrics: dict = {"label_names": table.label_names, "splits": {}}
        for name, s in splits.items():
            preds = (probs[name] >= chosen).astype(int)
            write_predictions(run_dir / "predictions" / f"{name}.csv", s.ids, probs[name], preds,
                              table.label_names)
            if s.labelled:
                keep = observed_rows(s.targets)  # joined rows with a missing label: not scored
                truth, prob = s.targets[keep].astype(int), probs[name][keep]
                entry = {"threshold_0.5": multilabel_metrics(truth, prob, 0.5, table.label_names)}
                if tuned is not None:
                    entry["tuned_thresholds"] = multilabel_metrics(truth, prob, tuned,
                                                                   table.label_names)
                metrics["splits"][name] = entry
            elif table.submission_columns:
                write_submission(run_dir / "submission.csv", s.ids, preds,
                                 table.submission_columns)
        metrics["thresholds"] = {
            "used": "tuned_on_val" if chosen is tuned else "0.5",
            "tuned_on_val": None if tuned is None else [float(t) for t in tuned],
            "objective": cfg.train.threshold_objective,
        }
        return metrics, chosen


class GradingKind(TaskKind):
    """One ordinal grade per image (DR 0–4), trained under a grading formulation."""

    name = "grading"

    def targets(self, labels: np.ndarray) -> np.ndarray:
        return labels[:, 0].astype(np.int64)

    def num_outputs(self, ctx: RunContext) -> int:
        from funduslab.training.grading import formulation_of

        return formulation_of(ctx.cfg).num_outputs(ctx.table.num_grades)

    def loss(self, ctx: RunContext, targets: np.ndarray) -> nn.Module:
        from funduslab.training.grading import grading_loss

        return grading_loss(ctx.cfg, targets, ctx.table.num_grades)

    def task_class(self, ctx: RunContext) -> Callable[..., FundusTask]:
        from funduslab.training.grading import GradingTask  # subclass of FundusTask

        return functools.partial(GradingTask, formulation=ctx.cfg.train.formulation,
                                 num_grades=ctx.table.num_grades)

    def evaluate(self, ctx: RunContext,
                 outputs: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
        from funduslab.training.grading import evaluate_grading

        return evaluate_grading(ctx, outputs)

    def formulation(self, cfg: RunConfig) -> str | None:
        return cfg.train.formulation


for _kind in (MultilabelKind(), GradingKind()):
    TASK_KINDS.register(_kind.name)(_kind)


def task_kind(name: str) -> TaskKind:
    """The registered kind ``name`` (a table's ``task``); unknown names list the valid ones."""
    return TASK_KINDS.get(name)
