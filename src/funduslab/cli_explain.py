"""CLI verb ``explain``: Grad-CAM-family panels (and head attention maps) for a run folder, or,
with ``--score``, the maps scored against lesion masks (pointing game, energy, faithfulness)."""

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
        split: Optional[str] = typer.Option(
            None, help="Split to draw images from (default: offsite_test; with --score the "
            "run's test split)."),
        n: Optional[int] = typer.Option(
            None, help="Number of images (default 8; with --score every image with a mask)."),
        method: str = typer.Option(
            "gradcam", help="CAM method: gradcam, gradcam++, layercam, scorecam, eigencam "
            "(with --score also a comma list or 'all')."),
        most: bool = typer.Option(False, "--most", help="The images the model is most confident "
                                  "about (in the true label when the split is labelled)."),
        least: bool = typer.Option(False, "--least", help="The least confident images."),
        attention: bool = typer.Option(False, "--attention",
                                       help="Also draw the head's attention maps."),
        score: bool = typer.Option(False, "--score", help="Score the maps against lesion masks: "
                                   "pointing game, energy in the mask, deletion AUC, and a "
                                   "random and a centre-bias baseline."),
        masks: Optional[Path] = typer.Option(
            None, help="With --score: folder holding masks.csv (default: DATA_ROOT/masks)."),
        faithfulness: str = typer.Option(
            "deletion", help="With --score: deletion, road (slow on CPU) or none."),
        out: Optional[Path] = typer.Option(None, help="Output folder (default: RUN_DIR/figures/"
                                           "explain; with --score RUN_DIR)."),
        data: Optional[Path] = typer.Option(None, help="Dataset root if it moved since training."),
        batch_size: int = typer.Option(8, help="Images per CAM pass."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
    ) -> None:
        """Write one panel per image: the image and a heat map per disease with its probability."""
        if score:
            if most or least or attention:
                raise ValueError("--score takes every image with a mask; drop --most, --least "
                                 "and --attention")
            _score(console, run_dir, split, n, method, masks, faithfulness, out, data,
                   batch_size, device)
            return
        if masks is not None:
            raise ValueError("--masks is for --score; add --score to score the maps")
        from funduslab.explain.run_explain import explain_run

        if most and least:
            raise ValueError("pass --most or --least, not both")
        selection = "most" if most else "least" if least else "first"
        split, n = split or "offsite_test", 8 if n is None else n
        with console.status(f"explaining {n} {split} images with {method}"):
            panels = explain_run(run_dir, split=split, n=n, method=method, selection=selection,
                                 attention=attention, out=out, data_root=data,
                                 batch_size=batch_size, device=device)
        folder = panels[0].parent if panels else out
        console.print(f"[green]wrote {len(panels)} panels[/] to {folder}")


def _score(console: Console, run_dir: Path, split: str | None, n: int | None, method: str,
           masks: Path | None, faithfulness: str, out: Path | None, data: Path | None,
           batch_size: int, device: str) -> None:
    import pandas as pd

    from funduslab.explain.score import explain_scores

    with console.status(f"scoring {method} maps against lesion masks"):
        paths = explain_scores(run_dir, out=out, methods=method, split=split, masks_dir=masks,
                               data_root=data, faithfulness=faithfulness, batch_size=batch_size,
                               device=device, limit=n)
    frame = pd.read_csv(paths["table"])
    # as in the summary: a flat map (NaN) is a miss with no energy in the mask
    means = frame[["method", "hit", "energy"]].fillna({"hit": 0.0, "energy": 0.0})
    for name, row in means.groupby("method", sort=False)[["hit", "energy"]].mean().iterrows():
        console.print(f"  {name}: hit rate {row['hit']:.2f}, energy in mask {row['energy']:.2f}")
    console.print(f"[green]wrote[/] {paths['table']}, {paths['summary'].name} and "
                  f"{paths['figure']}")
