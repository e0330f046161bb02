"""CLI verb ``explain``: Grad-CAM-family panels (and head attention maps) for a run folder, or,
with ``--score``, the maps scored against lesion masks (pointing game, energy, faithfulness)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from funduslab.cli.common import console, friendly
from funduslab.cli.options import Device, torch_device
from funduslab.cli.registries import with_choices
from funduslab.explain.defaults import DEFAULT_CAM_METHOD

__all__ = ["register"]

RunDir = Annotated[Path, typer.Argument(help="A finished run folder.")]
Split = Annotated[Optional[str], typer.Option(
    help="Split to draw images from (default: offsite_test; with --score the run's test "
         "split).")]
Count = Annotated[Optional[int], typer.Option(
    "--n", help="Number of images (default 8; with --score every image with a mask).")]
CamMethod = Annotated[str, typer.Option(
    "--cam-method", "--method",
    help="CAM method (with --score also a comma list or all). --method is the older name.")]
Most = Annotated[bool, typer.Option(
    "--most", help="The images the model is most confident about (in the true label when the "
    "split is labelled).")]
Least = Annotated[bool, typer.Option("--least", help="The least confident images.")]
Attention = Annotated[bool, typer.Option(
    "--attention", help="Also draw the head's attention maps.")]
Score = Annotated[bool, typer.Option(
    "--score", help="Score the maps against lesion masks: pointing game, energy in the mask, "
    "deletion AUC, and a random and a centre-bias baseline.")]
Masks = Annotated[Optional[Path], typer.Option(
    help="With --score: folder holding masks.csv (default: DATA_ROOT/masks).")]
Faithfulness = Annotated[str, typer.Option(
    help="With --score: the faithfulness metric (road is slow on CPU), or none.")]
Out = Annotated[Optional[Path], typer.Option(
    help="Output folder (default: RUN_DIR/figures/explain; with --score RUN_DIR).")]
Data = Annotated[Optional[Path], typer.Option(help="Dataset root if it moved since training.")]
BatchSize = Annotated[int, typer.Option(help="Images per CAM pass.")]


@friendly
def explain(run_dir: RunDir, split: Split = None, n: Count = None,
            cam_method: CamMethod = DEFAULT_CAM_METHOD, most: Most = False, least: Least = False,
            attention: Attention = False, score: Score = False, masks: Masks = None,
            faithfulness: Faithfulness = "deletion", out: Out = None, data: Data = None,
            batch_size: BatchSize = 8, device: Device = "cpu") -> None:
    """Write one panel per image: the image and a heat map per disease with its probability."""
    device = torch_device(device)
    if score:
        if most or least or attention:
            raise ValueError("--score takes every image with a mask; drop --most, --least "
                             "and --attention")
        _score(run_dir, split, n, cam_method, masks, faithfulness, out, data, batch_size, device)
        return
    if masks is not None:
        raise ValueError("--masks is for --score; add --score to score the maps")
    from funduslab.explain.run_explain import explain_run

    if most and least:
        raise ValueError("pass --most or --least, not both")
    selection = "most" if most else "least" if least else "first"
    split, n = split or "offsite_test", 8 if n is None else n
    with console.status(f"explaining {n} {split} images with {cam_method}"):
        panels = explain_run(run_dir, split=split, n=n, method=cam_method, selection=selection,
                             attention=attention, out=out, data_root=data,
                             batch_size=batch_size, device=device)
    folder = panels[0].parent if panels else out
    console.print(f"[green]wrote {len(panels)} panels[/] to {folder}")


def _score(run_dir: Path, split: str | None, n: int | None, method: str, masks: Path | None,
           faithfulness: str, out: Path | None, data: Path | None, batch_size: int,
           device: str) -> None:
    """``explain --score``: score the maps, print each method's hit rate and energy."""
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


def register(app: typer.Typer) -> None:
    """Attach ``explain`` to ``app``."""
    app.command(cls=with_choices(cam_method="cams",
                                 faithfulness=("faithfulness", "none")))(explain)
