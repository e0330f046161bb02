"""DR grading: one ordinal grade per image, under a grading formulation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from rich.table import Table
from torch import nn

from funduslab.config import RunConfig
from funduslab.runs import RunFolder
from funduslab.runs.files import write_submission
from funduslab.training.context import RunContext
from funduslab.training.task_kinds.base import TASK_KINDS, MetricFn, TaskKind

if TYPE_CHECKING:  # Lightning loads only when a model trains, not when one predicts
    from funduslab.training.module import FundusTask

__all__ = ["GradingKind"]


class GradingKind(TaskKind):
    """One ordinal grade per image (DR 0–4), trained under a grading formulation."""

    name = "grading"
    title = "Grading"
    headlines = (("quadratic_weighted_kappa", "quadratic kappa"), ("accuracy", "accuracy"),
                 ("macro_f1", "macro F1"))

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

    def describe(self, saved: Any, outputs: np.ndarray) -> tuple[dict[str, Any], list[str]]:
        """The grade, its score and class probabilities (where the formulation has them)."""
        decoded, cuts = self._decoded(saved, np.asarray(outputs)[None])
        probs = None if decoded.probs is None else {
            str(g): float(p) for g, p in enumerate(decoded.probs[0])}
        n = len(outputs)
        names = {"ce": [f"grade {g}" for g in range(n)],
                 "ordinal": [f"grade > {g}" for g in range(n)]}.get(saved.formulation,
                                                                   ["score"] * n)
        return {"labels": list(saved.label_names), "grade": int(decoded.grades[0]),
                "score": float(decoded.score[0]), "grade_probabilities": probs,
                "cut_points": None if cuts is None else [float(c) for c in cuts]}, names

    def output_phrase(self, label_names: Sequence[str]) -> str:
        return "a diabetic-retinopathy-style grade"

    def score_block(self, metrics: dict[str, Any], entry: dict[str, Any]) -> str:
        return "grading"

    def summary_scores(self, splits: dict[str, Any], val_split: str,
                       test_split: str) -> tuple[dict[str, float | None], dict | None]:
        scores: dict[str, float | None] = {}
        for key, name in ((val_split, "val"), (test_split, "test")):
            g = (splits.get(key) or {}).get("grading") or {}
            scores[f"{name} QWK"] = g.get("quadratic_weighted_kappa")
            scores[f"{name} accuracy"] = g.get("accuracy")
        return scores, None

    def metrics_table(self, metrics: dict[str, Any]) -> Table:
        """Quadratic, linear and unweighted kappa and accuracy per split."""
        table = Table(title=f"grading results ({metrics.get('formulation', '')})")
        keys = ("quadratic_weighted_kappa", "linear_weighted_kappa", "cohen_kappa", "accuracy")
        for col in ("split", "quadratic κ", "linear κ", "unweighted κ", "accuracy"):
            table.add_column(col, justify="left" if col == "split" else "right")
        for split, entry in metrics["splits"].items():
            scores = entry["grading"]
            table.add_row(split, *("—" if scores.get(k) is None else f"{scores[k]:.4f}"
                                   for k in keys))
        return table

    def bootstrap_metrics(self, scores: Any, num_grades: int | None) -> dict[str, MetricFn]:
        """Quadratic kappa and accuracy of the decoded grades."""
        from funduslab.metrics import cohen_kappa

        k = num_grades or int(max(scores.truth.max(), scores.predicted.max())) + 1
        return {"quadratic kappa": lambda y, p, d: cohen_kappa(y[:, 0], d[:, 0], "quadratic", k),
                "accuracy": lambda y, p, d: float(np.mean(y[:, 0] == d[:, 0]))}

    def read_scores(self, folder: RunFolder, frame: pd.DataFrame, split: str,
                    table_labels: list[str]) -> tuple[list[str], np.ndarray, np.ndarray,
                                                      list[float] | None]:
        """The grade column against the table's one grade label; the score as probability."""
        probs = (frame[["score"]].to_numpy(float) if "score" in frame
                 else np.zeros((len(frame), 1)))
        return [table_labels[0]], probs, frame[["grade"]].to_numpy(np.int64), None


TASK_KINDS.register(GradingKind.name)(GradingKind())  # one instance per kind
