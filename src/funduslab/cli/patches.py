"""CLI verb ``funduslab patches``: cut an IDRiD-style dataset into labelled lesion patches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from funduslab.cli.common import console, friendly
from funduslab.cli.registries import with_choices

__all__ = ["register", "render_counts"]

Data = Annotated[Path, typer.Option(help="IDRiD root (folder holding 'A. Segmentation/').")]
Out = Annotated[Path, typer.Option(help="Patch-set folder to write (replaced atomically).")]
PatchSize = Annotated[int, typer.Option(
    "--patch-size", "--size",
    help="Patch side in px (train on it with the same --image-size). --size is the older name.")]
Mode = Annotated[str, typer.Option(help="Where patches are cut: grid or lesion_centred.")]
Stride = Annotated[Optional[int], typer.Option(help="Grid stride in px (default: patch size).")]
MinPixels = Annotated[int, typer.Option(help="Mask pixels a patch needs to be positive.")]
MinFov = Annotated[float, typer.Option(help="Drop patches with less field of view than this.")]
Centres = Annotated[int, typer.Option(help="lesion_centred: centres per lesion and image.")]
Background = Annotated[int, typer.Option(help="lesion_centred: random patches per image.")]
Rebalance = Annotated[str, typer.Option(help="How the patch set is rebalanced.")]
HealthyRatio = Annotated[float, typer.Option(
    help="lesion_seed: healthy patches per rarest-lesion patch.")]
Cap = Annotated[int, typer.Option(help="cap_per_class: patches kept per class.")]
ValFraction = Annotated[float, typer.Option(help="Share of training images moved to val.")]
Seed = Annotated[int, typer.Option(help="Seed of sampling, splitting and rebalancing.")]


def render_counts(counts: dict[str, dict[str, int]]) -> Table:
    """Rich table: per split, images, patches, healthy patches and positives per lesion."""
    from funduslab.data.patches import LESIONS

    table = Table(title="lesion patches (positive patches per lesion)")
    for col in ("split", "images", "patches", "healthy", *LESIONS):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, row in counts.items():
        table.add_row(split, *(str(row[k]) for k in ("images", "patches", "healthy", *LESIONS)))
    return table


@friendly
def patches(data: Data, out: Out, patch_size: PatchSize = 128, mode: Mode = "grid",
            stride: Stride = None, min_pixels: MinPixels = 1, min_fov: MinFov = 0.5,
            centres: Centres = 10, background: Background = 10, rebalance: Rebalance = "none",
            healthy_ratio: HealthyRatio = 1.0, cap: Cap = 1000, val_fraction: ValFraction = 0.2,
            seed: Seed = 0) -> None:
    """Extract labelled lesion patches (MA, HE, EX, SE) for the patches adapter."""
    from rich.progress import Progress

    from funduslab.data.adapters import load_table
    from funduslab.data.patches import PatchOptions
    from funduslab.data.patches_write import patch_counts, write_patch_set

    options = PatchOptions(size=patch_size, mode=mode, stride=stride, min_pixels=min_pixels,
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
                  f"(train with --adapter patches --image-size {patch_size})")


def register(app: typer.Typer) -> None:
    """Attach ``patches`` to ``app``."""
    app.command(cls=with_choices(rebalance="rebalancers"))(patches)
