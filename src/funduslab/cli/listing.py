"""CLI verb ``list``: what is registered, one line per component, straight from the registries.

The help of other verbs names valid values from the same registries (``cli/registries.py``),
so this list, the help and the error for an unknown name never disagree.
"""

from __future__ import annotations

import inspect
import re
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from funduslab.cli.common import console, friendly
from funduslab.cli.registries import KINDS, registry

__all__ = ["register"]


def _summary(obj: Any) -> str:
    """One line on a component: a backbone spec's family and weights, a faithfulness metric's
    column and direction, else the first line of its docstring, else (a lambda around a library
    class) the class it builds."""
    if hasattr(obj, "family") and hasattr(obj, "imagenet"):  # models.backbones.BackboneSpec
        weights = {"hub": "timm hub (network)", "none": "none"}.get(
            obj.imagenet, f"offline package ({obj.imagenet})")
        timm = obj.timm_name or "— (built here, tests)"
        return f"{obj.family}; timm {timm}; ImageNet: {weights}"
    if hasattr(obj, "higher_is_better") and hasattr(obj, "column"):  # explain.faithfulness
        better = "higher" if obj.higher_is_better else "lower"
        return f"column {obj.column} of explain_scores.csv; {better} is better"
    doc = inspect.getdoc(obj) if not isinstance(obj, type) or obj.__doc__ else None
    if doc:
        return doc.strip().split("\n")[0]
    if getattr(obj, "__name__", "") == "<lambda>":
        built = re.search(r"lambda[^:]*:\s*([A-Za-z_]\w*)\(", inspect.getsource(obj))
        if built:
            return f"built by {built.group(1)}"
    return getattr(obj, "__qualname__", type(obj).__name__)


@friendly
def list_components(
    kind: Annotated[Optional[str], typer.Argument(
        help=f"What to list: {', '.join(sorted(KINDS))}. Without it: the kinds.")] = None,
) -> None:
    """List what is registered (backbones, losses, heads, CAMs, …), one line each."""
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


def register(app: typer.Typer) -> None:
    """Attach ``list`` to ``app``."""
    app.command("list")(list_components)
