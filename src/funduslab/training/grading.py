"""Ordinal grading (DR grade 0–4): formulations, the Lightning subclass and run evaluation.

A *formulation* says how a model's outputs encode a grade, and is chosen by name
(``train.formulation``):

* ``ce``         — K logits, label-smoothed softmax cross-entropy; grade = argmax.
* ``regression`` — one output, the grade as a number (SmoothL1/MSE); grade = cut points that
  maximise quadratic kappa on validation (:func:`funduslab.metrics.optimize_grade_thresholds`),
  rounding when no labelled validation split exists.
* ``ordinal``    — CORAL (Cao, Mirjalili & Raschka, Pattern Recognit. Lett. 140, 2020): K−1
  cumulative logits from the ``coral`` head; grade = number of ``P(grade > k) > 0.5``.

Each formulation decodes raw outputs into grades, a score (expected grade) and, where defined,
class probabilities. The head that produces the outputs is any registered head (``coral`` wraps
one for ``ordinal``), so a future dual-image fusion head plugs in unchanged: it only has to map its
input to ``num_outputs`` values.

Model selection uses validation quadratic-weighted kappa (``monitor: quadratic_kappa``); see
:func:`resolve_task` for how a config is completed for a grading table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import expit, softmax
from torch import nn

from funduslab.config import RunConfig, atomic_write_text
from funduslab.data.table import SampleTable
from funduslab.losses import ClassCounts, build_loss
from funduslab.metrics import apply_grade_thresholds, grading_metrics, optimize_grade_thresholds
from funduslab.registry import Registry
from funduslab.training.context import RunContext
from funduslab.training.module import FitOptions, FundusTask

__all__ = [
    "GRADING_FORMULATIONS",
    "GradeDecoding",
    "GradingFormulation",
    "GradingTask",
    "evaluate_grading",
    "grading_loss",
    "resolve_task",
    "write_grade_predictions",
]

log = logging.getLogger(__name__)

GRADING_FORMULATIONS: Registry = Registry("grading formulation")
_GRADING_MONITORS = ("quadratic_kappa", "val_loss")


@dataclass(frozen=True)
class GradeDecoding:
    """Decoded outputs of N images: ``grades (N,)`` int64, ``score (N,)`` float (expected grade or
    regression output) and ``probs (N, K)`` class probabilities (``None`` for regression)."""

    grades: np.ndarray
    score: np.ndarray
    probs: np.ndarray | None


class GradingFormulation:
    """How K grades are encoded by model outputs (subclass and register an instance).

    Attributes:
        name: Registry name.
        losses: Loss names that fit this encoding; the first is the default.
        head: Head the formulation needs around the configured one (``"coral"``) or ``None``.
        uses_thresholds: Grades come from cut points tuned on validation.
    """

    name = ""
    losses: tuple[str, ...] = ()
    head: str | None = None
    uses_thresholds = False

    def num_outputs(self, num_grades: int) -> int:
        raise NotImplementedError

    def decode(self, outputs: np.ndarray, num_grades: int,
               thresholds: np.ndarray | None = None) -> GradeDecoding:
        """``outputs (N, num_outputs)`` → :class:`GradeDecoding`."""
        raise NotImplementedError


class CrossEntropyFormulation(GradingFormulation):
    """K logits; softmax probabilities; grade = argmax; score = Σ_k k·p_k."""

    name, losses = "ce", ("grade_ce",)

    def num_outputs(self, num_grades: int) -> int:
        return num_grades

    def decode(self, outputs, num_grades, thresholds=None):
        probs = softmax(np.asarray(outputs, dtype=np.float64), axis=1)
        return GradeDecoding(probs.argmax(axis=1).astype(np.int64),
                             probs @ np.arange(num_grades), probs)


class RegressionFormulation(GradingFormulation):
    """One output, the grade as a number; grade by cut points (default: rounding)."""

    name, losses, uses_thresholds = "regression", ("grade_smooth_l1", "grade_mse"), True

    def num_outputs(self, num_grades: int) -> int:
        return 1

    def decode(self, outputs, num_grades, thresholds=None):
        score = np.asarray(outputs, dtype=np.float64).reshape(-1)
        cuts = np.arange(num_grades - 1) + 0.5 if thresholds is None else np.asarray(thresholds)
        return GradeDecoding(apply_grade_thresholds(score, cuts), score, None)


class OrdinalFormulation(GradingFormulation):
    """CORAL: K−1 cumulative logits ``z_k``, ``P(grade > k) = σ(z_k)``.

    Grade = ``Σ_k 1[σ(z_k) > 0.5]`` (Cao et al. 2020, eq. 5); class probabilities are differences
    of consecutive cumulative probabilities (clipped at 0 and renormalised should the
    cumulative curve not be monotone); score = ``Σ_k σ(z_k)``, the expected grade.
    """

    name, losses, head = "ordinal", ("coral",), "coral"

    def num_outputs(self, num_grades: int) -> int:
        return num_grades - 1

    def decode(self, outputs, num_grades, thresholds=None):
        above = expit(np.asarray(outputs, dtype=np.float64))  # (N, K-1) P(grade > k)
        n = len(above)
        cumulative = np.concatenate([np.ones((n, 1)), above, np.zeros((n, 1))], axis=1)
        probs = np.clip(cumulative[:, :-1] - cumulative[:, 1:], 0.0, None)
        probs /= probs.sum(axis=1, keepdims=True).clip(min=1e-12)
        return GradeDecoding((above > 0.5).sum(axis=1).astype(np.int64), above.sum(axis=1), probs)


for _formulation in (CrossEntropyFormulation(), RegressionFormulation(), OrdinalFormulation()):
    GRADING_FORMULATIONS.register(_formulation.name)(_formulation)


def resolve_task(cfg: RunConfig, table: SampleTable) -> RunConfig:
    """Complete ``cfg`` for the table's task kind; the result is what ``config.yaml`` records.

    ``train.task: auto`` takes the table's kind. For grading, a loss or monitor left at its
    default becomes the formulation's default loss and ``quadratic_kappa``; the ordinal
    formulation wraps the configured head in ``coral`` (``head_options.base``).

    Raises:
        ValueError: the config's task contradicts the data, an explicitly chosen loss or monitor
            does not fit grading, or the formulation name is unknown.
    """
    t = cfg.train
    if t.task not in ("auto", table.task):
        hint = (" (odir5k grades: data.options.task=grading)" if t.task == "grading" else "")
        raise ValueError(f"train.task is {t.task!r} but adapter {cfg.data.adapter!r} at "
                         f"{cfg.data.root} gives a {table.task} table{hint}")
    if table.task != "grading":
        return cfg.model_copy(update={"train": t.model_copy(update={"task": table.task})})
    form = GRADING_FORMULATIONS.get(t.formulation)
    if getattr(t, "attention_consistency", 0.0) > 0:
        raise ValueError("train.attention_consistency works with multi-label tasks only; set it "
                         "to 0 for grading")
    update: dict[str, Any] = {"task": "grading"}
    if t.loss not in form.losses:
        if "loss" in t.model_fields_set:
            raise ValueError(f"train.loss {t.loss!r} does not fit grading formulation "
                             f"{form.name!r}; valid: {', '.join(form.losses)}")
        update["loss"] = form.losses[0]
    if t.monitor not in _GRADING_MONITORS:
        if "monitor" in t.model_fields_set:
            raise ValueError(f"train.monitor {t.monitor!r} is a multi-label metric; for grading "
                             f"use one of {', '.join(_GRADING_MONITORS)}")
        update["monitor"] = "quadratic_kappa"
    m = cfg.model
    model = m
    if form.head and m.head != form.head:
        model = m.model_copy(update={"head": form.head,
                                     "head_options": {"base": m.head, **m.head_options}})
    elif not form.head and m.head == "coral":
        raise ValueError(f"head 'coral' is for formulation 'ordinal', not {form.name!r}")
    return cfg.model_copy(update={"train": t.model_copy(update=update), "model": model})


def formulation_of(cfg: RunConfig) -> GradingFormulation:
    """The configured formulation (``ValueError`` lists valid names)."""
    return GRADING_FORMULATIONS.get(cfg.train.formulation)


def grading_loss(cfg: RunConfig, grades: np.ndarray, num_grades: int) -> nn.Module:
    """The configured grading loss; ``ClassCounts.positives`` holds images per grade ``(K,)``."""
    counts = np.bincount(np.asarray(grades, dtype=np.int64).reshape(-1), minlength=num_grades)
    return build_loss(cfg.train.loss, ClassCounts(counts, counts.sum() - counts),
                      **cfg.train.loss_options)


class GradingTask(FundusTask):
    """:class:`FundusTask` whose validation metrics are kappas and accuracy of decoded grades.

    Logs ``val_quadratic_kappa`` (the model-selection metric), ``val_linear_kappa``,
    ``val_cohen_kappa`` and ``val_accuracy`` per epoch (regression grades by rounding here;
    tuned cut points are fitted once training ends). Targets are ``(B,)`` grades.
    """

    def __init__(self, net: nn.Module, loss: nn.Module, label_names: list[str],
                 options: FitOptions, head_params: Iterable[nn.Parameter] | None = None,
                 formulation: str = "ce", num_grades: int = 5) -> None:
        super().__init__(net, loss, label_names, options, head_params)
        self.formulation = GRADING_FORMULATIONS.get(formulation)
        self.num_grades = int(num_grades)

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits, targets = torch.cat(self._val_logits), torch.cat(self._val_targets)
        self._val_logits.clear()
        self._val_targets.clear()
        if self.trainer.world_size > 1:
            logits = self.all_gather(logits).flatten(0, 1)
            targets = self.all_gather(targets).flatten(0, 1)
        decoded = self.formulation.decode(logits.float().cpu().numpy(), self.num_grades)
        scores = grading_metrics(targets.cpu().numpy().reshape(-1).round().astype(np.int64),
                                 decoded.grades, None, self.num_grades)
        for name, key in (("quadratic_kappa", "quadratic_weighted_kappa"),
                          ("linear_kappa", "linear_weighted_kappa"),
                          ("cohen_kappa", "cohen_kappa"), ("accuracy", "accuracy")):
            value = scores[key]
            self.log(f"val_{name}", 0.0 if value != value else value, sync_dist=False)


def write_grade_predictions(path: Path, ids: list[str], decoded: GradeDecoding) -> None:
    """``id, p_0 … p_{K-1} (when defined), score, grade`` per image, atomically."""
    frame = pd.DataFrame({"id": ids})
    if decoded.probs is not None:
        for k in range(decoded.probs.shape[1]):
            frame[f"p_{k}"] = np.round(decoded.probs[:, k], 6)
    frame["score"] = np.round(decoded.score, 6)
    frame["grade"] = decoded.grades.astype(int)
    atomic_write_text(path, frame.to_csv(index=False))


def evaluate_grading(
    ctx: RunContext, outputs: dict[str, np.ndarray]
) -> tuple[dict[str, Any], list[float]]:
    """Decode every split's model outputs; write predictions, confusion figures and submission.

    ``outputs``: raw model outputs per split (:func:`funduslab.training.runner.split_logits`).

    Returns:
        ``(metrics, cut_points)``: the metrics document (without fit/timing) and the regression
        cut points used (empty for other formulations).
    """
    from funduslab.plots.confusion import plot_confusion
    from funduslab.reporting.run_folder import write_submission

    cfg, table, run_dir = ctx.cfg, ctx.table, ctx.run_dir
    form, k = formulation_of(cfg), table.num_grades
    tuned = None
    val = ctx.val
    if form.uses_thresholds and val is not None and val.labelled:
        score = form.decode(outputs[val.name], k).score
        tuned = optimize_grade_thresholds(val.targets.astype(np.int64), score, k)
    metrics: dict[str, Any] = {"label_names": table.label_names, "task": "grading",
                               "formulation": form.name, "num_grades": k, "splits": {}}
    for name, s in ctx.splits.items():
        decoded = form.decode(outputs[name], k, tuned)
        write_grade_predictions(run_dir / "predictions" / f"{name}.csv", s.ids, decoded)
        if s.labelled:
            truth = s.targets.astype(np.int64).reshape(-1)
            entry = {"grading": grading_metrics(truth, decoded.grades, decoded.probs, k)}
            if tuned is not None:
                rounded = form.decode(outputs[name], k).grades
                entry["rounded"] = grading_metrics(truth, rounded, None, k)
            metrics["splits"][name] = entry
            if cfg.output.figures:
                g = entry["grading"]
                plot_confusion(g["confusion_matrix"], run_dir / "figures" / f"confusion_{name}.png",
                               f"{name}: quadratic κ {g['quadratic_weighted_kappa']:.3f}, "
                               f"accuracy {g['accuracy']:.3f}")
        elif table.submission_columns:
            write_submission(run_dir / "submission.csv", s.ids, decoded.grades,
                             table.submission_columns)
    cuts = [] if not form.uses_thresholds else [
        float(c) for c in (tuned if tuned is not None else np.arange(k - 1) + 0.5)]
    metrics["thresholds"] = {
        "used": ("tuned_on_val" if tuned is not None else "rounding") if form.uses_thresholds
        else form.name,
        "cut_points": cuts,
    }
    return metrics, cuts
