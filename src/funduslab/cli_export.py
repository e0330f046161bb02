"""CLI verb ``export``: a saved model written for another engine (ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

__all__ = ["register"]


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``export`` to ``app``."""

    @app.command()
    @friendly
    def export(
        model: Path = typer.Argument(..., help="A run folder (single-image model) or its "
                                     "weights file."),
        fmt: str = typer.Option("onnx", "--format", help="Export format: onnx."),
        out: Optional[Path] = typer.Option(None, help="File to write (default: <model "
                                           "name>.<format> in the current folder)."),
        opset: int = typer.Option(17, help="ONNX opset (17 or later)."),
    ) -> None:
        """Write MODEL as an ONNX file with its labels, thresholds, image size and
        preprocessing in the metadata; ONNX Runtime is checked against PyTorch first."""
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
