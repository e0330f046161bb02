"""The :class:`TaskKind` interface and the :data:`TASK_KINDS` registry (see the package)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from rich.table import Table
from torch import nn

from funduslab.config import RunConfig
from funduslab.registry import Registry
from funduslab.runs import RunFolder
from funduslab.training.context import RunContext

if TYPE_CHECKING:  # Lightning loads only when a model trains, not when one predicts
    from funduslab.training.module import FundusTask

__all__ = ["TASK_KINDS", "MetricFn", "TaskKind"]

#: Kind name (``SampleTable.task``) → :class:`TaskKind` (one instance each).
TASK_KINDS: Registry = Registry("task kind")

#: A bootstrap metric of ``(truth, probabilities, predicted)``, each with one row per image.
MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


class TaskKind:
    """Base class; the package docstring (:mod:`funduslab.training.task_kinds`) says what each
    method answers. Methods that raise ``NotImplementedError`` are each kind's to say."""

    name: ClassVar[str] = ""
    #: Section title in reports.
    title: ClassVar[str] = ""
    #: ``(metric key, label)`` a model card shows, most important first.
    headlines: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: One probability per label: ROC/PR curves, reliability diagrams, ECE and CAM panels apply.
    per_label_probabilities: ClassVar[bool] = False

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

    def describe(self, saved: Any, outputs: np.ndarray) -> tuple[dict[str, Any], list[str]]:
        """What one image's raw outputs ``(C,)`` say (the web API's JSON), and a name per
        output for its CAMs."""
        raise NotImplementedError

    def output_phrase(self, label_names: Sequence[str]) -> str:
        """What the model gives per image, in words (model cards)."""
        raise NotImplementedError

    def score_block(self, metrics: dict[str, Any], entry: dict[str, Any]) -> str:
        """The key of a split's metrics ``entry`` holding the scores the run decided with."""
        raise NotImplementedError

    def summary_scores(self, splits: dict[str, Any], val_split: str,
                       test_split: str) -> tuple[dict[str, float | None], dict | None]:
        """A comparison row's scores (``"val …"``, ``"test …"``) from ``metrics.json``'s splits,
        and the test recall per label (``None``: not a per-label kind)."""
        raise NotImplementedError

    def metrics_table(self, metrics: dict[str, Any]) -> Table:
        """A Rich table of ``metrics.json``: one row per split (and threshold choice)."""
        raise NotImplementedError

    def bootstrap_metrics(self, scores: Any, num_grades: int | None) -> dict[str, MetricFn]:
        """The headline metrics a report bootstraps; ``scores`` is the run's
        :class:`~funduslab.reporting.curves.RunScores` on the test split."""
        raise NotImplementedError

    def read_scores(self, folder: RunFolder, frame: pd.DataFrame, split: str,
                    table_labels: list[str]) -> tuple[list[str], np.ndarray, np.ndarray,
                                                      list[float] | None]:
        """``(label columns of the truth, probabilities, predicted labels, thresholds)`` of a
        run's ``predictions/<split>.csv`` (read as ``frame``)."""
        raise NotImplementedError
