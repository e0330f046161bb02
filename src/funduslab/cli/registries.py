"""The registries the CLI names values from, by the kind typed on the command line.

``funduslab list KIND``, the valid values in each verb's ``--help`` and the error for an
unknown name all read the same registries, so they never disagree. Registry modules are
imported only when a list is shown, so ``funduslab --help`` and the verbs stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from typer.core import TyperCommand

__all__ = ["KINDS", "ChoicesCommand", "choice_names", "registry", "with_choices"]

#: kind (as typed on the command line) → (module, registry attribute). Modules import lazily.
KINDS: dict[str, tuple[str, str]] = {
    "adapters": ("funduslab.data.adapters", "ADAPTERS"),
    "augmentations": ("funduslab.training.data", "AUGMENTATIONS"),
    "backbones": ("funduslab.models.backbones", "BACKBONES"),
    "cams": ("funduslab.explain.cams", "CAMS"),
    "ensembles": ("funduslab.ensemble.combiners", "ENSEMBLES"),
    "export-formats": ("funduslab.inference.export", "EXPORT_FORMATS"),
    "faithfulness": ("funduslab.explain.faithfulness", "FAITHFULNESS"),
    "families": ("funduslab.models.families", "FAMILIES"),
    "formulations": ("funduslab.training.grading", "GRADING_FORMULATIONS"),
    "fusions": ("funduslab.models.dual", "FUSIONS"),
    "heads": ("funduslab.models.heads", "HEADS"),
    "layouts": ("funduslab.data.synthetic_layouts", "LAYOUTS"),
    "losses": ("funduslab.losses", "LOSSES"),
    "predict-backends": ("funduslab.inference.backends", "PREDICT_BACKENDS"),
    "preprocess": ("funduslab.preprocess.registry", "PREPROCESS"),
    "presets": ("funduslab.experiments", "PRESETS"),
    "rebalancers": ("funduslab.data.patches_rebalance", "REBALANCERS"),
    "samplers": ("funduslab.training.samplers", "SAMPLERS"),
    "setups": ("funduslab.training.setups", "SETUPS"),
    "task-kinds": ("funduslab.training.task_kinds", "TASK_KINDS"),
    "trained-ensembles": ("funduslab.ensemble.resampled", "TRAINED_ENSEMBLES"),
}


def registry(kind: str) -> Any:
    """The registry listed as ``kind`` (``ValueError`` names the valid kinds)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(sorted(KINDS))}")
    module, attr = KINDS[kind]
    if kind == "losses":  # the grading losses register on import of their formulations
        importlib.import_module("funduslab.training.grading")
    return getattr(importlib.import_module(module), attr)


def choice_names(spec: tuple[str, ...]) -> list[str]:
    """Valid values for ``spec``: each item is a kind of :data:`KINDS` (its registered names)
    or a value accepted besides them (e.g. ``"none"``), in order, without repeats."""
    names: list[str] = []
    for item in spec:
        names += registry(item).names() if item in KINDS else [item]
    return list(dict.fromkeys(names))


class ChoicesCommand(TyperCommand):
    """A verb whose help appends each listed parameter's valid values to its help text, read
    from the registries only when that help is shown."""

    #: parameter name → what :func:`choice_names` lists for it
    choices: dict[str, tuple[str, ...]] = {}

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            spec = self.choices.get(param.name or "")
            if spec and not getattr(param, "_described", False):
                param._described = True  # type: ignore[attr-defined]
                param.help = f"{param.help} One of: {', '.join(choice_names(spec))}."
        return super().format_help(ctx, formatter)


def with_choices(**choices: str | tuple[str, ...]) -> type[ChoicesCommand]:
    """A :class:`ChoicesCommand` class for ``app.command(cls=...)``: ``name=kind`` or
    ``name=(kind or extra value, ...)`` per parameter."""
    spec = {name: (v,) if isinstance(v, str) else tuple(v) for name, v in choices.items()}
    return type("ChoicesCommand", (ChoicesCommand,), {"choices": spec})
