"""Task kinds: what differs between multi-label detection and DR grading, in one object each.

A dataset's table says which kind it is (``SampleTable.task``); the run asks the kind for

* its **targets** — multi-label ``(N, K)`` 0/1 (NaN where a joined source lacks a label), grading
  ``(N,)`` integer grades, as samplers and grading losses expect;
* its **outputs** — one logit per label, or the grading formulation's count (K, 1 or K − 1);
* its **loss** and its **LightningModule** class;
* its **evaluation** — probabilities, thresholds (0.5 or tuned on val), predictions, metrics and
  the submission for multi-label; decoded grades, kappas, cut points and confusion figures for
  grading (:mod:`funduslab.training.grading`);
* for a saved model predicting new images (``funduslab predict``, the ONNX check, the web
  page): how raw outputs **decode** to probabilities and labels, the **submission columns** a
  template asks for, the **prediction files**, and what one image's outputs **say**;
* for reports and model cards: its **title**, **headline metrics**, which block of a split's
  metrics holds the scores the run decided with, the **summary scores** and **metrics table** of
  a run, the **bootstrap metrics** and how a run's prediction files read as **scores**.

A new kind is one module here: a :class:`TaskKind` subclass whose instance is registered in
:data:`TASK_KINDS` (and the adapters that produce its tables); training, prediction, reports and
the web page do not branch on the kind's name.
"""

from funduslab.registry import import_modules_of
from funduslab.training.task_kinds.base import TASK_KINDS, MetricFn, TaskKind

import_modules_of(__name__, __path__)  # each module registers its kind: a new kind is one file

from funduslab.training.task_kinds.grading import GradingKind  # noqa: E402
from funduslab.training.task_kinds.multilabel import MultilabelKind  # noqa: E402

__all__ = ["TASK_KINDS", "GradingKind", "MetricFn", "MultilabelKind", "TaskKind", "task_kind"]


def task_kind(name: str) -> TaskKind:
    """The registered kind ``name`` (a table's ``task``); unknown names list the valid ones."""
    return TASK_KINDS.get(name)
