"""Task kinds: what differs between multi-label detection and DR grading, in one object each.

A dataset's table says which kind it is (``SampleTable.task``); the run asks the kind for

* its **targets** — multi-label ``(N, K)`` 0/1 (NaN where a joined source lacks a label), grading
  ``(N,)`` integer grades, as samplers and grading losses expect;
* its **outputs** — one logit per label, or the grading formulation's count (K, 1 or K − 1);
* its **loss** and its **LightningModule** class;
* its **evaluation** — probabilities, thresholds (0.5 or tuned on val), predictions, metrics and
  the submission for multi-label; decoded grades, kappas, cut points and confusion figures for
  grading (:mod:`funduslab.training.grading`);
* for a saved model predicting new images (``funduslab predict``, the ONNX check): how raw
  outputs **decode** to probabilities and labels, the **submission columns** a template asks
  for, and the **prediction files**.

A new kind is one :class:`TaskKind` subclass registered in :data:`TASK_KINDS` (and the adapters
that produce its tables); the runner and setups do not branch on the kind's name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.special import expit
from torch import nn

from funduslab.config import RunConfig
from funduslab.data.join import observed_rows
from funduslab.losses import ClassCounts, build_loss
from funduslab.metrics import multilabel_metrics, tune_thresholds
from funduslab.registry import Registry
from funduslab.runs.files import write_predictions, write_submission
from funduslab.training.context import RunContext

if TYPE_CHECKING:  # Lightning loads only when a model trains, not when one predicts
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
        from funduslab.training.module import FundusTask

        return FundusTask

    def evaluate(self, ctx: RunContext,
                 outputs: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
        """Write every split's predictions (and the submission); return ``metrics.json``'s
        content and the thresholds the saved model applies."""
        raise NotImplementedError

    def formulation(self, cfg: RunConfig) -> str | None:
        """The grading formulation recorded in the weights' metadata (``None``: not grading)."""
        return None

    def decode(self, saved: Any, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, labels)`` of a saved model's raw outputs, as predict writes them.

        ``saved`` is an :class:`~funduslab.inference.saved_model.SavedModel` (its thresholds,
        formulation, grade count).
        """
        raise NotImplementedError

    def submission_columns(self, saved: Any, template: Sequence[str] | None,
                           source: str) -> list[str]:
        """The submission's columns: the template's (``None``: a folder of images), checked
        against what ``saved`` predicts; ``source`` names the template in errors."""
        raise NotImplementedError

    def write_predictions(self, out: Path, saved: Any, ids: list[str], outputs: np.ndarray,
                          columns: list[str], threshold: float | None) -> dict[str, Any]:
        """Write ``predictions.csv`` and ``submission.csv`` into ``out``; return what decided
        the labels (thresholds or cut points) for ``predict.json``."""
        raise NotImplementedError


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
        probs = {name: expit(out) for name, out in outputs.items()}
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

    def decode(self, saved: Any, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = expit(np.asarray(outputs, dtype=np.float64))
        return probs, (probs >= saved.thresholds).astype(int)

    def submission_columns(self, saved: Any, template: Sequence[str] | None,
                           source: str) -> list[str]:
        if template is None or len(template) == 1:  # a folder, or a list of ids
            return [template[0] if template else "id", *saved.label_names]
        unknown = [c for c in template[1:] if c not in saved.label_names]
        if unknown:
            raise ValueError(f"{source} asks for labels {unknown} that the model does not "
                             f"predict; it predicts {saved.label_names}")
        return list(template)

    def write_predictions(self, out: Path, saved: Any, ids: list[str], outputs: np.ndarray,
                          columns: list[str], threshold: float | None) -> dict[str, Any]:
        """The run's thresholds, or one fixed ``threshold`` for every label."""
        names = saved.label_names
        used = saved.thresholds if threshold is None else np.full(len(names), float(threshold))
        probs = expit(np.asarray(outputs, dtype=np.float64))
        preds = (probs >= used).astype(int)
        write_predictions(out / "predictions.csv", ids, probs, preds, names)
        order = [names.index(c) for c in columns[1:]]
        write_submission(out / "submission.csv", ids, preds[:, order], columns)
        return {"thresholds": dict(zip(names, (float(t) for t in used))),
                "threshold_source": "fixed" if threshold is not None else "the run's"}


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

    @staticmethod
    def _decoded(saved: Any, outputs: np.ndarray) -> tuple[Any, np.ndarray | None]:
        """The formulation's decoding, with the saved cut points where it uses them."""
        from funduslab.training.grading import GRADING_FORMULATIONS

        form = GRADING_FORMULATIONS.get(saved.formulation)
        cuts = saved.thresholds if form.uses_thresholds and len(saved.thresholds) else None
        return form.decode(np.asarray(outputs, dtype=np.float64), saved.num_grades, cuts), cuts

    def decode(self, saved: Any, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (the score for regression) and grades."""
        decoded, _ = self._decoded(saved, outputs)
        probs = decoded.probs if decoded.probs is not None else decoded.score[:, None]
        return probs, decoded.grades

    def submission_columns(self, saved: Any, template: Sequence[str] | None,
                           source: str) -> list[str]:
        if template is not None and len(template) > 2:
            raise ValueError(f"{source} has columns {list(template)}; a grading submission has "
                             "two (id, grade), e.g. ID,TARGET or id_code,diagnosis")
        if template and len(template) == 2:
            return list(template)
        return [template[0] if template else "id", "grade"]

    def write_predictions(self, out: Path, saved: Any, ids: list[str], outputs: np.ndarray,
                          columns: list[str], threshold: float | None) -> dict[str, Any]:
        """Decoded grades (``threshold`` does not apply: cut points come with the run)."""
        from funduslab.training.grading import write_grade_predictions

        decoded, cuts = self._decoded(saved, outputs)
        write_grade_predictions(out / "predictions.csv", ids, decoded)
        write_submission(out / "submission.csv", ids, decoded.grades, columns)
        return {"cut_points": None if cuts is None else [float(c) for c in cuts]}


for _kind in (MultilabelKind(), GradingKind()):
    TASK_KINDS.register(_kind.name)(_kind)


def task_kind(name: str) -> TaskKind:
    """The registered kind ``name`` (a table's ``task``); unknown names list the valid ones."""
    return TASK_KINDS.get(name)
