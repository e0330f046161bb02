"""CLI verb ``export``: a saved model written for another engine (ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from funduslab.cli.common import console, friendly
from funduslab.cli.registries import with_choices

__all__ = ["register"]


@friendly
def export(
    model: Annotated[Path, typer.Argument(
        help="A run folder (single-image model) or its weights file.")],
    fmt: Annotated[str, typer.Option("--format", help="Export format.")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(
        help="File to write (default: <model name>.<format> in the current folder).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or later).")] = 17,
) -> None:
    """Write a saved model as an ONNX file.

    Its labels, thresholds, image size and preprocessing go into the metadata; ONNX Runtime is
    checked against PyTorch first.
    """
    from funduslab.inference.export import EXPORT_FORMATS, export_model

    spec = EXPORT_FORMATS.get(fmt)  # an unknown format fails before anything loads
    target = out or Path(f"{model.name if model.is_dir() else model.stem}{spec.suffix}")
    with console.status(f"exporting {model} to {fmt}"):
        check = export_model(model, fmt, target, opset=opset)
    console.print(f"[green]wrote[/] {target} (ONNX Runtime vs PyTorch float32 on "
                  f"{check.n_images} images: max |Δp| {check.max_abs_diff:.1e}, labels "
                  f"{'agree' if check.labels_agree else 'differ'})")
    if check.bf16_max_abs_diff is not None:
        console.print(f"the run predicted under bf16 autocast; ONNX runs float32 (max |Δp| "
                      f"vs bf16 {check.bf16_max_abs_diff:.1e})")


def register(app: typer.Typer) -> None:
    """Attach ``export`` to ``app``."""
    app.command(cls=with_choices(fmt="export-formats"))(export)
