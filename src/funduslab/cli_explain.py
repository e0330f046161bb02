"""CLI verb ``explain``: Grad-CAM-family panels (and head attention maps) for a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

__all__ = ["register"]


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``explain`` to ``app``."""

    @app.command()
    @friendly
    def explain(
        run_dir: Path = typer.Argument(..., help="A finished run folder."),
        split: str = typer.Option("offsite_test", help="Split to draw images from."),
        n: int = typer.Option(8, help="Number of images."),
        method: str = typer.Option(
            "gradcam", help="CAM method: gradcam, gradcam++, layercam, scorecam, eigencam."),
        most: bool = typer.Option(False, "--most", help="The images the model is most confident "
                                  "about (in the true label when the split is labelled)."),
        least: bool = typer.Option(False, "--least", help="The least confident images."),
        attention: bool = typer.Option(False, "--attention",
                                       help="Also draw the head's attention maps."),
        out: Optional[Path] = typer.Option(None, help="Output folder "
                                           "(default: RUN_DIR/figures/explain)."),
        data: Optional[Path] = typer.Option(None, help="Dataset root if it moved since training."),
        batch_size: int = typer.Option(8, help="Images per CAM pass."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
    ) -> None:
        """Write one panel per image: the image and a heat map per disease with its probability."""
        from funduslab.explain.run_explain import explain_run

        if most and least:
            raise ValueError("pass --most or --least, not both")
        selection = "most" if most else "least" if least else "first"
        with console.status(f"explaining {n} {split} images with {method}"):
            panels = explain_run(run_dir, split=split, n=n, method=method, selection=selection,
                                 attention=attention, out=out, data_root=data,
                                 batch_size=batch_size, device=device)
        folder = panels[0].parent if panels else out
        console.print(f"[green]wrote {len(panels)} panels[/] to {folder}")
