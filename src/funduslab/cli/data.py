"""CLI verbs for datasets: ``synth`` writes a synthetic one; ``data summary`` and ``data check``
read one through its adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from funduslab.cli.common import console, friendly
from funduslab.cli.registries import with_choices

__all__ = ["register"]

Root = Annotated[Path, typer.Argument(help="Dataset folder (the CSV itself for generic_csv).")]
Adapter = Annotated[str, typer.Option(help="Dataset layout reader; auto detects the layout.")]
Labels = Annotated[Optional[str], typer.Option(
    help="Comma-separated label columns (generic_csv, odir5k).")]
Images = Annotated[Optional[Path], typer.Option(help="Image folder (generic_csv).")]


@friendly
def synth(
    out: Annotated[Path, typer.Option(help="Output folder.")],
    layout: Annotated[str, typer.Option(
        help="Dataset layout to write (docs/layouts.md).")] = "odir-course",
    n: Annotated[Optional[int], typer.Option(
        help="Number of images (layout default if omitted).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 0,
    image_size: Annotated[Optional[int], typer.Option(
        "--image-size", "--size",
        help="Image side in px (layout default if omitted). --size is the older name.")] = None,
    masks: Annotated[bool, typer.Option(
        "--masks", help="Also write masks/: one lesion mask per image and positive label, for "
        "explain --score (multi-label layouts).")] = False,
) -> None:
    """Write a synthetic fundus dataset whose labels are known."""
    from funduslab.data.synthetic_layouts import write_layout

    kwargs: dict[str, Any] = {"n": n, "seed": seed, "masks": masks}
    if image_size is not None:
        kwargs["size"] = image_size
    root = write_layout(layout, out, **kwargs)
    console.print(f"[green]wrote[/] {layout} dataset to {root}")


@friendly
def summary(root: Root, adapter: Adapter = "auto", labels: Labels = None,
            images: Images = None) -> None:
    """Per-split counts, patients and label prevalence."""
    from funduslab.data.adapters import load_table
    from funduslab.data.summary import render_summary

    table = load_table(adapter, root, **_adapter_options(labels, images))
    render_summary(table, console)


@friendly
def check(
    root: Root, adapter: Adapter = "auto", labels: Labels = None, images: Images = None,
    image_size: Annotated[int, typer.Option(
        help="Training resolution in px: smaller images warn.")] = 256,
) -> None:
    """Decode every image once: list the missing or corrupt ones (exit 1).

    Warns on the odd ones: smaller than the training resolution, 16-bit input.
    """
    from funduslab.data.adapters import load_table
    from funduslab.data.inspect import inspect_images

    table = load_table(adapter, root, **_adapter_options(labels, images))
    with console.status(f"decoding {len(table.frame)} images"):
        findings = inspect_images([Path(p) for p in table.frame["path"]], image_size)
    for finding in findings:
        colour = "red" if finding.is_error else "yellow"
        label = "" if finding.is_error else "warning: "
        console.print(f"[{colour}]{finding.path}[/]: {label}{finding.message}")
    if any(f.is_error for f in findings):
        raise typer.Exit(code=1)
    warned = len({f.path for f in findings})
    tail = f" ({warned} with warnings)" if warned else ""
    console.print(f"[green]all {len(table.frame)} images decode[/]{tail}")


def _adapter_options(labels: Optional[str], images: Optional[Path]) -> dict[str, Any]:
    """Adapter keyword options from ``--labels`` and ``--images``."""
    options: dict[str, Any] = {}
    if labels:
        options["labels"] = [s.strip() for s in labels.split(",") if s.strip()]
    if images:
        options["images"] = images
    return options


def register(app: typer.Typer) -> None:
    """Attach ``synth`` and the ``data`` group to ``app``."""
    app.command(cls=with_choices(layout="layouts"))(synth)
    data_app = typer.Typer(help="Inspect and check datasets.", no_args_is_help=True)
    adapters = with_choices(adapter=("auto", "adapters"))
    data_app.command("summary", cls=adapters)(summary)
    data_app.command("check", cls=adapters)(check)
    app.add_typer(data_app, name="data")
