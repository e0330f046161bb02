"""CLI verb ``funduslab patches``: cut an IDRiD-style dataset into labelled lesion patches."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register", "render_counts"]


def render_counts(counts: dict[str, dict[str, int]]) -> Table:
    """Rich table: per split, images, patches, healthy patches and positives per lesion."""
    from funduslab.data.patches import LESIONS

    table = Table(title="lesion patches (positive patches per lesion)")
    for col in ("split", "images", "patches", "healthy", *LESIONS):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, row in counts.items():
        table.add_row(split, *(str(row[k]) for k in ("images", "patches", "healthy", *LESIONS)))
    return table


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``patches`` to ``app``."""

    @app.command()
    @friendly
    def patches(
        data: Path = typer.Option(..., help="IDRiD root (folder holding 'A. Segmentation/')."),
        out: Path = typer.Option(..., help="Patch-set folder to write (replaced atomically)."),
        size: int = typer.Option(128, help="Patch side in px."),
        mode: str = typer.Option("grid", help="grid | lesion_centred."),
        stride: Optional[int] = typer.Option(None, help="Grid stride in px (default: size)."),
        min_pixels: int = typer.Option(1, help="Mask pixels a patch needs to be positive."),
        min_fov: float = typer.Option(0.5, help="Drop patches with less field of view than this."),
        centres: int = typer.Option(10, help="lesion_centred: centres per lesion and image."),
        background: int = typer.Option(10, help="lesion_centred: random patches per image."),
        rebalance: str = typer.Option("none", help="none | lesion_seed | cap_per_class."),
        healthy_ratio: float = typer.Option(1.0, help="lesion_seed: healthy patches per rarest-"
                                                      "lesion patch."),
        cap: int = typer.Option(1000, help="cap_per_class: patches kept per class."),
        val_fraction: float = typer.Option(0.2, help="Share of training images moved to val."),
        seed: int = typer.Option(0, help="Seed of sampling, splitting and rebalancing."),
    ) -> None:
        """Extract labelled lesion patches (MA, HE, EX, SE) for the ``patches`` adapter."""
        from rich.progress import Progress

        from funduslab.data.adapters import load_table
        from funduslab.data.patches import PatchOptions
        from funduslab.data.patches_write import patch_counts, write_patch_set

        options = PatchOptions(size=size, mode=mode, stride=stride, min_pixels=min_pixels,
                               min_fov_fraction=min_fov, centres_per_lesion=centres,
                               background_per_image=background)
        strategy_options = {"lesion_seed": {"healthy_ratio": healthy_ratio},
                            "cap_per_class": {"cap": cap}}.get(rebalance, {})
        table = load_table("idrid", data)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("cutting patches", total=len(table.frame))
            frame = write_patch_set(
                table, out, options, rebalance_name=rebalance, rebalance_options=strategy_options,
                seed=seed, val_fraction=val_fraction, root=data,
                progress=lambda done, total: bar.update(task, completed=done))
        console.print(render_counts(patch_counts(frame)))
        console.print(f"[green]wrote[/] {len(frame)} patches to {out} "
                      f"(train with --adapter patches --image-size {size})")
