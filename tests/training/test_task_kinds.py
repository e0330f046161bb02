"""Every registered task kind answers the whole :class:`TaskKind` interface.

The base class raises ``NotImplementedError`` for what each kind must say itself, so a new kind
that forgets one (say, its report table) fails here, before a user's report does.
"""

from __future__ import annotations

import inspect

import pytest

from funduslab.training.task_kinds import TASK_KINDS, TaskKind, task_kind


def _abstract_methods() -> list[str]:
    """Methods of the base whose body raises NotImplementedError."""
    return [name for name, fn in inspect.getmembers(TaskKind, inspect.isfunction)
            if "raise NotImplementedError" in inspect.getsource(fn)]


def test_the_base_leaves_the_reporting_and_prediction_answers_to_each_kind():
    assert {"evaluate", "decode", "describe", "metrics_table", "summary_scores",
            "bootstrap_metrics", "read_scores", "score_block"} <= set(_abstract_methods())


@pytest.mark.parametrize("name", TASK_KINDS.names())
def test_each_kind_overrides_every_abstract_method_and_names_itself(name: str):
    kind = task_kind(name)
    assert kind.name == name and kind.title and kind.headlines
    missing = [m for m in _abstract_methods() if getattr(type(kind), m) is getattr(TaskKind, m)]
    assert not missing, f"task kind {name!r} does not implement {missing}"


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="grading.*multilabel|multilabel.*grading"):
        task_kind("segmentation")
