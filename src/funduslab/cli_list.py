"""CLI verb ``list``: what is registered, one line per component, straight from the registries.

The help strings of other verbs name valid values from the same registries, so this list, the
help and the error for an unknown name never disagree.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["KINDS", "register"]

#: kind (as typed on the command line) → (module, registry attribute). Modules import lazily.
KINDS: dict[str, tuple[str, str]] = {
    "adapters": ("funduslab.data.adapters", "ADAPTERS"),
    "augmentations": ("funduslab.training.data", "AUGMENTATIONS"),
    "backbones": ("funduslab.models.backbones", "BACKBONES"),
    "cams": ("funduslab.explain.cams", "CAMS"),
    "ensembles": ("funduslab.ensemble.combiners", "ENSEMBLES"),
    "export-formats": ("funduslab.inference.export", "EXPORT_FORMATS"),
    "formulations": ("funduslab.training.grading", "GRADING_FORMULATIONS"),
    "fusions": ("funduslab.models.dual", "FUSIONS"),
    "heads": ("funduslab.models.heads", "HEADS"),
    "layouts": ("funduslab.data.synthetic_layouts", "LAYOUTS"),
    "losses": ("funduslab.losses", "LOSSES"),
    "predict-backends": ("funduslab.inference.backends", "PREDICT_BACKENDS"),
    "preprocess": ("funduslab.preprocess.registry", "PREPROCESS"),
    "presets": ("funduslab.experiments", "PRESETS"),
    "samplers": ("funduslab.training.samplers", "SAMPLERS"),
    "setups": ("funduslab.training.setups", "SETUPS"),
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


def _summary(obj: Any) -> str:
    """One line on a component: a backbone spec's family and weights, else the first line of its
    docstring, else (a lambda around a library class) the class it builds."""
    if hasattr(obj, "family") and hasattr(obj, "imagenet"):  # models.backbones.BackboneSpec
        weights = {"hub": "timm hub (network)", "none": "none"}.get(
            obj.imagenet, f"offline package ({obj.imagenet})")
        return f"{obj.family}; timm {obj.timm_name or '— (built here, tests)'}; ImageNet: {weights}"
    doc = inspect.getdoc(obj) if not isinstance(obj, type) or obj.__doc__ else None
    if doc:
        return doc.strip().split("\n")[0]
    if getattr(obj, "__name__", "") == "<lambda>":
        built = re.search(r"lambda[^:]*:\s*([A-Za-z_]\w*)\(", inspect.getsource(obj))
        if built:
            return f"built by {built.group(1)}"
    return getattr(obj, "__qualname__", type(obj).__name__)


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``list`` to ``app``."""

    @app.command("list")
    @friendly
    def list_components(
        kind: Optional[str] = typer.Argument(
            None, help=f"What to list: {', '.join(sorted(KINDS))}. Without it: the kinds."),
    ) -> None:
        """List what is registered: backbones, losses, heads, CAM methods, adapters, …"""
        if kind is None:
            table = Table("kind", "registered")
            for name in sorted(KINDS):
                table.add_row(name, str(len(registry(name))))
            console.print(table)
            return
        reg = registry(kind)
        table = Table("name", "what it is", title=f"{kind}: {len(reg)} registered")
        for name in reg.names():
            table.add_row(name, escape(_summary(reg.get(name))))
        console.print(table)
