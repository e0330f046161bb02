"""Multi-label detection: independent sigmoid outputs, one per label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table
from scipy.special import expit
from torch import nn

from funduslab.data.join import observed_rows
from funduslab.losses import ClassCounts, build_loss
from funduslab.metrics import (auroc_per_class, course_average_f1, multilabel_metrics,
                               tune_thresholds)
from funduslab.runs import RunFolder
from funduslab.runs.files import write_predictions, write_submission
from funduslab.training.context import RunContext
from funduslab.training.task_kinds.base import TASK_KINDS, MetricFn, TaskKind

__all__ = ["MultilabelKind"]


class MultilabelKind(TaskKind):
    """Independent sigmoid outputs, one per label (course D/G/A, ODIR-5K, RFMiD)."""

    name = "multilabel"
    title = "Multi-label detection"
    headlines = (("course_average_f1", "course average F1"), ("macro_f1", "macro F1 (positive)"),
                 ("macro_auroc", "macro AUROC"), ("micro_auroc", "micro AUROC"))
    per_label_probabilities = True

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

    def describe(self, saved: Any, outputs: np.ndarray) -> tuple[dict[str, Any], list[str]]:
        names = list(saved.label_names)
        probs = expit(np.asarray(outputs, dtype=np.float64))
        return {"labels": names,
                "probabilities": {n: float(p) for n, p in zip(names, probs)},
                "thresholds": {n: float(t) for n, t in zip(names, saved.thresholds)},
                "decisions": {n: int(p >= t) for n, p, t in zip(names, probs, saved.thresholds)}
                }, names

    def output_phrase(self, label_names: Sequence[str]) -> str:
        return "a probability and a yes/no decision per label " + "/".join(label_names)

    def score_block(self, metrics: dict[str, Any], entry: dict[str, Any]) -> str:
        used = (metrics.get("thresholds") or {}).get("used")
        return ("tuned_thresholds" if used == "tuned_on_val" and "tuned_thresholds" in entry
                else "threshold_0.5")

    def summary_scores(self, splits: dict[str, Any], val_split: str,
                       test_split: str) -> tuple[dict[str, float | None], dict | None]:
        scores: dict[str, float | None] = {}
        recall = None
        for key, name in ((val_split, "val"), (test_split, "test")):
            entry = splits.get(key) or {}
            plain, tuned = entry.get("threshold_0.5") or {}, entry.get("tuned_thresholds") or {}
            scores[f"{name} avg F1"] = plain.get("course_average_f1")
            if name == "test":
                scores["test avg F1 (tuned)"] = tuned.get("course_average_f1")
                scores["test macro AUROC"] = plain.get("macro_auroc")
                recall = {k: v["recall"] for k, v in (plain.get("per_class") or {}).items()}
        return scores, recall

    def metrics_table(self, metrics: dict[str, Any]) -> Table:
        """Positive-class P/R/F1 per label, the course average F1 and the macro AUROC."""
        labels = metrics["label_names"]
        table = Table(title="results (threshold 0.5 | tuned on val)")
        for col in ("split", "thresholds", *(f"{n} P/R/F1" for n in labels), "course avg F1",
                    "macro AUROC"):
            table.add_column(col, justify="left" if col in ("split", "thresholds") else "right")
        for split, entry in metrics["splits"].items():
            for block, scores in entry.items():
                row = [split, "0.5" if block == "threshold_0.5" else "tuned"]
                for name in labels:
                    c = scores["per_class"][name]
                    row.append(f"{c['precision']:.3f}/{c['recall']:.3f}/{c['f1']:.3f}")
                row.append(f"{scores['course_average_f1']:.4f}")
                auc = scores.get("macro_auroc")
                row.append("—" if auc is None or auc != auc else f"{auc:.4f}")
                table.add_row(*row)
        return table

    def bootstrap_metrics(self, scores: Any, num_grades: int | None) -> dict[str, MetricFn]:
        """Course average F1 at the run's thresholds, macro AUROC and AUROC per label."""
        fns: dict[str, MetricFn] = {
            "course average F1": lambda y, p, d: course_average_f1(y, d),
            "macro AUROC": lambda y, p, d: float(np.nanmean(auroc_per_class(y, p)))}
        for k, label in enumerate(scores.label_names):
            fns[f"AUROC {label}"] = lambda y, p, d, k=k: float(auroc_per_class(y[:, k],
                                                                               p[:, k])[0])
        return fns

    def read_scores(self, folder: RunFolder, frame: pd.DataFrame, split: str,
                    table_labels: list[str]) -> tuple[list[str], np.ndarray, np.ndarray,
                                                      list[float] | None]:
        labels = folder.label_names
        return (labels, folder.predictions(split, labels)[1], frame[labels].to_numpy(np.int64),
                self.run_thresholds(folder))

    @staticmethod
    def run_thresholds(folder: RunFolder) -> list[float] | None:
        """The thresholds the run labelled its predictions with (``None``: not recorded)."""
        used = folder.metrics.get("thresholds") or {}
        if used.get("used") == "tuned_on_val" and used.get("tuned_on_val"):
            return [float(t) for t in used["tuned_on_val"]]
        return [0.5] * len(folder.label_names) if used.get("used") == "0.5" else None


TASK_KINDS.register(MultilabelKind.name)(MultilabelKind())  # one instance per kind
